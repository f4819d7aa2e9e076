//! The client commands against a running server: the real `dwr` binary started as
//! `dwr dev` (scheduler + executor, in-memory store, the real Docker engine) on a free port,
//! driven by the same binary's `submit`, `logs`, `job`, `abort`, `jobs`, `executors`, `stats`.
//!
//! Needs a Docker engine and the image `DWR_TEST_IMAGE` (default `dwr-test/busybox:latest`,
//! built by `scripts/provision.sh`). Without them the test prints why and passes, unless
//! `DWR_REQUIRE_SERVICES=1` (set by `scripts/test.sh`), where it fails. The server is stopped
//! and every container of its executor removed at the end, pass or fail.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEFAULT_IMAGE: &str = "dwr-test/busybox:latest";
/// Longest wait for `dwr dev` to answer with its executor registered.
const STARTUP: Duration = Duration::from_secs(90);
/// Longest wait for a job to reach an expected state.
const JOB_WAIT: Duration = Duration::from_secs(60);

/// Whether tests must fail, not skip, when a service is missing.
fn services_required() -> bool {
    std::env::var("DWR_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `Ok(())` when Docker answers and has `image`, else why not.
fn docker_ready(image: &str) -> Result<(), String> {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("the docker command is not available: {e}"))?;
    if !info.status.success() {
        return Err(format!(
            "no Docker engine answers: {}",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    let inspect = Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !inspect.success() {
        return Err(format!(
            "the image {image} is missing (scripts/provision.sh builds it)"
        ));
    }
    Ok(())
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// `dwr dev` running in a scratch directory; stopped (and its containers removed) on drop.
struct DevServer {
    child: Child,
    url: String,
    executor_id: String,
    dir: tempfile::TempDir,
}

impl DevServer {
    fn start() -> DevServer {
        let port = free_port();
        let executor_id = format!("cli-test-{}-{port}", std::process::id());
        let dir = tempfile::tempdir().expect("temp dir");
        let log = File::create(dir.path().join("dev.out")).expect("dev log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_dwr"));
        command
            .arg("dev")
            .current_dir(dir.path())
            .env("SCHEDULER_API_HOST", "127.0.0.1")
            .env("SCHEDULER_API_PORT", port.to_string())
            .env("EXECUTOR_ID", &executor_id)
            .env("EXECUTOR_IP", "127.0.0.1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        for var in [
            "DWR_API_TOKEN",
            "REDIS_HOST",
            "REDIS_PORT",
            "REDIS_PASSWORD",
            "REDIS_DB",
            "REDIS_URL",
        ] {
            command.env_remove(var);
        }
        let child = command.spawn().expect("start dwr dev");
        DevServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            executor_id,
            dir,
        }
    }

    /// What `dwr dev` printed so far (for failure messages).
    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dev.out")).unwrap_or_default()
    }

    /// Runs `dwr ARGS` against this server.
    fn dwr(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_dwr"))
            .args(args)
            .env("DWR_URL", &self.url)
            .env_remove("DWR_API_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run the dwr client");
        Run::new(args, output)
    }

    /// Waits until the API answers and lists this server's executor.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dwr dev exited early ({status}); its output:\n{}",
                    self.output()
                );
            }
            let run = self.dwr(&["executors", "--json"]);
            if run.code == 0 {
                let json = run.json();
                let ids: Vec<&str> = json["executors"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|e| e["id"].as_str()).collect())
                    .unwrap_or_default();
                if ids.contains(&self.executor_id.as_str()) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dwr dev did not get ready within {STARTUP:?}; last client run: {run}\n\
                 server output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The job's JSON.
    fn job(&self, id: &str) -> Value {
        self.dwr(&["job", id, "--json"]).ok().json()
    }

    /// Polls the job until `done` says yes; panics after [`JOB_WAIT`].
    fn wait_job(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + JOB_WAIT;
        loop {
            let job = self.job(id);
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not become {what} within {JOB_WAIT:?}: {job:#}\nserver output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ids of the containers this server's executor owns (running or not).
    fn containers(&self, extra_filter: Option<String>) -> Vec<String> {
        let mut args = vec![
            "ps".to_owned(),
            "-aq".to_owned(),
            "--filter".to_owned(),
            format!("label=dwr.executor={}", self.executor_id),
        ];
        if let Some(filter) = extra_filter {
            args.extend(["--filter".to_owned(), filter]);
        }
        let out = Command::new("docker")
            .args(&args)
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        // SIGTERM first (graceful shutdown), then SIGKILL if it lingers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let leftovers = self.containers(None);
        if !leftovers.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&leftovers)
                .output();
        }
    }
}

/// One client run: its exit code and output.
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(args: &[&str], output: Output) -> Run {
        Run {
            args: args.join(" "),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0.
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    /// Stdout parsed as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// The first line of stdout (the job id of `submit`).
    fn first_line(&self) -> String {
        self.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`dwr {}` exited {}\n--- stdout\n{}--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn client_commands_against_dwr_dev() {
    let image = std::env::var("DWR_TEST_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    if let Err(why) = docker_ready(&image) {
        assert!(
            !services_required(),
            "DWR_REQUIRE_SERVICES=1 but Docker is not usable: {why}"
        );
        eprintln!("skipping the CLI test: {why} (set DWR_REQUIRE_SERVICES=1 to make this fail)");
        return;
    }
    assert!(
        Path::new(env!("CARGO_BIN_EXE_dwr")).exists(),
        "the dwr binary is built"
    );
    let mut server = DevServer::start();
    server.wait_ready();
    // `dwr submit` of a small job of the test image, with `rest` after the resources.
    let submit = |rest: &[&str]| {
        let mut args = vec!["submit", &image, "--cpus", "0.25", "--memory", "64m"];
        args.extend(rest);
        server.dwr(&args)
    };

    // submit --wait: prints the id, exits with the job's exit code.
    let hello = submit(&["--wait", "--", "echo", "hello from dwr"]).ok();
    let hello_id = hello.first_line();
    assert!(
        is_uuid(&hello_id),
        "submit prints the job id first: {hello}"
    );
    assert!(hello.stderr.contains("succeeded"), "{hello}");

    let failing = submit(&["--wait", "--", "sh", "-c", "echo failing; exit 3"]);
    assert_eq!(failing.code, 3, "the job's exit code comes back: {failing}");
    let failing_id = failing.first_line();

    // logs: the plain text and the JSON.
    let logs = server.dwr(&["logs", &hello_id]).ok();
    assert!(logs.stdout.lines().any(|l| l == "hello from dwr"), "{logs}");
    let logs_json = server.dwr(&["logs", &hello_id, "--json"]).ok().json();
    assert!(
        logs_json["lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "hello from dwr")),
        "{logs_json:#}"
    );

    // job: the detail view and the JSON.
    let detail = server.dwr(&["job", &failing_id]).ok();
    assert!(detail.stdout.contains(&failing_id), "{detail}");
    assert!(detail.stdout.contains("failed"), "{detail}");
    let failed = server.job(&failing_id);
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["exit_code"], 3, "{failed:#}");

    // submit --follow: the log lines stream to stdout after the id.
    let followed = submit(&["--follow", "--", "sh", "-c", "echo one; sleep 1; echo two"]).ok();
    let lines: Vec<&str> = followed.stdout.lines().collect();
    assert!(is_uuid(lines.first().unwrap_or(&"")), "{followed}");
    let one = lines.iter().position(|l| *l == "one");
    let two = lines.iter().position(|l| *l == "two");
    assert!(
        one.is_some() && two.is_some() && one < two,
        "both lines, in order: {followed}"
    );

    // abort: a running `sleep 600` ends aborted and its container goes away.
    let sleeper = submit(&["--", "sleep", "600"]).ok();
    let sleeper_id = sleeper.first_line();
    assert!(is_uuid(&sleeper_id), "{sleeper}");
    server.wait_job(&sleeper_id, "running", |j| j["status"] == "running");
    let abort = server.dwr(&["abort", &sleeper_id]).ok();
    assert!(abort.stdout.contains(&sleeper_id), "{abort}");
    let aborted = server.wait_job(&sleeper_id, "aborted", |j| {
        j["status"].as_str().is_some_and(|s| s != "running")
    });
    assert_eq!(aborted["status"], "aborted", "{aborted:#}");
    let gone_by = Instant::now() + Duration::from_secs(10);
    while !server
        .containers(Some(format!("label=dwr.job_id={sleeper_id}")))
        .is_empty()
    {
        assert!(
            Instant::now() < gone_by,
            "the container of aborted job {sleeper_id} is still there"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = server.dwr(&["abort", &sleeper_id]);
    assert_ne!(
        again.code, 0,
        "aborting a finished job is an error: {again}"
    );
    assert!(again.stderr.contains("error"), "{again}");

    // jobs: the table lists every id; the JSON is an array; the status filter filters.
    let table = server.dwr(&["jobs"]).ok();
    for id in [&hello_id, &failing_id, &sleeper_id] {
        assert!(table.stdout.contains(id.as_str()), "{id} in {table}");
    }
    assert!(table.stdout.starts_with("JOB ID"), "{table}");
    let all = server.dwr(&["jobs", "--json"]).ok().json();
    assert!(all.as_array().is_some_and(|a| a.len() >= 4), "{all:#}");
    let succeeded = server
        .dwr(&["jobs", "--status", "succeeded", "--json"])
        .ok()
        .json();
    let succeeded = succeeded.as_array().expect("an array");
    assert!(
        succeeded.iter().all(|j| j["status"] == "succeeded"),
        "{succeeded:?}"
    );
    assert!(
        succeeded.iter().any(|j| j["job_id"] == hello_id.as_str()),
        "{succeeded:?}"
    );

    // executors and stats: tables and JSON.
    let executors = server.dwr(&["executors"]).ok();
    assert!(
        executors.stdout.contains(&server.executor_id),
        "{executors}"
    );
    let executors = server.dwr(&["executors", "--json"]).ok().json();
    assert_eq!(
        executors["executors"][0]["id"],
        server.executor_id.as_str(),
        "{executors:#}"
    );
    assert_eq!(
        executors["cluster_stats"]["alive_executors"], 1,
        "{executors:#}"
    );
    let stats = server.dwr(&["stats", "--json"]).ok().json();
    assert!(
        stats["queue"]["total"].as_u64().is_some_and(|n| n >= 4),
        "{stats:#}"
    );
    let stats = server.dwr(&["stats"]).ok();
    assert!(stats.stdout.contains("jobs:"), "{stats}");

    // Errors: unknown job, bad id, unreachable server.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let missing = server.dwr(&["job", unknown]);
    assert_ne!(missing.code, 0, "{missing}");
    assert!(missing.stderr.contains(unknown), "names the id: {missing}");
    let bad = server.dwr(&["job", "not-a-uuid"]);
    assert_ne!(bad.code, 0, "{bad}");
    assert!(bad.stderr.contains("not-a-uuid"), "{bad}");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let unreachable = server.dwr(&["jobs", "--url", &closed]);
    assert_ne!(unreachable.code, 0, "{unreachable}");
    assert!(
        unreachable.stderr.contains(&closed) && unreachable.stderr.contains("dwr dev"),
        "says where and what to start: {unreachable}"
    );
}

/// Without a token, the API listens on loopback only: asking for another address is
/// refused at start, naming the flag that allows it, before anything is connected.
#[test]
fn no_token_and_a_public_address_is_refused_at_start() {
    for command in ["scheduler", "dev"] {
        let output = Command::new(env!("CARGO_BIN_EXE_dwr"))
            .arg(command)
            .env("SCHEDULER_API_HOST", "0.0.0.0")
            .env("SCHEDULER_API_PORT", "0")
            .env_remove("DWR_API_TOKEN")
            .env_remove("DWR_INSECURE_NO_AUTH")
            // Nothing would answer here: the refusal must come first.
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("DWR_LOG_DIR", std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run dwr");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(stderr.contains("SCHEDULER_API_HOST"), "{command}: {stderr}");
        assert!(stderr.contains("--insecure-no-auth"), "{command}: {stderr}");
        assert!(
            stderr.contains("DWR_INSECURE_NO_AUTH=1"),
            "{command}: {stderr}"
        );
    }
}
