//! Queues: how a shared cluster is divided between teams.
//!
//! A job names a queue ([`JobSpec::queue`](crate::JobSpec::queue), [`DEFAULT_QUEUE`] when
//! it names none). A queue has a weight and optional quotas: the CPU, memory and GPUs its
//! jobs may hold at once (assigned or running). The store keeps each queue's pending jobs
//! in their own order and what its jobs hold ([`QueueUsage`]), and refuses an assignment
//! that would take a queue past its quota ([`Rejection::QuotaReached`](crate::Rejection)),
//! so quotas hold whatever number of schedulers share the store.
//!
//! Between queues with waiting work a pass shares the room by weighted dominant resource
//! fairness (Ghodsi et al., NSDI 2011): the next job comes from the queue whose dominant
//! share (its largest share of any resource of the cluster) divided by its weight is the
//! lowest, so each queue's dominant share tends to be proportional to its weight.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resources::{Dimension, Resources};

/// The queue of a job that names none. Always defined, with weight 1 and no quota unless
/// the queues file says otherwise.
pub const DEFAULT_QUEUE: &str = "default";

/// The longest queue name.
pub const MAX_QUEUE_NAME: usize = 64;

/// The largest weight of a queue.
pub const MAX_WEIGHT: u32 = 1000;

/// Checks a queue name: 1 to [`MAX_QUEUE_NAME`] characters of `a-z`, `0-9`, `-` and `_`,
/// starting with a letter or digit (it becomes part of store keys, so nothing else).
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > MAX_QUEUE_NAME {
        return Err(format!(
            "a queue name has 1 to {MAX_QUEUE_NAME} characters, got {}",
            name.len()
        ));
    }
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{name:?} is not a queue name (a-z, 0-9, '-' and '_', starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// What a queue's jobs may hold at once; `None` on a dimension: no limit on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quota {
    /// CPU millicores.
    pub cpu_millis: Option<u64>,
    /// Memory MiB.
    pub memory_mib: Option<u64>,
    /// GPU devices.
    pub gpus: Option<u32>,
}

impl Quota {
    /// No limit on anything.
    pub const NONE: Quota = Quota {
        cpu_millis: None,
        memory_mib: None,
        gpus: None,
    };

    /// Whether it limits nothing.
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// The limit on `dimension`, in its unit (millicores, MiB, devices).
    pub fn limit(&self, dimension: Dimension) -> Option<u64> {
        match dimension {
            Dimension::Cpu => self.cpu_millis,
            Dimension::Memory => self.memory_mib,
            Dimension::Gpu => self.gpus.map(u64::from),
        }
    }

    /// The first dimension (cpu, memory, gpu) on which `held` is over the quota.
    pub fn exceeded_by(&self, held: &Resources) -> Option<Dimension> {
        [Dimension::Cpu, Dimension::Memory, Dimension::Gpu]
            .into_iter()
            .find(|&d| self.limit(d).is_some_and(|limit| amount(held, d) > limit))
    }
}

/// `resources` on one dimension, in its unit.
pub fn amount(resources: &Resources, dimension: Dimension) -> u64 {
    match dimension {
        Dimension::Cpu => resources.cpu_millis,
        Dimension::Memory => resources.memory_mib,
        Dimension::Gpu => u64::from(resources.gpus),
    }
}

/// One queue's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Its name ([`check_queue_name`]).
    pub name: String,
    /// Its weight in the fair share (1 to [`MAX_WEIGHT`]).
    pub weight: u32,
    /// What its jobs may hold at once.
    pub quota: Quota,
    /// Whether its pending jobs may preempt running jobs of lower priority; `None`: as the
    /// scheduler's setting says (off by default).
    pub preemption: Option<bool>,
}

impl QueueConfig {
    /// A queue of weight 1 with no quota: the default queue's settings, and those of a queue
    /// that jobs still name after it left the queues file.
    pub fn unlimited(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            weight: 1,
            quota: Quota::NONE,
            preemption: None,
        }
    }
}

