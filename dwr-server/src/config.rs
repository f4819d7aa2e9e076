//! Configuration of the services: command-line flags, each also read from the original
//! system's environment variable (or a `DWR_*` one for the additions), with its default.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use dwr_core::{
    AgentConfig, ExecutorId, FirstFit, Placement, Queues, Retention, SchedulerConfig, Spread,
};
use dwr_redis::RedisConfig;

use crate::api::ApiConfig;
use crate::http::ConnectionLimits;

/// The original system's variable naming an executor's region, read when `DWR_REGION` is not
/// set.
pub const ENV_ORIGINAL_REGION: &str = "EXECUTOR_REGION";
/// The original system's variable naming an executor's datacenter.
pub const ENV_ORIGINAL_DATACENTER: &str = "EXECUTOR_DATACENTER";

/// The variables `dwr` reads besides those of its flags (`dwr <command> --help` lists those):
/// the original system's names for region and datacenter, and the log filter.
pub const ENV_BESIDES_FLAGS: [&str; 3] = [ENV_ORIGINAL_REGION, ENV_ORIGINAL_DATACENTER, "RUST_LOG"];

/// An executor's region when none is configured (Nomad's default).
pub const DEFAULT_REGION: &str = "global";
/// An executor's datacenter when none is configured (Nomad's default).
pub const DEFAULT_DATACENTER: &str = "dc1";

/// How often the scheduler deletes finished jobs past their retention, at most.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// The flag or variable.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses seconds (whole or fractional, > 0) into a duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 365.0 * 24.0 * 3600.0 {
        return Err(format!("{text:?} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How long a job that no live executor could ever run may stay pending: `None` waits for
/// its allocation timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfeasibleGrace(pub Option<Duration>);

/// Parses `never` or seconds (0 or more).
pub fn parse_grace(text: &str) -> Result<InfeasibleGrace, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("never") {
        return Ok(InfeasibleGrace(None));
    }
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=365.0 * 24.0 * 3600.0).contains(&secs) => {
            Ok(InfeasibleGrace(Some(Duration::from_secs_f64(secs))))
        }
        _ => Err(format!(
            "{text:?} must be a number of seconds (0 or more) or never"
        )),
    }
}

/// A duration written as a number with an optional unit: `s` (the default), `m`, `h` or `d`
/// (`7d`, `90m`, `3600`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => (&t[..at], &t[at..]),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * scale <= 100.0 * 365.0 * 86_400.0 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!(
            "{text:?} must be a positive duration such as 7d, 12h, 90m or 3600"
        )),
    }
}

/// Retention by age: a duration, or `forever`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxAge(pub Option<Duration>);

fn parse_max_age(text: &str) -> Result<MaxAge, String> {
    if text.trim().eq_ignore_ascii_case("forever") {
        return Ok(MaxAge(None));
    }
    parse_duration(text).map(|d| MaxAge(Some(d)))
}

/// Retention by count: a number of jobs, or `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxJobs(pub Option<u64>);

fn parse_max_jobs(text: &str) -> Result<MaxJobs, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(MaxJobs(None));
    }
    t.replace('_', "")
        .parse::<u64>()
        .map(|n| MaxJobs(Some(n)))
        .map_err(|_| format!("{text:?} must be a number of jobs or unlimited"))
}

fn parse_positive_cores(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 && c <= 1_000_000.0 => Ok(c),
        _ => Err(format!("{text:?} must be a positive number of CPU cores")),
    }
}

