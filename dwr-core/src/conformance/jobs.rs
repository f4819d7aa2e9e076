//! Conformance checks of submitting, reading, listing, counting and purging jobs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{assert_stamped, assign, at, job, register, spec, store_now, submit, LONG_WAIT};
use crate::error::StoreError;
use crate::executor::HostUsage;
use crate::ids::{ExecutorId, JobId};
use crate::job::{AbortCause, Job, JobState, Outcome};
use crate::spec::{JobSpec, PRIORITY_AGING_JOBS};
use crate::store::{Assignment, JobQuery, JobStore, Submission};

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

fn query(state: Option<JobState>, offset: usize, limit: usize) -> JobQuery {
    JobQuery {
        state,
        offset,
        limit,
    }
}

/// A submitted job reads back equal to what `submit` returned, stamped with the store's
/// clock whatever the caller's clock said; a second submit of the same id is `JobExists`
/// and leaves the first untouched.
pub async fn submit_get_and_duplicate(store: Arc<dyn JobStore>) {
    // A caller whose clock is far off: the store's clock stamps the job.
    let mut original = Job::new(JobId::new(), spec(500, 256), at(0));
    original.spec.env.insert("KEY".into(), "value".into());
    let before = store_now(&store).await;
    let original = store.submit(original).await.expect("submit");
    assert_stamped(&store, "created_at", Some(original.created_at), before).await;
    assert_eq!(original.updated_at, original.created_at);
    assert_eq!(job(&store, original.id).await, original, "read back");

    let mut other = Job::new(original.id, spec(1000, 512), at(5));
    other.spec.image = "other".into();
    match store.submit(other).await {
        Err(StoreError::JobExists { id }) => assert_eq!(id, original.id),
        r => panic!("duplicate submit: expected JobExists, got {r:?}"),
    }
    assert_eq!(
        job(&store, original.id).await,
        original,
        "duplicate changed it"
    );
    assert_eq!(store.pending_jobs(10).await.expect("pending").len(), 1);
}

/// Every operation on an unknown job is `JobNotFound` naming it; on an unknown executor,
/// `ExecutorNotFound` (or a rejection for a commit).
pub async fn unknown_ids_are_not_found(store: Arc<dyn JobStore>) {
    let id = JobId::new();
    let ghost = ExecutorId::new("ghost");
    let not_found = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::JobNotFound { id: got }) => assert_eq!(got, id, "{what}"),
        other => panic!("{what}: expected JobNotFound, got {other:?}"),
    };
    not_found(store.job(id).await.map(drop), "job");
    not_found(
        store.mark_running(id, &ghost, 1).await.map(drop),
        "mark_running",
    );
    not_found(
        store
            .finish(id, &Outcome::exited(0, false), None)
            .await
            .map(drop),
        "finish",
    );
    not_found(
        store.request_abort(id, AbortCause::User).await.map(drop),
        "request_abort",
    );
    not_found(
        store.append_logs(id, None, &["x".into()]).await,
        "append_logs",
    );
    not_found(store.logs(id, 0).await.map(drop), "logs");
    not_found(
        store.wait_logs(id, 0, Duration::ZERO).await.map(drop),
        "wait_logs",
    );
    let exec = register(&store, "e1", 1000, 1024, &[]).await;
    let commit = Assignment::new(id, exec, vec![]);
    not_found(
        store.commit_assignment(&commit).await.map(drop),
        "commit_assignment",
    );

    match store.executor(&ghost).await {
        Err(StoreError::ExecutorNotFound { id }) => assert_eq!(id, ghost),
        r => panic!("executor: expected ExecutorNotFound, got {r:?}"),
    }
    match store.heartbeat(&ghost, &HostUsage::default()).await {
        Err(StoreError::ExecutorNotFound { id }) => assert_eq!(id, ghost),
        r => panic!("heartbeat: expected ExecutorNotFound, got {r:?}"),
    }
}

