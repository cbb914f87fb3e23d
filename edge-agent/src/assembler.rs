//! Sans-IO gate transaction assembly, per lane.

use jiff::Timestamp;
use protocol::schema::{GateId, GateTransaction, LaneId, ReadSource, ReadValue};
use uuid::Uuid;

use crate::config::LaneConfig;

/// One read as a source reports it, before folding.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRead {
    pub lane: LaneId,
    pub source: ReadSource,
    pub device: String,
    pub raw: String,
    pub value: ReadValue,
    pub at: Timestamp,
    pub antenna: Option<u8>,
    pub rssi: Option<i16>,
    pub confidence: Option<u8>,
    pub entered_by: Option<String>,
}

/// Input to the assembler.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblerEvent {
    Read(RawRead),
    Presence {
        lane: LaneId,
        loop_id: u8,
        present: bool,
        at: Timestamp,
    },
}

/// Output of the assembler.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblerOutput {
    Opened {
        lane: LaneId,
        id: Uuid,
        at: Timestamp,
    },
    Updated {
        lane: LaneId,
        id: Uuid,
    },
    Closed(GateTransaction),
    OrphanRead(RawRead),
}

/// Per-lane transaction assembly.
#[derive(Debug)]
pub struct Assembler {
    gate: GateId,
}

impl Assembler {
    /// An assembler for these lanes.
    #[must_use]
    pub fn new(gate: GateId, lanes: &[LaneConfig]) -> Self {
        let _ = lanes;
        Self { gate }
    }

    /// Folds one event in.
    pub fn handle(&mut self, ev: AssemblerEvent) -> Vec<AssemblerOutput> {
        match ev {
            AssemblerEvent::Read(r) => vec![AssemblerOutput::OrphanRead(r)],
            AssemblerEvent::Presence { .. } => Vec::new(),
        }
    }

    /// Advances time: closes transactions whose timers expired.
    pub fn tick(&mut self, now: Timestamp) -> Vec<AssemblerOutput> {
        let _ = now;
        Vec::new()
    }

    /// The in-progress transaction on a lane.
    #[must_use]
    pub fn open(&self, lane: &LaneId) -> Option<&GateTransaction> {
        let _ = (lane, &self.gate);
        None
    }

    /// Closes every open transaction (shutdown).
    pub fn close_all(&mut self, now: Timestamp) -> Vec<AssemblerOutput> {
        let _ = now;
        Vec::new()
    }
}