/// Where Redis is (the original variables), plus a key prefix.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisArgs {
    /// Redis host [default: localhost].
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port [default: 6379].
    #[arg(long, env = "REDIS_PORT")]
    pub redis_port: Option<u16>,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Redis database number [default: 0].
    #[arg(long, env = "REDIS_DB")]
    pub redis_db: Option<i64>,
    /// A full redis:// or rediss:// URL; wins over host, port, password and db.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis Sentinels (host:port,...) to ask where the primary is, found again after a
    /// failover; instead of host, port and URL (password and db still apply).
    #[arg(long, env = "REDIS_SENTINELS")]
    pub redis_sentinels: Option<String>,
    /// The name the Sentinels know the primary by (required with REDIS_SENTINELS).
    #[arg(long, env = "REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// The Sentinels' own password, when they require one.
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,
    /// Replicas that must acknowledge every state change (WAIT) before it counts as done
    /// (0: none; replication stays asynchronous) [default: 0].
    #[arg(long, env = "DWR_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// Milliseconds a state change waits for those replicas before it fails as
    /// unavailable [default: 1000].
    #[arg(long, env = "DWR_REDIS_WAIT_TIMEOUT_MS")]
    pub redis_wait_timeout_ms: Option<u64>,
    /// Prefix of dwr's Redis keys (job logs stay at job_logs:{id}) [default: dwr:].
    #[arg(long, env = "DWR_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Lines kept per job log in Redis; older lines are trimmed (0: no cap) [default:
    /// 100000].
    #[arg(long, env = "DWR_LOG_MAX_LINES")]
    pub log_max_lines: Option<usize>,
    /// Seconds a finished job's log list is kept in Redis (0: until the job is deleted)
    /// [default: 604800, 7 days].
    #[arg(long, env = "DWR_LOG_TTL_SECONDS")]
    pub log_ttl_seconds: Option<u64>,
}

impl RedisArgs {
    /// True when Redis was named explicitly (`REDIS_URL`, `REDIS_HOST` or
    /// `REDIS_SENTINELS`): `dwr dev` then uses it instead of the in-memory store.
    pub fn explicitly_set(&self) -> bool {
        self.redis_url.is_some() || self.redis_host.is_some() || self.redis_sentinels.is_some()
    }

    /// The Redis store's configuration.
    pub fn to_config(&self) -> Result<RedisConfig, ConfigError> {
        let mut config = RedisConfig::default();
        if let Some(host) = self.redis_host.as_deref().filter(|h| !h.trim().is_empty()) {
            config.host = host.trim().to_owned();
        }
        if let Some(port) = self.redis_port {
            config.port = port;
        }
        config.password = self.redis_password.clone().filter(|p| !p.is_empty());
        if let Some(db) = self.redis_db {
            if db < 0 {
                return Err(ConfigError {
                    field: "REDIS_DB",
                    reason: format!("{db} is not a database number"),
                });
            }
            config.db = db;
        }
        config.url = self.redis_url.clone().filter(|u| !u.trim().is_empty());
        if let Some(list) = self
            .redis_sentinels
            .as_deref()
            .filter(|l| !l.trim().is_empty())
        {
            config.sentinels = dwr_redis::parse_sentinels(list).map_err(|e| ConfigError {
                field: "REDIS_SENTINELS",
                reason: e.to_string(),
            })?;
        }
        config.sentinel_master = self
            .redis_sentinel_master
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        config.sentinel_password = self
            .redis_sentinel_password
            .clone()
            .filter(|p| !p.is_empty());
        if let Some(replicas) = self.redis_wait_replicas {
            config.wait_replicas = replicas;
        }
        if let Some(ms) = self.redis_wait_timeout_ms {
            config.wait_timeout = Duration::from_millis(ms);
        }
        if let Some(prefix) = self.redis_prefix.as_deref().filter(|p| !p.is_empty()) {
            config.key_prefix = prefix.to_owned();
        }
        if let Some(lines) = self.log_max_lines {
            config.log_max_lines = lines;
        }
        if let Some(secs) = self.log_ttl_seconds {
            config.log_ttl = Duration::from_secs(secs);
        }
        config.validate().map_err(|e| match e {
            dwr_redis::Error::InvalidConfig { field, reason } => ConfigError { field, reason },
            other => ConfigError {
                field: "REDIS_URL",
                reason: other.to_string(),
            },
        })?;
        Ok(config)
    }
}

