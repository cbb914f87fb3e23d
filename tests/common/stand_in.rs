//! What the tests' stand-ins for central do with the journal entries an agent uploads,
//! written once for every crate's tests (included by `#[path]`): store a batch by sequence
//! and acknowledge it as central does, and find the registry batches the agent refused.
#![allow(dead_code)]

use std::collections::BTreeMap;

use protocol::schema::{EventBody, IngestAck, JournalEntry, SCHEMA_VERSION};

/// Stores `entries` in `stored` by sequence, each checked against its hash, and answers as
/// central does: acknowledged through the highest sequence with none missing before it,
/// counting the entries newly stored and those already there.
pub fn store_batch(
    stored: &mut BTreeMap<u64, JournalEntry>,
    entries: Vec<JournalEntry>,
) -> IngestAck {
    let (mut new, mut duplicates) = (0, 0);
    for e in entries {
        assert!(
            e.verify_hash().is_ok(),
            "entry {} arrives with a valid hash",
            e.seq
        );
        if stored.insert(e.seq, e).is_none() {
            new += 1;
        } else {
            duplicates += 1;
        }
    }
    let mut through = 0;
    while stored.contains_key(&(through + 1)) {
        through += 1;
    }
    IngestAck {
        v: SCHEMA_VERSION,
        acked_through: through,
        stored: new,
        duplicates,
        alerts: Vec::new(),
    }
}

/// The details of the `REGISTRY_BATCH_REFUSED` alerts among `stored`, oldest first.
pub fn refused_batches(stored: &BTreeMap<u64, JournalEntry>) -> Vec<String> {
    stored
        .values()
        .filter_map(|e| match &e.body {
            EventBody::IntegrityAlert { what, detail } if what == "REGISTRY_BATCH_REFUSED" => {
                Some(detail.clone())
            }
            _ => None,
        })
        .collect()
}