/// Why a set of queues was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("queue {queue:?}: {reason}")]
pub struct QueuesError {
    /// The queue.
    pub queue: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The defined queues: the [`DEFAULT_QUEUE`] always among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queues {
    by_name: BTreeMap<String, QueueConfig>,
}

impl Default for Queues {
    fn default() -> Self {
        Self {
            by_name: BTreeMap::from([(
                DEFAULT_QUEUE.to_owned(),
                QueueConfig::unlimited(DEFAULT_QUEUE),
            )]),
        }
    }
}

impl Queues {
    /// The queues `defs` (the default queue added unless among them). Refuses a bad name, a
    /// name given twice and a weight outside 1 to [`MAX_WEIGHT`].
    pub fn new(defs: impl IntoIterator<Item = QueueConfig>) -> Result<Self, QueuesError> {
        let mut queues = Self::default();
        let mut seen = Vec::new();
        for def in defs {
            let refuse = |reason: String| QueuesError {
                queue: def.name.clone(),
                reason,
            };
            check_queue_name(&def.name).map_err(refuse)?;
            if seen.contains(&def.name) {
                return Err(refuse("defined twice".into()));
            }
            if !(1..=MAX_WEIGHT).contains(&def.weight) {
                return Err(refuse(format!(
                    "weight must be between 1 and {MAX_WEIGHT}, got {}",
                    def.weight
                )));
            }
            seen.push(def.name.clone());
            queues.by_name.insert(def.name.clone(), def);
        }
        Ok(queues)
    }

    /// The queue named `name`, if defined.
    pub fn get(&self, name: &str) -> Option<&QueueConfig> {
        self.by_name.get(name)
    }

    /// The settings a pass uses for queue `name`: its own, or weight 1 and no quota for a
    /// queue that is not defined (any more).
    pub fn settings(&self, name: &str) -> QueueConfig {
        self.get(name)
            .cloned()
            .unwrap_or_else(|| QueueConfig::unlimited(name))
    }

    /// Whether any queue has a quota.
    pub fn any_quota(&self) -> bool {
        self.by_name.values().any(|q| !q.quota.is_none())
    }

    /// The defined queues by name.
    pub fn iter(&self) -> impl Iterator<Item = &QueueConfig> {
        self.by_name.values()
    }

    /// The names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// What a queue's jobs hold, and how many wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueUsage {
    /// What its assigned and running jobs hold.
    pub held: Resources,
    /// Its pending jobs (waiting for a retry's backoff included).
    pub pending: u64,
}

/// A queue's dominant share of `total` when its jobs hold `held`: the largest, over the
/// dimensions the cluster has, of the fraction held. 0 for an empty cluster.
pub fn dominant_share(held: &Resources, total: &Resources) -> f64 {
    [Dimension::Cpu, Dimension::Memory, Dimension::Gpu]
        .into_iter()
        .filter(|&d| amount(total, d) > 0)
        .map(|d| amount(held, d) as f64 / amount(total, d) as f64)
        .fold(0.0, f64::max)
}

/// A job held back by its queue's quota: `queue research at its GPU quota (8/8)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtQuota {
    /// The queue.
    pub queue: String,
    /// The dimension the job would take past the quota.
    pub dimension: Dimension,
    /// What the queue's jobs hold on it, in its unit.
    pub held: u64,
    /// The quota on it, in its unit.
    pub limit: u64,
}

