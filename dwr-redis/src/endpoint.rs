//! [`Endpoint`]: where the Redis primary is (one fixed address, or whichever server a set of
//! Sentinels names) and the connections to it; and the write wait (`WAIT`) that makes a
//! write count only once replicas hold it.
//!
//! With Sentinels, a task of each store asks them where the primary is every
//! [`FOLLOW_INTERVAL`], and at once when an operation finds the primary unreachable or
//! read-only ([`Endpoint::suspect`]). When the answer changes it connects to the new primary
//! (the `redis` crate checks that the server calls itself a primary) and swaps the shared
//! connection; the dedicated connections and subscriptions reconnect to it on their next
//! attempt. Operations in flight at the switch fail as `StoreError::Unavailable` and their
//! callers retry, as after any outage.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    RedisResult,
};
use tokio::sync::{watch, Notify};

use crate::config::{split_host_port, RedisConfig};
use crate::error::{is_unavailable, Error};

/// How often a store asks its Sentinels where the primary is when nothing looks wrong.
pub(crate) const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two askings, however many operations fail meanwhile.
const FOLLOW_MIN_GAP: Duration = Duration::from_millis(100);
/// Time allowed to connect to one Sentinel, and for its answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// The primary's connections, and how to find the primary again.
pub(crate) struct Endpoint {
    current: RwLock<Current>,
    /// Bumped on every switch to another primary.
    generation: watch::Sender<u64>,
    locator: Option<SentinelLocator>,
    manager_config: ConnectionManagerConfig,
    /// Wakes the follower early: an operation found the primary unreachable or read-only.
    suspect: Notify,
    wait: Option<(u32, u64)>,
}

struct Current {
    client: Client,
    conn: ConnectionManager,
    /// `host:port` of the primary, as the Sentinels name it (empty without Sentinels).
    addr: String,
}

struct SentinelLocator {
    master: String,
    node: SentinelNodeConnectionInfo,
    /// The crate's Sentinel client: finds the primary and checks its role.
    sentinel: tokio::sync::Mutex<Sentinel>,
    /// One cheap `SENTINEL GET-MASTER-ADDR-BY-NAME` per interval goes to these, on a
    /// connection kept open per Sentinel.
    asks: Vec<(Client, tokio::sync::Mutex<Option<MultiplexedConnection>>)>,
}

impl Endpoint {
    /// Finds the primary and opens the shared connection to it; with Sentinels, starts the
    /// task that follows the primary (it ends when the endpoint is dropped).
    pub async fn connect(config: &RedisConfig) -> Result<Arc<Self>, Error> {
        let shown = config.redacted_url();
        let connect_error = |source| Error::Connect {
            url: shown.clone(),
            source,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_exponent_base(2.0)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(config.reconnect_max_delay.max(Duration::from_millis(1)))
            .set_number_of_retries(config.reconnect_retries)
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let locator = if config.sentinels.is_empty() {
            None
        } else {
            Some(
                SentinelLocator::new(config).map_err(|source| Error::InvalidUrl {
                    url: shown.clone(),
                    source,
                })?,
            )
        };
        let (client, addr) = match &locator {
            None => {
                let client =
                    Client::open(config.connection_url()).map_err(|source| Error::InvalidUrl {
                        url: shown.clone(),
                        source,
                    })?;
                (client, String::new())
            }
            Some(locator) => locator.primary().await.map_err(connect_error)?,
        };
        let conn = client
            .get_connection_manager_with_config(manager_config.clone())
            .await
            .map_err(connect_error)?;
        let wait = (config.wait_replicas > 0).then(|| {
            let ms = u64::try_from(config.wait_timeout.as_millis()).unwrap_or(u64::MAX);
            (config.wait_replicas, ms.max(1))
        });
        let endpoint = Arc::new(Self {
            current: RwLock::new(Current { client, conn, addr }),
            generation: watch::channel(0).0,
            locator,
            manager_config,
            suspect: Notify::new(),
            wait,
        });
        if endpoint.locator.is_some() {
            tokio::spawn(follow(Arc::downgrade(&endpoint)));
        }
        Ok(endpoint)
    }

    /// The shared multiplexed connection to the current primary.
    pub fn conn(&self) -> ConnectionManager {
        self.read().conn.clone()
    }

    /// A client of the current primary, for dedicated connections and subscriptions.
    pub fn client(&self) -> Client {
        self.read().client.clone()
    }

    /// The number of switches to another primary so far, and a receiver to wait for the next.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a failed operation: one that found the primary unreachable or read-only makes a
    /// store with Sentinels ask them at once instead of at the next interval.
    pub fn suspect(&self, error: &RedisError) {
        if self.locator.is_some() && is_unavailable(error) {
            self.suspect.notify_one();
        }
    }

    /// What a call on `conn` answered, made safe: after a writing call that Redis answered
    /// (a script's refusal or error reply included: what it wrote before it, or an earlier
    /// try's writes, must be as safe as a success's) waits for the replicas ([`confirm`]);
    /// a failure that may mean the primary moved makes the follower look ([`suspect`]).
    ///
    /// [`confirm`]: Self::confirm
    /// [`suspect`]: Self::suspect
    pub async fn settle<T>(
        &self,
        conn: &mut ConnectionManager,
        reply: RedisResult<T>,
        writes: bool,
    ) -> RedisResult<T> {
        let reply = match reply {
            Err(e) if is_unavailable(&e) => Err(e),
            reply if writes => self.confirm(conn).await.and(reply),
            reply => reply,
        };
        if let Err(e) = &reply {
            self.suspect(e);
        }
        reply
    }

    /// After a write sent on `conn`: waits until the configured number of replicas hold it
    /// (and every write sent on `conn` before it). `Ok` at once when no wait is configured.
    pub async fn confirm(&self, conn: &mut ConnectionManager) -> RedisResult<()> {
        let Some((replicas, timeout_ms)) = self.wait else {
            return Ok(());
        };
        let acknowledged: u64 = redis::cmd("WAIT")
            .arg(replicas)
            .arg(timeout_ms)
            .query_async(conn)
            .await?;
        if acknowledged < u64::from(replicas) {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "write not confirmed by enough replicas",
                format!(
                    "{acknowledged} of {replicas} replicas acknowledged within {timeout_ms} ms \
                     (DWR_REDIS_WAIT_REPLICAS); the write may or may not survive a failover"
                ),
            )));
        }
        Ok(())
    }

    /// Asks the Sentinels where the primary is; switches when it moved. Returns whether it
    /// switched.
    async fn refresh(&self) -> RedisResult<bool> {
        let Some(locator) = &self.locator else {
            return Ok(false);
        };
        let named = locator.named_primary().await?;
        if named == self.read().addr {
            return Ok(false);
        }
        let (client, addr) = locator.primary().await?;
        let conn = client
            .get_connection_manager_with_config(self.manager_config.clone())
            .await?;
        let previous = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Current { client, conn, addr })
        };
        let now = self.read().addr.clone();
        tracing::warn!(from = %previous.addr, to = %now, "the Redis primary moved; following it");
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }
}

