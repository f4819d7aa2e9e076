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
/// Environment variable with the host paths that jobs may mount, comma-separated (the name
/// and syntax of `dwr executor --volume-allow`).
pub const ENV_VOLUME_ALLOW: &str = "DWR_VOLUME_ALLOW";
/// Environment variable with the pids limit of job containers (`0` for none).
pub const ENV_PIDS_LIMIT: &str = "DWR_PIDS_LIMIT";
/// Environment variable with the seconds a pull may go without progress.
pub const ENV_PULL_STALL_TIMEOUT: &str = "DWR_PULL_STALL_TIMEOUT_SECS";
/// Environment variable with the pull policy: `missing` (pull only images not present) or
/// `always` (pull before every job, so a moved tag is followed).
pub const ENV_PULL_POLICY: &str = "DWR_PULL_POLICY";
/// Environment variable with the timeout of one engine request in seconds (streams excepted).
pub const ENV_REQUEST_TIMEOUT: &str = "DWR_DOCKER_TIMEOUT_SECS";
/// Environment variable with the user job containers run as (`uid[:gid]` or a name the
/// image knows); unset: the image's own user.
pub const ENV_CONTAINER_USER: &str = "DWR_CONTAINER_USER";
/// Environment variable with the size at which a job container's log file on the executor is
/// rotated (`10m`, `512k`, `1g` or bytes; binary units, as Docker reads them).
pub const ENV_LOG_MAX_SIZE: &str = "DWR_CONTAINER_LOG_MAX_SIZE";
/// Environment variable with the number of log files kept per job container (1 to 100).
pub const ENV_LOG_MAX_FILES: &str = "DWR_CONTAINER_LOG_MAX_FILES";

/// Default size at which a job container's log file is rotated: 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of log files kept per job container.
pub const DEFAULT_LOG_MAX_FILES: u32 = 3;
/// Smallest log file size accepted: 1 KiB.
const MIN_LOG_MAX_SIZE: u64 = 1024;
/// Largest log file size accepted: 1 TiB.
const MAX_LOG_MAX_SIZE: u64 = 1 << 40;
/// Most log files accepted per job container.
const MAX_LOG_MAX_FILES: u32 = 100;

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
    /// Timeout of one engine request until its response starts (log and wait streams may
    /// run longer).
    pub request_timeout: Duration,
    /// The user job containers run as (`uid[:gid]`, or a user or group name the image
    /// knows); `None`: the image's own user.
    pub container_user: Option<String>,
    /// Bytes at which a job container's log file on the executor (Docker's `json-file`
    /// driver) is rotated.
    pub log_max_size: u64,
    /// Log files kept per job container: the executor's disk holds at most
    /// `log_max_size × log_max_files` bytes of any one job's output.
    pub log_max_files: u32,
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
            request_timeout: Duration::from_secs(120),
            container_user: None,
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_max_files: DEFAULT_LOG_MAX_FILES,
        }
    }
}

