//! Behaviour specific to the Redis store, beyond the shared conformance suite: the log
//! key, cap and TTL; key prefixes; connecting from the environment; typed errors while
//! Redis is down and recovery after; blocking waits that do not stall other commands;
//! wake-ups reaching every scheduler.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use dwr_core::{
    Assignment, ExecutorId, ExecutorRegistration, Expiry, Job, JobId, JobQuery, JobSpec, JobState,
    JobStore, NewArray, Outcome, StoreError, Timestamp, DEFAULT_QUEUE,
};
use dwr_redis::{BaselineClients, RedisConfig, RedisJobStore};
use redis::Commands;

/// Liveness bound for wake-ups asked to wait a minute.
const BOUND: Duration = Duration::from_secs(10);

fn job() -> Job {
    let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 500, 256);
    Job::new(JobId::new(), spec, Timestamp::now())
}

async fn executor(store: &RedisJobStore, name: &str) -> ExecutorId {
    let id = ExecutorId::new(name);
    let reg = ExecutorRegistration::new(id.clone(), "127.0.0.1", 4_000, 8_192, Vec::new());
    store.register_executor(&reg).await.unwrap();
    id
}

#[tokio::test]
async fn logs_live_at_job_logs_capped_and_expire_once_terminal() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = RedisConfig {
        log_max_lines: 3,
        log_ttl: Duration::from_secs(3_600),
        ..server.config()
    };
    let store = RedisJobStore::connect(config).await.unwrap();
    let id = store.submit(job()).await.unwrap().id;
    let lines = |r: std::ops::Range<u32>| r.map(|i| format!("line {i}")).collect::<Vec<_>>();
    store.append_logs(id, None, &lines(0..2)).await.unwrap();
    store.append_logs(id, None, &lines(2..5)).await.unwrap();

    let mut raw = server.client();
    let key = format!("job_logs:{id}");
    let stored: Vec<String> = raw.lrange(&key, 0, -1).unwrap();
    assert_eq!(
        stored,
        lines(2..5),
        "LRANGE shows the newest lines, oldest first"
    );
    // Line numbers count every line ever written: followers' offsets stay valid.
    assert_eq!(store.logs(id, 0).await.unwrap(), lines(2..5));
    assert_eq!(store.logs(id, 4).await.unwrap(), lines(4..5));
    assert_eq!(store.logs(id, 5).await.unwrap(), Vec::<String>::new());
    let ttl: i64 = raw.ttl(&key).unwrap();
    assert_eq!(ttl, -1, "no TTL while the job lives");

    store
        .finish(id, &Outcome::failed("stopped"), None)
        .await
        .unwrap();
    let ttl: i64 = raw.ttl(&key).unwrap();
    assert!((1..=3_600).contains(&ttl), "TTL once terminal: {ttl}");
    // A late batch after the end keeps the TTL.
    store.append_logs(id, None, &lines(5..6)).await.unwrap();
    let ttl: i64 = raw.ttl(&key).unwrap();
    assert!((1..=3_600).contains(&ttl), "TTL after a late batch: {ttl}");
    // A job that ends with no lines (no list to expire) gets the TTL with its first late
    // batch.
    let quiet_id = finished(&store).await;
    store
        .append_logs(quiet_id, None, &lines(0..1))
        .await
        .unwrap();
    let ttl: i64 = raw.ttl(format!("job_logs:{quiet_id}")).unwrap();
    assert!(
        (1..=3_600).contains(&ttl),
        "TTL of a late first batch: {ttl}"
    );
    assert!(matches!(
        store.append_logs(JobId::new(), None, &lines(0..1)).await,
        Err(StoreError::JobNotFound { .. })
    ));
}

/// Submits and finishes a job (stamped by Redis TIME).
async fn finished(store: &RedisJobStore) -> JobId {
    let id = store.submit(job()).await.unwrap().id;
    store
        .finish(id, &Outcome::failed("stopped"), None)
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn purge_takes_jobs_by_age_on_the_redis_clock_and_drains_the_older_index() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let gone = |id: JobId| {
        let store = store.clone();
        async move { matches!(store.job(id).await, Err(StoreError::JobNotFound { .. })) }
    };
    let first = finished(&store).await;
    let second = finished(&store).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = finished(&store).await;
    // By age on Redis's clock: the first two finished 400 ms ago, the third just now.
    assert_eq!(
        store
            .purge_finished(Duration::from_millis(200))
            .await
            .unwrap(),
        2
    );
    assert!(gone(first).await && gone(second).await);
    assert!(!gone(third).await);
    assert_eq!(store.purge_finished(Duration::ZERO).await.unwrap(), 1);
    assert!(gone(third).await);

    // A job indexed the way earlier versions did (a sorted set by finish time) is purged
    // too, and the old index emptied.
    let old = finished(&store).await;
    let prefix = store.keys().prefix().to_owned();
    let mut raw = server.client();
    let _: () = raw.del(format!("{prefix}jobs:finish_order")).unwrap();
    let _: () = raw
        .zadd(format!("{prefix}jobs:finished"), old.to_string(), 500)
        .unwrap();
    assert_eq!(store.purge_finished(Duration::ZERO).await.unwrap(), 1);
    assert!(gone(old).await);
    let left: u64 = raw.zcard(format!("{prefix}jobs:finished")).unwrap();
    assert_eq!(left, 0);
    // Their index of all jobs, which nothing reads any more, goes with the first purge.
    let _: () = raw
        .zadd(format!("{prefix}jobs:all"), JobId::new().to_string(), 1)
        .unwrap();
    store.purge_finished(Duration::ZERO).await.unwrap();
    let all: bool = raw.exists(format!("{prefix}jobs:all")).unwrap();
    assert!(!all, "the old all-jobs index is deleted");

    // More due jobs than one script call takes (500): the store calls again.
    let many: Vec<JobId> = futures::future::join_all((0..1_203).map(|_| finished(&store))).await;
    assert_eq!(store.purge_finished(Duration::ZERO).await.unwrap(), 1_203);
    assert!(gone(many[0]).await && gone(many[1_202]).await);
    assert_eq!(store.counts().await.unwrap().values().sum::<u64>(), 0);
    let order = format!("{prefix}jobs:finish_order");
    let left: u64 = raw.llen(&order).unwrap();
    assert_eq!(left, 0, "every entry taken from the finish order");

    // An entry whose hash was deleted by hand just goes; the job behind it is purged.
    let behind = finished(&store).await;
    let _: () = raw.lpush(&order, JobId::new().to_string()).unwrap();
    assert_eq!(store.purge_finished(Duration::ZERO).await.unwrap(), 1);
    assert!(gone(behind).await);
    let left: u64 = raw.llen(&order).unwrap();
    assert_eq!(left, 0);
}

