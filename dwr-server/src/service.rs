//! The services as library functions: [`run_scheduler`], [`run_executor`], [`run_dev`], and
//! [`serve`] (the API plus the scheduling loop on a bound listener). Each runs until its
//! `shutdown` future resolves, then stops gracefully; the binary only parses and calls them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dwr_core::{
    AgentError, ContainerRuntime, ExecutorAgent, FakeRuntime, InMemoryJobStore, JobStore,
    RuntimeError, Scheduler, StoreError,
};
use dwr_docker::{DockerRuntime, NvmlGpuProbe, SysinfoHostProbe};
use dwr_redis::RedisJobStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{app, ApiConfig, AppState};
use crate::config::{AgentArgs, ApiArgs, CommonArgs, ConfigError};

/// How long in-flight requests (log streams included) may run on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `dwr scheduler`.
#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// API and scheduling settings.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `dwr executor`.
#[derive(Args, Debug, Clone)]
pub struct ExecutorArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Executor settings.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Arguments of `dwr dev`.
#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// API and scheduling settings.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Executor settings.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Run jobs in dwr-core's fake runtime instead of Docker: nothing is pulled or started,
    /// a job prints its arguments and exits 0 at once (a command `fake ...` picks another
    /// behaviour, see `FakeBehaviour`). For trying the API without Docker, and for the API
    /// fuzz run of `scripts/fuzz-api.sh`.
    #[arg(long, env = "DWR_FAKE_RUNTIME")]
    pub fake_runtime: bool,
}

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached (the source names the URL, password redacted).
    #[error("connecting to the job store failed")]
    StoreConnect {
        /// The URL, password redacted.
        target: String,
        /// The cause.
        #[source]
        source: dwr_redis::Error,
    },
    /// The API address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Docker engine does not answer.
    #[error(
        "the Docker engine is not reachable at {endpoint}; start it with \
         `scripts/provision.sh --docker-only` (as root), or point DOCKER_HOST at a running engine"
    )]
    DockerUnreachable {
        /// The socket or URL tried.
        endpoint: String,
        /// The cause.
        #[source]
        source: RuntimeError,
    },
    /// The executor agent stopped with an error.
    #[error("the executor agent failed")]
    Agent(#[from] AgentError),
    /// The scheduling loop stopped with an error.
    #[error("the scheduling loop failed")]
    Scheduler(#[source] StoreError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// A task of the service panicked.
    #[error("a task of the service panicked")]
    Panicked,
}

/// A shutdown signal that many tasks can wait on, fired by the caller's future or by
/// [`fire`](Shutdown::fire) (when one part of a service ends, the others follow).
#[derive(Clone, Debug)]
struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A signal that fires once `trigger` resolves.
    fn new(trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        let (tx, rx) = watch::channel(false);
        let this = Self {
            tx: Arc::new(tx),
            rx,
        };
        let firing = this.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = trigger => firing.fire(),
                // Fired by another part: stop waiting for the trigger.
                () = firing.clone().wait() => {}
            }
        });
        this
    }

    fn fire(&self) {
        self.tx.send_replace(true);
    }

    async fn wait(mut self) {
        // The sender lives in `self`, so this only returns once fired.
        let _ = self.rx.wait_for(|fired| *fired).await;
    }
}

async fn connect_redis(common: &CommonArgs) -> Result<Arc<dyn JobStore>, ServiceError> {
    let mut config = common.redis.to_config()?;
    config.log_max_bytes = common.log_max_bytes;
    let target = config.redacted_url();
    let store =
        RedisJobStore::connect(config)
            .await
            .map_err(|source| ServiceError::StoreConnect {
                target: target.clone(),
                source,
            })?;
    info!(redis = %target, "connected to Redis");
    Ok(Arc::new(store))
}

async fn connect_docker(agent: &AgentArgs) -> Result<DockerRuntime, ServiceError> {
    let config = agent.docker_config();
    let endpoint = config.endpoint().to_owned();
    DockerRuntime::connect(config)
        .await
        .map_err(|source| ServiceError::DockerUnreachable { endpoint, source })
}

async fn bind(api: &ApiArgs) -> Result<TcpListener, ServiceError> {
    let ip = api.listen_ip()?;
    if api.token().is_none() && !ip.is_loopback() {
        warn!(
            %ip,
            "the API listens beyond loopback without a token (--insecure-no-auth): anyone who \
             reaches it can run any image on every executor"
        );
    }
    let addr = SocketAddr::new(ip, api.api_port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })
}

