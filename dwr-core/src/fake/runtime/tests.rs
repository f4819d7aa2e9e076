//! Tests of the fake runtime's containers: exits, stops, logs, listing.

use std::collections::BTreeMap;

use futures::StreamExt;
use tokio::sync::mpsc::unbounded_channel;

use super::*;
use crate::runtime::ContainerRuntimeExt;

fn spec(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        job: JobId::new(),
        attempt: 1,
        executor: ExecutorId::new("e1"),
        executor_ip: "10.0.0.1".into(),
        image: "img".into(),
        command: command.iter().map(|w| (*w).to_owned()).collect(),
        env: BTreeMap::new(),
        cpu_millis: 1000,
        memory_mib: 64,
        gpu_ids: vec![],
        volumes: vec![],
        read_only_rootfs: false,
    }
}

/// Creates and starts a container running `command`.
async fn started(rt: &FakeRuntime, command: &[&str]) -> ContainerId {
    rt.create_and_start(&spec(command)).await.unwrap()
}

async fn texts(rt: &FakeRuntime, id: &ContainerId) -> Vec<String> {
    rt.logs(id).map(|l| l.unwrap().text).collect().await
}

#[tokio::test(start_paused = true)]
async fn a_container_runs_prints_and_exits_with_its_code() {
    let rt = FakeRuntime::new();
    let id = started(&rt, &["fake", "run=5s", "exit=3", "print=a", "print=b"]).await;
    assert_eq!(rt.running_count(), 1);
    let started = Instant::now();
    assert_eq!(texts(&rt, &id).await, ["a", "b"]);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "logs end at exit"
    );
    let status = rt.wait(&id).await.unwrap();
    assert_eq!((status.code, status.oom_killed), (3, false));
    assert_eq!(rt.running_count(), 0);
    rt.remove(&id).await.unwrap();
    rt.remove(&id).await.unwrap();
    assert_eq!((rt.removed_count(), rt.container_count()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn oom_and_echo() {
    let rt = FakeRuntime::new();
    let oom = started(&rt, &["fake", "oom"]).await;
    assert_eq!(
        rt.wait(&oom).await.unwrap(),
        ExitStatus {
            code: 137,
            oom_killed: true
        }
    );
    let echo = started(&rt, &["echo", "hello"]).await;
    assert_eq!(texts(&rt, &echo).await, ["hello"]);
    assert_eq!(rt.wait(&echo).await.unwrap().code, 0);
}

#[tokio::test(start_paused = true)]
async fn a_line_longer_than_the_limit_arrives_in_pieces() {
    let rt = FakeRuntime::new();
    let long: String = (0..10_000).map(|i| format!("{i:x}é")).collect();
    assert!(long.len() > 2 * crate::MAX_LOG_LINE_BYTES);
    let print = format!("print={long}");
    let id = started(&rt, &["fake", &print, "print=after"]).await;
    let lines = texts(&rt, &id).await;
    let (last, pieces) = lines.split_last().unwrap();
    assert_eq!(last, "after");
    assert!(pieces.len() >= long.len().div_ceil(crate::MAX_LOG_LINE_BYTES));
    assert!(pieces
        .iter()
        .all(|p| !p.is_empty() && p.len() <= crate::MAX_LOG_LINE_BYTES));
    assert_eq!(pieces.concat(), long);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_container_is_killed_after_the_grace_period() {
    let rt = Arc::new(FakeRuntime::new());
    let id = started(&rt, &["fake", "hang"]).await;
    let waiter = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { rt.wait(&id).await }
    });
    let before = Instant::now();
    rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(10));
    assert_eq!(waiter.await.unwrap().unwrap().code, 137);
    // Stopping an exited container is fine and changes nothing.
    rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(rt.wait(&id).await.unwrap().code, 137);
}

#[tokio::test(start_paused = true)]
async fn term_handlers_exit_143_at_once_and_short_runs_finish_within_grace() {
    let rt = FakeRuntime::new();
    let term = started(&rt, &["fake", "hang", "term"]).await;
    let before = Instant::now();
    rt.stop(&term, Duration::from_secs(10)).await.unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(rt.wait(&term).await.unwrap().code, 143);

    let short = started(&rt, &["fake", "run=2s", "exit=4"]).await;
    rt.stop(&short, Duration::from_secs(10)).await.unwrap();
    assert_eq!(rt.wait(&short).await.unwrap().code, 4);
}

#[tokio::test]
async fn failures_and_unreachability() {
    let rt = FakeRuntime::new().with_unavailable_image("gone");
    let (tx, mut rx) = unbounded_channel();
    rt.ensure_image("img", tx.clone()).await.unwrap();
    rt.ensure_image("img", tx.clone()).await.unwrap();
    drop(tx.clone());
    assert_eq!(rx.recv().await.unwrap(), "Pulling img");
    assert_eq!(rx.recv().await.unwrap(), "Pulled img");
    assert!(
        rx.try_recv().is_err(),
        "a present image is not pulled again"
    );
    assert!(matches!(
        rt.ensure_image("gone", tx).await,
        Err(RuntimeError::ImageUnavailable { .. })
    ));
    assert!(matches!(
        rt.create_and_start(&spec(&["fake", "pull-fail"])).await,
        Err(RuntimeError::ImageUnavailable { .. })
    ));
    assert!(matches!(
        rt.create_and_start(&spec(&["fake", "start-fail"])).await,
        Err(RuntimeError::StartFailed { .. })
    ));
    assert_eq!(rt.container_count(), 0);
    assert_eq!(rt.started_specs().len(), 2);
    rt.set_unreachable(true);
    assert!(matches!(
        rt.create_and_start(&spec(&["true"])).await,
        Err(RuntimeError::Unreachable { .. })
    ));
    assert!(matches!(
        rt.wait(&ContainerId("fake-9".into())).await,
        Err(RuntimeError::Unreachable { .. })
    ));
    rt.set_unreachable(false);
    assert!(matches!(
        rt.wait(&ContainerId("fake-9".into())).await,
        Err(RuntimeError::ContainerNotFound { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn list_owned_filters_by_executor_and_reports_running() {
    let rt = FakeRuntime::new();
    let hang = spec(&["fake", "hang"]);
    let done = spec(&["true"]);
    let mut other = spec(&["fake", "hang"]);
    other.executor = ExecutorId::new("e2");
    let hang_id = rt.create_and_start(&hang).await.unwrap();
    let done_id = rt.create_and_start(&done).await.unwrap();
    rt.create_and_start(&other).await.unwrap();
    let owned = rt.list_owned(&ExecutorId::new("e1")).await.unwrap();
    assert_eq!(
        owned,
        vec![
            OwnedContainer {
                id: hang_id,
                job: hang.job,
                running: true,
                started: true,
            },
            OwnedContainer {
                id: done_id,
                job: done.job,
                running: false,
                started: true,
            },
        ]
    );
}