// An array of more tasks than one purge call takes (500): its record counts the tasks
// deleted across calls, and its keys go with the last task.
/// A job or an array task stored with a placement view (a spec over 1 KiB) is named in the
/// set a pass asks, and read as its view, until it is purged; a small job is in neither.
#[tokio::test]
async fn jobs_with_a_placement_view_are_named_until_purged() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let large = || {
        let mut spec = job().spec;
        spec.env.insert("LARGE".to_owned(), "x".repeat(2 * 1024));
        spec
    };
    let big = store
        .submit(Job::new(JobId::new(), large(), Timestamp::now()))
        .await
        .unwrap()
        .id;
    let small = store.submit(job()).await.unwrap().id;
    let array = NewArray::new(large(), 2, None);
    store.submit_array(&array, None).await.unwrap();
    let mut raw = server.client();
    let named = |raw: &mut redis::Connection| -> Vec<JobId> {
        let mut ids: Vec<String> = raw.smembers(store.keys().with_view()).unwrap();
        ids.sort_unstable();
        ids.iter().map(|id| id.parse().unwrap()).collect()
    };
    let mut expected = vec![big, array.tasks[0], array.tasks[1]];
    expected.sort_unstable_by_key(ToString::to_string);
    assert_eq!(named(&mut raw), expected);
    let read = store.pending_for_placement(10).await.unwrap();
    assert_eq!(read.len(), 4);
    for queued in &read {
        assert_eq!(
            queued.job.spec.is_placement_view(),
            queued.job.id != small,
            "job {} read as a view",
            queued.job.id
        );
    }

    let failed = Outcome::failed("stopped");
    for id in [big, small, array.tasks[0], array.tasks[1]] {
        store.finish(id, &failed, None).await.unwrap();
    }
    assert_eq!(named(&mut raw).len(), 3, "an end does not purge");
    assert_eq!(store.purge_finished(Duration::ZERO).await.unwrap(), 4);
    let left: bool = raw.exists(store.keys().with_view()).unwrap();
    assert!(!left, "the set goes with its last member");
}

#[tokio::test]
async fn an_array_and_its_keys_go_with_its_last_task() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let array = NewArray::new(job().spec, 600, None);
    store.submit_array(&array, None).await.unwrap();
    let failed = Outcome::failed("stopped");
    for r in futures::future::join_all(
        array
            .tasks
            .iter()
            .map(|id| store.finish(*id, &failed, None)),
    )
    .await
    {
        r.unwrap();
    }
    let prefix = store.keys().prefix().to_owned();
    let mut raw = server.client();
    let record = format!("{prefix}array:{}", array.id);
    assert_eq!(store.purge_finished_beyond(100).await.unwrap(), 500);
    let purged: u64 = raw.hget(&record, "purged").unwrap();
    assert_eq!(purged, 500, "the tasks deleted so far are counted");
    assert_eq!(store.purge_finished(Duration::ZERO).await.unwrap(), 100);
    let left: Vec<String> = raw.keys(format!("*{}*", array.id)).unwrap();
    assert!(left.is_empty(), "keys of the purged array: {left:?}");
    assert!(matches!(
        store.array(array.id).await,
        Err(StoreError::JobNotFound { .. })
    ));
}

#[tokio::test]
async fn prefixes_keep_stores_apart_and_every_key_is_named() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (server.store().await, server.store().await);
    let id = a.submit(job()).await.unwrap().id;
    a.append_logs(id, None, &["x".into()]).await.unwrap();
    executor(&a, "e1").await;
    assert!(matches!(
        b.job(id).await,
        Err(StoreError::JobNotFound { .. })
    ));
    assert!(b.jobs(&JobQuery::default()).await.unwrap().is_empty());
    assert!(b.executors().await.unwrap().is_empty());

    let prefix = a.keys().prefix().to_owned();
    let keys: Vec<String> = server.client().keys("*").unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        assert!(
            key.starts_with(&prefix) || key == format!("job_logs:{id}"),
            "key {key} outside the prefix {prefix}"
        );
    }
}

