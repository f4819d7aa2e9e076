//! Dependencies between jobs, with Slurm's semantics and names.
//!
//! A job may name jobs it depends on ([`JobSpec::depends_on`](crate::JobSpec::depends_on))
//! and how ([`Dependency`]). Until its dependencies are met it is `pending` but not queued
//! (the stores keep it apart, out of every queue); its allocation timeout starts when they
//! are met ([`Job::ready_at`](crate::Job::ready_at)). The stores decide, when a dependency
//! ends, what that means for each job waiting on it ([`Dependency::on_end`]): wait for
//! more, ready, or never; a job whose dependencies can never be met fails at once, and so,
//! in turn, do the jobs that wait on it for success.
//!
//! Ids must exist when the job is submitted, so a dependency graph has no cycles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::JobId;

/// The most dependencies one job may name.
pub const MAX_DEPENDENCIES: usize = 100;

/// When a job's dependencies are met (Slurm's `--dependency` types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    /// Every dependency succeeded (the default).
    #[default]
    AfterOk,
    /// Every dependency ended, however.
    AfterAny,
    /// Every dependency ended and at least one did not succeed.
    AfterNotOk,
}

/// What a dependency's end means for a job waiting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Others are still to end.
    Wait {
        /// Dependencies not ended yet.
        left: u32,
        /// Of those ended, how many did not succeed.
        not_ok: u32,
    },
    /// Met: the job joins its queue.
    Ready,
    /// Can never be met: the job fails with this reason.
    Never(String),
}

impl Dependency {
    /// Every type, in wire order.
    pub const ALL: [Dependency; 3] = [
        Dependency::AfterOk,
        Dependency::AfterAny,
        Dependency::AfterNotOk,
    ];

    /// The wire name: `afterok`, `afterany` or `afternotok`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dependency::AfterOk => "afterok",
            Dependency::AfterAny => "afterany",
            Dependency::AfterNotOk => "afternotok",
        }
    }

    /// For a job waiting on `left` dependencies (`not_ok` of those ended so far did not
    /// succeed), what the end of dependency `dep` (`ok`: it succeeded) means.
    pub fn on_end(self, left: u32, not_ok: u32, dep: JobId, ok: bool) -> Verdict {
        let left = left.saturating_sub(1);
        let not_ok = not_ok + u32::from(!ok);
        match self {
            Dependency::AfterOk if !ok => Verdict::Never(format!(
                "dependency {dep} did not succeed (afterok can no longer be met)"
            )),
            _ if left > 0 => Verdict::Wait { left, not_ok },
            Dependency::AfterNotOk if not_ok == 0 => Verdict::Never(format!(
                "every dependency succeeded, the last {dep} (afternotok can no longer be met)"
            )),
            _ => Verdict::Ready,
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dependency type that is not one of Slurm's three.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown dependency {0:?}: expected afterok, afterany or afternotok")]
pub struct UnknownDependency(pub String);

impl FromStr for Dependency {
    type Err = UnknownDependency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dependency::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDependency(s.chars().take(64).collect()))
    }
}

/// The first characters of an id, for reasons that list several.
pub fn short(id: JobId) -> String {
    id.to_string().chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dependency::ALL {
            assert_eq!(d.as_str().parse::<Dependency>(), Ok(d));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        assert!("after".parse::<Dependency>().is_err());
        assert_eq!(Dependency::default(), Dependency::AfterOk);
    }

    #[test]
    fn afterok_waits_for_every_success_and_gives_up_at_the_first_failure() {
        let dep = JobId::new();
        let ok = Dependency::AfterOk;
        assert_eq!(
            ok.on_end(2, 0, dep, true),
            Verdict::Wait { left: 1, not_ok: 0 }
        );
        assert_eq!(ok.on_end(1, 0, dep, true), Verdict::Ready);
        match ok.on_end(2, 0, dep, false) {
            Verdict::Never(reason) => assert!(reason.contains(&dep.to_string()), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn afterany_waits_for_every_end() {
        let dep = JobId::new();
        let any = Dependency::AfterAny;
        assert_eq!(
            any.on_end(2, 0, dep, false),
            Verdict::Wait { left: 1, not_ok: 1 }
        );
        assert_eq!(any.on_end(1, 1, dep, true), Verdict::Ready);
        assert_eq!(any.on_end(1, 0, dep, false), Verdict::Ready);
    }

    #[test]
    fn afternotok_needs_one_failure_among_all_ended() {
        let dep = JobId::new();
        let not_ok = Dependency::AfterNotOk;
        assert_eq!(
            not_ok.on_end(2, 0, dep, true),
            Verdict::Wait { left: 1, not_ok: 0 }
        );
        assert_eq!(not_ok.on_end(1, 1, dep, true), Verdict::Ready);
        assert_eq!(not_ok.on_end(1, 0, dep, false), Verdict::Ready);
        assert!(matches!(not_ok.on_end(1, 0, dep, true), Verdict::Never(_)));
    }
}
