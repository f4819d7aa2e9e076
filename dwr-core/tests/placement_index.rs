//! Property tests of the indexed first fit and spread: on random clusters and job streams
//! they make exactly the decisions of the linear scans, and the view's free room never goes
//! wrong.

use dwr_core::placement::{
    ClusterView, ExecutorView, FirstFit, LinearFirstFit, LinearSpread, Placement, Spread,
};
use dwr_core::{ExecutorId, GpuDevice, GpuModel, JobSpec, Resources};
use proptest::prelude::*;

const MODELS: [&str; 3] = ["NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA A10"];
const REGIONS: [&str; 3] = ["east", "west", "north"];
const DATACENTERS: [&str; 3] = ["d1", "d2", "d3"];
/// Model rules jobs use: exact, case-changed, ambiguous ("a10" also matches the A100) and
/// absent from every executor.
const RULES: [&str; 5] = ["NVIDIA H200", "h200", "a10", "A100", "B200"];

/// One executor as generated: capacity, how much of it is still free, and constraints.
#[derive(Clone, Debug)]
struct ExecSeed {
    cpu: u64,
    mem: u64,
    gpu_models: Vec<usize>,
    free_cpu_pct: u64,
    free_mem_pct: u64,
    held_gpus: Vec<bool>,
    region: Option<usize>,
    datacenter: Option<usize>,
    alive: bool,
}

fn exec_seed() -> impl Strategy<Value = ExecSeed> {
    (
        prop_oneof![
            1 => Just(0u64),
            3 => prop::sample::select(vec![1_000u64, 2_000, 4_000, 8_000, 16_000]),
            6 => 1u64..=16_000,
        ],
        prop_oneof![
            1 => Just(0u64),
            3 => prop::sample::select(vec![1_024u64, 4_096, 16_384, 65_536]),
            6 => 1u64..=65_536,
        ],
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(0..MODELS.len(), 1..=4),
        ],
        prop_oneof![Just(0u64), Just(50), Just(100), 0u64..=100],
        prop_oneof![Just(0u64), Just(50), Just(100), 0u64..=100],
        prop::collection::vec(prop::bool::weighted(0.3), 4),
        prop::option::weighted(0.6, 0..REGIONS.len()),
        prop::option::weighted(0.5, 0..DATACENTERS.len()),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(cpu, mem, gpu_models, free_cpu_pct, free_mem_pct, held_gpus, region, dc, alive)| {
                ExecSeed {
                    cpu,
                    mem,
                    gpu_models,
                    free_cpu_pct,
                    free_mem_pct,
                    held_gpus,
                    region,
                    datacenter: dc,
                    alive,
                }
            },
        )
}

fn build_view(seeds: &[ExecSeed]) -> ClusterView {
    let executors = seeds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // "e10" sorts before "e2": the view's order differs from the generation order.
            let id = format!("e{i}");
            let gpus: Vec<GpuDevice> = s
                .gpu_models
                .iter()
                .enumerate()
                .map(|(k, &m)| GpuDevice {
                    index: k as u32,
                    uuid: format!("GPU-{id}-{k}"),
                    model: MODELS[m].to_owned(),
                    memory_mib: 80 * 1024,
                })
                .collect();
            let free_gpus: Vec<GpuDevice> = gpus
                .iter()
                .zip(&s.held_gpus)
                .filter(|(_, held)| !**held)
                .map(|(g, _)| g.clone())
                .collect();
            let capacity = Resources::new(s.cpu, s.mem, gpus.len() as u32);
            ExecutorView {
                ip: format!("10.0.{}.{}", i / 256, i % 256),
                id: ExecutorId::new(id),
                capacity,
                free: Resources::new(
                    s.cpu * s.free_cpu_pct / 100,
                    s.mem * s.free_mem_pct / 100,
                    free_gpus.len() as u32,
                ),
                free_gpus,
                gpus,
                region: s.region.map(|r| REGIONS[r].to_owned()),
                datacenter: s.datacenter.map(|d| DATACENTERS[d].to_owned()),
                alive: s.alive,
            }
        })
        .collect();
    ClusterView::new(executors)
}