#[tokio::test]
async fn connects_from_environment_variables() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_HOST", "127.0.0.1".to_owned()),
        ("REDIS_PORT", server.port().to_string()),
        ("REDIS_DB", "2".to_owned()),
    ]);
    let config = RedisConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let store = RedisJobStore::connect(config).await.unwrap();
    let id = store.submit(job()).await.unwrap().id;
    let mut raw = server.client();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut raw).unwrap();
    let exists: bool = raw.exists(format!("dwr:job:{id}")).unwrap();
    assert!(
        exists,
        "the job lives in database 2 under the default prefix"
    );

    let url = HashMap::from([(
        "REDIS_URL",
        format!("redis://127.0.0.1:{}/2", server.port()),
    )]);
    let config = RedisConfig::from_lookup(|k| url.get(k).cloned()).unwrap();
    let store = RedisJobStore::connect(config).await.unwrap();
    assert_eq!(store.job(id).await.unwrap().id, id);
}

#[tokio::test]
async fn connecting_to_nothing_is_a_typed_error() {
    let config = RedisConfig {
        host: "127.0.0.1".into(),
        port: common::free_port(),
        reconnect_retries: 0,
        connect_timeout: Duration::from_secs(1),
        ..RedisConfig::default()
    };
    let err = RedisJobStore::connect(config).await.unwrap_err();
    assert!(matches!(err, dwr_redis::Error::Connect { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_typed_while_redis_is_down_and_work_after() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = RedisConfig {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        reconnect_retries: 1,
        reconnect_max_delay: Duration::from_millis(100),
        ..server.config()
    };
    let store = Arc::new(RedisJobStore::connect(config).await.unwrap());
    let ex = executor(&store, "e1").await;
    let in_flight = {
        let (store, ex) = (store.clone(), ex.clone());
        tokio::spawn(async move { store.next_event(&ex, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill9();
    let blocked = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("a blocked pop returns when Redis dies")
        .unwrap();
    assert!(
        matches!(blocked, Err(StoreError::Unavailable { .. })),
        "in flight: {blocked:?}"
    );
    let id = JobId::new();
    for (what, result) in [
        ("job", store.job(id).await.map(|_| ())),
        ("submit", store.submit(job()).await.map(|_| ())),
        ("counts", store.counts().await.map(|_| ())),
        (
            "next_event",
            store
                .next_event(&ex, Duration::from_millis(200))
                .await
                .map(|_| ()),
        ),
    ] {
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{what} while down: {result:?}"
        );
    }
    server.restart();
    // The server came back empty (no persistence): the store reconnects by itself.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match store.submit(job()).await {
            Ok(_) => break,
            Err(StoreError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("after restart: {e}"),
        }
    }
    assert_eq!(store.jobs(&JobQuery::default()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_event_wait_does_not_stall_other_commands() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = Arc::new(server.store().await);
    let ex = executor(&store, "e1").await;
    let waiter = {
        let (store, ex) = (store.clone(), ex.clone());
        tokio::spawn(async move { store.next_event(&ex, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let j = job();
    let id = j.id;
    tokio::time::timeout(BOUND, async {
        store.submit(j).await.unwrap();
        for _ in 0..50 {
            store.job(id).await.unwrap();
        }
        let assignment = Assignment::new(id, ex.clone(), Vec::new());
        store.commit_assignment(&assignment).await.unwrap();
    })
    .await
    .expect("commands ran while another task was blocked in BLPOP");
    let event = tokio::time::timeout(BOUND, waiter)
        .await
        .expect("the waiter woke on the commit")
        .unwrap()
        .unwrap();
    assert_eq!(event.map(|e| e.job_id()), Some(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_submit_wakes_every_scheduler() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config();
    let a = RedisJobStore::connect(config.clone()).await.unwrap();
    let b = RedisJobStore::connect(config.clone()).await.unwrap();
    // The first call returns at once (nothing seen yet) and subscribes.
    for s in [&a, &b] {
        tokio::time::timeout(BOUND, s.wait_for_work(Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap();
    }
    let waits = tokio::spawn(async move {
        tokio::join!(
            a.wait_for_work(Duration::from_secs(60)),
            b.wait_for_work(Duration::from_secs(60))
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let submitter = RedisJobStore::connect(config).await.unwrap();
    submitter.submit(job()).await.unwrap();
    let (ra, rb) = tokio::time::timeout(BOUND, waits)
        .await
        .expect("both schedulers woke on one submit")
        .unwrap();
    ra.unwrap();
    rb.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_finish_abort_and_expiry_release_exactly_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(
            RedisJobStore::connect(config.clone()).await.unwrap(),
        ));
    }
    let admin = &stores[0];
    let gpus: Vec<dwr_core::GpuDevice> = (0..8)
        .map(|i| dwr_core::GpuDevice {
            index: i,
            uuid: format!("GPU-{i}"),
            model: "NVIDIA H200".into(),
            memory_mib: 1,
        })
        .collect();
    let ex = ExecutorId::new("e1");
    let reg = ExecutorRegistration::new(ex.clone(), "127.0.0.1", 64_000, 65_536, gpus);
    for round in 0..20 {
        admin.register_executor(&reg).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..8 {
            let spec =
                JobSpec::new("img", vec![], 1_000, 1_024).with_gpus(1, dwr_core::GpuModel::Any);
            let j = Job::new(JobId::new(), spec, Timestamp::now());
            ids.push(j.id);
            let assignment = Assignment::new(j.id, ex.clone(), vec![format!("GPU-{i}")]);
            admin.submit(j).await.unwrap();
            admin.commit_assignment(&assignment).await.unwrap();
        }
        // Three handles race: one finishes every job, one aborts every job, one expires
        // the executor, at once.
        let (a, b, c) = (stores[0].clone(), stores[1].clone(), stores[2].clone());
        let (ids_a, ids_b, ex_c) = (ids.clone(), ids.clone(), ex.clone());
        let finisher = tokio::spawn(async move {
            for id in ids_a {
                // Failed is legal from assigned (succeeded would need running first).
                a.finish(id, &Outcome::failed("container error"), None)
                    .await
                    .unwrap_or_else(|e| panic!("finish {id}: {e}"));
            }
        });
        let aborter = tokio::spawn(async move {
            for id in ids_b {
                match b.request_abort(id, dwr_core::AbortCause::User).await {
                    Ok(_) | Err(StoreError::AlreadyTerminal { .. }) => {}
                    Err(e) => panic!("abort {id}: {e}"),
                }
            }
        });
        // Odd rounds add an executor expiry to the race; even rounds keep the executor, so
        // a double release would show in its allocation (negative, or not the jobs' sum).
        let expire = round % 2 == 1;
        let expirer = tokio::spawn(async move {
            if expire {
                c.expire_executor(&ex_c, Expiry::Now, "executor lost")
                    .await
                    .unwrap();
            }
        });
        finisher.await.unwrap();
        aborter.await.unwrap();
        expirer.await.unwrap();
        assert_eq!(
            admin.check_invariants().await.unwrap(),
            Vec::<String>::new(),
            "round {round}"
        );
        for id in &ids {
            assert!(admin.job(*id).await.unwrap().state.is_terminal());
        }
        // Registered again (or still registered): nothing held, invariants hold.
        let now = admin.register_executor(&reg).await.unwrap();
        assert!(
            now.allocated.is_zero() && now.gpu_holders.is_empty() && now.jobs.is_empty(),
            "round {round}: {now:?}"
        );
        assert_eq!(
            admin.check_invariants().await.unwrap(),
            Vec::<String>::new()
        );
    }
}

#[tokio::test]
async fn the_invariant_check_sees_a_tampered_allocation() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "e1").await;
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
    let key = format!("{}executor:{ex}", store.keys().prefix());
    let _: i64 = server.client().hincr(&key, "cpu_alloc", 500).unwrap();
    let found = store.check_invariants().await.unwrap();
    assert!(
        found.iter().any(|v| v.contains("e1: allocated 500")),
        "{found:?}"
    );
}

/// A new job's hash holds what it has beyond a new job's defaults, each field once: no
/// update time (it is its creation time), no GPUs, no OOM flag, no default queue; read back,
/// it is the job submitted.
#[tokio::test]
async fn a_new_jobs_hash_holds_no_defaults() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let submitted = store.submit(job()).await.unwrap();
    let hash: HashMap<String, String> = server
        .client()
        .hgetall(store.keys().job(submitted.id))
        .unwrap();
    let mut fields: Vec<&str> = hash.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["cpu", "created_at", "id", "mem", "seq", "spec", "state"]
    );
    assert_eq!(hash["id"], submitted.id.to_string());
    // A GPU count only with GPUs.
    let mut gpus = job();
    gpus.spec.gpu.count = 2;
    let gpus = store.submit(gpus).await.unwrap();
    let ngpu: Option<String> = server
        .client()
        .hget(store.keys().job(gpus.id), "ngpu")
        .unwrap();
    assert_eq!(ngpu.as_deref(), Some("2"));
    assert_eq!(store.job(gpus.id).await.unwrap(), gpus);
    let read = store.job(submitted.id).await.unwrap();
    assert_eq!(read.updated_at, read.created_at);
    assert_eq!(read, submitted);
    // Its queue key only away from the default priority; GPU ids only with GPUs.
    let urgent = Job {
        spec: JobSpec {
            priority: 90,
            ..job().spec
        },
        ..job()
    };
    let urgent = store.submit(urgent).await.unwrap().id;
    let qk: Option<String> = server
        .client()
        .hget(store.keys().job(urgent), "qk")
        .unwrap();
    assert_eq!(qk.as_deref(), Some("-89997"), "sequence 3 less 90,000");
    let ex = executor(&store, "e1").await;
    let assigned = store
        .commit_assignment(&Assignment::new(submitted.id, ex, Vec::new()))
        .await
        .unwrap();
    assert!(assigned.gpu_ids.is_empty());
    let gpu_ids: bool = server
        .client()
        .hexists(store.keys().job(submitted.id), "gpu_ids")
        .unwrap();
    assert!(!gpu_ids, "no gpu_ids without GPUs");
}

#[tokio::test]
async fn queues_keep_their_keys_and_counts_through_every_move() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let keys = store.keys().clone();
    let ex = executor(&store, "e1").await;
    let in_queue = |queue: &str| Job {
        spec: job().spec.with_queue(queue),
        ..job()
    };
    let clean = || async { store.check_invariants().await.unwrap() };
    let research = store.submit(in_queue("research")).await.unwrap().id;
    let default = store.submit(job()).await.unwrap().id;
    let research_2 = store.submit(in_queue("research")).await.unwrap().id;
    assert_eq!(clean().await, Vec::<String>::new());
    let mut raw = server.client();
    let named: Vec<String> = raw.smembers(keys.queues()).unwrap();
    assert_eq!(named, ["research"], "the default queue is not named");
    let queued: Vec<String> = raw.zrange(keys.queue("research"), 0, -1).unwrap();
    assert_eq!(queued, [research.to_string(), research_2.to_string()]);
    let queued: Vec<String> = raw.zrange(keys.queue(DEFAULT_QUEUE), 0, -1).unwrap();
    assert_eq!(queued, [default.to_string()]);

    for id in [research, default] {
        store
            .commit_assignment(&Assignment::new(id, ex.clone(), Vec::new()))
            .await
            .unwrap();
        assert_eq!(clean().await, Vec::<String>::new());
    }
    let held: HashMap<String, i64> = raw.hgetall(keys.queues_held()).unwrap();
    assert_eq!(
        (
            held["research:cpu"],
            held["research:mem"],
            held["default:cpu"]
        ),
        (500, 256, 500)
    );
    assert!(
        !held.contains_key("research:gpu"),
        "no GPU field without GPUs: {held:?}"
    );
    store.mark_running(research, &ex, 1).await.unwrap();
    store
        .finish(research, &Outcome::exited(0, false), Some(1))
        .await
        .unwrap();
    store
        .request_abort(research_2, dwr_core::AbortCause::User)
        .await
        .unwrap();
    store
        .expire_executor(&ex, Expiry::Now, "gone")
        .await
        .unwrap();
    assert_eq!(clean().await, Vec::<String>::new());
    let held: HashMap<String, i64> = raw.hgetall(keys.queues_held()).unwrap();
    assert!(held.values().all(|n| *n == 0), "all given back: {held:?}");
    assert!(store.queue_usage().await.unwrap().is_empty());

    // A job moved to another queue's set by hand is caught.
    let moved = store.submit(in_queue("research")).await.unwrap().id;
    let _: i64 = raw.zrem(keys.queue("research"), moved.to_string()).unwrap();
    let _: i64 = raw
        .zadd(keys.queue(DEFAULT_QUEUE), moved.to_string(), 1)
        .unwrap();
    let found = clean().await;
    assert!(
        found
            .iter()
            .any(|v| v.contains("of queue research is in queue default")),
        "{found:?}"
    );
}

/// A pass names the heads of the queues in one script and reads their hashes after it:
/// a job that left its queue in between (committed, ended, deleted) is left out, as it looks
/// to the second read (its queue entry still there, its hash moved on or gone).
#[tokio::test]
async fn a_pass_leaves_out_jobs_that_moved_on_after_their_queue_was_read() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let mut raw = server.client();
    let ids: Vec<JobId> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(store.submit(job()).await.unwrap().id);
        }
        ids
    };
    let keys = store.keys();
    let _: i64 = raw
        .hset(keys.job(ids[0]), "state", JobState::Assigned.as_str())
        .unwrap();
    let _: i64 = raw.del(keys.job(ids[2])).unwrap();
    let queued = store.pending_for_placement(10).await.unwrap();
    let read: Vec<JobId> = queued.iter().map(|q| q.job.id).collect();
    assert_eq!(read, [ids[1], ids[3]]);
    assert!(queued.iter().all(|q| q.job.state == JobState::Pending));
}

/// A pass reads the hashes of only the queued jobs new since the last pass read the queue
/// (a hash does not change while its job waits there), and all of them again once a job
/// went back to a queue.
#[tokio::test]
async fn a_pass_reads_only_the_jobs_new_at_the_heads() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let mut raw = server.client();
    let hgetalls = || async {
        let stats = store.command_stats().await.unwrap();
        stats.calls.get("hgetall").copied().unwrap_or(0)
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(store.submit(job()).await.unwrap().id);
    }
    let pass = || async {
        let before = hgetalls().await;
        let queued = store.pending_for_placement(100).await.unwrap();
        let read: Vec<JobId> = queued.iter().map(|q| q.job.id).collect();
        (read, hgetalls().await - before)
    };
    assert_eq!(pass().await, (ids.clone(), 5));
    assert_eq!(pass().await, (ids.clone(), 0), "none read again");
    ids.push(store.submit(job()).await.unwrap().id);
    assert_eq!(pass().await, (ids.clone(), 1), "the new one alone");
    // One assigned leaves the queue and what the pass kept.
    let ex = executor(&store, "e1").await;
    store
        .commit_assignment(&Assignment::new(ids[0], ex, Vec::new()))
        .await
        .unwrap();
    assert_eq!(pass().await, (ids[1..].to_vec(), 0));
    // A job back in a queue (a retry, a preemption) counts `requeued`: all read again.
    let _: i64 = raw.hincr(store.keys().job_counts(), "requeued", 1).unwrap();
    assert_eq!(pass().await, (ids[1..].to_vec(), 5));
    assert_eq!(pass().await, (ids[1..].to_vec(), 0));
}

#[tokio::test]
async fn pending_jobs_stored_before_the_queue_join_it_at_the_default_priority() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let mut raw = server.client();
    let prefix = store.keys().prefix().to_owned();
    let urgent = Job {
        spec: JobSpec {
            priority: 90,
            ..job().spec
        },
        ..job()
    };
    let (old, urgent) = (
        store.submit(job()).await.unwrap().id,
        store.submit(urgent).await.unwrap().id,
    );
    // The older job as an earlier version stored it: no queue entry, no queue key.
    let _: i64 = raw
        .zrem(store.keys().queue(DEFAULT_QUEUE), old.to_string())
        .unwrap();
    let _: i64 = raw.hdel(format!("{prefix}job:{old}"), "qk").unwrap();
    assert!(!store.check_invariants().await.unwrap().is_empty());

    let queue: Vec<JobId> = store
        .pending_for_placement(10)
        .await
        .unwrap()
        .iter()
        .map(|q| q.job.id)
        .collect();
    assert_eq!(queue, [urgent, old], "joined behind the higher priority");
    assert_eq!(store.queue_position(old).await.unwrap(), Some(1));
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
}

/// The jobs under way share one index: a start moves a job between no sorted sets, the
/// running ones are counted beside it, and a page of either state reads past the jobs of
/// the other, across the slices the listing reads the index in.
#[tokio::test]
async fn jobs_under_way_share_one_index_and_pages_of_each_state_read_through_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let keys = store.keys().clone();
    let mut raw = server.client();
    let ex = ExecutorId::new("big");
    let reg = ExecutorRegistration::new(ex.clone(), "127.0.0.1", 1_000_000, 1_000_000, Vec::new());
    store.register_executor(&reg).await.unwrap();
    // 300 jobs under way, every third running: the running ones are spread over the
    // listing's slices of 128.
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(store.submit(job()).await.unwrap().id);
    }
    for id in &ids {
        store
            .commit_assignment(&Assignment::new(*id, ex.clone(), Vec::new()))
            .await
            .unwrap();
    }
    let running: Vec<JobId> = ids.iter().step_by(3).copied().collect();
    for id in &running {
        store.mark_running(*id, &ex, 1).await.unwrap();
    }
    let assigned: Vec<JobId> = ids
        .iter()
        .filter(|id| !running.contains(id))
        .copied()
        .collect();
    let under_way: u64 = raw.zcard(keys.under_way()).unwrap();
    assert_eq!(under_way, 300);
    for state in [JobState::Assigned, JobState::Running] {
        let legacy: bool = raw.exists(keys.state_set(state)).unwrap();
        assert!(!legacy, "no {state} set of its own");
    }
    let counted: u64 = raw.hget(keys.job_counts(), "running").unwrap();
    assert_eq!(counted, 100);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts[&JobState::Assigned], counts[&JobState::Running]),
        (200, 100)
    );
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );

    for (state, of_state) in [
        (JobState::Assigned, &assigned),
        (JobState::Running, &running),
    ] {
        let newest_first: Vec<JobId> = of_state.iter().rev().copied().collect();
        let total = newest_first.len();
        for (offset, limit) in [(0, 500), (0, 7), (90, 20), (127, 3), (150, 60), (195, 10)] {
            let page = store
                .jobs(&JobQuery {
                    state: Some(state),
                    offset,
                    limit,
                })
                .await
                .unwrap();
            let got: Vec<JobId> = page.iter().map(|j| j.id).collect();
            let want = &newest_first[offset.min(total)..(offset + limit).min(total)];
            assert_eq!(got, want, "{state}: offset {offset}, limit {limit}");
        }
    }

    // Ends from both states count the running ones down.
    store
        .finish(running[0], &Outcome::exited(0, false), Some(1))
        .await
        .unwrap();
    store
        .finish(assigned[0], &Outcome::failed("stopped"), Some(1))
        .await
        .unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts[&JobState::Assigned], counts[&JobState::Running]),
        (199, 99)
    );
    store
        .expire_executor(&ex, Expiry::Now, "gone")
        .await
        .unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts[&JobState::Assigned], counts[&JobState::Running]),
        (0, 0)
    );
    let under_way: u64 = raw.zcard(keys.under_way()).unwrap();
    assert_eq!(under_way, 0);
    assert_eq!(
        store.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );

    // A running count tampered with is caught.
    let _: i64 = raw.hincr(keys.job_counts(), "running", 1).unwrap();
    let found = store.check_invariants().await.unwrap();
    assert!(
        found
            .iter()
            .any(|v| v.contains("0 jobs running but 1 counted")),
        "{found:?}"
    );
}