/// `jobs` lists newest first, filters by state, and pages with offset and limit.
pub async fn jobs_are_listed_newest_first_with_paging(store: Arc<dyn JobStore>) {
    assert!(store
        .jobs(&JobQuery::default())
        .await
        .expect("jobs")
        .is_empty());
    let mut submitted = Vec::new();
    for _ in 0..5 {
        submitted.push(submit(&store, spec(100, 64)).await);
    }
    let [j1, j2, j3, j4, j5] = submitted[..] else {
        unreachable!()
    };
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    assign(&store, j2, &exec, &[]).await;

    let list = |q: JobQuery| {
        let store = store.clone();
        async move { ids(&store.jobs(&q).await.expect("jobs")) }
    };
    assert_eq!(
        list(JobQuery::default()).await,
        vec![j5, j4, j3, j2, j1],
        "all"
    );
    assert_eq!(list(query(None, 1, 2)).await, vec![j4, j3], "page 2 of 2");
    assert_eq!(list(query(None, 4, 10)).await, vec![j1], "last page");
    assert_eq!(
        list(query(None, 5, 10)).await,
        Vec::<JobId>::new(),
        "past the end"
    );
    assert_eq!(
        list(query(None, 0, 0)).await,
        Vec::<JobId>::new(),
        "limit 0"
    );
    let pending = Some(JobState::Pending);
    assert_eq!(
        list(query(pending, 0, 10)).await,
        vec![j5, j4, j3, j1],
        "pending"
    );
    assert_eq!(
        list(query(pending, 1, 2)).await,
        vec![j4, j3],
        "pending page"
    );
    assert_eq!(
        list(query(Some(JobState::Assigned), 0, 10)).await,
        vec![j2],
        "assigned"
    );
    assert_eq!(
        list(query(Some(JobState::Running), 0, 10)).await,
        Vec::<JobId>::new(),
        "running"
    );
    let full = store
        .jobs(&query(Some(JobState::Assigned), 0, 1))
        .await
        .expect("jobs");
    assert_eq!(full[0].state, JobState::Assigned, "listed jobs are whole");
    assert_eq!(full[0].executor.as_ref(), Some(&exec));
}

/// Every page of all jobs, at every offset and limit, is the slice of the arrival order
/// (newest first) it names, whatever states the jobs are in, and with purged jobs
/// between them: jobs move between states while the pages stay in arrival order. So is
/// every page of the jobs in one state.
pub async fn all_jobs_page_in_arrival_order_across_states(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 100_000, 100_000, &[]).await;
    let mut submitted = Vec::new();
    for i in 0..21 {
        let id = submit(&store, spec(100, 64)).await;
        if i % 3 == 2 {
            // A gap in the arrival order: aborted now, purged below.
            store
                .request_abort(id, AbortCause::User)
                .await
                .expect("abort");
        } else {
            submitted.push(id);
        }
    }
    assert_eq!(
        store.purge_finished(Duration::ZERO).await.expect("purge"),
        7
    );
    // Spread them over the six states, interleaved, so that every page crosses states.
    for (i, id) in submitted.iter().enumerate() {
        let id = *id;
        match i % 6 {
            0 => {}
            1 => {
                assign(&store, id, &exec, &[]).await;
            }
            2 => {
                assign(&store, id, &exec, &[]).await;
                store.mark_running(id, &exec, 1).await.expect("running");
            }
            3 => {
                assign(&store, id, &exec, &[]).await;
                store.mark_running(id, &exec, 1).await.expect("running");
                store
                    .finish(id, &Outcome::exited(0, false), None)
                    .await
                    .expect("finish");
            }
            4 => {
                store
                    .finish(id, &Outcome::failed("gave up"), None)
                    .await
                    .expect("finish");
            }
            _ => {
                store
                    .request_abort(id, AbortCause::User)
                    .await
                    .expect("abort");
            }
        }
    }
    let newest_first: Vec<JobId> = submitted.iter().rev().copied().collect();
    let total = newest_first.len();
    for offset in 0..=total + 1 {
        for limit in 1..=total + 1 {
            let page = ids(&store.jobs(&query(None, offset, limit)).await.expect("jobs"));
            let want = &newest_first[offset.min(total)..(offset + limit).min(total)];
            assert_eq!(page, want, "offset {offset}, limit {limit}");
        }
    }
    // And the pages of each state: the slice of that state's jobs in the same order, the
    // states under way (which a store may index together) too. Job `i` is in state
    // `JobState::ALL[i % 6]`, the lifecycle order the match above follows.
    for (n, state) in JobState::ALL.into_iter().enumerate() {
        let of_state: Vec<JobId> = submitted
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 6 == n)
            .map(|(_, id)| *id)
            .rev()
            .collect();
        let total = of_state.len();
        assert!(total >= 2, "{state}: {total} jobs");
        for offset in 0..=total + 1 {
            for limit in 1..=total + 1 {
                let q = query(Some(state), offset, limit);
                let page = store.jobs(&q).await.expect("jobs");
                assert!(page.iter().all(|job| job.state == state), "{state}");
                let want = &of_state[offset.min(total)..(offset + limit).min(total)];
                assert_eq!(ids(&page), want, "{state}: offset {offset}, limit {limit}");
            }
        }
    }
}