/// Settings both services read.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Redis.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Seconds between this executor's heartbeats. It registers the interval: the store
    /// judges it lost after three intervals without one (its lease), whatever interval a
    /// scheduler was started with.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "30", value_parser = parse_seconds)]
    pub heartbeat_interval: Duration,
    /// Seconds between fallback checks (the scheduler's safety-net pass, the executor's
    /// re-read of its jobs); assignments themselves wake at once.
    #[arg(long, env = "JOB_POLL_INTERVAL", default_value = "10", value_parser = parse_seconds)]
    pub job_poll_interval: Duration,
    /// Bytes of log kept per job (0: no cap); past it the log ends with one line saying
    /// how much was dropped. Enforced by the store on every append, so it is the setting
    /// of the processes that write logs (executors, dev).
    #[arg(long, env = "DWR_LOG_MAX_BYTES", default_value_t = dwr_core::DEFAULT_LOG_MAX_BYTES)]
    pub log_max_bytes: u64,
    /// Directory of scheduler.log / executor.log.
    #[arg(long, env = "DWR_LOG_DIR", default_value = ".")]
    pub log_dir: PathBuf,
}

/// The placement strategy.
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlacementKind {
    /// The first executor (by id) with room.
    #[default]
    FirstFit,
    /// The least loaded executor with room.
    Spread,
}

impl PlacementKind {
    /// The strategy.
    pub fn build(self) -> std::sync::Arc<dyn Placement> {
        match self {
            PlacementKind::FirstFit => std::sync::Arc::new(FirstFit),
            PlacementKind::Spread => std::sync::Arc::new(Spread),
        }
    }
}

/// Settings of the HTTP API and the scheduling loop.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Address the API listens on [default: 127.0.0.1 without an API token, 0.0.0.0 with
    /// one]. Any address but loopback without a token is refused unless
    /// `--insecure-no-auth` is given.
    #[arg(long = "api-host", env = "SCHEDULER_API_HOST")]
    pub api_host: Option<IpAddr>,
    /// Allow listening on a non-loopback address without an API token: anyone who reaches
    /// the port can then run any image on every executor.
    #[arg(
        long,
        env = "DWR_INSECURE_NO_AUTH",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_no_auth: bool,
    /// Port the API listens on (0: any free port).
    #[arg(long = "api-port", env = "SCHEDULER_API_PORT", default_value_t = 8000)]
    pub api_port: u16,
    /// Bearer token required on every route but /health (none: no token).
    #[arg(long, env = "DWR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Named tokens, each with a role (read, submit, admin), as SHA-256 digests in a TOML
    /// file: see the README's "Tenants".
    #[arg(long, env = "DWR_TOKENS_FILE", value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// The queues jobs may name, with weights and quotas, in a TOML file: see the README's
    /// "Queues" [default: the one queue `default`].
    #[arg(long, env = "DWR_QUEUES_FILE", value_name = "PATH")]
    pub queues_file: Option<PathBuf>,
    /// Let a pending job that fits nowhere preempt running jobs at least 10 points of
    /// priority lower, in every queue that does not say otherwise (`preemption` in the
    /// queues file).
    #[arg(
        long,
        env = "DWR_PREEMPTION",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub preemption: bool,
    /// Placement strategy.
    #[arg(long, env = "DWR_PLACEMENT", value_enum, default_value = "first-fit")]
    pub placement: PlacementKind,
    /// Seconds a job that no live executor could ever run (too big, GPUs nowhere) stays
    /// pending before it fails; `never` waits for its allocation timeout.
    #[arg(long, env = "DWR_INFEASIBLE_GRACE", default_value = "0", value_parser = parse_grace)]
    pub infeasible_grace: InfeasibleGrace,
    /// Longest time one API request may take, seconds.
    #[arg(long, env = "DWR_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub request_timeout: Duration,
    /// Finished jobs (and their logs) older than this are deleted in the background:
    /// a duration (`7d`, `12h`, `30m`, seconds) or `forever`.
    #[arg(long, env = "DWR_RETENTION", default_value = "7d", value_parser = parse_max_age)]
    pub retention: MaxAge,
    /// At most this many finished jobs are kept (the first finished are deleted first), or
    /// `unlimited`.
    #[arg(long, env = "DWR_RETENTION_MAX_JOBS", default_value = "1000000", value_parser = parse_max_jobs)]
    pub retention_max_jobs: MaxJobs,
    /// Most API connections open at once; more wait to be accepted.
    #[arg(long, env = "DWR_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds a client may take to send a request's headers before its connection is
    /// closed (slow clients).
    #[arg(long, env = "DWR_HEADER_READ_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub header_read_timeout: Duration,
    /// Most streams open at once (logs with `follow=true`, and `/events`); one more is
    /// answered 503.
    #[arg(long, env = "DWR_MAX_LOG_FOLLOWERS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_log_followers: u32,
}

