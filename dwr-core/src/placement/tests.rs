//! Unit tests of the placement strategies and their explanations.

use super::*;
use crate::executor::GpuDevice;
use crate::ids::ExecutorId;
use crate::resources::Resources;
use crate::spec::{GpuModel, JobSpec};

fn gpu(host: &str, i: u32, model: &str) -> GpuDevice {
    GpuDevice {
        index: i,
        uuid: format!("GPU-{host}-{i}"),
        model: model.into(),
        memory_mib: 80 * 1024,
    }
}

fn exec(id: &str, cpu: u64, mem: u64, gpus: Vec<GpuDevice>) -> ExecutorView {
    let capacity = Resources::new(cpu, mem, gpus.len() as u32);
    ExecutorView {
        id: ExecutorId::new(id),
        ip: format!("10.0.0.{}", id.len()),
        capacity,
        free: capacity,
        free_gpus: gpus.clone(),
        gpus,
        region: None,
        datacenter: None,
        alive: true,
    }
}

fn job(cpu: u64, mem: u64) -> JobSpec {
    JobSpec::new("img", vec!["true".into()], cpu, mem)
}

fn strategies() -> [&'static dyn Placement; 2] {
    [&FirstFit, &Spread]
}

#[test]
fn first_fit_takes_the_first_executor_by_id_with_room() {
    let mut c = ClusterView::new(vec![
        exec("c", 4000, 4096, vec![]),
        exec("a", 1000, 1024, vec![]),
        exec("b", 4000, 4096, vec![]),
    ]);
    let ids: Vec<_> = c
        .executors()
        .iter()
        .map(|e| e.id.as_str().to_owned())
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "the view is ordered by id");
    let choice = FirstFit.place(&job(2000, 512), &c).unwrap();
    assert_eq!(c.executors()[choice.executor].id.as_str(), "b");
    assert!(c.reserve(choice.executor, &Resources::new(2000, 512, 0), &[]));
    assert!(c.reserve(choice.executor, &Resources::new(2000, 512, 0), &[]));
    let next = FirstFit.place(&job(2000, 512), &c).unwrap();
    assert_eq!(
        c.executors()[next.executor].id.as_str(),
        "c",
        "b is full now"
    );
}

#[test]
fn spread_takes_the_least_loaded() {
    let mut c = ClusterView::new(vec![
        exec("a", 4000, 4096, vec![]),
        exec("b", 4000, 4096, vec![]),
    ]);
    assert!(c.reserve(0, &Resources::new(1000, 0, 0), &[]));
    let choice = Spread.place(&job(500, 100), &c).unwrap();
    assert_eq!(c.executors()[choice.executor].id.as_str(), "b");
    let tie = Spread
        .place(
            &job(500, 100),
            &ClusterView::new(vec![
                exec("b", 1000, 1024, vec![]),
                exec("a", 1000, 1024, vec![]),
            ]),
        )
        .unwrap();
    assert_eq!(tie.executor, 0, "ties go to the first by id");
}

#[test]
fn gpus_are_chosen_as_devices_of_the_wanted_model() {
    let mut c = ClusterView::new(vec![
        exec("a", 8000, 8192, vec![gpu("a", 0, "NVIDIA A10")]),
        exec(
            "b",
            8000,
            8192,
            vec![gpu("b", 0, "NVIDIA H200"), gpu("b", 1, "NVIDIA H200")],
        ),
    ]);
    let spec = job(1000, 1024).with_gpus(2, GpuModel::parse("h200"));
    for p in strategies() {
        let choice = p.place(&spec, &c).unwrap();
        assert_eq!(choice.gpu_ids, ["GPU-b-0", "GPU-b-1"], "{}", p.name());
    }
    let one = FirstFit
        .place(&job(1000, 1024).with_gpus(1, GpuModel::Any), &c)
        .unwrap();
    assert_eq!(
        (one.executor, one.gpu_ids.clone()),
        (0, vec!["GPU-a-0".to_owned()])
    );
    assert!(c.reserve(1, &Resources::new(1000, 1024, 1), &["GPU-b-0".to_owned()]));
    let why = FirstFit.place(&spec, &c).unwrap_err();
    assert_eq!(why.exhausted.gpu, 1);
    assert_eq!(why.filtered.gpu_model, 1);
    assert!(!why.infeasible);
    assert!(
        !c.reserve(1, &Resources::new(1, 1, 1), &["GPU-b-0".to_owned()]),
        "a held device cannot be reserved again"
    );
}

