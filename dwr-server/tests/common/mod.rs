//! The end-to-end harness: the real `dwr` binary as separate processes over a private
//! `redis-server` and the real Docker engine, with guards that kill every process and remove
//! every container a test started, also when it fails. Shared by `e2e.rs` and `edges.rs`.

#![allow(dead_code)] // each test binary uses a part

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Runs the tests of a test binary one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const HEARTBEAT_SECS: u64 = 1;

pub fn test_image() -> String {
    std::env::var("DWR_TEST_IMAGE").unwrap_or_else(|_| "dwr-test/busybox:latest".to_owned())
}

/// Whether the services are here; when they are not, fails under `DWR_REQUIRE_SERVICES=1`
/// and otherwise prints why the test is skipped.
pub fn services_available() -> bool {
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

pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
}

impl Proc {
    pub fn new(name: impl Into<String>, child: Child) -> Proc {
        Proc {
            name: name.into(),
            child: Some(child),
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit; returns whether it exited 0.
    pub fn terminate(&mut self, within: Duration) -> bool {
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
pub struct Redis {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
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
            _proc: Proc::new("redis-server", child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    pub async fn lrange(&self, key: &str) -> Vec<String> {
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
pub struct Cluster {
    pub redis: Redis,
    pub api_port: u16,
    pub prefix: String,
    pub logs: tempfile::TempDir,
    pub scheduler: Option<Proc>,
    pub executors: Vec<(String, Proc)>,
    pub http: reqwest::Client,
    /// The bearer token `get` sends, when the scheduler wants one.
    pub token: Option<String>,
    /// This test binary's turn (see [`Cluster::serial`]), released after the clean-up.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Waits for this test binary's turn ([`SERIAL`]) and, when the services are here, a new
    /// cluster that holds the turn until it is dropped; `None` when the test is skipped.
    pub async fn serial() -> Option<Cluster> {
        let turn = SERIAL.lock().await;
        if !services_available() {
            return None;
        }
        Some(Cluster {
            redis: Redis::start(),
            api_port: free_port(),
            prefix: format!("dwr-e2e-{}:", uuid_like()),
            logs: tempfile::tempdir().unwrap(),
            scheduler: None,
            executors: Vec::new(),
            http: reqwest::Client::new(),
            token: None,
            _turn: turn,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn command(&self, args: &[&str], log_name: &str) -> Command {
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

    pub async fn start_scheduler(&mut self) {
        let cmd = self.command(&["scheduler"], "scheduler");
        self.spawn_scheduler(cmd).await;
    }

    /// Starts the scheduler at its defaults: no `HEARTBEAT_INTERVAL` (30 s) and no
    /// `JOB_POLL_INTERVAL` (a 10 s tick), as a new user leaves them.
    pub async fn start_scheduler_at_defaults(&mut self) {
        let mut cmd = self.command(&["scheduler"], "scheduler");
        cmd.env_remove("HEARTBEAT_INTERVAL")
            .env_remove("JOB_POLL_INTERVAL");
        self.spawn_scheduler(cmd).await;
    }

    pub async fn spawn_scheduler(&mut self, mut cmd: Command) {
        let child = cmd.spawn().expect("dwr scheduler starts");
        self.scheduler = Some(Proc::new("dwr scheduler", child));
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
    pub async fn start_executor(&mut self, name: &str, cpus: &str, memory_mb: &str) -> String {
        self.start_executor_with(name, cpus, memory_mb, &[]).await
    }

    /// [`start_executor`](Self::start_executor) with `env` set on top.
    pub async fn start_executor_with(
        &mut self,
        name: &str,
        cpus: &str,
        memory_mb: &str,
        env: &[(&str, &str)],
    ) -> String {
        let id = format!("{}{name}", self.prefix.trim_end_matches(':'));
        let child = self
            .command(&["executor"], &id)
            .envs(env.iter().copied())
            .env("EXECUTOR_ID", &id)
            .env("DWR_EXECUTOR_CPUS", cpus)
            .env("DWR_EXECUTOR_MEMORY_MB", memory_mb)
            .spawn()
            .expect("dwr executor starts");
        let proc = Proc::new(format!("dwr executor {id}"), child);
        self.executors.push((id.clone(), proc));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.executor_alive(&id).await {
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

    /// Whether `/executors` lists the executor `id` as alive.
    pub async fn executor_alive(&self, id: &str) -> bool {
        self.executor(id).await.is_some_and(|e| e["alive"] == true)
    }

    /// The executor `id` as `/executors` lists it.
    pub async fn executor(&self, id: &str) -> Option<Value> {
        let ex = self.get("/executors").await;
        ex["executors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["id"] == id)
            .cloned()
    }

    pub fn executor_proc(&mut self, id: &str) -> &mut Proc {
        &mut self
            .executors
            .iter_mut()
            .find(|(i, _)| i == id)
            .expect("known executor")
            .1
    }

    pub async fn get(&self, path: &str) -> Value {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.expect("GET");
        r.json().await.expect("JSON")
    }

    pub async fn submit(&self, body: Value) -> String {
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
    pub async fn wait_job(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
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

    pub async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        self.wait_job(id, within, |j| j["status"] == status).await
    }

    /// Submits `body` and waits up to 30 s for the job to succeed; returns the job.
    pub async fn run_to_success(&self, body: Value) -> Value {
        let id = self.submit(body).await;
        self.wait_status(&id, "succeeded", Duration::from_secs(30))
            .await
    }

    /// `DELETE /jobs/{id}`: aborts the job.
    pub async fn abort(&self, id: &str) -> reqwest::Response {
        let url = self.url(&format!("/jobs/{id}"));
        self.http.delete(url).send().await.unwrap()
    }

    /// Waits up to 30 s for each of `jobs` to run, and asserts that they run one on each of
    /// `executors`.
    pub async fn assert_one_on_each(&self, jobs: [&str; 2], executors: [&str; 2], what: &str) {
        let mut placed = Vec::new();
        for id in jobs {
            let running = self
                .wait_status(id, "running", Duration::from_secs(30))
                .await;
            placed.push(running["executor_id"].as_str().unwrap().to_owned());
        }
        placed.sort();
        let mut executors = executors.to_vec();
        executors.sort();
        assert_eq!(placed, executors, "{what}");
    }

    /// Starts the one-core executor "a", runs a long job on it, kills the executor (SIGKILL)
    /// and waits up to 20 s for the job to fail as lost, at the end of the executor's 3 s
    /// lease; returns the executor's id and how long after the kill the job failed.
    pub async fn lose_an_executor_running_a_job(&mut self) -> (String, Duration) {
        let a = self.start_executor("a", "1", "512").await;
        let id = self.submit(job(&["sleep", "600"], 1.0, 0.25)).await;
        self.wait_status(&id, "running", Duration::from_secs(30))
            .await;
        self.executor_proc(&a).kill9();
        let killed = Instant::now();
        let failed = self
            .wait_status(&id, "failed", Duration::from_secs(20))
            .await;
        let took = killed.elapsed();
        assert_eq!(
            failed["reason"],
            format!("executor lost: {a} sent no heartbeat for its 3 s lease")
        );
        (a, took)
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
        for (id, _) in &self.executors {
            remove_containers(&format!("dwr.executor={id}"));
        }
    }
}

/// The ids of the containers (running or not) labelled `label`.
pub fn containers(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let ids = output("docker", &["ps", "-aq", "--filter", &filter]);
    ids.split_whitespace().map(str::to_owned).collect()
}

pub fn remove_containers(label: &str) {
    for id in containers(label) {
        succeeds("docker", &["rm", "-f", &id]);
    }
}

pub fn containers_of_job(id: &str) -> Vec<String> {
    containers(&format!("dwr.job_id={id}"))
}

/// A short unique tag (time and pid) for keys and ids.
pub fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

pub fn job(command: &[&str], cpu_cores: f64, memory_gb: f64) -> Value {
    json!({
        "docker_image": test_image(),
        "command": command,
        "cpu_cores": cpu_cores,
        "memory_gb": memory_gb,
    })
}

/// Prints the end of every process's stderr under `dir` (when a test fails).
pub fn print_log_tails(dir: &std::path::Path) {
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