impl ApiArgs {
    /// The token, when one is configured (an empty one is none).
    pub fn token(&self) -> Option<&str> {
        self.api_token.as_deref().filter(|t| !t.is_empty())
    }

    /// The address to listen on: the configured one, else 127.0.0.1 without a token and
    /// 0.0.0.0 (the original system's default) with one. An address other than loopback
    /// without a token is refused unless `--insecure-no-auth` allows it.
    pub fn listen_ip(&self) -> Result<IpAddr, ConfigError> {
        let token = self.token().is_some() || self.tokens_file.is_some();
        let ip = self.api_host.unwrap_or(if token {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
        if !token && !ip.is_loopback() && !self.insecure_no_auth {
            return Err(ConfigError {
                field: "SCHEDULER_API_HOST",
                reason: format!(
                    "listening on {ip} without an API token would let anyone who reaches the \
                     port run any image on every executor; set DWR_API_TOKEN (--api-token), \
                     listen on 127.0.0.1, or allow it with --insecure-no-auth \
                     (DWR_INSECURE_NO_AUTH=1)"
                ),
            });
        }
        Ok(ip)
    }

    /// The API's own settings; the tokens file is read here, and a bad one is refused
    /// naming the entry.
    pub fn api_config(&self) -> Result<ApiConfig, ConfigError> {
        let tenants = match &self.tokens_file {
            Some(path) => {
                crate::api::auth::read_tokens_file(path).map_err(|reason| ConfigError {
                    field: "DWR_TOKENS_FILE",
                    reason,
                })?
            }
            None => Vec::new(),
        };
        Ok(ApiConfig {
            api_token: self.token().map(str::to_owned),
            tenants,
            request_timeout: self.request_timeout,
            connections: ConnectionLimits {
                max_connections: self.max_connections as usize,
                header_read_timeout: self.header_read_timeout,
            },
            max_log_followers: self.max_log_followers as usize,
            ..ApiConfig::default()
        })
    }

    /// The scheduler's and the API's settings, checked: the address (see
    /// [`listen_ip`](Self::listen_ip)), the tokens and queues files, and that every queue a
    /// token names is defined.
    pub fn configs(
        &self,
        common: &CommonArgs,
    ) -> Result<(SchedulerConfig, ApiConfig), ConfigError> {
        self.listen_ip()?;
        let scheduling = self.scheduler_config(common)?;
        let api = self.api_config()?;
        crate::api::auth::check_tenant_queues(&api.tenants, &scheduling.queues).map_err(
            |reason| ConfigError {
                field: "DWR_TOKENS_FILE",
                reason,
            },
        )?;
        Ok((scheduling, api))
    }

    /// The scheduler's settings from these and the common ones; the queues file is read
    /// here, and a bad one is refused naming the queue.
    pub fn scheduler_config(&self, common: &CommonArgs) -> Result<SchedulerConfig, ConfigError> {
        let queues = match &self.queues_file {
            Some(path) => {
                crate::queues_file::read_queues_file(path).map_err(|reason| ConfigError {
                    field: "DWR_QUEUES_FILE",
                    reason,
                })?
            }
            None => Queues::default(),
        };
        Ok(SchedulerConfig {
            tick: common.job_poll_interval,
            infeasible_grace: self.infeasible_grace.0,
            retention: Retention {
                max_age: self.retention.0,
                max_jobs: self.retention_max_jobs.0,
                // Often enough that an age of a minute is kept to within about two.
                every: self.retention.0.map_or(RETENTION_EVERY, |age| {
                    (age / 2).clamp(Duration::from_secs(1), RETENTION_EVERY)
                }),
            },
            queues,
            preemption: self.preemption,
            ..SchedulerConfig::default()
        })
    }
}

/// Settings of an executor.
#[derive(Args, Debug, Clone, Default)]
pub struct AgentArgs {
    /// IP reported for this executor [default: the first non-loopback IPv4 of the host's
    /// interfaces, else 127.0.0.1].
    #[arg(long, env = "EXECUTOR_IP")]
    pub executor_ip: Option<IpAddr>,
    /// Executor id, to run several executors on one host [default: the IP].
    #[arg(long, env = "EXECUTOR_ID")]
    pub executor_id: Option<String>,
    /// Region of this executor [default: the original system's `EXECUTOR_REGION`, else
    /// `global`].
    #[arg(long, env = "DWR_REGION")]
    pub region: Option<String>,
    /// Datacenter of this executor [default: the original system's `EXECUTOR_DATACENTER`,
    /// else `dc1`].
    #[arg(long, env = "DWR_DATACENTER")]
    pub datacenter: Option<String>,
    /// Host paths jobs may mount (comma-separated, absolute); none: every host mount is
    /// refused.
    #[arg(long, env = dwr_docker::ENV_VOLUME_ALLOW, value_delimiter = ',',
          value_parser = dwr_docker::parse_allowed_path)]
    pub volume_allow: Vec<PathBuf>,
    /// The Docker engine: `unix://`, `tcp://` or `http://` [default:
    /// unix:///var/run/docker.sock].
    #[arg(long, env = dwr_docker::ENV_DOCKER_HOST, value_name = "URL")]
    pub docker_host: Option<String>,
    /// Network mode of job containers: `none`, `host`, `bridge` or a network name [default:
    /// the engine's].
    #[arg(long, env = dwr_docker::ENV_NETWORK, value_name = "MODE")]
    pub docker_network: Option<String>,
    /// Most processes per job container; 0: no limit [default: 4096].
    #[arg(long, env = dwr_docker::ENV_PIDS_LIMIT, value_name = "N",
          value_parser = dwr_docker::parse_pids_limit)]
    pub pids_limit: Option<u32>,
    /// An image pull without progress for this many seconds fails the job [default: 120].
    #[arg(long, env = dwr_docker::ENV_PULL_STALL_TIMEOUT, value_name = "SECONDS",
          value_parser = dwr_docker::parse_pull_stall_timeout)]
    pub pull_stall_timeout: Option<Duration>,
    /// Timeout of one Docker engine request, seconds (log and wait streams excepted)
    /// [default: 120].
    #[arg(long, env = dwr_docker::ENV_REQUEST_TIMEOUT, value_name = "SECONDS",
          value_parser = dwr_docker::parse_request_timeout)]
    pub docker_timeout: Option<Duration>,
    /// CPU cores to offer [default: the host's].
    #[arg(long, env = "DWR_EXECUTOR_CPUS", value_parser = parse_positive_cores)]
    pub cpus: Option<f64>,
    /// Memory to offer, MiB [default: the host's].
    #[arg(long, env = "DWR_EXECUTOR_MEMORY_MB")]
    pub memory_mb: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when stopping a job's container.
    #[arg(long, env = "DWR_STOP_GRACE", default_value = "10", value_parser = parse_seconds)]
    pub stop_grace: Duration,
    /// When job images are pulled: `missing` (only images not present locally) or `always`
    /// (before every job, following a tag that moved).
    #[arg(long, env = dwr_docker::ENV_PULL_POLICY, value_enum, default_value = "missing")]
    pub pull_policy: PullPolicyArg,
    /// User job containers run as: `uid[:gid]`, or a user or group name the images know
    /// [default: each image's own user].
    #[arg(long, env = dwr_docker::ENV_CONTAINER_USER, value_parser = dwr_docker::parse_container_user)]
    pub container_user: Option<String>,
    /// Size at which a job container's log file on this host is rotated (Docker's json-file
    /// driver): 10m, 512k, 1g (binary units) [default: 10m].
    #[arg(long, env = dwr_docker::ENV_LOG_MAX_SIZE, value_name = "SIZE",
          value_parser = dwr_docker::parse_log_max_size)]
    pub container_log_max_size: Option<u64>,
    /// Log files kept per job container, 1..=100: with the size, what one job's output may
    /// take of this host's disk [default: 3].
    #[arg(long, env = dwr_docker::ENV_LOG_MAX_FILES, value_name = "N",
          value_parser = dwr_docker::parse_log_max_files)]
    pub container_log_max_files: Option<u32>,
}

