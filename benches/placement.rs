//! Criterion benchmarks of placement: one decision and its reservation per element, over
//! realistic clusters of 10, 1,000, 10,000 and 100,000 executors.
//!
//! Run with `cargo bench --bench placement`. Each benchmark keeps one view across its
//! samples, so the cluster fills up as it would during a busy scheduling pass; when a
//! decision finds no room the view is refilled from a pristine copy, outside the timed part.
//! The failing decision itself (which builds its explanation by counting every executor) is
//! timed and counted as an element: it is rare (once per fill of the cluster).

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dwr::placement::{
    ClusterView, ExecutorView, FirstFit, LinearFirstFit, LinearSpread, Placement, Spread,
};
use dwr::{ExecutorId, GpuDevice, GpuModel, JobSpec, Resources};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
const GPU_MODELS: [&str; 3] = [
    "NVIDIA A100-SXM4-80GB",
    "NVIDIA H100 80GB HBM3",
    "NVIDIA L4",
];
const REGIONS: [&str; 3] = ["us-east", "us-west", "eu-west"];
/// Jobs cycled through by every benchmark (the same stream for every strategy).
const JOB_POOL: usize = 4096;

/// A small deterministic generator (xorshift64*), so every run sees the same cluster and jobs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// A mixed fleet: 4 to 64 cores, 4 GiB per core (2 or 8 on some), 10% GPU machines with
/// 4 or 8 devices of one model, three regions, 2% lost (no heartbeat).
fn cluster(size: usize) -> ClusterView {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ size as u64);
    let executors = (0..size)
        .map(|i| {
            let id = format!("exec-{i:05}");
            let cores = *rng.pick(&[4u64, 8, 16, 16, 32, 32, 64]);
            let gib_per_core = *rng.pick(&[2u64, 4, 4, 4, 8]);
            let gpus: Vec<GpuDevice> = if rng.chance(10) {
                let model = *rng.pick(&GPU_MODELS);
                let count = *rng.pick(&[4u32, 8]);
                (0..count)
                    .map(|k| GpuDevice {
                        index: k,
                        uuid: format!("GPU-{i:05}-{k}"),
                        model: model.to_owned(),
                        memory_mib: 80 * 1024,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let capacity =
                Resources::new(cores * 1000, cores * gib_per_core * 1024, gpus.len() as u32);
            let region = rng.pick(&REGIONS).to_string();
            ExecutorView {
                ip: format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256),
                id: ExecutorId::new(id),
                capacity,
                free: capacity,
                free_gpus: gpus.clone(),
                gpus,
                datacenter: Some(format!("{region}-{}", rng.next() % 3)),
                region: Some(region),
                alive: !rng.chance(2),
            }
        })
        .collect();
    ClusterView::new(executors)
}

/// A realistic stream: mostly small CPU jobs (0.25 to 8 cores, 256 MiB to 32 GiB), 5%
/// wanting 1 or 2 GPUs ("any" or a named model), 10% restricted to one region.
fn jobs() -> Vec<JobSpec> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    (0..JOB_POOL)
        .map(|_| {
            let cpu = *rng.pick(&[250u64, 500, 1000, 1000, 2000, 2000, 4000, 8000]);
            let mem = *rng.pick(&[256u64, 512, 1024, 2048, 4096, 8192, 16_384, 32_768]);
            let mut spec = JobSpec::new("registry.local/train:latest", vec![], cpu, mem);
            if rng.chance(5) {
                let model = if rng.chance(50) {
                    GpuModel::Any
                } else {
                    GpuModel::parse(if rng.chance(50) { "h100" } else { "A100" })
                };
                spec = spec.with_gpus(1 + (rng.next() % 2) as u32, model);
            }
            if rng.chance(10) {
                spec.eligible_regions = vec![rng.pick(&REGIONS).to_string()];
            }
            spec
        })
        .collect()
}

/// A cluster being filled by a job stream, refilled when a decision finds no room.
struct Filling {
    pristine: ClusterView,
    view: ClusterView,
    jobs: Vec<JobSpec>,
    next: usize,
}

impl Filling {
    /// The cluster of `size` executors and the jobs of the stream it can run at all (a job
    /// that fits nowhere even on the empty cluster would only measure its explanation).
    fn new(size: usize) -> Self {
        let pristine = cluster(size);
        let jobs: Vec<JobSpec> = jobs()
            .into_iter()
            .filter(|spec| LinearFirstFit.place(spec, &pristine).is_ok())
            .collect();
        assert!(
            !jobs.is_empty(),
            "no job of the stream fits {size} executors"
        );
        Self {
            view: pristine.clone(),
            pristine,
            jobs,
            next: 0,
        }
    }

    /// Times `iters` decisions (each with its reservation), excluding refills.
    fn run(&mut self, placement: &dyn Placement, iters: u64) -> Duration {
        let mut timed = Duration::ZERO;
        let mut start = Instant::now();
        for _ in 0..iters {
            let spec = &self.jobs[self.next % self.jobs.len()];
            self.next += 1;
            match placement.place(spec, &self.view) {
                Ok(choice) => {
                    let reserved =
                        self.view
                            .reserve(choice.executor, &spec.resources(), &choice.gpu_ids);
                    black_box(reserved);
                }
                Err(why) => {
                    black_box(why);
                    timed += start.elapsed();
                    self.view.clone_from(&self.pristine);
                    start = Instant::now();
                }
            }
        }
        timed + start.elapsed()
    }
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let strategies: [(&str, &dyn Placement); 4] = [
        ("first_fit_indexed", &FirstFit),
        ("first_fit_linear", &LinearFirstFit),
        ("spread_indexed", &Spread),
        ("spread_linear", &LinearSpread),
    ];
    for (name, strategy) in strategies {
        for size in SIZES {
            let mut filling = Filling::new(size);
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| filling.run(strategy, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
