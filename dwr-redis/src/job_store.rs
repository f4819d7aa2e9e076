//! The [`JobStore`] implementation of [`RedisJobStore`]: each transition is one script call,
//! whose status reply is decoded into the typed result or [`StoreError`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use dwr_core::{
    AbortCause, AbortRequested, Assignment, Dimension, Executor, ExecutorEvent, ExecutorId,
    ExecutorRegistration, Expiry, Finished, HostUsage, Job, JobId, JobQuery, JobState, JobStore,
    Outcome, Rejection, StoreError, Submission, Timestamp,
};
use redis::AsyncCommands;

use crate::codec::{
    abort_cause_str, array, executor_from, job_at, job_fields, job_from_map, json_strings,
    millis_at, parse_event, stale_at, state_at, status_reply, strings, text_at,
};
use crate::error::{corrupt, store_error};
use crate::store::RedisJobStore;

/// How long [`JobStore::now`] carries a reading of Redis `TIME` forward before it reads
/// it again.
const CLOCK_REFRESH: Duration = Duration::from_secs(1);

/// Most events one pop takes off an executor's list; the ones not returned at once wait
/// in the store handle for the next calls (see `EventBuffer`).
const EVENT_BATCH: usize = 128;
/// Jobs deleted per `purge` script call (bounds the time one call blocks Redis).
const PURGE_BATCH: usize = 500;
/// Extra time allowed past a blocking pop's own timeout before the connection is
/// considered dead.
const BLOCK_GRACE: Duration = Duration::from_secs(5);

fn unexpected(script: &str, status: &str) -> StoreError {
    corrupt(script, format!("unexpected status {status:?}"))
}

/// True for the server's answer to a command, or a form of it, that it does not have (an
/// older Redis: `BLMPOP` came in 7.0, `LPOP` with a count in 6.2).
fn is_unknown_command(err: &redis::RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
        && (text.contains("unknown command") || text.contains("wrong number of arguments"))
}

fn timed_out(operation: &'static str) -> StoreError {
    StoreError::Unavailable {
        operation,
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from Redis in time",
        )),
    }
}

/// The arguments of `commit_assignment.lua` after the prefix.
fn commit_args(assignment: &Assignment) -> Vec<String> {
    let mut args = vec![
        assignment.job.to_string(),
        assignment.executor.to_string(),
        json_strings(&assignment.gpu_ids),
        snapshot_arg(assignment),
    ];
    args.extend(assignment.gpu_ids.iter().cloned());
    args
}

/// The job in `assignment`'s snapshot (when it has one of that job) as the script splices
/// it into the executor's event: the JSON array of its hash's fields and values, without
/// the closing bracket. `''` (read the job back) without a usable snapshot.
fn snapshot_arg(assignment: &Assignment) -> String {
    let Some(job) = assignment.snapshot.as_deref() else {
        return String::new();
    };
    if job.id != assignment.job {
        return String::new();
    }
    // A placement view lacks what the executor needs: the script reads the job for the
    // event, and the reply still builds on the snapshot.
    if job.spec.is_placement_view() {
        return "-".to_owned();
    }
    let Ok(fields) = job_fields(job) else {
        return String::new();
    };
    let flat: Vec<&str> = fields
        .iter()
        .flat_map(|(field, value)| [*field, value.as_str()])
        .collect();
    let mut json = serde_json::to_string(&flat).unwrap_or_default();
    if json.len() < 3 || json.pop() != Some(']') {
        return String::new();
    }
    json
}

/// The job `assignment` committed, from its snapshot: what the script wrote over it.
fn committed_from_snapshot(
    assignment: &Assignment,
    snapshot: &Job,
    executor_ip: String,
    now: Timestamp,
) -> Job {
    let mut job = snapshot.clone();
    job.state = JobState::Assigned;
    job.executor = Some(assignment.executor.clone());
    job.executor_ip = Some(executor_ip).filter(|ip| !ip.is_empty());
    job.gpu_ids = assignment.gpu_ids.clone();
    job.assigned_at = Some(now);
    job.updated_at = now;
    job.attempt = snapshot.attempt.saturating_add(1);
    job.retry_at = None;
    job
}