/// Jobs under way as an earlier version indexed them (a sorted set each for assigned and
/// running, no running count) join the one index at the next scheduling pass, counted by
/// their states; a job of those sets no longer under way is dropped.
#[tokio::test]
async fn jobs_under_way_indexed_by_an_earlier_version_join_the_one_index_at_a_pass() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let keys = store.keys().clone();
    let mut raw = server.client();
    let ex = executor(&store, "e1").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = store.submit(job()).await.unwrap().id;
        store
            .commit_assignment(&Assignment::new(id, ex.clone(), Vec::new()))
            .await
            .unwrap();
        ids.push(id);
    }
    store.mark_running(ids[1], &ex, 1).await.unwrap();
    store.mark_running(ids[2], &ex, 1).await.unwrap();
    // As an earlier version would have left them: ids[0] assigned, ids[1] and ids[2]
    // running, and ids[3] in the running set although its hash says it succeeded.
    let seq = |id: JobId| -> f64 { raw_seq(&server, &keys, id) };
    let _: () = redis::pipe()
        .del(keys.under_way())
        .del(keys.job_counts())
        .zadd(
            keys.state_set(JobState::Assigned),
            ids[0].to_string(),
            seq(ids[0]),
        )
        .zadd(
            keys.state_set(JobState::Running),
            ids[1].to_string(),
            seq(ids[1]),
        )
        .zadd(
            keys.state_set(JobState::Running),
            ids[2].to_string(),
            seq(ids[2]),
        )
        .zadd(
            keys.state_set(JobState::Running),
            ids[3].to_string(),
            seq(ids[3]),
        )
        .hset(keys.job(ids[3]), "state", JobState::Succeeded.as_str())
        .query(&mut raw)
        .unwrap();

    store.pending_for_placement(10).await.unwrap();
    let under_way: Vec<String> = raw.zrange(keys.under_way(), 0, -1).unwrap();
    assert_eq!(
        under_way,
        [ids[0].to_string(), ids[1].to_string(), ids[2].to_string()]
    );
    for state in [JobState::Assigned, JobState::Running] {
        let legacy: bool = raw.exists(keys.state_set(state)).unwrap();
        assert!(!legacy, "the {state} set of the earlier version is deleted");
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts[&JobState::Assigned], counts[&JobState::Running]),
        (1, 2)
    );
    let listed: Vec<JobId> = store
        .jobs(&JobQuery {
            state: Some(JobState::Running),
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, [ids[2], ids[1]]);
    // They carry on as any other: a start and ends count.
    store.mark_running(ids[0], &ex, 1).await.unwrap();
    for id in &ids[..3] {
        store
            .finish(*id, &Outcome::exited(0, false), Some(1))
            .await
            .unwrap();
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts[&JobState::Assigned], counts[&JobState::Running]),
        (0, 0)
    );
}