/// The `--pull-policy` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicyArg {
    /// Pull only images that are not present locally.
    #[default]
    Missing,
    /// Pull before every job.
    Always,
}

impl From<PullPolicyArg> for dwr_docker::PullPolicy {
    fn from(arg: PullPolicyArg) -> Self {
        match arg {
            PullPolicyArg::Missing => dwr_docker::PullPolicy::Missing,
            PullPolicyArg::Always => dwr_docker::PullPolicy::Always,
        }
    }
}

impl AgentArgs {
    /// The IP to report: the configured one, else detected.
    pub fn ip(&self) -> IpAddr {
        self.executor_ip.unwrap_or_else(detect_ip)
    }

    /// The agent's settings from these and the common ones.
    pub fn agent_config(&self, common: &CommonArgs) -> Result<AgentConfig, ConfigError> {
        let ip = self.ip().to_string();
        let id = match self.executor_id.as_deref().map(str::trim) {
            Some("") => {
                return Err(ConfigError {
                    field: "EXECUTOR_ID",
                    reason: "must not be empty".into(),
                })
            }
            Some(id) => id.to_owned(),
            None => ip.clone(),
        };
        if self.memory_mb == Some(0) {
            return Err(ConfigError {
                field: "DWR_EXECUTOR_MEMORY_MB",
                reason: "must be greater than 0".into(),
            });
        }
        let mut config = AgentConfig::new(ExecutorId::new(id), ip);
        // Never null on the wire: clients of the original system read these and send them
        // back as eligible_regions / eligible_datacenters. Nomad's defaults.
        let named = |flag: &Option<String>, original: &str, default: &str| {
            flag.clone()
                .or_else(|| std::env::var(original).ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        config.region = Some(named(&self.region, ENV_ORIGINAL_REGION, DEFAULT_REGION));
        config.datacenter = Some(named(
            &self.datacenter,
            ENV_ORIGINAL_DATACENTER,
            DEFAULT_DATACENTER,
        ));
        // Checked finite and positive by `parse_positive_cores`; rounded up by the one rule.
        config.cpu_millis = self.cpus.and_then(dwr_core::units::millicores);
        config.memory_mib = self.memory_mb;
        config.heartbeat_interval = common.heartbeat_interval;
        config.poll_interval = common.job_poll_interval;
        config.stop_grace = self.stop_grace;
        Ok(config)
    }

    /// The Docker runtime's settings.
    pub fn docker_config(&self) -> dwr_docker::DockerConfig {
        // Every Docker setting is a flag (reading the variable of `DockerConfig::from_env`'s
        // name): read once, by clap, with the same parsers.
        let defaults = dwr_docker::DockerConfig::default();
        let mut config = dwr_docker::DockerConfig {
            docker_host: self.docker_host.clone(),
            network_mode: self
                .docker_network
                .clone()
                .unwrap_or(defaults.network_mode.clone()),
            volume_allowlist: self.volume_allow.clone(),
            pull_stall_timeout: self
                .pull_stall_timeout
                .unwrap_or(defaults.pull_stall_timeout),
            pull_policy: self.pull_policy.into(),
            request_timeout: self.docker_timeout.unwrap_or(defaults.request_timeout),
            container_user: self.container_user.clone(),
            log_max_size: self.container_log_max_size.unwrap_or(defaults.log_max_size),
            log_max_files: self
                .container_log_max_files
                .unwrap_or(defaults.log_max_files),
            ..defaults
        };
        if let Some(limit) = self.pids_limit {
            config.set_pids_limit(limit);
        }
        config
    }
}

/// The first non-loopback IPv4 address of the host's interfaces (skipping container
/// bridges), found without sending any packet; 127.0.0.1 when there is none.
pub fn detect_ip() -> IpAddr {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    };
    let virtual_name = |name: &str| {
        ["docker", "veth", "br-", "virbr", "cni", "flannel", "lo"]
            .iter()
            .any(|p| name.starts_with(p))
    };
    let candidates: Vec<_> = interfaces
        .iter()
        .filter(|i| !i.is_loopback() && i.ip().is_ipv4())
        .collect();
    candidates
        .iter()
        .find(|i| !virtual_name(&i.name))
        .or_else(|| candidates.first())
        .map(|i| i.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Both {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        agent: AgentArgs,
    }

    /// Parses `dwr ARGS`, the arguments split at white space.
    fn parse(args: &str) -> Result<Both, clap::Error> {
        Both::try_parse_from(["dwr"].into_iter().chain(args.split_whitespace()))
    }

    #[test]
    fn the_queues_and_tokens_files_are_checked_together_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let queues = dir.path().join("queues.toml");
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(&queues, "[[queues]]\nname = \"research\"\nweight = 3\n").unwrap();
        let token = |queue: &str| {
            format!(
                "[[tokens]]\nname = \"rita\"\nrole = \"submit\"\nsha256 = \"{}\"\nqueues = [\"{queue}\"]\n",
                "a".repeat(64)
            )
        };
        std::fs::write(&tokens, token("research")).unwrap();
        let args = format!(
            "--queues-file {} --tokens-file {}",
            queues.display(),
            tokens.display()
        );
        let b = parse(&args).unwrap();
        let (scheduling, api) = b.api.configs(&b.common).unwrap();
        assert_eq!(scheduling.queues.get("research").unwrap().weight, 3);
        assert_eq!(api.tenants[0].queues, Some(vec!["research".to_owned()]));

        std::fs::write(&tokens, token("gpu")).unwrap();
        let e = b.api.configs(&b.common).unwrap_err();
        assert_eq!(e.field, "DWR_TOKENS_FILE");
        assert!(
            e.reason.contains("rita") && e.reason.contains("\"gpu\""),
            "{e}"
        );

        std::fs::write(&queues, "[[queues]]\nname = \"research\"\nweight = 0\n").unwrap();
        let e = b.api.configs(&b.common).unwrap_err();
        assert_eq!(e.field, "DWR_QUEUES_FILE");
        assert!(
            e.reason.contains("research") && e.reason.contains("weight"),
            "{e}"
        );
    }

    #[test]
    fn defaults_are_the_originals() {
        let b = parse("").unwrap();
        assert_eq!(b.api.api_port, 8000);
        // Without a token the API listens on loopback only (unlike the original 0.0.0.0).
        assert_eq!(b.api.listen_ip().unwrap().to_string(), "127.0.0.1");
        assert_eq!(b.common.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(b.common.job_poll_interval, Duration::from_secs(10));
        let redis = b.common.redis.to_config().unwrap();
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.db),
            ("localhost", 6379, 0)
        );
        assert_eq!(
            (redis.log_max_lines, redis.log_ttl),
            (dwr_redis::DEFAULT_LOG_MAX_LINES, dwr_redis::DEFAULT_LOG_TTL)
        );
        let b = parse("--log-max-lines 500 --log-ttl-seconds 60 --redis-prefix prod:").unwrap();
        let redis = b.common.redis.to_config().unwrap();
        assert_eq!(redis.log_max_lines, 500);
        assert_eq!(redis.log_ttl, Duration::from_secs(60));
        assert_eq!(redis.key_prefix, "prod:");
    }

