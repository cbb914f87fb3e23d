//! [`StoreError`]: what a storage backend reports.

/// Storage failures, and domain conflicts a store detects inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    /// The backend cannot be reached now (database down, restarting, no connection within
    /// the pool's timeout); the same request may succeed later. Answered 503 with
    /// `Retry-After`.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored value in table {table} at key {key} is unreadable: {why}")]
    Corrupt {
        table: &'static str,
        key: String,
        why: String,
    },
    #[error("operator {0} is not in the registry")]
    UnknownOperator(String),
    /// A registry change the rule refuses ([`protocol::registry`]), other than an unknown
    /// operator.
    #[error("registry change refused: {0}")]
    Refused(String),
    #[error("gate {gate} is registered for port {existing}, not {requested}")]
    GatePortConflict {
        gate: String,
        existing: String,
        requested: String,
    },
    #[error("gate {0} has never been registered (no agent token was issued for it)")]
    UnknownGate(String),
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist")]
    UnknownUser(String),
}
