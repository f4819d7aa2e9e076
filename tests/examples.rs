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

/// A private redis-server on a free loopback port, killed on drop: dwr-redis's test support.
#[path = "../dwr-redis/tests/common/mod.rs"]
mod redis_support;

#[tokio::test]
async fn the_embedded_redis_example_runs_the_demo_over_redis_and_cleans_up() {
    let Some(server) = redis_support::RedisServer::start() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}", server.port());
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
    use clap::Parser;

    /// `dwr dev`'s arguments, as its command line gives them.
    #[derive(Parser)]
    struct Dev {
        #[command(flatten)]
        args: dwr_server::DevArgs,
    }

    // What the example's doc says to run first: `dwr dev`, here with the fake runtime.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let dev = Dev::try_parse_from([
        "dev",
        "--fake-runtime",
        "--api-port",
        &port,
        "--api-token",
        "s3cret",
    ])
    .unwrap();
    tokio::spawn(dwr_server::run_dev(dev.args, std::future::pending()));
    let url = format!("http://127.0.0.1:{port}");
    let client = dwr::client::Client::new(&url)
        .unwrap()
        .with_token(Some("s3cret"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.health().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "dwr dev did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let done = tokio::time::timeout(Duration::from_secs(30), submit::run(&client, "img"))
        .await
        .expect("the job ends")
        .expect("the example runs");
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert!(done.executor_id.is_some(), "{done:?}");
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