/// Decodes the reply of `commit_assignment.lua` for `assignment` (sent with
/// [`commit_args`]): the job read back, or the executor's IP and Redis's time of the commit.
fn commit_reply(assignment: &Assignment, reply: &redis::Value) -> Result<Job, StoreError> {
    let (status, rest) = status_reply(reply, "commit_assignment")?;
    let reject = |reason: Rejection| StoreError::Rejected {
        job: assignment.job,
        executor: assignment.executor.clone(),
        reason,
    };
    let name = "commit_assignment";
    match status.as_str() {
        // The job hash read back, or, when the script used the snapshot, the IP.
        "ok" => match (rest.first(), assignment.snapshot.as_deref()) {
            (Some(redis::Value::Array(_)), _) => job_at(rest, name),
            (Some(_), Some(snapshot)) => Ok(committed_from_snapshot(
                assignment,
                snapshot,
                text_at(rest, 0, name)?,
                millis_at(rest, 1, name)?,
            )),
            _ => Err(corrupt(
                name,
                "an IP in reply to a commit without a snapshot",
            )),
        },
        "job_not_found" => Err(StoreError::JobNotFound { id: assignment.job }),
        "not_pending" => Err(reject(Rejection::JobNotPending {
            state: state_at(rest, name)?,
        })),
        "executor_gone" => Err(reject(Rejection::ExecutorGone)),
        "executor_not_alive" => Err(reject(Rejection::ExecutorNotAlive)),
        "no_room" => {
            let dimension = match text_at(rest, 0, name)?.as_str() {
                "cpu" => Dimension::Cpu,
                "memory" => Dimension::Memory,
                "gpu" => Dimension::Gpu,
                other => return Err(unexpected(name, other)),
            };
            Err(reject(Rejection::NoRoom { dimension }))
        }
        "gpu_unavailable" => Err(reject(Rejection::GpuUnavailable {
            uuid: text_at(rest, 0, name)?,
        })),
        "gpu_count_mismatch" => {
            let given = text_at(rest, 0, name)?.parse().unwrap_or(usize::MAX);
            let wanted = text_at(rest, 1, name)?.parse().unwrap_or(u32::MAX);
            Err(reject(Rejection::GpuCountMismatch { given, wanted }))
        }
        other => Err(unexpected(name, other)),
    }
}

impl RedisJobStore {
    /// `submit.lua`: stores `job`, under an idempotency key when given (see
    /// [`JobStore::submit_idempotent`]).
    async fn store_job(
        &self,
        mut job: Job,
        key: Option<(&str, Duration)>,
    ) -> Result<Submission, StoreError> {
        if job.state != JobState::Pending {
            return Err(StoreError::InvalidTransition {
                id: job.id,
                state: job.state,
                action: "submit",
            });
        }
        let (key, ttl) = key.unwrap_or(("", Duration::ZERO));
        let mut args = vec![
            job.id.to_string(),
            job.state.as_str().to_owned(),
            key.to_owned(),
            ttl.as_millis().max(1).to_string(),
        ];
        // The script stamps the creation time itself.
        for (field, value) in job_fields(&job)?
            .into_iter()
            .filter(|(field, _)| !matches!(*field, "created_at" | "updated_at"))
        {
            args.push(field.to_owned());
            args.push(value);
        }
        let reply = self.inner.batchers.submit.call(args).await?;
        let (status, rest) = status_reply(&reply, "submit")?;
        match status.as_str() {
            "ok" => {
                let now = millis_at(rest, 0, "submit")?;
                job.created_at = now;
                job.updated_at = now;
                Ok(Submission::Created(job))
            }
            "existing" => {
                let id: JobId = text_at(rest, 0, "submit")?
                    .parse()
                    .map_err(|e: dwr_core::MalformedJobId| corrupt("submit", e.to_string()))?;
                self.job(id).await.map(Submission::Existing)
            }
            "job_exists" => Err(StoreError::JobExists { id: job.id }),
            other => Err(unexpected("submit", other)),
        }
    }

    fn log_ttl_secs(&self) -> String {
        self.inner.config.log_ttl.as_secs().to_string()
    }