    #[test]
    fn flags_override_and_bad_values_are_refused() {
        let b = parse(
            "--heartbeat-interval 1 --executor-id e1 --executor-ip 127.0.0.1 --cpus 1.5 \
             --memory-mb 512 --volume-allow /data,/scratch --placement spread",
        )
        .unwrap();
        let agent = b.agent.agent_config(&b.common).unwrap();
        assert_eq!(agent.id, ExecutorId::new("e1"));
        assert_eq!(
            (agent.cpu_millis, agent.memory_mib),
            (Some(1500), Some(512))
        );
        assert_eq!(b.agent.volume_allow.len(), 2);
        let docker = b.agent.docker_config();
        assert_eq!(docker.volume_allowlist, b.agent.volume_allow);
        assert_eq!(
            (docker.pids_limit, docker.request_timeout),
            (Some(4096), Duration::from_secs(120)),
            "unset Docker settings keep DockerConfig's defaults"
        );
        let d = parse("--pids-limit 0 --docker-timeout 7 --docker-host tcp://127.0.0.1:2375")
            .unwrap()
            .agent
            .docker_config();
        assert_eq!(d.pids_limit, None, "0 is no limit");
        assert_eq!(d.request_timeout, Duration::from_secs(7));
        assert_eq!(d.endpoint(), "tcp://127.0.0.1:2375");
        // The executor registers its own interval: its lease is three of them.
        assert_eq!(agent.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(b.api.placement, PlacementKind::Spread);
        let sched = b.api.scheduler_config(&b.common).unwrap();
        assert_eq!(sched.infeasible_grace, Some(Duration::ZERO));
        let c = parse("--infeasible-grace never").unwrap();
        let sched = c.api.scheduler_config(&c.common).unwrap();
        assert_eq!(sched.infeasible_grace, None);
        assert!(
            parse("--executor-ttl 7").is_err(),
            "the scheduler no longer judges executors by a TTL of its own"
        );
        for bad in [
            vec!["dwr", "--heartbeat-interval", "0"],
            vec!["dwr", "--cpus", "-1"],
            vec!["dwr", "--api-port", "70000"],
            vec!["dwr", "--executor-ip", "not-an-ip"],
            vec!["dwr", "--infeasible-grace", "-1"],
            vec!["dwr", "--container-user", "a b"],
            vec!["dwr", "--container-log-max-size", "10x"],
            vec!["dwr", "--container-log-max-files", "0"],
            vec!["dwr", "--volume-allow", "/data,relative"],
            vec!["dwr", "--pids-limit", "many"],
            vec!["dwr", "--pull-stall-timeout", "0"],
        ] {
            assert!(Both::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn container_user_and_log_rotation_flags() {
        let b = parse(
            "--container-user 1000:1000 --container-log-max-size 20m --container-log-max-files 5",
        )
        .unwrap();
        assert_eq!(b.agent.container_user.as_deref(), Some("1000:1000"));
        assert_eq!(b.agent.container_log_max_size, Some(20 * 1024 * 1024));
        assert_eq!(b.agent.container_log_max_files, Some(5));
    }

    #[test]
    fn no_token_means_loopback_unless_insecure_is_asked_for() {
        let parse = |args: &[&str]| Both::try_parse_from(args).unwrap().api;
        // With a token, the original default: every interface.
        let api = parse(&["dwr", "--api-token", "s3cret"]);
        assert_eq!(api.listen_ip().unwrap().to_string(), "0.0.0.0");
        // Without one, any other address than loopback is refused, naming the way out.
        let api = parse(&["dwr", "--api-host", "0.0.0.0"]);
        let err = api.listen_ip().unwrap_err();
        assert_eq!(err.field, "SCHEDULER_API_HOST");
        assert!(err.reason.contains("--insecure-no-auth"), "{err}");
        assert!(err.reason.contains("DWR_INSECURE_NO_AUTH=1"), "{err}");
        let api = parse(&["dwr", "--api-host", "10.1.2.3", "--api-token", ""]);
        assert!(api.listen_ip().is_err(), "an empty token is no token");
        let api = parse(&["dwr", "--api-host", "::1"]);
        assert_eq!(api.listen_ip().unwrap().to_string(), "::1");
        let api = parse(&["dwr", "--api-host", "0.0.0.0", "--insecure-no-auth"]);
        assert_eq!(api.listen_ip().unwrap().to_string(), "0.0.0.0");
    }

    #[test]
    fn the_detected_ip_is_an_address() {
        // Whatever the host has, the answer is an IPv4 address (127.0.0.1 at worst).
        assert!(detect_ip().is_ipv4());
    }
}