/// Serves the API on `listener` and runs the scheduling loop of `scheduler` until
/// `shutdown` resolves; in-flight requests then get 10 s to finish.
pub async fn serve(
    listener: TcpListener,
    scheduler: Scheduler,
    api: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let stop = Shutdown::new(shutdown);
    let looping = scheduler.clone();
    let loop_stop = stop.clone();
    let scheduling = tokio::spawn(async move { looping.run(loop_stop.wait()).await });
    let limits = api.connections;
    let router = app(AppState::new(scheduler, api));
    let server = crate::http::serve(listener, router, limits, stop.clone().wait());
    let grace = stop.clone();
    let served = tokio::select! {
        r = server => r.map_err(ServiceError::Serve),
        () = async { grace.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            warn!("requests still open {} s after shutdown; closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    };
    // However the server ended, the scheduling loop ends with it.
    stop.fire();
    let scheduled = match scheduling.await {
        Ok(r) => r.map_err(ServiceError::Scheduler),
        Err(_) => Err(ServiceError::Panicked),
    };
    served.and(scheduled)
}

/// `dwr scheduler`: the API and the scheduling loop over Redis.
pub async fn run_scheduler(
    args: SchedulerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    // A refused address or file is said before anything is connected.
    let (scheduling, api) = args.api.configs(&args.common)?;
    let store = connect_redis(&args.common).await?;
    let scheduler = Scheduler::new(store, args.api.placement.build(), scheduling);
    let listener = bind(&args.api).await?;
    let addr = listener.local_addr().map_err(ServiceError::Serve)?;
    info!(%addr, placement = scheduler.placement_name(), "dwr scheduler listening");
    serve(listener, scheduler, api, shutdown).await?;
    info!("dwr scheduler stopped");
    Ok(())
}

/// `dwr executor`: the agent with Docker, NVML and the host probe over Redis.
pub async fn run_executor(
    args: ExecutorArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let config = args.agent.agent_config(&args.common)?;
    let store = connect_redis(&args.common).await?;
    let runtime = connect_docker(&args.agent).await?;
    info!(executor = %config.id, ip = %config.ip, docker = %runtime.endpoint(), "dwr executor starting");
    let agent = ExecutorAgent::new(
        store,
        Arc::new(runtime),
        Arc::new(NvmlGpuProbe::new()),
        Arc::new(SysinfoHostProbe::new()),
        config,
    );
    agent.run(shutdown).await?;
    info!("dwr executor stopped");
    Ok(())
}

/// `dwr dev`: the API, the scheduler and one executor in one process, on the in-memory store
/// (or Redis when `REDIS_URL` / `REDIS_HOST` is set), with the Docker runtime (or the fake
/// one with `--fake-runtime`). Prints the API address and a command to try. Fails at once,
/// saying how to start it, when Docker is not reachable.
pub async fn run_dev(
    args: DevArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let mut config = args.agent.agent_config(&args.common)?;
    // A refused address or file is said before anything is connected.
    let (scheduling, api) = args.api.configs(&args.common)?;
    let runtime: Arc<dyn ContainerRuntime> = if args.fake_runtime {
        Arc::new(FakeRuntime::new().recording_specs(false))
    } else {
        Arc::new(connect_docker(&args.agent).await?)
    };
    let in_memory = !args.common.redis.explicitly_set();
    // The in-memory store ends with this process, so no restarted executor could ever
    // re-attach to a container left running: stop them all on the way out instead.
    config.drain_on_shutdown = in_memory;
    let (store, store_name): (Arc<dyn JobStore>, String) = if !in_memory {
        let target = args.common.redis.to_config()?.redacted_url();
        (
            connect_redis(&args.common).await?,
            format!("Redis at {target}"),
        )
    } else {
        (
            Arc::new(InMemoryJobStore::new().with_log_max_bytes(args.common.log_max_bytes)),
            "in-memory store".to_owned(),
        )
    };
    let scheduler = Scheduler::new(store.clone(), args.api.placement.build(), scheduling);
    let listener = bind(&args.api).await?;
    let addr = listener.local_addr().map_err(ServiceError::Serve)?;
    let stop = Shutdown::new(shutdown);
    let agent = ExecutorAgent::new(
        store,
        runtime,
        Arc::new(NvmlGpuProbe::new()),
        Arc::new(SysinfoHostProbe::new()),
        config.clone(),
    );
    let agent_stop = stop.clone();
    let agent_task = tokio::spawn(async move { agent.run(agent_stop.wait()).await });
    print_banner(
        addr,
        &store_name,
        &config.id.to_string(),
        args.api.api_token.is_some(),
    );
    let served = serve(listener, scheduler, api, stop.clone().wait()).await;
    // However the API ended, the agent ends with it.
    stop.fire();
    let agent_result = match agent_task.await {
        Ok(r) => r.map_err(ServiceError::from),
        Err(_) => Err(ServiceError::Panicked),
    };
    info!("dwr dev stopped");
    served.and(agent_result)
}

/// The address to show for `addr`: loopback when it listens on every interface.
fn display_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// The hello-world image: the offline test image when Docker has it, else `busybox:latest`.
fn hello_image() -> &'static str {
    const OFFLINE: &str = "dwr-test/busybox:latest";
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", OFFLINE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if present {
        OFFLINE
    } else {
        "busybox:latest"
    }
}

fn print_banner(addr: SocketAddr, store: &str, executor: &str, token: bool) {
    let shown = display_addr(addr);
    let auth = if token {
        " -H \"Authorization: Bearer $DWR_API_TOKEN\""
    } else {
        ""
    };
    println!(
        "dwr dev: API on http://{shown} ({store}, executor {executor}); Ctrl-C stops it.\n\
         Try:\n  curl -s -X POST http://{shown}/jobs{auth} -H 'Content-Type: application/json' \\\n    \
         -d '{{\"docker_image\": \"{image}\", \"command\": [\"echo\", \"hello from dwr\"], \"cpu_cores\": 0.5, \"memory_gb\": 0.25}}'\n  \
         curl -s http://{shown}/jobs{auth}\n  \
         DWR_URL=http://{shown} dwr submit {image} --wait -- echo hello from dwr",
        image = hello_image()
    );
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received: shutting down"),
        () = terminate => info!("SIGTERM received: shutting down"),
    }
}
