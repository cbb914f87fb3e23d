//! The registry authority: imports, status changes, the signed snapshot and change
//! batches agents replicate, and the registry pages' reads.

use std::path::Path;

use jiff::Timestamp;
use protocol::operator::OperatorId;
use protocol::schema::{
    AeoStatus, Change, ChangeBatch, Consignment, MraRecord, RegistryRecord, SCHEMA_VERSION,
    SignedEnvelope,
};

use super::{Central, check_port};
use crate::registry::{self, Format, ImportKind, MAX_BATCH_CHANGES, RegistryError, RowError};
use crate::store::{LoggedChange, Stamp, StoreError};

/// Rows per write transaction for bulk imports: large enough that 30,000 operators take
/// a handful of commits (one fsync each), small enough to bound one transaction's memory.
pub const IMPORT_CHUNK: usize = 5_000;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub kind: ImportKind,
    pub rows: usize,
    pub imported: usize,
    pub errors: Vec<RowError>,
    pub last_seq: u64,
}

impl Central {
    fn append(&self, changes: Vec<Change>, actor: &str) -> Result<u64, RegistryError> {
        let mut last = self.inner.store.last_seq()?;
        for chunk in changes.chunks(IMPORT_CHUNK) {
            last = self
                .inner
                .store
                .append_changes(chunk, Stamp::new(actor, Timestamp::now()))?;
            self.inner.registry_seq.send_replace(last);
        }
        metrics::counter!("central_registry_changes_total").increment(changes.len() as u64);
        Ok(last)
    }

    /// Imports operator records (one change each); returns the last seq.
    ///
    /// # Errors
    /// When a record has a newer schema version, or on store errors.
    pub fn import_records(
        &self,
        records: Vec<RegistryRecord>,
        actor: &str,
    ) -> Result<u64, RegistryError> {
        if let Some(r) = records.iter().find(|r| r.v > SCHEMA_VERSION) {
            return Err(RegistryError::Invalid(format!(
                "operator {}: schema version {} is newer than {SCHEMA_VERSION}",
                r.operator, r.v
            )));
        }
        self.append(
            records
                .into_iter()
                .map(|record| Change::UpsertOperator { record })
                .collect(),
            actor,
        )
    }

    /// Imports MRAs; returns the last seq.
    ///
    /// # Errors
    /// On store errors.
    pub fn import_mras(&self, mras: Vec<MraRecord>, actor: &str) -> Result<u64, RegistryError> {
        self.append(
            mras.into_iter()
                .map(|mra| Change::UpsertMra { mra })
                .collect(),
            actor,
        )
    }

    /// Imports consignments; returns the last seq.
    ///
    /// # Errors
    /// When a consignment names a malformed port, or on store errors.
    pub fn import_consignments(
        &self,
        c: Vec<Consignment>,
        actor: &str,
    ) -> Result<u64, RegistryError> {
        for k in &c {
            for p in &k.ports {
                check_port(p)
                    .map_err(|e| RegistryError::Invalid(format!("consignment {}: {e}", k.id)))?;
            }
        }
        self.append(
            c.into_iter()
                .map(|consignment| Change::UpsertConsignment { consignment })
                .collect(),
            actor,
        )
    }

