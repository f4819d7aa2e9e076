//! Checks shared by the integration tests of `dwr-core`.

use dwr_core::Executor;

/// Asserts that the executor holds no more than its capacity.
pub fn assert_not_over_allocated(e: &Executor) {
    assert!(
        e.allocated.fits_in(&e.capacity()),
        "{} over-allocated: {:?}",
        e.id(),
        e.allocated
    );
}
