//! The store's scripts as functions of one library (`FCALL`): loaded by the first process,
//! again (once) when the server lost it, no state carried from one call to the next, and
//! the same data served to a process sending the scripts by SHA.

mod common;

use common::RedisServer;
use dwr_core::{
    Assignment, ExecutorId, ExecutorRegistration, Job, JobId, JobQuery, JobSpec, JobState,
    JobStore, Outcome, Timestamp,
};
use dwr_redis::RedisJobStore;
use futures::future::join_all;
use redis::Commands;

fn job() -> Job {
    let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 100, 16);
    Job::new(JobId::new(), spec, Timestamp::now())
}

async fn executor(store: &RedisJobStore, name: &str) -> ExecutorId {
    let id = ExecutorId::new(name);
    let reg = ExecutorRegistration::new(id.clone(), "127.0.0.1", 4_000, 1 << 30, Vec::new());
    store.register_executor(&reg).await.unwrap();
    id
}

#[tokio::test]
async fn the_library_is_loaded_once_by_the_first_process_and_again_when_lost() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    assert!(
        store.uses_functions(),
        "Redis 7 runs the scripts as functions"
    );
    let loads = server.calls("function|load");
    assert_eq!(loads, 1, "the first store loads the library");
    // Another process of the same version finds it there: compiling it again would hold
    // the server for a millisecond per process.
    let other = server.store().await;
    assert!(other.uses_functions());
    assert_eq!(server.calls("function|load"), loads);
    let ex = executor(&store, "f-1").await;

    // As a server restarted without persistence would: no library.
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .exec(&mut server.client())
        .unwrap();
    // Calls of several scripts at once, lone and batched (four submits), all find it
    // missing: one of them loads it.
    let submits = join_all((0..4).map(|_| store.submit(job())));
    let query = JobQuery::default();
    let (submitted, listed, executors) =
        tokio::join!(submits, store.jobs(&query), store.executors());
    listed.unwrap();
    assert_eq!(executors.unwrap().len(), 1);
    let all: Vec<JobId> = submitted.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(
        server.calls("function|load"),
        loads + 1,
        "loaded once after the loss, not once per call"
    );

    let batch: Vec<Assignment> = all
        .iter()
        .map(|id| Assignment::new(*id, ex.clone(), Vec::new()))
        .collect();
    for r in store.commit_assignments(&batch).await {
        assert_eq!(r.unwrap().state, JobState::Assigned);
    }
    for id in &all {
        store.mark_running(*id, &ex, 1).await.unwrap();
        let done = store
            .finish(*id, &Outcome::exited(0, false), None)
            .await
            .unwrap();
        assert_eq!(done.state, JobState::Succeeded);
    }
    assert_eq!(server.calls("function|load"), loads + 1);
    assert!(server.calls("fcall") > 0);
    assert_eq!(server.calls("evalsha"), 0);
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_call_that_failed_leaves_nothing_to_the_next() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config();
    let finish_order = format!("{}jobs:finish_order", config.key_prefix);
    let store = RedisJobStore::connect(config).await.unwrap();
    let (a, b) = (
        store.submit(job()).await.unwrap().id,
        store.submit(job()).await.unwrap().id,
    );

    // The finish order is a string for a moment: ending `a` fails at the end of its call,
    // where the call appends what it ended to that list.
    let mut raw = server.client();
    let _: () = raw.set(&finish_order, "not a list").unwrap();
    let failed = store.finish(a, &Outcome::failed("stopped"), None).await;
    assert!(failed.is_err(), "{failed:?}");
    let _: () = raw.del(&finish_order).unwrap();

    // The next call appends its own job, not `a` again: it starts from nothing.
    store
        .finish(b, &Outcome::failed("stopped"), None)
        .await
        .unwrap();
    let order: Vec<String> = raw.lrange(&finish_order, 0, -1).unwrap();
    assert_eq!(order, vec![b.to_string()]);
}

// A process calling the library and one sending the scripts by SHA (a server without
// functions for it: here a user who may not load them), on the same keys: each sees and
// continues the other's work, as during an upgrade from a build that only sent EVALSHA.
#[tokio::test]
async fn calls_by_function_and_by_sha_share_the_same_data() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "bysha",
                "on",
                ">bysha",
                "~*",
                "&*",
                "+@all",
                "-function",
            ][..],
        )
        .exec(&mut server.client())
        .unwrap();
    let config = server.config();
    let by_function = RedisJobStore::connect(config.clone()).await.unwrap();
    let by_sha = RedisJobStore::connect(dwr_redis::RedisConfig {
        url: Some(format!("redis://bysha:bysha@127.0.0.1:{}/", server.port())),
        ..config
    })
    .await
    .unwrap();
    assert!(by_function.uses_functions() && !by_sha.uses_functions());

    let ex = executor(&by_sha, "mixed-1").await;
    let (fcalls, evalshas) = (server.calls("fcall"), server.calls("evalsha"));
    for (first, second) in [(&by_function, &by_sha), (&by_sha, &by_function)] {
        let id = first.submit(job()).await.unwrap().id;
        let assignment = Assignment::new(id, ex.clone(), Vec::new());
        assert_eq!(
            second.commit_assignment(&assignment).await.unwrap().state,
            JobState::Assigned
        );
        first.mark_running(id, &ex, 1).await.unwrap();
        let done = second
            .finish(id, &Outcome::exited(0, false), None)
            .await
            .unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(first.job(id).await.unwrap().state, JobState::Succeeded);
    }
    assert!(server.calls("fcall") > fcalls && server.calls("evalsha") > evalshas);
    for store in [&by_function, &by_sha] {
        assert_eq!(
            store.check_invariants().await.unwrap(),
            Vec::<String>::new()
        );
        assert!(store.executor(&ex).await.unwrap().jobs.is_empty());
    }
}
