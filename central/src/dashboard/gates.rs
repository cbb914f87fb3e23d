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
use maud::{Markup, html};
use protocol::i18n::Lang;

use super::session::UiSession;
use super::{Nav, T, fmt_duration, fmt_time, internal, layout};
use crate::model::{GateHealth, GateStatus};
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
        match &h.heartbeat.clock {
            Some(c) if !c.trusted => why.push(format!(
                "clock untrusted ({})",
                c.offset_ms
                    .map_or_else(|| "not measured".into(), |o| format!("{o:+} ms"))
            )),
            Some(_) => {}
            None if h.clock_offset_ms.abs() > CLOCK_WARN_MS => {
                why.push(format!("clock off by {} ms", h.clock_offset_ms));
            }
            None => {}
        }
    }
    if why.is_empty() {
        (Health::Healthy, why)
    } else {
        (Health::Degraded, why)
    }
}

/// The clock offset of a gate: the agent's own NTP-style measurement when its heartbeat
/// carries one ("gate ahead by 3.2 s", with its trust in words, not colour alone), else
/// central's estimate from the heartbeat's arrival.
fn clock_cell(h: &GateHealth, l: Lang) -> Markup {
    let words = |ms: i64| {
        #[allow(clippy::cast_precision_loss)]
        let s = format!("{:.1} s", ms.unsigned_abs() as f64 / 1000.0);
        if ms < 0 {
            format!("{} {s}", T::GateBehind.get(l))
        } else {
            format!("{} {s}", T::GateAhead.get(l))
        }
    };
    match &h.heartbeat.clock {
        Some(c) => html! {
            dd class=(if c.trusted { "clock" } else { "clock warn" }) data-offset-ms=[c.offset_ms] data-trusted=(c.trusted) {
                @if let Some(o) = c.offset_ms { (words(o)) }
                " · "
                @if c.trusted { (T::ClockWithinBound.get(l)) } @else { strong { "⚠ " (T::ClockUntrusted.get(l)) } }
            }
        },
        // Central's estimate is its receive time minus the agent's send time: positive
        // when the gate is behind.
        None => html! {
            dd class=(if h.clock_offset_ms.abs() > CLOCK_WARN_MS { "clock warn" } else { "clock" }) {
                (words(-h.clock_offset_ms)) " (" (T::ClockEstimated.get(l)) ")"
            }
        },
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
                            (clock_cell(h, l))
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
    use super::*;
    use protocol::schema::{ClockReport, GateId, Heartbeat, SCHEMA_VERSION};

    fn gate(clock: Option<ClockReport>, central_estimate_ms: i64) -> GateStatus {
        let now = Timestamp::now();
        GateStatus {
            gate: GateId::parse("PORT1-G1").expect("gate"),
            port: "PORT1".into(),
            stale: false,
            last_heartbeat: Some(GateHealth {
                heartbeat: Heartbeat {
                    v: SCHEMA_VERSION,
                    agent: GateId::parse("PORT1-G1").expect("gate"),
                    at: now,
                    devices: Vec::new(),
                    replica_seq: 1,
                    replica_as_of: Some(now),
                    journal_head: 0,
                    acked_seq: 0,
                    backlog: 0,
                    oldest_unacked_at: None,
                    version: "0".into(),
                    closed_lanes: Vec::new(),
                    clock,
                },
                received_at: now,
                clock_offset_ms: central_estimate_ms,
            }),
            acked_through: 0,
            events_stored: 0,
            revoked_at: None,
            last_config: None,
        }
    }

    fn report(offset_ms: i64, trusted: bool) -> ClockReport {
        ClockReport {
            offset_ms: Some(offset_ms),
            delay_ms: Some(2),
            trusted,
            host_synced: None,
            max_offset_ms: 2_000,
            measured_at: None,
        }
    }

    #[test]
    fn an_untrusted_clock_degrades_the_gate_and_its_own_measurement_wins() {
        let now = Timestamp::now();
        let (h, why) = classify(&gate(Some(report(3_200, false)), 0), now);
        assert_eq!(h, Health::Degraded);
        assert_eq!(why, vec!["clock untrusted (+3200 ms)".to_owned()]);
        // Central's own estimate is only a fallback: a trusted measurement wins over it.
        let (h, _) = classify(&gate(Some(report(10, true)), 9_000), now);
        assert_eq!(h, Health::Healthy);
        let (h, _) = classify(&gate(None, 9_000), now);
        assert_eq!(h, Health::Degraded);
    }

    #[test]
    fn the_offset_is_said_in_words_ahead_or_behind() {
        let g = gate(Some(report(-3_200, false)), 0);
        let h = g.last_heartbeat.as_ref().expect("heartbeat");
        let html = clock_cell(h, Lang::En).into_string();
        assert!(html.contains("gate behind by 3.2 s"), "{html}");
        assert!(html.contains("UNTRUSTED"), "{html}");
        let html = clock_cell(h, Lang::Es).into_string();
        assert!(
            html.contains("puerta atrasada 3.2 s") && html.contains("NO FIABLE"),
            "{html}"
        );
        // An older agent: central's estimate (receive minus send; positive = behind).
        let g = gate(None, 1_500);
        let html = clock_cell(g.last_heartbeat.as_ref().expect("hb"), Lang::En).into_string();
        assert!(
            html.contains("gate behind by 1.5 s") && html.contains("estimated"),
            "{html}"
        );
    }

    #[test]
    fn a_policy_change_shows_names_or_full_ids_when_only_settings_differ() {
        assert_eq!(policy_change("p3#0011aabb", "p4#2233ccdd"), "p3 → p4");
        assert_eq!(
            policy_change("p3#0011aabb", "p3#2233ccdd"),
            "p3#0011aabb → p3#2233ccdd"
        );
    }
}
