//! A job, its states and the legal transitions between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::arrays::ArrayTask;
use crate::deps::Verdict;
use crate::ids::{ExecutorId, JobId};
use crate::retry::{AttemptRecord, RetryCause};
use crate::spec::JobSpec;
use crate::time::Timestamp;

/// Reason recorded on the jobs of an executor whose heartbeat expired (the scheduler's
/// reason goes on to name the executor and its lease: [`executor_lost`]).
pub const REASON_EXECUTOR_LOST: &str = "executor lost";

/// The reason recorded on the jobs of executor `id`, lost after its lease of `lease`
/// ran out: `executor lost: <id> sent no heartbeat for its 3 s lease`.
pub fn executor_lost(id: &ExecutorId, lease: std::time::Duration) -> String {
    format!(
        "{REASON_EXECUTOR_LOST}: {id} sent no heartbeat for its {} lease",
        seconds(lease)
    )
}

/// `3 s`, `0.3 s`, `90 s`: a duration as people read it.
fn seconds(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{} s", d.as_secs_f64())
    }
}
/// Reason recorded on a job stopped for running past its max runtime.
pub const REASON_TIMED_OUT: &str = "timed out";
/// Reason recorded on a job aborted by a user.
pub const REASON_ABORTED: &str = "aborted by user";
/// What the executor reports for a job it stopped because it was preempted (the job then
/// goes back to pending, keeping the reason `preempted by <job id>` its preemption gave it).
pub const REASON_PREEMPTED: &str = "preempted";

/// The state of a job. Lowercase on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for room.
    Pending,
    /// Given to an executor that has not started it yet.
    Assigned,
    /// Its container is running.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited non-zero, was OOM-killed, could not start, timed out or lost its executor.
    Failed,
    /// Aborted on request.
    Aborted,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Aborted,
    ];

    /// True for succeeded, failed and aborted.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Aborted
        )
    }

    /// True while the job holds resources on an executor.
    pub fn holds_resources(self) -> bool {
        matches!(self, JobState::Assigned | JobState::Running)
    }

    /// Whether the lifecycle allows going from `self` to `next`.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Pending, Assigned)
                | (Pending, Failed)
                | (Pending, Aborted)
                | (Assigned, Running)
                | (Assigned, Failed)
                | (Assigned, Aborted)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Aborted)
        )
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Assigned => "assigned",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Aborted => "aborted",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {value:?}: expected one of pending, assigned, running, succeeded, failed, aborted")]
pub struct UnknownJobState {
    /// The text given.
    pub value: String,
}

impl FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownJobState {
                value: s.chars().take(64).collect(),
            })
    }
}

/// The reason of a job preempted by job `by`, from its preemption until its next attempt.
pub fn preempted_by(by: JobId) -> String {
    format!("preempted by {by}")
}

/// Why an abort was requested: a user, the scheduler enforcing the max runtime, or a
/// preemption by a job of higher priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortCause {
    /// A user asked (`DELETE /jobs/{id}`); the job ends `aborted`.
    User,
    /// The job ran past its max runtime; it ends `failed` with reason "timed out".
    TimedOut,
    /// A pending job of higher priority needs its room: once stopped it goes back to
    /// `pending` (not failed, no retry used up).
    Preempted,
}

impl AbortCause {
    /// The terminal state and reason a job stopped for this cause ends with.
    pub fn outcome(self) -> Outcome {
        match self {
            AbortCause::User => Outcome::aborted(REASON_ABORTED),
            AbortCause::TimedOut => Outcome::failed(REASON_TIMED_OUT),
            AbortCause::Preempted => Outcome::aborted(REASON_PREEMPTED),
        }
    }
}

/// How a job ended: the terminal state with its exit code and reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// succeeded, failed or aborted.
    pub state: JobState,
    /// The container's exit code, when it ran.
    pub exit_code: Option<i64>,
    /// Why it ended, in words.
    pub reason: Option<String>,
    /// Whether the kernel OOM-killed the container.
    pub oom_killed: bool,
    /// Why the attempt failed, as far as retries care (`None`: success, abort, timeout, or
    /// a failure no retry can help).
    #[serde(default)]
    pub cause: Option<RetryCause>,
}