/// One step of a job stream.
#[derive(Clone, Debug)]
enum Op {
    /// Place a job with both strategies; reserve what they chose.
    Place(JobSeed),
    /// The scheduler's commit was rejected: set the executor aside.
    SetAside(usize),
    /// Reserve an arbitrary amount directly (may be refused).
    Reserve {
        exec: usize,
        cpu: u64,
        mem: u64,
        gpus: usize,
    },
}

#[derive(Clone, Debug)]
struct JobSeed {
    cpu: u64,
    mem: u64,
    gpus: u32,
    rule: Option<usize>,
    regions: Vec<usize>,
    datacenters: Vec<usize>,
}

impl JobSeed {
    fn spec(&self) -> JobSpec {
        let mut spec = JobSpec::new("img", vec!["true".into()], self.cpu, self.mem);
        if self.gpus > 0 {
            let model = match self.rule {
                None => GpuModel::Any,
                Some(r) => GpuModel::parse(RULES[r]),
            };
            spec = spec.with_gpus(self.gpus, model);
        }
        spec.eligible_regions = self.regions.iter().map(|&r| REGIONS[r].into()).collect();
        spec.eligible_datacenters = self
            .datacenters
            .iter()
            .map(|&d| DATACENTERS[d].into())
            .collect();
        spec
    }
}

fn job_seed() -> impl Strategy<Value = JobSeed> {
    (
        prop_oneof![
            1 => Just(0u64),
            4 => prop::sample::select(vec![100u64, 250, 500, 1_000, 1_500, 2_000, 4_000, 8_000]),
            5 => 1u64..=8_000,
        ],
        prop_oneof![
            1 => Just(0u64),
            3 => prop::sample::select(vec![256u64, 1_024, 4_096, 16_384]),
            6 => 1u64..=16_384,
        ],
        prop_oneof![4 => Just(0u32), 1 => 1u32..=3],
        prop::option::of(0..RULES.len()),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(0..REGIONS.len(), 1..=2),
        ],
        prop_oneof![
            4 => Just(Vec::new()),
            1 => prop::collection::vec(0..DATACENTERS.len(), 1..=2),
        ],
    )
        .prop_map(|(cpu, mem, gpus, rule, regions, datacenters)| JobSeed {
            cpu,
            mem,
            gpus,
            rule,
            regions,
            datacenters,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => job_seed().prop_map(Op::Place),
        1 => any::<usize>().prop_map(Op::SetAside),
        2 => (any::<usize>(), 0u64..=20_000, 0u64..=70_000, 0usize..=2)
            .prop_map(|(exec, cpu, mem, gpus)| Op::Reserve { exec, cpu, mem, gpus }),
    ]
}

fn case() -> impl Strategy<Value = (Vec<ExecSeed>, Vec<Op>)> {
    (
        prop::collection::vec(exec_seed(), 1..200),
        prop::collection::vec(op(), 1..150),
    )
}

/// The free room the view shows for each executor, to compare with a shadow model.
fn free_room(view: &ClusterView) -> Vec<(Resources, Vec<String>)> {
    view.executors()
        .iter()
        .map(|e| (e.free, e.free_gpus.iter().map(|g| g.uuid.clone()).collect()))
        .collect()
}

/// What an `Op::Reserve` asks of `exec`: `cpu` and `mem`, and the first `gpus` of its free
/// devices (as many as there are).
fn reservation(exec: &ExecutorView, cpu: u64, mem: u64, gpus: usize) -> (Resources, Vec<String>) {
    let ids: Vec<String> = exec
        .free_gpus
        .iter()
        .take(gpus)
        .map(|g| g.uuid.clone())
        .collect();
    (Resources::new(cpu, mem, ids.len() as u32), ids)
}

