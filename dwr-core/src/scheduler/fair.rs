//! The order in which a pass considers the pending jobs of several queues.
//!
//! Each queue's jobs come in its own order (priority aged by arrivals, then arrival: the
//! store's [`Queued::key`]). Across queues, the next job is:
//! 1. by priority: the best head of all queues, and any other head less than one point of
//!    (aged) priority behind it ([`PRIORITY_AGING_JOBS`] of key), are the candidates; a job
//!    a whole point or more ahead goes first whatever its queue;
//! 2. then by fair share: among the candidates, the head of the queue whose dominant share
//!    divided by its weight is the lowest (weighted DRF; the shares count what this pass
//!    placed so far);
//! 3. then by age: the lowest key.
//!
//! "Less than one point" rather than "the same point": two queues' heads of one priority
//! submitted a few arrivals apart would otherwise fall on either side of a point's boundary
//! now and then and be ordered by age, not by share.

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
            .filter_map(|q| q.jobs.front().map(|j| j.key))
            .min()?;
        let within_a_point = best.saturating_add(PRIORITY_AGING_JOBS as i64);
        let (index, _) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                let key = q.jobs.front()?.key;
                (key < within_a_point).then(|| (i, (self.weighted_share(q), key)))
            })
            .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        let job = self.queues[index].jobs.pop_front()?;
        Some((index, job))
    }

    fn weighted_share(&self, queue: &QueueState) -> f64 {
        dominant_share(&queue.held, &self.total) / f64::from(queue.settings.weight.max(1))
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
        let mut spec = JobSpec::new("img", vec!["true".into()], cpu_millis, 1);
        spec.queue = queue.into();
        Queued {
            key,
            job: Job::new(JobId::new(), spec, Timestamp(0)),
        }
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
        // b holds nothing, a holds half the cluster; a's head is a whole point ahead.
        let pending = vec![queued("a", -1000, 1), queued("b", 0, 1)];
        let usage = BTreeMap::from([(
            "a".to_owned(),
            QueueUsage {
                held: Resources::new(50, 0, 0),
                pending: 1,
            },
        )]);
        let fair = FairQueues::new(
            pending,
            &usage,
            &Queues::default(),
            Resources::new(100, 1, 0),
        );
        let queues: Vec<String> = order(fair, true).into_iter().map(|(q, _)| q).collect();
        assert_eq!(queues, ["a", "b"]);
    }

    #[test]
    fn within_a_point_the_queue_below_its_share_goes_first() {
        let pending = vec![queued("a", -999, 1), queued("b", 0, 1)];
        let usage = BTreeMap::from([(
            "a".to_owned(),
            QueueUsage {
                held: Resources::new(50, 0, 0),
                pending: 1,
            },
        )]);
        let fair = FairQueues::new(
            pending,
            &usage,
            &Queues::default(),
            Resources::new(100, 1, 0),
        );
        let queues: Vec<String> = order(fair, true).into_iter().map(|(q, _)| q).collect();
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
            name: "research".into(),
            weight: 1,
            quota: Quota {
                gpus: Some(8),
                ..Quota::NONE
            },
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
