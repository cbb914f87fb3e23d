//! Lane control: which lanes a supervisor closed, why and since when
//! (`lane_control_v1`: lane id → [`LaneClosure`] JSON). A lane is in the table while it is
//! closed; the agent re-applies every entry at start, so a closed lane stays closed across
//! a restart.

use jiff::Timestamp;
use protocol::schema::LaneId;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Store;

const LANE_CONTROL: TableDefinition<&str, &[u8]> = TableDefinition::new("lane_control_v1");

/// Why and since when a lane is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneClosure {
    pub reason: String,
    /// The console user who closed it.
    pub by: String,
    pub since: Timestamp,
}

impl Store {
    /// Records `lane` as closed (`Some`) or open (`None`), durably.
    ///
    /// # Errors
    /// Storage failures.
    pub fn set_lane_closure(
        &self,
        lane: &LaneId,
        closure: Option<&LaneClosure>,
    ) -> Result<(), redb::Error> {
        let mut w = self.database().begin_write()?;
        w.set_durability(redb::Durability::Immediate)?;
        {
            let mut t = w.open_table(LANE_CONTROL)?;
            match closure {
                Some(c) => {
                    let json = serde_json::to_vec(c)
                        .map_err(|e| redb::Error::Corrupted(format!("lane closure: {e}")))?;
                    t.insert(lane.as_str(), json.as_slice())?;
                }
                None => {
                    t.remove(lane.as_str())?;
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Every closed lane. An entry that does not parse (or names a lane id that is not
    /// valid) is reported as closed with the reason saying so: a closure is never lost to
    /// a bad record.
    ///
    /// # Errors
    /// Storage failures.
    pub fn lane_closures(&self) -> Result<Vec<(LaneId, LaneClosure)>, redb::Error> {
        let r = self.database().begin_read()?;
        let t = match r.open_table(LANE_CONTROL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let Ok(lane) = LaneId::parse(k.value()) else {
                tracing::error!(
                    lane = k.value(),
                    "lane_control_v1 names an invalid lane id; ignored"
                );
                continue;
            };
            let closure = serde_json::from_slice(v.value()).unwrap_or_else(|e| LaneClosure {
                reason: format!("closure record unreadable ({e})"),
                by: String::new(),
                since: Timestamp::now(),
            });
            out.push((lane, closure));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use protocol::schema::GateId;

    use super::*;

    #[test]
    fn a_closure_survives_reopening_the_store_and_reopening_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.redb");
        let gate = GateId::parse("G1").expect("gate");
        let lane = LaneId::parse("L2").expect("lane");
        let closure = LaneClosure {
            reason: "resurfacing".into(),
            by: "sup1".into(),
            since: Timestamp::UNIX_EPOCH,
        };
        {
            let store = Store::open(&path, gate.clone()).expect("open");
            assert!(store.lane_closures().expect("read").is_empty());
            store
                .set_lane_closure(&lane, Some(&closure))
                .expect("close");
        }
        let store = Store::open(&path, gate).expect("reopen");
        assert_eq!(
            store.lane_closures().expect("read"),
            vec![(lane.clone(), closure)]
        );
        store.set_lane_closure(&lane, None).expect("reopen lane");
        assert!(store.lane_closures().expect("read").is_empty());
    }
}
