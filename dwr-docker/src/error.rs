//! The crate's own error: bad configuration. Engine failures are `dwr_core::RuntimeError`.

/// Errors of this crate that are not errors of a container operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable holds a value that cannot be used.
    #[error("invalid {var}={value:?}: {reason}")]
    InvalidConfig {
        /// The variable.
        var: &'static str,
        /// Its value (cut to 256 characters).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A job's environment has a variable name the engine cannot take.
    #[error("invalid environment variable name {key:?}: must be non-empty without '=' or NUL")]
    InvalidEnvKey {
        /// The name.
        key: String,
    },
    /// A job asks for a limit of zero, which the engine would read as "no limit".
    #[error("{field} limit of 0 refused: the engine reads 0 as unlimited")]
    ZeroLimit {
        /// `cpu_millis` or `memory_mib`.
        field: &'static str,
    },
}

impl Error {
    /// An [`Error::InvalidConfig`] for `var`, cutting long values.
    pub(crate) fn invalid_config(
        var: &'static str,
        value: &str,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            var,
            value: value.chars().take(256).collect(),
            reason: reason.into(),
        }
    }
}
