//! Group commit and batched event pops: concurrent transitions share script calls, each
//! still gets its own answer, in order, with the effects of those before it, and one
//! failing operation does not disturb the others of its batch.

mod common;

use std::time::Duration;

use common::RedisServer;
use dwr_core::{
    Assignment, Dependency, Dimension, ExecutorEvent, ExecutorId, ExecutorRegistration, Expiry,
    Job, JobId, JobSpec, JobState, JobStore, Outcome, Rejection, StoreError, Timestamp,
};
use dwr_redis::RedisJobStore;
use futures::future::join_all;
use redis::Commands;

fn job(cpu: u64) -> Job {
    let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], cpu, 16);
    Job::new(JobId::new(), spec, Timestamp::now())
}

async fn executor(store: &RedisJobStore, name: &str, cpu: u64) -> ExecutorId {
    let id = ExecutorId::new(name);
    let reg = ExecutorRegistration::new(id.clone(), "127.0.0.1", cpu, 1 << 30, Vec::new());
    store.register_executor(&reg).await.unwrap();
    id
}

fn assign(job: JobId, executor: &ExecutorId) -> Assignment {
    Assignment::new(job, executor.clone(), Vec::new())
}

/// Submits `n` small jobs, one by one; their ids.
async fn submitted(store: &RedisJobStore, n: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(store.submit(job(100)).await.unwrap().id);
    }
    ids
}

/// Submits `n` small jobs and commits them all to `ex` (queueing `n` events); their ids.
async fn assigned(store: &RedisJobStore, ex: &ExecutorId, n: usize) -> Vec<JobId> {
    let ids = submitted(store, n).await;
    let batch: Vec<Assignment> = ids.iter().map(|id| assign(*id, ex)).collect();
    for r in store.commit_assignments(&batch).await {
        r.unwrap();
    }
    ids
}

/// Writes to sorted sets (`ZADD` and `ZREM`) the server has run so far.
fn sorted_set_writes(server: &RedisServer) -> u64 {
    let calls = server.command_calls();
    ["zadd", "zrem"].iter().filter_map(|c| calls.get(*c)).sum()
}

/// Script calls the server has run so far.
fn script_calls(server: &RedisServer) -> u64 {
    let calls = server.command_calls();
    ["fcall", "evalsha", "eval"]
        .iter()
        .filter_map(|c| calls.get(*c))
        .sum()
}

// One thread: the N calls of a stage are all queued before the batching task runs, so the
// count of calls is exact (N / 128 rounded up) rather than a matter of timing.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_transitions_share_script_calls() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "batch-1", 1_000_000).await;
    const N: usize = 300;
    let jobs: Vec<Job> = (0..N).map(|_| job(100)).collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();

    // Each stage: N operations at once cost a few script calls, not N, and each call
    // writes each sorted set it changes once (the state sets, the queue, the executors
    // changed: at most four per call), not once per job.
    let stage = |name: &'static str, before: (u64, u64, u64)| {
        let sent = store.requests_sent() - before.0;
        let calls = script_calls(&server) - before.1;
        let writes = sorted_set_writes(&server) - before.2;
        // 300 operations: batches of 128, 128 and 44.
        assert_eq!(sent, 3, "{name}: {sent} requests for {N} operations");
        assert!(
            calls <= 3,
            "{name}: {calls} script calls for {N} operations"
        );
        assert!(
            writes <= 4 * calls,
            "{name}: {writes} ZADD/ZREM in {calls} calls"
        );
        mark_of(&store, &server)
    };
    fn mark_of(store: &RedisJobStore, server: &RedisServer) -> (u64, u64, u64) {
        (
            store.requests_sent(),
            script_calls(server),
            sorted_set_writes(server),
        )
    }
    let mut mark = mark_of(&store, &server);

    for r in join_all(jobs.into_iter().map(|j| store.submit(j))).await {
        r.unwrap();
    }
    mark = stage("submit", mark);

    let batch: Vec<Assignment> = ids.iter().map(|id| assign(*id, &ex)).collect();
    let committed = store.commit_assignments(&batch).await;
    for (id, result) in ids.iter().zip(&committed) {
        let job = result.as_ref().unwrap();
        assert_eq!((job.id, job.state), (*id, JobState::Assigned));
    }
    mark = stage("commit", mark);

    // The events come out in commit order, each carrying its job.
    for (id, job) in ids.iter().zip(&committed) {
        let event = store.next_event(&ex, Duration::from_secs(5)).await.unwrap();
        let expected = ExecutorEvent::Assigned(Box::new(job.as_ref().unwrap().clone()));
        assert_eq!(event.as_ref(), Some(&expected), "event of {id}");
    }
    mark = stage("event pops", mark);

    for r in join_all(ids.iter().map(|id| store.mark_running(*id, &ex, 1))).await {
        r.unwrap();
    }
    stage("mark running", mark);
    for id in &ids {
        assert_eq!(store.job(*id).await.unwrap().state, JobState::Running);
    }
    mark = mark_of(&store, &server);

    let exited = Outcome::exited(0, false);
    for r in join_all(ids.iter().map(|id| store.finish(*id, &exited, None))).await {
        let done = r.unwrap();
        assert!(done.changed);
        assert_eq!(done.state, JobState::Succeeded);
    }
    stage("finish", mark);

    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
    let held = store.executor(&ex).await.unwrap();
    assert!(held.jobs.is_empty(), "{:?}", held.jobs);
}

