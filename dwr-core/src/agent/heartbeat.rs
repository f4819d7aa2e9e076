//! The heartbeat task.

use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::executor::ExecutorRegistration;
use crate::probe::HostProbe;
use crate::store::JobStore;
use crate::time::Timestamp;

/// Heartbeats forever; registers again when the store has expired the executor.
pub(super) async fn heartbeat(
    store: Arc<dyn JobStore>,
    host: Arc<dyn HostProbe>,
    registration: ExecutorRegistration,
    interval: Duration,
) {
    let id = registration.id.clone();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.heartbeat(&id, &host.usage(), Timestamp::now()).await {
            Ok(()) => tracing::trace!(executor = %id, "heartbeat"),
            Err(StoreError::ExecutorNotFound { .. }) => {
                tracing::warn!(executor = %id, "executor was expired; registering again");
                if let Err(error) = store
                    .register_executor(&registration, Timestamp::now())
                    .await
                {
                    tracing::warn!(executor = %id, error = %error, "registering again failed");
                }
            }
            Err(error) => tracing::warn!(executor = %id, error = %error, "heartbeat failed"),
        }
    }
}
