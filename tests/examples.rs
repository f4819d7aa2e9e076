//! Runs the flow of `examples/embedded.rs` (scheduler + agent on the in-memory store and the
//! fake runtime) as a test, and checks how each demo job ended.

use std::time::Duration;

use dwr_core::JobState;

#[path = "../examples/embedded.rs"]
#[allow(dead_code)] // the example's `main` is not called here
mod embedded;

#[tokio::test]
async fn the_embedded_example_runs_every_job_to_its_end() {
    let specs = embedded::demo_jobs();
    let count = specs.len();
    let ended = embedded::run_demo(specs, Duration::from_secs(30))
        .await
        .expect("the demo runs to the end");
    assert_eq!(ended.len(), count);
    let [hello, steps, fails, oom, gpu, too_big] = &ended[..] else {
        panic!("{ended:?}");
    };

    assert_eq!(hello.job.state, JobState::Succeeded, "{hello:?}");
    assert_eq!(hello.job.exit_code, Some(0));
    // The first job's log may open with the image pull's progress lines.
    assert_eq!(
        hello.logs.last().map(String::as_str),
        Some("hello from dwr"),
        "{hello:?}"
    );
    assert_eq!(hello.job.executor_ip.as_deref(), Some("127.0.0.1"));

    assert_eq!(steps.job.state, JobState::Succeeded, "{steps:?}");
    assert!(
        steps.logs.ends_with(&["step 1".into(), "step 2".into()]),
        "{steps:?}"
    );

    assert_eq!(fails.job.state, JobState::Failed, "{fails:?}");
    assert_eq!(fails.job.exit_code, Some(3));
    assert_eq!(
        fails.logs.last().map(String::as_str),
        Some("giving up"),
        "{fails:?}"
    );

    assert_eq!(oom.job.state, JobState::Failed, "{oom:?}");
    assert!(oom.job.oom_killed, "{oom:?}");

    assert_eq!(gpu.job.state, JobState::Succeeded, "{gpu:?}");
    assert_eq!(gpu.job.gpu_ids, ["GPU-fake-local-0"]);

    assert_eq!(too_big.job.state, JobState::Failed, "{too_big:?}");
    assert!(too_big.job.executor_ip.is_none(), "{too_big:?}");
    assert!(
        too_big.job.reason.is_some(),
        "a failed job says why: {too_big:?}"
    );
}
