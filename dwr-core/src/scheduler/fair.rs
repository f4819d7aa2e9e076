//! The order in which a pass considers the pending jobs of several queues.
//!
//! Each queue's jobs come in its own order (priority aged by arrivals, then arrival: the
//! store's [`Queued::key`]). Across queues, the next job is:
//! 1. by priority: the candidates are the best head of all queues (the highest priority
//!    with aging), any other head less than one point of aged priority behind it
//!    ([`PRIORITY_AGING_JOBS`] of key), and any head whose own priority is at least the best
//!    one's own. A head of higher priority goes first whatever its queue; one of lower
//!    priority has to age past the others' to compete;
//! 2. then by fair share: among the candidates, the head of the queue whose dominant share
//!    divided by its weight is the lowest (weighted DRF; the shares count what this pass
//!    placed so far);
//! 3. then by age: the lowest key.
//!
//! Heads of the same own priority always compete by share, however far apart they arrived:
//! a queue served three times as fast as another works through its backlog faster, so its
//! head is younger, and aging alone would hand the slower queue everything it waited for,
//! undoing the weights. "Less than one point" rather than "the same point", for the same
//! reason at a point's boundary.

use std::collections::{BTreeMap, VecDeque};

use crate::queues::{amount, dominant_share, AtQuota, QueueConfig, QueueUsage, Queues, Quota};
use crate::resources::Resources;
use crate::spec::PRIORITY_AGING_JOBS;
use crate::store::Queued;

/// The pending jobs of a pass by queue, handed out in fair order.
#[derive(Debug)]
pub(super) struct FairQueues {
    queues: Vec<QueueState>,
    /// The capacity of the live executors: what shares are shares of.
    total: Resources,
}

#[derive(Debug)]
struct QueueState {
    settings: QueueConfig,
    jobs: VecDeque<Queued>,
    /// What its jobs hold, this pass's placements included.
    held: Resources,
}

impl FairQueues {
    /// The jobs `pending` (each queue's in its order, as the store reads them) with what
    /// each queue holds (`usage`), the queues' settings, and the cluster's `total`.
    pub(super) fn new(
        pending: Vec<Queued>,
        usage: &BTreeMap<String, QueueUsage>,
        settings: &Queues,
        total: Resources,
    ) -> Self {
        let mut by_name: BTreeMap<String, QueueState> = BTreeMap::new();
        for queued in pending {
            let name = &queued.job.spec.queue;
            if !by_name.contains_key(name) {
                let state = QueueState {
                    settings: settings.settings(name),
                    jobs: VecDeque::new(),
                    held: usage.get(name).map(|u| u.held).unwrap_or_default(),
                };
                by_name.insert(name.clone(), state);
            }
            if let Some(queue) = by_name.get_mut(name) {
                queue.jobs.push_back(queued);
            }
        }
        Self {
            queues: by_name.into_values().collect(),
            total,
        }
    }

