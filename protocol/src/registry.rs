//! How a registry change is applied: one rule for central's registry and for every
//! agent's replica, so a replica that followed the change log holds the same records as
//! one loaded from a snapshot of central.
//!
//! The rule ([`Change::apply`]):
//! - `UpsertOperator`, `UpsertMra`, `UpsertConsignment` replace the record under its key
//!   (operator id; recognising and partner programme; consignment id).
//! - `RemoveConsignment` removes the consignment if it is there (removing an absent one
//!   is not an error: the port may never have held it).
//! - `SetStatus` changes the current record of the operator: `status` becomes the new
//!   status, and both `status_since` and `as_of` become the change's own `at`. The change
//!   is a statement by the registry authority about the record at that time, so the
//!   record's "when was this stated" moves with it; because the time is part of the change,
//!   central and every replica derive the same record from it. A status change of an
//!   operator the registry does not hold is refused.
//! - A record with a schema version newer than this build is refused, never applied in
//!   part: a reader of this build cannot know what the newer fields mean.

use core::fmt;

use crate::operator::OperatorId;
use crate::schema::{Change, Consignment, MraRecord, RegistryRecord, SchemaError, check_version};

/// Where applied changes go: central's registry tables, an agent's replica tables, an
/// in-memory replica. Storage only; the rule is [`Change::apply`].
pub trait RegistrySink {
    /// The storage's own failure.
    type Error;
    /// The current record of an operator.
    ///
    /// # Errors
    /// Storage failures.
    fn operator(&mut self, id: &OperatorId) -> Result<Option<RegistryRecord>, Self::Error>;
    /// Inserts or replaces an operator record.
    ///
    /// # Errors
    /// Storage failures.
    fn put_operator(&mut self, record: &RegistryRecord) -> Result<(), Self::Error>;
    /// Inserts or replaces an MRA.
    ///
    /// # Errors
    /// Storage failures.
    fn put_mra(&mut self, mra: &MraRecord) -> Result<(), Self::Error>;
    /// Inserts or replaces a consignment.
    ///
    /// # Errors
    /// Storage failures.
    fn put_consignment(&mut self, consignment: &Consignment) -> Result<(), Self::Error>;
    /// Removes a consignment if it is there.
    ///
    /// # Errors
    /// Storage failures.
    fn remove_consignment(&mut self, id: &str) -> Result<(), Self::Error>;
}

/// Why a change was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError<E> {
    /// A status change names an operator the registry does not hold.
    UnknownOperator(OperatorId),
    /// The record cannot be read by this build ([`SchemaError::TooNew`]).
    Schema(SchemaError),
    /// The sink failed.
    Sink(E),
}

impl<E: fmt::Display> fmt::Display for ApplyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOperator(op) => write!(f, "operator {op} is not in the registry"),
            Self::Schema(e) => write!(f, "{e}"),
            Self::Sink(e) => write!(f, "{e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ApplyError<E> {}

impl<E> From<SchemaError> for ApplyError<E> {
    fn from(e: SchemaError) -> Self {
        Self::Schema(e)
    }
}

impl Change {
    /// Applies this change to `sink` by the rule in the module documentation. On an
    /// error nothing was written by this call.
    ///
    /// # Errors
    /// [`ApplyError::UnknownOperator`], [`ApplyError::Schema`], or the sink's failure.
    pub fn apply<S: RegistrySink + ?Sized>(
        &self,
        sink: &mut S,
    ) -> Result<(), ApplyError<S::Error>> {
        match self {
            Change::UpsertOperator { record } => {
                check_version(record.v)?;
                sink.put_operator(record).map_err(ApplyError::Sink)
            }
            Change::SetStatus {
                operator,
                status,
                at,
                ..
            } => {
                let mut record = sink
                    .operator(operator)
                    .map_err(ApplyError::Sink)?
                    .ok_or_else(|| ApplyError::UnknownOperator(operator.clone()))?;
                record.status = *status;
                record.status_since = *at;
                record.as_of = *at;
                sink.put_operator(&record).map_err(ApplyError::Sink)
            }
            Change::UpsertMra { mra } => {
                check_version(mra.v)?;
                sink.put_mra(mra).map_err(ApplyError::Sink)
            }
            Change::UpsertConsignment { consignment } => {
                check_version(consignment.v)?;
                sink.put_consignment(consignment).map_err(ApplyError::Sink)
            }
            Change::RemoveConsignment { id } => {
                sink.remove_consignment(id).map_err(ApplyError::Sink)
            }
        }
    }
}
