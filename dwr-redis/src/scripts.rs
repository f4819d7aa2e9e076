//! The Lua scripts, loaded from `scripts/*.lua` with `include_str!` and prefixed with the
//! key prelude of [`keys`](crate::keys), the job lifecycle generated from [`JobState`]
//! ([`lifecycle_prelude`]), the shared helpers and the [`runners`] of a body. The
//! transitions a job goes through under load (and its log lines, [`Batched`]) also have
//! one batch form ([`batch_form`]), which the store's
//! [`Coalescer`](crate::batch::Coalescer)s send.
//!
//! On Redis 7 and later every script is a function of one library ([`Library`]), loaded
//! when a store connects to a server that lacks it (`FUNCTION LIST`, then `FUNCTION LOAD`)
//! and called with `FCALL`: the prelude and the helpers, some 600 lines of Lua that an
//! `EVALSHA` runs again at every call (about 11 µs of the server's time per call, most of
//! a lone transition's), run once at load. A call that finds the library missing (a
//! restarted server without persistence, a replica promoted before it had it) loads it and
//! is sent again. On a server without functions (Redis 6) each script is called by SHA
//! (`EVALSHA`, loading it once when the server does not know it). Both run the same text;
//! the library's name carries a hash of it, so that processes of different versions
//! sharing one Redis each call their own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dwr_core::JobState;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, RedisError, RedisResult, Script, Value};

use crate::batch::{batch_form, body_function, runners, single_form, Batched};
use crate::keys::lua_prelude;

const COMMON: &str = include_str!("scripts/common.lua");

/// What every script starts with: the key names, the lifecycle, the shared helpers.
fn head() -> String {
    format!("{}{}{COMMON}", lua_prelude(), lifecycle_prelude())
}

/// How a script may be run, as the library declares it (`flags` of
/// `redis.register_function`; an `EVALSHA` has no flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flags {
    /// Writes: refused by a replica and, past `maxmemory`, before it runs.
    Writes,
    /// Only reads (`no-writes`): runs past `maxmemory` too.
    Reads,
    /// Writes, and runs past `maxmemory` (`allow-oom`): the purge, which frees memory.
    Frees,
}

/// Every script: its name, its body and how it may run. Those of [`Batched`] also have the
/// batch form.
const SCRIPTS: [(&str, &str, Flags); 18] = [
    ("submit", include_str!("scripts/submit.lua"), Flags::Writes),
    (
        "commit_assignment",
        include_str!("scripts/commit_assignment.lua"),
        Flags::Writes,
    ),
    (
        "mark_running",
        include_str!("scripts/mark_running.lua"),
        Flags::Writes,
    ),
    ("finish", include_str!("scripts/finish.lua"), Flags::Writes),
    (
        "request_abort",
        include_str!("scripts/request_abort.lua"),
        Flags::Writes,
    ),
    (
        "expire_executor",
        include_str!("scripts/expire_executor.lua"),
        Flags::Writes,
    ),
    (
        "register_executor",
        include_str!("scripts/register_executor.lua"),
        Flags::Writes,
    ),
    (
        "heartbeat",
        include_str!("scripts/heartbeat.lua"),
        Flags::Writes,
    ),
    (
        "append_logs",
        include_str!("scripts/append_logs.lua"),
        Flags::Writes,
    ),
    (
        "read_logs",
        include_str!("scripts/read_logs.lua"),
        Flags::Reads,
    ),
    (
        "list_jobs",
        include_str!("scripts/list_jobs.lua"),
        Flags::Reads,
    ),
    (
        "pending_placement",
        include_str!("scripts/pending_placement.lua"),
        Flags::Writes,
    ),
    (
        "queue_usage",
        include_str!("scripts/queue_usage.lua"),
        Flags::Reads,
    ),
    (
        "submit_array",
        include_str!("scripts/submit_array.lua"),
        Flags::Writes,
    ),
    ("array", include_str!("scripts/array.lua"), Flags::Reads),
    (
        "executors",
        include_str!("scripts/executors.lua"),
        Flags::Reads,
    ),
    ("purge", include_str!("scripts/purge.lua"), Flags::Frees),
    (
        "check_invariants",
        include_str!("scripts/check_invariants.lua"),
        Flags::Reads,
    ),
];

/// Where the library's name goes in its code until the code's hash is known.
const LIBRARY_NAME: &str = "__DWR_LIBRARY__";