/// Runs `ops` on the view of `seeds`, checking that `indexed` and `linear` decide alike at
/// every placement (and reserving what they chose).
fn decide_alike(
    indexed: &dyn Placement,
    linear: &dyn Placement,
    seeds: &[ExecSeed],
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut view = build_view(seeds);
    for op in ops {
        match op {
            Op::Place(job) => {
                let spec = job.spec();
                let fast = indexed.place(&spec, &view);
                let scan = linear.place(&spec, &view);
                prop_assert_eq!(&fast, &scan, "job {:?}", job);
                if let Ok(choice) = fast {
                    prop_assert!(
                        view.reserve(choice.executor, &spec.resources(), &choice.gpu_ids),
                        "a chosen executor must accept the reservation"
                    );
                }
            }
            Op::SetAside(i) => view.set_aside(i % view.len()),
            Op::Reserve {
                exec,
                cpu,
                mem,
                gpus,
            } => {
                let index = exec % view.len();
                let (want, ids) = reservation(&view.executors()[index], *cpu, *mem, *gpus);
                view.reserve(index, &want, &ids);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// At every step, the indexed first fit gives the same `Result<Choice, Explanation>` as
    /// the linear scan: same executor, same GPU devices, same explanation.
    #[test]
    fn indexed_first_fit_decides_like_the_linear_scan((seeds, ops) in case()) {
        decide_alike(&FirstFit, &LinearFirstFit, &seeds, &ops)?;
    }

    /// The same for spread: the least loaded executor found through the index is the one
    /// the scan finds, ties going to the first by id.
    #[test]
    fn indexed_spread_decides_like_the_linear_scan((seeds, ops) in case()) {
        decide_alike(&Spread, &LinearSpread, &seeds, &ops)?;
    }

    /// Whatever the sequence, the view's free room is what a shadow model computes from the
    /// accepted reservations, never exceeds capacity (nor goes below zero), free devices are
    /// the executor's own, and a reservation of what is not free is refused and changes
    /// nothing.
    #[test]
    fn free_room_stays_consistent_and_reserve_refuses_what_is_not_free(
        (seeds, ops) in case()
    ) {
        let mut view = build_view(&seeds);
        let mut shadow = free_room(&view);
        for op in &ops {
            match op {
                Op::Place(job) => {
                    let spec = job.spec();
                    if let Ok(choice) = FirstFit.place(&spec, &view) {
                        let want = spec.resources();
                        prop_assert!(view.reserve(choice.executor, &want, &choice.gpu_ids));
                        let (free, gpus) = &mut shadow[choice.executor];
                        *free = free.checked_sub(&want).expect("placement chose room that was free");
                        gpus.retain(|g| !choice.gpu_ids.contains(g));
                    }
                }
                Op::SetAside(i) => {
                    let index = i % view.len();
                    view.set_aside(index);
                    shadow[index] = (Resources::ZERO, Vec::new());
                }
                Op::Reserve { exec, cpu, mem, gpus } => {
                    let index = exec % view.len();
                    let before = view.clone();
                    let exec_view = &view.executors()[index];
                    let (want, ids) = reservation(exec_view, *cpu, *mem, *gpus);
                    let fits = want.fits_in(&exec_view.free);
                    prop_assert_eq!(view.reserve(index, &want, &ids), fits);
                    if fits {
                        let (free, gpus) = &mut shadow[index];
                        *free = free.checked_sub(&want).expect("fits");
                        gpus.retain(|g| !ids.contains(g));
                    } else {
                        prop_assert_eq!(&view, &before, "a refused reservation changes nothing");
                    }

                    // Over-asks by one unit on each dimension, and a device already taken
                    // (or not its own), are refused and change nothing.
                    let before = view.clone();
                    let free = view.executors()[index].free;
                    for over in [
                        Resources::new(free.cpu_millis + 1, 0, 0),
                        Resources::new(0, free.memory_mib + 1, 0),
                        Resources::new(0, 0, free.gpus + 1),
                    ] {
                        prop_assert!(!view.reserve(index, &over, &[]));
                    }
                    let foreign = ["GPU-nowhere".to_owned()];
                    prop_assert!(!view.reserve(index, &Resources::ZERO, &foreign));
                    if fits {
                        for g in &ids {
                            let taken = std::slice::from_ref(g);
                            prop_assert!(!view.reserve(index, &Resources::ZERO, taken));
                        }
                    }
                    prop_assert_eq!(&view, &before);
                }
            }
            prop_assert_eq!(free_room(&view), shadow.clone());
            for e in view.executors() {
                prop_assert!(e.free.fits_in(&e.capacity), "free exceeds capacity on {}", e.id);
                prop_assert!(e.free_gpus.len() <= e.gpus.len());
                prop_assert!(e.free_gpus.iter().all(|g| e.gpus.contains(g)));
            }
        }
    }
}
