//! End to end: the real `dwr` binary as separate processes (one scheduler, executors with
//! distinct `EXECUTOR_ID`s) over a real `redis-server` and the real Docker engine.
//!
//! Needs `redis-server`, a Docker engine and the offline image (`DWR_TEST_IMAGE`, default
//! `dwr-test/busybox:latest`; `scripts/provision.sh` makes all three). Without them the tests
//! print a note and pass, unless `DWR_REQUIRE_SERVICES=1`, when they fail. The tests run one
//! at a time (they share two CPU cores and the Docker engine), and guards kill every process
//! and remove every container they started, also when a test fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Runs the tests of this file one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HEARTBEAT_SECS: u64 = 1;

fn test_image() -> String {
    std::env::var("DWR_TEST_IMAGE").unwrap_or_else(|_| "dwr-test/busybox:latest".to_owned())
}

/// Whether the services are here; when they are not, fails under `DWR_REQUIRE_SERVICES=1`
/// and otherwise prints why the test is skipped.
fn services_available() -> bool {
    let required = std::env::var("DWR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    let missing = if !succeeds("redis-server", &["--version"]) {
        Some("redis-server is not installed".to_owned())
    } else if !succeeds("docker", &["version", "--format", "{{.Server.Version}}"]) {
        Some("the Docker engine is not reachable".to_owned())
    } else if !succeeds("docker", &["image", "inspect", &test_image()]) {
        Some(format!("the image {} is missing", test_image()))
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if required => panic!("{why} (DWR_REQUIRE_SERVICES=1); run scripts/provision.sh"),
        Some(why) => {
            eprintln!("skipping: {why}; run scripts/provision.sh (set DWR_REQUIRE_SERVICES=1 to fail instead)");
            false
        }
    }
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed (SIGKILL) and reaped on drop.
struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit; returns whether it exited 0.
    fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{} did not exit within {within:?} of SIGTERM", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A private redis-server on a free loopback port.
struct Redis {
    port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            port,
            _proc: Proc {
                name: "redis-server".into(),
                child: Some(child),
            },
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    async fn lrange(&self, key: &str) -> Vec<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", self.port)).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// A scheduler, executors, their Redis, and the containers they start; all gone on drop.
struct Cluster {
    redis: Redis,
    api_port: u16,
    prefix: String,
    logs: tempfile::TempDir,
    scheduler: Option<Proc>,
    executors: Vec<(String, Proc)>,
    executor_ids: Vec<String>,
    http: reqwest::Client,
}

impl Cluster {
    fn new() -> Cluster {
        let tag = uuid_like();
        Cluster {
            redis: Redis::start(),
            api_port: free_port(),
            prefix: format!("dwr-e2e-{tag}:"),
            logs: tempfile::tempdir().unwrap(),
            scheduler: None,
            executors: Vec::new(),
            executor_ids: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    fn command(&self, args: &[&str], log_name: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dwr"));
        cmd.args(args);
        for var in [
            "REDIS_URL",
            "REDIS_PASSWORD",
            "REDIS_DB",
            "DWR_API_TOKEN",
            "DWR_EXECUTOR_CPUS",
            "DWR_EXECUTOR_MEMORY_MB",
            "EXECUTOR_ID",
            "DWR_VOLUME_ALLOW",
        ] {
            cmd.env_remove(var);
        }
        let log_dir = self.logs.path().join(log_name);
        std::fs::create_dir_all(&log_dir).unwrap();
        let out = std::fs::File::create(log_dir.join("stdout.txt")).unwrap();
        let err = std::fs::File::create(log_dir.join("stderr.txt")).unwrap();
        cmd.env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", self.redis.port.to_string())
            .env("DWR_REDIS_PREFIX", &self.prefix)
            .env("HEARTBEAT_INTERVAL", HEARTBEAT_SECS.to_string())
            .env("JOB_POLL_INTERVAL", "1")
            .env("SCHEDULER_API_HOST", "127.0.0.1")
            .env("SCHEDULER_API_PORT", self.api_port.to_string())
            .env("EXECUTOR_IP", "127.0.0.1")
            .env("DWR_STOP_GRACE", "1")
            .env("DWR_LOG_DIR", &log_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        cmd
    }

    async fn start_scheduler(&mut self) {
        let child = self
            .command(&["scheduler"], "scheduler")
            .spawn()
            .expect("dwr scheduler starts");
        self.scheduler = Some(Proc {
            name: "dwr scheduler".into(),
            child: Some(child),
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(self.url("/health")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "scheduler not healthy within 20 s; see {}",
                self.logs.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts an executor with a unique id (returned) offering `cpus` cores and `memory_mb`.
    async fn start_executor(&mut self, name: &str, cpus: &str, memory_mb: &str) -> String {
        let id = format!("{}{name}", self.prefix.trim_end_matches(':'));
        let child = self
            .command(&["executor"], &id)
            .env("EXECUTOR_ID", &id)
            .env("DWR_EXECUTOR_CPUS", cpus)
            .env("DWR_EXECUTOR_MEMORY_MB", memory_mb)
            .spawn()
            .expect("dwr executor starts");
        self.executors.push((
            id.clone(),
            Proc {
                name: format!("dwr executor {id}"),
                child: Some(child),
            },
        ));
        self.executor_ids.push(id.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ex = self.get("/executors").await;
            let alive = ex["executors"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["id"] == id.as_str() && e["alive"] == true);
            if alive {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "executor {id} not registered within 20 s; see {}",
                self.logs.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn executor_proc(&mut self, id: &str) -> &mut Proc {
        &mut self
            .executors
            .iter_mut()
            .find(|(i, _)| i == id)
            .expect("known executor")
            .1
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        r.json().await.expect("JSON")
    }

    async fn submit(&self, body: Value) -> String {
        let r = self
            .http
            .post(self.url("/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        v["job_id"].as_str().unwrap().to_owned()
    }

    /// Polls the job until `done` holds for it, or panics after `within`.
    async fn wait_job(&self, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let job = self.get(&format!("/jobs/{id}")).await;
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not as expected within {within:?}: {job}; logs in {}",
                self.logs.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        self.wait_job(id, within, |j| j["status"] == status).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(self.logs.path());
        }
        for (_, proc) in &mut self.executors {
            proc.kill9();
        }
        if let Some(s) = &mut self.scheduler {
            s.kill9();
        }
        for id in &self.executor_ids {
            remove_containers(&format!("dwr.executor={id}"));
        }
    }
}

fn remove_containers(label: &str) {
    let ids = output(
        "docker",
        &["ps", "-aq", "--filter", &format!("label={label}")],
    );
    for id in ids.split_whitespace() {
        let _ = Command::new("docker")
            .args(["rm", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn containers_of_job(id: &str) -> Vec<String> {
    output(
        "docker",
        &["ps", "-aq", "--filter", &format!("label=dwr.job_id={id}")],
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// A short unique tag (time and pid) for keys and ids.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

fn job(command: &[&str], cpu_cores: f64, memory_gb: f64) -> Value {
    json!({
        "docker_image": test_image(),
        "command": command,
        "cpu_cores": cpu_cores,
        "memory_gb": memory_gb,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_overflow_gpu_and_bad_input() {
    let _serial = SERIAL.lock().await;
    if !services_available() {
        return;
    }
    let mut c = Cluster::new();
    c.start_scheduler().await;
    let a = c.start_executor("a", "1", "512").await;
    let b = c.start_executor("b", "1", "512").await;

    // Hello world: succeeds, its output is in Redis at job_logs:{id}, its container is gone.
    let hello = c
        .submit(job(&["echo", "hello from dwr"], 0.25, 0.125))
        .await;
    let done = c
        .wait_status(&hello, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["executor_ip"], "127.0.0.1");
    let lines = c.redis.lrange(&format!("job_logs:{hello}")).await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("hello from dwr"),
        "{lines:?}"
    );
    // The agent records the outcome first and then removes the container.
    let finished = Instant::now();
    while !containers_of_job(&hello).is_empty() {
        assert!(
            finished.elapsed() < Duration::from_secs(10),
            "container of {hello} still there 10 s after it ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two one-core jobs on two one-core executors: one each.
    let first = c.submit(job(&["sleep", "30"], 1.0, 0.25)).await;
    let second = c.submit(job(&["sleep", "30"], 1.0, 0.25)).await;
    let mut placed = Vec::new();
    for id in [&first, &second] {
        let j = c.wait_status(id, "running", Duration::from_secs(30)).await;
        placed.push(j["executor_id"].as_str().unwrap().to_owned());
    }
    placed.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(placed, both, "the overflow went to the other executor");
    // A third waits, saying why.
    let third = c.submit(job(&["true"], 1.0, 0.25)).await;
    let pending = c
        .wait_job(&third, Duration::from_secs(10), |j| {
            j["pending_reason"]
                .as_str()
                .is_some_and(|r| r.contains("cpu"))
        })
        .await;
    assert_eq!(pending["status"], "pending");
    for id in [&first, &second, &third] {
        c.http
            .delete(c.url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap();
    }

    // A GPU job on a cluster without GPUs fails fast, saying so.
    let mut gpu = job(&["true"], 0.5, 0.25);
    gpu["gpu_type"] = json!("any");
    let gpu = c.submit(gpu).await;
    let failed = c.wait_status(&gpu, "failed", Duration::from_secs(10)).await;
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no executor has GPUs"), "{reason}");

    // Bad input over real HTTP: a 4xx JSON error, nothing stored, the server unharmed.
    let before = c.get("/stats").await["queue"]["total"].as_u64().unwrap();
    let huge = format!(
        r#"{{"docker_image":"x","command":["{}"],"cpu_cores":1,"memory_gb":1}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let r = c
        .http
        .post(c.url("/jobs"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    // The server may answer 413 before reading the whole body, or close the connection.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    let r = c
        .http
        .post(c.url("/jobs"))
        .json(&json!({"docker_image": "x", "command": [], "cpu_cores": -1, "memory_gb": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let e: Value = r.json().await.unwrap();
    assert!(e["detail"].as_str().unwrap().contains("cpu_cores"), "{e}");
    let r = c.http.get(c.url("/jobs?limit=5000")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let after = c.get("/stats").await["queue"]["total"].as_u64().unwrap();
    assert_eq!(before, after, "bad requests stored nothing");
    assert_eq!(c.get("/health").await["status"], "healthy");

    // SIGTERM stops the services cleanly.
    assert!(
        c.executor_proc(&b).terminate(Duration::from_secs(15)),
        "executor exits 0"
    );
    let scheduler = c.scheduler.as_mut().unwrap();
    assert!(
        scheduler.terminate(Duration::from_secs(15)),
        "scheduler exits 0"
    );
    let log = std::fs::read_to_string(c.logs.path().join("scheduler/scheduler.log")).unwrap();
    assert!(
        log.contains("job submitted"),
        "scheduler.log has the log lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_of_a_running_job_stops_its_container() {
    let _serial = SERIAL.lock().await;
    if !services_available() {
        return;
    }
    let mut c = Cluster::new();
    c.start_scheduler().await;
    c.start_executor("a", "1", "512").await;
    let id = c.submit(job(&["sleep", "600"], 0.5, 0.125)).await;
    c.wait_status(&id, "running", Duration::from_secs(30)).await;
    assert_eq!(containers_of_job(&id).len(), 1, "its container runs");
    let r = c
        .http
        .delete(c.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let asked = Instant::now();
    c.wait_status(&id, "aborted", Duration::from_secs(5)).await;
    loop {
        if containers_of_job(&id).is_empty() {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "container of {id} still there 5 s after the abort"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c
        .http
        .delete(c.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "aborting a finished job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_fails_its_jobs_and_a_new_one_takes_work() {
    let _serial = SERIAL.lock().await;
    if !services_available() {
        return;
    }
    let mut c = Cluster::new();
    c.start_scheduler().await;
    let a = c.start_executor("a", "1", "512").await;
    let id = c.submit(job(&["sleep", "600"], 1.0, 0.25)).await;
    c.wait_status(&id, "running", Duration::from_secs(30)).await;

    c.executor_proc(&a).kill9();
    let killed = Instant::now();
    let failed = c.wait_status(&id, "failed", Duration::from_secs(20)).await;
    let took = killed.elapsed();
    assert_eq!(failed["reason"], "executor lost");
    // Three heartbeat intervals of TTL, one scheduler tick, and slack for a busy machine.
    assert!(
        took <= Duration::from_secs(3 * HEARTBEAT_SECS + 1 + 4),
        "failed after {took:?}"
    );
    // Its resources are released: the lost executor is gone from the cluster.
    let ex = c.get("/executors").await;
    assert!(
        !ex["executors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == a.as_str() && e["alive"] == true),
        "{ex}"
    );
    // The orphaned container of the dead executor is cleaned up by the guard.
    remove_containers(&format!("dwr.executor={a}"));

    let b = c.start_executor("b", "1", "512").await;
    let next = c.submit(job(&["echo", "after"], 1.0, 0.25)).await;
    let done = c
        .wait_status(&next, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(done["executor_id"], b.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_loses_nothing() {
    let _serial = SERIAL.lock().await;
    if !services_available() {
        return;
    }
    let mut c = Cluster::new();
    c.start_scheduler().await;
    c.start_executor("a", "1", "512").await;
    // One core, three one-core jobs: they run one after another.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.submit(job(&["sleep", "2"], 1.0, 0.25)).await);
    }
    c.wait_status(&ids[0], "running", Duration::from_secs(30))
        .await;
    // Kill the scheduler hard mid-run, then start a new one on the same store.
    c.scheduler.as_mut().unwrap().kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.start_scheduler().await;
    let late = c.submit(job(&["echo", "late"], 1.0, 0.25)).await;
    ids.push(late);
    for id in &ids {
        c.wait_status(id, "succeeded", Duration::from_secs(60))
            .await;
    }
    let stats = c.get("/stats").await;
    assert_eq!(stats["queue"]["succeeded"], 4, "{stats}");
    assert_eq!(stats["queue"]["total"], 4, "{stats}");
}

#[tokio::test]
async fn dev_without_docker_says_how_to_start_it() {
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dwr"))
        .arg("dev")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("SCHEDULER_API_HOST", "127.0.0.1")
        .env("SCHEDULER_API_PORT", "0")
        .env("DWR_LOG_DIR", logs.path())
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("dwr dev runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Docker engine is not reachable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("scripts/provision.sh --docker-only"),
        "{stderr}"
    );
    assert!(logs.path().join("dev.log").exists());
}

/// Prints the end of every process's stderr under `dir` (when a test fails).
fn print_log_tails(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path().join("stderr.txt")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(25)..];
        eprintln!(
            "--- {} ---\n{}",
            entry.file_name().to_string_lossy(),
            tail.join("\n")
        );
    }
}