/// A job's arrival sequence as its hash holds it.
fn raw_seq(server: &RedisServer, keys: &dwr_redis::Keys, id: JobId) -> f64 {
    let seq: String = server.client().hget(keys.job(id), "seq").unwrap();
    seq.parse().unwrap()
}

/// How many connections Redis has in pub/sub mode.
fn pubsub_clients(raw: &mut redis::Connection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(raw)
        .unwrap();
    list.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test]
async fn log_followers_share_one_subscription() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = Arc::new(server.store().await);
    let mut raw = server.client();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(store.submit(job()).await.unwrap().id);
    }
    // Two followers per job, all waiting at once.
    let mut waiters = Vec::new();
    for id in ids.iter().chain(ids.iter()) {
        let (store, id) = (store.clone(), *id);
        waiters.push(tokio::spawn(async move {
            store.wait_logs(id, 0, Duration::from_secs(60)).await
        }));
    }
    let deadline = tokio::time::Instant::now() + BOUND;
    while pubsub_clients(&mut raw) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nobody subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let every follower reach its wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pubsub_clients(&mut raw),
        1,
        "80 followers of 40 jobs hold one subscription between them"
    );
    for id in &ids {
        store
            .append_logs(*id, None, &[format!("hello {id}")])
            .await
            .unwrap();
    }
    for (i, waiter) in waiters.into_iter().enumerate() {
        let lines = tokio::time::timeout(BOUND, waiter)
            .await
            .expect("a follower was not woken")
            .unwrap()
            .unwrap();
        assert_eq!(lines, vec![format!("hello {}", ids[i % ids.len()])]);
    }
    assert_eq!(
        pubsub_clients(&mut raw),
        1,
        "the subscription is kept for later followers"
    );
}