/// The store's function library: every script of [`SCRIPTS`] as a function named
/// `<library>_<script>`, and the batch form of those of [`Batched`] as `<library>_batch`,
/// after one copy of the prelude, the helpers and the runners.
#[derive(Debug)]
pub(crate) struct Library {
    /// `dwr_` and the first 16 hex digits of the SHA-1 of its code.
    name: String,
    /// What `FUNCTION LOAD` takes.
    code: String,
    /// Whether calls go out as `FCALL`: the server has functions. Decided when the store
    /// connects ([`Library::prepare`]).
    functions: AtomicBool,
    /// Loads this process made after finding the library missing, and the lock they take
    /// one at a time: the calls that found it missing together load it once.
    reloads: AtomicU64,
    reloading: tokio::sync::Mutex<()>,
}

impl Library {
    fn new(head: &str) -> Self {
        // The bodies of the scripts with a batch form are also kept in BATCHED, by number,
        // for the one batch function.
        let mut code = format!(
            "#!lua name={LIBRARY_NAME}\n{head}{}local BATCHED = {{}}\n",
            runners()
        );
        for (name, body, flags) in SCRIPTS {
            let flags = match flags {
                Flags::Writes => "{}",
                Flags::Reads => "{ 'no-writes' }",
                Flags::Frees => "{ 'allow-oom' }",
            };
            code.push_str(&format!("do\n{}", body_function(body)));
            let mut register = |suffix: &str, runner: &str| {
                code.push_str(&format!(
                    "redis.register_function{{ function_name = '{LIBRARY_NAME}_{name}{suffix}', \
                     callback = function(_, args) return {runner}(__op, args) end, \
                     flags = {flags} }}\n"
                ));
            };
            register("", "run_single");
            if let Some(batched) = Batched::of(name) {
                code.push_str(&format!("BATCHED[{}] = __op\n", batched.number()));
            }
            code.push_str("end\n");
        }
        code.push_str(&format!(
            "redis.register_function{{ function_name = '{LIBRARY_NAME}_batch', \
             callback = function(_, args) return run_batch(BATCHED, args) end, flags = {{}} }}\n"
        ));
        let name = format!("dwr_{}", &Script::new(&code).get_hash()[..16]);
        Self {
            code: code.replace(LIBRARY_NAME, &name),
            name,
            functions: AtomicBool::new(false),
            reloads: AtomicU64::new(0),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the library (replacing one of the same name, which has the same code).
    async fn load(&self, conn: &mut ConnectionManager) -> RedisResult<()> {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.code)
            .query_async::<Value>(conn)
            .await
            .map(drop)
    }

    /// Loads the library again after a call found it missing, unless another call of this
    /// process did since `seen` (the count of reloads before that call went out).
    async fn reload(&self, conn: &mut ConnectionManager, seen: u64) -> RedisResult<()> {
        let _one_at_a_time = self.reloading.lock().await;
        if self.reloads.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        self.load(conn).await?;
        self.reloads.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Makes the scripts callable on the server behind `conn`: loads the library unless the
    /// server has it already (compiling it holds the server for over a millisecond, which
    /// a fleet of executors starting together would pay once each), or, on a server
    /// without functions, every script of `scripts` (to be called by SHA). A server that
    /// cannot take the library now (a replica, one still loading its data) gets it at the
    /// first call that misses it.
    pub async fn prepare(
        &self,
        conn: &mut ConnectionManager,
        scripts: &[Script],
    ) -> RedisResult<()> {
        let listed: RedisResult<Vec<Value>> = redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg(&self.name)
            .query_async(conn)
            .await;
        let loaded = match listed {
            // The name is the code's hash: a library of this name has this code.
            Ok(libraries) if !libraries.is_empty() => Ok(()),
            Ok(_) => self.load(conn).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(()) => self.functions.store(true, Ordering::Relaxed),
            Err(e) if without_functions(&e) => {
                tracing::info!(
                    error = %e,
                    "Redis has no functions (before 7.0?): scripts are sent with EVALSHA"
                );
                self.functions.store(false, Ordering::Relaxed);
                for script in scripts {
                    script.prepare_invoke().load_async(conn).await?;
                }
            }
            Err(e) if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() => {
                return Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the script library is loaded at the first call");
                self.functions.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Whether calls go out as `FCALL`.
    pub fn functions(&self) -> bool {
        self.functions.load(Ordering::Relaxed)
    }

    /// The library's name (`dwr_<hash>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Whether `e`, the answer to `FUNCTION LIST` or `FUNCTION LOAD`, says this server has no
/// functions or does not let this user load them.
fn without_functions(e: &RedisError) -> bool {
    e.code() == Some("NOPERM") || e.detail().is_some_and(|d| d.contains("unknown command"))
}

/// Whether `e`, the answer to an `FCALL`, says the function is not on the server.
fn function_missing(e: &RedisError) -> bool {
    e.detail()
        .is_some_and(|d| d.starts_with("Function not found"))
}

/// A script as the store calls it: a function of the [`Library`], or its text by SHA on a
/// server without functions.
#[derive(Clone, Debug)]
pub(crate) struct Routine {
    /// The text (prelude, helpers, runners, body), for `EVALSHA`.
    script: Script,
    /// The name of its function in the library.
    function: String,
    library: Arc<Library>,
}

impl Routine {
    /// Runs the script with `args` (the key prefix first) on `conn`.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        args: &[&str],
    ) -> RedisResult<T> {
        if !self.library.functions() {
            let mut invocation = self.script.prepare_invoke();
            for arg in args {
                invocation.arg(*arg);
            }
            return invocation.invoke_async(conn).await;
        }
        let call = || {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg(&self.function).arg(0).arg(args);
            cmd
        };
        let seen = self.library.reloads.load(Ordering::Acquire);
        match call().query_async(conn).await {
            Err(e) if function_missing(&e) => {
                self.library.reload(conn, seen).await?;
                call().query_async(conn).await
            }
            reply => reply,
        }
    }
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
        "local PRIORITY_AGING_JOBS = {}\nlocal DEFAULT_PRIORITY = {}\nlocal DEFAULT_LOG_TTL_S = '{}'\n",
        dwr_core::spec::PRIORITY_AGING_JOBS,
        dwr_core::spec::DEFAULT_PRIORITY,
        crate::config::DEFAULT_LOG_TTL.as_secs()
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
    /// The library every script is a function of.
    pub library: Arc<Library>,
    pub submit: Routine,
    pub commit_assignment: Routine,
    pub mark_running: Routine,
    pub finish: Routine,
    pub request_abort: Routine,
    pub expire_executor: Routine,
    pub register_executor: Routine,
    pub heartbeat: Routine,
    pub append_logs: Routine,
    pub read_logs: Routine,
    pub list_jobs: Routine,
    pub pending_placement: Routine,
    pub queue_usage: Routine,
    pub submit_array: Routine,
    pub array: Routine,
    pub executors: Routine,
    pub purge: Routine,
    pub check_invariants: Routine,
    /// The batch form of every script of [`Batched`].
    pub batch: Routine,
    /// The `EVALSHA` text of every script above, for loading them on a server without
    /// functions.
    pub texts: Vec<Script>,
}

impl Scripts {
    /// Assembles every script (prelude + helpers + runners + body) and the library.
    pub fn new() -> Self {
        let head = head();
        let library = Arc::new(Library::new(&head));
        let mut texts = Vec::new();
        let body = |name: &str| {
            let (_, body, _) = SCRIPTS
                .into_iter()
                .find(|(script, ..)| *script == name)
                .expect("a script of SCRIPTS");
            body
        };
        let mut routine = |name: &str, text: String| {
            let script = Script::new(&text);
            texts.push(script.clone());
            Routine {
                script,
                function: format!("{}_{name}", library.name()),
                library: library.clone(),
            }
        };
        let bodies = Batched::ALL.map(|b| body(b.name()));
        let batch = routine("batch", batch_form(&head, &bodies));
        let mut single = |name: &str| routine(name, single_form(&head, body(name)));
        let mut scripts = Self {
            submit: single("submit"),
            commit_assignment: single("commit_assignment"),
            mark_running: single("mark_running"),
            finish: single("finish"),
            request_abort: single("request_abort"),
            expire_executor: single("expire_executor"),
            register_executor: single("register_executor"),
            heartbeat: single("heartbeat"),
            append_logs: single("append_logs"),
            read_logs: single("read_logs"),
            list_jobs: single("list_jobs"),
            pending_placement: single("pending_placement"),
            queue_usage: single("queue_usage"),
            submit_array: single("submit_array"),
            array: single("array"),
            executors: single("executors"),
            purge: single("purge"),
            check_invariants: single("check_invariants"),
            batch,
            library,
            texts: Vec::new(),
        };
        scripts.texts = texts;
        scripts
    }

    /// The script sent for a lone operation of `script`.
    pub fn single(&self, script: Batched) -> &Routine {
        match script {
            Batched::Submit => &self.submit,
            Batched::CommitAssignment => &self.commit_assignment,
            Batched::MarkRunning => &self.mark_running,
            Batched::Finish => &self.finish,
            Batched::AppendLogs => &self.append_logs,
        }
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
        // Outside the runners: begin_call as they do (it takes the globals the helpers use).
        let body = "
begin_call(ARGV[1])
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
