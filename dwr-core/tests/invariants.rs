//! Property test: random interleavings of submits, scheduling passes, heartbeats, starts,
//! exits (with retries), aborts, executor deaths and writes from stale attempts against the
//! in-memory store never break the invariants of the cluster: no over-allocation, no GPU
//! held twice, never two running attempts of one job, never a stale write accepted.
//!
//! The simulation drives the store and the scheduler directly, step by step, with a
//! simulated clock, so every run is deterministic and proptest can shrink a failure to
//! the shortest sequence of operations.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dwr_core::placement::FirstFit;
use dwr_core::{
    AbortCause, Clock, ExecutorEvent, ExecutorId, ExecutorRegistration, GpuDevice, GpuModel,
    HostUsage, InMemoryJobStore, Job, JobId, JobQuery, JobSpec, JobState, JobStore, ManualClock,
    Outcome, Resources, Scheduler, SchedulerConfig, StoreError, Timestamp,
};
use proptest::prelude::*;

const TTL: Duration = Duration::from_secs(90);
const MODELS: [&str; 2] = ["NVIDIA H200", "NVIDIA A10"];

#[derive(Clone, Debug)]
enum Op {
    Submit {
        cpu: u64,
        mem: u64,
        gpus: u32,
        model: Option<usize>,
        retries: u32,
        backoff_secs: u64,
    },
    /// An executor writes about an attempt of the job that is not under way any more.
    Stale {
        job: usize,
        kind: u8,
    },
    Pass,
    Advance {
        secs: u64,
    },
    Heartbeat {
        exec: usize,
    },
    /// The executor takes its next event: starts an assigned job, or stops an aborted one.
    Step {
        exec: usize,
    },
    Exit {
        job: usize,
        code: i64,
        oom: bool,
    },
    Abort {
        job: usize,
    },
    /// The executor dies: it never heartbeats or steps again.
    Kill {
        exec: usize,
    },
    Join,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=4, 1u64..=4, 0u32..=2, proptest::option::of(0usize..MODELS.len()), 0u32..=2, prop_oneof![Just(0u64), Just(30u64)])
            .prop_map(|(c, m, g, model, retries, backoff_secs)| Op::Submit { cpu: c * 500, mem: m * 512, gpus: g, model, retries, backoff_secs }),
        2 => (0usize..64, 0u8..3).prop_map(|(job, kind)| Op::Stale { job, kind }),
        3 => Just(Op::Pass),
        1 => (1u64..=120).prop_map(|secs| Op::Advance { secs }),
        2 => (0usize..8).prop_map(|exec| Op::Heartbeat { exec }),
        4 => (0usize..8).prop_map(|exec| Op::Step { exec }),
        3 => (0usize..64, -1i64..=2, any::<bool>()).prop_map(|(job, code, oom)| Op::Exit { job, code, oom }),
        1 => (0usize..64).prop_map(|job| Op::Abort { job }),
        1 => (0usize..8).prop_map(|exec| Op::Kill { exec }),
        1 => Just(Op::Join),
    ]
}

struct Sim {
    store: Arc<InMemoryJobStore>,
    scheduler: Scheduler,
    /// The store's clock, moved by `Advance` only.
    clock: Arc<ManualClock>,
    executors: Vec<(ExecutorId, bool)>,
    jobs: Vec<JobId>,
    /// Assigned events seen, per job and attempt.
    assigned_events: HashMap<(JobId, u32), usize>,
    /// The attempts of each job an executor got the store's confirmation to run, in order.
    runs: HashMap<JobId, Vec<u32>>,
    terminal: HashMap<JobId, JobState>,
}

