//! What can go wrong in a client command: the API call (see [`dwr_client::Error`]), an
//! argument the parser could not check, or writing the output.

/// An error of a client command. `Display` is the line printed after `error: `.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Talking to the server failed (unreachable, an error answer, an unexpected body).
    #[error(transparent)]
    Api(#[from] dwr_client::Error),
    /// An argument the command line parser could not check on its own.
    #[error("{argument}: {reason}")]
    InvalidArgument {
        /// The argument (e.g. `--url`).
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing to standard output failed (e.g. a closed pipe).
    #[error("writing output failed: {0}")]
    Output(#[from] std::io::Error),
}

impl ClientError {
    /// The process exit code for this error: 2 for a bad argument, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::InvalidArgument { .. } => 2,
            _ => 1,
        }
    }
}
