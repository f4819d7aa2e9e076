//! End to end at the edges: lost executors, skewed clocks and a network partition, with the
//! real `dwr` binary, a real `redis-server` and the real Docker engine (see `common`).
//!
//! Every scheduler here runs at its defaults (a 30 s heartbeat setting and a 10 s tick), as
//! a new user leaves it; each executor registers its own `HEARTBEAT_INTERVAL=1`, so its
//! lease is 3 s whatever the scheduler was started with.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use common::*;

/// An executor's lease: three of its 1 s heartbeat intervals.
const LEASE: Duration = Duration::from_secs(3 * HEARTBEAT_SECS);

/// Polls `probe` every 50 ms until it holds; returns how long that took, or panics naming
/// `what` after `limit`.
async fn until(limit: Duration, what: &str, mut probe: impl AsyncProbe) -> Duration {
    let started = Instant::now();
    loop {
        if probe.holds().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A condition polled by [`until`].
trait AsyncProbe {
    async fn holds(&mut self) -> bool;
}

impl<F, Fut> AsyncProbe for F
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    async fn holds(&mut self) -> bool {
        self().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_under_a_default_scheduler_loses_its_jobs_within_4_s() {
    let Some(mut c) = Cluster::serial().await else {
        return;
    };
    c.start_scheduler_at_defaults().await;
    let (a, took) = c.lose_an_executor_running_a_job().await;
    // The executor's own lease (3 s), not the scheduler's 90 s nor its 10 s tick.
    assert!(took <= Duration::from_secs(4), "failed after {took:?}");
    assert!(!c.executor_alive(&a).await);
}

/// Executors whose clocks are five minutes behind and ahead (under `faketime`) are judged
/// by the store's clock: neither is expired while it heartbeats, both run jobs, and the one
/// ahead (whose own timestamps would keep it alive five minutes too long) is lost within its
/// lease once killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_with_clocks_five_minutes_off_are_judged_by_the_stores_clock() {
    let Some(mut c) = Cluster::serial().await else {
        return;
    };
    let lib = libfaketime();
    c.start_scheduler_at_defaults().await;
    // The library itself, not the `faketime` wrapper: that forks, and a kill -9 of it would
    // leave the executor running.
    let skewed = |offset| {
        [
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
    };
    let behind = c
        .start_executor_with("behind", "1", "512", &skewed("-300s"))
        .await;
    let ahead = c
        .start_executor_with("ahead", "1", "512", &skewed("+300s"))
        .await;
    // The executors' clocks really are off.
    let off = output_with_env("date", &["+%s"], &skewed("+300s"));
    let real = output("date", &["+%s"]);
    let diff = off.trim().parse::<i64>().unwrap() - real.trim().parse::<i64>().unwrap();
    assert!(
        (290..=310).contains(&diff),
        "libfaketime moved the clock by {diff} s"
    );

    // Twice the lease: an executor judged by its own clock would be gone (behind) by now.
    tokio::time::sleep(LEASE * 2).await;
    for id in [&behind, &ahead] {
        assert!(c.executor_alive(id).await, "{id} was expired");
    }
    let on_ahead = c
        .submit(job(&["sh", "-c", "echo started; sleep 600"], 1.0, 0.25))
        .await;
    let on_behind = c
        .submit(job(&["sh", "-c", "echo started; sleep 600"], 1.0, 0.25))
        .await;
    c.assert_one_on_each(
        [&on_ahead, &on_behind],
        [&ahead, &behind],
        "one job on each executor",
    )
    .await;
    // The times the store recorded are its own: not five minutes in the past or future.
    let job = c.get(&format!("/jobs/{on_ahead}")).await;
    let started = job["started_at"].as_str().unwrap().to_owned();
    let now = c.get("/stats").await["timestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(started <= now, "started_at {started} is after now {now}");

    // Kill the one ahead: lost within its lease, not five minutes later.
    let job_on_ahead = if c.get(&format!("/jobs/{on_ahead}")).await["executor_id"] == ahead.as_str()
    {
        on_ahead.clone()
    } else {
        on_behind.clone()
    };
    c.executor_proc(&ahead).kill9();
    let killed = Instant::now();
    c.wait_status(&job_on_ahead, "failed", Duration::from_secs(20))
        .await;
    assert!(
        killed.elapsed() <= Duration::from_secs(4),
        "lost after {:?}",
        killed.elapsed()
    );
    assert!(c.executor_alive(&behind).await, "the one behind stays");
}

/// How many times the job's log says `started`.
async fn started_lines(c: &Cluster, id: &str) -> usize {
    let log = c.get(&format!("/jobs/{id}/logs")).await;
    log["lines"]
        .as_array()
        .map_or(0, |lines| lines.iter().filter(|l| *l == "started").count())
}

/// The path of libfaketime (installed by `scripts/provision.sh`).
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists());
    match found {
        Some(path) => path.display().to_string(),
        None => {
            panic!("libfaketime is not installed (the faketime package); run scripts/provision.sh")
        }
    }
}

/// What `program` prints with `env` set.
fn output_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    std::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A TCP relay between one executor and Redis that the test can cut and restore.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(to_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let cut = cut.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        // Cut: the connection is dropped at once.
                        continue;
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to_port)).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(pipe);
                }
            })
        };
        Relay {
            port,
            cut,
            connections,
            accept,
        }
    }

    /// Drops every connection through the relay and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for pipe in self.connections.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A partition between one executor and Redis: its job leaves `running` within its lease