impl Sim {
    async fn new(executors: usize) -> Self {
        let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
        let store = Arc::new(InMemoryJobStore::new().with_clock(clock.clone()));
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(FirstFit),
            SchedulerConfig::default(),
        );
        let mut sim = Sim {
            store,
            scheduler,
            clock,
            executors: Vec::new(),
            jobs: Vec::new(),
            assigned_events: HashMap::new(),
            runs: HashMap::new(),
            terminal: HashMap::new(),
        };
        for _ in 0..executors {
            sim.join().await;
        }
        sim
    }

    async fn join(&mut self) {
        let n = self.executors.len();
        let id = ExecutorId::new(format!("exec-{n:02}"));
        let gpus = (0..(n % 3) as u32)
            .map(|i| GpuDevice {
                index: i,
                uuid: format!("GPU-{n}-{i}"),
                model: MODELS[(n + i as usize) % MODELS.len()].into(),
                memory_mib: 1024,
            })
            .collect();
        let reg = ExecutorRegistration::new(id.clone(), format!("10.0.0.{n}"), 4000, 4096, gpus);
        self.store.register_executor(&reg).await.unwrap();
        self.executors.push((id, true));
    }

    fn live(&self, i: usize) -> Option<ExecutorId> {
        let (id, alive) = self.executors.get(i % self.executors.len().max(1))?;
        alive.then(|| id.clone())
    }

    fn job(&self, i: usize) -> Option<JobId> {
        (!self.jobs.is_empty()).then(|| self.jobs[i % self.jobs.len()])
    }

    async fn apply(&mut self, op: &Op) {
        let store = self.store.clone();
        match *op {
            Op::Submit {
                cpu,
                mem,
                gpus,
                model,
                retries,
                backoff_secs,
            } => {
                let mut spec = JobSpec::new("img", vec!["run".into()], cpu, mem);
                if gpus > 0 {
                    let rule = model.map_or(GpuModel::Any, |m| GpuModel::parse(MODELS[m]));
                    spec = spec.with_gpus(gpus, rule);
                }
                spec.retry.max_retries = retries;
                spec.retry.backoff = Duration::from_secs(backoff_secs);
                let job = Job::new(JobId::new(), spec, self.clock.now());
                store.submit(job.clone()).await.unwrap();
                self.jobs.push(job.id);
            }
            Op::Pass => {
                self.scheduler.run_pass_with(true).await.unwrap();
            }
            Op::Advance { secs } => self.clock.advance(Duration::from_secs(secs)),
            Op::Heartbeat { exec } => {
                if let Some(id) = self.live(exec) {
                    match store.heartbeat(&id, &HostUsage::default()).await {
                        Ok(()) => {}
                        // Expired while it was slow: it registers again, as the agent does.
                        Err(StoreError::ExecutorNotFound { .. }) => {
                            let n = exec % self.executors.len();
                            let reg = ExecutorRegistration::new(
                                id,
                                format!("10.0.0.{n}"),
                                4000,
                                4096,
                                vec![],
                            );
                            store.register_executor(&reg).await.unwrap();
                        }
                        Err(e) => panic!("heartbeat: {e}"),
                    }
                }
            }
            Op::Step { exec } => {
                if let Some(id) = self.live(exec) {
                    self.step(&id).await;
                }
            }
            Op::Exit { job, code, oom } => {
                // Pick among the running jobs, so exits happen often enough to matter.
                let query = JobQuery {
                    state: Some(JobState::Running),
                    offset: 0,
                    limit: 1000,
                };
                let running = store.jobs(&query).await.unwrap();
                if !running.is_empty() {
                    let running = &running[job % running.len()];
                    // The executor reports on its attempt; a failure may be retried.
                    store
                        .finish(
                            running.id,
                            &Outcome::exited(code, oom),
                            Some(running.attempt),
                        )
                        .await
                        .unwrap();
                }
            }
            Op::Stale { job, kind } => {
                if let Some(id) = self.job(job) {
                    self.stale_write(id, kind).await;
                }
            }
            Op::Abort { job } => {
                if let Some(id) = self.job(job) {
                    match store.request_abort(id, AbortCause::User).await {
                        Ok(_) | Err(StoreError::AlreadyTerminal { .. }) => {}
                        Err(e) => panic!("abort: {e}"),
                    }
                }
            }
            Op::Kill { exec } => {
                if !self.executors.is_empty() {
                    let n = exec % self.executors.len();
                    self.executors[n].1 = false;
                }
            }
            Op::Join => {
                if self.executors.len() < 8 {
                    self.join().await;
                }
            }
        }
    }

    /// What an agent does with one event.
    async fn step(&mut self, id: &ExecutorId) {
        let Some(event) = self.store.next_event(id, Duration::ZERO).await.unwrap() else {
            return;
        };
        match event {
            ExecutorEvent::Assigned(job) => {
                let (job, attempt) = (job.id, job.attempt);
                *self.assigned_events.entry((job, attempt)).or_default() += 1;
                // The job may have been aborted or expired meanwhile: then this is refused.
                if self.store.mark_running(job, id, attempt).await.is_ok() {
                    // Confirmed: every earlier attempt of the job has ended by now.
                    let stored = self.store.job(job).await.unwrap();
                    let ended: HashSet<u32> = stored.attempts.iter().map(|a| a.attempt).collect();
                    for earlier in 1..attempt {
                        assert!(
                            ended.contains(&earlier),
                            "job {job}: attempt {attempt} runs while attempt {earlier} has not ended"
                        );
                    }
                    self.runs.entry(job).or_default().push(attempt);
                }
            }
            ExecutorEvent::Abort(job, cause) => {
                self.store
                    .finish(job, &cause.outcome(), None)
                    .await
                    .unwrap();
            }
        }
    }

    /// An executor writes about an attempt of `id` that is not under way (an older one, or
    /// the current one once it ended in a retry): refused, nothing changed.
    async fn stale_write(&mut self, id: JobId, kind: u8) {
        let before = self.store.job(id).await.unwrap();
        let stale = if before.state == JobState::Pending && before.attempt > 0 {
            before.attempt
        } else if before.attempt > 1 {
            before.attempt - 1
        } else {
            return;
        };
        let exec = before
            .attempts
            .iter()
            .find(|a| a.attempt == stale)
            .and_then(|a| a.executor.clone())
            .unwrap_or_else(|| ExecutorId::new("exec-00"));
        let logs = self.store.logs(id, 0).await.unwrap();
        let refused = match kind {
            0 => self
                .store
                .finish(id, &Outcome::exited(0, false), Some(stale))
                .await
                .err(),
            1 => self
                .store
                .append_logs(id, Some(stale), &["late line".into()])
                .await
                .err(),
            _ => self.store.mark_running(id, &exec, stale).await.err(),
        };
        assert!(
            matches!(
                refused,
                Some(
                    StoreError::StaleAttempt { .. }
                        | StoreError::InvalidTransition { .. }
                        | StoreError::AlreadyTerminal { .. }
                )
            ),
            "a write from stale attempt {stale} of job {id} ({}) was accepted: {refused:?}",
            before.state
        );
        if kind < 2 {
            assert!(
                matches!(refused, Some(StoreError::StaleAttempt { .. })),
                "{refused:?}"
            );
        }
        assert_eq!(
            self.store.job(id).await.unwrap(),
            before,
            "a refused write changed the job"
        );
        assert_eq!(self.store.logs(id, 0).await.unwrap(), logs);
    }

    /// Checks every invariant against the store's state.
    async fn check(&mut self) {
        let store = &self.store;
        let mut held: BTreeMap<ExecutorId, Resources> = BTreeMap::new();
        let mut gpu_owner: HashMap<String, JobId> = HashMap::new();
        let mut jobs = HashMap::new();
        for id in &self.jobs {
            let job = store.job(*id).await.unwrap();
            if let Some(first) = self.terminal.get(id) {
                assert_eq!(job.state, *first, "job {id} left its terminal state");
            } else if job.state.is_terminal() {
                self.terminal.insert(*id, job.state);
            }
            for attempt in 1..=job.attempt {
                assert!(
                    self.assigned_events
                        .get(&(*id, attempt))
                        .copied()
                        .unwrap_or(0)
                        <= 1,
                    "attempt {attempt} of job {id} assigned twice"
                );
            }
            if let Some(runs) = self.runs.get(id) {
                assert!(
                    runs.windows(2).all(|w| w[0] < w[1]),
                    "job {id}: an attempt ran twice: {runs:?}"
                );
                let ended = job.attempts.len() as u32;
                let under_way = u32::from(job.state.holds_resources());
                assert!(
                    runs.len() as u32 <= ended + under_way,
                    "job {id}: {} attempts ran, {ended} ended and {under_way} under way",
                    runs.len()
                );
            }
            assert!(
                job.attempt <= job.spec.retry.max_retries + 1,
                "job {id}: attempt {} past its retries",
                job.attempt
            );
            if job.state.holds_resources() {
                let exec = job
                    .executor
                    .clone()
                    .expect("an assigned job names its executor");
                let total = held.entry(exec).or_default();
                *total = total.checked_add(&job.spec.resources()).unwrap();
                assert_eq!(job.gpu_ids.len(), job.spec.gpu.count as usize);
                for gpu in &job.gpu_ids {
                    assert!(
                        gpu_owner.insert(gpu.clone(), *id).is_none(),
                        "GPU {gpu} held by two jobs"
                    );
                }
            }
            jobs.insert(*id, job);
        }
        let executors = store.executors().await.unwrap();
        let registered: HashSet<_> = executors.iter().map(|e| e.id().clone()).collect();
        for exec in &executors {
            let expected = held.get(exec.id()).copied().unwrap_or_default();
            assert_eq!(
                exec.allocated,
                expected,
                "{}: allocation differs from its jobs",
                exec.id()
            );
            common::assert_not_over_allocated(exec);
            for (gpu, holder) in &exec.gpu_holders {
                assert_eq!(
                    gpu_owner.get(gpu),
                    Some(holder),
                    "{gpu} held by a job that does not hold it"
                );
            }
            for job in &exec.jobs {
                let j = &jobs[job];
                assert!(j.state.holds_resources() && j.executor.as_ref() == Some(exec.id()));
            }
        }
        for (exec, _) in held {
            assert!(
                registered.contains(&exec),
                "a job holds room on unregistered {exec}"
            );
        }
    }

    /// Ends every job and checks that an idle cluster has everything free.
    async fn drain(&mut self) {
        for id in self.jobs.clone() {
            match self.store.request_abort(id, AbortCause::User).await {
                Ok(_) | Err(StoreError::AlreadyTerminal { .. }) => {}
                Err(e) => panic!("abort: {e}"),
            }
        }
        for (id, _) in self
            .executors
            .clone()
            .into_iter()
            .filter(|(_, alive)| *alive)
        {
            self.store.heartbeat(&id, &HostUsage::default()).await.ok();
            while self
                .store
                .next_event(&id, Duration::ZERO)
                .await
                .unwrap()
                .is_some()
            {}
        }
        // Live executors stop what they were told; dead ones expire.
        for id in self.jobs.clone() {
            let job = self.store.job(id).await.unwrap();
            if let (Some(cause), Some(exec)) = (job.abort_requested, job.executor) {
                if self.executors.iter().any(|(e, alive)| *alive && *e == exec) {
                    self.store.finish(id, &cause.outcome(), None).await.unwrap();
                }
            }
        }
        self.clock.advance(TTL + Duration::from_secs(1));
        self.scheduler.run_pass_with(true).await.unwrap();
        self.check().await;
        for id in &self.jobs {
            let job = self.store.job(*id).await.unwrap();
            assert!(
                job.state.is_terminal(),
                "job {id} is {} after the drain",
                job.state
            );
        }
        assert_eq!(
            self.terminal.len(),
            self.jobs.len(),
            "every job reached exactly one terminal state"
        );
        for exec in self.store.executors().await.unwrap() {
            assert!(
                exec.allocated.is_zero() && exec.gpu_holders.is_empty() && exec.jobs.is_empty()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_the_invariants(
        executors in 1usize..5,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut sim = Sim::new(executors).await;
            for op in &ops {
                sim.apply(op).await;
                sim.check().await;
            }
            sim.drain().await;
        });
    }
}
