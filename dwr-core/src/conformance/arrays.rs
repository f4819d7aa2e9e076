//! Conformance checks of arrays: one submission of N tasks, at most P under way, an array
//! as a dependency.

use std::sync::Arc;
use std::time::Duration;

use super::{assert_rejected, assign, job, register, run_and_end, spec, submit};
use crate::arrays::{ArraySubmission, ArrayTask, NewArray};
use crate::deps::Dependency;
use crate::error::{Rejection, StoreError};
use crate::ids::JobId;
use crate::job::{JobState, Outcome};
use crate::spec::JobSpec;
use crate::store::{Assignment, JobStore};

/// An array is stored with its tasks, each a pending job that knows its index, under an
/// idempotency key like a job; at most `parallelism` of its tasks are committed at once;
/// the store counts the tasks under way and those that ended.
pub async fn an_array_keeps_its_tasks_and_its_parallelism(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 8000, 8192, &[]).await;
    let array = NewArray::new(spec(100, 64), 5, Some(2));
    let key = Some(("array-key", Duration::from_secs(60)));
    let info = match store.submit_array(&array, key).await.expect("submit") {
        ArraySubmission::Created(info) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (info.id, info.count, info.parallelism, info.active),
        (array.id, 5, Some(2), 0)
    );
    let again = NewArray::new(spec(100, 64), 5, Some(2));
    match store.submit_array(&again, key).await.expect("again") {
        ArraySubmission::Existing(existing) => assert_eq!(existing.id, array.id),
        other => panic!("the key names the first array: {other:?}"),
    }
    let tasks = store.array_tasks(array.id).await.expect("tasks");
    assert_eq!(tasks.len(), 5);
    for (index, (id, state)) in tasks.iter().enumerate() {
        assert_eq!((*id, *state), (array.tasks[index], JobState::Pending));
        let task = job(&store, *id).await;
        let want = ArrayTask {
            array_job_id: array.id,
            index: index as u32,
        };
        assert_eq!(task.array, Some(want));
    }
    assert!(matches!(
        store.array(JobId::new()).await,
        Err(StoreError::JobNotFound { .. })
    ));

    assign(&store, tasks[0].0, &exec, &[]).await;
    assign(&store, tasks[1].0, &exec, &[]).await;
    assert_eq!(store.array(array.id).await.expect("array").active, 2);
    let third = Assignment::new(tasks[2].0, exec.clone(), Vec::new());
    assert_rejected(store.commit_assignment(&third).await, "a third task", |r| {
        *r == Rejection::ArrayAtParallelism { array: array.id }
    });
    store
        .mark_running(tasks[0].0, &exec, 1)
        .await
        .expect("running");
    store
        .finish(tasks[0].0, &Outcome::exited(0, false), Some(1))
        .await
        .expect("finish");
    let info = store.array(array.id).await.expect("array");
    assert_eq!((info.active, info.done, info.not_ok), (1, 1, 0));
    assign(&store, tasks[2].0, &exec, &[]).await;
}

/// Depending on an array is depending on all its tasks: met when the last one ends (with
/// afterok, when every one succeeded), never met (afterok) once one failed and all ended.
pub async fn an_array_is_a_dependency_like_a_job(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 8000, 8192, &[]).await;
    let array = NewArray::new(spec(100, 64), 3, None);
    store.submit_array(&array, None).await.expect("submit");
    let after = |kind| JobSpec {
        depends_on: vec![array.id],
        dependency: kind,
        ..spec(100, 64)
    };
    let ok = submit(&store, after(Dependency::AfterOk)).await;
    let any = submit(&store, after(Dependency::AfterAny)).await;
    assert_eq!(
        job(&store, ok).await.deps_left,
        1,
        "the array is one dependency"
    );

    run_and_end(&store, array.tasks[0], &exec, Outcome::exited(0, false)).await;
    run_and_end(&store, array.tasks[1], &exec, Outcome::exited(1, false)).await;
    assert_eq!(job(&store, any).await.deps_left, 1, "one task still to end");
    run_and_end(&store, array.tasks[2], &exec, Outcome::exited(0, false)).await;
    let (ok, any) = (job(&store, ok).await, job(&store, any).await);
    assert_eq!(ok.state, JobState::Failed, "a task failed");
    assert!(ok.reason.is_some_and(|r| r.contains(&array.id.to_string())));
    assert_eq!((any.state, any.deps_left), (JobState::Pending, 0));
    let info = store.array(array.id).await.expect("array");
    assert_eq!((info.done, info.not_ok), (3, 1));

    // An array that ended counts at once; an unknown id is refused.
    let late = submit(&store, after(Dependency::AfterNotOk)).await;
    assert_eq!(job(&store, late).await.deps_left, 0);
    let unknown = NewArray {
        spec: JobSpec {
            depends_on: vec![JobId::new()],
            ..spec(100, 64)
        },
        ..NewArray::new(spec(100, 64), 2, None)
    };
    assert!(matches!(
        store.submit_array(&unknown, None).await,
        Err(StoreError::UnknownDependency { .. })
    ));
    assert!(matches!(
        store.array(unknown.id).await,
        Err(StoreError::JobNotFound { .. })
    ));
}

/// Retention deletes an array with the last of its tasks: the array stays while any task
/// is stored, readable with the tasks left, and is not found once the last one went.
pub async fn an_array_goes_with_its_last_task(store: Arc<dyn JobStore>) {
    let array = NewArray::new(spec(100, 64), 3, None);
    match store.submit_array(&array, None).await.expect("submit") {
        ArraySubmission::Created(info) => assert_eq!(info.count, 3),
        other => panic!("{other:?}"),
    }
    let other = submit(&store, spec(100, 64)).await;
    for id in &array.tasks {
        store
            .finish(*id, &Outcome::failed("stopped"), None)
            .await
            .expect("finish a task");
    }
    store
        .finish(other, &Outcome::failed("stopped"), None)
        .await
        .expect("finish");

    // The first two tasks go; the array stays, with its last task.
    assert_eq!(store.purge_finished_beyond(2).await.expect("purge"), 2);
    let info = store
        .array(array.id)
        .await
        .expect("the array is still there");
    assert_eq!((info.count, info.done), (3, 3));
    let left = store.array_tasks(array.id).await.expect("tasks");
    assert_eq!(left, vec![(array.tasks[2], JobState::Failed)]);

    // The last task goes, and the array with it; the job beside it stays.
    assert_eq!(store.purge_finished_beyond(1).await.expect("purge"), 1);
    assert!(
        matches!(
            store.array(array.id).await,
            Err(StoreError::JobNotFound { .. })
        ),
        "an array without tasks is still stored"
    );
    assert!(matches!(
        store.array_tasks(array.id).await,
        Err(StoreError::JobNotFound { .. })
    ));
    assert_eq!(job(&store, other).await.state, JobState::Failed);
}
