//! The programme page: the benefit figures a customs administration shows its certified
//! companies — inspection rate, FAST share and median time at gate (transaction opened →
//! closed) for AEO against non-AEO traffic, per programme and per operator — as charts,
//! a table and a CSV download.
//!
//! A transaction counts as AEO traffic when the decision found every declared party in
//! the registry with status `ACTIVE`; otherwise (a party unknown, suspended, revoked, …,
//! or no party at all) it is non-AEO. Per programme, a transaction counts once for each
//! programme among its active parties; per operator, once for each declared operator.
//!
//! The figures are read from the roll-ups central keeps at ingest ([`crate::rollup`]),
//! over whole UTC hours (by decision time), so they are exact over any range and after
//! event retention. The median time at the gate is known to its histogram bucket: it is
//! shown as the bucket that holds it (5 s wide below 2 min, at most a sixth of its lower
//! bound above).

use std::collections::{BTreeMap, HashMap};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use protocol::schema::{Decision, EventBody, LaneDecision};
use uuid::Uuid;

use super::session::UiPage;
use super::svg;
use super::{Nav, RANGES, T, fmt_duration, internal, layout, pct, range_start};
use crate::model::StoredEvent;
use crate::rollup::{self, ProgrammeCounts};
use crate::service::Central;
use crate::store::StoreError;

pub use crate::rollup::is_aeo;

/// Figures for one group of transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub transactions: u64,
    pub inspected: u64,
    pub fast: u64,
    /// Times at the gate as a histogram: [`rollup::bucket_of`] → transactions, one per
    /// decision whose gate transaction was stored.
    pub times: BTreeMap<u16, u64>,
}

impl Figures {
    fn add(&mut self, d: &Decision, time_s: Option<i64>) {
        self.count(d.decision.as_str(), 1);
        if let Some(t) = time_s {
            *self.times.entry(rollup::bucket_of(t)).or_default() += 1;
        }
    }

    /// Adds `n` to a roll-up figure (a decision, or a time bucket `t:B`).
    fn count(&mut self, figure: &str, n: u64) {
        if let Some(b) = figure.strip_prefix(rollup::TIME) {
            if let Ok(b) = b.parse::<u16>() {
                *self.times.entry(b).or_default() += n;
            }
            return;
        }
        self.transactions += n;
        if figure == LaneDecision::Inspect.as_str() {
            self.inspected += n;
        } else if figure == LaneDecision::Fast.as_str() {
            self.fast += n;
        }
    }

    /// Inspected / transactions (0 when none).
    #[must_use]
    pub fn inspection_rate(&self) -> f64 {
        self.share(self.inspected)
    }

    /// FAST / transactions (0 when none).
    #[must_use]
    pub fn fast_share(&self) -> f64 {
        self.share(self.fast)
    }

    /// `part` / transactions (0 when none).
    #[allow(clippy::cast_precision_loss)]
    fn share(&self, part: u64) -> f64 {
        if self.transactions == 0 {
            0.0
        } else {
            part as f64 / self.transactions as f64
        }
    }

    /// The bucket of seconds at the gate, `[from, to)`, that holds the median (the lower
    /// middle for an even count), if any time is known; `to` is `None` for the open last
    /// bucket. The resolution is the bucket's width ([`rollup::bucket_bounds`]).
    #[must_use]
    pub fn median_time_s(&self) -> Option<(i64, Option<i64>)> {
        let total: u64 = self.times.values().sum();
        let rank = total.checked_sub(1)? / 2;
        let mut seen = 0u64;
        for (b, n) in &self.times {
            seen += n;
            if seen > rank {
                return Some(rollup::bucket_bounds(*b));
            }
        }
        None
    }
}

/// The benefit figures over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Benefits {
    pub aeo: Figures,
    pub non_aeo: Figures,
    /// By programme code (e.g. `EU-AEO`), AEO traffic only.
    pub per_programme: BTreeMap<String, Figures>,
    /// By operator id, with the operator's name as first declared.
    pub per_operator: BTreeMap<String, (String, Figures)>,
}

