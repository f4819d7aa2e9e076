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
        let mut conn = self.inner.endpoint.conn();
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
        let mut conn = self.inner.endpoint.conn();
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

/// The fixed script whose rate is the Redis baseline of `dwr bench`: three commands on one
/// key, about the least a script call does (issue 17: a job's cost is measured in these).
const BASELINE_SCRIPT: &str = "redis.call('INCR', KEYS[1]) \
     redis.call('GET', KEYS[1]) \
     return redis.call('PEXPIRE', KEYS[1], 60000)";

impl RedisJobStore {
    /// CPU seconds the server's main thread has used (`INFO cpu`:
    /// `used_cpu_sys_main_thread` + `used_cpu_user_main_thread`, or the process's
    /// `used_cpu_sys` + `used_cpu_user` on servers that do not report the thread).
    pub async fn server_cpu_seconds(&self) -> Result<f64, StoreError> {
        let mut conn = self.inner.endpoint.conn();
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("info", e))?;
        parse_cpu_seconds(&info)
            .ok_or_else(|| crate::error::corrupt("info", "INFO cpu without used_cpu_*"))
    }

    /// The baseline a load run is judged against on this server: calls per second of a
    /// fixed three-command Lua script (`INCR`, `GET`, `PEXPIRE` of one key) from
    /// `concurrency` tasks, each on its own key, for `duration`, over the connections
    /// `clients` says. Absolute rates move by 2x between hosts; a job's cost as a number of
    /// these calls does not.
    pub async fn baseline_evals_per_second(
        &self,
        concurrency: usize,
        duration: std::time::Duration,
        clients: BaselineClients,
    ) -> Result<f64, StoreError> {
        let script = redis::Script::new(BASELINE_SCRIPT);
        // Connected first, so that the clock starts with every task ready.
        let mut own = Vec::new();
        if clients == BaselineClients::OwnConnection {
            for _ in 0..concurrency.max(1) {
                own.push(
                    self.inner
                        .endpoint
                        .client()
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| store_error("baseline", e))?,
                );
            }
        }
        let started = std::time::Instant::now();
        let deadline = started + duration;
        let key = |n: usize| format!("{}baseline:{n}", self.inner.keys.prefix());
        let tasks: Vec<_> = if own.is_empty() {
            (0..concurrency.max(1))
                .map(|n| {
                    let conn = self.inner.endpoint.conn();
                    tokio::spawn(baseline_calls(conn, script.clone(), key(n), deadline))
                })
                .collect()
        } else {
            own.into_iter()
                .enumerate()
                .map(|(n, conn)| {
                    tokio::spawn(baseline_calls(conn, script.clone(), key(n), deadline))
                })
                .collect()
        };
        let mut calls = 0;
        for task in tasks {
            calls += task
                .await
                .map_err(|e| crate::error::corrupt("baseline", e.to_string()))??;
        }
        Ok(calls as f64 / started.elapsed().as_secs_f64())
    }
}

/// Over which connections the tasks of [`RedisJobStore::baseline_evals_per_second`] call
/// the baseline script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineClients {
    /// All over the store's one connection, as the store's own calls go: the calls in
    /// flight leave together (pipelined), and the server reads and answers many per
    /// system call.
    Shared,
    /// Each task on a connection of its own with one call in flight on it, as
    /// `redis-benchmark`'s clients call (issue 17's 43,700 scripts/s, against which its
    /// goal of five calls a job was set): every call is a read and a write of its own.
    OwnConnection,
}

/// One task of the baseline: calls `script` on `key` over `conn` until `deadline`, one at a
/// time, then deletes the key; returns how many calls it made.
async fn baseline_calls<C: redis::aio::ConnectionLike + Send>(
    mut conn: C,
    script: redis::Script,
    key: String,
    deadline: std::time::Instant,
) -> Result<u64, StoreError> {
    let mut calls = 0u64;
    while std::time::Instant::now() < deadline {
        let _: i64 = script
            .key(&key)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store_error("baseline", e))?;
        calls += 1;
    }
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| store_error("baseline", e))?;
    Ok(calls)
}

/// The main thread's CPU seconds in the text of `INFO cpu` (the process's when the server
/// does not report the thread).
pub fn parse_cpu_seconds(info: &str) -> Option<f64> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    match (
        field("used_cpu_sys_main_thread"),
        field("used_cpu_user_main_thread"),
    ) {
        (Some(sys), Some(user)) => Some(sys + user),
        _ => Some(field("used_cpu_sys")? + field("used_cpu_user")?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_main_threads_cpu_or_the_processes() {
        let info = "# CPU\r\nused_cpu_sys:2.5\r\nused_cpu_user:4.0\r\n\
                    used_cpu_sys_main_thread:1.25\r\nused_cpu_user_main_thread:2.0\r\n";
        assert_eq!(parse_cpu_seconds(info), Some(3.25));
        assert_eq!(
            parse_cpu_seconds("used_cpu_sys:2.5\r\nused_cpu_user:4.0\r\n"),
            Some(6.5)
        );
        assert_eq!(parse_cpu_seconds("# CPU\r\n"), None);
    }

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
