//! Waiting without polling: dedicated connections for blocking pops, and the pub/sub
//! listener that wakes schedulers.
//!
//! Blocking commands (`BLMPOP`, `BLPOP`) never go through the shared multiplexed
//! connection: a blocked command there would hold up every command queued behind it. Each
//! waiter takes a dedicated connection from a small pool and gives it back when the pop
//! answered.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoint::Endpoint;

/// Executor events popped from Redis but not yet returned by `next_event`: one pop takes
/// everything queued for an executor (up to a bound), so an executor that was handed many
/// jobs at once gets them in one round trip, then one per call from here, in order.
///
/// Events held here when the process stops are lost with it, like an event popped by a
/// cancelled wait; the jobs they name stay assigned to the executor, and its agent's
/// reconcile and fallback check pick them up.
#[derive(Default)]
pub(crate) struct EventBuffer {
    held: Mutex<HashMap<dwr_core::ExecutorId, VecDeque<String>>>,
    /// The server has no `BLMPOP` (before Redis 7): pop one event at a time.
    legacy: AtomicBool,
}

impl EventBuffer {
    /// The oldest event held for `executor`.
    pub fn pop(&self, executor: &dwr_core::ExecutorId) -> Option<String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let queue = held.get_mut(executor)?;
        let event = queue.pop_front();
        if queue.is_empty() {
            held.remove(executor);
        }
        event
    }

    /// Holds `events` (popped after the one being returned) for `executor`'s next calls.
    pub fn keep(&self, executor: &dwr_core::ExecutorId, events: Vec<String>) {
        if events.is_empty() {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.entry(executor.clone()).or_default().extend(events);
    }

    /// Drops what is held for `executor`: it registers again after an expiry, and what was
    /// held names jobs that the expiry failed.
    pub fn forget(&self, executor: &dwr_core::ExecutorId) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(executor);
    }

    /// Whether pops take one event at a time.
    pub fn legacy(&self) -> bool {
        self.legacy.load(Ordering::Relaxed)
    }

    /// Switches to one event per pop; true if it was not already (the caller retries).
    pub fn fall_back(&self) -> bool {
        !self.legacy.swap(true, Ordering::Relaxed)
    }
}

/// Idle dedicated connections kept for reuse.
const POOL_IDLE_MAX: usize = 32;

/// A small pool of dedicated connections for blocking commands, to the current primary:
/// connections to an earlier primary are dropped, not reused.
pub(crate) struct BlockingPool {
    endpoint: Arc<Endpoint>,
    connect_timeout: Duration,
    idle: Mutex<Vec<(u64, MultiplexedConnection)>>,
}

/// A dedicated connection out of a [`BlockingPool`].
pub(crate) struct Dedicated {
    /// The connection.
    pub conn: MultiplexedConnection,
    /// Whether it was idle in the pool (it may have died there) rather than new.
    pub reused: bool,
    /// The primary it goes to ([`Endpoint::generation`]).
    generation: u64,
}

impl BlockingPool {
    pub fn new(endpoint: Arc<Endpoint>, connect_timeout: Duration) -> Self {
        Self {
            endpoint,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection to the current primary or a new one. No response timeout: the
    /// caller bounds the wait.
    pub async fn take(&self) -> RedisResult<Dedicated> {
        let generation = *self.endpoint.generation().borrow();
        let idle = match self.idle.lock() {
            Ok(mut idle) => {
                idle.retain(|(g, _)| *g == generation);
                idle.pop()
            }
            Err(_) => None,
        };
        if let Some((generation, conn)) = idle {
            return Ok(Dedicated {
                conn,
                reused: true,
                generation,
            });
        }
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(self.connect_timeout));
        let conn = self
            .endpoint
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Dedicated {
            conn,
            reused: false,
            generation,
        })
    }

    /// Gives back a connection whose last command answered (never one that failed or was
    /// abandoned mid-command: it might still deliver a popped element to nobody).
    pub fn give_back(&self, dedicated: Dedicated) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOL_IDLE_MAX {
                idle.push((dedicated.generation, dedicated.conn));
            }
        }
    }
}

/// Wakes `wait_for_work`: a task subscribed to the wake channel bumps a version on every
/// message, and on every (re)subscription (messages may have been missed while it was
/// disconnected, so it errs on the side of waking).
///
/// Pub/sub rather than a list: every scheduler must wake (a list token wakes only one).
/// The version makes "since the last call" hold per store handle even when the message
/// arrived while the scheduler was busy.
pub(crate) struct WakeListener {
    endpoint: Arc<Endpoint>,
    channel: String,
    max_delay: Duration,
    state: Mutex<Option<(watch::Receiver<u64>, JoinHandle<()>)>>,
    /// The version the last `wait_for_work` saw.
    pub seen: AtomicU64,
}

