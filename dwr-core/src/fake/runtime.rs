//! [`FakeRuntime`]: an in-memory container runtime driven by [`FakeBehaviour`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::ids::{ExecutorId, JobId};
use crate::runtime::{
    log_piece_len, ContainerId, ContainerRuntime, ContainerSpec, ContainerUsage, ExitStatus,
    LogLine, LogSource, OwnedContainer, ProgressSink,
};

use super::behaviour::FakeBehaviour;

/// Exit code of a container killed after its grace period.
const KILLED: i64 = 137;
/// Exit code of a container that exits on SIGTERM.
const TERMINATED: i64 = 143;
/// The endpoint named by `Unreachable` errors.
const ENDPOINT: &str = "fake://runtime";

type BehaviourFn = dyn Fn(&ContainerSpec) -> FakeBehaviour + Send + Sync + 'static;

/// An in-memory [`ContainerRuntime`].
///
/// Each started container gets a [`FakeBehaviour`] from a pluggable function (by default
/// [`FakeBehaviour::from_command`] of the job's command). Containers cost one map entry and
/// no task: their exit is computed from `tokio::time` (so tests may `tokio::time::pause()`),
/// and a stop is announced through a watch channel.
///
/// Removed containers are forgotten; [`removed_count`](Self::removed_count),
/// [`running_count`](Self::running_count) and [`started_specs`](Self::started_specs) let
/// tests look inside.
pub struct FakeRuntime {
    behaviour: Box<BehaviourFn>,
    state: Mutex<State>,
    next_id: AtomicU64,
    unreachable: AtomicBool,
    record_specs: bool,
}

#[derive(Default)]
struct State {
    containers: HashMap<ContainerId, FakeContainer>,
    pulled: HashSet<String>,
    unavailable: HashSet<String>,
    started_specs: Vec<ContainerSpec>,
    removed: u64,
    /// Starts per job, ever (a container started twice would count twice).
    starts: HashMap<JobId, u64>,
    /// Containers whose start fails (their behaviour says `start-fail`).
    doomed: HashSet<ContainerId>,
}

struct FakeContainer {
    job: JobId,
    executor: ExecutorId,
    lines: Arc<[String]>,
    /// The spec it was created from.
    spec: ContainerSpec,
    /// How long it runs once started, and how it exits then; `None` when it hangs.
    run: Option<(Duration, ExitStatus)>,
    /// Whether it was started.
    started: bool,
    /// When and how it exits by itself, from its start; `None` when it hangs or was never
    /// started.
    natural_exit: Option<(Instant, ExitStatus)>,
    exits_on_term: bool,
    /// Set when it was stopped before its natural exit.
    stopped: watch::Sender<Option<ExitStatus>>,
}

