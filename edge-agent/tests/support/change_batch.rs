// Registry change batches that remove consignments: a module of `tests/support`, and
// included into the unit tests of `src/replica.rs` (by `include!`).

use jiff::Timestamp;
use protocol::schema::{Change, ChangeBatch, SCHEMA_VERSION, SequencedChange};

/// A batch for port `PORT-A`, as of `as_of`, following seq `after` up to `last`, whose
/// changes carry `seqs`: change `n` removes consignment `C<n>`.
pub fn removals(
    snapshot: bool,
    after: u64,
    last: u64,
    seqs: impl IntoIterator<Item = u64>,
    as_of: Timestamp,
) -> ChangeBatch {
    ChangeBatch {
        v: SCHEMA_VERSION,
        snapshot,
        after_seq: after,
        last_seq: last,
        port: "PORT-A".into(),
        as_of,
        changes: seqs
            .into_iter()
            .map(|seq| SequencedChange {
                seq,
                change: Change::RemoveConsignment {
                    id: format!("C{seq}"),
                },
            })
            .collect(),
    }
}