impl Outcome {
    /// The outcome of a container that exited with `code` (0 succeeds).
    pub fn exited(code: i64, oom_killed: bool) -> Self {
        let (state, reason) = match (code, oom_killed) {
            (_, true) => (
                JobState::Failed,
                Some("out of memory (OOM killed)".to_owned()),
            ),
            (0, false) => (JobState::Succeeded, None),
            (c, false) => (JobState::Failed, Some(format!("exited with code {c}"))),
        };
        let cause = match (code, oom_killed) {
            (_, true) => Some(RetryCause::Oom),
            (0, false) => None,
            (_, false) => Some(RetryCause::ExitNonzero),
        };
        Self {
            state,
            exit_code: Some(code),
            reason,
            oom_killed,
            cause,
        }
    }

    /// The same outcome attributed to `cause` (for retries).
    pub fn because(mut self, cause: RetryCause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// A failure for `reason`, without an exit code.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            state: JobState::Failed,
            exit_code: None,
            reason: Some(reason.into()),
            oom_killed: false,
            cause: None,
        }
    }

    /// An abort for `reason`.
    pub fn aborted(reason: impl Into<String>) -> Self {
        Self {
            state: JobState::Aborted,
            ..Self::failed(reason)
        }
    }

    /// The same outcome carrying an exit code.
    pub fn with_exit_code(mut self, code: Option<i64>) -> Self {
        self.exit_code = code;
        self
    }
}

/// A job as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What it asked for.
    pub spec: JobSpec,
    /// Where it is in its lifecycle.
    pub state: JobState,
    /// The executor it was assigned to, once assigned.
    pub executor: Option<ExecutorId>,
    /// That executor's IP.
    pub executor_ip: Option<String>,
    /// UUIDs of the GPU devices it holds.
    pub gpu_ids: Vec<String>,
    /// The container's exit code.
    pub exit_code: Option<i64>,
    /// Why it ended (or why it is stuck).
    pub reason: Option<String>,
    /// Whether the container was OOM-killed.
    pub oom_killed: bool,
    /// An abort was requested and not yet carried out.
    pub abort_requested: Option<AbortCause>,
    /// Which assignment of the job this is: 0 while it was never assigned, then 1, 2, ...
    /// (one more at each commit). Every write an executor makes about the job names it, and
    /// the store refuses a write about any other attempt (fencing).
    #[serde(default)]
    pub attempt: u32,
    /// The attempts that ended, oldest first.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// How many of its attempts ended in a preemption (they use up no retry).
    #[serde(default)]
    pub preemptions: u32,
    /// Its dependencies not ended yet: while above 0 it is pending but in no queue.
    #[serde(default)]
    pub deps_left: u32,
    /// Of its dependencies that ended, how many did not succeed.
    #[serde(default)]
    pub deps_not_ok: u32,
    /// When its dependencies were met (`None` without dependencies): its allocation timeout
    /// runs from then.
    #[serde(default)]
    pub ready_at: Option<Timestamp>,
    /// The array it is a task of, and its index (see [`crate::arrays`]).
    #[serde(default)]
    pub array: Option<ArrayTask>,
    /// While pending after a failed attempt: when the next one may be placed (by the
    /// store's clock).
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
    /// Submission time.
    pub created_at: Timestamp,
    /// Time of the last change.
    pub updated_at: Timestamp,
    /// Time it was assigned.
    pub assigned_at: Option<Timestamp>,
    /// Time its container started.
    pub started_at: Option<Timestamp>,
    /// Time it reached a terminal state.
    pub finished_at: Option<Timestamp>,
}

