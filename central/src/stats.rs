//! Decision statistics: under which hourly figures a decision counts, and how an hour's
//! counts become [`HourStats`]. Backends store the counts; the rules are here.

use jiff::Timestamp;
use protocol::schema::{Decision, GateId};

use crate::model::HourStats;

/// The figure for seal or container exceptions, counted beside the outcome.
pub const EXCEPTION: &str = "EXCEPTION";

/// Start of the UTC hour `t` falls in, in seconds since the epoch.
#[must_use]
pub fn hour_start(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600) * 3600
}

/// The hourly figures a decision adds one to: its outcome, and [`EXCEPTION`] for a seal
/// exception.
#[must_use]
pub fn hour_figures(d: &Decision) -> Vec<&'static str> {
    let mut kinds = vec![d.decision.as_str()];
    if d.is_seal_exception() {
        kinds.push(EXCEPTION);
    }
    kinds
}

/// Adds a stored hourly count to an hour's figures.
pub fn add_count(s: &mut HourStats, figure: &str, n: u64) {
    match figure {
        "FAST" => s.fast += n,
        "STANDARD" => s.standard += n,
        "INSPECT" => s.inspect += n,
        EXCEPTION => s.exceptions += n,
        _ => {}
    }
}

/// Completes an hour's figures: its gate, its start and the exception rate (exceptions
/// over decisions, 0 without decisions).
#[must_use]
pub fn finish_hour(gate: &str, hour: i64, mut s: HourStats) -> HourStats {
    s.gate = GateId::parse(gate).ok();
    s.hour = Timestamp::from_second(hour).ok();
    let total = s.fast + s.standard + s.inspect;
    #[allow(clippy::cast_precision_loss)]
    {
        s.exception_rate = if total == 0 {
            0.0
        } else {
            s.exceptions as f64 / total as f64
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_without_decisions_has_rate_zero_and_exceptions_divide_by_decisions() {
        let empty = finish_hour("G1", 3600, HourStats::default());
        assert!(empty.exception_rate.abs() < f64::EPSILON);
        let mut s = HourStats::default();
        add_count(&mut s, "FAST", 3);
        add_count(&mut s, "INSPECT", 1);
        add_count(&mut s, EXCEPTION, 1);
        add_count(&mut s, "SOMETHING_ELSE", 7);
        let s = finish_hour("G1", 7200, s);
        assert!(
            (s.exception_rate - 0.25).abs() < 1e-9,
            "{}",
            s.exception_rate
        );
        assert_eq!(s.gate.as_ref().map(GateId::as_str), Some("G1"));
        assert_eq!(s.hour.map(Timestamp::as_second), Some(7200));
    }

    #[test]
    fn hours_start_on_the_hour_also_before_the_epoch() {
        assert_eq!(hour_start(Timestamp::from_second(7199).expect("t")), 3600);
        assert_eq!(hour_start(Timestamp::from_second(-1).expect("t")), -3600);
    }
}
