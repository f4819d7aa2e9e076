//! What a scheduling pass reads of the executors over Redis: only those changed since the
//! last read (every registration, heartbeat, commit and release bumps a counter), merged
//! into what it read before, and always what a whole read of the executors says.

mod common;

use std::time::Duration;

use common::RedisServer;
use dwr_core::{
    Assignment, Executor, ExecutorId, ExecutorRegistration, Expiry, HostUsage, Job, JobId, JobSpec,
    JobStore, Outcome, Timestamp,
};
use dwr_redis::RedisJobStore;
use redis::Commands;

/// The whole read of the executors without what a pass does not read.
fn as_placement_reads(executors: Vec<Executor>) -> Vec<Executor> {
    executors
        .into_iter()
        .map(|e| Executor {
            jobs: Default::default(),
            usage: HostUsage::default(),
            ..e
        })
        .collect()
}

async fn register(store: &RedisJobStore, name: &str) -> ExecutorId {
    let id = ExecutorId::new(name);
    let reg = ExecutorRegistration::new(id.clone(), "127.0.0.1", 4_000, 8_192, Vec::new());
    store.register_executor(&reg).await.unwrap();
    id
}

/// Reads the executors as a pass does on `reader`, checks the read against a whole read,
/// and returns how many executors it read from Redis (the `HMGET`s it caused).
async fn pass_read(reader: &RedisJobStore, writer: &RedisJobStore) -> u64 {
    let before = writer.command_stats().await.unwrap();
    let read = reader.executors_for_placement().await.unwrap();
    let after = writer.command_stats().await.unwrap();
    let whole = as_placement_reads(writer.executors().await.unwrap());
    assert_eq!(read, whole, "a pass's read differs from the whole read");
    after
        .since(&before)
        .calls
        .get("hmget")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_pass_reads_only_the_executors_changed_since_its_last_read() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Two processes on one prefix: a scheduler, and the rest of the system.
    let config = server.config();
    let writer = RedisJobStore::connect(config.clone()).await.unwrap();
    let reader = RedisJobStore::connect(config).await.unwrap();
    let e1 = register(&writer, "e1").await;
    let e2 = register(&writer, "e2").await;
    let e3 = register(&writer, "e3").await;
    assert_eq!(
        pass_read(&reader, &writer).await,
        3,
        "the first read reads all"
    );
    assert_eq!(pass_read(&reader, &writer).await, 0, "nothing changed");

    // A commit and a heartbeat each change one executor.
    let spec = JobSpec::new("img", vec!["true".into()], 1_000, 1_024);
    let job = writer
        .submit(Job::new(JobId::new(), spec, Timestamp::now()))
        .await
        .unwrap();
    let mut assignment = Assignment::new(job.id, e2.clone(), Vec::new());
    assignment.snapshot = Some(job.clone().into());
    writer.commit_assignment(&assignment).await.unwrap();
    assert_eq!(
        pass_read(&reader, &writer).await,
        1,
        "the commit's executor"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    writer.heartbeat(&e1, &HostUsage::default()).await.unwrap();
    assert_eq!(
        pass_read(&reader, &writer).await,
        1,
        "the heartbeat's executor"
    );

    // Running changes nothing a pass reads; the job's end gives its room back on e2.
    writer.mark_running(job.id, &e2, 1).await.unwrap();
    assert_eq!(pass_read(&reader, &writer).await, 0);
    writer
        .finish(job.id, &Outcome::exited(0, false), Some(1))
        .await
        .unwrap();
    assert_eq!(
        pass_read(&reader, &writer).await,
        1,
        "the release's executor"
    );

    // An executor removed: the count disagrees and the pass reads all that are left.
    writer
        .expire_executor(&e3, Expiry::Now, "gone")
        .await
        .unwrap();
    assert_eq!(pass_read(&reader, &writer).await, 2);
    register(&writer, "e3").await;
    assert_eq!(pass_read(&reader, &writer).await, 1, "registered again");

    // A Redis whose counter went back (flushed, or another server): all again.
    let mut raw = server.client();
    let keys = writer.keys();
    let _: () = raw
        .del(&[keys.executors_seq(), keys.executors_changed()])
        .unwrap();
    register(&writer, "e4").await;
    assert_eq!(pass_read(&reader, &writer).await, 4);
    assert_eq!(pass_read(&reader, &writer).await, 0);
}
