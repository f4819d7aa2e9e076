//! Retention: deleting finished jobs, by age or beyond a count, oldest first (an array with
//! its last task), and expired idempotency keys.

use super::state::{slot, State};
use super::wait::ring;
use crate::ids::JobId;
use crate::time::Timestamp;

impl State {
    /// Deletes the jobs finished at or before `finished_before`, and the idempotency keys
    /// expired at `now` (see `JobStore::purge_finished`).
    pub(super) fn purge_finished(&mut self, now: Timestamp, finished_before: Timestamp) -> u64 {
        self.idempotency.retain(|_, (_, until)| now <= *until);
        self.purge_oldest(|finished_at, _| finished_at <= finished_before)
    }

    /// Deletes the oldest finished jobs beyond the newest `keep`.
    pub(super) fn purge_finished_beyond(&mut self, keep: u64) -> u64 {
        self.purge_oldest(|_, left| left as u64 > keep)
    }

    /// Deletes finished jobs, the oldest first, while `more` holds of the oldest one's
    /// finish time and the number of finished jobs left; returns how many it deleted.
    fn purge_oldest(&mut self, more: impl Fn(Timestamp, usize) -> bool) -> u64 {
        let mut deleted = 0;
        while let Some((&(finished_at, _), &id)) = self.finished.first_key_value() {
            if !more(finished_at, self.finished.len()) {
                break;
            }
            self.finished.pop_first();
            if let Some(entry) = self.jobs.remove(&id) {
                self.all.remove(&entry.seq);
                self.by_state[slot(entry.job.state)].remove(&entry.seq);
                // Followers of a purged job see JobNotFound on their next check.
                ring(entry.log_notify);
                deleted += 1;
                if let Some(task) = entry.job.array {
                    self.task_deleted(task.array_job_id);
                }
            }
        }
        deleted
    }

    /// Counts a task of `array` deleted; deletes the array with its last task.
    fn task_deleted(&mut self, array: JobId) {
        let Some(entry) = self.arrays.get_mut(&array) else {
            return;
        };
        entry.stored = entry.stored.saturating_sub(1);
        if entry.stored == 0 {
            self.arrays.remove(&array);
            self.dependents.remove(&array);
        }
    }
}