#[test]
fn regions_datacenters_and_liveness_filter() {
    let mut east = exec("a", 4000, 4096, vec![]);
    east.region = Some("east".into());
    east.datacenter = Some("e1".into());
    let mut west = exec("b", 4000, 4096, vec![]);
    west.region = Some("west".into());
    let mut dead = exec("c", 4000, 4096, vec![]);
    dead.alive = false;
    let c = ClusterView::new(vec![east, west, dead]);
    let mut spec = job(100, 100);
    spec.eligible_regions = vec!["west".into()];
    for p in strategies() {
        assert_eq!(p.place(&spec, &c).unwrap().executor, 1);
    }
    spec.eligible_datacenters = vec!["e1".into()];
    let why = FirstFit.place(&spec, &c).unwrap_err();
    assert_eq!(
        why.filtered,
        Filtered {
            dead: 1,
            region: 1,
            datacenter: 1,
            gpu_model: 0
        }
    );
    assert!(
        why.infeasible,
        "no live executor satisfies both constraints"
    );
    assert_eq!(why.failure(), PlacementFailure::Infeasible);
}

#[test]
fn too_small_is_infeasible_but_full_is_waiting() {
    let mut c = ClusterView::new(vec![
        exec("a", 2000, 2048, vec![]),
        exec("b", 1000, 4096, vec![]),
    ]);
    let big = FirstFit.place(&job(3000, 100), &c).unwrap_err();
    assert!(big.infeasible);
    assert_eq!(big.too_small.cpu, 2);
    assert!(big.to_string().starts_with("infeasible"), "{big}");

    assert!(c.reserve(0, &Resources::new(2000, 0, 0), &[]));
    assert!(c.reserve(1, &Resources::new(0, 4000, 0), &[]));
    let why = FirstFit.place(&job(1000, 1024), &c).unwrap_err();
    assert!(!why.infeasible);
    assert_eq!((why.exhausted.cpu, why.exhausted.memory), (1, 1));
    assert!(why.to_string().contains("1 full on cpu"), "{why}");
}

#[test]
fn a_gpu_job_on_a_gpu_less_cluster_says_no_executor_has_gpus() {
    let c = ClusterView::new(vec![exec("a", 2000, 2048, vec![])]);
    let why = FirstFit
        .place(&job(100, 100).with_gpus(1, GpuModel::Any), &c)
        .unwrap_err();
    assert!(why.infeasible && why.no_gpus_anywhere);
    assert!(why.to_string().contains("no executor has GPUs"), "{why}");
}

#[test]
fn no_live_executor_is_waiting_not_infeasible() {
    let why = FirstFit
        .place(&job(1, 1), &ClusterView::default())
        .unwrap_err();
    assert!(!why.infeasible);
    assert_eq!(why.failure(), PlacementFailure::NoExecutors);
    let mut dead = exec("a", 1000, 1000, vec![]);
    dead.alive = false;
    let why = Spread
        .place(&job(1, 1), &ClusterView::new(vec![dead]))
        .unwrap_err();
    assert!(!why.infeasible);
    assert!(why.to_string().contains("lost"), "{why}");
}

#[test]
fn views_of_stored_executors_honour_the_ttl() {
    use crate::executor::{Executor, ExecutorRegistration};
    use crate::time::Timestamp;
    let reg = ExecutorRegistration::new(ExecutorId::new("x"), "1.2.3.4", 1000, 1024, vec![]);
    let e = Executor::new(reg, Timestamp(0));
    assert!(
        ClusterView::from_executors(std::slice::from_ref(&e), Timestamp(90_000)).executors()[0]
            .alive
    );
    assert!(!ClusterView::from_executors(&[e], Timestamp(90_001)).executors()[0].alive);
}

#[test]
fn first_fit_skips_executors_with_room_but_the_wrong_region_or_model() {
    let mut a = exec("a", 8000, 8192, vec![gpu("a", 0, "NVIDIA A10")]);
    a.region = Some("east".into());
    let mut b = exec("b", 8000, 8192, vec![gpu("b", 0, "NVIDIA H200")]);
    b.region = Some("west".into());
    let mut c = exec("c", 8000, 8192, vec![gpu("c", 0, "NVIDIA H200")]);
    c.region = Some("east".into());
    let mut dead = exec("0", 8000, 8192, vec![gpu("0", 0, "NVIDIA H200")]);
    dead.alive = false;
    let view = ClusterView::new(vec![c, b, a, dead]);
    let mut spec = job(1000, 1024).with_gpus(1, GpuModel::parse("h200"));
    spec.eligible_regions = vec!["east".into()];
    let choice = FirstFit.place(&spec, &view).unwrap();
    assert_eq!(view.executors()[choice.executor].id.as_str(), "c");
    assert_eq!(choice.gpu_ids, ["GPU-c-0"]);
    assert_eq!(Ok(choice), LinearFirstFit.place(&spec, &view));
    let all: Vec<usize> = view.candidates(&spec, 0).collect();
    // The index knows the models of the free GPUs (not `a`'s A10), not the regions (`b`),
    // and the dead executor is never a candidate.
    assert_eq!(all, [2, 3]);
    let any = job(1000, 1024).with_gpus(1, GpuModel::Any);
    assert_eq!(view.candidates(&any, 0).collect::<Vec<_>>(), [1, 2, 3]);
    let mut none = job(1000, 1024);
    none.gpu.count = 1;
    assert_eq!(view.candidates(&none, 0).count(), 0, "GPUs of no model");
    assert_eq!(view.candidates(&spec, 3).collect::<Vec<_>>(), [3]);
    assert_eq!(view.candidates(&job(9000, 1), 0).count(), 0);
}

