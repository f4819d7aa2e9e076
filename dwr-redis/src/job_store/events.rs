//! An executor's event list: popping what is queued for it, at once or blocking up to a
//! wait, several events per round trip (held in the store handle for the next calls).

use std::time::Duration;

use dwr_core::{ExecutorEvent, ExecutorId, StoreError};

use super::timed_out;
use crate::codec::parse_event;
use crate::error::{corrupt, store_error};
use crate::store::RedisJobStore;

/// Most events one pop takes off an executor's list; the ones not returned at once wait
/// in the store handle for the next calls (see `EventBuffer`).
const EVENT_BATCH: usize = 128;
/// Extra time allowed past a blocking pop's own timeout before the connection is
/// considered dead.
const BLOCK_GRACE: Duration = Duration::from_secs(5);

/// True for the server's answer to a command, or a form of it, that it does not have (an
/// older Redis: `BLMPOP` came in 7.0, `LPOP` with a count in 6.2).
fn is_unknown_command(err: &redis::RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
        && (text.contains("unknown command") || text.contains("wrong number of arguments"))
}

/// The oldest event for `executor`: one held from an earlier pop, else popped now, waiting
/// up to `wait` for one (`None` when none came).
pub(super) async fn next(
    store: &RedisJobStore,
    executor: &ExecutorId,
    wait: Duration,
) -> Result<Option<ExecutorEvent>, StoreError> {
    if let Some(text) = store.inner.events.pop(executor) {
        return parse_event(&text).map(Some);
    }
    let key = store.inner.keys.executor_events(executor);
    let mut popped = if wait.is_zero() {
        pop(store, &key).await?
    } else {
        pop_blocking(store, &key, wait).await?
    };
    if popped.is_empty() {
        return Ok(None);
    }
    let first = popped.remove(0);
    store.inner.events.keep(executor, popped);
    parse_event(&first).map(Some)
}

/// What is queued on `key` now, up to [`EVENT_BATCH`], on the shared connection.
async fn pop(store: &RedisJobStore, key: &str) -> Result<Vec<String>, StoreError> {
    loop {
        let mut lpop = redis::cmd("LPOP");
        lpop.arg(key);
        if !store.inner.events.legacy() {
            lpop.arg(EVENT_BATCH);
        }
        let reply: Option<redis::Value> = match lpop.query_async(&mut store.conn()).await {
            // A server before Redis 6.2 has no count: pop one at a time from now on.
            Err(e) if is_unknown_command(&e) && store.inner.events.fall_back() => continue,
            reply => reply.map_err(|e| store_error("next_event", e))?,
        };
        // With a count, an array; without, the event itself.
        let events = match reply {
            None => Ok(Vec::new()),
            Some(v @ redis::Value::Array(_)) => redis::from_redis_value(v),
            Some(v) => redis::from_redis_value(v).map(|event: String| vec![event]),
        };
        return events.map_err(|e| corrupt("next_event", e.to_string()));
    }
}

/// What is queued on `key`, up to [`EVENT_BATCH`], waiting up to `wait` for the first, on
/// a dedicated connection (a blocking pop would hold up the shared one).
async fn pop_blocking(
    store: &RedisJobStore,
    key: &str,
    wait: Duration,
) -> Result<Vec<String>, StoreError> {
    let pool = &store.inner.blocking;
    // Blocking pops take seconds with millisecond resolution; 0 means "forever".
    let secs = format!("{:.3}", wait.as_secs_f64().max(0.001));
    loop {
        let mut dedicated = pool
            .take()
            .await
            .map_err(|e| store_error("next_event", e))?;
        let (conn, reused) = (&mut dedicated.conn, dedicated.reused);
        store.count_request();
        let legacy = store.inner.events.legacy();
        let pop = async {
            if legacy {
                let mut blpop = redis::cmd("BLPOP");
                blpop.arg(key).arg(&secs);
                let reply: Option<(String, String)> = blpop.query_async(conn).await?;
                Ok(reply.map(|(_, event)| vec![event]).unwrap_or_default())
            } else {
                // Everything queued, up to EVENT_BATCH, in one round trip.
                let mut blmpop = redis::cmd("BLMPOP");
                blmpop.arg(&secs).arg(1).arg(key).arg("LEFT");
                blmpop.arg("COUNT").arg(EVENT_BATCH);
                let reply: Option<(String, Vec<String>)> = blmpop.query_async(conn).await?;
                Ok::<_, redis::RedisError>(reply.map(|(_, events)| events).unwrap_or_default())
            }
        };
        match tokio::time::timeout(wait + BLOCK_GRACE, pop).await {
            Ok(Ok(events)) => {
                pool.give_back(dedicated);
                return Ok(events);
            }
            // A server before Redis 7 has no BLMPOP: pop one at a time from now on.
            Ok(Err(e)) if is_unknown_command(&e) && store.inner.events.fall_back() => {
                pool.give_back(dedicated);
            }
            // A pooled connection that died while idle (Redis restarted since):
            // it never blocked, so nothing was popped; try a fresh one.
            Ok(Err(e)) if reused && (e.is_connection_dropped() || e.is_io_error()) => {}
            Ok(Err(e)) => return Err(store_error("next_event", e)),
            Err(_) => return Err(timed_out("next_event")),
        }
    }
}
