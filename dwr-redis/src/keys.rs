//! Every Redis key and channel name dwr uses, in one place (documented in the crate docs).
//!
//! Rust code builds names through [`Keys`]; the Lua scripts get the same names from
//! `lua_prelude`, which is generated from the constants below, so a name is spelled once.

use dwr_core::{ExecutorId, JobId, JobState, DEFAULT_QUEUE};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "dwr:";

/// `job_logs:{job_id}`: the log list of a job. Deliberately *not* prefixed, so that
/// `LRANGE job_logs:<id> 0 -1` works as the original system documented.
pub const LOGS: &str = "job_logs:";

// Suffixes appended to the configured prefix.
const JOB: &str = "job:";
/// `jobs:{state}`: the jobs in a state, by arrival sequence, for the states not under way.
/// Earlier versions also kept `jobs:assigned` and `jobs:running`; a scheduling pass folds
/// what they hold into [`UNDER_WAY`].
const JOBS_BY_STATE: &str = "jobs:";
/// The jobs assigned or running, by arrival sequence: one index for both, so that a start
/// moves the job between no sorted sets (their hashes' `state` tells them apart).
const UNDER_WAY: &str = "jobs:under_way";
/// Counts no index gives: `running` (the running jobs of [`UNDER_WAY`]) and `requeued` (how
/// many times a job went back to a queue).
const JOB_COUNTS: &str = "jobs:counts";
const FINISH_ORDER: &str = "jobs:finish_order";
/// Pending jobs of the default queue in its order (scored by `JobSpec::queue_key`); those
/// of queue `q` are under `jobs:queue:q`.
const QUEUE: &str = "jobs:queue";
/// Pending jobs waiting for their dependencies (in no queue), scored by sequence.
const BLOCKED: &str = "jobs:blocked";
/// The jobs stored with a placement view (`place`) beside a large spec.
const WITH_VIEW: &str = "jobs:with_view";
/// `dependents:{id}`: the jobs waiting on job (or array) `id`, until it ends.
const DEPENDENTS: &str = "dependents:";
/// `array:{id}`: an array's record (count, parallelism, tasks under way and ended).
const ARRAY: &str = "array:";
/// `array_tasks:{id}`: an array's task ids in index order.
const ARRAY_TASKS: &str = "array_tasks:";
/// The names of the queues other than the default that jobs were submitted to.
const QUEUES: &str = "queues";
/// What each queue's jobs hold: fields `<queue>:cpu`, `<queue>:mem`, `<queue>:gpu`.
const QUEUES_HELD: &str = "queues:held";
/// The sorted set by finish time that [`FINISH_ORDER`] replaced; `purge` still drains it.
const JOBS_FINISHED_LEGACY: &str = "jobs:finished";
/// The all-jobs sorted set of earlier versions, read and written no more; `purge` deletes it.
const JOBS_ALL_LEGACY: &str = "jobs:all";
const SEQ: &str = "seq";
const EXECUTORS: &str = "executors";
/// A counter bumped by every change of an executor that placement reads (registration,
/// heartbeat, allocation), and each executor's value of it at its last change (a sorted
/// set): a scheduler reads only the executors changed since its last read.
const EXECUTORS_SEQ: &str = "executors:seq";
const EXECUTORS_CHANGED: &str = "executors:changed";
const EXECUTOR: &str = "executor:";
const EXECUTOR_JOBS: &str = "executor_jobs:";
const EXECUTOR_GPUS: &str = "executor_gpus:";
const EXECUTOR_EVENTS: &str = "executor_events:";
const IDEMPOTENCY: &str = "idempotency:";
const WAKE_CHANNEL: &str = "wake";
/// Pub/sub channel of the changes each script call made, for live views (one message per
/// call, one line per change: see `job_store/changes.rs`).
const CHANGES_CHANNEL: &str = "changes";
const LOG_CHANNEL: &str = "log_events:";

