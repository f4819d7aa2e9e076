//! Job arrays, with Slurm's semantics: one submission of N tasks of one spec, each task a
//! job that knows its index, at most P of them assigned or running at once.
//!
//! An array has an id of its own (the `array_job_id` of its tasks). A task is a job like
//! any other ([`Job::array`](crate::Job::array) says which array and index); its container
//! gets [`ENV_ARRAY_INDEX`] and [`ENV_ARRAY_JOB_ID`]. The store keeps how many tasks are
//! under way and refuses the commit of one more past the parallelism
//! ([`Rejection::ArrayAtParallelism`](crate::Rejection)), and counts the tasks that ended:
//! when the last one ends, the array ends, succeeded when every task did, and the jobs
//! that depend on the array (an array id may be named in `depends_on`) hear of it as of
//! one job.

use serde::{Deserialize, Serialize};

use crate::ids::JobId;
use crate::spec::{JobSpec, SpecError, SpecField};
use crate::time::Timestamp;

/// The most tasks of one array.
pub const MAX_ARRAY_TASKS: u32 = 10_000;

/// The variable holding a task's index in its container.
pub const ENV_ARRAY_INDEX: &str = "DWR_ARRAY_INDEX";
/// The variable holding a task's array id in its container.
pub const ENV_ARRAY_JOB_ID: &str = "DWR_ARRAY_JOB_ID";

/// Which array a job is a task of, and its index (0 to count - 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArrayTask {
    /// The array's id.
    pub array_job_id: JobId,
    /// The task's index.
    pub index: u32,
}

/// An array to submit: its id, the spec of every task, how many, how many at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewArray {
    /// The array's id.
    pub id: JobId,
    /// The spec every task runs.
    pub spec: JobSpec,
    /// The tasks' ids, in index order (their number is the array's count).
    pub tasks: Vec<JobId>,
    /// At most this many tasks assigned or running at once (`None`: no limit).
    pub parallelism: Option<u32>,
}

impl NewArray {
    /// An array of `count` tasks of `spec`, fresh ids for it and each task.
    pub fn new(spec: JobSpec, count: u32, parallelism: Option<u32>) -> Self {
        Self {
            id: JobId::new(),
            spec,
            tasks: (0..count).map(|_| JobId::new()).collect(),
            parallelism,
        }
    }

    /// Checks the count and the parallelism (the spec is checked as a job's).
    pub fn validate(&self) -> Result<(), SpecError> {
        let count = self.tasks.len() as u64;
        if !(1..=u64::from(MAX_ARRAY_TASKS)).contains(&count) {
            return Err(SpecError::OutOfRange {
                field: SpecField::ArrayCount,
                min: 1,
                max: u64::from(MAX_ARRAY_TASKS),
                value: count,
            });
        }
        if let Some(p) = self
            .parallelism
            .filter(|&p| !(1..=MAX_ARRAY_TASKS).contains(&p))
        {
            return Err(SpecError::OutOfRange {
                field: SpecField::ArrayParallelism,
                min: 1,
                max: u64::from(MAX_ARRAY_TASKS),
                value: u64::from(p),
            });
        }
        self.spec.validate()
    }

    /// The jobs of its tasks as submitted.
    pub fn jobs(&self) -> impl Iterator<Item = crate::Job> + '_ {
        self.tasks.iter().enumerate().map(|(index, &id)| {
            let mut job = crate::Job::new(id, self.spec.clone(), Timestamp::default());
            job.array = Some(ArrayTask {
                array_job_id: self.id,
                index: index as u32,
            });
            job
        })
    }
}

/// An array as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayInfo {
    /// Its id.
    pub id: JobId,
    /// Its tasks.
    pub count: u32,
    /// At most this many tasks assigned or running at once (`None`: no limit).
    pub parallelism: Option<u32>,
    /// Tasks assigned or running now.
    pub active: u32,
    /// Tasks that ended.
    pub done: u32,
    /// Of those, how many did not succeed.
    pub not_ok: u32,
    /// When it was submitted.
    pub created_at: Timestamp,
}

impl ArrayInfo {
    /// Whether every task ended.
    pub fn ended(&self) -> bool {
        self.done >= self.count
    }

    /// Whether one more task may be placed now.
    pub fn has_room(&self) -> bool {
        self.parallelism.is_none_or(|p| self.active < p)
    }
}

/// What [`JobStore::submit_array`](crate::JobStore::submit_array) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArraySubmission {
    /// A new array was stored.
    Created(ArrayInfo),
    /// The idempotency key names this array, stored before.
    Existing(ArrayInfo),
}
