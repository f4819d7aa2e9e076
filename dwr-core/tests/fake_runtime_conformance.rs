//! The ContainerRuntime conformance suite on the fake runtime; `dwr-docker` runs the same
//! checks on Docker, so the fake the agent's tests rely on behaves like the real one.

use std::sync::Arc;

use dwr_core::conformance::runtime::{self, Behaviours, RuntimeUnderTest};
use dwr_core::FakeRuntime;

fn fake() -> RuntimeUnderTest {
    RuntimeUnderTest {
        runtime: Arc::new(FakeRuntime::new()),
        image: "dwr-test/busybox:latest".to_owned(),
        behaviours: Behaviours {
            print: |lines| {
                let mut command = vec!["fake".to_owned()];
                command.extend(lines.iter().map(|l| format!("print={l}")));
                command
            },
            exit_with: |code| vec!["fake".into(), format!("exit={code}")],
            until_stopped: || vec!["fake".into(), "hang".into(), "term".into()],
        },
    }
}

#[tokio::test]
async fn create_then_start_once() {
    runtime::create_then_start_once(&fake()).await;
}

#[tokio::test]
async fn logs_stream_in_order_and_end_with_the_container() {
    runtime::logs_stream_in_order_and_end_with_the_container(&fake()).await;
}

#[tokio::test]
async fn exit_codes_are_reported() {
    runtime::exit_codes_are_reported(&fake()).await;
}

#[tokio::test]
async fn stop_ends_a_running_container() {
    runtime::stop_ends_a_running_container(&fake()).await;
}

#[tokio::test]
async fn containers_are_listed_per_executor() {
    runtime::containers_are_listed_per_executor(&fake()).await;
}
