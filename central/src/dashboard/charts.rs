//! Charts of decisions over a selectable range: decisions per hour by outcome for each
//! gate (stacked bars), and the exception rate and FAST share per gate (lines), from the
//! store's hourly counters.

use std::collections::{BTreeMap, HashMap};

use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use maud::html;

use super::session::UiPage;
use super::svg::{self, Series};
use super::{Nav, RANGES, T, internal, layout, pct};
use crate::model::HourStats;
use crate::store::StoreError;

/// Classes for per-gate lines, in turn.
const LINE_CLASSES: [&str; 6] = ["s1", "s2", "s3", "s4", "s5", "s6"];

fn hour_floor(t: Timestamp) -> Timestamp {
    let s = t.as_second();
    Timestamp::from_second(s - s.rem_euclid(3600)).unwrap_or(t)
}

/// One gate's counts laid out on the range's hours (missing hours are zero).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateSeries {
    pub fast: Vec<f64>,
    pub standard: Vec<f64>,
    pub inspect: Vec<f64>,
    pub exception_rate: Vec<f64>,
    pub fast_share: Vec<f64>,
}

/// Lays hourly stats out per gate over `hours` (ascending hour starts).
#[must_use]
pub fn layout_series(stats: &[HourStats], hours: &[Timestamp]) -> BTreeMap<String, GateSeries> {
    let index: HashMap<i64, usize> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_second(), i))
        .collect();
    let n = hours.len();
    let mut out: BTreeMap<String, GateSeries> = BTreeMap::new();
    for s in stats {
        let (Some(g), Some(h)) = (&s.gate, s.hour) else {
            continue;
        };
        let Some(&i) = index.get(&hour_floor(h).as_second()) else {
            continue;
        };
        let e = out.entry(g.to_string()).or_insert_with(|| GateSeries {
            fast: vec![0.0; n],
            standard: vec![0.0; n],
            inspect: vec![0.0; n],
            exception_rate: vec![0.0; n],
            fast_share: vec![0.0; n],
        });
        #[allow(clippy::cast_precision_loss)]
        {
            e.fast[i] += s.fast as f64;
            e.standard[i] += s.standard as f64;
            e.inspect[i] += s.inspect as f64;
            let total = (s.fast + s.standard + s.inspect) as f64;
            if total > 0.0 {
                e.exception_rate[i] = s.exceptions as f64 / total;
                e.fast_share[i] = s.fast as f64 / total;
            }
        }
    }
    out
}

/// `GET /charts?hours=&gate=`.
pub async fn page(p: UiPage) -> Response {
    let (c, s, q) = (p.central, p.session, p.query);
    let l = s.lang;
    let mut hours = super::parse_hours(q.get("hours"), 24);
    if hours == 0 {
        hours = 168;
    }
    let gate = q
        .get("gate")
        .filter(|g| !g.is_empty())
        .and_then(|g| protocol::schema::GateId::parse(g).ok());
    let now = Timestamp::now();
    let to = hour_floor(now)
        .checked_add(SignedDuration::from_hours(1))
        .unwrap_or(now);
    let from = to
        .checked_sub(SignedDuration::from_hours(i64::from(hours)))
        .unwrap_or(to);
    let g2 = gate.clone();
    let out = c
        .blocking(move |c| {
            let stats = c.hourly_stats(g2.as_ref(), from, to)?;
            let gates: Vec<String> = c
                .gate_ports()?
                .into_iter()
                .map(|(_, g)| g.to_string())
                .collect();
            Ok::<_, StoreError>((stats, gates))
        })
        .await;
    let (stats, all_gates) = match out {
        Ok(x) => x,
        Err(e) => return internal(&e),
    };
    let hour_list: Vec<Timestamp> = (0..hours)
        .filter_map(|i| {
            from.checked_add(SignedDuration::from_hours(i64::from(i)))
                .ok()
        })
        .collect();
    let labels: Vec<String> = hour_list
        .iter()
        .map(|h| {
            if hours <= 24 {
                h.strftime("%H:00").to_string()
            } else {
                h.strftime("%d %Hh").to_string()
            }
        })
        .collect();
    let per_gate = layout_series(&stats, &hour_list);
    let lines_for = |pick: fn(&GateSeries) -> &Vec<f64>| -> Vec<Series> {
        per_gate
            .iter()
            .enumerate()
            .map(|(i, (g, gs))| Series {
                name: g.clone(),
                class: LINE_CLASSES[i % LINE_CLASSES.len()],
                values: pick(gs).clone(),
            })
            .collect()
    };
    let body = html! {
        form.filters method="get" action="/charts" {
            label { (T::Range.get(l)) select name="hours" {
                @for (h, t) in RANGES.iter().filter(|(h, _)| *h > 1) { option value=(h) selected[*h == hours] { (t.get(l)) } }
            } }
            label { (T::Gate.get(l)) select name="gate" {
                option value="" { (T::AllGates.get(l)) }
                @for g in &all_gates { option value=(g) selected[gate.as_ref().is_some_and(|x| x.as_str() == g)] { (g) } }
            } }
            button { (T::Show.get(l)) }
        }
        p.small { "UTC " (super::fmt_time(from)) " – " (super::fmt_time(to)) }
        @if per_gate.is_empty() { p.muted #no-data { (T::NoData.get(l)) } }
        @for (g, gs) in &per_gate {
            (svg::stacked_bars(&format!("{} — {}", T::DecisionsPerHour.get(l), g), &labels, &[
                Series { name: "FAST".into(), class: "fast", values: gs.fast.clone() },
                Series { name: "STANDARD".into(), class: "standard", values: gs.standard.clone() },
                Series { name: "INSPECT".into(), class: "inspect", values: gs.inspect.clone() },
            ]))
        }
        @if !per_gate.is_empty() {
            (svg::lines(T::ExceptionRate.get(l), &labels, &lines_for(|g| &g.exception_rate), 0.5, &|v| pct(v)))
            (svg::lines(T::FastShare.get(l), &labels, &lines_for(|g| &g.fast_share), 1.0, &|v| pct(v)))
        }
    };
    layout(&s, Nav::Charts, T::Charts.get(l), body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::GateId;

    #[test]
    fn hours_without_decisions_are_zero_and_rates_are_per_hour() {
        let h0: Timestamp = "2025-03-01T10:00:00Z".parse().expect("t");
        let h1 = h0.checked_add(SignedDuration::from_hours(1)).expect("t");
        let h2 = h1.checked_add(SignedDuration::from_hours(1)).expect("t");
        let stats = vec![HourStats {
            gate: Some(GateId::parse("G1").expect("gate")),
            hour: Some(h1),
            fast: 6,
            standard: 2,
            inspect: 2,
            exceptions: 1,
            exception_rate: 0.1,
        }];
        let s = layout_series(&stats, &[h0, h1, h2]);
        let g = s.get("G1").expect("gate laid out");
        assert_eq!(g.fast, vec![0.0, 6.0, 0.0]);
        assert!((g.exception_rate[1] - 0.1).abs() < 1e-9);
        assert!((g.fast_share[1] - 0.6).abs() < 1e-9);
    }
}
