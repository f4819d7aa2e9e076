//! The `dwr` binary: parses the command line and calls the library
//! (`dwr scheduler`, `dwr executor`, `dwr dev`, and the client commands).

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dwr_server::bench;
use dwr_server::client::{self, ClientCommand, ClientOptions};
use dwr_server::{logging, service, DevArgs, ExecutorArgs, SchedulerArgs, ServiceError};

/// mimalloc rather than the system allocator: the scheduler and executor allocate and free
/// many small buffers per job (Redis replies, job records), where glibc's malloc spent a
/// quarter of the load tool's CPU (see BENCHMARKS.md). Version 2, which returns freed
/// pages to the system after 10 ms (version 3 waits a second, and held twice the memory
/// under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dwr: a distributed workload runner: schedules Docker containers onto executor machines.
#[derive(Parser, Debug)]
#[command(name = "dwr", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: ClientOptions,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the scheduler: the HTTP API and background scheduling, over Redis.
    Scheduler(SchedulerArgs),
    /// Run an executor: runs assigned jobs in Docker containers, over Redis.
    Executor(ExecutorArgs),
    /// Run the scheduler and one executor in one process (in-memory store unless Redis is
    /// configured) and print a job to try.
    Dev(DevArgs),
    /// Load test: the scheduler and N executor agents in this process over a real store;
    /// prints latency percentiles, throughput, memory and Redis commands per job.
    Bench(bench::BenchArgs),
    /// Scale simulation: many executors, a growing queue, the time of a scheduling pass.
    Simulate(bench::SimulateArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let shutdown = service::shutdown_signal();
    match cli.command {
        Command::Client(command) => match client::run(command, cli.client).await {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code().clamp(1, 255) as u8)
            }
        },
        Command::Scheduler(args) => {
            let dir = args.common.log_dir.clone();
            logged(
                &dir,
                "scheduler.log",
                service::run_scheduler(args, shutdown),
            )
            .await
        }
        Command::Executor(args) => {
            let dir = args.common.log_dir.clone();
            logged(&dir, "executor.log", service::run_executor(args, shutdown)).await
        }
        Command::Dev(args) => {
            let dir = args.common.log_dir.clone();
            logged(&dir, "dev.log", service::run_dev(args, shutdown)).await
        }
        Command::Bench(args) => match args.arrays {
            Some(size) => finish_bench(bench::run_submit_bench(&args, size).await.map(drop)),
            None => finish_bench(bench::run_bench(args).await.map(drop)),
        },
        Command::Simulate(args) => finish_bench(bench::run_simulation(args).await.map(drop)),
    }
}

/// Runs a service with logging to the console and `dir/file`.
async fn logged(
    dir: &Path,
    file: &str,
    service: impl Future<Output = Result<(), ServiceError>>,
) -> ExitCode {
    let _guard = match logging::init(dir, file) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!(
                "error: cannot write logs to {}: {e}",
                dir.join(file).display()
            );
            return ExitCode::FAILURE;
        }
    };
    match service.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints the error and its causes, one per line.
fn report(err: &ServiceError) {
    tracing::error!(error = %err, "stopped");
    let mut text = format!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{text}");
}

fn finish_bench(result: Result<(), bench::BenchError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
