//! The gate health grid: one card per gate with its last heartbeat, replica sequence and
//! age, backlog, device faults and clock offset. Gates whose tokens are all revoked say
//! so before anything else. Stale gates (no heartbeat within
//! `stale_after`) are red; degraded ones (a device down, a backlog waiting, an old
//! replica, a clock off by more than [`CLOCK_WARN_MS`], a lane closed by a supervisor)
//! are amber, and say why in words. Closed lanes are listed with their reason and since
//! when, from the gate's last heartbeat.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use maud::html;

use super::session::UiSession;
use super::{Nav, T, fmt_duration, fmt_time, internal, layout};
use crate::model::GateStatus;
use crate::service::Central;

/// Clock offset beyond which a gate's timestamps are suspect (ms).
pub const CLOCK_WARN_MS: i64 = 5_000;
/// A replica older than this cannot give FAST at the gate under the default policy.
pub const REPLICA_WARN: SignedDuration = SignedDuration::from_mins(15);

/// How a gate looks on the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Stale,
    /// Every token of the gate is revoked: its agent is refused.
    Revoked,
}

/// Classifies a gate; the reasons for `Degraded` are listed.
#[must_use]
pub fn classify(g: &GateStatus, now: Timestamp) -> (Health, Vec<String>) {
    if g.revoked_at.is_some() {
        return (Health::Revoked, vec!["agent token revoked".into()]);
    }
    if g.stale {
        return (Health::Stale, vec!["no recent heartbeat".into()]);
    }
    let mut why = Vec::new();
    if let Some(h) = &g.last_heartbeat {
        let down = h.heartbeat.devices.iter().filter(|d| !d.up).count();
        if down > 0 {
            why.push(format!("{down} device(s) down"));
        }
        if h.heartbeat.backlog > 0 {
            why.push(format!("backlog {}", h.heartbeat.backlog));
        }
        if !h.heartbeat.closed_lanes.is_empty() {
            why.push(format!("{} lane(s) closed", h.heartbeat.closed_lanes.len()));
        }
        match h.heartbeat.replica_as_of {
            Some(a) if now.duration_since(a) > REPLICA_WARN => why.push("replica old".into()),
            None => why.push("no replica".into()),
            Some(_) => {}
        }
        if h.clock_offset_ms.abs() > CLOCK_WARN_MS {
            why.push(format!("clock off by {} ms", h.clock_offset_ms));
        }
    }
    if why.is_empty() {
        (Health::Healthy, why)
    } else {
        (Health::Degraded, why)
    }
}

/// `old → new` policy ids, by name (`p3 → p4`), or in full when the names are the same
/// and only the settings hash tells them apart.
fn policy_change(old: &str, new: &str) -> String {
    let short = |id: &str| {
        id.split_once('#')
            .map_or(id.to_owned(), |(n, _)| n.to_owned())
    };
    if short(old) == short(new) {
        format!("{old} → {new}")
    } else {
        format!("{} → {}", short(old), short(new))
    }
}

/// `GET /gates`.
pub async fn grid(State(c): State<Central>, s: UiSession) -> Response {
    let l = s.lang;
    let now = Timestamp::now();
    let gates = match c.blocking(move |c| c.gates(now)).await {
        Ok(g) => g,
        Err(e) => return internal(&e),
    };
    let body = html! {
        @if gates.is_empty() { p.muted { (T::NoGates.get(l)) } }
        div.grid {
            @for g in &gates {
                @let (health, why) = classify(g, now);
                @let (class, label) = match health {
                    Health::Revoked => ("gate revoked", T::Revoked.get(l)),
                    Health::Stale => ("gate stale", T::Stale.get(l)),
                    Health::Degraded => ("gate degraded", T::Degraded.get(l)),
                    Health::Healthy => ("gate ok", T::Healthy.get(l)),
                };
                article class=(class) data-gate=(g.gate) {
                    h2 { (g.gate) " " span.health { (label) } }
                    p.small { (T::Port.get(l)) " " (g.port) @if !why.is_empty() { " · " (why.join(", ")) } }
                    dl {
                        @if let Some(at) = g.revoked_at {
                            dt { (T::TokenRevokedAt.get(l)) }
                            dd.warn { (fmt_time(at)) }
                        }
                        dt { (T::LastHeartbeat.get(l)) }
                        dd { @match &g.last_heartbeat {
                            Some(h) => { span title=(fmt_time(h.received_at)) { (fmt_duration(now.duration_since(h.received_at))) " " (T::Ago.get(l)) } },
                            None => { (T::Never.get(l)) },
                        } }
                        @if let Some(h) = &g.last_heartbeat {
                            dt { (T::ReplicaSeq.get(l)) }
                            dd { (h.heartbeat.replica_seq)
                                @if let Some(a) = h.heartbeat.replica_as_of { ", " (T::Age.get(l)) " " (fmt_duration(now.duration_since(a))) } }
                            dt { (T::Backlog.get(l)) }
                            dd class=(if h.heartbeat.backlog > 0 { "warn" } else { "" }) { (h.heartbeat.backlog)
                                @if let Some(o) = h.heartbeat.oldest_unacked_at { " (" (fmt_duration(now.duration_since(o))) ")" } }
                            @if !h.heartbeat.closed_lanes.is_empty() {
                                dt { (T::ClosedLanes.get(l)) }
                                dd.warn { @for c in &h.heartbeat.closed_lanes {
                                    span.closed-lane data-lane=(c.lane) {
                                        strong { (c.lane) " " (T::LaneClosedMark.get(l)) } ": " (c.reason)
                                        " (" (T::Since.get(l)) " " (fmt_time(c.since)) ")"
                                    } " "
                                } }
                            }
                            dt { (T::DeviceFaults.get(l)) }
                            dd { @let down: Vec<_> = h.heartbeat.devices.iter().filter(|d| !d.up).collect();
                                @if down.is_empty() { (T::None.get(l)) }
                                @for d in down { span.fault { (d.device) @if let Some(lane) = &d.lane { " (" (lane) ")" } ": " (d.detail) } " " } }
                            dt { (T::ClockOffset.get(l)) }
                            dd class=(if h.clock_offset_ms.abs() > CLOCK_WARN_MS { "warn" } else { "" }) { (h.clock_offset_ms) " ms" }
                        }
                        @if let Some(c) = &g.last_config {
                            dt { (T::LastConfigChange.get(l)) }
                            dd.config title=(c.changes.join("; ")) {
                                (T::PolicyWord.get(l)) " " (policy_change(&c.old_policy, &c.new_policy))
                                " " (T::AtWord.get(l)) " " (c.at.strftime("%H:%M")) ", " (T::ChangesWord.get(l)) ": " (c.changes.len())
                            }
                        }
                        dt { (T::Acked.get(l)) } dd { (g.acked_through) }
                        dt { (T::EventsStored.get(l)) } dd { (g.events_stored) }
                    }
                }
            }
        }
    };
    let mut r = layout(&s, Nav::Gates, T::Gates.get(l), body).into_response();
    // The grid is a wall display: refresh it every 15 s.
    r.headers_mut()
        .insert("refresh", axum::http::HeaderValue::from_static("15"));
    r
}

#[cfg(test)]
mod tests {
    use super::policy_change;

    #[test]
    fn a_policy_change_shows_names_or_full_ids_when_only_settings_differ() {
        assert_eq!(policy_change("p3#0011aabb", "p4#2233ccdd"), "p3 → p4");
        assert_eq!(
            policy_change("p3#0011aabb", "p3#2233ccdd"),
            "p3#0011aabb → p3#2233ccdd"
        );
    }
}