impl DockerConfig {
    /// The defaults, overridden by the environment variables `DOCKER_HOST`, `DWR_DOCKER_NETWORK`,
    /// `DWR_VOLUME_ALLOW`, `DWR_PIDS_LIMIT`, `DWR_PULL_STALL_TIMEOUT_SECS`, `DWR_PULL_POLICY`,
    /// `DWR_DOCKER_TIMEOUT_SECS`, `DWR_CONTAINER_USER`,
    /// `DWR_CONTAINER_LOG_MAX_SIZE` and `DWR_CONTAINER_LOG_MAX_FILES` where set and non-empty.
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
        if let Some(list) = get(ENV_VOLUME_ALLOW) {
            config.volume_allowlist = list
                .split(',')
                .filter(|entry| !entry.trim().is_empty())
                .map(parse_allowed_path)
                .collect::<Result<_, _>>()?;
        }
        if let Some(value) = get(ENV_PIDS_LIMIT) {
            config.set_pids_limit(parse_pids_limit(&value)?);
        }
        if let Some(value) = get(ENV_PULL_STALL_TIMEOUT) {
            config.pull_stall_timeout = parse_pull_stall_timeout(&value)?;
        }
        if let Some(value) = get(ENV_PULL_POLICY) {
            config.pull_policy = PullPolicy::parse(&value)?;
        }
        if let Some(value) = get(ENV_REQUEST_TIMEOUT) {
            config.request_timeout = parse_request_timeout(&value)?;
        }
        if let Some(value) = get(ENV_CONTAINER_USER) {
            config.container_user = Some(parse_container_user(&value)?);
        }
        if let Some(value) = get(ENV_LOG_MAX_SIZE) {
            config.log_max_size = parse_log_max_size(&value)?;
        }
        if let Some(value) = get(ENV_LOG_MAX_FILES) {
            config.log_max_files = parse_log_max_files(&value)?;
        }
        Ok(config)
    }

    /// Sets the most processes per job container, as [`ENV_PIDS_LIMIT`] gives it: `0` is
    /// no limit.
    pub fn set_pids_limit(&mut self, limit: u32) {
        self.pids_limit = (limit > 0).then_some(limit);
    }

    /// The engine endpoint this config names, for connecting and for error messages.
    pub fn endpoint(&self) -> &str {
        self.docker_host.as_deref().unwrap_or(DEFAULT_SOCKET)
    }
}

/// Reads a container user as [`ENV_CONTAINER_USER`] takes it: `user`, `uid`, `user:group`
/// or `uid:gid`, names made of letters, digits, `_`, `-` and `.`.
pub fn parse_container_user(value: &str) -> Result<String, Error> {
    let user = value.trim();
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let valid = match user.split_once(':') {
        Some((name, group)) => name_ok(name) && name_ok(group),
        None => name_ok(user),
    };
    if !valid {
        return Err(Error::invalid_config(
            ENV_CONTAINER_USER,
            value,
            "expected user, uid, user:group or uid:gid",
        ));
    }
    Ok(user.to_owned())
}

/// Reads a log file size as [`ENV_LOG_MAX_SIZE`] takes it: a whole number of bytes with an
/// optional binary unit `k`, `m` or `g` (`kb`, `KiB`, `MB` ... are read the same, as Docker
/// reads them: 1k = 1024 bytes), from 1 KiB to 1 TiB.
pub fn parse_log_max_size(value: &str) -> Result<u64, Error> {
    let bad = |reason: &str| Error::invalid_config(ENV_LOG_MAX_SIZE, value, reason);
    let text = value.trim().to_ascii_lowercase();
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(bad("expected a size such as 10m, 512k or 1g")),
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| bad("expected a size such as 10m, 512k or 1g"))?;
    if !(MIN_LOG_MAX_SIZE..=MAX_LOG_MAX_SIZE).contains(&bytes) {
        return Err(bad("must be from 1k to 1024g"));
    }
    Ok(bytes)
}

/// Reads a number of log files as [`ENV_LOG_MAX_FILES`] takes it: 1 to 100.
pub fn parse_log_max_files(value: &str) -> Result<u32, Error> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_LOG_MAX_FILES).contains(n))
        .ok_or_else(|| {
            Error::invalid_config(
                ENV_LOG_MAX_FILES,
                value,
                "expected a whole number from 1 to 100",
            )
        })
}

/// Reads one entry of [`ENV_VOLUME_ALLOW`]: an absolute host path.
pub fn parse_allowed_path(entry: &str) -> Result<PathBuf, Error> {
    let path = entry.trim();
    if !path.starts_with('/') {
        return Err(Error::invalid_config(
            ENV_VOLUME_ALLOW,
            entry,
            format!("{path:?} is not an absolute path"),
        ));
    }
    Ok(PathBuf::from(path))
}

