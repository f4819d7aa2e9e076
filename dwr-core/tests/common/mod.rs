//! Checks and helpers shared by the integration tests of `dwr-core` (each test binary uses
//! some of them).
#![allow(dead_code)]

use dwr_core::{Executor, InMemoryJobStore, Job, JobQuery, JobState, JobStore};

/// A single-threaded runtime for a property test's case.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every job of `store` in `state`, or every job (`None`), newest first.
pub async fn jobs_in(store: &InMemoryJobStore, state: Option<JobState>) -> Vec<Job> {
    store
        .jobs(&JobQuery {
            state,
            offset: 0,
            limit: usize::MAX,
        })
        .await
        .unwrap()
}

/// Asserts that the executor holds no more than its capacity.
pub fn assert_not_over_allocated(e: &Executor) {
    assert!(
        e.allocated.fits_in(&e.capacity()),
        "{} over-allocated: {:?}",
        e.id(),
        e.allocated
    );
}
