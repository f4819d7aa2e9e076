//! Retention: deleting terminal jobs (with their logs) by age or beyond a count, in batches.

use dwr_core::StoreError;

use crate::error::corrupt;
use crate::store::RedisJobStore;

/// Jobs deleted per `purge` script call (bounds the time one call blocks Redis).
const PURGE_BATCH: usize = 500;

/// Runs the purge script in batches of [`PURGE_BATCH`] until nothing is due: jobs that
/// finished `age_ms` ago or earlier ('' for no age), or beyond the `keep` that finished
/// last (-1 for no count).
pub(super) async fn purge(
    store: &RedisJobStore,
    age_ms: String,
    keep: i64,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let args = vec![age_ms.clone(), PURGE_BATCH.to_string(), keep.to_string()];
        let script = &store.inner.scripts.purge;
        let reply = store.eval_write("purge_finished", script, args).await?;
        let (deleted, more): (u64, u8) = redis::from_redis_value_ref(&reply)
            .map_err(|e| corrupt("purge_finished", e.to_string()))?;
        total += deleted;
        if more == 0 {
            return Ok(total);
        }
    }
}