/// Reads [`ENV_PIDS_LIMIT`]: a whole number, `0` for no limit (see
/// [`DockerConfig::set_pids_limit`]).
pub fn parse_pids_limit(value: &str) -> Result<u32, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::invalid_config(ENV_PIDS_LIMIT, value, "expected a whole number"))
}

/// Reads [`ENV_PULL_STALL_TIMEOUT`]: whole seconds, at least 1.
pub fn parse_pull_stall_timeout(value: &str) -> Result<Duration, Error> {
    parse_seconds(ENV_PULL_STALL_TIMEOUT, value)
}

/// Reads [`ENV_REQUEST_TIMEOUT`]: whole seconds, at least 1.
pub fn parse_request_timeout(value: &str) -> Result<Duration, Error> {
    parse_seconds(ENV_REQUEST_TIMEOUT, value)
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
        assert_eq!(config.container_user, None);
        assert_eq!(config.log_max_size, 10 * 1024 * 1024);
        assert_eq!(config.log_max_files, 3);
    }

    #[test]
    fn environment_overrides_each_field() {
        let config = DockerConfig::from_lookup(lookup(&[
            (ENV_DOCKER_HOST, "unix:///tmp/d.sock"),
            (ENV_NETWORK, "none"),
            (ENV_VOLUME_ALLOW, "/data, /scratch/x"),
            (ENV_PIDS_LIMIT, "0"),
            (ENV_PULL_STALL_TIMEOUT, "30"),
            (ENV_PULL_POLICY, "Always"),
            (ENV_REQUEST_TIMEOUT, "60"),
            (ENV_CONTAINER_USER, "1000:1000"),
            (ENV_LOG_MAX_SIZE, "512k"),
            (ENV_LOG_MAX_FILES, "5"),
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
        assert_eq!(config.request_timeout, Duration::from_secs(60));
        assert_eq!(config.container_user.as_deref(), Some("1000:1000"));
        assert_eq!(config.log_max_size, 512 * 1024);
        assert_eq!(config.log_max_files, 5);
    }

    #[test]
    fn log_sizes_read_as_docker_reads_them() {
        for (text, bytes) in [
            ("10m", 10 << 20),
            ("10M", 10 << 20),
            ("10MB", 10 << 20),
            ("10 MiB", 10 << 20),
            ("512k", 512 << 10),
            ("1g", 1 << 30),
            ("4096", 4096),
        ] {
            assert_eq!(parse_log_max_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "m", "10x", "-1m", "1.5m", "12", "2000g"] {
            let err = parse_log_max_size(bad).unwrap_err();
            assert!(err.to_string().contains(ENV_LOG_MAX_SIZE), "{bad}: {err}");
        }
        assert_eq!(parse_log_max_files("1"), Ok(1));
        for bad in ["0", "101", "three"] {
            assert!(parse_log_max_files(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_users_are_names_or_ids() {
        for good in ["1000", "1000:1000", "nobody", "app_user:staff", "www-data"] {
            assert_eq!(parse_container_user(good).as_deref(), Ok(good));
        }
        for bad in ["", ":", "1000:", "a b", "root;rm", "a:b:c"] {
            let err = parse_container_user(bad).unwrap_err();
            assert!(err.to_string().contains(ENV_CONTAINER_USER), "{bad}: {err}");
        }
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
        let err = DockerConfig::from_lookup(lookup(&[(ENV_VOLUME_ALLOW, "data")])).unwrap_err();
        assert!(err.to_string().contains(ENV_VOLUME_ALLOW), "{err}");
        let err = DockerConfig::from_lookup(lookup(&[(ENV_PULL_POLICY, "sometimes")])).unwrap_err();
        assert!(err.to_string().contains(ENV_PULL_POLICY), "{err}");
        let err = DockerConfig::from_lookup(lookup(&[(ENV_REQUEST_TIMEOUT, "0")])).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                var: ENV_REQUEST_TIMEOUT,
                ..
            }
        ));
    }
}
