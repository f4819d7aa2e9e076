//! [`Error`], the crate's own errors (configuration and connecting), and the mapping of
//! Redis failures onto [`StoreError`].

use dwr_core::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Errors of configuring and connecting a [`RedisJobStore`](crate::RedisJobStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is malformed.
    #[error("invalid Redis configuration {field}: {reason}")]
    InvalidConfig {
        /// The variable or field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL was refused by the client library.
    #[error("invalid Redis URL {url}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The cause.
        #[source]
        source: RedisError,
    },
    /// Redis could not be reached or refused the connection (authentication, database).
    #[error("cannot connect to Redis at {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The cause.
        #[source]
        source: RedisError,
    },
}

/// True when the error means "Redis is not reachable right now" rather than a bad answer.
pub(crate) fn is_unavailable(err: &RedisError) -> bool {
    // A primary with `min-replicas-to-write` and too few replicas refuses writes.
    err.code() == Some("NOREPLICAS")
        || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::ClusterDown
            ) | ErrorKind::AuthenticationFailed
        )
}

/// Maps a Redis failure of `operation` onto the store's error.
pub(crate) fn store_error(operation: &'static str, err: RedisError) -> StoreError {
    if is_unavailable(&err) {
        StoreError::Unavailable {
            operation,
            source: Box::new(err),
        }
    } else {
        corrupt_by(format!("reply to {operation}"), err)
    }
}

/// A reply or stored value this version cannot read.
pub(crate) fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        source: reason.into().into(),
    }
}

/// A reply or stored value this version cannot read, with the error that said so.
pub(crate) fn corrupt_by(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        source: Box::new(source),
    }
}
