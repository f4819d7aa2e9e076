//! The load tool and the scale simulation, run small: their figures must add up.

mod common;

use dwr_server::bench::{
    run_bench, run_simulation, run_submit_bench, BenchArgs, RuntimeKind, SimulateArgs, StoreKind,
};

/// `dwr bench` over the in-memory store and the fake runtime: two executors, 16 jobs in
/// flight, `jobs` jobs of `job_ms` each.
fn in_memory(jobs: usize, job_ms: u64, retention_secs: Option<f64>) -> BenchArgs {
    BenchArgs {
        store: StoreKind::Memory,
        redis_url: String::new(),
        wait_replicas: 0,
        runtime: RuntimeKind::Fake,
        image: String::new(),
        executors: 2,
        jobs,
        concurrency: 16,
        job_ms,
        retention_secs,
        arrays: None,
        after_phase: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_submit_mode_stores_the_jobs_both_ways_and_compares() {
    let args = in_memory(450, 0, None);
    let report = run_submit_bench(&args, 100).await.unwrap();
    assert_eq!(
        (report.jobs, report.array_size, report.concurrency),
        (450, 100, 16)
    );
    assert!(report.one_by_one_jobs_per_second > 0.0 && report.array_jobs_per_second > 0.0);
    let ratio = report.array_jobs_per_second / report.one_by_one_jobs_per_second;
    assert!((report.ratio - ratio).abs() < 0.01, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_runs_every_job_to_its_end_and_reports_consistent_figures() {
    let report = run_bench(in_memory(300, 2, None)).await.unwrap();
    assert_eq!((report.jobs, report.succeeded), (300, 300));
    for p in [report.submit_to_running_ms, report.submit_to_terminal_ms] {
        assert!(
            p[0] <= p[1] && p[1] <= p[2],
            "percentiles out of order: {p:?}"
        );
    }
    assert!(
        report.submit_to_terminal_ms[0] >= report.submit_to_running_ms[0],
        "a job ends after it starts"
    );
    assert!(report.jobs_per_second > 0.0 && report.wall_seconds > 0.0);
    assert!(report.rss_peak_mib >= report.rss_start_mib);
    assert!(report.redis_commands_per_job.is_none() && report.docker_overhead_p50_ms.is_none());
    assert!(report.redis_scripts.is_none());
    assert!(report.baseline_evals_per_second.is_none() && report.jobs_per_baseline_eval.is_none());
    assert!(
        report.unpipelined_baseline_evals_per_second.is_none()
            && report.unpipelined_evals_per_job.is_none()
    );
}

/// Over a real Redis: both baselines are measured, and what a job costs in each is its
/// Redis CPU over the baseline call's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_redis_the_load_tool_measures_a_job_against_both_baselines() {
    if !common::services_available() {
        return;
    }
    let redis = common::Redis::start();
    let report = run_bench(BenchArgs {
        store: StoreKind::Redis,
        redis_url: format!("redis://127.0.0.1:{}", redis.port),
        ..in_memory(300, 0, None)
    })
    .await
    .unwrap();
    assert_eq!((report.jobs, report.succeeded), (300, 300));
    let job = report.redis_cpu_us_per_job.expect("CPU per job");
    let pairs = [
        (
            report.baseline_evals_per_second,
            report.redis_cpu_us_per_baseline_eval,
            report.baseline_evals_per_job,
            report.jobs_per_baseline_eval,
        ),
        (
            report.unpipelined_baseline_evals_per_second,
            report.redis_cpu_us_per_unpipelined_eval,
            report.unpipelined_evals_per_job,
            report.jobs_per_unpipelined_eval,
        ),
    ];
    for (rate, call, per_job, jobs_per) in pairs {
        let (rate, call, per_job, jobs_per) = (
            rate.unwrap(),
            call.unwrap(),
            per_job.unwrap(),
            jobs_per.unwrap(),
        );
        assert!(rate > 0.0 && call > 0.0 && job > 0.0, "{report:?}");
        assert!((per_job - job / call).abs() < 1e-9, "{report:?}");
        assert!(
            (jobs_per - report.jobs_per_second / rate).abs() < 1e-6 * jobs_per.max(1.0),
            "{report:?}"
        );
    }
}

/// `--after-phase` runs its command at the end of each phase, named, in order; a command
/// that fails fails the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_after_each_phase_and_its_failure_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("phases");
    let report = run_bench(BenchArgs {
        after_phase: Some(format!("echo \"$1\" >> '{}'", log.display())),
        ..in_memory(50, 0, None)
    })
    .await
    .unwrap();
    assert_eq!(report.succeeded, 50);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "setup\nbaseline\nunpipelined_baseline\njobs\n"
    );
    let failed = run_bench(BenchArgs {
        after_phase: Some("exit 3".to_owned()),
        ..in_memory(50, 0, None)
    })
    .await;
    assert!(
        matches!(&failed, Err(e) if e.to_string().contains("after phase setup")),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_short_retention_the_run_ends_with_few_jobs_kept() {
    let report = run_bench(in_memory(3000, 5, Some(0.2))).await.unwrap();
    // Every job ran to its end (the closed loop counts the deleted ones), and most of
    // them were deleted before the run ended: 3,000 jobs of 5 ms, 16 at a time, take a
    // second at the very least, five times the retention.
    assert_eq!(report.jobs, 3000);
    assert!(
        report.succeeded < 3000,
        "{} finished jobs still stored with a retention of 0.2 s",
        report.succeeded
    );
}

fn simulation(priorities: bool, queues: u32) -> SimulateArgs {
    SimulateArgs {
        executors: 20,
        jobs: 500,
        steps: 2,
        max_jobs_per_pass: 10_000,
        priorities,
        queues,
        store: StoreKind::Memory,
        redis_url: String::new(),
        heartbeat_seconds: 0.0,
        heartbeat_interval: 30,
    }
}

#[tokio::test]
async fn the_simulation_fills_the_cluster_then_queues() {
    for (priorities, queues) in [(false, 1), (true, 1), (true, 3)] {
        let report = run_simulation(simulation(priorities, queues))
            .await
            .unwrap();
        the_cluster_fills_then_queues(&report.steps);
        assert!(report.heartbeats.is_none());
        assert!(report.executors_read_ms >= 0.0 && report.pass_at_rest_ms > 0.0);
    }
}

/// Over a real Redis: the same passes, the heartbeats' cost measured from real heartbeat
/// scripts, and nothing left behind under the run's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulation_over_redis_measures_heartbeats_and_leaves_nothing() {
    if !common::services_available() {
        return;
    }
    let redis = common::Redis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let report = run_simulation(SimulateArgs {
        store: StoreKind::Redis,
        redis_url: url.clone(),
        heartbeat_seconds: 0.5,
        ..simulation(true, 3)
    })
    .await
    .unwrap();
    the_cluster_fills_then_queues(&report.steps);
    let beats = report.heartbeats.expect("heartbeats measured over Redis");
    assert!(beats.sent > 20 && beats.per_second > 0.0, "{beats:?}");
    assert!(beats.redis_cpu_us > 0.0, "{beats:?}");
    let share = beats.redis_cpu_us * 20.0 / 30.0 / 1e4;
    assert!(
        (beats.core_percent_at_interval - share).abs() < 1e-9,
        "{beats:?}"
    );
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 0, "the simulation left keys behind");
}

fn the_cluster_fills_then_queues(steps: &[dwr_server::bench::SimulationStep]) {
    assert_eq!(steps.len(), 2);
    // 20 executors × 4 cores hold 80 one-core jobs; the rest wait.
    assert_eq!(
        (steps[0].queued, steps[0].assigned, steps[0].placed),
        (250, 80, 80)
    );
    assert_eq!(
        (steps[1].queued, steps[1].assigned, steps[1].placed),
        (500, 80, 0)
    );
    assert_eq!(steps[1].pending, 420);
}