    /// Imports a CSV or JSON file (format from the extension: `.csv`, else JSON), keeping
    /// the good rows. `progress` gets the number of rows read so far.
    ///
    /// # Errors
    /// When the file cannot be read or is unusable as a whole.
    pub fn import_file(
        &self,
        path: &Path,
        kind: Option<ImportKind>,
        actor: &str,
        progress: &mut dyn FnMut(usize),
    ) -> Result<ImportReport, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Json,
        };
        self.import_named(&text, format, kind, actor, path, progress)
    }

    /// Imports CSV or JSON text (a file read elsewhere, or standard input), keeping the
    /// good rows. `progress` gets the number of rows read so far.
    ///
    /// # Errors
    /// When the text is unusable as a whole.
    pub fn import_text(
        &self,
        text: &str,
        format: Format,
        kind: Option<ImportKind>,
        actor: &str,
        progress: &mut dyn FnMut(usize),
    ) -> Result<ImportReport, RegistryError> {
        self.import_named(text, format, kind, actor, Path::new("<text>"), progress)
    }

    fn import_named(
        &self,
        text: &str,
        format: Format,
        kind: Option<ImportKind>,
        actor: &str,
        name: &Path,
        progress: &mut dyn FnMut(usize),
    ) -> Result<ImportReport, RegistryError> {
        let parsed = registry::parse_import(text, format, kind, Timestamp::now(), progress)
            .map_err(|source| RegistryError::Import {
                path: name.to_owned(),
                source,
            })?;
        let imported = parsed.changes.len();
        let last_seq = self.append(parsed.changes, actor)?;
        Ok(ImportReport {
            kind: parsed.kind,
            rows: parsed.rows,
            imported,
            errors: parsed.errors,
            last_seq,
        })
    }

    /// Changes an operator's status (reinstate = `Active`); returns the change's seq.
    ///
    /// # Errors
    /// When the operator is not in the registry or the reason or actor is empty.
    pub fn set_status(
        &self,
        op: &OperatorId,
        status: AeoStatus,
        reason: &str,
        actor: &str,
    ) -> Result<u64, RegistryError> {
        if reason.trim().is_empty() {
            return Err(RegistryError::Invalid(
                "a reason is required for a status change".into(),
            ));
        }
        if actor.trim().is_empty() {
            return Err(RegistryError::Invalid(
                "an actor is required for a status change".into(),
            ));
        }
        let now = Timestamp::now();
        let change = registry::set_status_change(op, status, reason.trim(), actor, now);
        let seq = self
            .inner
            .store
            .append_changes(&[change], Stamp::new(actor, now))?;
        self.inner.registry_seq.send_replace(seq);
        Ok(seq)
    }

    /// The latest change seq (0 when the log is empty).
    ///
    /// # Errors
    /// Store errors.
    pub fn registry_seq(&self) -> Result<u64, StoreError> {
        self.inner.store.last_seq()
    }

    /// The signed snapshot for `port`. Its `as_of` is the time the snapshot was read:
    /// it holds everything the registry held then (docs/delivery.md, "Replication").
    /// One is made at a time (it is held whole in memory).
    ///
    /// # Errors
    /// [`RegistryError::Busy`] while another is being made; store or serialisation
    /// errors.
    pub fn snapshot_envelope(&self, port: &str) -> Result<SignedEnvelope, RegistryError> {
        let _one = match self.inner.whole_snapshot.try_lock() {
            Ok(g) => g,
            // A panic while making one leaves no state behind: the next may go.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(RegistryError::Busy(
                    "another whole snapshot is being made; try again shortly, or fetch the \
                     chunked snapshot (GET /api/v1/registry/snapshot/manifest)"
                        .into(),
                ));
            }
        };
        // Taken before the read, so the snapshot is at least as new as this time.
        let read_at = Timestamp::now();
        let snap = self.inner.store.snapshot(port, read_at)?;
        let batch = ChangeBatch {
            v: SCHEMA_VERSION,
            snapshot: true,
            after_seq: 0,
            last_seq: snap.last_seq,
            port: port.to_owned(),
            as_of: read_at,
            changes: snap.changes,
        };
        Ok(self.inner.signer.sign(serde_json::to_string(&batch)?))
    }

    /// The signed manifest of a chunked snapshot for `port`: the snapshot is read once
    /// (its `as_of` is the time of that read, as in [`Self::snapshot_envelope`]) and cut,
    /// as it is read, into chunks of [`crate::snapshots::CHUNK_RECORDS`] that are kept for
    /// [`crate::snapshots::KEEP`], and the manifest names each chunk's SHA-256.
    ///
    /// # Errors
    /// Store, serialisation or chunk-file errors.
    pub fn snapshot_manifest(&self, port: &str) -> Result<SignedEnvelope, RegistryError> {
        let read_at = Timestamp::now();
        let store = &self.inner.store;
        let manifest = self
            .inner
            .snapshots
            .make(port, crate::snapshots::CHUNK_RECORDS, |visit| {
                store.snapshot_each(port, read_at, visit)
            })
            .map_err(|e| match e {
                crate::snapshots::MakeError::Store(e) => RegistryError::from(e),
                e @ crate::snapshots::MakeError::Io(_) => RegistryError::Snapshot(e.to_string()),
            })?;
        Ok(self.inner.signer.sign(serde_json::to_string(&manifest)?))
    }

    /// Chunk `index` of the chunked snapshot `id` for `port`, as hashed in its manifest;
    /// `None` when this central does not keep it.
    ///
    /// # Errors
    /// When a kept chunk cannot be read.
    pub fn snapshot_chunk(
        &self,
        port: &str,
        id: &str,
        index: u32,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        self.inner
            .snapshots
            .chunk(port, id, index)
            .map_err(|e| RegistryError::Snapshot(e.to_string()))
    }

    /// The signed batch for `port` after `after`. With nothing newer it is the signed
    /// statement "no changes after `after` as of now": an empty delta with `after_seq =
    /// last_seq = after`, the only answer from which an agent may count its replica
    /// fresh. A batch that reaches the head of the log is as of the time the head was
    /// read; one cut short by [`MAX_BATCH_CHANGES`] is as of its last change.
    ///
    /// # Errors
    /// Store or serialisation errors.
    pub fn changes_envelope(
        &self,
        port: &str,
        after: u64,
    ) -> Result<SignedEnvelope, RegistryError> {
        // Taken before the reads: at this time the log held at most `head` changes.
        let read_at = Timestamp::now();
        let head = self.inner.store.last_seq()?;
        let logged = self.inner.store.changes_after(after, MAX_BATCH_CHANGES)?;
        let batch = match registry::batch_for_port(port, after, &logged) {
            Some(mut batch) => {
                if batch.last_seq >= head {
                    batch.as_of = read_at;
                }
                batch
            }
            None => ChangeBatch {
                v: SCHEMA_VERSION,
                snapshot: false,
                after_seq: after,
                last_seq: after,
                port: port.to_owned(),
                as_of: read_at,
                changes: Vec::new(),
            },
        };
        Ok(self.inner.signer.sign(serde_json::to_string(&batch)?))
    }

    /// One operator's current record.
    ///
    /// # Errors
    /// Store errors.
    pub fn operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError> {
        self.inner.store.operator(id)
    }

    /// Operators for a search box: the one whose id is `text` exactly first, then those
    /// whose id or name contains it (case-insensitive), at most `limit` of those.
    ///
    /// # Errors
    /// Store errors.
    pub fn search_operators(
        &self,
        text: &str,
        limit: usize,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        if let Ok(id) = OperatorId::parse(text)
            && let Some(r) = self.inner.store.operator(&id)?
        {
            found.push(r);
        }
        for r in self.inner.store.search_operators(text, limit)? {
            if !found.iter().any(|f| f.operator == r.operator) {
                found.push(r);
            }
        }
        Ok(found)
    }

    /// The logged changes about one operator, oldest first, at most the last `limit`.
    ///
    /// # Errors
    /// Store errors.
    pub fn operator_changes(
        &self,
        id: &OperatorId,
        limit: usize,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        self.inner.store.operator_changes(id, limit)
    }
}
