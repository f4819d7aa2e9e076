//! Output floods end to end: a job that prints hundreds of MiB with no newline, and one that
//! prints lines of 1 MiB, through a real `dwr executor`, Redis and Docker. The executor's
//! peak memory stays under 100 MiB (it never buffers a whole line: lines are cut at 16
//! KiB), Redis keeps each job's log to its cap, both jobs end normally, and the API
//! answers throughout.
//!
//! `DWR_FLOOD_MIB` sets the size of each flood (default 256 MiB, which already rules out a
//! buffered line by a factor of 2.5); `scripts/log-flood.sh` runs it at 1 GiB.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The default per-job log cap.
const CAP: u64 = 16 * 1024 * 1024;

fn flood_mib() -> u64 {
    std::env::var("DWR_FLOOD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The process's peak resident memory (`VmHWM`), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn redis_used_memory(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_output_keep_the_executor_and_redis_bounded() {
    let Some(mut c) = Cluster::serial().await else {
        return;
    };
    let mib = flood_mib();
    c.start_scheduler().await;
    let exec = c.start_executor("flood", "2", "2048").await;
    let pid = c.executor_proc(&exec).child.as_ref().expect("running").id();
    let redis_before = redis_used_memory(c.redis.port).await;

    // One 1 MiB block of spaces, printed `mib` times: without a newline, then as lines.
    let script = |end: &str| {
        format!(
            "s=$(printf '%1048576s' ''); i=0; while [ $i -lt {mib} ]; do printf '%s{end}' \"$s\"; i=$((i+1)); done"
        )
    };
    let no_newline = c.submit(job(&["sh", "-c", &script("")], 0.5, 0.25)).await;
    let lines = c
        .submit(job(&["sh", "-c", &script("\\n")], 0.5, 0.25))
        .await;

    // The API answers while both floods go on.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut done = 0;
    while done < 2 {
        let asked = Instant::now();
        let health = c
            .http
            .get(c.url("/health"))
            .send()
            .await
            .expect("the API answers");
        assert!(health.status().is_success());
        slowest = slowest.max(asked.elapsed());
        done = 0;
        for id in [&no_newline, &lines] {
            let job = c.get(&format!("/jobs/{id}")).await;
            let status = job["status"].as_str().unwrap_or_default().to_owned();
            assert!(
                !["failed", "aborted"].contains(&status.as_str()),
                "a flood ended {status}: {job}"
            );
            done += usize::from(status == "succeeded");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the floods did not end within 10 minutes; logs in {}",
            c.logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    let peak = peak_rss_mib(pid);
    let grown = redis_used_memory(c.redis.port)
        .await
        .saturating_sub(redis_before);
    println!(
        "two floods of {mib} MiB: {:.1} s; executor peak RSS {peak:.1} MiB; Redis +{:.1} MiB; \
         slowest /health {:.0} ms",
        took.as_secs_f64(),
        grown as f64 / 1048576.0,
        slowest.as_secs_f64() * 1000.0
    );
    assert!(
        peak > 0.0 && peak < 100.0,
        "executor peak RSS {peak:.1} MiB"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "/health took {slowest:?} during the floods"
    );
    // Each log holds its cap (plus Redis's per-line overhead, at most a third for 16 KiB
    // lines) and its marker, not the flood.
    assert!(
        grown < 2 * (CAP + CAP / 3) + 8 * 1024 * 1024,
        "Redis grew by {grown} bytes for two logs capped at {CAP}"
    );
    for id in [&no_newline, &lines] {
        let log = c.redis.lrange(&format!("job_logs:{id}")).await;
        let marker = log.last().expect("a log");
        assert!(
            marker.starts_with(&format!("[dwr] log cap of {CAP} bytes reached")),
            "{}",
            &marker[..marker.len().min(200)]
        );
        let kept: usize = log[..log.len() - 1].iter().map(String::len).sum();
        assert!(
            kept as u64 <= CAP && kept as u64 > CAP - 1024 * 1024,
            "{kept}"
        );
        assert!(
            log[..log.len() - 1].iter().all(|l| l.len() <= 16 * 1024),
            "a stored line is longer than 16 KiB"
        );
    }
}
