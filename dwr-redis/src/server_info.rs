//! Figures about the Redis server itself, for the load tool and the round-trip report.

use std::collections::BTreeMap;

use dwr_core::StoreError;

use crate::error::store_error;
use crate::store::RedisJobStore;

/// Command counts read from `INFO commandstats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandStats {
    /// Calls per command name (lowercase), commands run inside scripts included.
    pub calls: BTreeMap<String, u64>,
}

impl CommandStats {
    /// Every command the server ran, those inside scripts included.
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The counts of `self` minus those of an `earlier` reading.
    pub fn since(&self, earlier: &CommandStats) -> CommandStats {
        let calls = self
            .calls
            .iter()
            .map(|(name, n)| {
                let before = earlier.calls.get(name).copied().unwrap_or(0);
                (name.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        CommandStats { calls }
    }

    /// Parses the text of `INFO commandstats` (`cmdstat_<name>:calls=<n>,usec=…`).
    pub fn parse(info: &str) -> CommandStats {
        let calls = info
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_ascii_lowercase(), calls))
            })
            .collect();
        CommandStats { calls }
    }
}

impl RedisJobStore {
    /// The server's command counts (`INFO commandstats`); the difference of two readings
    /// ([`CommandStats::since`]) is what all clients caused in between, the commands run
    /// inside scripts included. For round trips see
    /// [`requests_sent`](RedisJobStore::requests_sent).
    pub async fn command_stats(&self) -> Result<CommandStats, StoreError> {
        let mut conn = self.inner.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("info", e))?;
        Ok(CommandStats::parse(&info))
    }

    /// Bytes the server uses (`used_memory` of `INFO memory`) and the keys of its
    /// database (`DBSIZE`): what a long run's memory figures watch.
    pub async fn memory_and_keys(&self) -> Result<(u64, u64), StoreError> {
        let mut conn = self.inner.conn.clone();
        let (info, keys): (String, u64) = redis::pipe()
            .cmd("INFO")
            .arg("memory")
            .cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("info", e))?;
        let used = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok((used, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_subtracts_commandstats() {
        let before = CommandStats::parse(
            "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=5,usec_per_call=0.5\r\ncmdstat_hset:calls=40,usec=1\r\n",
        );
        let after = CommandStats::parse(
            "cmdstat_evalsha:calls=16,usec=9\r\ncmdstat_hset:calls=100,usec=1\r\ncmdstat_blpop:calls=2,usec=1\r\n",
        );
        let delta = after.since(&before);
        assert_eq!(delta.calls["evalsha"], 6);
        assert_eq!(delta.total(), 68);
        assert_eq!(
            CommandStats::parse("garbage\r\ncmdstat_x:nocalls").total(),
            0
        );
    }
}