impl fmt::Display for AtQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, held, limit) = match self.dimension {
            Dimension::Cpu => (
                "CPU",
                crate::units::cores(self.held).to_string(),
                format!("{} cores", crate::units::cores(self.limit)),
            ),
            Dimension::Memory => (
                "memory",
                format!("{:.1}", crate::units::gb(self.held)),
                format!("{:.1} GB", crate::units::gb(self.limit)),
            ),
            Dimension::Gpu => ("GPU", self.held.to_string(), self.limit.to_string()),
        };
        write!(
            f,
            "queue {} at its {what} quota ({held}/{limit})",
            self.queue
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["default", "research", "a", "team-1_gpu", &"q".repeat(64)] {
            assert_eq!(check_queue_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Research",
            "-x",
            "_x",
            "a:b",
            "a b",
            "é",
            &"q".repeat(65),
        ] {
            assert!(check_queue_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_queue_is_always_there() {
        let queues = Queues::new([QueueConfig {
            weight: 3,
            quota: Quota {
                gpus: Some(8),
                ..Quota::NONE
            },
            ..QueueConfig::unlimited("research")
        }])
        .unwrap();
        assert_eq!(queues.get(DEFAULT_QUEUE).unwrap().weight, 1);
        assert_eq!(queues.get("research").unwrap().weight, 3);
        assert!(queues.any_quota());
        assert_eq!(queues.names(), "default, research");
        assert_eq!(queues.settings("gone"), QueueConfig::unlimited("gone"));
        assert!(!Queues::default().any_quota());
    }

    #[test]
    fn bad_definitions_name_the_queue() {
        let q = |name: &str, weight| QueueConfig {
            weight,
            ..QueueConfig::unlimited(name)
        };
        let e = Queues::new([q("a", 0)]).unwrap_err();
        assert_eq!(e.queue, "a");
        assert!(e.reason.contains("weight"), "{e}");
        let e = Queues::new([q("a", 1), q("a", 2)]).unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
        assert!(Queues::new([q("A", 1)]).is_err());
        assert!(Queues::new([q("a", MAX_WEIGHT + 1)]).is_err());
        // Redefining the default queue sets its weight.
        let queues = Queues::new([q(DEFAULT_QUEUE, 5)]).unwrap();
        assert_eq!(queues.get(DEFAULT_QUEUE).unwrap().weight, 5);
    }

    #[test]
    fn quotas_name_the_first_dimension_exceeded() {
        let quota = Quota {
            cpu_millis: None,
            memory_mib: Some(1024),
            gpus: Some(2),
        };
        assert_eq!(quota.exceeded_by(&Resources::new(1_000_000, 1024, 2)), None);
        assert_eq!(
            quota.exceeded_by(&Resources::new(0, 1025, 3)),
            Some(Dimension::Memory)
        );
        assert_eq!(
            quota.exceeded_by(&Resources::new(0, 0, 3)),
            Some(Dimension::Gpu)
        );
        assert_eq!(
            Quota::NONE.exceeded_by(&Resources::new(u64::MAX, u64::MAX, u32::MAX)),
            None
        );
    }

    #[test]
    fn the_dominant_share_is_the_largest_fraction() {
        let total = Resources::new(100_000, 1_000_000, 10);
        assert_eq!(
            dominant_share(&Resources::new(10_000, 500_000, 1), &total),
            0.5
        );
        assert_eq!(dominant_share(&Resources::new(10_000, 0, 5), &total), 0.5);
        // A cluster without GPUs: GPUs do not count.
        let no_gpus = Resources::new(100_000, 1_000_000, 0);
        assert_eq!(dominant_share(&Resources::new(20_000, 0, 0), &no_gpus), 0.2);
        assert_eq!(dominant_share(&Resources::ZERO, &Resources::ZERO), 0.0);
    }

    #[test]
    fn at_quota_reads_as_the_issue_says() {
        let at = AtQuota {
            queue: "research".into(),
            dimension: Dimension::Gpu,
            held: 8,
            limit: 8,
        };
        assert_eq!(at.to_string(), "queue research at its GPU quota (8/8)");
        let at = AtQuota {
            dimension: Dimension::Cpu,
            held: 3500,
            limit: 4000,
            ..at
        };
        assert_eq!(
            at.to_string(),
            "queue research at its CPU quota (3.5/4 cores)"
        );
    }
}