impl Job {
    /// A new pending job.
    pub fn new(id: JobId, spec: JobSpec, now: Timestamp) -> Self {
        Self {
            id,
            spec,
            state: JobState::Pending,
            executor: None,
            executor_ip: None,
            gpu_ids: Vec::new(),
            exit_code: None,
            reason: None,
            oom_killed: false,
            abort_requested: None,
            attempt: 0,
            attempts: Vec::new(),
            preemptions: 0,
            deps_left: 0,
            deps_not_ok: 0,
            ready_at: None,
            array: None,
            retry_at: None,
            created_at: now,
            updated_at: now,
            assigned_at: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// Hears that its dependency `dep` ended (`ok`: it succeeded): the counts are updated
    /// when it waits on, and the verdict says whether it is now ready, or never will be
    /// (see [`Dependency::on_end`](crate::Dependency::on_end)).
    pub fn dependency_ended(&mut self, dep: JobId, ok: bool) -> Verdict {
        let verdict = self
            .spec
            .dependency
            .on_end(self.deps_left, self.deps_not_ok, dep, ok);
        match verdict {
            Verdict::Wait { left, not_ok } => {
                self.deps_left = left;
                self.deps_not_ok = not_ok;
            }
            Verdict::Ready | Verdict::Never(_) => self.deps_left = 0,
        }
        verdict
    }

    /// Whether it is pending for its dependencies (in no queue, not yet placeable).
    pub fn is_blocked(&self) -> bool {
        self.state == JobState::Pending && self.deps_left > 0
    }

    /// The instant its allocation timeout runs from: its submission, when its
    /// dependencies were met, or when its retry's backoff ended, whichever is last.
    pub fn waiting_since(&self) -> Timestamp {
        [Some(self.created_at), self.ready_at, self.retry_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.created_at)
    }

    /// When the job entered its current state.
    pub fn status_date(&self) -> Timestamp {
        match self.state {
            JobState::Pending => self.created_at,
            JobState::Assigned => self.assigned_at.unwrap_or(self.updated_at),
            JobState::Running => self.started_at.unwrap_or(self.updated_at),
            _ => self.finished_at.unwrap_or(self.updated_at),
        }
    }

    /// Moves to `next`, stamping the time; refuses transitions the lifecycle forbids.
    pub fn transition(&mut self, next: JobState, now: Timestamp) -> Result<(), IllegalTransition> {
        if !self.state.can_become(next) {
            return Err(IllegalTransition {
                job: self.id,
                from: self.state,
                to: next,
            });
        }
        self.state = next;
        self.updated_at = now;
        match next {
            JobState::Assigned => self.assigned_at = Some(now),
            JobState::Running => self.started_at = Some(now),
            _ if next.is_terminal() => self.finished_at = Some(now),
            _ => {}
        }
        Ok(())
    }

    /// Ends the job's current attempt with `outcome`: when the attempt failed for a cause
    /// its retry policy names, with retries left and no abort requested, the job goes back
    /// to `pending` until its backoff has passed ([`Ended::Retry`]); otherwise it moves to
    /// the outcome's terminal state ([`Ended::Final`]). An attempt under way that was
    /// preempted (and did not succeed meanwhile) goes back to `pending` at once, keeping the
    /// reason its preemption gave it, and uses up no retry. An attempt that was under way
    /// (assigned or running) leaves an [`AttemptRecord`] either way.
    pub fn end_attempt(
        &mut self,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Result<Ended, IllegalTransition> {
        let under_way = self.state.holds_resources();
        if under_way
            && self.abort_requested == Some(AbortCause::Preempted)
            && outcome.state != JobState::Succeeded
        {
            let mut record = self.attempt_record(outcome, now);
            record.reason = self.reason.clone().or(record.reason);
            self.attempts.push(record);
            self.preemptions += 1;
            self.abort_requested = None;
            self.requeue(now, None);
            return Ok(Ended::Retry { at: now });
        }
        let retry = under_way
            && outcome.state == JobState::Failed
            && self.abort_requested.is_none()
            && self
                .spec
                .retry
                .retries(outcome.cause, self.attempt.saturating_sub(self.preemptions));
        if !retry {
            let record = under_way.then(|| self.attempt_record(outcome, now));
            self.finish(outcome, now)?;
            self.attempts.extend(record);
            return Ok(Ended::Final);
        }
        self.attempts.push(self.attempt_record(outcome, now));
        let delay = self
            .spec
            .retry
            .delay_before(self.attempt.saturating_sub(self.preemptions));
        let at = now.plus(delay);
        self.requeue(now, Some(at));
        self.reason = outcome.reason.clone();
        Ok(Ended::Retry { at })
    }

    /// Back to pending for another attempt, placeable from `retry_at` (at once: `None`).
    fn requeue(&mut self, now: Timestamp, retry_at: Option<Timestamp>) {
        self.state = JobState::Pending;
        self.updated_at = now;
        self.retry_at = retry_at;
        self.executor = None;
        self.executor_ip = None;
        self.gpu_ids.clear();
        self.assigned_at = None;
        self.started_at = None;
        self.exit_code = None;
        self.oom_killed = false;
    }

    fn attempt_record(&self, outcome: &Outcome, now: Timestamp) -> AttemptRecord {
        AttemptRecord {
            attempt: self.attempt,
            executor: self.executor.clone(),
            executor_ip: self.executor_ip.clone(),
            started_at: self.started_at,
            ended_at: now,
            exit_code: outcome.exit_code,
            reason: outcome.reason.clone(),
        }
    }

    /// While waiting for its next attempt: `retry 2/3 in 20 s after: executor lost`.
    pub fn retry_reason(&self, now: Timestamp) -> Option<String> {
        let at = self.retry_at.filter(|_| self.state == JobState::Pending)?;
        let retry = self.attempts.len();
        let after = self
            .attempts
            .last()
            .and_then(|a| a.reason.as_deref())
            .unwrap_or("a failed attempt");
        let wait = at.since(now);
        let when = if wait.is_zero() {
            "due now".to_owned()
        } else {
            format!("in {} s", wait.as_millis().div_ceil(1000))
        };
        let max = self.spec.retry.max_retries;
        Some(format!("retry {retry}/{max} {when} after: {after}"))
    }

    /// Moves to the terminal state of `outcome` and records its details.
    pub fn finish(&mut self, outcome: &Outcome, now: Timestamp) -> Result<(), IllegalTransition> {
        if !outcome.state.is_terminal() {
            return Err(IllegalTransition {
                job: self.id,
                from: self.state,
                to: outcome.state,
            });
        }
        self.transition(outcome.state, now)?;
        self.retry_at = None;
        self.exit_code = outcome.exit_code;
        self.reason = outcome.reason.clone();
        self.oom_killed = outcome.oom_killed;
        self.abort_requested = None;
        Ok(())
    }
}

/// What [`Job::end_attempt`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The job reached its terminal state.
    Final,
    /// The job is pending again; its next attempt may be placed from `at` on.
    Retry {
        /// When.
        at: Timestamp,
    },
}

/// A transition the lifecycle forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job} cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// The job.
    pub job: JobId,
    /// Its state.
    pub from: JobState,
    /// The state refused.
    pub to: JobState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let spec = JobSpec::new("img", vec!["true".into()], 100, 64);
        Job::new(JobId::new(), spec, Timestamp(10))
    }