impl WakeListener {
    pub fn new(endpoint: Arc<Endpoint>, channel: String, max_delay: Duration) -> Self {
        Self {
            endpoint,
            channel,
            max_delay,
            state: Mutex::new(None),
            seen: AtomicU64::new(0),
        }
    }

    /// A receiver of the wake version, starting the listener on first use.
    pub fn receiver(&self) -> watch::Receiver<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rx, _)) = state.as_ref() {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(0u64);
        let task = tokio::spawn(listen(
            Arc::downgrade(&self.endpoint),
            self.channel.clone(),
            self.max_delay,
            tx,
        ));
        *state = Some((rx.clone(), task));
        rx
    }

    /// Waits until the version differs from the one the previous call saw, or `wait`.
    pub async fn wait(&self, wait: Duration) {
        let mut rx = self.receiver();
        let current = *rx.borrow_and_update();
        if current != self.seen.load(Ordering::Acquire) {
            self.seen.store(current, Ordering::Release);
            return;
        }
        let _ = tokio::time::timeout(wait, rx.changed()).await;
        self.seen.store(*rx.borrow_and_update(), Ordering::Release);
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        if let Some((_, task)) = self.state.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

async fn listen(
    endpoint: std::sync::Weak<Endpoint>,
    channel: String,
    max_delay: Duration,
    tx: watch::Sender<u64>,
) {
    let bump = || tx.send_modify(|v| *v = v.wrapping_add(1));
    keep_subscribed(
        endpoint,
        "wake",
        max_delay,
        |client| {
            let channel = channel.clone();
            async move { subscribe(&client, &channel).await }
        },
        || {
            bump();
            !tx.is_closed()
        },
        |_| {
            bump();
            true
        },
    )
    .await;
}

/// Keeps a subscription on the current primary: makes it with `subscribe`, calls
/// `subscribed` after every (re)subscription and `message` for every message, and subscribes
/// again (backing off up to `max_delay`) when the connection drops or the primary moves.
/// Ends when the endpoint is gone, or when a callback returns false.
async fn keep_subscribed<S, F>(
    endpoint: std::sync::Weak<Endpoint>,
    what: &'static str,
    max_delay: Duration,
    subscribe: S,
    mut subscribed: impl FnMut() -> bool,
    mut message: impl FnMut(redis::Msg) -> bool,
) where
    S: Fn(redis::Client) -> F,
    F: std::future::Future<Output = RedisResult<redis::aio::PubSub>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        let Some((client, mut moved)) = endpoint.upgrade().map(|e| (e.client(), e.generation()))
        else {
            return;
        };
        moved.borrow_and_update();
        match subscribe(client).await {
            Ok(pubsub) => {
                delay = Duration::from_millis(50);
                if !subscribed() {
                    return;
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    let next = tokio::select! {
                        next = messages.next() => next,
                        // The primary moved: subscribe on the new one.
                        Ok(()) = moved.changed() => None,
                    };
                    let Some(next) = next else { break };
                    if !message(next) {
                        return;
                    }
                }
                tracing::debug!(what, "subscription lost; resubscribing");
            }
            Err(err) => tracing::debug!(what, error = %err, "subscription failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max_delay.max(Duration::from_millis(50)));
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Log followers of this process share one pattern subscription to every job's log
/// channel, instead of a connection each: a task reads the messages and wakes the followers
/// of the job each one names. Every (re)subscription also wakes every follower, since
/// messages may have been missed while it was disconnected.
pub(crate) struct LogWatch {
    endpoint: Arc<Endpoint>,
    pattern: String,
    channel_prefix: String,
    max_delay: Duration,
    shared: Arc<LogWatchShared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct LogWatchShared {
    /// Followed jobs (by id as in the channel name): a version bumped per message, and how
    /// many followers hold it.
    jobs: Mutex<HashMap<String, (watch::Sender<u64>, usize)>>,
    /// Bumped on every (re)subscription.
    subscribed: watch::Sender<u64>,
}

/// One follower's interest in a job's log; dropping it ends the interest.
pub(crate) struct Watching {
    shared: Arc<LogWatchShared>,
    job: String,
    lines: watch::Receiver<u64>,
    subscribed: watch::Receiver<u64>,
}

impl Watching {
    /// Returns at the next message about the job, or at a resubscription.
    pub async fn changed(&mut self) {
        tokio::select! {
            r = self.lines.changed() => { if r.is_err() { std::future::pending::<()>().await } }
            r = self.subscribed.changed() => { if r.is_err() { std::future::pending::<()>().await } }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, holders)) = jobs.get_mut(&self.job) {
            *holders -= 1;
            if *holders == 0 {
                jobs.remove(&self.job);
            }
        }
    }
}

impl LogWatch {
    pub fn new(
        endpoint: Arc<Endpoint>,
        pattern: String,
        channel_prefix: String,
        max_delay: Duration,
    ) -> Self {
        Self {
            endpoint,
            pattern,
            channel_prefix,
            max_delay,
            shared: Arc::new(LogWatchShared::default()),
            task: Mutex::new(None),
        }
    }

    /// Registers interest in `job`'s log, starting the shared subscription on first use
    /// and waiting up to `connect` for it to be in place, so that a line appended after
    /// this returns wakes the follower. `Err` when the subscription is not in place in time.
    pub async fn watch(&self, job: &str, connect: Duration) -> Result<Watching, ()> {
        let mut subscribed = self.shared.subscribed.subscribe();
        {
            let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
            if task.is_none() {
                *task = Some(tokio::spawn(listen_logs(
                    Arc::downgrade(&self.endpoint),
                    self.pattern.clone(),
                    self.channel_prefix.clone(),
                    self.max_delay,
                    Arc::downgrade(&self.shared),
                )));
            }
        }
        let lines = {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let (tx, holders) = jobs
                .entry(job.to_owned())
                .or_insert_with(|| (watch::channel(0).0, 0));
            *holders += 1;
            tx.subscribe()
        };
        let watching = Watching {
            shared: self.shared.clone(),
            job: job.to_owned(),
            lines,
            subscribed: subscribed.clone(),
        };
        let ready = tokio::time::timeout(connect, subscribed.wait_for(|v| *v > 0)).await;
        match ready {
            Ok(Ok(_)) => Ok(watching),
            _ => Err(()),
        }
    }
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

async fn listen_logs(
    endpoint: std::sync::Weak<Endpoint>,
    pattern: String,
    channel_prefix: String,
    max_delay: Duration,
    shared: std::sync::Weak<LogWatchShared>,
) {
    keep_subscribed(
        endpoint,
        "logs",
        max_delay,
        |client| {
            let pattern = pattern.clone();
            async move {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.psubscribe(&pattern).await?;
                Ok(pubsub)
            }
        },
        || {
            let Some(s) = shared.upgrade() else {
                return false;
            };
            s.subscribed.send_modify(|v| *v = v.wrapping_add(1));
            true
        },
        |message| {
            let Some(s) = shared.upgrade() else {
                return false;
            };
            let channel = message.get_channel_name();
            if let Some(job) = channel.strip_prefix(channel_prefix.as_str()) {
                let jobs = s.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((tx, _)) = jobs.get(job) {
                    tx.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            true
        },
    )
    .await;
}

/// The store's change feed (`JobStore::changes`): one subscription to the changes channel
/// per store handle, started by the first subscriber, that turns each message (the changes
/// of one script call) into [`Change`](dwr_core::Change)s. Every resubscription after the
/// first sends a [`Change::Gap`](dwr_core::Change::Gap): messages may have been missed.
pub(crate) struct ChangeListener {
    endpoint: Arc<Endpoint>,
    channel: String,
    max_delay: Duration,
    feed: dwr_core::ChangeFeed,
    /// Bumped on every (re)subscription.
    subscribed: watch::Sender<u64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ChangeListener {
    pub fn new(endpoint: Arc<Endpoint>, channel: String, max_delay: Duration) -> Self {
        Self {
            endpoint,
            channel,
            max_delay,
            feed: dwr_core::ChangeFeed::new(),
            subscribed: watch::channel(0).0,
            task: Mutex::new(None),
        }
    }

    /// A receiver of the changes from now on, starting the subscription on first use and
    /// waiting up to `connect` for it to be in place; `None` when it is not.
    pub async fn subscribe(&self, connect: Duration) -> Option<dwr_core::ChangeReceiver> {
        let receiver = self.feed.subscribe();
        let mut subscribed = self.subscribed.subscribe();
        {
            let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
            if task.is_none() {
                *task = Some(tokio::spawn(listen_changes(
                    Arc::downgrade(&self.endpoint),
                    self.channel.clone(),
                    self.max_delay,
                    self.feed.clone(),
                    self.subscribed.clone(),
                )));
            }
        }
        let ready = tokio::time::timeout(connect, subscribed.wait_for(|v| *v > 0)).await;
        matches!(ready, Ok(Ok(_))).then_some(receiver)
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

async fn listen_changes(
    endpoint: std::sync::Weak<Endpoint>,
    channel: String,
    max_delay: Duration,
    feed: dwr_core::ChangeFeed,
    subscribed: watch::Sender<u64>,
) {
    let mut first = true;
    keep_subscribed(
        endpoint,
        "changes",
        max_delay,
        |client| {
            let channel = channel.clone();
            async move { subscribe(&client, &channel).await }
        },
        || {
            if !first {
                feed.send(dwr_core::Change::Gap);
            }
            first = false;
            subscribed.send_modify(|v| *v += 1);
            true
        },
        |message| {
            let text = String::from_utf8_lossy(message.get_payload_bytes());
            for line in text.lines() {
                match crate::job_store::parse_change(line) {
                    Some(change) => feed.send(change),
                    None => tracing::debug!(%line, "unreadable change; skipped"),
                }
            }
            true
        },
    )
    .await;
}
