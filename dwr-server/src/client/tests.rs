//! The client commands against the real API router served on a loopback socket, with the
//! scheduler and an executor agent on the in-memory store and the fake runtime: the HTTP
//! paths, the wire types and the error mapping, without Docker.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dwr_core::{
    AgentConfig, ExecutorAgent, ExecutorId, FakeGpuProbe, FakeHostProbe, FakeRuntime, FirstFit,
    InMemoryJobStore, JobState, JobStore, Scheduler, SchedulerConfig,
};

use dwr_client::{Client, Error};

use super::logs::{follow_to_end, StatusReporter};
use super::{cluster, jobs, logs, submit, ClientCommand, ClientError, ClientOptions};
use crate::api::{app, ApiConfig, AppState};

const EXECUTOR: &str = "client-test-1";

/// A server on `127.0.0.1:<free port>` with one 4-core, 8 GiB fake executor; the tasks end
/// with the test's runtime.
async fn server(token: Option<&str>) -> (String, Arc<dyn JobStore>) {
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
        AgentConfig::new(ExecutorId::new(EXECUTOR), "127.0.0.1"),
    );
    tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run(std::future::pending()).await }
    });
    tokio::spawn(agent.run(std::future::pending()));
    let config = ApiConfig {
        api_token: token.map(str::to_owned),
        ..ApiConfig::default()
    };
    let router = app(AppState::new(scheduler, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    for _ in 0..500 {
        if !store.executors().await.expect("executors").is_empty() {
            return (url, store);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the fake executor did not register");
}

/// Parses a client command line (without the leading `dwr`), split at white space.
fn command(line: &str) -> ClientCommand {
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }
    Cli::try_parse_from(std::iter::once("dwr").chain(line.split_whitespace()))
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        .command
}

fn submit_args(line: &str) -> submit::SubmitArgs {
    match command(line) {
        ClientCommand::Submit(args) => *args,
        other => panic!("{other:?}"),
    }
}

/// Submits without waiting and returns the job id.
async fn submit_job(api: &Client, line: &str) -> dwr_core::JobId {
    let job = api
        .submit(&submit_args(line).to_request())
        .await
        .expect("submitted");
    job.id().expect("an id")
}

#[tokio::test]
async fn an_array_is_submitted_waited_for_shown_and_aborted() {
    let (url, _store) = server(None).await;
    let api = Client::new(&url).unwrap();
    let ok = submit_args("submit img --array 0-4%2 --wait -- echo hi");
    assert_eq!(submit::run(&api, &ok, false).await.unwrap(), 0);
    let failing = submit_args("submit img --array 0-2 --wait -- fake exit=3");
    assert_eq!(
        submit::run(&api, &failing, false).await.unwrap(),
        1,
        "not all succeeded"
    );

    let array = api
        .submit_array_with_key(
            &submit_args("submit img --array 0-2 -- fake hang term").to_request(),
            "k",
        )
        .await
        .unwrap();
    let shown = jobs::show(&api, &array.array_job_id, false).await.unwrap();
    assert!(
        shown.contains("tasks:") && shown.contains("parallelism:  no limit"),
        "{shown}"
    );
    let task = &array.task_ids[0];
    let detail = jobs::show(&api, task, false).await.unwrap();
    assert!(
        detail.contains(&format!("{} [0]", array.array_job_id)),
        "{detail}"
    );
    let listed = jobs::list(
        &api,
        &super::JobsArgs {
            status: None,
            limit: 100,
        },
        false,
    )
    .await
    .unwrap();
    let short = &array.array_job_id[..8];
    assert!(listed.contains(&format!("task 2 of {short}")), "{listed}");
    let said = jobs::abort(&api, &array.array_job_id, false).await.unwrap();
    assert!(
        said.starts_with(&format!("abort of array {}", array.array_job_id)),
        "{said}"
    );
}

#[tokio::test]
async fn submit_wait_returns_the_jobs_exit_code() {
    let (url, _store) = server(None).await;
    let api = Client::new(&url).unwrap();
    let ok = submit_args("submit img --wait -- echo hi");
    assert_eq!(submit::run(&api, &ok, false).await.unwrap(), 0);
    let failing = submit_args("submit img --wait -- fake exit=3");
    assert_eq!(submit::run(&api, &failing, false).await.unwrap(), 3);
    let oom = submit_args("submit img --wait -- fake oom");
    assert_eq!(submit::run(&api, &oom, true).await.unwrap(), 137);
}

#[tokio::test]
async fn follow_streams_every_line_in_order_until_the_end() {
    let (url, _store) = server(None).await;
    let api = Client::new(&url).unwrap();
    let line = "submit img -- fake print=one run=300ms print=two exit=4";
    let id = submit_job(&api, line).await;
    let mut out: Vec<u8> = Vec::new();
    let job = follow_to_end(&api, id, &mut out).await.expect("followed");
    assert_eq!(job.status, JobState::Failed);
    assert_eq!(job.exit_code, Some(4));
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.ends_with(&["one", "two"]), "{text:?}");
    // The plain logs command prints the same lines.
    let all = logs::all(&api, id, false).await.unwrap();
    assert!(all.ends_with("one\ntwo\n"), "{all:?}");
    let json: serde_json::Value =
        serde_json::from_str(&logs::all(&api, id, true).await.unwrap()).unwrap();
    assert_eq!(json["job_id"], id.to_string());
}

#[tokio::test]
async fn jobs_job_abort_executors_and_stats() {
    let (url, store) = server(None).await;
    let api = Client::new(&url).unwrap();
    // A job filling the executor, and one that must wait behind it.
    let line = "submit img --cpus 4 --memory 1g -- fake hang term";
    let big = submit_job(&api, line).await;
    let mut reporter = StatusReporter::default();
    let waiting = submit_job(&api, "submit img --cpus 1 -- true").await;
    for _ in 0..500 {
        if store.job(big).await.unwrap().state == JobState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let detail = jobs::show(&api, &waiting.to_string(), false).await.unwrap();
    assert!(detail.contains("status:"), "{detail}");
    assert!(detail.contains("pending"), "{detail}");
    assert!(
        detail.contains("pending reason:"),
        "a pending job says why: {detail}"
    );

    let up_to_10 = |status| super::JobsArgs { status, limit: 10 };
    let table = jobs::list(&api, &up_to_10(None), false).await.unwrap();
    assert!(table.starts_with("JOB ID"), "{table}");
    assert!(table.contains(&big.to_string()) && table.contains(&waiting.to_string()));
    let running = jobs::list(&api, &up_to_10(Some(JobState::Running)), true).await;
    let running: serde_json::Value = serde_json::from_str(&running.unwrap()).unwrap();
    assert_eq!(running.as_array().map(Vec::len), Some(1), "{running:#}");
    assert_eq!(running[0]["job_id"], big.to_string());

    let executors = cluster::executors(&api, false).await.unwrap();
    assert!(executors.contains(EXECUTOR), "{executors}");
    assert!(executors.contains("0/4"), "no CPU free: {executors}");
    let stats = cluster::stats(&api, false).await.unwrap();
    assert!(stats.contains("2 total"), "{stats}");
    let queues = cluster::queues(&api, false).await.unwrap();
    let lines: Vec<&str> = queues.lines().collect();
    assert!(lines[0].starts_with("QUEUE"), "{queues}");
    let default: Vec<&str> = lines[1].split_whitespace().collect();
    // default, weight 1, 4 of 4 cores and 1g held (no quota), all of the CPU, 1 pending.
    assert_eq!(
        default,
        ["default", "1", "4", "1g", "0", "100%", "1", "no"],
        "{queues}"
    );

    // Abort the big one: the waiting job then runs.
    let said = jobs::abort(&api, &big.to_string(), false).await.unwrap();
    assert!(said.contains(&big.to_string()), "{said}");
    let done = api.wait(waiting, reporter.printer()).await.unwrap();
    assert_eq!(done.status, JobState::Succeeded);
    let big_job = api.job(big).await.unwrap();
    assert_eq!(big_job.status, JobState::Aborted);
    let again = jobs::abort(&api, &big.to_string(), false)
        .await
        .expect_err("already finished");
    assert!(
        matches!(again, ClientError::Api(Error::Server { status: 400, .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn server_errors_and_tokens() {
    let (url, _store) = server(Some("s3cret")).await;
    let anonymous = Client::new(&url).unwrap();
    let err = cluster::stats(&anonymous, false).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api(Error::Server { status: 401, .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("DWR_API_TOKEN"), "{err}");

    let api = Client::new(&url).unwrap().with_token(Some("s3cret"));
    let unknown = "00000000-0000-4000-8000-000000000000";
    let err = jobs::show(&api, unknown, false).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api(Error::Server { status: 404, .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(unknown), "{err}");

    // A request the server refuses: the detail names the field.
    let mut request = submit_args("submit img -- true").to_request();
    request.allocation_timeout = Some(1);
    let err = api.submit(&request).await.unwrap_err();
    assert!(matches!(err, Error::Server { status: 422, .. }), "{err:?}");
    assert!(err.to_string().contains("allocation_timeout"), "{err}");

    // `run` itself: the options reach the server.
    let options = ClientOptions {
        url: url.clone(),
        token: Some("s3cret".into()),
        json: true,
    };
    assert_eq!(
        super::run(command("executors"), options.clone())
            .await
            .unwrap(),
        0
    );
    let err = super::run(command("job nope"), options).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[test]
fn the_queues_table_shows_use_against_quota() {
    use dwr_client::{QueueAmounts, QueueView, QueuesResponse};
    let research = QueueView {
        name: "research".into(),
        weight: 3,
        defined: true,
        quota: QueueAmounts {
            cpu_cores: None,
            memory_gb: Some(64.0),
            gpus: Some(8),
        },
        used: QueueAmounts {
            cpu_cores: Some(12.5),
            memory_gb: Some(48.0),
            gpus: Some(8),
        },
        share: 0.5,
        pending: 7,
        preemption: true,
    };
    let gone = QueueView {
        name: "old".into(),
        weight: 1,
        defined: false,
        quota: QueueAmounts::default(),
        used: QueueAmounts::default(),
        share: 0.0,
        pending: 2,
        preemption: false,
    };
    let text = cluster::queues_text(&QueuesResponse {
        queues: vec![research, gone],
    });
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[1],
        ["research", "3", "12.5", "48/64g", "8/8", "50%", "7", "yes"],
        "{text}"
    );
    assert_eq!(
        rows[2],
        ["old", "(not", "defined)", "1", "0", "0g", "0", "0%", "2", "no"],
        "{text}"
    );
}