    #[test]
    fn the_happy_path_stamps_each_transition() {
        let mut j = job();
        j.transition(JobState::Assigned, Timestamp(20)).unwrap();
        j.transition(JobState::Running, Timestamp(30)).unwrap();
        j.finish(&Outcome::exited(0, false), Timestamp(40)).unwrap();
        assert_eq!(j.state, JobState::Succeeded);
        assert_eq!(
            (j.assigned_at, j.started_at, j.finished_at),
            (
                Some(Timestamp(20)),
                Some(Timestamp(30)),
                Some(Timestamp(40))
            )
        );
        assert_eq!(j.status_date(), Timestamp(40));
        assert_eq!(j.exit_code, Some(0));
    }

    #[test]
    fn illegal_transitions_are_refused() {
        for from in JobState::ALL {
            for to in JobState::ALL {
                let legal = from.can_become(to);
                if from.is_terminal() || to == JobState::Pending || from == to {
                    assert!(!legal, "{from} -> {to}");
                }
            }
        }
        let mut j = job();
        assert!(j.transition(JobState::Running, Timestamp(1)).is_err());
        j.finish(&Outcome::aborted("x"), Timestamp(2)).unwrap();
        let err = j
            .finish(&Outcome::exited(0, false), Timestamp(3))
            .unwrap_err();
        assert_eq!((err.from, err.to), (JobState::Aborted, JobState::Succeeded));
        assert_eq!(
            j.finished_at,
            Some(Timestamp(2)),
            "a refused transition changes nothing"
        );
    }

    #[test]
    fn outcomes_of_exits() {
        assert_eq!(Outcome::exited(0, false).state, JobState::Succeeded);
        assert_eq!(Outcome::exited(3, false).state, JobState::Failed);
        let oom = Outcome::exited(137, true);
        assert_eq!((oom.state, oom.oom_killed), (JobState::Failed, true));
        assert_eq!(
            AbortCause::TimedOut.outcome().reason.as_deref(),
            Some(REASON_TIMED_OUT)
        );
    }

    #[test]
    fn states_parse_and_print_lowercase() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
        assert!("Running".parse::<JobState>().is_err());
    }
}
