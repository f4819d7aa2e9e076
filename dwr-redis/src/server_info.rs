//! Figures about the Redis server itself, for the load tool and the round-trip report.

use dwr_core::StoreError;

use crate::error::store_error;
use crate::store::RedisJobStore;

impl RedisJobStore {
    /// The server's `total_commands_processed` (from `INFO stats`): the difference between
    /// two readings is the number of commands all clients sent in between (this call's own
    /// `INFO` included).
    pub async fn commands_processed(&self) -> Result<u64, StoreError> {
        let mut conn = self.inner.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("info", e))?;
        info.lines()
            .find_map(|line| line.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| StoreError::Corrupt {
                what: "INFO stats: total_commands_processed".into(),
                source: "field missing or not a number".into(),
            })
    }
}