/// An executor with room for one 800-millicore job at a time, and two such jobs submitted.
async fn two_jobs_with_room_for_one(
    store: &RedisJobStore,
    name: &str,
) -> (ExecutorId, JobId, JobId) {
    let ex = executor(store, name, 1_000).await;
    let a = store.submit(job(800)).await.unwrap().id;
    let b = store.submit(job(800)).await.unwrap().id;
    (ex, a, b)
}

/// Whether `result` is a commit refused for want of CPU.
fn no_room_for_cpu<T>(result: &Result<T, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::Rejected {
            reason: Rejection::NoRoom {
                dimension: Dimension::Cpu
            },
            ..
        })
    )
}

/// Job `id` committed to `ex` and marked running.
async fn running(store: &RedisJobStore, ex: &ExecutorId, id: JobId) {
    store.commit_assignment(&assign(id, ex)).await.unwrap();
    store.mark_running(id, ex, 1).await.unwrap();
}

// The transitions of a job share one queue, whatever their kind: queued together, an end, a
// commit, a submit and a start go out as one call, applied in queue order, each seeing the
// ones before it. One thread, so that all four are queued before the batching task runs.
#[tokio::test(flavor = "current_thread")]
async fn transitions_of_every_kind_share_one_call_in_queue_order() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let (ex, ended, next) = two_jobs_with_room_for_one(&store, "one-at-a-time").await;
    running(&store, &ex, ended).await;
    let sent = store.requests_sent();
    let calls = script_calls(&server);

    // The end first: the commit after it in the same call finds the room it gave back, and
    // the start after the commit finds the job assigned.
    let new = job(100);
    let new_id = new.id;
    let (exited, commit) = (Outcome::exited(0, false), assign(next, &ex));
    let (finished, committed, submitted, started) = futures::join!(
        store.finish(ended, &exited, Some(1)),
        store.commit_assignment(&commit),
        store.submit(new),
        store.mark_running(next, &ex, 1),
    );
    assert_eq!(
        store.requests_sent() - sent,
        1,
        "one request for four operations"
    );
    assert_eq!(script_calls(&server) - calls, 1, "one script call");
    assert_eq!(finished.unwrap().state, JobState::Succeeded);
    assert_eq!(committed.unwrap().state, JobState::Assigned);
    assert_eq!(submitted.unwrap().id, new_id);
    started.unwrap();
    assert_eq!(store.job(next).await.unwrap().state, JobState::Running);
    assert_eq!(store.job(new_id).await.unwrap().state, JobState::Pending);

    // The other way round: a commit queued before the end that would give it room finds
    // none, and the end still applies.
    let last = store.submit(job(800)).await.unwrap().id;
    let commit = assign(last, &ex);
    let (committed, finished) = futures::join!(
        store.commit_assignment(&commit),
        store.finish(next, &exited, Some(1)),
    );
    assert!(no_room_for_cpu(&committed), "{committed:?}");
    assert_eq!(finished.unwrap().state, JobState::Succeeded);
    assert_eq!(store.job(last).await.unwrap().state, JobState::Pending);
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn commits_of_one_batch_see_each_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let (ex, ia, ib) = two_jobs_with_room_for_one(&store, "small").await;
    let results = store
        .commit_assignments(&[assign(ia, &ex), assign(ib, &ex)])
        .await;
    assert_eq!(results[0].as_ref().unwrap().state, JobState::Assigned);
    assert!(no_room_for_cpu(&results[1]), "{:?}", results[1]);
    assert_eq!(store.job(ib).await.unwrap().state, JobState::Pending);
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
}

