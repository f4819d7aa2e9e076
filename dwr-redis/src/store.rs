//! [`RedisJobStore`]: the connection, the scripts, and the helpers the
//! [`JobStore`](dwr_core::JobStore) implementation (in `job_store/`) is built from.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dwr_core::StoreError;
use redis::aio::ConnectionManager;
use redis::Value;

use crate::batch::{Batched, Coalescer, Worker};
use crate::config::RedisConfig;
use crate::endpoint::Endpoint;
use crate::error::{store_error, Error};
use crate::job_store::{PlacementCache, QueuedCache};
use crate::keys::Keys;
use crate::scripts::{Routine, Scripts};
use crate::wait::{BlockingPool, ChangeListener, EventBuffer, LogWatch, WakeListener};

/// A [`JobStore`](dwr_core::JobStore) over Redis: every transition is one Lua script, so
/// any number of schedulers and executors can share one Redis.
///
/// Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct RedisJobStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: RedisConfig,
    pub keys: Keys,
    /// Where the primary is: the shared multiplexed connection for every non-blocking
    /// command (reconnects by itself), and the client the dedicated connections come from.
    pub endpoint: Arc<Endpoint>,
    pub scripts: Scripts,
    /// Dedicated connections for blocking pops (a blocking command would stall `conn`).
    pub blocking: BlockingPool,
    /// Executor events popped but not yet returned.
    pub events: EventBuffer,
    /// Pub/sub subscription that wakes `wait_for_work`.
    pub wake: WakeListener,
    /// The one pattern subscription every log follower of this process shares.
    pub log_watch: LogWatch,
    /// The subscription to the changes channel, for `JobStore::changes`.
    pub changes: ChangeListener,
    /// Requests sent through this handle and its clones (each one round trip).
    pub requests: Arc<AtomicU64>,
    /// Redis's clock as last read (`TIME`) and the local instant of that reading; see
    /// [`JobStore::now`](dwr_core::JobStore::now) on [`RedisJobStore`].
    pub clock: std::sync::Mutex<Option<(dwr_core::Timestamp, std::time::Instant)>>,
    /// Group commit of the per-job transitions (see [`crate::batch`]).
    pub batchers: Batchers,
    /// The executors as this process's last scheduling pass read them.
    pub placement: tokio::sync::Mutex<Option<PlacementCache>>,
    /// The queued jobs as this process's last scheduling pass read them.
    pub queued: std::sync::Mutex<QueuedCache>,
}

/// The store's two [`Coalescer`]s.
pub(crate) struct Batchers {
    /// The transitions every job goes through (submit, commit, start, end): whatever of
    /// them is queued goes out as one call, so that a scheduler's submits and commits, an
    /// executor's starts and ends, share each call's fixed price.
    pub transitions: Coalescer,
    /// Log lines: not waited for (see below), and a batch of them may be large.
    pub logs: Coalescer,
}