    /// The next job to consider and the index of its queue, or `None` when every job was
    /// handed out.
    pub(super) fn next(&mut self) -> Option<(usize, Queued)> {
        let best = self
            .queues
            .iter()
            .filter_map(|q| q.jobs.front())
            .min_by_key(|j| j.key)?;
        let within_a_point = best.key.saturating_add(PRIORITY_AGING_JOBS as i64);
        let best_priority = best.job.spec.priority;
        let (index, _) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                let head = q.jobs.front()?;
                let competes = head.key < within_a_point || head.job.spec.priority >= best_priority;
                competes.then(|| (i, (self.weighted_share(q), head.key)))
            })
            .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        let job = self.queues[index].jobs.pop_front()?;
        Some((index, job))
    }

    fn weighted_share(&self, queue: &QueueState) -> f64 {
        dominant_share(&queue.held, &self.total) / f64::from(queue.settings.weight.max(1))
    }

    /// Whether queue `index` says its jobs may preempt (`None`: it does not say).
    pub(super) fn preemption(&self, index: usize) -> Option<bool> {
        self.queues[index].settings.preemption
    }

    /// The quota of queue `index`.
    pub(super) fn quota(&self, index: usize) -> Quota {
        self.queues[index].settings.quota
    }

    /// Why a job needing `need` may not be placed in queue `index` now: its quota.
    pub(super) fn at_quota(&self, index: usize, need: &Resources) -> Option<AtQuota> {
        let queue = &self.queues[index];
        let after =
            queue
                .held
                .checked_add(need)
                .unwrap_or(Resources::new(u64::MAX, u64::MAX, u32::MAX));
        let dimension = queue.settings.quota.exceeded_by(&after)?;
        Some(AtQuota {
            queue: queue.settings.name.clone(),
            dimension,
            held: amount(&queue.held, dimension),
            limit: queue.settings.quota.limit(dimension).unwrap_or_default(),
        })
    }

    /// Counts `need` as held by queue `index` (a placement of this pass).
    pub(super) fn take(&mut self, index: usize, need: &Resources) {
        let held = &mut self.queues[index].held;
        *held = held.checked_add(need).unwrap_or(*held);
    }

    /// Gives `need` back to queue `index` (a placement the store refused).
    pub(super) fn give_back(&mut self, index: usize, need: &Resources) {
        let held = &mut self.queues[index].held;
        *held = held.saturating_sub(need);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::job::Job;
    use crate::spec::JobSpec;
    use crate::time::Timestamp;

    fn queued(queue: &str, key: i64, cpu_millis: u64) -> Queued {
        let spec = JobSpec::new("img", vec!["true".into()], cpu_millis, 1).with_queue(queue);
        Queued {
            key,
            job: Job::new(JobId::new(), spec, Timestamp(0)),
        }
    }

    /// A job of `priority` that arrived `seq`-th.
    fn arrived(queue: &str, priority: u8, seq: u64) -> Queued {
        let mut queued = queued(queue, 0, 1);
        queued.job.spec.priority = priority;
        queued.key = queued.job.spec.queue_key(seq);
        queued
    }

    /// The queues in the order `pending` is handed out when `a` holds half the cluster.
    fn first_when_a_holds_half(pending: Vec<Queued>) -> Vec<String> {
        let fair = FairQueues::new(
            pending,
            &half_held_by("a"),
            &Queues::default(),
            Resources::new(100, 1, 0),
        );
        order(fair, true).into_iter().map(|(q, _)| q).collect()
    }

    fn half_held_by(queue: &str) -> BTreeMap<String, QueueUsage> {
        BTreeMap::from([(
            queue.to_owned(),
            QueueUsage {
                held: Resources::new(50, 0, 0),
                pending: 1,
            },
        )])
    }

    fn order(mut fair: FairQueues, placed: bool) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Some((i, q)) = fair.next() {
            if placed {
                fair.take(i, &q.job.spec.resources());
            }
            out.push((q.job.spec.queue.clone(), q.key));
        }
        out
    }

    #[test]
    fn one_queue_keeps_its_order() {
        let pending = vec![queued("a", -5, 1), queued("a", 3, 1), queued("a", 9, 1)];
        let fair = FairQueues::new(
            pending,
            &BTreeMap::new(),
            &Queues::default(),
            Resources::new(10, 10, 0),
        );
        let keys: Vec<i64> = order(fair, true).into_iter().map(|(_, k)| k).collect();
        assert_eq!(keys, [-5, 3, 9]);
    }

    #[test]
    fn a_point_of_priority_goes_first_whatever_the_share() {
        // a holds half the cluster, b nothing; a's head has one point more.
        let pending = vec![arrived("a", 51, 10), arrived("b", 50, 10)];
        let queues = first_when_a_holds_half(pending);
        assert_eq!(queues, ["a", "b"]);
    }

    #[test]
    fn a_lower_priority_competes_once_aged_past_a_point_behind() {
        // b's head has 10 points less but waited 9,500 arrivals: half a point behind.
        let pending = vec![arrived("a", 60, 10_000), arrived("b", 50, 500)];
        let queues = first_when_a_holds_half(pending);
        assert_eq!(queues, ["b", "a"], "b is below its share");
        // 8,500 arrivals: a point and a half behind, and a goes first.
        let pending = vec![arrived("a", 60, 9_000), arrived("b", 50, 500)];
        let queues = first_when_a_holds_half(pending);
        assert_eq!(queues, ["a", "b"]);
    }

    #[test]
    fn the_same_priority_competes_by_share_however_old() {
        // a's head waited 50,000 arrivals longer (aged 50 points), yet holds half the
        // cluster: b, of the same priority and holding nothing, goes first.
        let pending = vec![arrived("a", 50, 0), arrived("b", 50, 50_000)];
        let queues = first_when_a_holds_half(pending);
        assert_eq!(queues, ["b", "a"]);
    }

    #[test]
    fn weights_share_a_pass_in_proportion() {
        // Two queues of 400 one-millicore jobs of one priority on a cluster of 400: a pass
        // gives a (weight 1) a quarter and b (weight 3) three quarters of the first 400.
        let queues = Queues::new([
            QueueConfig {
                weight: 1,
                ..QueueConfig::unlimited("a")
            },
            QueueConfig {
                weight: 3,
                ..QueueConfig::unlimited("b")
            },
        ])
        .unwrap();
        let pending: Vec<Queued> = (0..400)
            .map(|i| queued("a", 2 * i, 1))
            .chain((0..400).map(|i| queued("b", 2 * i + 1, 1)))
            .collect();
        let fair = FairQueues::new(
            pending,
            &BTreeMap::new(),
            &queues,
            Resources::new(400, 1, 0),
        );
        let first: Vec<String> = order(fair, true)
            .into_iter()
            .take(400)
            .map(|(q, _)| q)
            .collect();
        let a = first.iter().filter(|q| *q == "a").count();
        assert!((99..=101).contains(&a), "a got {a} of 400");
    }

    #[test]
    fn quotas_are_reported_with_what_is_held() {
        let queues = Queues::new([QueueConfig {
            quota: Quota {
                gpus: Some(8),
                ..Quota::NONE
            },
            ..QueueConfig::unlimited("research")
        }])
        .unwrap();
        let usage = BTreeMap::from([(
            "research".to_owned(),
            QueueUsage {
                held: Resources::new(1000, 1, 8),
                pending: 1,
            },
        )]);
        let fair = FairQueues::new(
            vec![queued("research", 0, 1)],
            &usage,
            &queues,
            Resources::new(10_000, 10, 16),
        );
        let at = fair.at_quota(0, &Resources::new(1, 1, 1)).unwrap();
        assert_eq!(at.to_string(), "queue research at its GPU quota (8/8)");
        assert_eq!(fair.at_quota(0, &Resources::new(1, 1, 0)), None);
    }
}