/// What a queue holds is counted in the script and written at the end of the call: the
/// second commit of one batch must still see the first's share against the quota, and the
/// queue's holdings must come out exact.
#[tokio::test]
async fn quota_checks_of_one_batch_see_each_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "big", 100_000).await;
    let quota = dwr_core::Quota {
        cpu_millis: Some(1_000),
        ..dwr_core::Quota::NONE
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 400, 16)
            .with_queue("team");
        let job = Job::new(JobId::new(), spec, Timestamp::now());
        ids.push(store.submit(job).await.unwrap().id);
    }
    let batch: Vec<Assignment> = ids
        .iter()
        .map(|id| {
            let mut a = assign(*id, &ex);
            a.quota = quota;
            a
        })
        .collect();
    let results = store.commit_assignments(&batch).await;
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(
            &results[2],
            Err(StoreError::Rejected {
                reason: Rejection::QuotaReached {
                    dimension: Dimension::Cpu,
                    ..
                },
                ..
            })
        ),
        "{:?}",
        results[2]
    );
    let usage = store.queue_usage().await.unwrap();
    let team = usage.get("team").expect("the queue holds something");
    assert_eq!(
        (team.held.cpu_millis, team.held.memory_mib, team.pending),
        (800, 32, 1),
        "{usage:?}"
    );
    let held = store.executor(&ex).await.unwrap();
    assert_eq!(held.allocated.cpu_millis, 800);
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn an_operation_failing_in_a_batch_leaves_the_others_applied() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "mixed", 100_000).await;
    let ids = submitted(&store, 3).await;
    // The middle job's hash is damaged so that its script raises an error.
    let key = format!("{}job:{}", store.keys().prefix(), ids[1]);
    let _: () = server.client().hset(&key, "cpu", "not a number").unwrap();

    let batch: Vec<Assignment> = ids.iter().map(|id| assign(*id, &ex)).collect();
    let results = store.commit_assignments(&batch).await;
    assert_eq!(results[0].as_ref().unwrap().state, JobState::Assigned);
    match &results[1] {
        Err(StoreError::Corrupt { what, source }) => {
            assert!(what.contains("commit_assignment"), "{what}");
            assert!(source.to_string().contains("script error"), "{source}");
        }
        other => panic!("expected a corrupt-reply error, got {other:?}"),
    }
    assert_eq!(results[2].as_ref().unwrap().state, JobState::Assigned);
    assert_eq!(store.job(ids[0]).await.unwrap().state, JobState::Assigned);
    assert_eq!(store.job(ids[2]).await.unwrap().state, JobState::Assigned);
    let held = store.executor(&ex).await.unwrap();
    assert_eq!(held.jobs.len(), 2);
    assert_eq!(held.allocated.cpu_millis, 200);
}

#[tokio::test]
async fn one_pop_takes_every_queued_event() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "popper", 100_000).await;
    let ids = assigned(&store, &ex, 5).await;
    // An abort queued behind the assignments keeps its place.
    store
        .request_abort(ids[2], dwr_core::AbortCause::User)
        .await
        .unwrap();

    let before = store.requests_sent();
    let mut popped = Vec::new();
    for _ in 0..6 {
        let event = store.next_event(&ex, Duration::from_secs(5)).await.unwrap();
        popped.push(event.expect("an event").job_id());
    }
    assert_eq!(store.requests_sent() - before, 1, "one pop for six events");
    let mut expected = ids.clone();
    expected.push(ids[2]);
    assert_eq!(popped, expected);
    // Nothing left: a zero wait answers at once.
    assert_eq!(store.next_event(&ex, Duration::ZERO).await.unwrap(), None);
}

