//! [`RedisConfig`]: where Redis is, how to reconnect, and the key and log settings.

use std::time::Duration;

use crate::error::Error;
use crate::keys::DEFAULT_PREFIX;

/// Default cap on the lines kept per job log.
pub const DEFAULT_LOG_MAX_LINES: usize = 100_000;
/// Default time a terminal job's log is kept (7 days).
pub const DEFAULT_LOG_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default time a write waits for its replicas' acknowledgements (1 s).
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(1);

/// How to reach Redis and how the store lays out its data.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Host name or address (`REDIS_HOST`, default `localhost`).
    pub host: String,
    /// Port (`REDIS_PORT`, default 6379).
    pub port: u16,
    /// Password (`REDIS_PASSWORD`), if any.
    pub password: Option<String>,
    /// Database number (`REDIS_DB`, default 0).
    pub db: i64,
    /// A full `redis://` or `rediss://` URL (`REDIS_URL`); wins over the four fields above.
    pub url: Option<String>,
    /// Sentinels to ask where the primary is (`REDIS_SENTINELS`, `host:port,...`). When set,
    /// the primary is whichever server they name (found again after a failover); `host`,
    /// `port` and `url` are not used, `password` and `db` still apply to the primary.
    pub sentinels: Vec<String>,
    /// The name the Sentinels know the primary by (`REDIS_SENTINEL_MASTER`); required with
    /// `sentinels`.
    pub sentinel_master: Option<String>,
    /// The Sentinels' own password (`REDIS_SENTINEL_PASSWORD`), when they require one.
    pub sentinel_password: Option<String>,
    /// Replicas that must acknowledge every change of state (`WAIT`) before the store
    /// reports it done (`DWR_REDIS_WAIT_REPLICAS`; 0: no wait, replication stays
    /// asynchronous). Heartbeats, log lines and event pops are not waited for. A change they
    /// do not acknowledge within `wait_timeout` fails as `StoreError::Unavailable`; it may
    /// still have applied on the primary, as any write whose reply is lost.
    pub wait_replicas: u32,
    /// How long a write waits for `wait_replicas` acknowledgements
    /// (`DWR_REDIS_WAIT_TIMEOUT_MS`).
    pub wait_timeout: Duration,
    /// Prefix of every key but the job logs (default `dwr:`).
    pub key_prefix: String,
    /// Lines kept per job log; older lines are trimmed (0 = no cap).
    pub log_max_lines: usize,
    /// How long a job's log is kept once the job is terminal (zero = forever).
    pub log_ttl: Duration,
    /// Bytes kept per job log (0 = no cap); past it the log ends with one marker line
    /// (see `dwr_core::JobStore::append_logs`).
    pub log_max_bytes: u64,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one command's answer (non-blocking commands).
    pub response_timeout: Duration,
    /// Reconnect attempts per outage before an operation fails (each failed operation
    /// starts a new round).
    pub reconnect_retries: usize,
    /// Longest pause between reconnect attempts.
    pub reconnect_max_delay: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 6379,
            password: None,
            db: 0,
            url: None,
            sentinels: Vec::new(),
            sentinel_master: None,
            sentinel_password: None,
            wait_replicas: 0,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            key_prefix: DEFAULT_PREFIX.to_owned(),
            log_max_lines: DEFAULT_LOG_MAX_LINES,
            log_ttl: DEFAULT_LOG_TTL,
            log_max_bytes: dwr_core::DEFAULT_LOG_MAX_BYTES,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            reconnect_retries: 6,
            reconnect_max_delay: Duration::from_secs(2),
        }
    }
}

