//! The heartbeat task: renews the executor's lease, and fences the executor when it lost it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::executor::ExecutorRegistration;
use crate::probe::HostProbe;

use super::Shared;

/// How often the fence checks that the job containers are gone.
const FENCE_POLL: Duration = Duration::from_millis(100);
/// How long the fence waits for them beyond the stop grace.
const FENCE_SLACK: Duration = Duration::from_secs(10);

/// What the heartbeat task needs besides the agent's shared parts.
pub(super) struct Lease {
    /// The registration, sent again when the store has expired the executor.
    pub registration: ExecutorRegistration,
    /// When the registration that started the lease was sent (the store stamped it later,
    /// so a lease counted from here ends no later than the store's).
    pub renewed: Instant,
    /// Rung after registering again (or renewing after a fence), so the agent re-reads
    /// its jobs at once.
    pub reregistered: Arc<Notify>,
}

/// Heartbeats every `heartbeat_interval` until aborted.
///
/// **Self-fencing.** The lease is [`ExecutorRegistration::lease_ttl`], counted from the
/// moment the last successful renewal was *sent*: the store stamped it later, so the
/// executor's view of its lease ends no later than the store's. When it ends without a
/// renewal (the store, or the network to it, is down or hangs), every job task stops and
/// removes its container and records nothing: by then the store may have expired the
/// executor and handed its jobs and their resources to others. The fence goes to the job
/// tasks directly, not through the agent's loop, which may itself be waiting on the store.
///
/// **Re-registration.** When the store answers `ExecutorNotFound` (it expired the
/// executor), the job containers are stopped first (unless the fence did it already), and
/// only once the runtime shows none of them running is the executor registered again: its
/// capacity is offered only when nothing of its old jobs runs on it.
pub(super) async fn heartbeat(shared: Arc<Shared>, host: Arc<dyn HostProbe>, lease: Lease) {
    let Lease {
        registration,
        mut renewed,
        reregistered,
    } = lease;
    let store = shared.store.clone();
    let interval = shared.config.heartbeat_interval;
    let id = registration.id.clone();
    let ttl = registration.lease_ttl();
    let mut fenced = false;
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = tokio::time::sleep_until(renewed + ttl), if !fenced => {
                fence(&shared, ttl).await;
                fenced = true;
                continue;
            }
        }
        let sent = Instant::now();
        let usage = host.usage();
        // The lease runs out whatever the store does: a renewal that hangs (a partition
        // where packets vanish) must not hold the fence back.
        let renewal = tokio::select! {
            renewal = store.heartbeat(&id, &usage) => renewal,
            () = tokio::time::sleep_until(renewed + ttl), if !fenced => {
                fence(&shared, ttl).await;
                fenced = true;
                continue;
            }
        };
        match renewal {
            Ok(()) => {
                tracing::trace!(executor = %id, "heartbeat");
                renewed = sent;
                if fenced {
                    // The store still had it: the jobs it stopped are recorded as lost by
                    // the agent's fallback check, which this rings.
                    tracing::warn!(executor = %id, "lease renewed after self-fencing");
                    fenced = false;
                    reregistered.notify_one();
                }
            }
            Err(StoreError::ExecutorNotFound { .. }) => {
                tracing::warn!(executor = %id, "executor was expired; stopping its job containers, then registering again");
                if !fenced {
                    fence(&shared, ttl).await;
                    fenced = true;
                }
                let sent = Instant::now();
                match store.register_executor(&registration).await {
                    Ok(_) => {
                        renewed = sent;
                        fenced = false;
                        reregistered.notify_one();
                    }
                    Err(error) => {
                        tracing::warn!(executor = %id, error = %error, "registering again failed");
                    }
                }
            }
            Err(error) => tracing::warn!(executor = %id, error = %error, "heartbeat failed"),
        }
    }
}

/// Raises the fence and waits until the runtime shows no job container of this executor
/// running (or the stop grace and some slack have passed).
async fn fence(shared: &Shared, ttl: Duration) {
    let id = &shared.config.id;
    tracing::error!(executor = %id, lease_ms = ttl.as_millis() as u64, "lease lost: stopping every job container, recording nothing (self-fencing)");
    shared.fence.send_modify(|generation| *generation += 1);
    let deadline = Instant::now() + shared.config.stop_grace + FENCE_SLACK;
    loop {
        match shared.runtime.list_owned(id).await {
            Ok(owned) if owned.iter().all(|c| !c.running) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(executor = %id, error = %error, "fence: could not list the containers");
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(executor = %id, "fence: job containers still running after the stop grace");
            return;
        }
        tokio::time::sleep(FENCE_POLL).await;
    }
}
