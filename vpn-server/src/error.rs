//! The server's error type: a status code and a message for the client;
//! internal causes are logged, never shown.

use axum::http::StatusCode;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401: not authenticated (unknown secret, no or invalid session).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such group, request or member (or not visible to the actor).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// 409: conflicts with the current state (used secret, taken name).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body exceeds the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: the body is not JSON / not a form.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// 429: rate limited.
    #[error("{0}")]
    TooMany(String),
    /// 503: the group's address range is exhausted, or similar.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a database error (retryable ones are retried before this).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A concurrent change got in first: the transaction is retried (500
    /// if it keeps happening).
    #[error("concurrent update of {0}")]
    Retry(&'static str),
    /// 500: anything else that is the server's fault.
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(_) | AppError::Internal(_) | AppError::Retry(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// What the client is told (internal details are logged instead).
    pub fn public_message(&self) -> String {
        match self {
            AppError::Db(_) | AppError::Internal(_) | AppError::Retry(_) => {
                eprintln!("vpn-server: error: {self}");
                "internal server error".into()
            }
            other => other.to_string(),
        }
    }

    /// Whether retrying the whole transaction may succeed (SQLite busy or
    /// locked, PostgreSQL serialization failure or deadlock, or a unique
    /// violation from a concurrent insert of the same allocated value, or
    /// [`AppError::Retry`]).
    pub fn is_retryable(&self) -> bool {
        if matches!(self, AppError::Retry(_)) {
            return true;
        }
        let AppError::Db(sqlx::Error::Database(e)) = self else {
            return false;
        };
        if e.kind() == sqlx::error::ErrorKind::UniqueViolation {
            // Two transactions allocated the same value (an address):
            // conflicts users cause are mapped to 409 before this point.
            return true;
        }
        let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
        matches!(
            code.as_str(),
            // SQLite: BUSY, LOCKED, BUSY_RECOVERY, BUSY_SNAPSHOT, LOCKED_SHAREDCACHE.
            "5" | "6" | "261" | "517" | "262"
            // PostgreSQL: serialization_failure, deadlock_detected.
            | "40001" | "40P01"
        )
    }

    /// Whether this is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            AppError::Db(sqlx::Error::Database(e)) => {
                e.kind() == sqlx::error::ErrorKind::UniqueViolation
            }
            _ => false,
        }
    }
}

impl From<crate::crypto::CryptoError> for AppError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        AppError::Internal(e.to_string())
    }
}

/// Shorthand.
pub type AppResult<T> = Result<T, AppError>;