impl fmt::Debug for RedisJobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisJobStore")
            .field("url", &self.inner.config.redacted_url())
            .field("key_prefix", &self.inner.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisJobStore {
    /// Connects to Redis and loads the scripts.
    pub async fn connect(config: RedisConfig) -> Result<Self, Error> {
        config.validate()?;
        let url = config.redacted_url();
        let endpoint = Endpoint::connect(&config).await?;
        let conn = endpoint.conn();
        let scripts = Scripts::new();
        let mut load = conn.clone();
        scripts
            .library
            .prepare(&mut load, &scripts.texts)
            .await
            .map_err(|source| Error::Connect {
                url: url.clone(),
                source,
            })?;
        let keys = Keys::new(config.key_prefix.clone());
        let requests = Arc::new(AtomicU64::new(0));
        // Log lines are not waited for: a failover may lose the last ones, never a change
        // of state.
        let batcher = |waits| {
            Coalescer::start(Worker {
                waits,
                endpoint: endpoint.clone(),
                prefix: keys.prefix().to_owned(),
                singles: Batched::ALL.map(|script| scripts.single(script).clone()),
                batch: scripts.batch.clone(),
                requests: requests.clone(),
            })
        };
        let batchers = Batchers {
            transitions: batcher(true),
            logs: batcher(false),
        };
        let blocking = BlockingPool::new(endpoint.clone(), config.connect_timeout);
        let wake = WakeListener::new(
            endpoint.clone(),
            keys.wake_channel(),
            config.reconnect_max_delay,
        );
        let log_watch = LogWatch::new(
            endpoint.clone(),
            keys.log_channel_pattern(),
            keys.log_channel_prefix(),
            config.reconnect_max_delay,
        );
        let changes = ChangeListener::new(
            endpoint.clone(),
            keys.changes_channel(),
            config.reconnect_max_delay,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                changes,
                log_watch,
                config,
                keys,
                endpoint,
                scripts,
                blocking,
                events: EventBuffer::default(),
                wake,
                requests,
                clock: std::sync::Mutex::new(None),
                batchers,
                placement: tokio::sync::Mutex::new(None),
                queued: std::sync::Mutex::default(),
            }),
        })
    }

    /// The configuration it was connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The key names it uses.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Checks the allocation invariants of every executor inside Redis (atomically): each
    /// allocation equals the sum of its jobs' requests and stays within capacity, each held
    /// GPU is a device of the executor held by one of its jobs, each assigned or running job
    /// is held by its executor. Returns one line per violation; empty when all hold.
    pub async fn check_invariants(&self) -> Result<Vec<String>, StoreError> {
        let scripts = &self.inner.scripts;
        let reply = self
            .eval("check_invariants", &scripts.check_invariants, Vec::new())
            .await?;
        crate::codec::strings(&reply, "check_invariants")
    }

    /// Deletes every key under this store's prefix (`SCAN` and `UNLINK`, a page at a time):
    /// what a tool that used a prefix of its own leaves behind, jobs in any state included.
    /// Never for a store other processes use. Returns how many keys it deleted.
    pub async fn delete_all_keys(&self) -> Result<u64, StoreError> {
        let mut pattern = String::new();
        for c in self.inner.keys.prefix().chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut conn = self.conn();
        let (mut cursor, mut deleted) = (0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| store_error("delete_all_keys", e))?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| store_error("delete_all_keys", e))?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Runs the read-only `script` with the key prefix as `ARGV[1]` followed by `args`.
    pub(crate) async fn eval(
        &self,
        operation: &'static str,
        script: &Routine,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        self.invoke(operation, script, args, false).await
    }

    /// Runs the writing `script` like [`eval`](Self::eval), then waits for the replicas
    /// the configuration asks for ([`RedisConfig::wait_replicas`]).
    pub(crate) async fn eval_write(
        &self,
        operation: &'static str,
        script: &Routine,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        self.invoke(operation, script, args, true).await
    }

    async fn invoke(
        &self,
        operation: &'static str,
        script: &Routine,
        args: Vec<String>,
        writes: bool,
    ) -> Result<Value, StoreError> {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.inner.keys.prefix());
        all.extend(args.iter().map(String::as_str));
        let mut conn = self.conn();
        let endpoint = &self.inner.endpoint;
        let reply = script.invoke(&mut conn, &all).await;
        endpoint
            .settle(&mut conn, reply, writes)
            .await
            .map_err(|e| store_error(operation, e))
    }

    /// The shared connection, for one request (counted in [`requests_sent`]).
    ///
    /// [`requests_sent`]: Self::requests_sent
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.count_request();
        self.inner.endpoint.conn()
    }

    /// Counts one request about to be sent on a connection other than the shared one.
    pub(crate) fn count_request(&self) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this store calls its scripts as functions of its library (`FCALL`, Redis 7
    /// and later), rather than by SHA (`EVALSHA`, a server without functions or a user
    /// who may not load them). See [`crate::scripts`].
    pub fn uses_functions(&self) -> bool {
        self.inner.scripts.library.functions()
    }

    /// Requests this store (with its clones) has sent to Redis since it connected: every
    /// script call, read, blocking pop and subscription is one, and each is one round trip.
    /// The difference between two readings is what the operations in between cost.
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}
