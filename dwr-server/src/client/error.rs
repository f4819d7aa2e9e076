//! What can go wrong in a client command, each variant saying which step failed.

/// An error of a client command. `Display` is the line printed after `error: `.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached at all (refused, DNS, timeout before any answer).
    #[error(
        "cannot reach the dwr server at {url}: {reason}\n\
         hint: is `dwr dev` / `dwr scheduler` running? (set DWR_URL or --url to point elsewhere)"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the connection attempt said.
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error (`{"error", "detail"}` or a bare status).
    #[error("{detail}")]
    Server {
        /// The HTTP status code.
        status: u16,
        /// The server's short error kind (`not_found`, `bad_request`, ...).
        error: String,
        /// The server's explanation.
        detail: String,
    },
    /// The connection broke or timed out while a response was being read.
    #[error("reading the response of {url} failed: {source}")]
    Transfer {
        /// The URL requested.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server's answer was not what this client understands.
    #[error("unexpected response from {url}: {reason}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
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
