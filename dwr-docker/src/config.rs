//! [`DockerConfig`]: where the engine is and the policy applied to every container.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// Environment variable naming the engine (`unix:///path`, `/path`, `tcp://host:port`,
/// `http://host:port`), as the Docker CLI reads it.
pub const ENV_DOCKER_HOST: &str = "DOCKER_HOST";
/// Environment variable with the network mode of job containers (`default`, `none`, `host`,
/// `bridge` or a network name).
pub const ENV_NETWORK: &str = "DWR_DOCKER_NETWORK";
/// Environment variable with the host paths that jobs may mount, separated by `:` like `PATH`.
pub const ENV_VOLUME_ALLOWLIST: &str = "DWR_VOLUME_ALLOWLIST";
/// Environment variable with the pids limit of job containers (`0` for none).
pub const ENV_PIDS_LIMIT: &str = "DWR_PIDS_LIMIT";
/// Environment variable with the seconds a pull may go without progress.
pub const ENV_PULL_STALL_TIMEOUT: &str = "DWR_PULL_STALL_TIMEOUT_SECS";
/// Environment variable with the pull policy: `missing` (pull only images not present) or
/// `always` (pull before every job, so a moved tag is followed).
pub const ENV_PULL_POLICY: &str = "DWR_PULL_POLICY";
/// Environment variable with the default stop grace period in seconds.
pub const ENV_STOP_GRACE: &str = "DWR_STOP_GRACE_SECS";
/// Environment variable with the timeout of one engine request in seconds (streams excepted).
pub const ENV_REQUEST_TIMEOUT: &str = "DWR_DOCKER_TIMEOUT_SECS";

/// The socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// When a job's image is pulled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the image is not present locally (the default): a present image is never
    /// pulled, so an executor works without a registry.
    #[default]
    Missing,
    /// Before every job, as asked: a tag that moved in the registry is followed. A pull that
    /// fails fails the job, even if an older copy is present.
    Always,
}

impl PullPolicy {
    fn parse(value: &str) -> Result<Self, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "missing" | "if-not-present" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            _ => Err(Error::invalid_config(
                ENV_PULL_POLICY,
                value,
                "expected missing or always",
            )),
        }
    }
}

/// How [`DockerRuntime`](crate::DockerRuntime) reaches the engine and what it allows jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerConfig {
    /// The engine (`unix:///path`, `/path`, `tcp://host:port` or `http://host:port`; TLS is
    /// not supported); `None` for the local socket [`DEFAULT_SOCKET`].
    pub docker_host: Option<String>,
    /// Network mode of job containers; `"default"` leaves the engine's default.
    pub network_mode: String,
    /// Host directories under which jobs may mount volumes. Empty (the default): every host
    /// mount is refused.
    pub volume_allowlist: Vec<PathBuf>,
    /// Most processes a job's container may hold; `None` for no limit.
    pub pids_limit: Option<u32>,
    /// A pull that makes no progress for this long fails with `PullStalled`.
    pub pull_stall_timeout: Duration,
    /// When images are pulled.
    pub pull_policy: PullPolicy,
    /// Grace period between SIGTERM and SIGKILL that callers use when they have no other.
    pub stop_grace: Duration,
    /// Timeout of one engine request until its response starts (log and wait streams may
    /// run longer).
    pub request_timeout: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            docker_host: None,
            network_mode: "default".to_owned(),
            volume_allowlist: Vec::new(),
            pids_limit: Some(4096),
            pull_stall_timeout: Duration::from_secs(120),
            pull_policy: PullPolicy::Missing,
            stop_grace: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl DockerConfig {
    /// The defaults, overridden by the environment variables `DOCKER_HOST`, `DWR_DOCKER_NETWORK`,
    /// `DWR_VOLUME_ALLOWLIST`, `DWR_PIDS_LIMIT`, `DWR_PULL_STALL_TIMEOUT_SECS`, `DWR_PULL_POLICY`,
    /// `DWR_STOP_GRACE_SECS` and `DWR_DOCKER_TIMEOUT_SECS` where set and non-empty.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        if let Some(host) = get(ENV_DOCKER_HOST) {
            config.docker_host = Some(host.trim().to_owned());
        }
        if let Some(mode) = get(ENV_NETWORK) {
            config.network_mode = mode.trim().to_owned();
        }
        if let Some(list) = get(ENV_VOLUME_ALLOWLIST) {
            config.volume_allowlist = parse_allowlist(&list)?;
        }
        if let Some(value) = get(ENV_PIDS_LIMIT) {
            let n: u32 = value.trim().parse().map_err(|_| {
                Error::invalid_config(ENV_PIDS_LIMIT, &value, "expected a whole number")
            })?;
            config.pids_limit = (n > 0).then_some(n);
        }
        if let Some(value) = get(ENV_PULL_STALL_TIMEOUT) {
            config.pull_stall_timeout = parse_seconds(ENV_PULL_STALL_TIMEOUT, &value)?;
        }
        if let Some(value) = get(ENV_PULL_POLICY) {
            config.pull_policy = PullPolicy::parse(&value)?;
        }
        if let Some(value) = get(ENV_STOP_GRACE) {
            config.stop_grace = parse_seconds(ENV_STOP_GRACE, &value)?;
        }
        if let Some(value) = get(ENV_REQUEST_TIMEOUT) {
            config.request_timeout = parse_seconds(ENV_REQUEST_TIMEOUT, &value)?;
        }
        Ok(config)
    }

    /// The engine endpoint this config names, for connecting and for error messages.
    pub fn endpoint(&self) -> &str {
        self.docker_host.as_deref().unwrap_or(DEFAULT_SOCKET)
    }
}

