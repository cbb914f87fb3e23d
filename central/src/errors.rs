//! The one mapping from each operation family's error to an HTTP status
//! ([`HttpStatus`]), and the JSON error answer ([`ApiError`]) built from it. The JSON API
//! and the dashboard's pages both take their status from here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::cases::CaseError;
use crate::export::ExportError;
use crate::ingest::{BatchError, IngestError};
use crate::registry::RegistryError;
use crate::service::PortalError;
use crate::store_error::StoreError;

/// The HTTP status an error answers with.
pub trait HttpStatus {
    fn status(&self) -> StatusCode;
}

impl HttpStatus for StoreError {
    fn status(&self) -> StatusCode {
        match self {
            // Domain refusals a backend reports from inside its transaction belong to a
            // family; their status is that family's.
            StoreError::UnknownOperator(o) => RegistryError::UnknownOperator(o.clone()).status(),
            StoreError::Refused(w) => RegistryError::Refused(w.clone()).status(),
            StoreError::GatePortConflict { .. }
            | StoreError::UserExists(_)
            | StoreError::UnknownUser(_) => AuthError::from(self.clone()).status(),
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::UnknownGate(_) => StatusCode::NOT_FOUND,
            StoreError::Backend(_) | StoreError::Corrupt { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl HttpStatus for IngestError {
    fn status(&self) -> StatusCode {
        match self {
            IngestError::WrongGate { .. } | IngestError::HeartbeatAgent { .. } => {
                StatusCode::FORBIDDEN
            }
            IngestError::Batch(b) => match b {
                BatchError::TooManyEntries { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BatchError::WrongAgent { .. } | BatchError::EntryWrongAgent { .. } => {
                    StatusCode::FORBIDDEN
                }
                BatchError::ZeroSeq { .. } | BatchError::TooNew { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            },
            IngestError::HeartbeatVersion(_) => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::Store(e) => e.status(),
        }
    }
}

impl HttpStatus for CaseError {
    fn status(&self) -> StatusCode {
        match self {
            CaseError::NotFound(_) => StatusCode::NOT_FOUND,
            CaseError::Resolved { .. }
            | CaseError::AlreadyAcknowledged { .. }
            | CaseError::EmptyAssignee => StatusCode::CONFLICT,
            CaseError::UnknownAssignee(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CaseError::Store(e) => e.status(),
        }
    }
}

impl HttpStatus for PortalError {
    fn status(&self) -> StatusCode {
        match self {
            PortalError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PortalError::NotFound(_) => StatusCode::NOT_FOUND,
            PortalError::Auth(e) => e.status(),
            PortalError::Registry(e) => e.status(),
            PortalError::Store(e) => e.status(),
            PortalError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PortalError::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PortalError::Form(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl HttpStatus for RegistryError {
    fn status(&self) -> StatusCode {
        match self {
            RegistryError::UnknownOperator(_) => StatusCode::NOT_FOUND,
            RegistryError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::Invalid(_) | RegistryError::Import { .. } => StatusCode::BAD_REQUEST,
            RegistryError::Read { .. } | RegistryError::Encode(_) | RegistryError::Snapshot(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            RegistryError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::Store(e) => e.status(),
        }
    }
}

impl HttpStatus for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::UnknownUser(_) => StatusCode::NOT_FOUND,
            AuthError::UserExists(_) | AuthError::GatePortConflict { .. } => StatusCode::CONFLICT,
            AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuthError::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AuthError::Store(e) => e.status(),
        }
    }
}

impl HttpStatus for ExportError {
    fn status(&self) -> StatusCode {
        match self {
            // Range problems are the caller's to fix.
            ExportError::TooLarge { .. } | ExportError::EmptyRange { .. } => {
                StatusCode::BAD_REQUEST
            }
            ExportError::Store(e) => e.status(),
            ExportError::Csv(_) | ExportError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (set for storage that is unavailable now).
    pub retry_after: Option<u64>,
}

impl ApiError {
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with `message`.
    #[must_use]
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no usable bearer token.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "missing or unknown bearer token")
    }
}

/// Seconds a client is asked to wait (`Retry-After`) after a 503: central is up but its
/// storage is not (see `/readyz`).
pub const RETRY_AFTER_S: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        match self.retry_after {
            Some(s) => {
                let wait = axum::http::HeaderValue::from(s);
                (self.status, [(axum::http::header::RETRY_AFTER, wait)], body).into_response()
            }
            None => (self.status, body).into_response(),
        }
    }
}

/// Logs a server-side failure (the answer only carries its message).
pub fn log_if_internal(status: StatusCode, e: &dyn std::fmt::Display) {
    if status.is_server_error() {
        tracing::error!(error = %e, "request failed");
    }
}

macro_rules! api_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                let status = e.status();
                log_if_internal(status, &e);
                let mut a = Self::new(status, e.to_string());
                // Only what is unavailable now (storage, a busy snapshot maker) answers
                // 503: worth trying again.
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    a.retry_after = Some(RETRY_AFTER_S);
                }
                a
            }
        }
    )*};
}
api_error_from!(
    StoreError,
    IngestError,
    CaseError,
    RegistryError,
    AuthError,
    ExportError
);