// The password stays out of logs.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("url", &self.url.as_ref().map(|u| redact_url(u)))
            .field("sentinels", &self.sentinels)
            .field("sentinel_master", &self.sentinel_master)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "<redacted>"),
            )
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("log_max_lines", &self.log_max_lines)
            .field("log_ttl", &self.log_ttl)
            .field("log_max_bytes", &self.log_max_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// The defaults, overridden by `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_PASSWORD` and `REDIS_DB` where set (an empty variable counts as unset), by
    /// `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER` and `REDIS_SENTINEL_PASSWORD`, by
    /// `DWR_REDIS_WAIT_REPLICAS` and `DWR_REDIS_WAIT_TIMEOUT_MS`, and by
    /// `DWR_REDIS_PREFIX`, `DWR_LOG_MAX_LINES` and `DWR_LOG_TTL_SECONDS`.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with the variables read through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        if let Some(host) = get("REDIS_HOST") {
            config.host = host.trim().to_owned();
        }
        if let Some(port) = get("REDIS_PORT") {
            config.port = port.trim().parse().map_err(|_| Error::InvalidConfig {
                field: "REDIS_PORT",
                reason: format!("{port:?} is not a port number"),
            })?;
        }
        config.password = get("REDIS_PASSWORD");
        if let Some(db) = get("REDIS_DB") {
            config.db =
                db.trim()
                    .parse()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| Error::InvalidConfig {
                        field: "REDIS_DB",
                        reason: format!("{db:?} is not a database number"),
                    })?;
        }
        if let Some(url) = get("REDIS_URL") {
            config.url = Some(url.trim().to_owned());
        }
        if let Some(list) = get("REDIS_SENTINELS") {
            config.sentinels = parse_sentinels(&list)?;
        }
        config.sentinel_master = get("REDIS_SENTINEL_MASTER").map(|m| m.trim().to_owned());
        config.sentinel_password = get("REDIS_SENTINEL_PASSWORD");
        if let Some(n) = get("DWR_REDIS_WAIT_REPLICAS") {
            config.wait_replicas = n.trim().parse().map_err(|_| Error::InvalidConfig {
                field: "DWR_REDIS_WAIT_REPLICAS",
                reason: format!("{n:?} is not a number of replicas"),
            })?;
        }
        if let Some(ms) = get("DWR_REDIS_WAIT_TIMEOUT_MS") {
            let ms: u64 = ms.trim().parse().map_err(|_| Error::InvalidConfig {
                field: "DWR_REDIS_WAIT_TIMEOUT_MS",
                reason: format!("{ms:?} is not a number of milliseconds"),
            })?;
            config.wait_timeout = Duration::from_millis(ms);
        }
        if let Some(prefix) = get("DWR_REDIS_PREFIX") {
            config.key_prefix = prefix.trim().to_owned();
        }
        if let Some(lines) = get("DWR_LOG_MAX_LINES") {
            config.log_max_lines = lines.trim().parse().map_err(|_| Error::InvalidConfig {
                field: "DWR_LOG_MAX_LINES",
                reason: format!("{lines:?} is not a line count"),
            })?;
        }
        if let Some(secs) = get("DWR_LOG_TTL_SECONDS") {
            let secs: u64 = secs.trim().parse().map_err(|_| Error::InvalidConfig {
                field: "DWR_LOG_TTL_SECONDS",
                reason: format!("{secs:?} is not a number of seconds"),
            })?;
            config.log_ttl = Duration::from_secs(secs);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the URL scheme, the Sentinel settings, the write wait and the key prefix.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.sentinels.is_empty() {
            if self.url.is_some() {
                return Err(Error::InvalidConfig {
                    field: "REDIS_SENTINELS",
                    reason: "names Redis a second way: set REDIS_SENTINELS or REDIS_URL, not both"
                        .to_owned(),
                });
            }
            for sentinel in &self.sentinels {
                split_host_port(sentinel)?;
            }
            if self.sentinel_master.as_deref().is_none_or(str::is_empty) {
                return Err(Error::InvalidConfig {
                    field: "REDIS_SENTINEL_MASTER",
                    reason: "required with REDIS_SENTINELS: the name the Sentinels know the \
                             primary by"
                        .to_owned(),
                });
            }
        }
        if self.wait_replicas > 0 && self.wait_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                field: "DWR_REDIS_WAIT_TIMEOUT_MS",
                reason: "must be above 0 when DWR_REDIS_WAIT_REPLICAS is set (0 would wait \
                         forever)"
                    .to_owned(),
            });
        }
        if let Some(url) = &self.url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(Error::InvalidConfig {
                    field: "REDIS_URL",
                    reason: format!("{} must start with redis:// or rediss://", redact_url(url)),
                });
            }
        }
        if self.host.is_empty() {
            return Err(Error::InvalidConfig {
                field: "REDIS_HOST",
                reason: "empty".to_owned(),
            });
        }
        if self.key_prefix.is_empty() || self.key_prefix.starts_with("job_logs:") {
            return Err(Error::InvalidConfig {
                field: "key_prefix",
                reason: "must be non-empty and must not start with job_logs:".to_owned(),
            });
        }
        Ok(())
    }

    /// The connection URL: `url` when set, else one built from host, port, password, db.
    pub fn connection_url(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let auth = match &self.password {
            Some(p) => format!(":{}@", percent_encode(p)),
            None => String::new(),
        };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("redis://{auth}{host}:{}/{}", self.port, self.db)
    }

    /// The URL with any password replaced, for messages; with Sentinels,
    /// `sentinel://host:port,.../master`.
    pub fn redacted_url(&self) -> String {
        if !self.sentinels.is_empty() {
            return format!(
                "sentinel://{}/{}",
                self.sentinels.join(","),
                self.sentinel_master.as_deref().unwrap_or("")
            );
        }
        redact_url(&self.connection_url())
    }
}

/// `REDIS_SENTINELS`: `host:port` entries separated by commas (blanks around them ignored).
pub fn parse_sentinels(list: &str) -> Result<Vec<String>, Error> {
    let sentinels: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if sentinels.is_empty() {
        return Err(Error::InvalidConfig {
            field: "REDIS_SENTINELS",
            reason: format!("{list:?} names no host:port"),
        });
    }
    for sentinel in &sentinels {
        split_host_port(sentinel)?;
    }
    Ok(sentinels)
}

