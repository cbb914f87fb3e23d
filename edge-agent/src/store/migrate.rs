//! Store layout migrations run on open.

use redb::{
    Database, Durability, MultimapTableHandle, ReadableDatabase, TableDefinition, TableHandle,
};

use super::error::rdb;
use super::replica::{BY_CONTAINER, REPLICA_META, read_replica_meta, write_replica_meta};
use crate::replica::{ReplicaError, ReplicaMeta};

/// The replica tables earlier releases kept in the store file: the JSON-valued `_v1`
/// tables, the postcard `_v2` tables, the linked-id index and the meta.
const OLD_TABLES: [&str; 8] = [
    "replica_operators_v1",
    "replica_mras_v1",
    "replica_consignments_v1",
    "replica_operators_v2",
    "replica_mras_v2",
    "replica_consignments_v2",
    "replica_operator_links_v1",
    "replica_meta_v1",
];

/// Drops a replica that an earlier release kept in the store file, carrying its port
/// binding over to the replica file (`replica`) when that has none yet, so replication
/// bootstraps the replica again from a snapshot in its own file: one snapshot is cheaper
/// and simpler than copying or converting in place, and the decider treats the empty
/// replica as missing data (never FAST) until then. The port is written to the replica
/// file before the old tables go, so a stop in between loses nothing.
pub(super) fn move_replica_out(store: &Database, replica: &Database) -> Result<(), ReplicaError> {
    let r = store.begin_read().map_err(rdb)?;
    let mut names: Vec<String> = r
        .list_tables()
        .map_err(rdb)?
        .map(|h| h.name().to_string())
        .collect();
    names.extend(
        r.list_multimap_tables()
            .map_err(rdb)?
            .map(|h| h.name().to_string()),
    );
    let port = if names.iter().any(|n| n == REPLICA_META.name()) {
        let t = r.open_table(REPLICA_META).map_err(rdb)?;
        read_replica_meta(&t).map(|m| m.port).unwrap_or(None)
    } else {
        None
    };
    drop(r);
    let present = |t: &str| names.iter().any(|n| n == t);
    if !OLD_TABLES.iter().any(|t| present(t)) && !present(BY_CONTAINER.name()) {
        return Ok(());
    }
    if let Some(port) = port {
        let r = replica.begin_read().map_err(rdb)?;
        let held = read_replica_meta(&r.open_table(REPLICA_META).map_err(rdb)?)?;
        drop(r);
        if held.port.is_none() {
            let mut w = replica.begin_write().map_err(rdb)?;
            w.set_durability(Durability::Immediate).map_err(rdb)?;
            write_replica_meta(
                &w,
                &ReplicaMeta {
                    port: Some(port),
                    ..held
                },
            )?;
            w.commit().map_err(rdb)?;
        }
    }
    let mut w = store.begin_write().map_err(rdb)?;
    w.set_durability(Durability::Immediate).map_err(rdb)?;
    for name in OLD_TABLES {
        if present(name) {
            w.delete_table(TableDefinition::<&str, &[u8]>::new(name))
                .map_err(rdb)?;
        }
    }
    if present(BY_CONTAINER.name()) {
        w.delete_multimap_table(BY_CONTAINER).map_err(rdb)?;
    }
    w.commit().map_err(rdb)?;
    tracing::warn!(
        "the replica was stored in the store file by an earlier release; it is dropped there and loads again from a snapshot into its own file"
    );
    Ok(())
}
