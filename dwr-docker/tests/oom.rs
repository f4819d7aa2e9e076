//! The OOM kill of a container over its memory limit, reported by DockerRuntime.
//!
//! A test binary of its own, so that it runs alone: with the other Docker tests starting,
//! stopping and loading containers around it, the engine (Docker 20.10 with containerd
//! 1.6, cgroup v2) now and then recorded the kill as exit 137 without `OOMKilled`, even
//! when asked again seconds later: the engine's event was lost, not late. Run on its own
//! it reported the kill every time.

mod common;

use common::Harness;

#[tokio::test]
async fn a_job_over_its_memory_limit_is_oom_killed() {
    let Some(h) = Harness::default().await else {
        return;
    };
    // The engine learns of an OOM kill from containerd's cgroup watcher, which is armed just
    // after the container starts: an allocation in the very first instants can be killed
    // unseen (exit 137, OOMKilled false). A second of sleep keeps the test off that race.
    let mut spec = h.spec(&["sh", "-c", "sleep 1; head -c 100m /dev/zero | tail"]);
    spec.memory_mib = 16;
    let (status, _) = h.run(&spec).await;
    assert!(status.oom_killed, "{status:?}");
    assert_eq!(status.code, 137);
    h.finish().await;
}
