//! Logging of the services: tracing to the console and to a file (`scheduler.log`,
//! `executor.log`, `dev.log`) in the log directory. `RUST_LOG` filters (default `info`).

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Installs the global subscriber: console (stderr) and `dir/file_name`. Keep the returned
/// guard alive for the life of the process: dropping it flushes the file.
pub fn init(dir: &Path, file_name: &str) -> std::io::Result<WorkerGuard> {
    std::fs::create_dir_all(dir)?;
    // Open once here so that an unwritable directory is reported now, not lost later.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file_name))?;
    let appender = tracing_appender::rolling::never(dir, file_name);
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let console = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let file = fmt::layer()
        .with_ansi(false)
        .with_writer(file_writer)
        .with_filter(filter());
    // A subscriber set already (an embedding program's) is kept.
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init();
    Ok(guard)
}