/// Key names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix` (e.g. `dwr:`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn k(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }

    /// Hash of one job.
    pub fn job(&self, id: JobId) -> String {
        format!("{}{JOB}{id}", self.prefix)
    }

    /// Sorted set of the jobs in `state`, scored by arrival sequence: for the states under
    /// way ([`JobState::holds_resources`]), the one index of both ([`Self::under_way`]).
    pub fn jobs_in(&self, state: JobState) -> String {
        if state.holds_resources() {
            self.under_way()
        } else {
            self.state_set(state)
        }
    }

    /// `jobs:{state}` for any state: the index of a state not under way; for assigned and
    /// running, the sets of earlier versions, which a scheduling pass folds into
    /// [`Self::under_way`].
    pub fn state_set(&self, state: JobState) -> String {
        format!("{}{JOBS_BY_STATE}{}", self.prefix, state.as_str())
    }

    /// Sorted set of the assigned and running jobs, scored by arrival sequence.
    pub fn under_way(&self) -> String {
        self.k(UNDER_WAY)
    }

    /// Hash of the counts no index gives: `running`, the running jobs of
    /// [`Self::under_way`] (the assigned ones are the rest), and `requeued`, how many times a
    /// job went back to a queue (a scheduling pass's read of the queued jobs holds until it
    /// moves).
    pub fn job_counts(&self) -> String {
        self.k(JOB_COUNTS)
    }

    /// Sorted set of the pending jobs of `queue` in its order (by `JobSpec::queue_key`).
    /// The default queue keeps the name of the single queue of earlier versions.
    pub fn queue(&self, queue: &str) -> String {
        if queue == DEFAULT_QUEUE {
            self.k(QUEUE)
        } else {
            format!("{}{QUEUE}:{queue}", self.prefix)
        }
    }

    /// Sorted set of the pending jobs waiting for their dependencies, by sequence.
    pub fn blocked(&self) -> String {
        self.k(BLOCKED)
    }

    /// Set of the jobs stored with a placement view beside a large spec.
    pub fn with_view(&self) -> String {
        self.k(WITH_VIEW)
    }

    /// Set of the jobs waiting on job (or array) `id`, until it ends.
    pub fn dependents(&self, id: JobId) -> String {
        format!("{}{DEPENDENTS}{id}", self.prefix)
    }

    /// Hash of an array: `count`, `parallelism`, `active`, `done`, `not_ok`, `created_at`.
    pub fn array(&self, id: JobId) -> String {
        format!("{}{ARRAY}{id}", self.prefix)
    }

    /// List of an array's task ids in index order.
    pub fn array_tasks(&self, id: JobId) -> String {
        format!("{}{ARRAY_TASKS}{id}", self.prefix)
    }

    /// Set of the names of the queues besides the default that jobs were submitted to.
    pub fn queues(&self) -> String {
        self.k(QUEUES)
    }

    /// Hash of what each queue's jobs hold (`<queue>:cpu`, `<queue>:mem`, `<queue>:gpu`).
    pub fn queues_held(&self) -> String {
        self.k(QUEUES_HELD)
    }

    /// List of terminal job ids in the order they finished (oldest first), for purging.
    pub fn finish_order(&self) -> String {
        self.k(FINISH_ORDER)
    }

    /// Set of registered executor ids.
    pub fn executors(&self) -> String {
        self.k(EXECUTORS)
    }

    /// The counter of executor changes (see [`Self::executors_changed`]).
    pub fn executors_seq(&self) -> String {
        self.k(EXECUTORS_SEQ)
    }

    /// Sorted set of executor ids by the value of [`Self::executors_seq`] at their last
    /// change that placement reads.
    pub fn executors_changed(&self) -> String {
        self.k(EXECUTORS_CHANGED)
    }

    /// Hash of one executor (registration, totals, allocations, liveness).
    pub fn executor(&self, id: &ExecutorId) -> String {
        format!("{}{EXECUTOR}{id}", self.prefix)
    }

    /// The arrival sequence counter.
    pub fn seq(&self) -> String {
        self.k(SEQ)
    }

    /// Set of the job ids an executor holds (assigned or running).
    pub fn executor_jobs(&self, id: &ExecutorId) -> String {
        format!("{}{EXECUTOR_JOBS}{id}", self.prefix)
    }

    /// Hash of GPU UUID → job id holding it, per executor.
    pub fn executor_gpus(&self, id: &ExecutorId) -> String {
        format!("{}{EXECUTOR_GPUS}{id}", self.prefix)
    }

    /// List of events (assignments, aborts) for one executor.
    pub fn executor_events(&self, id: &ExecutorId) -> String {
        format!("{}{EXECUTOR_EVENTS}{id}", self.prefix)
    }

    /// The log list of a job (unprefixed).
    pub fn logs(&self, id: JobId) -> String {
        format!("{LOGS}{id}")
    }

    /// String: the id of the job submitted under an idempotency key (expires after 24 h).
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}{IDEMPOTENCY}{key}", self.prefix)
    }

    /// Pub/sub channel announcing work for schedulers.
    pub fn wake_channel(&self) -> String {
        self.k(WAKE_CHANNEL)
    }

    /// Pub/sub channel of the changes every script call makes (jobs entering states, aborts
    /// asked, executors joining and lost), one message per call.
    pub fn changes_channel(&self) -> String {
        self.k(CHANGES_CHANNEL)
    }

    /// Pub/sub channel announcing new log lines (or the end) of a job.
    pub fn log_channel(&self, id: JobId) -> String {
        format!("{}{LOG_CHANNEL}{id}", self.prefix)
    }

    /// What every [`log_channel`](Self::log_channel) starts with.
    pub fn log_channel_prefix(&self) -> String {
        format!("{}{LOG_CHANNEL}", self.prefix)
    }

    /// The `PSUBSCRIBE` pattern matching every job's log channel (the prefix's glob
    /// characters escaped).
    pub fn log_channel_pattern(&self) -> String {
        let mut pattern = String::new();
        for c in self.log_channel_prefix().chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

/// Lua definitions of every key name, prepended to each script: functions of an id
/// (`k_job(id)`), names (`K_SEQ`), and `set_prefix(p)`, which every call runs first with
/// its `ARGV[1]` (the prefix). The names are assigned there, not where they are declared,
/// because the store's function library (see [`crate::scripts`]) is loaded once and serves
/// every prefix: a call with the prefix of the call before it assigns nothing.
pub(crate) fn lua_prelude() -> String {
    // (function, suffix, prefixed, kept): a kept name is made once per prefix and
    // remembered, for the ids a call repeats from one operation to the next (states,
    // executors): building a key is a concatenation, which hashes the whole new string.
    let fns: [(&str, &str, bool, bool); 12] = [
        ("k_job", JOB, true, false),
        ("k_state", JOBS_BY_STATE, true, true),
        ("k_exec", EXECUTOR, true, true),
        ("k_exec_jobs", EXECUTOR_JOBS, true, true),
        ("k_exec_gpus", EXECUTOR_GPUS, true, true),
        ("k_events", EXECUTOR_EVENTS, true, true),
        ("ch_logs", LOG_CHANNEL, true, false),
        ("k_logs", LOGS, false, false),
        ("k_idem", IDEMPOTENCY, true, false),
        ("k_dependents", DEPENDENTS, true, false),
        ("k_array", ARRAY, true, false),
        ("k_array_tasks", ARRAY_TASKS, true, false),
    ];
    let names = [
        ("K_FINISH_ORDER", FINISH_ORDER),
        ("K_QUEUE", QUEUE),
        ("K_QUEUES", QUEUES),
        ("K_BLOCKED", BLOCKED),
        ("K_WITH_VIEW", WITH_VIEW),
        ("K_UNDER_WAY", UNDER_WAY),
        ("K_JOB_COUNTS", JOB_COUNTS),
        ("K_QUEUES_HELD", QUEUES_HELD),
        ("K_FINISHED_LEGACY", JOBS_FINISHED_LEGACY),
        ("K_ALL_LEGACY", JOBS_ALL_LEGACY),
        ("K_SEQ", SEQ),
        ("K_EXECUTORS", EXECUTORS),
        ("K_EXECUTORS_SEQ", EXECUTORS_SEQ),
        ("K_EXECUTORS_CHANGED", EXECUTORS_CHANGED),
        ("CH_WAKE", WAKE_CHANNEL),
        ("CH_CHANGES", CHANGES_CHANNEL),
    ];
    let declared: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
    // The kept names: a table per function (`k_state_kept`: id -> name) for the prefix of
    // the call, emptied when the prefix changes; none added past KEPT_MAX names (a fleet of
    // executors is bounded, not small).
    let mut out = format!(
        "local P\nlocal {}\nlocal KEPT_N, KEPT_MAX = 0, 16384\n",
        declared.join(", ")
    );
    let mut kept_tables = Vec::new();
    for (name, suffix, prefixed, kept) in fns {
        let head = if prefixed { "P .. " } else { "" };
        if kept {
            kept_tables.push(format!("{name}_kept"));
            out.push_str(&format!(
                "local {name}_kept = {{}}\n\
                 local function {name}(id)\n\
                 \x20 local key = {name}_kept[id]\n\
                 \x20 if key then return key end\n\
                 \x20 key = {head}'{suffix}' .. id\n\
                 \x20 if KEPT_N < KEPT_MAX then {name}_kept[id], KEPT_N = key, KEPT_N + 1 end\n\
                 \x20 return key\n\
                 end\n"
            ));
        } else {
            out.push_str(&format!(
                "local function {name}(id) return {head}'{suffix}' .. id end\n"
            ));
        }
    }
    out.push_str("local function set_prefix(p)\n  if p == P then return end\n  P = p\n");
    let empty = vec!["{}"; kept_tables.len()];
    out.push_str(&format!(
        "  KEPT_N, {} = 0, {}\n",
        kept_tables.join(", "),
        empty.join(", ")
    ));
    for (name, suffix) in names {
        out.push_str(&format!("  {name} = P .. '{suffix}'\n"));
    }
    out.push_str("end\n");
    // The pending jobs of queue `q` (nil, false: a hash field not set, or '' for the default
    // queue).
    out.push_str(&format!(
        "local DEFAULT_QUEUE = '{DEFAULT_QUEUE}'\n\
         local function k_queue(q)\n\
         \x20 if not q or q == '' or q == DEFAULT_QUEUE then return K_QUEUE end\n\
         \x20 return K_QUEUE .. ':' .. q\n\
         end\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_except_logs() {
        let keys = Keys::new("t1:");
        let id: JobId = "6f1c1d4e-8d3b-4c55-9d0e-0a3c2b1f9e77".parse().unwrap();
        assert_eq!(keys.job(id), format!("t1:job:{id}"));
        assert_eq!(keys.jobs_in(JobState::Pending), "t1:jobs:pending");
        assert_eq!(keys.jobs_in(JobState::Running), "t1:jobs:under_way");
        assert_eq!(keys.jobs_in(JobState::Assigned), keys.under_way());
        assert_eq!(keys.state_set(JobState::Running), "t1:jobs:running");
        assert_eq!(keys.logs(id), format!("job_logs:{id}"));
        assert_eq!(
            keys.executor_events(&ExecutorId::new("e1")),
            "t1:executor_events:e1"
        );
    }

    #[test]
    fn the_lua_prelude_defines_the_same_names() {
        let lua = lua_prelude();
        assert!(lua.contains("local function k_job(id) return P .. 'job:' .. id end"));
        assert!(lua.contains("local function k_logs(id) return 'job_logs:' .. id end"));
        assert!(lua.contains("  K_FINISH_ORDER = P .. 'jobs:finish_order'"));
    }
}
