//! What can go wrong talking to a dwr server, each variant saying which step failed.

/// An error of a [`Client`](crate::Client) call. `Display` is a sentence for people.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
        /// The server's short error kind (`not_found`, `validation_error`, ...).
        error: String,
        /// The server's explanation, naming the field or id.
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
    /// The server's URL is not one this client can use.
    #[error("{url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The HTTP status of a server's error answer (`None` for every other error).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}
