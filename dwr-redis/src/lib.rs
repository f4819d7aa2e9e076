//! dwr-redis: [`RedisJobStore`], the dwr [`JobStore`](dwr_core::JobStore) over Redis, so
//! that any number of scheduler and executor processes share one Redis safely.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dwr_redis::Error> {
//! use dwr_redis::{RedisConfig, RedisJobStore};
//! // REDIS_URL, or REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_DB.
//! let store = RedisJobStore::connect(RedisConfig::from_env()?).await?;
//! # Ok(()) }
//! ```
//!
//! [`RedisConfig::from_env`] reads `REDIS_URL` (`redis://` or `rediss://`, wins when set),
//! else `REDIS_HOST` (`localhost`), `REDIS_PORT` (6379), `REDIS_PASSWORD`, `REDIS_DB` (0);
//! and `DWR_REDIS_PREFIX` (`dwr:`), `DWR_LOG_MAX_LINES` (100 000),
//! `DWR_LOG_TTL_SECONDS` (7 days). Configuration and connection failures are
//! [`Error`]; the store's operations return [`StoreError`](dwr_core::StoreError).
//!
//! # Atomicity
//!
//! Every state transition is one Lua script (`src/scripts/*.lua`, loaded with
//! `include_str!`): on Redis 7 and later a function of the store's library, loaded once at
//! connect with `FUNCTION LOAD` and called with `FCALL` (loaded again by a call that finds
//! it missing); on a server without functions, called by SHA with `EVALSHA`, reloaded once
//! if the server forgot it:
//! `submit`, `commit_assignment`, `mark_running`, `finish`, `request_abort`,
//! `expire_executor`, `register_executor`, `heartbeat`, `append_logs`. A script checks and
//! writes in one step, so there is no client-side read-modify-write, two schedulers can
//! never over-allocate an executor or hand out a GPU twice, and a connection that drops
//! mid-call leaves the transition either fully applied or not at all. A script refusal is
//! a status reply (`{"no_room", "cpu"}`, …) decoded into the typed
//! [`StoreError`](dwr_core::StoreError) / [`Rejection`](dwr_core::Rejection). The states
//! and the legal moves the scripts check are generated into them from
//! [`JobState`](dwr_core::JobState) (`can_become`), as the key names are from [`keys`].
//!
//! # Group commit
//!
//! The transitions every job goes through (`submit`, `commit_assignment`, `mark_running`,
//! `finish`) and its log lines (`append_logs`) also have a *batch form*: one script holding
//! their bodies, each operation's run once, in order, inside one script call. Each store
//! handle runs two small tasks that send what callers have queued, one for the transitions
//! of every kind together and one for log lines: an operation alone goes out at once as
//! the plain script; operations that arrive while a call is in flight share the next call
//! (at most 128), whatever their kind (a scheduler's submits and commits, an executor's
//! starts and ends). Each operation is still checked and applied atomically, sees the effects
//! of those before it, and gets its own reply; one whose script raises an error gets that
//! error and the others are unaffected. The scheduler hands a whole pass's placements over
//! at once ([`JobStore::commit_assignments`](dwr_core::JobStore::commit_assignments)).
//! Under load this is what keeps Redis, which runs one script at a time, off the critical
//! path: a script call has a fixed cost (look-up, Lua call set-up, reply conversion, a
//! round trip and a wake-up at the client) that batching pays once per call instead of
//! once per job. Schedulers are woken (`PUBLISH`) once per script call, not per operation.
//!
//! Resources are released exactly once: the `SREM` of the job from its executor's job set
//! is the token, whichever of finish, abort of a pending job or executor expiry comes first.
//! [`RedisJobStore::check_invariants`] verifies the allocation invariants inside Redis.
//!
//! The scripts derive keys from the prefix, so the store needs a single Redis (or a
//! primary with replicas), not Redis Cluster.
//!
//! # Sentinel and replicas
//!
//! With [`RedisConfig::sentinels`] the store asks the Sentinels where the primary is, at
//! connect and then every second or at once when an operation finds the primary unreachable
//! or read-only, and moves its connections when the answer changes (`src/endpoint.rs`).
//! With [`RedisConfig::wait_replicas`] every writing script is followed by `WAIT` on the
//! same connection, also after a script's refusal (an earlier try of the same change may
//! have applied), and a change the replicas do not acknowledge in time fails as
//! `StoreError::Unavailable`. Heartbeats, log appends and event pops are not waited for.
//! What an asynchronous replica can lose, and what to configure, is in the README
//! ("Redis high availability").
//!
//! # One clock
//!
//! Every time the scripts write (submission, assignment, start, end, heartbeat) and every
//! lease they judge is Redis `TIME`, read inside the script: callers send no times.
//! [`JobStore::now`](dwr_core::JobStore::now) reads the same clock for the scheduler's own
//! comparisons (allocation timeouts, max runtimes). An executor's lease (`lease_ms`, three of
//! the heartbeat intervals it registered) is judged against its `last_heartbeat` by
//! `commit_assignment` and `expire_executor`. Scripts are replicated by their effects
//! (the default since Redis 5), which is what allows `TIME` before writes.
//!
//! # Fencing and retries
//!
//! `commit_assignment` counts the job's attempts (`attempt`); `mark_running`, `append_logs`
//! and `finish` take the attempt of the executor writing and refuse (`stale`) any other, or
//! one no longer under way. `finish` and `expire_executor` end an attempt like
//! `dwr_core::Job::end_attempt`: a failed attempt the job's retry policy (`max_retries`,
//! `retry_ms`, `retry_on`, written at submit when there are retries) covers sends it back to
//! pending with `retry_at`, and every ended attempt is appended to `attempts`.
//!
//! # Keys
//!
//! `{p}` is the configured prefix ([`RedisConfig::key_prefix`], default `dwr:`); distinct
//! prefixes let several deployments (or parallel tests) share one server. All names are
//! built in [`keys`] (the scripts get them from the same module). Nothing is found by
//! `KEYS` or `SCAN`: listing reads the sorted sets.
//!
//! | Key | Type | Written by | Expires |
//! |---|---|---|---|
//! | `{p}seq` | string (counter) | `submit` (`INCR`: arrival sequence) | never |
//! | `{p}job:{job_id}` | hash: `id`, `spec` (JSON of the `JobSpec`), `place` (JSON of its placement view, only beside a spec over 1 KiB: what a scheduling pass reads), `state`, `seq`, `cpu`, `mem`, `ngpu`, `gpu_ids` (JSON; absent: none), `executor`, `executor_ip`, `exit_code`, `reason`, `oom` (absent: not killed), `abort`, `created_at`, `updated_at` (written only by a change that stamps no other time; read as the latest of `created_at`, `ready_at`, `assigned_at`, `started_at`, `finished_at` and itself), `assigned_at`, `started_at`, `finished_at` (ms, Redis `TIME`), `log_total` (lines ever appended: follower offsets stay valid after trimming), `log_bytes` (bytes kept, against [`RedisConfig::log_max_bytes`]), `log_cut_bytes` / `log_cut_lines` (dropped past it), `attempt`, `attempts` (JSON of the ended attempts), `retry_at` (ms, while pending for a retry), and with retries `max_retries`, `retry_ms`, `retry_on` | every job transition | deleted by `purge_finished` |
//! | `{p}idempotency:{key}` | string: the id of the job submitted under an `Idempotency-Key` | `submit` with a key (`SET PX`) | after 24 h |
//! | `{p}jobs:{state}` | sorted set per state not under way (`pending`, `succeeded`, `failed`, `aborted`): job id, score = sequence; every job is in exactly one of these or `jobs:under_way`, and listing all jobs reads the five (`list_jobs.lua`). Earlier versions also kept `jobs:assigned` and `jobs:running`: a scheduling pass folds them into `jobs:under_way` and deletes them | every transition but a start | members move or are purged |
//! | `{p}jobs:under_way` | sorted set of the assigned and running jobs: job id, score = sequence. One index for both states, so that a start moves a job between no sorted sets; listing one of the two reads it and the jobs' `state` | commit, end, retry | members move |
//! | `{p}jobs:counts` | hash: `running`, how many of `jobs:under_way` are running (counts of jobs by state read it; the assigned are the rest); `requeued`, how many times a job went back to a queue (a retry, a preemption): a scheduling pass keeps the hashes it read of queued jobs, which do not change while they wait, and reads them again when this moved | start, end, retry, preemption (`HINCRBY`, once per call) | never |
//! | `{p}jobs:queue`, `{p}jobs:queue:{queue}` | sorted set of the pending jobs of the default queue (of queue `{queue}`) in its order: job id, score = `JobSpec::queue_key` (sequence less 1,000 per point of priority; the hash keeps it as `qk` for a retry to re-enter with, away from the default priority only, and the queue as `queue` when not the default). `pending_placement.lua` names the head of each (a pass then reads those hashes with plain `HGETALL`s, or `HMGET` of the fields a job is read from and `place`, only for the jobs its store's last pass did not read, while `jobs:counts` `requeued` holds); pending jobs stored before it existed join the default queue at the default priority on the first pass | submit, leaving and re-entering pending | members leave with their pending state |
//! | `{p}jobs:with_view` | set of the jobs stored with a placement view (`place`): a scheduling pass asks it which queued jobs to read as their view, and not at all while it is empty (a job stored with a view by an earlier version is read whole) | `submit`, `submit_array` (`SADD`) | members removed by purge |
//! | `{p}queues` | set of the queue names besides `default` that jobs were submitted to | submit | never (a handful of names) |
//! | `{p}queues:held` | hash of what each queue's assigned and running jobs hold: `{queue}:cpu` (millicores), `{queue}:mem` (MiB), `{queue}:gpu`; `commit_assignment.lua` checks a queue's quota against it | every commit and release | fields return to 0 |
//! | `{p}jobs:finish_order` | list of terminal job ids in the order they finished (a list, not a sorted set by time: appending costs O(1); `purge_finished` takes from the head while the head is due, which agrees with the finish times now that Redis `TIME` stamps them all; a job stamped by an earlier version's caller later than one behind it holds that one back until it is due too) | terminal transitions | purge pops them |
//! | `{p}jobs:finished` | sorted set: job id, score = finish time (ms): written by earlier versions only, drained by purge | — | members removed by purge |
//! | `{p}jobs:all` | sorted set of every job: written by earlier versions only | — | deleted by purge |
//! | `{p}executors` | set of executor ids | `register_executor`, `expire_executor` | never |
//! | `{p}executors:seq` | counter of executor changes that placement reads (registration, heartbeat, commit, release) | those scripts (`INCR`) | never |
//! | `{p}executors:changed` | sorted set: executor id → the counter at its last such change; a scheduling pass reads only the executors changed since its last read (all of them when the count of executors disagrees, the counter went back, or every minute) | those scripts; `expire_executor` removes the executor | with the executor |
//! | `{p}executor:{id}` | hash: `id`, `reg` (JSON), `ip`, `cpu_total`, `mem_total`, `gpu_total`, `dev:{uuid}`, `registered_at`, `last_heartbeat` (Redis `TIME`), `lease_ms` (its lease: 3 of its heartbeat intervals), `usage` (JSON) — written by register/heartbeat; `cpu_alloc`, `mem_alloc`, `gpu_alloc` — written only by commit and release | scripts only | deleted by `expire_executor` |
//! | `{p}executor_jobs:{id}` | set of the job ids it holds | commit, release | deleted by `expire_executor` |
//! | `{p}executor_gpus:{id}` | hash: GPU UUID → job id holding it | commit, release | deleted by `expire_executor` |
//! | `{p}executor_events:{id}` | list of `assigned <job>` / `abort <job> <cause>` | `commit_assignment`, `request_abort` (`RPUSH`); the executor pops (`BLMPOP`) | deleted by `expire_executor` |
//! | `job_logs:{job_id}` (no prefix) | list of lines, oldest first, capped at [`RedisConfig::log_max_lines`] (`LTRIM`) and [`RedisConfig::log_max_bytes`] (then ending in one marker line) | `append_logs` | [`RedisConfig::log_ttl`] once the job is terminal; purge |
//! | `{p}wake` | pub/sub channel | `submit`, `finish`, `register_executor`, `expire_executor` publish | — |
//! | `{p}log_events:{job_id}` | pub/sub channel | `append_logs`, terminal transitions and `purge` publish, while any client holds a pattern subscription (the log followers of a process share one `PSUBSCRIBE {p}log_events:*`; with none, nobody would hear it) | — |
//!
//! `LRANGE job_logs:<id> 0 -1` prints a job's log, as the original system documented.
//!
//! Upgrading from a version that kept `jobs:assigned` and `jobs:running`: stop its
//! processes first. The first scheduling pass of this version moves what those sets hold
//! into `jobs:under_way` and counts the running jobs from their hashes; a process of the
//! earlier version still running would index the jobs it moves in the old sets again, and
//! its ends of jobs this version started would leave them in `jobs:under_way` and counted.
//! Nor could it read this version's specs, which leave out every default (`env`, `gpu`,
//! regions, datacenters, timeouts, `volumes`) that it required. This version reads the
//! jobs and events the earlier one wrote.
//!
//! # Wake-ups
//!
//! * Executors: `next_event` is a `BLMPOP` on the executor's own event list, bounded by the
//!   wait, so an assignment arrives within milliseconds. A list, not pub/sub: an event
//!   must be delivered once and must not be lost while the executor is busy. One pop takes
//!   everything queued (up to 128 events); the store handle hands them out one per call,
//!   in order, without another round trip. Against a Redis older than 7 (no `BLMPOP`) it
//!   falls back to `BLPOP`, one event per pop. Events popped but not yet handed out are
//!   lost if the process stops, like an event popped by a cancelled wait: their jobs stay
//!   assigned to the executor, whose restarted agent picks them up (reconcile, fallback
//!   check).
//! * Schedulers: the scripts `PUBLISH` on `{p}wake`; each store handle lazily runs one
//!   subscriber task that bumps a version, and `wait_for_work` returns when the version
//!   moved since its previous call. Pub/sub because every scheduler must wake (a list token
//!   would wake only one); the version keeps "since the last call" even when the message
//!   came while the scheduler was busy; a resubscription after an outage counts as a wake.
//! * Log followers: `wait_logs` subscribes to `{p}log_events:{job_id}` and then re-reads,
//!   so no line appended in between is missed; any number of followers may watch one job.
//!
//! Blocking commands never use the shared multiplexed connection (a `BLMPOP` there would
//! hold up every command behind it): they take dedicated connections from a small pool.
//! A `next_event` cancelled by its caller in the instant Redis pops an event loses that
//! event; agents reconcile with [`Executor::jobs`](dwr_core::Executor) after a restart.
//!
//! # Restarts
//!
//! The shared connection is a `ConnectionManager` that reconnects with exponential backoff
//! ([`RedisConfig::reconnect_retries`], [`RedisConfig::reconnect_max_delay`]). An operation
//! in flight when Redis goes away, or issued while it is away, fails with
//! `StoreError::Unavailable`; scripts are atomic, so nothing is half-applied. With AOF on,
//! no job is lost (tested by killing Redis with SIGKILL mid-run).
//!
//! # Round trips per job
//!
//! Measured by `tests/round_trips.rs` with `INFO commandstats` on a private server, one
//! job alone from submit to terminal (submit, commit the assignment, the executor's event
//! pop, mark running, one batch of 20 log lines, finish):
//!
//! * **6 round trips**: 5 `FCALL` + 1 `BLMPOP` (no `FUNCTION LOAD` in steady state);
//! * 65 commands executed by the server in all, all but 6 inside the scripts (a lone job
//!   pays each call's own `TIME`, wake-up `PUBLISH` and `PUBSUB` checks of who listens;
//!   under load a batch of operations shares them, and the writes to the sorted sets that
//!   index jobs: one `ZREM` and one `ZADD` per set and call, however many jobs it moves).
//!
//! The executor agent does not read the job when its assignment arrives: the `assigned`
//! event carries the job hash as the commit stored it, a JSON array of fields and values
//! (see `commit_assignment.lua`). The scheduler sends its copy of the pending job with the
//! assignment ([`Assignment::snapshot`](dwr_core::Assignment::snapshot)); the script puts
//! the fields it writes after it (the later field wins when the agent reads the array)
//! and replies with the executor's IP, so the hash is neither read back nor sent back.
//! Without a snapshot the script reads the hash back (`HGETALL`) and sends it both ways.
//! `mark_running` and `finish` do not read the job back either. A scheduler pass adds 2
//! round trips (`pending_jobs` and `executors`, one script each) shared by all the jobs it
//! places.
//!
//! Under load, group commit and batched pops share round trips between jobs:
//! `tests/batching.rs` pins 300 concurrent jobs through every stage in three calls
//! (batches of 128, 128 and 44), and `dwr bench --store redis` (8 executors, 256 jobs in
//! flight), which counts every request at the client ([`RedisJobStore::requests_sent`]),
//! measures about 0.15 round trips per job (BENCHMARKS.md). `cargo run --release -p dwr-redis --example
//! transition_cost` prints the server CPU each transition costs.

// The test harness shared with the integration tests names the crate.
#[cfg(test)]
extern crate self as dwr_redis;

mod batch;
mod codec;
mod config;
mod endpoint;
mod error;
mod job_store;
pub mod keys;
mod scripts;
mod server_info;
mod store;
mod wait;

pub use config::{
    parse_sentinels, RedisConfig, DEFAULT_LOG_MAX_LINES, DEFAULT_LOG_TTL, DEFAULT_WAIT_TIMEOUT,
};
pub use error::Error;
pub use keys::Keys;
pub use server_info::{parse_cpu_seconds, BaselineClients, CommandStats};
pub use store::RedisJobStore;