/// `pending_jobs` returns pending jobs oldest first, up to the limit, skipping the others.
pub async fn pending_jobs_in_arrival_order(store: Arc<dyn JobStore>) {
    let mut submitted = Vec::new();
    for _ in 0..5 {
        submitted.push(submit(&store, spec(100, 64)).await);
    }
    let pending = |limit: usize| {
        let store = store.clone();
        async move { ids(&store.pending_jobs(limit).await.expect("pending_jobs")) }
    };
    assert_eq!(pending(10).await, submitted, "all, oldest first");
    assert_eq!(pending(2).await, submitted[..2].to_vec(), "limit");
    assert_eq!(pending(0).await, Vec::<JobId>::new(), "limit 0");

    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    assign(&store, submitted[0], &exec, &[]).await;
    store
        .request_abort(submitted[2], AbortCause::User)
        .await
        .expect("abort");
    let later = submit(&store, spec(100, 64)).await;
    assert_eq!(
        pending(10).await,
        vec![submitted[1], submitted[3], submitted[4], later],
        "assigned and aborted jobs leave the queue, new ones join its end"
    );
    let all_pending = store.pending_jobs(10).await.expect("pending_jobs");
    assert!(all_pending.iter().all(|j| j.state == JobState::Pending));
}

/// `pending_for_placement` returns the queue: by priority, then arrival; `queue_position`
/// is a pending job's place in it. A job ages: one point for every
/// `PRIORITY_AGING_JOBS` jobs submitted after it.
pub async fn pending_jobs_are_queued_by_priority_with_aging(store: Arc<dyn JobStore>) {
    let with = |priority: u8| JobSpec {
        priority,
        ..spec(100, 64)
    };
    let mut ids_by_priority = Vec::new();
    for priority in [50, 90, 10, 90, 50, 100] {
        ids_by_priority.push((priority, submit(&store, with(priority)).await));
    }
    // Highest first; equal priorities in arrival order (a stable sort keeps it).
    ids_by_priority.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    let queue: Vec<JobId> = ids_by_priority.iter().map(|(_, id)| *id).collect();
    let placed = |limit: usize| {
        let store = store.clone();
        async move {
            let queued = store.pending_for_placement(limit).await.expect("queue");
            let keys: Vec<i64> = queued.iter().map(|q| q.key).collect();
            assert!(keys.is_sorted(), "keys in queue order: {keys:?}");
            let jobs: Vec<Job> = queued.into_iter().map(|q| q.job).collect();
            ids(&jobs)
        }
    };
    assert_eq!(placed(10).await, queue, "by priority, then arrival");
    assert_eq!(placed(2).await, queue[..2].to_vec(), "limit");
    for (place, id) in queue.iter().enumerate() {
        let position = store.queue_position(*id).await.expect("position");
        assert_eq!(position, Some(place as u64), "{id}");
    }

    // Leaving the queue: an aborted job has no place, and the ones behind move up.
    store
        .request_abort(queue[1], AbortCause::User)
        .await
        .expect("abort");
    assert_eq!(store.queue_position(queue[1]).await.expect("aborted"), None);
    assert_eq!(
        store.queue_position(queue[2]).await.expect("moved up"),
        Some(1)
    );
    assert!(matches!(
        store.queue_position(JobId::new()).await,
        Err(StoreError::JobNotFound { .. })
    ));
    for id in &queue {
        let _ = store.request_abort(*id, AbortCause::User).await;
    }

    // Aging: a job of priority 1 followed by PRIORITY_AGING_JOBS jobs of priority 0 has
    // gained a point, and goes before a job of priority 2 submitted after them. Without
    // aging the priority-2 job would go first.
    let old = submit(&store, with(1)).await;
    for _ in 0..PRIORITY_AGING_JOBS {
        submit(&store, with(0)).await;
    }
    let newer = submit(&store, with(2)).await;
    assert_eq!(
        placed(2).await,
        vec![old, newer],
        "aged by the arrivals after it"
    );
    // One arrival short of a point, it has not caught up.
    let old = submit(&store, with(1)).await;
    for _ in 0..PRIORITY_AGING_JOBS - 2 {
        submit(&store, with(0)).await;
    }
    let newer = submit(&store, with(2)).await;
    let place = |id| {
        let store = store.clone();
        async move { store.queue_position(id).await.expect("position") }
    };
    assert!(
        place(newer).await < place(old).await,
        "not yet aged by a point"
    );
}

