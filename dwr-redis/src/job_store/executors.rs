//! Executors in the store: registration, heartbeats, snapshots, and the expiry of one that
//! was lost.

use dwr_core::{Executor, ExecutorId, ExecutorRegistration, Expiry, HostUsage, JobId, StoreError};

use crate::codec::{array, executor_from, job_id_at, status_reply, unexpected};
use crate::error::corrupt_by;
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
    let reply = store.eval("register_executor", script, args).await?;
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

/// What [`snapshots`] reads of each executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Snapshot {
    /// Everything.
    Whole,
    /// What placement needs: no job set, no usage.
    Placement,
}

/// `executors.lua`: a consistent snapshot of executor `id`, or of every executor.
pub(super) async fn snapshots(
    store: &RedisJobStore,
    id: Option<&ExecutorId>,
    what: Snapshot,
) -> Result<Vec<Executor>, StoreError> {
    let script = &store.inner.scripts.executors;
    let arg = id.map(|i| i.to_string()).unwrap_or_default();
    let mode = match what {
        Snapshot::Whole => "whole",
        Snapshot::Placement => "placement",
    };
    let reply = store
        .eval("executors", script, vec![arg, mode.to_owned()])
        .await?;
    array(&reply, "executors")?
        .iter()
        .map(executor_from)
        .collect()
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
    let reply = store.eval("expire_executor", script, args).await?;
    let (status, rest) = status_reply(&reply, "expire_executor")?;
    if status != "ok" {
        return Err(unexpected("expire_executor", &status));
    }
    (0..rest.len())
        .map(|i| job_id_at(rest, i, "expire_executor"))
        .collect()
}
