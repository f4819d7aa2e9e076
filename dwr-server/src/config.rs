//! Configuration of the services: command-line flags, each also read from the original
//! system's environment variable (or a `DWR_*` one for the additions), with its default.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use dwr_core::{AgentConfig, ExecutorId, FirstFit, Placement, SchedulerConfig, Spread};
use dwr_redis::RedisConfig;

use crate::api::ApiConfig;

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
    /// Prefix of dwr's Redis keys (job logs stay at job_logs:{id}) [default: dwr:].
    #[arg(long, env = "DWR_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
}

impl RedisArgs {
    /// True when Redis was named explicitly (`REDIS_URL` or `REDIS_HOST`): `dwr dev` then
    /// uses it instead of the in-memory store.
    pub fn explicitly_set(&self) -> bool {
        self.redis_url.is_some() || self.redis_host.is_some()
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
        if let Some(prefix) = self.redis_prefix.as_deref().filter(|p| !p.is_empty()) {
            config.key_prefix = prefix.to_owned();
        }
        config.validate().map_err(|e| ConfigError {
            field: "REDIS_URL",
            reason: e.to_string(),
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
    /// Address the API listens on.
    #[arg(
        long = "api-host",
        env = "SCHEDULER_API_HOST",
        default_value = "0.0.0.0"
    )]
    pub api_host: IpAddr,
    /// Port the API listens on (0: any free port).
    #[arg(long = "api-port", env = "SCHEDULER_API_PORT", default_value_t = 8000)]
    pub api_port: u16,
    /// Bearer token required on every route but /health (none: no token).
    #[arg(long, env = "DWR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
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
}

impl ApiArgs {
    /// The API's own settings.
    pub fn api_config(&self) -> ApiConfig {
        ApiConfig {
            api_token: self.api_token.clone().filter(|t| !t.is_empty()),
            request_timeout: self.request_timeout,
            ..ApiConfig::default()
        }
    }

    /// The scheduler's settings from these and the common ones.
    pub fn scheduler_config(&self, common: &CommonArgs) -> SchedulerConfig {
        SchedulerConfig {
            tick: common.job_poll_interval,
            infeasible_grace: self.infeasible_grace.0,
            ..SchedulerConfig::default()
        }
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
    /// Region of this executor.
    #[arg(long, env = "DWR_REGION")]
    pub region: Option<String>,
    /// Datacenter of this executor.
    #[arg(long, env = "DWR_DATACENTER")]
    pub datacenter: Option<String>,
    /// Host paths jobs may mount (comma-separated); none: every host mount is refused.
    #[arg(long, env = "DWR_VOLUME_ALLOW", value_delimiter = ',')]
    pub volume_allow: Vec<PathBuf>,
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
    #[arg(long, env = "DWR_PULL_POLICY", value_enum, default_value = "missing")]
    pub pull_policy: PullPolicyArg,
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
        config.region = self.region.clone().filter(|r| !r.is_empty());
        config.datacenter = self.datacenter.clone().filter(|d| !d.is_empty());
        config.cpu_millis = self.cpus.map(|c| (c * 1000.0).round().max(1.0) as u64);
        config.memory_mib = self.memory_mb;
        config.heartbeat_interval = common.heartbeat_interval;
        config.poll_interval = common.job_poll_interval;
        config.stop_grace = self.stop_grace;
        Ok(config)
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

    #[test]
    fn defaults_are_the_originals() {
        let b = Both::try_parse_from(["dwr"]).unwrap();
        assert_eq!(b.api.api_port, 8000);
        assert_eq!(b.api.api_host.to_string(), "0.0.0.0");
        assert_eq!(b.common.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(b.common.job_poll_interval, Duration::from_secs(10));
        let redis = b.common.redis.to_config().unwrap();
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.db),
            ("localhost", 6379, 0)
        );
    }

    #[test]
    fn flags_override_and_bad_values_are_refused() {
        let b = Both::try_parse_from([
            "dwr",
            "--heartbeat-interval",
            "1",
            "--executor-id",
            "e1",
            "--executor-ip",
            "127.0.0.1",
            "--cpus",
            "1.5",
            "--memory-mb",
            "512",
            "--volume-allow",
            "/data,/scratch",
            "--placement",
            "spread",
        ])
        .unwrap();
        let agent = b.agent.agent_config(&b.common).unwrap();
        assert_eq!(agent.id, ExecutorId::new("e1"));
        assert_eq!(
            (agent.cpu_millis, agent.memory_mib),
            (Some(1500), Some(512))
        );
        assert_eq!(b.agent.volume_allow.len(), 2);
        // The executor registers its own interval: its lease is three of them.
        assert_eq!(agent.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(b.api.placement, PlacementKind::Spread);
        let sched = b.api.scheduler_config(&b.common);
        assert_eq!(sched.infeasible_grace, Some(Duration::ZERO));
        let c = Both::try_parse_from(["dwr", "--infeasible-grace", "never"]).unwrap();
        let sched = c.api.scheduler_config(&c.common);
        assert_eq!(sched.infeasible_grace, None);
        assert!(
            Both::try_parse_from(["dwr", "--executor-ttl", "7"]).is_err(),
            "the scheduler no longer judges executors by a TTL of its own"
        );
        for bad in [
            vec!["dwr", "--heartbeat-interval", "0"],
            vec!["dwr", "--cpus", "-1"],
            vec!["dwr", "--api-port", "70000"],
            vec!["dwr", "--executor-ip", "not-an-ip"],
            vec!["dwr", "--infeasible-grace", "-1"],
        ] {
            assert!(Both::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_detected_ip_is_an_address() {
        // Whatever the host has, the answer is an IPv4 address (127.0.0.1 at worst).
        assert!(detect_ip().is_ipv4());
    }
}