/// `counts` has every state, zero where none, and follows each transition.
pub async fn counts_cover_every_state(store: Arc<dyn JobStore>) {
    let expect = |pending, assigned, running, succeeded, failed, aborted| {
        BTreeMap::from([
            (JobState::Pending, pending),
            (JobState::Assigned, assigned),
            (JobState::Running, running),
            (JobState::Succeeded, succeeded),
            (JobState::Failed, failed),
            (JobState::Aborted, aborted),
        ])
    };
    assert_eq!(
        store.counts().await.expect("counts"),
        expect(0, 0, 0, 0, 0, 0)
    );
    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.push(submit(&store, spec(100, 64)).await);
    }
    assert_eq!(
        store.counts().await.expect("counts"),
        expect(6, 0, 0, 0, 0, 0)
    );
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    for &j in &jobs[..4] {
        assign(&store, j, &exec, &[]).await;
    }
    for &j in &jobs[..3] {
        store.mark_running(j, &exec, 1).await.expect("running");
    }
    store
        .finish(jobs[0], &Outcome::exited(0, false), None)
        .await
        .expect("finish");
    store
        .finish(jobs[1], &Outcome::exited(2, false), None)
        .await
        .expect("finish");
    store
        .request_abort(jobs[5], AbortCause::User)
        .await
        .expect("abort");
    assert_eq!(
        store.counts().await.expect("counts"),
        expect(1, 1, 1, 1, 1, 1)
    );
}

/// Time between the two finishes of the purge check: far more than the time the check's
/// calls take, so that half of it separates them.
const PURGE_GAP: Duration = Duration::from_millis(400);

/// `purge_finished` deletes terminal jobs that finished longer ago than the age given (by
/// the store's clock), with their logs, and nothing else.
pub async fn purge_finished_deletes_old_terminal_jobs(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let old = submit(&store, spec(100, 64)).await;
    let recent = submit(&store, spec(100, 64)).await;
    let pending = submit(&store, spec(100, 64)).await;
    let running = submit(&store, spec(100, 64)).await;
    store
        .append_logs(old, None, &["old line".into()])
        .await
        .expect("logs");
    store
        .append_logs(recent, None, &["recent line".into()])
        .await
        .expect("logs");
    assign(&store, running, &exec, &[]).await;
    store
        .mark_running(running, &exec, 1)
        .await
        .expect("running");
    store
        .finish(old, &Outcome::failed("gave up"), None)
        .await
        .expect("finish");
    tokio::time::sleep(PURGE_GAP).await;
    store
        .finish(recent, &Outcome::failed("gave up"), None)
        .await
        .expect("finish");

    assert_eq!(
        store.purge_finished(LONG_WAIT).await.expect("purge"),
        0,
        "nothing finished a minute ago"
    );
    // Older than half the gap: `old` is, `recent` (finished just now) is not.
    assert_eq!(store.purge_finished(PURGE_GAP / 2).await.expect("purge"), 1);
    assert!(
        matches!(store.job(old).await, Err(StoreError::JobNotFound { .. })),
        "purged job still readable"
    );
    assert!(
        matches!(
            store.logs(old, 0).await,
            Err(StoreError::JobNotFound { .. })
        ),
        "purged job's logs still readable"
    );
    for id in [recent, pending, running] {
        job(&store, id).await;
    }
    assert_eq!(
        store.logs(recent, 0).await.expect("logs"),
        vec!["recent line".to_owned()]
    );
    let listed = ids(&store.jobs(&JobQuery::default()).await.expect("jobs"));
    assert!(!listed.contains(&old), "purged job still listed");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Failed], 1, "counts after purge");
    assert_eq!(
        store.purge_finished(PURGE_GAP / 2).await.expect("purge"),
        0,
        "purge twice"
    );
}

