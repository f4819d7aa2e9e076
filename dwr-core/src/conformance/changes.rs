//! Conformance of `JobStore::changes`: every change made after the subscription, in order,
//! with nothing for refused operations.

use std::sync::Arc;
use std::time::Duration;

use super::{assign, outlive_short_lease, register, register_short_lease, spec, submit};
use crate::changes::{Change, ChangeReceiver};
use crate::job::{AbortCause, JobState, Outcome};
use crate::store::{Expiry, JobStore};

/// The next change, within a liveness bound.
async fn next(changes: &mut ChangeReceiver) -> Change {
    tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("a change within 10 s")
        .expect("the feed is open")
}

/// A job's life, an abort asked, a refused transition (no change), an executor joining
/// and being lost: each change once, in the order made.
pub async fn changes_follow_jobs_and_executors_in_order(store: Arc<dyn JobStore>) {
    let mut changes = store.changes().await.expect("subscribe to changes");
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    assert_eq!(
        next(&mut changes).await,
        Change::ExecutorJoined { id: exec.clone() }
    );

    let id = submit(&store, spec(100, 100)).await;
    let job = |from, to| Change::Job { id, from, to };
    assert_eq!(
        next(&mut changes).await,
        Change::Submitted {
            id,
            queue: crate::queues::DEFAULT_QUEUE.to_owned()
        }
    );
    assign(&store, id, &exec, &[]).await;
    assert_eq!(
        next(&mut changes).await,
        job(JobState::Pending, JobState::Assigned)
    );
    // Refused: no change.
    assert!(store
        .finish(id, &Outcome::exited(0, false), Some(7))
        .await
        .is_err());
    store.mark_running(id, &exec, 1).await.expect("run");
    assert_eq!(
        next(&mut changes).await,
        job(JobState::Assigned, JobState::Running)
    );
    store
        .request_abort(id, AbortCause::User)
        .await
        .expect("abort");
    assert_eq!(
        next(&mut changes).await,
        Change::AbortRequested {
            id,
            preempted: false
        }
    );
    store
        .finish(id, &AbortCause::User.outcome(), Some(1))
        .await
        .expect("finish");
    assert_eq!(
        next(&mut changes).await,
        job(JobState::Running, JobState::Aborted)
    );

    let short = register_short_lease(&store, "e2").await;
    assert_eq!(
        next(&mut changes).await,
        Change::ExecutorJoined { id: short.clone() }
    );
    let held = submit(&store, spec(100, 100)).await;
    assert_eq!(
        next(&mut changes).await,
        Change::Submitted {
            id: held,
            queue: crate::queues::DEFAULT_QUEUE.to_owned()
        }
    );
    assign(&store, held, &short, &[]).await;
    assert_eq!(
        next(&mut changes).await,
        Change::Job {
            id: held,
            from: JobState::Pending,
            to: JobState::Assigned
        }
    );
    outlive_short_lease().await;
    store
        .expire_executor(&short, Expiry::IfLeaseExpired, "executor lost")
        .await
        .expect("expire");
    assert_eq!(
        next(&mut changes).await,
        Change::Job {
            id: held,
            from: JobState::Assigned,
            to: JobState::Failed
        }
    );
    assert_eq!(next(&mut changes).await, Change::ExecutorLost { id: short });
    // A second subscriber sees what is made after it subscribed, the first too.
    let mut late = store.changes().await.expect("subscribe again");
    let last = submit(&store, spec(100, 100)).await;
    let submitted = Change::Submitted {
        id: last,
        queue: crate::queues::DEFAULT_QUEUE.to_owned(),
    };
    assert_eq!(next(&mut late).await, submitted);
    assert_eq!(next(&mut changes).await, submitted);
}