/// Computes the figures directly from events (decisions and gate transactions, in any
/// order): the definition the roll-ups ([`from_counts`]) must agree with, used to check
/// them.
#[must_use]
pub fn benefits(events: &[StoredEvent]) -> Benefits {
    let mut times: HashMap<Uuid, i64> = HashMap::new();
    for e in events {
        if let EventBody::Transaction { transaction: t } = &e.entry.body {
            times.insert(t.id, t.closed_at.duration_since(t.opened_at).as_secs());
        }
    }
    let mut b = Benefits::default();
    for e in events {
        let EventBody::Decision { decision: d } = &e.entry.body else {
            continue;
        };
        let time = times.get(&d.transaction_id).copied();
        let aeo = is_aeo(d);
        if aeo {
            b.aeo.add(d, time)
        } else {
            b.non_aeo.add(d, time)
        }
        let mut programmes: Vec<&str> = Vec::new();
        let mut operators: Vec<String> = Vec::new();
        for p in &d.parties {
            let Some(op) = &p.operator else { continue };
            if aeo {
                let code = op.programme().code();
                if !programmes.contains(&code) {
                    programmes.push(code);
                }
            }
            let key = op.to_string();
            if !operators.contains(&key) {
                b.per_operator
                    .entry(key.clone())
                    .or_insert_with(|| (p.name.clone(), Figures::default()))
                    .1
                    .add(d, time);
                operators.push(key);
            }
        }
        for code in programmes {
            b.per_programme
                .entry(code.to_owned())
                .or_default()
                .add(d, time);
        }
    }
    b
}

/// The figures from roll-up counts ([`crate::rollup`]).
#[must_use]
pub fn from_counts(c: &ProgrammeCounts) -> Benefits {
    let mut b = Benefits::default();
    for ((group, figure), n) in &c.counts {
        let f = if group == rollup::AEO {
            &mut b.aeo
        } else if group == rollup::NON_AEO {
            &mut b.non_aeo
        } else if let Some(p) = group.strip_prefix(rollup::PROGRAMME) {
            b.per_programme.entry(p.to_owned()).or_default()
        } else if let Some(op) = group.strip_prefix(rollup::OPERATOR) {
            &mut b
                .per_operator
                .entry(op.to_owned())
                .or_insert_with(|| {
                    (
                        c.names.get(op).cloned().unwrap_or_default(),
                        Figures::default(),
                    )
                })
                .1
        } else {
            continue;
        };
        f.count(figure, *n);
    }
    b
}

/// The figures over the whole UTC hours from the one `from` falls in (all time when
/// `None`) up to now, read from the roll-ups: exact over any range, no event is read.
///
/// # Errors
/// Store errors.
pub fn load(c: &Central, from: Option<Timestamp>) -> Result<Benefits, StoreError> {
    Ok(from_counts(&c.programme_counts(from, Timestamp::now())?))
}

/// The median's bucket, e.g. `60 s – 65 s`, or `≥ 6 h 0 min` for the open last one.
pub(super) fn median_text(f: &Figures) -> String {
    let d = |s: i64| fmt_duration(jiff::SignedDuration::from_secs(s));
    match f.median_time_s() {
        None => "—".to_owned(),
        Some((from, Some(to))) => format!("{} – {}", d(from), d(to)),
        Some((from, None)) => format!("≥ {}", d(from)),
    }
}

