//! The ContainerRuntime conformance suite (in `dwr_core::conformance::runtime`) on the real
//! Docker engine, with the offline test image: the same checks the fake runtime passes.

mod common;

use std::sync::Arc;

use common::Harness;
use dwr_core::conformance::runtime::{run_all_runtime_checks, Behaviours, RuntimeUnderTest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_runtime_passes_the_runtime_conformance_suite() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let t = RuntimeUnderTest {
        runtime: Arc::new(h.runtime.clone()),
        image: h.image.clone(),
        behaviours: Behaviours {
            print: |lines| {
                let mut command = vec!["printf".to_owned(), "%s\\n".to_owned()];
                command.extend(lines.iter().map(|l| (*l).to_owned()));
                command
            },
            exit_with: |code| vec!["sh".into(), "-c".into(), format!("exit {code}")],
            // With the init as PID 1, SIGTERM reaches `sleep`, which ends at once.
            until_stopped: || vec!["sleep".into(), "600".into()],
        },
    };
    run_all_runtime_checks(&t).await;
}
