//! The Lua scripts, loaded from `scripts/*.lua` with `include_str!` and prefixed with the
//! key prelude of [`keys`](crate::keys) and the shared helpers. Each is called by SHA
//! (`EVALSHA`, falling back to loading it once when the server does not know it, as after
//! a restart). The transitions a job goes through under load also have a batch form
//! ([`batch_form`]), which the store's [`Coalescer`](crate::batch::Coalescer)s send.

use redis::Script;

use crate::batch::{batch_form, single_form};
use crate::keys::lua_prelude;

const COMMON: &str = include_str!("scripts/common.lua");

/// Every script of the store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub submit: Script,
    pub commit_assignment: Script,
    pub mark_running: Script,
    pub finish: Script,
    pub request_abort: Script,
    pub expire_executor: Script,
    pub register_executor: Script,
    pub heartbeat: Script,
    pub append_logs: Script,
    pub read_logs: Script,
    pub list_jobs: Script,
    pub pending_placement: Script,
    pub executors: Script,
    pub purge: Script,
    pub check_invariants: Script,
    /// Batch forms of the transitions every job goes through.
    pub batch: BatchScripts,
}

/// The batch forms (see [`batch_form`]) of the per-job transitions.
#[derive(Debug)]
pub(crate) struct BatchScripts {
    pub submit: Script,
    pub commit_assignment: Script,
    pub mark_running: Script,
    pub finish: Script,
    pub append_logs: Script,
}

impl Scripts {
    /// Assembles every script (prelude + helpers + body).
    pub fn new() -> Self {
        let head = format!("{}{COMMON}", lua_prelude());
        let build = |body: &str| Script::new(&single_form(&head, body));
        let batch = |body: &str| Script::new(&batch_form(&head, body));
        Self {
            submit: build(include_str!("scripts/submit.lua")),
            commit_assignment: build(include_str!("scripts/commit_assignment.lua")),
            mark_running: build(include_str!("scripts/mark_running.lua")),
            finish: build(include_str!("scripts/finish.lua")),
            request_abort: build(include_str!("scripts/request_abort.lua")),
            expire_executor: build(include_str!("scripts/expire_executor.lua")),
            register_executor: build(include_str!("scripts/register_executor.lua")),
            heartbeat: build(include_str!("scripts/heartbeat.lua")),
            append_logs: build(include_str!("scripts/append_logs.lua")),
            read_logs: build(include_str!("scripts/read_logs.lua")),
            list_jobs: build(include_str!("scripts/list_jobs.lua")),
            pending_placement: build(include_str!("scripts/pending_placement.lua")),
            executors: build(include_str!("scripts/executors.lua")),
            purge: build(include_str!("scripts/purge.lua")),
            check_invariants: build(include_str!("scripts/check_invariants.lua")),
            batch: BatchScripts {
                submit: batch(include_str!("scripts/submit.lua")),
                commit_assignment: batch(include_str!("scripts/commit_assignment.lua")),
                mark_running: batch(include_str!("scripts/mark_running.lua")),
                finish: batch(include_str!("scripts/finish.lua")),
                append_logs: batch(include_str!("scripts/append_logs.lua")),
            },
        }
    }

    /// All scripts with their names, for loading them up front.
    pub fn all(&self) -> [(&'static str, &Script); 20] {
        [
            ("submit", &self.submit),
            ("commit_assignment", &self.commit_assignment),
            ("mark_running", &self.mark_running),
            ("finish", &self.finish),
            ("request_abort", &self.request_abort),
            ("expire_executor", &self.expire_executor),
            ("register_executor", &self.register_executor),
            ("heartbeat", &self.heartbeat),
            ("append_logs", &self.append_logs),
            ("read_logs", &self.read_logs),
            ("list_jobs", &self.list_jobs),
            ("pending_placement", &self.pending_placement),
            ("executors", &self.executors),
            ("purge", &self.purge),
            ("check_invariants", &self.check_invariants),
            ("batch submit", &self.batch.submit),
            ("batch commit_assignment", &self.batch.commit_assignment),
            ("batch mark_running", &self.batch.mark_running),
            ("batch finish", &self.batch.finish),
            ("batch append_logs", &self.batch.append_logs),
        ]
    }
}
