//! Live updates across central instances on one database (LISTEN/NOTIFY).
//!
//! A transaction that opens or changes cases, or appends registry changes, also sends a
//! notice on the channel [`CHANNEL`] naming the instance it ran on, the case ids and the
//! registry's last seq. PostgreSQL delivers a notice when (and only if) its transaction
//! commits. Every instance listens on a connection of its own ([`PgStore::follow`]),
//! skips its own notices (it published those itself), loads the cases named and hands
//! them, and the new registry seq, to its live channels: a case opened from a batch that
//! instance A took reaches a dashboard connected to instance B, and a replica long-polling
//! B learns of a change made through A.
//!
//! A notice sent while an instance's listening connection is down is not replayed (the
//! dashboard shows it on its next load; a long poll sees it when it ends).

use std::time::Duration;

use postgres::Client;

use super::tx::{Statements, Tx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use postgres::fallible_iterator::FallibleIterator as _;

use super::{PgStore, StoreError, case_tables};
use crate::model::Case;

/// The notification channel.
pub const CHANNEL: &str = "aeogate_central";

/// How often the listener checks whether it should stop, and waits before reconnecting.
const TICK: Duration = Duration::from_millis(500);

/// The payload of one notice.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The instance whose transaction sent it.
    from: Uuid,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cases: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registry_seq: Option<u64>,
}

/// What another instance did, as the live channels need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveUpdate {
    /// A case opened or changed.
    Case(Box<Case>),
    /// The registry's last seq.
    RegistrySeq(u64),
}

/// Sends a notice within `tx` (delivered on commit). Ids are sent in chunks, well under
/// PostgreSQL's 8,000-byte payload limit.
pub(super) fn notify(
    tx: &mut Tx<'_>,
    from: Uuid,
    cases: &[u64],
    registry_seq: Option<u64>,
) -> Result<(), StoreError> {
    let mut send = |cases: Vec<u64>, registry_seq| -> Result<(), StoreError> {
        let payload = serde_json::to_string(&Notice {
            from,
            cases,
            registry_seq,
        })
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])?;
        Ok(())
    };
    if cases.is_empty() {
        return send(Vec::new(), registry_seq);
    }
    for (i, chunk) in cases.chunks(200).enumerate() {
        send(chunk.to_vec(), if i == 0 { registry_seq } else { None })?;
    }
    Ok(())
}

impl PgStore {
    /// Listens for other instances' notices and hands each update to `on` until `go_on`
    /// says to stop (checked at least every half second). Blocks: run it on a thread of its
    /// own, outside any tokio runtime (the blocking client runs one of its own). A lost
    /// connection is made again (after a pause), until stopped.
    pub fn follow(&self, go_on: &dyn Fn() -> bool, on: &mut dyn FnMut(LiveUpdate)) {
        let mut failures: u32 = 0;
        while go_on() {
            match self.listen(go_on, &mut failures, on) {
                Ok(()) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Said once per outage, not at every attempt.
                    if failures == 1 {
                        tracing::warn!(error = %e, "live updates from other central instances paused; reconnecting");
                    }
                    // A pause growing to 5 s, in steps that notice a stop.
                    for _ in 0..failures.min(10) {
                        if !go_on() {
                            return;
                        }
                        std::thread::sleep(TICK);
                    }
                }
            }
        }
    }

    fn listen(
        &self,
        go_on: &dyn Fn() -> bool,
        failures: &mut u32,
        on: &mut dyn FnMut(LiveUpdate),
    ) -> Result<(), StoreError> {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let mut client: Client = config.connect(self.tls.clone())?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        if *failures > 0 {
            tracing::info!("live updates from other central instances resumed");
            *failures = 0;
        }
        while go_on() {
            let mut got = Vec::new();
            {
                // Wait for one notice, then take those already pending without waiting.
                let mut notices = client.notifications();
                let first = notices.timeout_iter(TICK).next()?;
                if let Some(n) = first {
                    got.push(n.payload().to_owned());
                    let mut pending = notices.iter();
                    while got.len() < 1_000
                        && let Some(n) = pending.next()?
                    {
                        got.push(n.payload().to_owned());
                    }
                }
            }
            for payload in got {
                let Ok(notice) = serde_json::from_str::<Notice>(&payload) else {
                    tracing::warn!(%payload, "unreadable notice on {CHANNEL}");
                    continue;
                };
                if notice.from == self.instance {
                    continue;
                }
                if let Some(seq) = notice.registry_seq {
                    on(LiveUpdate::RegistrySeq(seq));
                }
                for id in notice.cases {
                    let mut tx = Tx::new(client.transaction()?, Statements::default());
                    let case = case_tables::load_case(&mut tx, id, false)?;
                    tx.commit()?;
                    if let Some(c) = case {
                        on(LiveUpdate::Case(Box::new(c)));
                    }
                }
            }
        }
        Ok(())
    }

    /// The id this store sends its notices under (one per opened store, i.e. instance).
    #[must_use]
    pub fn instance(&self) -> Uuid {
        self.instance
    }
}
