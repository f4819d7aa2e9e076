//! Executors in the store: registration, heartbeats, snapshots, and the expiry of one that
//! was lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dwr_core::{Executor, ExecutorId, ExecutorRegistration, Expiry, HostUsage, JobId, StoreError};
use redis::Value;

use crate::codec::{array, executor_from, job_id_at, status_reply, unexpected};
use crate::error::{corrupt, corrupt_by};
use crate::store::RedisJobStore;

/// `register_executor.lua`: registers the executor, or refreshes it keeping what it holds.
pub(super) async fn register(
    store: &RedisJobStore,
    registration: &ExecutorRegistration,
) -> Result<Executor, StoreError> {
    let reg = serde_json::to_string(registration)
        .map_err(|e| corrupt_by(format!("registration of executor {}", registration.id), e))?;
    let mut args = vec![
        registration.id.to_string(),
        reg,
        registration.ip.clone(),
        registration.capacity.cpu_millis.to_string(),
        registration.capacity.memory_mib.to_string(),
        registration.capacity.gpus.to_string(),
        registration.lease_ttl().as_millis().to_string(),
    ];
    args.extend(registration.gpus.iter().map(|g| g.uuid.clone()));
    // A registration after an expiry starts afresh: events held from before name jobs
    // that the expiry failed (and deleted from Redis with the event list).
    store.inner.events.forget(&registration.id);
    let script = &store.inner.scripts.register_executor;
    let reply = store.eval_write("register_executor", script, args).await?;
    let (status, rest) = status_reply(&reply, "register_executor")?;
    match (status.as_str(), rest.first()) {
        ("ok", Some(snapshot)) => executor_from(snapshot),
        (other, _) => Err(unexpected("register_executor", other)),
    }
}

/// `heartbeat.lua`: renews the executor's lease and records its usage.
pub(super) async fn heartbeat(
    store: &RedisJobStore,
    id: &ExecutorId,
    usage: &HostUsage,
) -> Result<(), StoreError> {
    let usage = serde_json::to_string(usage)
        .map_err(|e| corrupt_by(format!("usage of executor {id}"), e))?;
    let script = &store.inner.scripts.heartbeat;
    let reply = store
        .eval("heartbeat", script, vec![id.to_string(), usage])
        .await?;
    match status_reply(&reply, "heartbeat")?.0.as_str() {
        "ok" => Ok(()),
        "executor_not_found" => Err(StoreError::ExecutorNotFound { id: id.clone() }),
        other => Err(unexpected("heartbeat", other)),
    }
}

/// `executors.lua`: a consistent snapshot of executor `id`, or of every executor.
pub(super) async fn snapshots(
    store: &RedisJobStore,
    id: Option<&ExecutorId>,
) -> Result<Vec<Executor>, StoreError> {
    let script = &store.inner.scripts.executors;
    let arg = id.map(|i| i.to_string()).unwrap_or_default();
    let reply = store
        .eval("executors", script, vec![arg, "whole".to_owned()])
        .await?;
    array(&reply, "executors")?
        .iter()
        .map(executor_from)
        .collect()
}

/// How long a placement cache is trusted before it is read whole again: the change counter
/// is exact on one server, but a failover to a replica that missed some changes and went
/// on counting could leave an executor behind in the cache.
const FULL_READ_EVERY: Duration = Duration::from_secs(60);

/// Every executor as placement reads them ([`JobStore::executors_for_placement`]), as the
/// last read of this process left them, and the change counter then.
///
/// [`JobStore::executors_for_placement`]: dwr_core::JobStore::executors_for_placement
#[derive(Debug)]
pub(crate) struct PlacementCache {
    /// The executor change counter (`executors:seq`) at the read.
    seq: i64,
    executors: BTreeMap<ExecutorId, Executor>,
    /// When the executors were last read whole.
    read_whole_at: Instant,
}

/// `executors.lua` for placement: the executors changed since this process's last read
/// (every change of a registration, a lease or an allocation bumps a counter), merged into
/// what it read before; all of them on the first read, when the count of executors
/// disagrees (one was removed), when the counter went back (another Redis), and every
/// [`FULL_READ_EVERY`]. A pass over 10,000 executors reads the few hundred that changed.
pub(super) async fn for_placement(store: &RedisJobStore) -> Result<Vec<Executor>, StoreError> {
    let mut cache = store.inner.placement.lock().await;
    let mut since = cache
        .as_ref()
        .filter(|c| c.read_whole_at.elapsed() < FULL_READ_EVERY)
        .map(|c| c.seq);
    loop {
        let read = read_for_placement(store, since).await?;
        match (cache.as_mut(), read.whole) {
            (Some(cached), false) => {
                cached.seq = read.seq;
                for exec in read.executors {
                    cached.executors.insert(exec.id().clone(), exec);
                }
                if cached.executors.len() == read.count {
                    return Ok(cached.executors.values().cloned().collect());
                }
                // An executor was removed since: read them all.
                since = None;
            }
            _ => {
                let cached = cache.insert(PlacementCache {
                    seq: read.seq,
                    executors: read
                        .executors
                        .into_iter()
                        .map(|e| (e.id().clone(), e))
                        .collect(),
                    read_whole_at: Instant::now(),
                });
                return Ok(cached.executors.values().cloned().collect());
            }
        }
    }
}

/// One placement read: all executors (`whole`) or those changed since `since`.
struct PlacementRead {
    seq: i64,
    count: usize,
    whole: bool,
    executors: Vec<Executor>,
}

async fn read_for_placement(
    store: &RedisJobStore,
    since: Option<i64>,
) -> Result<PlacementRead, StoreError> {
    let script = &store.inner.scripts.executors;
    let args = vec![
        String::new(),
        "placement".to_owned(),
        since.map(|s| s.to_string()).unwrap_or_default(),
    ];
    let reply = store.eval("executors", script, args).await?;
    let items = array(&reply, "executors")?;
    let bad = || {
        corrupt(
            "executors",
            "expected the counter, the count and the mode first",
        )
    };
    let [seq, count, mode, snapshots @ ..] = items else {
        return Err(bad());
    };
    let int = |v: &Value| redis::from_redis_value_ref::<i64>(v).map_err(|_| bad());
    let mode: String = redis::from_redis_value_ref(mode).map_err(|_| bad())?;
    Ok(PlacementRead {
        seq: int(seq)?,
        count: usize::try_from(int(count)?).map_err(|_| bad())?,
        whole: mode == "full",
        executors: snapshots
            .iter()
            .map(executor_from)
            .collect::<Result<_, _>>()?,
    })
}

/// `expire_executor.lua`: removes the executor (`when` its lease ran out, or now), failing
/// its jobs for `reason`; returns the jobs it failed.
pub(super) async fn expire(
    store: &RedisJobStore,
    id: &ExecutorId,
    when: Expiry,
    reason: &str,
) -> Result<Vec<JobId>, StoreError> {
    let mode = match when {
        Expiry::IfLeaseExpired => "lease",
        Expiry::Now => "now",
    };
    let args = vec![
        id.to_string(),
        mode.to_owned(),
        reason.to_owned(),
        store.log_ttl_secs(),
    ];
    let script = &store.inner.scripts.expire_executor;
    let reply = store.eval_write("expire_executor", script, args).await?;
    let (status, rest) = status_reply(&reply, "expire_executor")?;
    if status != "ok" {
        return Err(unexpected("expire_executor", &status));
    }
    (0..rest.len())
        .map(|i| job_id_at(rest, i, "expire_executor"))
        .collect()
}