#[tokio::test]
async fn redis_memory_grows_by_no_more_than_the_log_cap() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cap: u64 = 1024 * 1024;
    let config = RedisConfig {
        log_max_bytes: cap,
        ..server.config()
    };
    let store = RedisJobStore::connect(config).await.unwrap();
    let mut raw = server.client();
    let used = |raw: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("memory").query(raw).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let id = store.submit(job()).await.unwrap().id;
    let before = used(&mut raw);
    // 32 MiB of output in 16 KiB lines, 64 lines per append.
    let line = "y".repeat(16 * 1024);
    for _ in 0..32 {
        store
            .append_logs(id, None, &vec![line.clone(); 64])
            .await
            .unwrap();
    }
    let grown = used(&mut raw).saturating_sub(before);
    let stored: Vec<String> = raw.lrange(format!("job_logs:{id}"), 0, -1).unwrap();
    let kept: usize = stored[..stored.len() - 1].iter().map(String::len).sum();
    assert_eq!(kept as u64, cap, "16 KiB lines fill the 1 MiB cap exactly");
    assert_eq!(
        stored.last().unwrap(),
        &dwr_core::log_cap_marker(cap, 31 * 1024 * 1024, 31 * 64)
    );
    // The list holds the cap and its own overhead: a 16 KiB line is a list node of its
    // own in a 20 KiB allocator size class, the worst case (measured: 1,333,944 bytes).
    let key_bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("job_logs:{id}"))
        .query(&mut raw)
        .unwrap();
    assert!(
        key_bytes < cap + cap / 3,
        "the log list takes {key_bytes} bytes for a cap of {cap}"
    );
    // The whole server: 32 MiB were sent; besides the list, only transient buffers (the
    // scripts' arguments) and the scripts themselves.
    assert!(
        grown < 2 * cap,
        // Without the cap it would be 32 MiB and more.
        "Redis grew by {grown} bytes for a log capped at {cap}"
    );
    println!("32 MiB appended, 1 MiB cap: log list {key_bytes} bytes, used_memory +{grown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_and_the_cpu_are_read_from_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let before = store.server_cpu_seconds().await.unwrap();
    let calls_before = store.command_stats().await.unwrap();
    let rate = store
        .baseline_evals_per_second(4, Duration::from_millis(300), BaselineClients::Shared)
        .await
        .unwrap();
    assert!(rate > 100.0, "{rate} calls/s");
    let after = store.server_cpu_seconds().await.unwrap();
    assert!(after > before, "CPU {before} -> {after}");
    // Three commands a call (and one DEL a task at the end).
    let ran = store.command_stats().await.unwrap().since(&calls_before);
    let incr = ran.calls.get("incr").copied().unwrap_or(0);
    assert!(incr as f64 >= rate * 0.3 * 0.5, "{incr} INCRs at {rate}/s");
    assert_eq!(ran.calls.get("incr"), ran.calls.get("pexpire"));
    let left: Vec<String> = server
        .client()
        .keys(format!("{}baseline:*", store.keys().prefix()))
        .unwrap();
    assert!(left.is_empty(), "the baseline's keys are gone: {left:?}");
}

