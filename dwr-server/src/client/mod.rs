//! The client commands of the `dwr` binary: `submit`, `jobs`, `job`, `logs`, `abort`,
//! `executors`, `stats`, talking to a dwr server over its HTTP API.
//!
//! The server is found at `--url` / `DWR_URL` (default `http://localhost:8000`); `--token` /
//! `DWR_API_TOKEN` is sent as a bearer token. Output is an aligned table (or a `key: value`
//! view) for people, or with `--json` the server's JSON, pretty-printed, for scripts.

pub mod args;
mod cluster;
pub mod error;
mod jobs;
mod logs;
mod submit;
pub mod table;
#[cfg(test)]
mod tests;

use std::io::Write;

pub use dwr_client::DEFAULT_URL;
pub use error::ClientError;
pub use submit::SubmitArgs;

use dwr_client::Client;
use dwr_core::JobState;

/// A client command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a job: `dwr submit IMAGE [options] -- COMMAND [ARGS...]`; prints its id.
    Submit(Box<SubmitArgs>),
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Show one job (and, while it is pending, why).
    Job {
        /// The job id.
        id: String,
    },
    /// Print a job's log lines, oldest first.
    Logs {
        /// Keep printing new lines until the job ends.
        #[arg(short, long)]
        follow: bool,
        /// The job id.
        id: String,
    },
    /// Abort a job (stops its container if it is running).
    Abort {
        /// The job id.
        id: String,
    },
    /// List the executors and the cluster's capacity.
    Executors {},
    /// List the queues: weight, what each holds against its quota, share, pending jobs.
    Queues {},
    /// Show queue and cluster statistics.
    Stats {},
}

/// Filters of `dwr jobs`.
#[derive(Debug, Clone, clap::Args)]
pub struct JobsArgs {
    /// Only jobs in this state: pending, assigned, running, succeeded, failed, aborted.
    #[arg(long, value_name = "STATUS", value_parser = parse_state)]
    pub status: Option<JobState>,
    /// At most this many jobs (1..=1000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// Options shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOptions {
    /// URL of the dwr server's API.
    #[arg(long, global = true, env = "DWR_URL", default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// API token, sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        global = true,
        env = "DWR_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_state(text: &str) -> Result<JobState, String> {
    text.trim()
        .to_ascii_lowercase()
        .parse::<JobState>()
        .map_err(|e| e.to_string())
}

/// Runs one client command; returns the process exit code.
///
/// The exit code is 0 on success, except `submit --wait` / `--follow`, which exit with the
/// job's exit code (1 when it failed or was aborted without one). Errors are returned for the
/// caller to print as `error: {err}` and exit with [`ClientError::exit_code`].
pub async fn run(command: ClientCommand, options: ClientOptions) -> Result<i32, ClientError> {
    // An empty DWR_URL (exported but blank) means the default, as for the server's variables.
    let url = match options.url.trim() {
        "" => DEFAULT_URL,
        url => url,
    };
    let api = Client::new(url)
        .map_err(|e| ClientError::InvalidArgument {
            argument: "--url",
            reason: e.to_string(),
        })?
        .with_token(options.token.clone());
    let json = options.json;
    let text = match command {
        ClientCommand::Submit(args) => return submit::run(&api, &args, json).await,
        ClientCommand::Jobs(args) => jobs::list(&api, &args, json).await?,
        ClientCommand::Job { id } => jobs::show(&api, &id, json).await?,
        ClientCommand::Abort { id } => jobs::abort(&api, &id, json).await?,
        ClientCommand::Logs { follow: true, id } => {
            logs::follow(&api, jobs::parse_id(&id)?, json).await?;
            return Ok(0);
        }
        ClientCommand::Logs { follow: false, id } => {
            logs::all(&api, jobs::parse_id(&id)?, json).await?
        }
        ClientCommand::Executors {} => cluster::executors(&api, json).await?,
        ClientCommand::Queues {} => cluster::queues(&api, json).await?,
        ClientCommand::Stats {} => cluster::stats(&api, json).await?,
    };
    print(&text)?;
    Ok(0)
}

/// Writes `text` to standard output and flushes it (the lock is not held across awaits).
pub(crate) fn print(text: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