/// `GET /programme?hours=`.
pub async fn page(p: UiPage) -> Response {
    let (c, s, q) = (p.central, p.session, p.query);
    let l = s.lang;
    let hours = super::parse_hours(q.get("hours"), 24);
    let from = range_start(hours, Timestamp::now());
    let b = match c.blocking(move |c| load(c, from)).await {
        Ok(b) => b,
        Err(e) => return internal(&e),
    };
    let aeo = T::AeoTraffic.get(l);
    let non = T::NonAeoTraffic.get(l);
    #[allow(clippy::cast_precision_loss)]
    let med = |f: &Figures| f.median_time_s().map_or(0, |(from, _)| from) as f64;
    let max_med = med(&b.aeo).max(med(&b.non_aeo));
    let row = |label: String, f: &Figures| {
        html! {
            tr { td { (label) } td.num { (f.transactions) } td.num { (pct(f.inspection_rate())) } td.num { (pct(f.fast_share())) } td.num { (median_text(f)) } }
        }
    };
    let body = html! {
        p { (T::BenefitsIntro.get(l)) }
        form.filters method="get" action="/programme" {
            label { (T::Range.get(l)) select name="hours" {
                @for (h, t) in RANGES { option value=(h) selected[h == hours] { (t.get(l)) } }
            } }
            button { (T::Show.get(l)) }
            a.button href={"/programme.csv?hours=" (hours)} download { (T::DownloadCsv.get(l)) }
        }
        div.charts2 {
            (svg::hbars(T::InspectionRate.get(l), &[(aeo.to_owned(), b.aeo.inspection_rate(), "fast"), (non.to_owned(), b.non_aeo.inspection_rate(), "inspect")], 1.0, &|v| pct(v)))
            (svg::hbars(T::FastShare.get(l), &[(aeo.to_owned(), b.aeo.fast_share(), "fast"), (non.to_owned(), b.non_aeo.fast_share(), "inspect")], 1.0, &|v| pct(v)))
            (svg::hbars(T::MedianTime.get(l), &[(aeo.to_owned(), med(&b.aeo), "fast"), (non.to_owned(), med(&b.non_aeo), "inspect")], max_med, &|v| {
                #[allow(clippy::cast_possible_truncation)]
                let secs = v as i64;
                fmt_duration(jiff::SignedDuration::from_secs(secs))
            }))
        }
        table.benefits #benefits {
            thead { tr { th { (T::Group.get(l)) } th { (T::Transactions.get(l)) } th { (T::InspectionRate.get(l)) } th { (T::FastShare.get(l)) } th { (T::MedianTime.get(l)) } } }
            tbody {
                (row(aeo.to_owned(), &b.aeo))
                (row(non.to_owned(), &b.non_aeo))
            }
        }
        h2 { (T::PerProgramme.get(l)) }
        table.benefits { thead { tr { th { (T::Programme.get(l)) } th { (T::Transactions.get(l)) } th { (T::InspectionRate.get(l)) } th { (T::FastShare.get(l)) } th { (T::MedianTime.get(l)) } } }
            tbody { @for (p, f) in &b.per_programme { (row(p.clone(), f)) } } }
        h2 { (T::PerOperator.get(l)) }
        table.benefits { thead { tr { th { (T::Operator.get(l)) } th { (T::Transactions.get(l)) } th { (T::InspectionRate.get(l)) } th { (T::FastShare.get(l)) } th { (T::MedianTime.get(l)) } } }
            tbody { @for (op, (name, f)) in &b.per_operator {
                tr { td { a href={"/registry/" (op)} { (op) } br; small { (name) } } td.num { (f.transactions) } td.num { (pct(f.inspection_rate())) } td.num { (pct(f.fast_share())) } td.num { (median_text(f)) } }
            } } }
    };
    layout(&s, Nav::Programme, T::Benefits.get(l), body).into_response()
}

/// Writes the figures as CSV, one row per group, through [`crate::export::CsvOut`]
/// (RFC 4180 quoting; operator names that look like formulas are defused). The median
/// time at the gate is its bucket: `median_time_at_gate_s` up to `median_time_at_gate_to_s`
/// (empty for the open last bucket).
///
/// # Errors
/// Only if writing fails.
pub fn write_csv<W: std::io::Write>(b: &Benefits, out: W) -> Result<(), csv::Error> {
    let mut w = crate::export::CsvOut::new(out);
    w.row([
        "group",
        "key",
        "name",
        "transactions",
        "inspected",
        "inspection_rate",
        "fast",
        "fast_share",
        "median_time_at_gate_s",
        "median_time_at_gate_to_s",
    ])?;
    let mut rec = |group: &str, key: &str, name: &str, f: &Figures| {
        let median = f.median_time_s();
        w.row([
            group.to_owned(),
            key.to_owned(),
            name.to_owned(),
            f.transactions.to_string(),
            f.inspected.to_string(),
            format!("{:.4}", f.inspection_rate()),
            f.fast.to_string(),
            format!("{:.4}", f.fast_share()),
            median.map(|(from, _)| from.to_string()).unwrap_or_default(),
            median
                .and_then(|(_, to)| to)
                .map(|to| to.to_string())
                .unwrap_or_default(),
        ])
    };
    rec("traffic", "AEO", "AEO traffic", &b.aeo)?;
    rec("traffic", "NON_AEO", "non-AEO traffic", &b.non_aeo)?;
    for (p, f) in &b.per_programme {
        let name = protocol::operator::Programme::from_code(p).map_or("", |x| x.name());
        rec("programme", p, name, f)?;
    }
    for (op, (name, f)) in &b.per_operator {
        rec("operator", op, name, f)?;
    }
    w.finish()
}