/// An idempotency key creates one job: a later submit under it returns that job and stores
/// nothing, concurrent ones create exactly one, another key creates another, and an expired
/// key is free again.
pub async fn submit_with_an_idempotency_key_creates_once(store: Arc<dyn JobStore>) {
    let day = Duration::from_secs(24 * 3600);
    let first = Job::new(JobId::new(), spec(100, 64), at(0));
    let created = match store
        .submit_idempotent(first.clone(), "key-1", day)
        .await
        .expect("submit")
    {
        Submission::Created(job) => job,
        other => panic!("first submit: {other:?}"),
    };
    assert_eq!(created.id, first.id);
    let again = Job::new(JobId::new(), spec(100, 64), at(0));
    match store
        .submit_idempotent(again.clone(), "key-1", day)
        .await
        .expect("submit")
    {
        Submission::Existing(job) => assert_eq!(job, created),
        other => panic!("repeated submit: {other:?}"),
    }
    assert!(matches!(
        store.job(again.id).await,
        Err(StoreError::JobNotFound { .. })
    ));
    let other = Job::new(JobId::new(), spec(100, 64), at(0));
    assert!(matches!(
        store.submit_idempotent(other, "key-2", day).await,
        Ok(Submission::Created(_))
    ));

    // Concurrent submits under one key: exactly one job.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let job = Job::new(JobId::new(), spec(100, 64), at(0));
                store.submit_idempotent(job, "key-3", day).await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for racer in racers {
        match racer.await.expect("task").expect("submit") {
            Submission::Created(job) => {
                created += 1;
                ids.insert(job.id);
            }
            Submission::Existing(job) => {
                ids.insert(job.id);
            }
        }
    }
    assert_eq!((created, ids.len()), (1, 1), "one job for one key");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Pending], 3);

    // A key is kept for its TTL only.
    let short = Duration::from_millis(200);
    let one = Job::new(JobId::new(), spec(100, 64), at(0));
    store
        .submit_idempotent(one, "key-4", short)
        .await
        .expect("submit");
    tokio::time::sleep(short * 2).await;
    let two = Job::new(JobId::new(), spec(100, 64), at(0));
    assert!(matches!(
        store.submit_idempotent(two, "key-4", short).await,
        Ok(Submission::Created(_))
    ));
}

/// `purge_finished_beyond` keeps the `keep` terminal jobs that finished last and deletes
/// the others, with their logs, never touching a job still under way.
pub async fn purge_finished_beyond_keeps_the_newest(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let mut finished = Vec::new();
    for _ in 0..5 {
        let id = submit(&store, spec(100, 64)).await;
        store
            .append_logs(id, None, &["line".into()])
            .await
            .expect("logs");
        store
            .finish(id, &Outcome::failed("gave up"), None)
            .await
            .expect("finish");
        finished.push(id);
        // Distinct finish times, so the order is the clock's as well as the calls'.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pending = submit(&store, spec(100, 64)).await;
    let running = submit(&store, spec(100, 64)).await;
    assign(&store, running, &exec, &[]).await;
    assert_eq!(store.purge_finished_beyond(10).await.expect("purge"), 0);
    assert_eq!(store.purge_finished_beyond(2).await.expect("purge"), 3);
    for id in &finished[..3] {
        assert!(
            matches!(store.job(*id).await, Err(StoreError::JobNotFound { .. })),
            "the oldest finished jobs go first"
        );
        assert!(matches!(
            store.logs(*id, 0).await,
            Err(StoreError::JobNotFound { .. })
        ));
    }
    for id in finished[3..].iter().chain([&pending, &running]) {
        job(&store, *id).await;
    }
    assert_eq!(store.purge_finished_beyond(2).await.expect("purge"), 0);
    assert_eq!(store.purge_finished_beyond(0).await.expect("purge"), 2);
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Failed], 0);
    assert_eq!(counts[&JobState::Pending], 1);
    assert_eq!(counts[&JobState::Assigned], 1);
}