impl FakeContainer {
    /// Its exit status at `now`, `None` while it runs.
    fn status(&self, now: Instant) -> Option<ExitStatus> {
        if let Some(status) = *self.stopped.borrow() {
            return Some(status);
        }
        match self.natural_exit {
            Some((at, status)) if at <= now => Some(status),
            _ => None,
        }
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeRuntime")
            .field("containers", &state.containers.len())
            .field("removed", &state.removed)
            .field("unreachable", &self.unreachable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// A runtime whose containers behave as their command says
    /// ([`FakeBehaviour::from_command`]).
    pub fn new() -> Self {
        Self::with_behaviour(|spec| FakeBehaviour::from_command(&spec.command))
    }

    /// A runtime whose containers behave as `behaviour` decides for each spec.
    pub fn with_behaviour(
        behaviour: impl Fn(&ContainerSpec) -> FakeBehaviour + Send + Sync + 'static,
    ) -> Self {
        Self {
            behaviour: Box::new(behaviour),
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            unreachable: AtomicBool::new(false),
            record_specs: true,
        }
    }

    /// Whether to keep every started spec for [`started_specs`](Self::started_specs) and
    /// every job's start count for [`starts_of`](Self::starts_of) (on by default; a load
    /// test pushing millions of jobs turns it off, or its memory grows with every job).
    pub fn recording_specs(mut self, record: bool) -> Self {
        self.record_specs = record;
        self
    }

    /// Makes `ensure_image` of `image` fail with `ImageUnavailable`.
    pub fn with_unavailable_image(self, image: impl Into<String>) -> Self {
        self.lock().unavailable.insert(image.into());
        self
    }

    /// While set, every operation fails with `Unreachable` (an engine that went away).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::SeqCst);
    }

    /// Containers started and not yet exited.
    pub fn running_count(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .containers
            .values()
            .filter(|c| c.started && c.status(now).is_none())
            .count()
    }

    /// How many times a container of `job` was started, ever.
    pub fn starts_of(&self, job: JobId) -> u64 {
        self.lock().starts.get(&job).copied().unwrap_or(0)
    }

    /// Containers created and not yet removed, running or not.
    pub fn container_count(&self) -> usize {
        self.lock().containers.len()
    }

    /// The spec of every container given to a successful or failed `start` (and of every
    /// failed `create`), in order.
    pub fn started_specs(&self) -> Vec<ContainerSpec> {
        self.lock().started_specs.clone()
    }

    /// How many containers were removed.
    pub fn removed_count(&self) -> u64 {
        self.lock().removed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (every critical
        // section is a single insert/remove/read), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_reachable(&self) -> Result<(), RuntimeError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(RuntimeError::Unreachable {
                endpoint: ENDPOINT.to_owned(),
                source: "fake runtime set unreachable".into(),
            });
        }
        Ok(())
    }

    fn not_found(id: &ContainerId) -> RuntimeError {
        RuntimeError::ContainerNotFound { id: id.0.clone() }
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn ensure_image(&self, image: &str, progress: ProgressSink) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let mut state = self.lock();
        if state.unavailable.contains(image) {
            return Err(RuntimeError::ImageUnavailable {
                image: image.to_owned(),
                reason: "fake: configured unavailable".to_owned(),
            });
        }
        if !state.pulled.contains(image) {
            state.pulled.insert(image.to_owned());
            // The receiver may be gone; progress is best effort.
            let _ = progress.send(format!("Pulling {image}"));
            let _ = progress.send(format!("Pulled {image}"));
        }
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        self.check_reachable()?;
        let behaviour = (self.behaviour)(spec);
        if behaviour.pull_fails {
            if self.record_specs {
                self.lock().started_specs.push(spec.clone());
            }
            return Err(RuntimeError::ImageUnavailable {
                image: spec.image.clone(),
                reason: "fake: pull-fail".to_owned(),
            });
        }
        let id = ContainerId(format!(
            "fake-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        let run = (!behaviour.hang).then(|| {
            let code = if behaviour.oom {
                KILLED
            } else {
                behaviour.exit_code
            };
            let status = ExitStatus {
                code,
                oom_killed: behaviour.oom,
            };
            (behaviour.run_for, status)
        });
        let container = FakeContainer {
            job: spec.job,
            executor: spec.executor.clone(),
            lines: delivered_lines(behaviour.lines).into(),
            spec: spec.clone(),
            run,
            started: false,
            natural_exit: None,
            exits_on_term: behaviour.exits_on_term,
            stopped: watch::channel(None).0,
        };
        let mut state = self.lock();
        state.containers.insert(id.clone(), container);
        // Whether its start will fail is decided now, from the spec, as for a real engine
        // (a bad command is found at start).
        if behaviour.start_fails {
            state.doomed.insert(id.clone());
        }
        Ok(id)
    }

    async fn start(&self, id: &ContainerId, job: JobId) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let state = &mut *self.lock();
        let Some(container) = state.containers.get_mut(id) else {
            return Err(Self::not_found(id));
        };
        if container.started {
            return Err(RuntimeError::StartFailed {
                job,
                source: "fake: the container was started already".into(),
            });
        }
        if self.record_specs {
            state.started_specs.push(container.spec.clone());
        }
        if state.doomed.remove(id) {
            // As the Docker runtime does: a container that cannot start is not left behind.
            state.containers.remove(id);
            return Err(RuntimeError::StartFailed {
                job,
                source: "fake: start-fail".into(),
            });
        }
        container.started = true;
        container.natural_exit = container
            .run
            .map(|(run_for, status)| (Instant::now() + run_for, status));
        if self.record_specs {
            *state.starts.entry(container.job).or_default() += 1;
        }
        Ok(())
    }

    fn logs(&self, id: &ContainerId) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        if let Err(e) = self.check_reachable() {
            return stream::once(async { Err(e) }).boxed();
        }
        let found = self
            .lock()
            .containers
            .get(id)
            .map(|c| (c.lines.clone(), c.natural_exit, c.stopped.subscribe()));
        let Some((lines, natural_exit, stopped)) = found else {
            return stream::once(futures::future::ready(Err(Self::not_found(id)))).boxed();
        };
        let printed = stream::iter(0..lines.len()).map(move |i| {
            Ok(LogLine {
                source: LogSource::Stdout,
                text: lines[i].clone(),
            })
        });
        // The stream ends when the container exits (or is removed).
        let end = stream::once(async move {
            let _ = wait_exit(natural_exit, stopped).await;
        })
        .filter_map(|()| futures::future::ready(None));
        printed.chain(end).boxed()
    }

    async fn usage(&self, id: &ContainerId) -> Result<ContainerUsage, RuntimeError> {
        self.check_reachable()?;
        let state = self.lock();
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| Self::not_found(id))?;
        let running = container.status(Instant::now()).is_none();
        Ok(ContainerUsage {
            cpu_percent: if running { 1.0 } else { 0.0 },
            memory_bytes: if running { 1 << 20 } else { 0 },
        })
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError> {
        self.check_reachable()?;
        let (natural_exit, stopped) = {
            let state = self.lock();
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| Self::not_found(id))?;
            (c.natural_exit, c.stopped.subscribe())
        };
        wait_exit(natural_exit, stopped)
            .await
            .ok_or_else(|| Self::not_found(id))
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let now = Instant::now();
        let natural_exit = {
            let state = self.lock();
            let Some(c) = state.containers.get(id) else {
                return Err(Self::not_found(id));
            };
            if c.status(now).is_some() {
                return Ok(());
            }
            if c.exits_on_term {
                c.stopped.send_replace(Some(ExitStatus {
                    code: TERMINATED,
                    oom_killed: false,
                }));
                return Ok(());
            }
            c.natural_exit
        };
        // It ignores SIGTERM: it exits by itself if that comes within the grace period,
        // otherwise it is killed when the grace period ends.
        if let Some((at, _)) = natural_exit {
            if at <= now + grace {
                tokio::time::sleep_until(at).await;
                return Ok(());
            }
        }
        tokio::time::sleep(grace).await;
        if let Some(c) = self.lock().containers.get(id) {
            kill(&c.stopped);
        }
        Ok(())
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let mut state = self.lock();
        state.doomed.remove(id);
        if let Some(container) = state.containers.remove(id) {
            state.removed += 1;
            // Like `docker rm -f`: a running container is killed; waiters see 137.
            if container.status(Instant::now()).is_none() {
                kill(&container.stopped);
            }
        }
        Ok(())
    }

    async fn list_owned(&self, executor: &ExecutorId) -> Result<Vec<OwnedContainer>, RuntimeError> {
        self.check_reachable()?;
        let now = Instant::now();
        let state = self.lock();
        let mut owned: Vec<OwnedContainer> = state
            .containers
            .iter()
            .filter(|(_, c)| &c.executor == executor)
            .map(|(id, c)| OwnedContainer {
                id: id.clone(),
                job: c.job,
                running: c.started && c.status(now).is_none(),
                started: c.started,
            })
            .collect();
        owned.sort_by(|a, b| a.id.0.cmp(&b.id.0));
        Ok(owned)
    }
}