/// The unpipelined baseline calls as `redis-benchmark`'s clients do: a connection per task,
/// each call read by the server on its own (with the calls pipelined over one connection,
/// the server reads many per read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unpipelined_baseline_reads_each_call_on_its_own() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let stat = |name: &str| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut server.client())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in INFO stats"))
    };
    let (connections, reads) = (
        stat("total_connections_received"),
        stat("total_reads_processed"),
    );
    let calls_before = store.command_stats().await.unwrap();
    let rate = store
        .baseline_evals_per_second(
            8,
            Duration::from_millis(300),
            BaselineClients::OwnConnection,
        )
        .await
        .unwrap();
    assert!(rate > 100.0, "{rate} calls/s");
    let calls = store.command_stats().await.unwrap().since(&calls_before);
    let evals = calls.calls.get("evalsha").copied().unwrap_or(0)
        + calls.calls.get("eval").copied().unwrap_or(0);
    assert!(evals > 0, "{:?}", calls.calls);
    // Eight connections of their own (and two for the INFO reads here).
    let opened = stat("total_connections_received") - connections;
    assert!((8..=12).contains(&opened), "{opened} connections opened");
    // One read per call at least: nothing went out pipelined.
    let read = stat("total_reads_processed") - reads;
    assert!(read >= evals, "{read} reads for {evals} script calls");
}