#[test]
fn the_index_follows_reservations_and_set_asides() {
    // Two machines in three with a GPU: the tree of GPU machines (and, under spread, its
    // tree of loads) holds a subset.
    let mut view = ClusterView::new(
        (0..37)
            .map(|i| {
                let gpus = if i % 3 == 0 {
                    Vec::new()
                } else {
                    vec![gpu("x", i, "NVIDIA L4")]
                };
                exec(&format!("e{i:02}"), 4000, 4096, gpus)
            })
            .collect(),
    );
    assert!(view.index_is_consistent());
    let spec = job(1500, 1000).with_gpus(1, GpuModel::Any);
    let small = job(250, 100);
    let mut placed = 0;
    // First fit, then spread (which builds the trees of loads, kept up from then on), a
    // GPU job and a CPU job each round.
    while let Ok(choice) = if placed < 10 {
        FirstFit.place(&spec, &view)
    } else {
        Spread.place(&spec, &view)
    } {
        let linear = if placed < 10 {
            LinearFirstFit.place(&spec, &view)
        } else {
            LinearSpread.place(&spec, &view)
        };
        assert_eq!(Ok(choice.clone()), linear);
        assert!(view.reserve(choice.executor, &spec.resources(), &choice.gpu_ids));
        assert!(view.index_is_consistent(), "after reserve {placed}");
        if placed >= 10 {
            let cpu = Spread.place(&small, &view);
            assert_eq!(cpu, LinearSpread.place(&small, &view));
            if let Ok(choice) = cpu {
                assert!(view.reserve(choice.executor, &small.resources(), &[]));
                assert!(view.index_is_consistent(), "after a CPU job {placed}");
            }
        }
        placed += 1;
        if placed % 5 == 0 {
            view.set_aside(placed % 37);
            assert!(view.index_is_consistent(), "after set_aside");
        }
    }
    assert!(placed >= 12, "only {placed} placed");
    assert!(view.candidates(&spec, 0).next().is_none());
    assert!(ClusterView::default().index_is_consistent());
    assert!(ClusterView::default()
        .candidates(&job(0, 0), 0)
        .next()
        .is_none());
}

#[test]
fn the_fast_model_match_agrees_with_gpu_model_matches() {
    let rules = [
        "h200",
        "A10",
        "a100",
        "",
        "nvidia h",
        "\u{212A}80",
        "k80",
        "Ä100",
    ];
    let models = [
        "NVIDIA H200",
        "NVIDIA A100-SXM4-80GB",
        "Tesla K80",
        "Ä100",
        "",
    ];
    for rule in rules {
        let rule = GpuModel::Named(rule.into());
        for model in models {
            assert_eq!(
                super::view::model_matches(&rule, model),
                rule.matches(model),
                "{rule:?} vs {model:?}"
            );
        }
    }
    assert!(super::view::model_matches(&GpuModel::Any, "anything"));
}

#[test]
fn models_past_the_sixteenth_share_a_bit_and_are_still_found() {
    let executors: Vec<ExecutorView> = (0..20)
        .map(|i| {
            let model = format!("Model-{i:02}");
            exec(&format!("e{i:02}"), 4000, 4096, vec![gpu("x", 0, &model)])
        })
        .collect();
    let mut view = ClusterView::new(executors);
    for i in [19, 3, 17, 15, 16] {
        let spec = job(1000, 1024).with_gpus(1, GpuModel::parse(&format!("model-{i:02}")));
        let choice = FirstFit.place(&spec, &view).unwrap();
        assert_eq!(Ok(choice.clone()), LinearFirstFit.place(&spec, &view));
        assert_eq!(choice.executor, i);
        assert!(view.reserve(choice.executor, &spec.resources(), &choice.gpu_ids));
        assert!(view.index_is_consistent());
        assert!(FirstFit.place(&spec, &view).is_err(), "model {i} is taken");
    }
}