/// Records that a container was killed (137), unless it has an exit status already.
fn kill(stopped: &watch::Sender<Option<ExitStatus>>) {
    stopped.send_if_modified(|status| {
        let unset = status.is_none();
        if unset {
            *status = Some(ExitStatus {
                code: KILLED,
                oom_killed: false,
            });
        }
        unset
    });
}

/// The lines a container prints as a runtime delivers them: one longer than
/// [`MAX_LOG_LINE_BYTES`](crate::MAX_LOG_LINE_BYTES) as several, cut by [`log_piece_len`], as
/// the Docker runtime cuts real output.
fn delivered_lines(lines: Vec<String>) -> Vec<String> {
    let mut delivered = Vec::with_capacity(lines.len());
    for line in lines {
        if log_piece_len(line.as_bytes()) == line.len() {
            delivered.push(line);
            continue;
        }
        let mut rest = line.as_str();
        while !rest.is_empty() {
            // A cut of valid UTF-8 always falls on a character boundary.
            let (piece, tail) = rest.split_at(log_piece_len(rest.as_bytes()));
            delivered.push(piece.to_owned());
            rest = tail;
        }
    }
    delivered
}

/// Waits for a container's exit: its natural one or a stop, whichever comes first. `None`
/// when the container was dropped without an exit status (cannot happen through `remove`,
/// which records one).
async fn wait_exit(
    natural_exit: Option<(Instant, ExitStatus)>,
    mut stopped: watch::Receiver<Option<ExitStatus>>,
) -> Option<ExitStatus> {
    let natural = async {
        match natural_exit {
            Some((at, status)) => {
                tokio::time::sleep_until(at).await;
                status
            }
            None => std::future::pending().await,
        }
    };
    let observer = stopped.clone();
    tokio::select! {
        biased;
        stop = stopped.wait_for(Option::is_some) => stop.ok().and_then(|s| *s),
        // A stop is only ever recorded before the natural exit, so it wins when both are set.
        status = natural => Some(observer.borrow().unwrap_or(status)),
    }
}

#[cfg(test)]
mod tests;