    /// Lines from absolute line `from` on, with the job's state (`None`: no such job).
    async fn read_logs(
        &self,
        id: JobId,
        from: usize,
    ) -> Result<(Option<JobState>, Vec<String>), StoreError> {
        let script = &self.inner.scripts.read_logs;
        let reply = self
            .eval("logs", script, vec![id.to_string(), from.to_string()])
            .await?;
        let parts = array(&reply, "read_logs")?;
        let state = text_at(parts, 0, "read_logs")?;
        let lines = match parts.get(1) {
            Some(v) => strings(v, "read_logs")?,
            None => Vec::new(),
        };
        if state.is_empty() {
            return Ok((None, lines));
        }
        let state = state
            .parse()
            .map_err(|e: dwr_core::UnknownJobState| corrupt("read_logs", e.to_string()))?;
        Ok((Some(state), lines))
    }

    async fn list(
        &self,
        index: &str,
        offset: usize,
        limit: usize,
        order: &str,
    ) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let script = &self.inner.scripts.list_jobs;
        let args = vec![
            index.to_owned(),
            offset.to_string(),
            limit.to_string(),
            order.to_owned(),
        ];
        let reply = self.eval("jobs", script, args).await?;
        array(&reply, "list_jobs")?
            .iter()
            .map(|hash| job_from_map(&crate::codec::flat_map(hash, "list_jobs")?))
            .collect()
    }

    async fn executor_snapshots(
        &self,
        id: Option<&ExecutorId>,
    ) -> Result<Vec<Executor>, StoreError> {
        let script = &self.inner.scripts.executors;
        let arg = id.map(|i| i.to_string()).unwrap_or_default();
        let reply = self.eval("executors", script, vec![arg]).await?;
        array(&reply, "executors")?
            .iter()
            .map(executor_from)
            .collect()
    }
}

