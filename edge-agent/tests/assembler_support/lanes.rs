// The gate the assembler's tests run on: gate G1, lane L1 with a presence loop, lane L2
// without. Included into the unit tests of `src/assembler.rs` (by `include!`) and into
// `tests/assembler_props.rs` (as a module); each brings `Assembler`, `GateId`,
// `LaneConfig`, `LaneId` and `Routes` into scope around it.

use std::time::Duration;

/// The timings the test lanes share; the graces are the configuration's defaults.
pub struct Lanes {
    /// How long a transaction may stay open.
    pub transaction_timeout: Duration,
    /// How long a loop-less lane waits without reads before it closes.
    pub quiet_close: Duration,
}

impl Lanes {
    /// Lane `id`, with or without a presence loop, routed to `f`, `s` and `i`.
    pub fn lane(&self, id: &str, presence_loop: bool) -> LaneConfig {
        LaneConfig {
            id: LaneId::parse(id).expect("lane id"),
            name: id.into(),
            routes: Routes {
                fast: "f".into(),
                standard: "s".into(),
                inspect: "i".into(),
            },
            presence_loop,
            transaction_timeout: self.transaction_timeout,
            quiet_close: self.quiet_close,
            pre_open_grace: Duration::from_secs(5),
            departure_grace: Duration::from_secs(1),
        }
    }

    /// An assembler for G1 with L1 (a loop) and L2 (no loop).
    pub fn assembler(&self) -> Assembler {
        on_g1(&[self.lane("L1", true), self.lane("L2", false)])
    }
}

/// An assembler for gate G1 with `lanes`.
pub fn on_g1(lanes: &[LaneConfig]) -> Assembler {
    Assembler::new(GateId::parse("G1").expect("gate"), lanes)
}
