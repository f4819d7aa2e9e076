//! Reading the changes channel: each script call that changed anything publishes one
//! message, a line per change (see `changed` in `scripts/common.lua`).

use dwr_core::{Change, ExecutorId, JobId, JobState};

/// One line of a changes message: `s <id> <queue>` (submitted), `j <id> <from> <to>`,
/// `a <id> <0|1>` (1: a preemption), `x+ <executor>`, `x- <executor>`. `None` for a line
/// this version cannot read.
pub(crate) fn parse_change(line: &str) -> Option<Change> {
    let (kind, rest) = line.split_once(' ')?;
    match kind {
        "s" => {
            let (id, queue) = rest.split_once(' ')?;
            Some(Change::Submitted {
                id: id.parse().ok()?,
                queue: queue.to_owned(),
            })
        }
        "j" => {
            let mut parts = rest.split(' ');
            let id: JobId = parts.next()?.parse().ok()?;
            let from = parts.next()?.parse::<JobState>().ok()?;
            let to = parts.next()?.parse::<JobState>().ok()?;
            Some(Change::Job { id, from, to })
        }
        "a" => {
            let (id, preempted) = rest.split_once(' ')?;
            Some(Change::AbortRequested {
                id: id.parse().ok()?,
                preempted: preempted == "1",
            })
        }
        "x+" => Some(Change::ExecutorJoined {
            id: ExecutorId::new(rest),
        }),
        "x-" => Some(Change::ExecutorLost {
            id: ExecutorId::new(rest),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_line_reads_and_others_are_refused() {
        let id = JobId::new();
        assert_eq!(
            parse_change(&format!("s {id} gpu-long")),
            Some(Change::Submitted {
                id,
                queue: "gpu-long".to_owned()
            })
        );
        assert_eq!(
            parse_change(&format!("j {id} running succeeded")),
            Some(Change::Job {
                id,
                from: JobState::Running,
                to: JobState::Succeeded
            })
        );
        assert_eq!(
            parse_change(&format!("a {id} 1")),
            Some(Change::AbortRequested {
                id,
                preempted: true
            })
        );
        assert_eq!(
            parse_change("x+ gpu node 7"),
            Some(Change::ExecutorJoined {
                id: ExecutorId::new("gpu node 7")
            })
        );
        assert_eq!(
            parse_change("x- n1"),
            Some(Change::ExecutorLost {
                id: ExecutorId::new("n1")
            })
        );
        for bad in [
            "",
            "j",
            "s nope q",
            &format!("j {id} - pending"),
            &format!("j {id} running sleeping"),
            "z 1",
        ] {
            assert_eq!(parse_change(bad), None, "{bad:?}");
        }
    }
}