#[async_trait]
impl JobStore for RedisJobStore {
    /// Redis's clock: `TIME`, read at most once per [`CLOCK_REFRESH`] and carried forward
    /// in between by the local monotonic clock (which does not step, and drifts from
    /// Redis's by parts per million), so a scheduling pass costs no extra round trip. The
    /// reading is taken as of the middle of its round trip.
    async fn now(&self) -> Result<Timestamp, StoreError> {
        let cached = *self.inner.clock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, read)) = cached {
            if read.elapsed() < CLOCK_REFRESH {
                return Ok(at.plus(read.elapsed()));
            }
        }
        let sent = std::time::Instant::now();
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_error("now", e))?;
        let read = sent + sent.elapsed() / 2;
        let at = Timestamp(secs * 1000 + micros / 1000);
        *self.inner.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, read));
        Ok(at.plus(read.elapsed()))
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        match self.store_job(job, None).await? {
            Submission::Created(job) => Ok(job),
            Submission::Existing(job) => Err(unexpected("submit", &job.id.to_string())),
        }
    }

    async fn submit_idempotent(
        &self,
        job: Job,
        key: &str,
        ttl: Duration,
    ) -> Result<Submission, StoreError> {
        self.store_job(job, Some((key, ttl))).await
    }

    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        let mut conn = self.conn();
        let map: HashMap<String, String> = conn
            .hgetall(self.inner.keys.job(id))
            .await
            .map_err(|e| store_error("job", e))?;
        if map.is_empty() {
            return Err(StoreError::JobNotFound { id });
        }
        job_from_map(&map)
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let index = query.state.map(JobState::as_str).unwrap_or("all");
        self.list(index, query.offset, query.limit, "rev").await
    }

    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.list(JobState::Pending.as_str(), 0, limit, "fwd").await
    }

    async fn pending_for_placement(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let script = &self.inner.scripts.pending_placement;
        let reply = self
            .eval("pending_for_placement", script, vec![limit.to_string()])
            .await?;
        array(&reply, "pending_placement")?
            .iter()
            .map(|hash| job_from_map(&crate::codec::flat_map(hash, "pending_placement")?))
            .collect()
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let mut pipe = redis::pipe();
        for state in JobState::ALL {
            pipe.zcard(self.inner.keys.jobs_in(state));
        }
        let counts: Vec<u64> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_error("counts", e))?;
        Ok(JobState::ALL.into_iter().zip(counts).collect())
    }

    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError> {
        let args = commit_args(assignment);
        let reply = self.inner.batchers.commit_assignment.call(args).await?;
        commit_reply(assignment, &reply)
    }

    async fn commit_assignments(&self, assignments: &[Assignment]) -> Vec<Result<Job, StoreError>> {
        let args = assignments.iter().map(commit_args).collect();
        let replies = self.inner.batchers.commit_assignment.call_many(args).await;
        assignments
            .iter()
            .zip(replies)
            .map(|(assignment, reply)| commit_reply(assignment, &reply?))
            .collect()
    }

    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError> {
        let args = vec![id.to_string(), executor.to_string(), attempt.to_string()];
        let reply = self.inner.batchers.mark_running.call(args).await?;
        let (status, rest) = status_reply(&reply, "mark_running")?;
        match status.as_str() {
            "ok" => Ok(()),
            "job_not_found" => Err(StoreError::JobNotFound { id }),
            "terminal" => Err(StoreError::AlreadyTerminal {
                id,
                state: state_at(rest, "mark_running")?,
            }),
            "invalid" => Err(StoreError::InvalidTransition {
                id,
                state: state_at(rest, "mark_running")?,
                action: "mark running",
            }),
            "stale" => Err(stale_at(id, attempt, rest, "mark_running")?),
            other => Err(unexpected("mark_running", other)),
        }
    }

    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        let args = vec![
            id.to_string(),
            outcome.state.as_str().to_owned(),
            outcome.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            outcome.reason.clone().unwrap_or_default(),
            if outcome.oom_killed { "1" } else { "0" }.to_owned(),
            attempt.map(|a| a.to_string()).unwrap_or_default(),
            self.log_ttl_secs(),
            outcome
                .cause
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
        ];
        let reply = self.inner.batchers.finish.call(args).await?;
        let (status, rest) = status_reply(&reply, "finish")?;
        match status.as_str() {
            "ok" => Ok(Finished {
                state: outcome.state,
                changed: true,
            }),
            "retry" => Ok(Finished {
                state: JobState::Pending,
                changed: true,
            }),
            "unchanged" => Ok(Finished {
                state: state_at(rest, "finish")?,
                changed: false,
            }),
            "job_not_found" => Err(StoreError::JobNotFound { id }),
            "invalid" => Err(StoreError::InvalidTransition {
                id,
                state: state_at(rest, "finish")?,
                action: "finish",
            }),
            "stale" => Err(stale_at(id, attempt.unwrap_or_default(), rest, "finish")?),
            other => Err(unexpected("finish", other)),
        }
    }

    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        let outcome = cause.outcome();
        let args = vec![
            id.to_string(),
            abort_cause_str(cause).to_owned(),
            outcome.state.as_str().to_owned(),
            outcome.reason.unwrap_or_default(),
            self.log_ttl_secs(),
        ];
        let script = &self.inner.scripts.request_abort;
        let reply = self.eval("request_abort", script, args).await?;
        let (status, rest) = status_reply(&reply, "request_abort")?;
        match status.as_str() {
            "aborted" => Ok(AbortRequested::AbortedAtOnce(job_at(
                rest,
                "request_abort",
            )?)),
            "signalled" => Ok(AbortRequested::Signalled(job_at(rest, "request_abort")?)),
            "job_not_found" => Err(StoreError::JobNotFound { id }),
            "terminal" => Err(StoreError::AlreadyTerminal {
                id,
                state: state_at(rest, "request_abort")?,
            }),
            other => Err(unexpected("request_abort", other)),
        }
    }

    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        let reg = serde_json::to_string(registration).map_err(|e| StoreError::Corrupt {
            what: format!("registration of executor {}", registration.id),
            source: Box::new(e),
        })?;
        let mut args = vec![
            registration.id.to_string(),
            reg,
            registration.ip.clone(),
            registration.capacity.cpu_millis.to_string(),
            registration.capacity.memory_mib.to_string(),
            registration.capacity.gpus.to_string(),
            registration.lease_ttl().as_millis().to_string(),
        ];
        args.extend(registration.gpus.iter().map(|g| g.uuid.clone()));
        // A registration after an expiry starts afresh: events held from before name jobs
        // that the expiry failed (and deleted from Redis with the event list).
        self.inner.events.forget(&registration.id);
        let script = &self.inner.scripts.register_executor;
        let reply = self.eval("register_executor", script, args).await?;
        let (status, rest) = status_reply(&reply, "register_executor")?;
        match (status.as_str(), rest.first()) {
            ("ok", Some(snapshot)) => executor_from(snapshot),
            (other, _) => Err(unexpected("register_executor", other)),
        }
    }

    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        let usage = serde_json::to_string(usage).map_err(|e| StoreError::Corrupt {
            what: format!("usage of executor {id}"),
            source: Box::new(e),
        })?;
        let args = vec![id.to_string(), usage];
        let script = &self.inner.scripts.heartbeat;
        let reply = self.eval("heartbeat", script, args).await?;
        match status_reply(&reply, "heartbeat")?.0.as_str() {
            "ok" => Ok(()),
            "executor_not_found" => Err(StoreError::ExecutorNotFound { id: id.clone() }),
            other => Err(unexpected("heartbeat", other)),
        }
    }

    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError> {
        self.executor_snapshots(Some(id))
            .await?
            .pop()
            .ok_or_else(|| StoreError::ExecutorNotFound { id: id.clone() })
    }

    async fn executors(&self) -> Result<Vec<Executor>, StoreError> {
        self.executor_snapshots(None).await
    }

    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        let mode = match when {
            Expiry::IfLeaseExpired => "lease",
            Expiry::Now => "now",
        };
        let args = vec![
            id.to_string(),
            mode.to_owned(),
            reason.to_owned(),
            self.log_ttl_secs(),
        ];
        let script = &self.inner.scripts.expire_executor;
        let reply = self.eval("expire_executor", script, args).await?;
        let (status, rest) = status_reply(&reply, "expire_executor")?;
        if status != "ok" {
            return Err(unexpected("expire_executor", &status));
        }
        rest.iter()
            .map(|v| {
                let text: String = redis::from_redis_value_ref(v)
                    .map_err(|e| corrupt("expire_executor", e.to_string()))?;
                text.parse().map_err(|e: dwr_core::MalformedJobId| {
                    corrupt("expire_executor", e.to_string())
                })
            })
            .collect()
    }

    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError> {
        if let Some(text) = self.inner.events.pop(executor) {
            return parse_event(&text).map(Some);
        }
        let key = self.inner.keys.executor_events(executor);
        let mut popped: Vec<String> =
            if wait.is_zero() {
                let mut lpop = redis::cmd("LPOP");
                lpop.arg(&key);
                if !self.inner.events.legacy() {
                    lpop.arg(EVENT_BATCH);
                }
                let reply: Option<redis::Value> = match lpop.query_async(&mut self.conn()).await {
                    Err(e) if is_unknown_command(&e) && self.inner.events.fall_back() => {
                        return self.next_event(executor, wait).await;
                    }
                    reply => reply.map_err(|e| store_error("next_event", e))?,
                };
                match reply {
                    None => Vec::new(),
                    Some(v @ redis::Value::Array(_)) => redis::from_redis_value(v)
                        .map_err(|e| corrupt("next_event", e.to_string()))?,
                    Some(v) => vec![redis::from_redis_value(v)
                        .map_err(|e| corrupt("next_event", e.to_string()))?],
                }
            } else {
                let pool = &self.inner.blocking;
                // Blocking pops take seconds with millisecond resolution; 0 means "forever".
                let secs = format!("{:.3}", wait.as_secs_f64().max(0.001));
                loop {
                    let (mut conn, reused) = pool
                        .take()
                        .await
                        .map_err(|e| store_error("next_event", e))?;
                    self.count_request();
                    let legacy = self.inner.events.legacy();
                    let pop = async {
                        if legacy {
                            let mut blpop = redis::cmd("BLPOP");
                            blpop.arg(&key).arg(&secs);
                            let reply: Option<(String, String)> =
                                blpop.query_async(&mut conn).await?;
                            Ok(reply.map(|(_, event)| vec![event]).unwrap_or_default())
                        } else {
                            // Everything queued, up to EVENT_BATCH, in one round trip.
                            let mut blmpop = redis::cmd("BLMPOP");
                            blmpop.arg(&secs).arg(1).arg(&key).arg("LEFT");
                            blmpop.arg("COUNT").arg(EVENT_BATCH);
                            let reply: Option<(String, Vec<String>)> =
                                blmpop.query_async(&mut conn).await?;
                            Ok::<_, redis::RedisError>(
                                reply.map(|(_, events)| events).unwrap_or_default(),
                            )
                        }
                    };
                    match tokio::time::timeout(wait + BLOCK_GRACE, pop).await {
                        Ok(Ok(events)) => {
                            pool.give_back(conn);
                            break events;
                        }
                        // A server before Redis 7 has no BLMPOP: pop one at a time from now on.
                        Ok(Err(e)) if is_unknown_command(&e) && self.inner.events.fall_back() => {
                            pool.give_back(conn);
                        }
                        // A pooled connection that died while idle (Redis restarted since):
                        // it never blocked, so nothing was popped; try a fresh one.
                        Ok(Err(e)) if reused && (e.is_connection_dropped() || e.is_io_error()) => {}
                        Ok(Err(e)) => return Err(store_error("next_event", e)),
                        Err(_) => return Err(timed_out("next_event")),
                    }
                }
            };
        if popped.is_empty() {
            return Ok(None);
        }
        let first = popped.remove(0);
        self.inner.events.keep(executor, popped);
        parse_event(&first).map(Some)
    }

    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError> {
        self.inner.wake.wait(wait).await;
        Ok(())
    }

    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(lines.len() + 5);
        args.push(id.to_string());
        args.push(attempt.map(|a| a.to_string()).unwrap_or_default());
        args.push(self.inner.config.log_max_lines.to_string());
        args.push(self.log_ttl_secs());
        args.push(self.inner.config.log_max_bytes.to_string());
        args.extend(lines.iter().cloned());
        let reply = self.inner.batchers.append_logs.call(args).await?;
        let (status, rest) = status_reply(&reply, "append_logs")?;
        match status.as_str() {
            "ok" => Ok(()),
            "job_not_found" => Err(StoreError::JobNotFound { id }),
            "stale" => Err(stale_at(
                id,
                attempt.unwrap_or_default(),
                rest,
                "append_logs",
            )?),
            other => Err(unexpected("append_logs", other)),
        }
    }

    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError> {
        match self.read_logs(id, from).await? {
            (None, _) => Err(StoreError::JobNotFound { id }),
            (Some(_), lines) => Ok(lines),
        }
    }

    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let (state, lines) = self.read_logs(id, from).await?;
        let state = state.ok_or(StoreError::JobNotFound { id })?;
        if !lines.is_empty() || state.is_terminal() || wait.is_zero() {
            return Ok(lines);
        }
        // Watch first, then read again, so a line appended in between is not missed. The
        // followers of this process share one subscription (pub/sub, not a per-job list,
        // because any number of followers may watch one job).
        let connect = self.inner.config.connect_timeout;
        let mut watching = match self.inner.log_watch.watch(&id.to_string(), connect).await {
            Ok(watching) => watching,
            Err(()) => return Err(timed_out("wait_logs")),
        };
        let (state, lines) = self.read_logs(id, from).await?;
        let state = state.ok_or(StoreError::JobNotFound { id })?;
        if !lines.is_empty() || state.is_terminal() {
            return Ok(lines);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woke = tokio::time::timeout_at(deadline, watching.changed())
                .await
                .is_ok();
            let (state, lines) = self.read_logs(id, from).await?;
            // A purged job is gone for its followers too.
            let state = state.ok_or(StoreError::JobNotFound { id })?;
            // A message about lines before `from` wakes us without news: wait on.
            if !woke || !lines.is_empty() || state.is_terminal() {
                return Ok(lines);
            }
        }
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.purge(older_than.as_millis().min(i64::MAX as u128).to_string(), -1)
            .await
    }

    async fn purge_finished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        self.purge(String::new(), keep.min(i64::MAX as u64) as i64)
            .await
    }
}

impl RedisJobStore {
    /// Runs the purge script in batches of [`PURGE_BATCH`] until nothing is due: jobs that
    /// finished `age_ms` ago or earlier ('' for no age), or beyond the `keep` that finished
    /// last (-1 for no count).
    async fn purge(&self, age_ms: String, keep: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let args = vec![age_ms.clone(), PURGE_BATCH.to_string(), keep.to_string()];
            let script = &self.inner.scripts.purge;
            let reply = self.eval("purge_finished", script, args).await?;
            let (deleted, more): (u64, u8) = redis::from_redis_value_ref(&reply)
                .map_err(|e| corrupt("purge_finished", e.to_string()))?;
            total += deleted;
            if more == 0 {
                return Ok(total);
            }
        }
    }
}