fn parse_allowlist(list: &str) -> Result<Vec<PathBuf>, Error> {
    let mut paths = Vec::new();
    for entry in list.split(':').map(str::trim).filter(|e| !e.is_empty()) {
        if !entry.starts_with('/') {
            return Err(Error::invalid_config(
                ENV_VOLUME_ALLOWLIST,
                list,
                format!("{entry:?} is not an absolute path"),
            ));
        }
        paths.push(PathBuf::from(entry));
    }
    Ok(paths)
}

fn parse_seconds(var: &'static str, value: &str) -> Result<Duration, Error> {
    let secs: u64 = value
        .trim()
        .parse()
        .map_err(|_| Error::invalid_config(var, value, "expected whole seconds"))?;
    if secs == 0 {
        return Err(Error::invalid_config(
            var,
            value,
            "must be at least 1 second",
        ));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_refuse_every_volume_and_limit_pids() {
        let config = DockerConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config, DockerConfig::default());
        assert!(config.volume_allowlist.is_empty());
        assert_eq!(config.pids_limit, Some(4096));
        assert_eq!(config.network_mode, "default");
        assert_eq!(config.endpoint(), DEFAULT_SOCKET);
    }

    #[test]
    fn environment_overrides_each_field() {
        let config = DockerConfig::from_lookup(lookup(&[
            (ENV_DOCKER_HOST, "unix:///tmp/d.sock"),
            (ENV_NETWORK, "none"),
            (ENV_VOLUME_ALLOWLIST, "/data:/scratch/x"),
            (ENV_PIDS_LIMIT, "0"),
            (ENV_PULL_STALL_TIMEOUT, "30"),
            (ENV_PULL_POLICY, "Always"),
            (ENV_STOP_GRACE, "5"),
            (ENV_REQUEST_TIMEOUT, "60"),
        ]))
        .unwrap();
        assert_eq!(config.endpoint(), "unix:///tmp/d.sock");
        assert_eq!(config.network_mode, "none");
        assert_eq!(
            config.volume_allowlist,
            vec![PathBuf::from("/data"), PathBuf::from("/scratch/x")]
        );
        assert_eq!(config.pids_limit, None);
        assert_eq!(config.pull_stall_timeout, Duration::from_secs(30));
        assert_eq!(config.pull_policy, PullPolicy::Always);
        assert_eq!(config.stop_grace, Duration::from_secs(5));
        assert_eq!(config.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = DockerConfig::from_lookup(lookup(&[(ENV_PIDS_LIMIT, "lots")])).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                var: ENV_PIDS_LIMIT,
                ..
            }
        ));
        let err = DockerConfig::from_lookup(lookup(&[(ENV_VOLUME_ALLOWLIST, "data")])).unwrap_err();
        assert!(err.to_string().contains(ENV_VOLUME_ALLOWLIST), "{err}");
        let err = DockerConfig::from_lookup(lookup(&[(ENV_PULL_POLICY, "sometimes")])).unwrap_err();
        assert!(err.to_string().contains(ENV_PULL_POLICY), "{err}");
        let err = DockerConfig::from_lookup(lookup(&[(ENV_STOP_GRACE, "0")])).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                var: ENV_STOP_GRACE,
                ..
            }
        ));
    }
}