#[tokio::test]
async fn events_held_from_before_an_expiry_are_dropped_at_registration() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "lost", 100_000).await;
    let ids = assigned(&store, &ex, 3).await;
    // One event handed out, two held by the store handle.
    let first = store.next_event(&ex, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.map(|e| e.job_id()), Some(ids[0]));

    let failed = store
        .expire_executor(&ex, Expiry::Now, "executor lost")
        .await
        .unwrap();
    assert_eq!(failed.len(), 3);
    executor(&store, "lost", 100_000).await;
    // The held assignments name failed jobs: the executor must not start them.
    assert_eq!(store.next_event(&ex, Duration::ZERO).await.unwrap(), None);
    for id in &ids {
        assert_eq!(store.job(*id).await.unwrap().state, JobState::Failed);
    }
}

#[tokio::test]
async fn without_blmpop_events_come_one_pop_each() {
    // A server without BLMPOP, as before Redis 7.
    let Some(server) = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--rename-command",
        "BLMPOP",
        "",
    ]) else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "old", 100_000).await;
    let ids = assigned(&store, &ex, 3).await;
    let mut popped = Vec::new();
    for _ in 0..3 {
        let event = store.next_event(&ex, Duration::from_secs(5)).await.unwrap();
        popped.push(event.expect("an event").job_id());
    }
    assert_eq!(popped, ids);
    assert_eq!(
        store
            .next_event(&ex, Duration::from_millis(50))
            .await
            .unwrap(),
        None
    );
    let raw: u64 = redis::cmd("LLEN")
        .arg(store.keys().executor_events(&ex))
        .query(&mut server.client())
        .unwrap();
    assert_eq!(raw, 0);
}

// Operations of different lengths share one call: each one sees exactly its own arguments
// (the batch form refills one argument table per operation).
#[tokio::test(flavor = "current_thread")]
async fn operations_of_different_lengths_share_a_call() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ids = submitted(&store, 12).await;
    // 5, 1, 3, 0, 5, 1, 3, 0, ... lines: longer and shorter operations alternate.
    let lines = |i: usize| -> Vec<String> {
        (0..[5, 1, 3, 0][i % 4])
            .map(|n| format!("job {i} line {n}"))
            .collect()
    };
    let before = script_calls(&server);
    let appended = join_all(ids.iter().enumerate().map(|(i, id)| {
        let batch = lines(i);
        let store = store.clone();
        let id = *id;
        async move { store.append_logs(id, None, &batch).await }
    }))
    .await;
    for r in appended {
        r.unwrap();
    }
    assert_eq!(script_calls(&server) - before, 1, "one call for the lot");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.logs(*id, 0).await.unwrap(), lines(i), "job {i}");
    }
}

/// A job's index writes are sent at the end of its call, the last one of the call for each
/// set winning: a job stored failed at submit (its dependency failed already) was added to
/// the pending set and taken out again in one call, and is in the failed set alone.
#[tokio::test]
async fn a_job_indexed_twice_in_one_call_ends_in_its_last_set() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "twice-1", 4_000).await;
    let dep = assigned(&store, &ex, 1).await[0];
    store.mark_running(dep, &ex, 1).await.unwrap();
    store
        .finish(dep, &Outcome::exited(3, false), None)
        .await
        .unwrap();
    let mut spec = job(100).spec;
    spec.depends_on = vec![dep];
    spec.dependency = Dependency::AfterOk;
    let failed = store
        .submit(Job::new(JobId::new(), spec, Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(failed.state, JobState::Failed);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.get(&JobState::Pending).copied().unwrap_or(0),
        0,
        "{counts:?}"
    );
    assert_eq!(counts[&JobState::Failed], 2, "{counts:?}");
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
}
