//! Replicas and Sentinel: a state change that waits for its replica (`wait_replicas`), and a
//! store that finds the primary through Sentinels and follows it through a failover.
//! (`dwr-server/tests/failover.rs` kills the primary under load with the real binaries.)

mod common;

use std::time::{Duration, Instant};

use common::{wait_for_replication, RedisServer, Sentinels};
use dwr_core::{Job, JobId, JobSpec, JobStore, StoreError, Timestamp};
use dwr_redis::{RedisConfig, RedisJobStore};

fn job() -> Job {
    let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 500, 256);
    Job::new(JobId::new(), spec, Timestamp::now())
}

fn replica_of(primary: &RedisServer, extra: &[&str]) -> Option<RedisServer> {
    let port = primary.port().to_string();
    let mut args = vec!["--save", "", "--appendonly", "no"];
    args.extend(["--replicaof", "127.0.0.1", &port]);
    args.extend(extra);
    let replica = RedisServer::start_with(&args)?;
    wait_for_replication(&replica);
    Some(replica)
}

/// Holds the replica's main thread (so it acknowledges nothing) for `pause`, from a thread.
fn stall(replica: &RedisServer, pause: Duration) -> std::thread::JoinHandle<()> {
    let mut conn = replica.client();
    let secs = format!("{:.1}", pause.as_secs_f64());
    let stalled = std::thread::spawn(move || {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(secs).query(&mut conn);
    });
    std::thread::sleep(Duration::from_millis(200));
    stalled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_counts_only_once_a_replica_holds_it() {
    let Some(primary) = RedisServer::start() else {
        return;
    };
    let replica = replica_of(&primary, &["--enable-debug-command", "yes"]).unwrap();
    let waiting = RedisJobStore::connect(RedisConfig {
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(300),
        ..primary.config()
    })
    .await
    .unwrap();
    let not_waiting = RedisJobStore::connect(primary.config()).await.unwrap();

    let held = waiting
        .submit(job())
        .await
        .expect("the replica acknowledges");
    let mut on_replica = replica.client();
    let exists: bool = redis::cmd("EXISTS")
        .arg(waiting.keys().job(held.id))
        .query(&mut on_replica)
        .unwrap();
    assert!(
        exists,
        "an acknowledged submit is on the replica when it returns"
    );

    let stalled = stall(&replica, Duration::from_secs(2));
    let started = Instant::now();
    let refused = waiting.submit(job()).await;
    let waited = started.elapsed();
    assert!(
        matches!(refused, Err(StoreError::Unavailable { .. })),
        "{refused:?}"
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // Without the wait the same write returns at once, and reads never wait.
    let started = Instant::now();
    not_waiting.submit(job()).await.unwrap();
    waiting.job(held.id).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    stalled.join().unwrap();

    waiting
        .submit(job())
        .await
        .expect("acknowledged again once the replica answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_the_primary_through_a_sentinel_failover() {
    let Some(primary) = RedisServer::start() else {
        return;
    };
    let replica = replica_of(&primary, &[]).unwrap();
    let sentinels = Sentinels::start(primary.port(), 1);
    // With the wait: a write the old primary takes in the moment before it learns it is a
    // replica is never acknowledged (its replica has left it), so it is retried on the new
    // primary instead of being lost when the old one resyncs (checked: without the wait,
    // the submit below can land on the old primary and vanish).
    let config = RedisConfig {
        sentinels: sentinels.addresses(),
        sentinel_master: Some(Sentinels::MASTER.to_owned()),
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(500),
        ..primary.config()
    };
    let store = RedisJobStore::connect(config.clone()).await.unwrap();
    let before = store.submit(job()).await.unwrap();
    let watching = store.clone();
    let woken = tokio::spawn(async move {
        // A scheduler's wait: woken by the submit after the failover.
        loop {
            watching.wait_for_work(Duration::from_secs(60)).await.ok();
            if watching.pending_jobs(10).await.is_ok_and(|p| p.len() >= 2) {
                return;
            }
        }
    });

    // A failover the operator asks for: the old primary stays up, read-only.
    sentinels.failover();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sentinels.primary_port() != Some(replica.port()) {
        assert!(Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = loop {
        match store.submit(job()).await {
            Ok(job) => break job,
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("submit after the failover: {e}"),
        }
    };
    let mut on_new_primary = replica.client();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut on_new_primary).unwrap();
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
    let exists: bool = redis::cmd("EXISTS")
        .arg(store.keys().job(after.id))
        .query(&mut on_new_primary)
        .unwrap();
    assert!(exists, "the submit went to the new primary");
    assert_eq!(store.job(before.id).await.unwrap().id, before.id);
    // A store connected after the failover finds the new primary at once.
    let late = RedisJobStore::connect(config).await.unwrap();
    assert_eq!(late.job(after.id).await.unwrap().id, after.id);
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("the wake subscription followed the primary")
        .unwrap();
}

/// A store pointed at a read-only replica (as for a moment during a failover, before the
/// Sentinels name the new primary): every change is refused as unavailable, which callers
/// retry, never as a bad answer, whether alone (the plain script) or batched (the batch
/// form); nothing is written. Also a primary refusing writes for `min-replicas-to-write`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_by_the_server_fail_as_unavailable() {
    let Some(primary) = RedisServer::start() else {
        return;
    };
    let replica = replica_of(&primary, &[]).unwrap();
    let on_replica = RedisJobStore::connect(replica.config()).await.unwrap();
    let alone = on_replica.submit(job()).await;
    assert!(
        matches!(alone, Err(StoreError::Unavailable { .. })),
        "{alone:?}"
    );
    let batched = futures::future::join_all((0..20).map(|_| on_replica.submit(job()))).await;
    for result in &batched {
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{result:?}"
        );
    }
    assert_eq!(on_replica.counts().await.unwrap().values().sum::<u64>(), 0);

    // The primary itself, asked to keep two replicas it does not have.
    let mut conn = primary.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg("2")
        .query(&mut conn)
        .unwrap();
    let store = RedisJobStore::connect(primary.config()).await.unwrap();
    let refused = store.submit(job()).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable { .. })),
        "{refused:?}"
    );
}