/// + 1 s and is retried on another executor (`max_retries: 1`), its container is stopped by
/// the executor itself within its lease; once the partition heals nothing has run twice
/// (each attempt once), the old attempt wrote nothing more, and no CPU or memory is held
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_executor_fences_itself_and_its_job_is_retried_elsewhere() {
    let Some(mut c) = Cluster::serial().await else {
        return;
    };
    c.start_scheduler_at_defaults().await;
    let relay = Relay::start(c.redis.port).await;
    let relay_port = relay.port.to_string();
    // "a" comes first by id: first fit places there while it is alive.
    let a = c
        .start_executor_with("a", "1", "512", &[("REDIS_PORT", &relay_port)])
        .await;
    let b = c.start_executor("b", "2", "1024").await;
    let mut body = job(&["sh", "-c", "echo started; sleep 600"], 1.0, 0.25);
    body["max_retries"] = 1.into();
    body["retry_backoff_seconds"] = 0.into();
    body["retry_on"] = serde_json::json!(["executor_lost"]);
    let lost = c.submit(body).await;
    let running = c
        .wait_status(&lost, "running", Duration::from_secs(30))
        .await;
    assert_eq!(running["executor_id"], a.as_str());
    assert_eq!(running["attempt"], 1);
    // Running is recorded once the store confirmed the attempt, just before the start.
    until(Duration::from_secs(10), "its container running", || async {
        executor_runs_a_container(&a)
    })
    .await;
    until(
        Duration::from_secs(10),
        "its first line in the log",
        || async { started_lines(&c, &lost).await == 1 },
    )
    .await;

    relay.cut();
    let cut = Instant::now();
    let requeued = c
        .wait_job(&lost, Duration::from_secs(20), |j| {
            j["attempts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let left_running = cut.elapsed();
    assert!(
        left_running <= LEASE + Duration::from_secs(1),
        "left running after {left_running:?}"
    );
    let first = &requeued["attempts"][0];
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["executor_id"], a.as_str());
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("executor lost: {a}")),
        "{requeued}"
    );
    // The executor, cut off from Redis, stops the container itself: within its lease, plus
    // the 1 s stop grace (`sleep` ignores SIGTERM) and a little slack for the engine.
    until(LEASE + Duration::from_secs(3), "the self-fence", || async {
        !executor_runs_a_container(&a)
    })
    .await;
    // Retried elsewhere, as attempt 2.
    let retried = c
        .wait_job(&lost, Duration::from_secs(30), |j| {
            j["status"] == "running" && j["attempt"] == 2
        })
        .await;
    assert_eq!(retried["executor_id"], b.as_str());
    // Other work goes on meanwhile.
    let done = c
        .run_to_success(job(&["echo", "elsewhere"], 1.0, 0.25))
        .await;
    assert_eq!(done["executor_id"], b.as_str());

    relay.restore();
    until(Duration::from_secs(20), "the executor back", || async {
        c.executor_alive(&a).await
    })
    .await;
    // It takes work again.
    let back = c.run_to_success(job(&["echo", "back"], 1.0, 0.25)).await;
    assert_eq!(back["executor_id"], a.as_str());

    // Each attempt ran once, and the old one wrote nothing after it was given up.
    until(
        Duration::from_secs(10),
        "attempt 2's first line",
        || async { started_lines(&c, &lost).await >= 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(started_lines(&c, &lost).await, 2, "one line per attempt");
    let now = c.get(&format!("/jobs/{lost}")).await;
    assert_eq!(
        (&now["status"], &now["attempt"], &now["executor_id"]),
        (&"running".into(), &2.into(), &b.as_str().into()),
        "{now}"
    );
    assert_eq!(now["attempts"].as_array().unwrap().len(), 1);
    assert!(!executor_runs_a_container(&a), "nothing of it runs on a");

    // Nothing is held twice: once the job is aborted, both executors are free.
    assert!(c.abort(&lost).await.status().is_success());
    c.wait_status(&lost, "aborted", Duration::from_secs(20))
        .await;
    for id in [&a, &b] {
        let e = c.executor(id).await.unwrap();
        assert_eq!(
            e["available_cpu_cores"], e["total_cpu_cores"],
            "{id} holds CPU with nothing running: {e}"
        );
        assert_eq!(
            e["available_memory_gb"], e["total_memory_gb"],
            "{id} holds memory with nothing running: {e}"
        );
    }
}

/// Whether a container of executor `id` is running.
fn executor_runs_a_container(id: &str) -> bool {
    !output(
        "docker",
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=dwr.executor={id}"),
            "--filter",
            "status=running",
        ],
    )
    .trim()
    .is_empty()
}