/// `GET /programme.csv?hours=`.
pub async fn csv(p: UiPage) -> Response {
    let (c, q) = (p.central, p.query);
    let hours = super::parse_hours(q.get("hours"), 24);
    let from = range_start(hours, Timestamp::now());
    let out = c
        .blocking(move |c| {
            let b = load(c, from)?;
            let mut buf = Vec::new();
            write_csv(&b, &mut buf)?;
            Ok::<_, anyhow::Error>(buf)
        })
        .await;
    match out {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"aeogate-benefits-{hours}h.csv\""),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => internal(&e),
    }
}

/// One group's figures as JSON (the API's form of the programme page).
#[must_use]
pub fn figures_json(f: &Figures) -> serde_json::Value {
    serde_json::json!({
        "transactions": f.transactions,
        "inspected": f.inspected,
        "fast": f.fast,
        "inspection_rate": f.inspection_rate(),
        "fast_share": f.fast_share(),
        "median_time_at_gate_s": f.median_time_s().map(|(from, _)| from),
    })
}

/// The benefit figures as JSON: AEO and non-AEO traffic, per programme, and a page of
/// operators (busiest first; `offset`/`limit`).
#[must_use]
pub fn benefits_json(b: &Benefits, offset: usize, limit: usize) -> serde_json::Value {
    let mut ops: Vec<(&String, &(String, Figures))> = b.per_operator.iter().collect();
    ops.sort_by(|a, z| {
        z.1.1
            .transactions
            .cmp(&a.1.1.transactions)
            .then(a.0.cmp(z.0))
    });
    let total = ops.len();
    let page: Vec<serde_json::Value> = ops
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(id, (name, f))| {
            let mut v = figures_json(f);
            v["operator"] = serde_json::Value::String(id.clone());
            v["name"] = serde_json::Value::String(name.clone());
            v
        })
        .collect();
    let next = (offset + limit < total).then(|| (offset + limit).to_string());
    serde_json::json!({
        "aeo": figures_json(&b.aeo),
        "non_aeo": figures_json(&b.non_aeo),
        "per_programme": b.per_programme.iter().map(|(k, f)| (k.clone(), figures_json(f))).collect::<serde_json::Map<_, _>>(),
        "per_operator": { "items": page, "next_cursor": next, "total": total },
        // Kept for clients of the earlier event scan: roll-ups are never cut short.
        "truncated": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::operator::OperatorId;
    use protocol::schema::{
        AeoStatus, CloseReason, GateId, GateTransaction, JournalEntry, LaneId, PartyRole,
        PartyView, SCHEMA_VERSION,
    };

    fn ev(body: EventBody) -> StoredEvent {
        let at: Timestamp = "2025-03-01T10:00:00Z".parse().expect("t");
        StoredEvent {
            entry: JournalEntry {
                v: SCHEMA_VERSION,
                agent: GateId::parse("G1").expect("gate"),
                seq: 1,
                id: Uuid::nil(),
                at,
                prev_hash: String::new(),
                hash: String::new(),
                body,
            },
            received_at: at,
            chain_ok: true,
            refused: false,
        }
    }

    fn txn(id: Uuid, secs: i64) -> StoredEvent {
        let at: Timestamp = "2025-03-01T10:00:00Z".parse().expect("t");
        ev(EventBody::Transaction {
            transaction: GateTransaction {
                v: SCHEMA_VERSION,
                id,
                gate: GateId::parse("G1").expect("gate"),
                lane: LaneId::parse("L1").expect("lane"),
                opened_at: at,
                closed_at: at
                    .checked_add(jiff::SignedDuration::from_secs(secs))
                    .expect("t"),
                close_reason: CloseReason::Departure,
                reads: vec![],
            },
        })
    }

    fn dec(id: Uuid, d: LaneDecision, status: Option<AeoStatus>) -> StoredEvent {
        ev(EventBody::Decision {
            decision: Decision {
                parties: vec![PartyView {
                    role: PartyRole::Importer,
                    operator: Some(OperatorId::parse("EU-AEO:DE123456789012345").expect("op")),
                    name: "Hafen Import GmbH".into(),
                    status,
                    security: true,
                    mra: None,
                    contact_point: None,
                }],
                policy: "p".into(),
                ..crate::test_decision::decision(
                    id,
                    GateId::parse("G1").expect("gate"),
                    LaneId::parse("L1").expect("lane"),
                    d,
                    "r",
                    "2025-03-01T10:00:00Z".parse().expect("t"),
                )
            },
        })
    }

    #[test]
    fn operator_names_that_look_like_formulas_are_defused_in_the_csv() {
        let id = Uuid::from_u128(9);
        for name in [
            "=HYPERLINK(\"http://x.example\",\"x\")",
            "+1+cmd|' /C calc'!A0",
        ] {
            let mut d = dec(id, LaneDecision::Fast, Some(AeoStatus::Active));
            if let EventBody::Decision { decision } = &mut d.entry.body {
                decision.parties[0].name = name.to_owned();
            }
            let b = benefits(&[txn(id, 60), d]);
            let mut out = Vec::new();
            write_csv(&b, &mut out).expect("csv");
            let mut r = csv::Reader::from_reader(out.as_slice());
            let cells: Vec<String> = r
                .records()
                .map(|rec| rec.expect("record"))
                .filter(|rec| rec.get(0) == Some("operator"))
                .map(|rec| rec.get(2).unwrap_or_default().to_owned())
                .collect();
            assert_eq!(cells, vec![format!("'{name}")], "{name}");
        }
    }

    #[test]
    fn aeo_and_non_aeo_traffic_are_compared() {
        let ids: Vec<Uuid> = (1..=4u128).map(Uuid::from_u128).collect();
        let events = vec![
            txn(ids[0], 60),
            dec(ids[0], LaneDecision::Fast, Some(AeoStatus::Active)),
            txn(ids[1], 100),
            dec(ids[1], LaneDecision::Fast, Some(AeoStatus::Active)),
            txn(ids[2], 900),
            dec(ids[2], LaneDecision::Inspect, Some(AeoStatus::Suspended)),
            dec(ids[3], LaneDecision::Standard, None),
        ];
        let b = benefits(&events);
        assert_eq!((b.aeo.transactions, b.non_aeo.transactions), (2, 2));
        assert!((b.aeo.fast_share() - 1.0).abs() < 1e-9);
        assert!((b.non_aeo.inspection_rate() - 0.5).abs() < 1e-9);
        assert_eq!(b.aeo.median_time_s(), Some((60, Some(65))));
        assert_eq!(
            b.non_aeo.median_time_s(),
            Some((900, Some(960))),
            "one of two had a stored transaction"
        );
        assert_eq!(
            b.per_programme.get("EU-AEO").map(|f| f.transactions),
            Some(2)
        );
        let (name, f) = b
            .per_operator
            .get("EU-AEO:DE123456789012345")
            .expect("operator");
        assert_eq!(
            (name.as_str(), f.transactions),
            ("Hafen Import GmbH", 4),
            "every decision names it"
        );
        let mut out = Vec::new();
        write_csv(&b, &mut out).expect("csv");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.lines()
                .any(|l| l.starts_with("traffic,AEO,AEO traffic,2,0,0.0000,2,1.0000,60,65")),
            "{text}"
        );
    }
}
