//! Store layout migrations run on open.

use redb::{Database, Durability, ReadableDatabase, TableDefinition, TableHandle};

use super::error::rdb;
use super::replica::{BY_CONTAINER, LINKS, REPLICA_META, read_replica_meta, write_replica_meta};
use crate::replica::{ReplicaError, ReplicaMeta};

/// The JSON-valued replica tables of earlier releases.
const OLD_JSON_TABLES: [&str; 3] = [
    "replica_operators_v1",
    "replica_mras_v1",
    "replica_consignments_v1",
];

/// Drops a replica kept in the JSON tables of earlier releases and marks the replica as
/// never loaded (keeping its port), so replication bootstraps it again from a snapshot:
/// one snapshot is cheaper and simpler than converting in place, and the decider treats
/// the empty replica as missing data (never FAST) until then.
pub(super) fn migrate_replica_v1(db: &Database) -> Result<(), ReplicaError> {
    let r = db.begin_read().map_err(rdb)?;
    let names: Vec<String> = r
        .list_tables()
        .map_err(rdb)?
        .map(|h| h.name().to_string())
        .collect();
    drop(r);
    if !OLD_JSON_TABLES.iter().any(|t| names.iter().any(|n| n == t)) {
        return Ok(());
    }
    let mut w = db.begin_write().map_err(rdb)?;
    w.set_durability(Durability::Immediate).map_err(rdb)?;
    for name in OLD_JSON_TABLES {
        w.delete_table(TableDefinition::<&str, &[u8]>::new(name))
            .map_err(rdb)?;
    }
    w.delete_table(LINKS).map_err(rdb)?;
    w.delete_multimap_table(BY_CONTAINER).map_err(rdb)?;
    let port = {
        let t = w.open_table(REPLICA_META).map_err(rdb)?;
        read_replica_meta(&t).map(|m| m.port).unwrap_or(None)
    };
    write_replica_meta(
        &w,
        &ReplicaMeta {
            port,
            ..ReplicaMeta::default()
        },
    )?;
    w.commit().map_err(rdb)?;
    tracing::warn!(
        "the replica was stored in an older format; it is dropped and loads again from a snapshot"
    );
    Ok(())
}
