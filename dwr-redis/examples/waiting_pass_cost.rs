//! What a scheduling pass's read of the queue costs while many jobs wait that do not fit:
//! submits `--jobs` jobs (no executor registers, so none is placed), then reads the queue
//! as a pass does (`pending_for_placement`, up to 10,000 jobs) `--passes` times, and prints
//! the server's main-thread CPU (`INFO cpu`) and the wall time of the first read and of the
//! later ones (median), and how many job hashes each read.
//!
//! ```text
//! redis-server --port 6391 --save "" --appendonly no &
//! cargo run --release -p dwr-redis --example waiting_pass_cost -- redis://127.0.0.1:6391 10000 9
//! ```

use std::time::Instant;

use dwr_core::{Job, JobId, JobSpec, JobStore, Timestamp};
use dwr_redis::{RedisConfig, RedisJobStore};
use futures::future::join_all;

/// The server's main-thread CPU seconds so far.
async fn server_cpu(store: &RedisJobStore) -> f64 {
    store.server_cpu_seconds().await.expect("INFO cpu")
}

/// The job hashes read so far (`HGETALL`, `HMGET`, inside scripts too).
async fn hash_reads(store: &RedisJobStore) -> u64 {
    let stats = store.command_stats().await.expect("INFO commandstats");
    ["hgetall", "hmget"]
        .iter()
        .filter_map(|name| stats.calls.get(*name))
        .sum()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let jobs: usize = args.next().map_or(10_000, |n| n.parse().expect("jobs"));
    let passes: usize = args.next().map_or(9, |n| n.parse().expect("passes"));
    let mut config = RedisConfig {
        url: Some(url),
        ..RedisConfig::default()
    };
    config.key_prefix = format!("waiting-{}:", std::process::id());
    let store = RedisJobStore::connect(config).await.expect("connect");
    let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 100, 16);
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(256) {
        join_all(
            chunk
                .iter()
                .map(|_| store.submit(Job::new(JobId::new(), spec.clone(), Timestamp::now()))),
        )
        .await
        .into_iter()
        .for_each(|r| {
            r.expect("submit");
        });
    }

    println!("read     jobs   hashes read   server CPU ms   wall ms");
    let mut later = Vec::new();
    for pass in 0..passes {
        let (cpu, reads, t) = (
            server_cpu(&store).await,
            hash_reads(&store).await,
            Instant::now(),
        );
        let queued = store.pending_for_placement(10_000).await.expect("read");
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let reads = hash_reads(&store).await - reads;
        let cpu = (server_cpu(&store).await - cpu) * 1e3;
        let name = if pass == 0 { "first" } else { "later" };
        println!(
            "{name:<6} {:>6} {reads:>13} {cpu:>15.1} {wall:>9.1}",
            queued.len()
        );
        if pass > 0 {
            later.push((cpu, wall));
        }
    }
    if !later.is_empty() {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "median of the later reads: {:.1} ms server CPU, {:.1} ms wall",
            median(later.iter().map(|l| l.0).collect()),
            median(later.iter().map(|l| l.1).collect())
        );
    }
    // Leave nothing behind: the jobs are aborted, then purged.
    let ids: Vec<JobId> = store
        .pending_jobs(jobs)
        .await
        .expect("pending")
        .iter()
        .map(|j| j.id)
        .collect();
    for chunk in ids.chunks(256) {
        join_all(
            chunk
                .iter()
                .map(|id| store.request_abort(*id, dwr_core::AbortCause::User)),
        )
        .await;
    }
    store
        .purge_finished(std::time::Duration::ZERO)
        .await
        .expect("purge");
}