/// `host:port` or `[v6]:port` → host (brackets removed) and port.
pub(crate) fn split_host_port(entry: &str) -> Result<(String, u16), Error> {
    let bad = || Error::InvalidConfig {
        field: "REDIS_SENTINELS",
        reason: format!("{entry:?} is not host:port"),
    };
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    Ok((host.to_owned(), port))
}

/// Percent-encodes everything but unreserved URL characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map(|(u, _)| u).unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<RedisConfig, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RedisConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_original_system() {
        let c = from(&[]).unwrap();
        assert_eq!(c.connection_url(), "redis://localhost:6379/0");
        assert_eq!(c.key_prefix, "dwr:");
    }

    #[test]
    fn host_port_password_db_build_a_url() {
        let c = from(&[
            ("REDIS_HOST", "10.0.0.5"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "p@ss word"),
            ("REDIS_DB", "3"),
        ])
        .unwrap();
        assert_eq!(c.connection_url(), "redis://:p%40ss%20word@10.0.0.5:6380/3");
        assert_eq!(c.redacted_url(), "redis://:***@10.0.0.5:6380/3");
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn store_settings_come_from_the_environment_too() {
        let c = from(&[
            ("DWR_REDIS_PREFIX", "prod:"),
            ("DWR_LOG_MAX_LINES", "500"),
            ("DWR_LOG_TTL_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(
            (c.key_prefix.as_str(), c.log_max_lines, c.log_ttl),
            ("prod:", 500, Duration::from_secs(60))
        );
    }

    #[test]
    fn url_wins_and_tls_is_accepted() {
        let c = from(&[
            ("REDIS_HOST", "ignored"),
            ("REDIS_URL", "rediss://u:pw@cache.example:6390/1"),
        ])
        .unwrap();
        assert_eq!(c.connection_url(), "rediss://u:pw@cache.example:6390/1");
    }

    #[test]
    fn sentinels_and_the_write_wait_come_from_the_environment() {
        let c = from(&[
            ("REDIS_SENTINELS", " 10.0.0.1:26379, [::1]:26380 ,"),
            ("REDIS_SENTINEL_MASTER", "main"),
            ("REDIS_SENTINEL_PASSWORD", "s3cret"),
            ("REDIS_PASSWORD", "pw"),
            ("DWR_REDIS_WAIT_REPLICAS", "1"),
            ("DWR_REDIS_WAIT_TIMEOUT_MS", "250"),
        ])
        .unwrap();
        assert_eq!(c.sentinels, ["10.0.0.1:26379", "[::1]:26380"]);
        assert_eq!(c.sentinel_master.as_deref(), Some("main"));
        assert_eq!(
            (c.wait_replicas, c.wait_timeout),
            (1, Duration::from_millis(250))
        );
        assert_eq!(
            c.redacted_url(),
            "sentinel://10.0.0.1:26379,[::1]:26380/main"
        );
        assert_eq!(
            split_host_port("[::1]:26380").unwrap(),
            ("::1".to_owned(), 26380)
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw\""),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (vars, field) in [
            (vec![("REDIS_PORT", "eighty")], "REDIS_PORT"),
            (vec![("REDIS_DB", "-1")], "REDIS_DB"),
            (vec![("REDIS_URL", "http://x")], "REDIS_URL"),
            (vec![("DWR_LOG_MAX_LINES", "many")], "DWR_LOG_MAX_LINES"),
            (vec![("DWR_LOG_TTL_SECONDS", "-5")], "DWR_LOG_TTL_SECONDS"),
            (vec![("DWR_REDIS_PREFIX", "job_logs:x")], "key_prefix"),
            (
                vec![("REDIS_SENTINELS", "h1:26379")],
                "REDIS_SENTINEL_MASTER",
            ),
            (vec![("REDIS_SENTINELS", "h1")], "REDIS_SENTINELS"),
            (vec![("REDIS_SENTINELS", "h1:0")], "REDIS_SENTINELS"),
            (vec![("REDIS_SENTINELS", " , ")], "REDIS_SENTINELS"),
            (
                vec![
                    ("REDIS_SENTINELS", "h1:26379"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                    ("REDIS_URL", "redis://x:6379"),
                ],
                "REDIS_SENTINELS",
            ),
            (
                vec![("DWR_REDIS_WAIT_REPLICAS", "-1")],
                "DWR_REDIS_WAIT_REPLICAS",
            ),
            (
                vec![
                    ("DWR_REDIS_WAIT_REPLICAS", "1"),
                    ("DWR_REDIS_WAIT_TIMEOUT_MS", "0"),
                ],
                "DWR_REDIS_WAIT_TIMEOUT_MS",
            ),
        ] {
            match from(&vars) {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{vars:?}: {other:?}"),
            }
        }
    }
}
