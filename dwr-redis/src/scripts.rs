//! The Lua scripts, loaded from `scripts/*.lua` with `include_str!` and prefixed with the
//! key prelude of [`keys`](crate::keys), the job lifecycle generated from [`JobState`]
//! ([`lifecycle_prelude`]) and the shared helpers. Each is called by SHA
//! (`EVALSHA`, falling back to loading it once when the server does not know it, as after
//! a restart). The transitions a job goes through under load also have a batch form
//! ([`batch_form`]), which the store's [`Coalescer`](crate::batch::Coalescer)s send.

use dwr_core::JobState;
use redis::Script;

use crate::batch::{batch_form, single_form};
use crate::keys::lua_prelude;

const COMMON: &str = include_str!("scripts/common.lua");

/// What every script starts with: the key names, the lifecycle, the shared helpers.
fn head() -> String {
    format!("{}{}{COMMON}", lua_prelude(), lifecycle_prelude())
}

/// Lua definitions of the job lifecycle, generated from [`JobState`] as the key names are
/// generated from [`keys`](crate::keys), so that no script spells a state or a legal move by
/// hand: one constant per state (`local S_PENDING = 'pending'`, ...), `STATES` (all of
/// them, in lifecycle order), the sets `TERMINAL` ([`JobState::is_terminal`]) and
/// `HOLDS_RESOURCES` ([`JobState::holds_resources`]), and `CAN_BECOME[from][to]`, true
/// exactly where [`JobState::can_become`] is (`can_become` in `common.lua` reads it).
fn lifecycle_prelude() -> String {
    // A Lua set of the states `is_in` holds for: `{ assigned = true, running = true }`.
    let set = |is_in: &dyn Fn(JobState) -> bool| {
        let members: Vec<String> = JobState::ALL
            .into_iter()
            .filter(|state| is_in(*state))
            .map(|state| format!("{state} = true"))
            .collect();
        if members.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{ {} }}", members.join(", "))
        }
    };
    let mut out = format!(
        "local PRIORITY_AGING_JOBS = {}\nlocal DEFAULT_PRIORITY = {}\n",
        dwr_core::spec::PRIORITY_AGING_JOBS,
        dwr_core::spec::DEFAULT_PRIORITY
    );
    for state in JobState::ALL {
        out.push_str(&format!("local {} = '{state}'\n", lua_constant(state)));
    }
    let all: Vec<String> = JobState::ALL.into_iter().map(lua_constant).collect();
    out.push_str(&format!("local STATES = {{ {} }}\n", all.join(", ")));
    let (terminal, holds) = (set(&JobState::is_terminal), set(&JobState::holds_resources));
    out.push_str(&format!(
        "local TERMINAL = {terminal}\nlocal HOLDS_RESOURCES = {holds}\n"
    ));
    out.push_str("local CAN_BECOME = {\n");
    for from in JobState::ALL {
        let moves = set(&|to| from.can_become(to));
        out.push_str(&format!("  {from} = {moves},\n"));
    }
    out.push_str("}\n");
    out
}

/// The Lua constant holding `state`'s name: `S_PENDING`.
fn lua_constant(state: JobState) -> String {
    format!("S_{}", state.as_str().to_ascii_uppercase())
}

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
    pub queue_usage: Script,
    pub submit_array: Script,
    pub array: Script,
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
        let head = head();
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
            queue_usage: build(include_str!("scripts/queue_usage.lua")),
            submit_array: build(include_str!("scripts/submit_array.lua")),
            array: build(include_str!("scripts/array.lua")),
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
    pub fn all(&self) -> [(&'static str, &Script); 23] {
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
            ("queue_usage", &self.queue_usage),
            ("submit_array", &self.submit_array),
            ("array", &self.array),
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

/// The integration tests' private `redis-server`, for the test that runs the prelude.
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod redis_server;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `from>to` pair that `legal` allows, in lifecycle order.
    fn moves(legal: impl Fn(JobState, JobState) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for from in JobState::ALL {
            for to in JobState::ALL.into_iter().filter(|to| legal(from, *to)) {
                out.push(format!("{from}>{to}"));
            }
        }
        out
    }

    #[test]
    fn the_generated_moves_are_can_become() {
        let lua = lifecycle_prelude();
        assert!(lua.contains("local S_PENDING = 'pending'\n"));
        assert!(
            lua.contains("local TERMINAL = { succeeded = true, failed = true, aborted = true }")
        );
        // Each `  from = { to = true, ... },` line of CAN_BECOME, read back.
        let generated = moves(|from, to| {
            let line = lua
                .lines()
                .find(|line| line.starts_with(&format!("  {from} = ")))
                .unwrap_or_else(|| panic!("no CAN_BECOME entry for {from}"));
            line.contains(&format!(" {to} = true"))
        });
        assert_eq!(generated, moves(JobState::can_become));
    }

    /// Redis runs the generated Lua as `can_become` says: every pair of states through
    /// `common.lua`'s `can_become`, and the names and sets beside it.
    #[test]
    fn redis_reads_the_lifecycle_as_can_become() {
        let Some(server) = super::redis_server::RedisServer::start() else {
            return;
        };
        let body = "
local legal, sets = {}, {}
for _, from in ipairs(STATES) do
  for _, to in ipairs(STATES) do
    if can_become(from, to) then legal[#legal + 1] = from .. '>' .. to end
  end
  if TERMINAL[from] then sets[#sets + 1] = 'terminal:' .. from end
  if HOLDS_RESOURCES[from] then sets[#sets + 1] = 'holds:' .. from end
end
return { legal, sets, { S_PENDING, S_ASSIGNED, S_RUNNING, S_SUCCEEDED, S_FAILED, S_ABORTED } }
";
        let script = Script::new(&format!("{}{body}", head()));
        let (legal, sets, names): (Vec<String>, Vec<String>, Vec<String>) = script
            .arg("lifecycle-test:")
            .invoke(&mut server.client())
            .expect("the lifecycle script runs");
        assert_eq!(legal, moves(JobState::can_become));
        let mut expected = Vec::new();
        for state in JobState::ALL {
            if state.is_terminal() {
                expected.push(format!("terminal:{state}"));
            }
            if state.holds_resources() {
                expected.push(format!("holds:{state}"));
            }
        }
        assert_eq!(sets, expected);
        let wire: Vec<&str> = JobState::ALL.into_iter().map(JobState::as_str).collect();
        assert_eq!(names, wire);
    }
}