/// The changes feed costs nothing while nobody listens: a change publishes only the wake-up
/// until a store follows the changes, and then its changes too.
#[tokio::test]
async fn changes_are_published_only_while_someone_listens() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let publishes = || server.calls("publish");
    let before = publishes();
    store.submit(job()).await.unwrap();
    assert_eq!(publishes() - before, 1, "the wake-up alone");

    // A follower (here a clone of the same store: same key prefix).
    let mut changes = store.clone().changes().await.unwrap();
    let before = publishes();
    let id = store.submit(job()).await.unwrap().id;
    assert_eq!(publishes() - before, 2, "the wake-up and the changes");
    let change = tokio::time::timeout(BOUND, changes.next())
        .await
        .expect("a change comes");
    assert_eq!(
        change,
        Some(dwr_core::Change::Submitted {
            id,
            queue: DEFAULT_QUEUE.to_owned()
        })
    );
}

/// A job's end wakes schedulers only while some job waits in a queue (of any name) for the
/// room it gave back: with every queue empty a pass would place nothing. Its log channel
/// hears the end only while some process follows logs (their pattern subscription).
#[tokio::test]
async fn an_end_wakes_schedulers_only_while_a_job_waits_for_room() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = server.store().await;
    let ex = executor(&store, "w1").await;
    let publishes = || server.calls("publish");
    let running = || async {
        let id = store.submit(job()).await.unwrap().id;
        let assignment = Assignment::new(id, ex.clone(), Vec::new());
        store.commit_assignment(&assignment).await.unwrap();
        id
    };
    let failed = Outcome::failed("stopped");

    let alone = running().await;
    let before = publishes();
    store.finish(alone, &failed, None).await.unwrap();
    assert_eq!(
        publishes() - before,
        0,
        "nobody follows logs or waits for room"
    );

    // A job waiting in a named queue, then in the default one.
    let mut waiting = job();
    waiting.spec.queue = "batch".to_owned();
    let waiting = store.submit(waiting).await.unwrap().id;
    for _ in 0..2 {
        let ending = running().await;
        let before = publishes();
        store.finish(ending, &failed, None).await.unwrap();
        assert_eq!(publishes() - before, 1, "the wake-up");
    }
    store.finish(waiting, &failed, None).await.unwrap();
    store.submit(job()).await.unwrap();
    let ending = running().await;
    let before = publishes();
    store.finish(ending, &failed, None).await.unwrap();
    assert_eq!(publishes() - before, 1, "a job waits in the default queue");

    // A follower's pattern subscription: the job's log channel hears its end.
    let mut follower = server.client();
    let mut follower = follower.as_pubsub();
    follower
        .psubscribe(format!("{}log_events:*", store.keys().prefix()))
        .unwrap();
    follower
        .set_read_timeout(Some(BOUND))
        .expect("read timeout");
    let followed = running().await;
    let before = publishes();
    store.finish(followed, &failed, None).await.unwrap();
    assert_eq!(
        publishes() - before,
        3,
        "the job's log channel, the changes (a pattern may match them) and the wake-up"
    );
    let message = follower.get_message().expect("the end is heard");
    assert_eq!(
        (
            message.get_channel_name().to_owned(),
            message.get_payload::<String>().unwrap()
        ),
        (
            format!("{}log_events:{followed}", store.keys().prefix()),
            "end".to_owned()
        )
    );
}
