//! Redis failover under load, with real processes on loopback: a primary, a replica and
//! three `redis-sentinel`s, and two `dwr dev` processes (each a scheduler, an API and an
//! executor with the fake runtime) that find the primary through the Sentinels and wait for
//! the replica on every state change (`DWR_REDIS_WAIT_REPLICAS=1`). The primary is killed
//! with SIGKILL in the middle of 200 jobs: every job must end, none may start twice, and no
//! executor may be over-allocated.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, job, Proc};
use serde_json::Value;

const MASTER: &str = "dwrtest";
const JOBS: usize = 200;

fn redis_server_installed() -> bool {
    let installed = common::succeeds("redis-server", &["--version"]);
    let required = std::env::var("DWR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    assert!(
        installed || !required,
        "redis-server is not installed but DWR_REQUIRE_SERVICES=1 (run scripts/provision.sh)"
    );
    if !installed {
        eprintln!("skipping: redis-server is not installed; run scripts/provision.sh");
    }
    installed
}

/// A `redis-server` (or a Sentinel) on `port`, with its files in `dir`.
fn redis(name: &str, port: u16, dir: &Path, args: &[&str]) -> Proc {
    let out = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new("redis-server")
        .args(args)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(dir)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let proc = Proc::new(name, child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    cmd.query(&mut conn)
}

/// Waits until `check` holds, or panics naming `what`.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn primary_port(sentinel: u16) -> Option<u16> {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER);
    query::<Option<(String, u16)>>(sentinel, &cmd)
        .ok()
        .flatten()
        .map(|(_, port)| port)
}

struct Dev {
    api: String,
    logs: PathBuf,
    proc: Proc,
}

