//! Conformance checks of job logs: append, read from an offset, and follow.

use std::sync::Arc;
use std::time::Duration;

use super::{assign, register, spec, submit, LONG_WAIT, WAKE_BOUND};
use crate::job::Outcome;
use crate::store::{log_cap_marker, JobStore, DEFAULT_LOG_MAX_BYTES};

fn lines(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

/// Appended lines read back in order from any offset; each job has its own log; empty
/// appends and offsets past the end are fine.
pub async fn logs_append_and_read_from_offset(store: Arc<dyn JobStore>) {
    let id = submit(&store, spec(100, 100)).await;
    let other = submit(&store, spec(100, 100)).await;
    assert!(store.logs(id, 0).await.expect("logs").is_empty());
    store
        .append_logs(id, None, &lines(&["a", "b"]))
        .await
        .expect("append");
    store
        .append_logs(id, None, &[])
        .await
        .expect("append nothing");
    store
        .append_logs(
            id,
            None,
            &lines(&["c", "", "line with spaces \t and ünïcödé"]),
        )
        .await
        .expect("append");
    store
        .append_logs(other, None, &lines(&["x"]))
        .await
        .expect("append");
    let all = lines(&["a", "b", "c", "", "line with spaces \t and ünïcödé"]);
    assert_eq!(store.logs(id, 0).await.expect("logs"), all);
    assert_eq!(store.logs(id, 2).await.expect("logs"), all[2..].to_vec());
    assert_eq!(store.logs(id, 5).await.expect("logs"), Vec::<String>::new());
    assert_eq!(
        store.logs(id, 99).await.expect("logs"),
        Vec::<String>::new()
    );
    assert_eq!(store.logs(other, 0).await.expect("logs"), lines(&["x"]));

    // Appending after the job ended is allowed (an agent flushing its last lines).
    store
        .finish(id, &Outcome::failed("x"), None)
        .await
        .expect("finish");
    store
        .append_logs(id, None, &lines(&["late"]))
        .await
        .expect("append");
    assert_eq!(store.logs(id, 5).await.expect("logs"), lines(&["late"]));
}

/// `wait_logs` returns lines already there at once, wakes when lines are appended by
/// another task, wakes (empty) when the job ends, and returns at once for an ended job.
pub async fn wait_logs_wakes_on_append_and_on_finish(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let id = submit(&store, spec(100, 100)).await;
    assign(&store, id, &exec, &[]).await;
    store.mark_running(id, &exec, 1).await.expect("run");
    store
        .append_logs(id, None, &lines(&["first"]))
        .await
        .expect("append");

    let ready = store.wait_logs(id, 0, LONG_WAIT);
    let ready = tokio::time::timeout(WAKE_BOUND, ready)
        .await
        .expect("wait_logs with lines present did not return")
        .expect("wait_logs");
    assert_eq!(ready, lines(&["first"]));

    let appender = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store
                .append_logs(id, None, &lines(&["second", "third"]))
                .await
        })
    };
    let woke = tokio::time::timeout(WAKE_BOUND, store.wait_logs(id, 1, LONG_WAIT))
        .await
        .expect("wait_logs did not wake on an append")
        .expect("wait_logs");
    appender.await.expect("task").expect("append");
    assert!(!woke.is_empty(), "woken with nothing");
    assert_eq!(woke[0], "second");
    assert_eq!(
        store.logs(id, 1).await.expect("logs"),
        lines(&["second", "third"])
    );

    let finisher = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.finish(id, &Outcome::exited(0, false), None).await
        })
    };
    let at_end = tokio::time::timeout(WAKE_BOUND, store.wait_logs(id, 3, LONG_WAIT))
        .await
        .expect("wait_logs did not wake when the job ended")
        .expect("wait_logs");
    assert!(at_end.is_empty());
    assert!(finisher.await.expect("task").expect("finish").changed);

    let ended = tokio::time::timeout(WAKE_BOUND, store.wait_logs(id, 3, LONG_WAIT))
        .await
        .expect("wait_logs on an ended job did not return")
        .expect("wait_logs");
    assert!(ended.is_empty());
}

/// A log keeps at most the default byte cap: the line that would pass it and every later
/// one are dropped, and the log ends with one marker line counting what was dropped,
/// rewritten as more is. Lines up to the cap exactly are kept whole.
pub async fn logs_stop_at_the_byte_cap_with_one_marker(store: Arc<dyn JobStore>) {
    const MIB: usize = 1024 * 1024;
    let id = submit(&store, spec(100, 100)).await;
    let whole = (DEFAULT_LOG_MAX_BYTES as usize) / MIB;
    let big: Vec<String> = (0..whole - 1)
        .map(|i| format!("{i:x}").repeat(MIB)[..MIB].to_owned())
        .collect();
    store.append_logs(id, None, &big).await.expect("append");
    // The last MiB fits exactly; the 10 bytes after it do not, nor anything after them.
    let batch = lines(&["z".repeat(MIB).as_str(), "0123456789", "x"]);
    store.append_logs(id, None, &batch).await.expect("append");
    let marker = log_cap_marker(DEFAULT_LOG_MAX_BYTES, 11, 2);
    assert_eq!(
        store.logs(id, whole).await.expect("logs"),
        vec![marker],
        "the log ends with one marker after the cap"
    );
    store
        .append_logs(id, None, &lines(&["more", ""]))
        .await
        .expect("append");
    let all = store.logs(id, 0).await.expect("logs");
    assert_eq!(all.len(), whole + 1, "one marker, rewritten in place");
    assert_eq!(all[whole - 1], "z".repeat(MIB));
    assert_eq!(all[..whole - 1], big[..]);
    assert_eq!(all[whole], log_cap_marker(DEFAULT_LOG_MAX_BYTES, 15, 4));
    let kept: usize = all[..whole].iter().map(String::len).sum();
    assert_eq!(kept as u64, DEFAULT_LOG_MAX_BYTES);

    // Another job's log has its own cap.
    let other = submit(&store, spec(100, 100)).await;
    store
        .append_logs(other, None, &lines(&["fine"]))
        .await
        .expect("append");
    assert_eq!(store.logs(other, 0).await.expect("logs"), lines(&["fine"]));
}
