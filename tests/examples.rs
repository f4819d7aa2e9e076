//! Runs the flow of `examples/embedded.rs` (scheduler + agent on the in-memory store and the
//! fake runtime) as a test, and checks how each demo job ended; the same flow over a
//! private redis-server through `examples/embedded_redis.rs`; and `examples/submit.rs`
//! against the real API served in process.

use std::time::Duration;

use dwr::JobState;

#[path = "../examples/embedded_redis.rs"]
#[allow(dead_code)] // the examples' `main`s are not called here
mod embedded_redis;

#[path = "../examples/submit.rs"]
#[allow(dead_code)]
mod submit;

// The Redis example includes the in-memory one: one copy of it serves both tests.
use embedded_redis::embedded;

#[tokio::test]
async fn the_embedded_example_runs_every_job_to_its_end() {
    let specs = embedded::demo_jobs();
    let count = specs.len();
    let ended = embedded::run_demo(specs, Duration::from_secs(30))
        .await
        .expect("the demo runs to the end");
    assert_eq!(ended.len(), count);
    let [hello, steps, fails, oom, gpu, too_big] = &ended[..] else {
        panic!("{ended:?}");
    };

    assert_eq!(hello.job.state, JobState::Succeeded, "{hello:?}");
    assert_eq!(hello.job.exit_code, Some(0));
    // The first job's log may open with the image pull's progress lines.
    assert_eq!(
        hello.logs.last().map(String::as_str),
        Some("hello from dwr"),
        "{hello:?}"
    );
    assert_eq!(hello.job.executor_ip.as_deref(), Some("127.0.0.1"));

    assert_eq!(steps.job.state, JobState::Succeeded, "{steps:?}");
    assert!(
        steps.logs.ends_with(&["step 1".into(), "step 2".into()]),
        "{steps:?}"
    );

    assert_eq!(fails.job.state, JobState::Failed, "{fails:?}");
    assert_eq!(fails.job.exit_code, Some(3));
    assert_eq!(
        fails.logs.last().map(String::as_str),
        Some("giving up"),
        "{fails:?}"
    );

    assert_eq!(oom.job.state, JobState::Failed, "{oom:?}");
    assert!(oom.job.oom_killed, "{oom:?}");

    assert_eq!(gpu.job.state, JobState::Succeeded, "{gpu:?}");
    assert_eq!(gpu.job.gpu_ids, ["GPU-fake-local-0"]);

    assert_eq!(too_big.job.state, JobState::Failed, "{too_big:?}");
    assert!(too_big.job.executor_ip.is_none(), "{too_big:?}");
    assert!(
        too_big.job.reason.is_some(),
        "a failed job says why: {too_big:?}"
    );
}

/// A private redis-server on a free loopback port, killed on drop.
struct RedisServer(std::process::Child, u16);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Option<RedisServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()?;
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if std::env::var("DWR_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("redis-server cannot start ({e}) under DWR_REQUIRE_SERVICES=1; run scripts/provision.sh")
        }
        Err(e) => {
            eprintln!("skipping: redis-server cannot start ({e}); run scripts/provision.sh");
            return None;
        }
    };
    let server = RedisServer(child, port);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

#[tokio::test]
async fn the_embedded_redis_example_runs_the_demo_over_redis_and_cleans_up() {
    let Some(server) = redis_server() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}", server.1);
    let ended = embedded_redis::run_on_redis(&url)
        .await
        .expect("the demo runs to the end over Redis");
    let states: Vec<JobState> = ended.iter().map(|e| e.job.state).collect();
    use JobState::{Failed, Succeeded};
    assert_eq!(
        states,
        [Succeeded, Succeeded, Failed, Failed, Succeeded, Failed],
        "{ended:?}"
    );
    assert_eq!(
        ended[0].logs.last().map(String::as_str),
        Some("hello from dwr")
    );
    // What it stored is gone but for its executor (registrations are not purged).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("dwr-example-*job*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let jobs: Vec<&String> = keys.iter().filter(|k| k.contains(":job:")).collect();
    assert!(jobs.is_empty(), "job hashes left behind: {jobs:?}");
}

#[tokio::test]
async fn the_submit_example_follows_its_job_through_the_client() {
    use std::sync::Arc;

    use dwr::{
        AgentConfig, ExecutorAgent, ExecutorId, FakeGpuProbe, FakeHostProbe, FakeRuntime, FirstFit,
        InMemoryJobStore, JobStore, Scheduler, SchedulerConfig,
    };
    use dwr_server::{app, ApiConfig, AppState};

    let store: Arc<dyn JobStore> = Arc::new(InMemoryJobStore::new());
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    let agent = ExecutorAgent::new(
        store.clone(),
        Arc::new(FakeRuntime::new()),
        Arc::new(FakeGpuProbe::none()),
        Arc::new(FakeHostProbe::new(4_000, 8_192)),
        AgentConfig::new(ExecutorId::new("example-1"), "127.0.0.1"),
    );
    tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run(std::future::pending()).await }
    });
    tokio::spawn(agent.run(std::future::pending()));
    let config = ApiConfig {
        api_token: Some("s3cret".into()),
        ..ApiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app(AppState::new(scheduler, config));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = dwr::client::Client::new(&url)
        .unwrap()
        .with_token(Some("s3cret"));
    let done = tokio::time::timeout(Duration::from_secs(30), submit::run(&client, "img"))
        .await
        .expect("the job ends")
        .expect("the example runs");
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.executor_id.as_deref(), Some("example-1"));
    let logs = client.logs(done.id().unwrap()).await.unwrap();
    assert_eq!(
        logs.lines.last().map(String::as_str),
        Some("hello from dwr")
    );

    // Without the token the server refuses it, and the error says what to set.
    let anonymous = dwr::client::Client::new(&url).unwrap();
    let err = submit::run(&anonymous, "img").await.expect_err("401");
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("DWR_API_TOKEN"), "{err}");
}