fn start_dev(name: &str, sentinels: &str, dir: &Path) -> Dev {
    let port = free_port();
    let logs = dir.join(name);
    std::fs::create_dir_all(&logs).unwrap();
    let stderr = std::fs::File::create(logs.join("stderr.txt")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dwr"))
        .args(["dev", "--fake-runtime"])
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env("REDIS_SENTINELS", sentinels)
        .env("REDIS_SENTINEL_MASTER", MASTER)
        .env("DWR_REDIS_WAIT_REPLICAS", "1")
        .env("SCHEDULER_API_HOST", "127.0.0.1")
        .env("SCHEDULER_API_PORT", port.to_string())
        .env("EXECUTOR_ID", name)
        .env("DWR_EXECUTOR_CPUS", "4")
        .env("DWR_EXECUTOR_MEMORY_MB", "8192")
        // A lease (3 intervals) well past the failover's few seconds.
        .env("HEARTBEAT_INTERVAL", "5")
        .env("JOB_POLL_INTERVAL", "1")
        .env("DWR_LOG_DIR", &logs)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("dwr dev starts");
    Dev {
        api: format!("http://127.0.0.1:{port}"),
        logs,
        proc: Proc::new(name, child),
    }
}

/// Submits `body` under `key` until an API accepts it (through the outage, the same key
/// makes a retried submit return the job the first one created).
async fn submit(http: &reqwest::Client, apis: &[&str], key: &str, body: &Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0usize;
    loop {
        let api = apis[attempt % apis.len()];
        attempt += 1;
        let sent = http
            .post(format!("{api}/jobs"))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        if let Ok(response) = sent {
            if response.status().is_success() {
                let job: Value = response.json().await.unwrap();
                return job["job_id"].as_str().unwrap().to_owned();
            }
            assert!(
                response.status().is_server_error(),
                "submit refused: {}",
                response.status()
            );
        }
        assert!(Instant::now() < deadline, "no API accepted job {key}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn job_state(http: &reqwest::Client, api: &str, id: &str) -> Option<Value> {
    let response = http.get(format!("{api}/jobs/{id}")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// How many times each job's container started, from every process's log.
fn starts(devs: &[Dev]) -> HashMap<String, usize> {
    let mut starts = HashMap::new();
    for dev in devs {
        let text = std::fs::read_to_string(dev.logs.join("dev.log")).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("container started")) {
            if let Some(id) = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("job="))
            {
                *starts.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_mid_run_loses_no_job_and_runs_none_twice() {
    if !redis_server_installed() {
        return;
    }
    // Kept when the test fails, for its logs; removed at the end otherwise.
    let root = tempfile::tempdir().unwrap().keep();
    eprintln!("failover test files: {}", root.display());
    let (primary_port_0, replica_port) = (free_port(), free_port());
    let plain = ["--save", "", "--appendonly", "no"];
    let mut primary = redis("primary", primary_port_0, &root, &plain);
    let replica_of = primary_port_0.to_string();
    let _replica = redis(
        "replica",
        replica_port,
        &root,
        &[&plain[..], &["--replicaof", "127.0.0.1", &replica_of]].concat(),
    );
    wait_until("the replica is in sync", Duration::from_secs(10), || {
        let info: String =
            query(replica_port, redis::cmd("INFO").arg("replication")).unwrap_or_default();
        info.contains("master_link_status:up")
    });
    let mut sentinel_ports = Vec::new();
    let mut sentinels = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let sdir = root.join(format!("sentinel{i}"));
        std::fs::create_dir_all(&sdir).unwrap();
        let conf = sdir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {MASTER} 127.0.0.1 {primary_port_0} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 4000\n\
                 sentinel parallel-syncs {MASTER} 1\n"
            ),
        )
        .unwrap();
        let conf = conf.to_string_lossy().into_owned();
        sentinels.push(redis(
            &format!("sentinel{i}"),
            port,
            &sdir,
            &[conf.as_str(), "--sentinel"],
        ));
        sentinel_ports.push(port);
    }
    for &port in &sentinel_ports {
        wait_until(
            "every Sentinel knows the replica and the other two",
            Duration::from_secs(30),
            || {
                let others: redis::RedisResult<Vec<redis::Value>> =
                    query(port, redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER));
                let replicas: redis::RedisResult<Vec<redis::Value>> =
                    query(port, redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER));
                others.is_ok_and(|o| o.len() == 2) && replicas.is_ok_and(|r| r.len() == 1)
            },
        );
    }
    let sentinel_list = sentinel_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let devs = [
        start_dev("dev-a", &sentinel_list, &root),
        start_dev("dev-b", &sentinel_list, &root),
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for dev in &devs {
        wait_until("the API answers", Duration::from_secs(20), || {
            std::net::TcpStream::connect(dev.api.trim_start_matches("http://")).is_ok()
        });
    }
    let apis: Vec<&str> = devs.iter().map(|d| d.api.as_str()).collect();

    let run = common::uuid_like();
    let body = job(&["fake", "run=300ms", "print=ran"], 0.5, 0.25);
    let mut ids = Vec::with_capacity(JOBS);
    let mut promotion = None;
    for n in 0..JOBS {
        if n == JOBS / 2 {
            primary.kill9();
            let watched = sentinel_ports[0];
            let root = root.clone();
            promotion = Some(std::thread::spawn(move || {
                let killed = Instant::now();
                wait_until(
                    "the Sentinels promote the replica",
                    Duration::from_secs(30),
                    || primary_port(watched) == Some(replica_port),
                );
                let promoted = killed.elapsed();
                // As its supervisor would, restart the failed server, as a replica of the
                // new primary: until the new primary has a replica, no state change can be
                // confirmed (DWR_REDIS_WAIT_REPLICAS=1) and the APIs answer 503.
                let replica_of = replica_port.to_string();
                let restarted = redis(
                    "old-primary",
                    primary_port_0,
                    &root,
                    &[&plain[..], &["--replicaof", "127.0.0.1", &replica_of]].concat(),
                );
                (promoted, killed.elapsed(), restarted)
            }));
        }
        let key = format!("failover-{run}-{n}");
        let turn = [apis[n % 2], apis[(n + 1) % 2]];
        ids.push(submit(&http, &turn, &key, &body).await);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let (promoted_after, restarted_after, _old_primary) =
        promotion.unwrap().join().expect("the replica is promoted");

    // Every job reaches a terminal state.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finished: HashMap<String, Value> = HashMap::new();
    while finished.len() < ids.len() {
        for (i, id) in ids.iter().enumerate() {
            if finished.contains_key(id) {
                continue;
            }
            if let Some(job) = job_state(&http, apis[i % 2], id).await {
                let status = job["status"].as_str().unwrap_or("").to_owned();
                if matches!(status.as_str(), "succeeded" | "failed" | "aborted") {
                    finished.insert(id.clone(), job);
                }
            }
        }
        if Instant::now() > deadline {
            common::print_log_tails(&root);
            panic!(
                "{} of {} jobs are not terminal 120 s after the last submit",
                ids.len() - finished.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), JOBS, "every submit made its own job");
    let not_succeeded: Vec<String> = finished
        .values()
        .filter(|j| j["status"] != "succeeded")
        .map(|j| format!("{} {} {}", j["job_id"], j["status"], j["reason"]))
        .collect();
    assert!(
        not_succeeded.is_empty(),
        "jobs that did not succeed: {not_succeeded:?}"
    );

    // None ran twice: each job's container started exactly once across both processes.
    let starts = starts(&devs);
    let wrong: Vec<(&String, usize)> = ids
        .iter()
        .map(|id| (id, starts.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(wrong.is_empty(), "jobs not started exactly once: {wrong:?}");

    // Nothing over-allocated, and every allocation released, on the new primary.
    let config = dwr_redis::RedisConfig {
        sentinels: sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect(),
        sentinel_master: Some(MASTER.to_owned()),
        ..dwr_redis::RedisConfig::default()
    };
    let store = dwr_redis::RedisJobStore::connect(config).await.unwrap();
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
    let executors: Value = http
        .get(format!("{}/executors", devs[0].api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let executors = executors["executors"]
        .as_array()
        .expect("a list of executors");
    assert_eq!(executors.len(), 2, "{executors:?}");
    for executor in executors {
        assert!(executor["alive"] == true, "{executor}");
        assert_eq!(
            executor["available_cpu_cores"], executor["total_cpu_cores"],
            "all released: {executor}"
        );
    }

    // Both processes followed the primary, and are still up.
    for dev in &devs {
        let log = std::fs::read_to_string(dev.logs.join("dev.log")).unwrap_or_default();
        assert!(
            log.contains("the Redis primary moved; following it"),
            "{} did not log the switch",
            dev.proc.name
        );
    }
    for dev in devs {
        let mut proc = dev.proc;
        assert!(
            proc.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "{} exited",
            proc.name
        );
    }
    eprintln!(
        "failover: the replica was promoted {promoted_after:?} after the kill, the old \
         primary restarted as a replica {restarted_after:?} after it; {JOBS} jobs \
         succeeded, each started once"
    );
    drop(sentinels);
    let _ = std::fs::remove_dir_all(&root);
}
