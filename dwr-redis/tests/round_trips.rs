//! How many Redis round trips one job costs from submit to terminal, measured with
//! `INFO commandstats` on a private server: submit, commit the assignment, the executor's
//! event pop, mark running, one batch of log lines, finish.

mod common;

use std::time::Duration;

use common::RedisServer;
use dwr_core::{
    Assignment, ExecutorId, ExecutorRegistration, Job, JobId, JobSpec, JobStore, Outcome, Timestamp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_costs_six_round_trips() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let executor = ExecutorId::new("rt-1");
    let reg = ExecutorRegistration::new(executor.clone(), "127.0.0.1", 4_000, 8_192, Vec::new());
    store.register_executor(&reg).await.unwrap();
    // Warm up: open the dedicated blocking connection (its handshake is not per job).
    assert!(store
        .next_event(&executor, Duration::from_millis(10))
        .await
        .unwrap()
        .is_none());

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut server.client())
        .unwrap();

    let job = Job::new(
        JobId::new(),
        JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 1_000, 512),
        Timestamp::now(),
    );
    let id = job.id;
    store.submit(job).await.unwrap();
    let assignment = Assignment::new(id, executor.clone(), Vec::new());
    let committed = store.commit_assignment(&assignment).await.unwrap();
    let event = store
        .next_event(&executor, Duration::from_secs(5))
        .await
        .unwrap();
    // The event carries the job: an agent starts it without reading it (no HGETALL).
    assert_eq!(
        event,
        Some(dwr_core::ExecutorEvent::Assigned(Box::new(committed)))
    );
    store.mark_running(id, &executor, 1).await.unwrap();
    let lines: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    store.append_logs(id, None, &lines).await.unwrap();
    let done = store
        .finish(id, &Outcome::exited(0, false), None)
        .await
        .unwrap();
    assert!(done.changed);

    let mut calls = server.command_calls();
    calls.remove("config|resetstat");
    // The commands a client sent; everything else ran inside those scripts.
    let client_sent = [
        "fcall",
        "evalsha",
        "eval",
        "blpop",
        "blmpop",
        "script|load",
        "function|load",
    ];
    let round_trips: u64 = client_sent.iter().filter_map(|c| calls.get(*c)).sum();
    let total: u64 = calls.values().sum();
    eprintln!("round trips per job: {round_trips}; commands executed by the server: {total}");
    eprintln!("{calls:?}");
    assert_eq!(round_trips, 6, "{calls:?}");
    assert!(!calls.contains_key("script|load"), "a script was reloaded");
    assert!(
        !calls.contains_key("function|load"),
        "the library was reloaded"
    );
}