impl SentinelLocator {
    fn new(config: &RedisConfig) -> RedisResult<Self> {
        let mut sentinel_settings = RedisConnectionInfo::default();
        if let Some(password) = &config.sentinel_password {
            sentinel_settings = sentinel_settings.set_password(password);
        }
        let mut infos = Vec::with_capacity(config.sentinels.len());
        for entry in &config.sentinels {
            let (host, port) = split_host_port(entry).map_err(|e| {
                RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "bad sentinel",
                    e.to_string(),
                ))
            })?;
            infos.push(
                ConnectionAddr::Tcp(host, port)
                    .into_connection_info()?
                    .set_redis_settings(sentinel_settings.clone()),
            );
        }
        let asks = infos
            .iter()
            .cloned()
            .map(|info| Ok((Client::open(info)?, tokio::sync::Mutex::new(None))))
            .collect::<RedisResult<Vec<_>>>()?;
        let mut node_settings = RedisConnectionInfo::default().set_db(config.db);
        if let Some(password) = &config.password {
            node_settings = node_settings.set_password(password);
        }
        Ok(Self {
            master: config.sentinel_master.clone().unwrap_or_default(),
            node: SentinelNodeConnectionInfo::default().set_redis_connection_info(node_settings),
            sentinel: tokio::sync::Mutex::new(Sentinel::build(infos)?),
            asks,
        })
    }

    /// The primary the Sentinels name, checked to call itself a primary, and its `host:port`.
    async fn primary(&self) -> RedisResult<(Client, String)> {
        let client = self
            .sentinel
            .lock()
            .await
            .async_master_for(&self.master, Some(&self.node))
            .await?;
        let addr = address(client.get_connection_info());
        Ok((client, addr))
    }

    /// `host:port` of the primary as the first Sentinel that answers names it (one command).
    async fn named_primary(&self) -> RedisResult<String> {
        let mut last = None;
        for (client, cached) in &self.asks {
            let asked = async {
                let mut cached = cached.lock().await;
                let mut conn = match cached.take() {
                    Some(conn) => conn,
                    None => {
                        client
                            .get_multiplexed_async_connection_with_config(
                                &redis::AsyncConnectionConfig::new()
                                    .set_connection_timeout(Some(SENTINEL_TIMEOUT))
                                    .set_response_timeout(Some(SENTINEL_TIMEOUT)),
                            )
                            .await?
                    }
                };
                let named = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await?;
                *cached = Some(conn);
                Ok::<_, RedisError>(named)
            };
            match asked.await {
                Ok(Some((host, port))) => return Ok(format_addr(&host, port)),
                Ok(None) => {
                    last = Some(RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "the sentinel does not know this primary name",
                        self.master.clone(),
                    )))
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "no sentinels"))
        }))
    }
}

fn address(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format_addr(host, *port)
        }
        other => other.to_string(),
    }
}

fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Follows the primary until the endpoint is dropped.
async fn follow(endpoint: Weak<Endpoint>) {
    loop {
        let Some(strong) = endpoint.upgrade() else {
            return;
        };
        match strong.refresh().await {
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "asking the Redis Sentinels failed"),
        }
        let wake = async {
            tokio::select! {
                () = strong.suspect.notified() => {}
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
        };
        wake.await;
        drop(strong);
        tokio::time::sleep(FOLLOW_MIN_GAP).await;
    }
}
