//! What each job transition costs the Redis server: runs `--jobs` jobs through submit, a
//! scheduling pass's read of the queue, commit, event pop, mark running and finish, one
//! stage at a time, `--in-flight` calls at
//! once (so they batch as under load), and prints for each stage the server's main-thread
//! CPU (`INFO cpu`) and script time (`INFO commandstats`) per job; then what one page of
//! the list of all jobs costs at three offsets.
//!
//! ```text
//! redis-server --port 6391 --save "" --appendonly no &
//! cargo run --release -p dwr-redis --example transition_cost -- redis://127.0.0.1:6391 20000 256
//! ```
//!
//! Time on a shared host moves by a quarter from run to run; instructions do not. With
//! `COST_AFTER_STAGE` set, it runs that shell command after each stage with the stage's
//! name as `$1`: under Callgrind, a dump per stage gives each stage's instructions
//! (BENCHMARKS.md, "Instructions per job"):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.out redis-server --port 6395 --save "" &
//! COST_AFTER_STAGE='callgrind_control -d "$1" >/dev/null' \
//!     cargo run --release -p dwr-redis --example transition_cost -- redis://127.0.0.1:6395 2000 256
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dwr_core::{
    Assignment, ExecutorId, ExecutorRegistration, Expiry, Job, JobId, JobSpec, JobStore, Outcome,
    Timestamp,
};
use dwr_redis::{RedisConfig, RedisJobStore};
use futures::future::join_all;

/// Server main-thread CPU seconds and total script microseconds so far.
async fn server_clock(conn: &mut redis::aio::MultiplexedConnection) -> (f64, u64) {
    let cpu: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap();
    let field = |name: &str| -> f64 {
        cpu.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let seconds = field("used_cpu_user_main_thread") + field("used_cpu_sys_main_thread");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let script_usec = stats
        .lines()
        .filter(|l| {
            ["cmdstat_fcall:", "cmdstat_evalsha:", "cmdstat_eval:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("usec=")))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    (seconds, script_usec)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let jobs: usize = args.next().map_or(20_000, |n| n.parse().expect("jobs"));
    let in_flight: usize = args.next().map_or(256, |n| n.parse().expect("in flight"));

    let mut config = RedisConfig {
        url: Some(url.clone()),
        ..RedisConfig::default()
    };
    config.key_prefix = format!("cost-{}:", std::process::id());
    let store = RedisJobStore::connect(config).await.expect("connect");
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let executor = ExecutorId::new("cost-1");
    let registration = ExecutorRegistration::new(
        executor.clone(),
        "127.0.0.1",
        1_000_000_000,
        1_000_000_000,
        Vec::new(),
    );
    store.register_executor(&registration).await.unwrap();
    let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 100, 16);
    let ids: Vec<JobId> = (0..jobs).map(|_| JobId::new()).collect();

    println!("stage          server CPU µs/job   script µs/job   wall s");
    let report = |stage: &str, before: (f64, u64), after: (f64, u64), wall: Duration| {
        println!(
            "{stage:<14} {:>17.1} {:>15.1} {:>8.2}",
            (after.0 - before.0) * 1e6 / jobs as f64,
            (after.1 - before.1) as f64 / jobs as f64,
            wall.as_secs_f64()
        );
    };

    macro_rules! stage {
        ($name:expr, $chunk:ident, $body:expr) => {{
            let before = server_clock(&mut conn).await;
            let t = Instant::now();
            for $chunk in ids.chunks(in_flight) {
                $body;
            }
            let wall = t.elapsed();
            report($name, before, server_clock(&mut conn).await, wall);
            if let Some(command) = std::env::var_os("COST_AFTER_STAGE") {
                let status = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .arg("sh")
                    .arg($name.replace(' ', "_"))
                    .status()
                    .expect("COST_AFTER_STAGE");
                assert!(status.success(), "COST_AFTER_STAGE failed: {status}");
            }
            if std::env::var_os("COST_DETAIL").is_some() {
                let stats: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
                    println!("    {line}");
                }
                let _: () = redis::cmd("CONFIG")
                    .arg("RESETSTAT")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }};
    }

    // The jobs as submitted: the commits carry them as their snapshots, as the scheduler
    // sends the jobs it read.
    let submitted: HashMap<JobId, Arc<Job>> = ids
        .iter()
        .map(|id| (*id, Arc::new(Job::new(*id, spec.clone(), Timestamp::now()))))
        .collect();
    stage!("submit", chunk, {
        join_all(
            chunk
                .iter()
                .map(|id| store.submit((*submitted[id]).clone())),
        )
        .await
        .into_iter()
        .for_each(|r| {
            r.expect("submit");
        });
    });
    // What a scheduling pass reads: the head of the queue (the same jobs each time, as
    // nothing is committed yet), as many as a chunk.
    stage!("pending read", chunk, {
        let read = store
            .pending_for_placement(chunk.len())
            .await
            .expect("pending");
        assert_eq!(read.len(), chunk.len());
    });
    stage!("commit", chunk, {
        let batch: Vec<Assignment> = chunk
            .iter()
            .map(|id| Assignment {
                snapshot: Some(submitted[id].clone()),
                ..Assignment::new(*id, executor.clone(), Vec::new())
            })
            .collect();
        for r in store.commit_assignments(&batch).await {
            r.expect("commit");
        }
    });
    stage!("event pop", chunk, {
        for _ in chunk {
            store
                .next_event(&executor, Duration::from_secs(5))
                .await
                .expect("pop")
                .expect("an event");
        }
    });
    stage!("mark running", chunk, {
        join_all(chunk.iter().map(|id| store.mark_running(*id, &executor, 1)))
            .await
            .into_iter()
            .for_each(|r| {
                r.expect("mark running");
            });
    });
    let exited = Outcome::exited(0, false);
    stage!("finish", chunk, {
        join_all(chunk.iter().map(|id| store.finish(*id, &exited, None)))
            .await
            .into_iter()
            .for_each(|r| {
                r.expect("finish");
            });
    });
    // Listing all jobs has no index of its own (it bisects the per-state sets): one page
    // of 100 at the start, the middle and the end of the history, server CPU per page.
    // A page of the succeeded jobs (read straight from their sorted set) for comparison.
    let pages = [
        (None, 0),
        (None, jobs / 2),
        (None, jobs.saturating_sub(100)),
        (Some(dwr_core::JobState::Succeeded), jobs / 2),
    ];
    for (state, offset) in pages {
        let before = server_clock(&mut conn).await;
        let t = Instant::now();
        const PAGES: usize = 20;
        for _ in 0..PAGES {
            let page = store
                .jobs(&dwr_core::JobQuery {
                    state,
                    offset,
                    limit: 100,
                })
                .await
                .expect("jobs");
            assert!(!page.is_empty());
        }
        let after = server_clock(&mut conn).await;
        let which = state.map_or("all", dwr_core::JobState::as_str);
        println!(
            "list {which:<9} offset {offset:>7}: {:.0} µs server CPU per page of 100 ({:.1} ms wall)",
            (after.0 - before.0) * 1e6 / PAGES as f64,
            t.elapsed().as_secs_f64() * 1e3 / PAGES as f64
        );
    }
    store.purge_finished(Duration::ZERO).await.expect("purge");
    store
        .expire_executor(&executor, Expiry::Now, "done")
        .await
        .expect("expire");
}
