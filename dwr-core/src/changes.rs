//! [`Change`]: what live views follow ([`JobStore::changes`](crate::JobStore::changes)),
//! and [`ChangeFeed`], the fan-out a store sends its changes on.
//!
//! A change says what happened, not the whole record: a view that wants a job's fields
//! reads the job. Delivery is best effort and in order per store: a subscriber that falls
//! more than [`CHANGES_BUFFER`] changes behind, or a feed that lost its source for a while
//! (a Redis subscription that reconnected), gets a [`Change::Gap`] and should re-read what
//! it shows.

use tokio::sync::broadcast;

use crate::ids::{ExecutorId, JobId};
use crate::job::JobState;

/// Changes a subscriber may fall behind by before it gets a [`Change::Gap`].
pub const CHANGES_BUFFER: usize = 4096;

/// One change of a store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A job was submitted (a task of an array included): it is `pending`.
    Submitted {
        /// The job.
        id: JobId,
        /// Its queue.
        queue: String,
    },
    /// A job moved from state `from` to state `to`.
    Job {
        /// The job.
        id: JobId,
        /// The state it left.
        from: JobState,
        /// The state it entered.
        to: JobState,
    },
    /// An abort of a job under way was asked for (its executor stops it; the job's state
    /// changes when it has).
    AbortRequested {
        /// The job.
        id: JobId,
        /// Asked by the scheduler to make room for a job of higher priority.
        preempted: bool,
    },
    /// An executor registered (or registered again after a restart).
    ExecutorJoined {
        /// The executor.
        id: ExecutorId,
    },
    /// An executor was expired: it missed its lease.
    ExecutorLost {
        /// The executor.
        id: ExecutorId,
    },
    /// Changes may have been missed here: re-read what you show.
    Gap,
}

/// The sending side a store keeps; cheap to clone.
#[derive(Clone, Debug)]
pub struct ChangeFeed(broadcast::Sender<Change>);

impl Default for ChangeFeed {
    fn default() -> Self {
        Self(broadcast::channel(CHANGES_BUFFER).0)
    }
}

impl ChangeFeed {
    /// A feed nobody listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `change` to every current subscriber (nothing when there is none).
    pub fn send(&self, change: Change) {
        let _ = self.0.send(change);
    }

    /// Whether anyone listens: a store may skip building changes nobody reads.
    pub fn has_subscribers(&self) -> bool {
        self.0.receiver_count() > 0
    }

    /// A receiver of the changes sent from now on.
    pub fn subscribe(&self) -> ChangeReceiver {
        ChangeReceiver(self.0.subscribe())
    }
}

/// The receiving side: one per subscriber.
#[derive(Debug)]
pub struct ChangeReceiver(broadcast::Receiver<Change>);

impl ChangeReceiver {
    /// The next change; [`Change::Gap`] after falling behind; `None` once the feed is gone.
    pub async fn next(&mut self) -> Option<Change> {
        match self.0.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Gap),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_a_gap_then_the_rest() {
        let feed = ChangeFeed::new();
        assert!(!feed.has_subscribers());
        let mut rx = feed.subscribe();
        assert!(feed.has_subscribers());
        let id = JobId::new();
        for _ in 0..CHANGES_BUFFER + 1 {
            feed.send(Change::AbortRequested {
                id,
                preempted: false,
            });
        }
        assert_eq!(rx.next().await, Some(Change::Gap));
        assert_eq!(
            rx.next().await,
            Some(Change::AbortRequested {
                id,
                preempted: false
            })
        );
        drop(feed);
        let mut left = 0;
        while rx.next().await.is_some() {
            left += 1;
        }
        assert_eq!(left, CHANGES_BUFFER - 1, "in order, then the end");
    }
}
