//! `DWR_QUEUES_FILE`: the queues jobs may name, their weights and quotas, in TOML.
//!
//! ```toml
//! # One [[queues]] table per queue; `default` exists without being named (weight 1, no
//! # quota) and may be given a weight or quotas here.
//! [[queues]]
//! name = "research"
//! weight = 3          # its fair share against the other queues (1 to 1000; default 1)
//! gpus = 8            # quotas: what its jobs may hold at once; each optional
//! cpu_cores = 64
//! memory_gb = 512
//! preemption = true   # its jobs may preempt lower-priority ones (default: DWR_PREEMPTION)
//! ```

use std::path::Path;

use dwr_core::queues::{QueueConfig, Queues, Quota};
use dwr_core::units::{mib, millicores, MIB_PER_GB};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesFile {
    #[serde(default)]
    queues: Vec<QueueEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueEntry {
    name: String,
    #[serde(default = "one")]
    weight: u32,
    cpu_cores: Option<f64>,
    memory_gb: Option<f64>,
    gpus: Option<u32>,
    preemption: Option<bool>,
}

fn one() -> u32 {
    1
}

/// Reads and checks a queues file. An error names the file and the queue.
pub fn read_queues_file(path: &Path) -> Result<Queues, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_queues(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The queues of a queues file's text.
pub fn parse_queues(text: &str) -> Result<Queues, String> {
    let file: QueuesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut defs = Vec::new();
    for entry in file.queues {
        let bad =
            |field: &str, what: &str| format!("queue {:?}: {field} must be {what}", entry.name);
        let cpu_millis = entry
            .cpu_cores
            .map(|cores| millicores(cores).ok_or_else(|| bad("cpu_cores", "a number above 0")))
            .transpose()?;
        let memory_mib = entry
            .memory_gb
            .map(|gb| {
                mib(gb, MIB_PER_GB as f64).ok_or_else(|| bad("memory_gb", "a number above 0"))
            })
            .transpose()?;
        defs.push(QueueConfig {
            name: entry.name.clone(),
            weight: entry.weight,
            quota: Quota {
                cpu_millis,
                memory_mib,
                gpus: entry.gpus,
            },
            preemption: entry.preemption,
        });
    }
    Queues::new(defs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queues_file_reads_weights_and_quotas() {
        let queues = parse_queues(
            r#"
            [[queues]]
            name = "research"
            weight = 3
            gpus = 8
            cpu_cores = 0.5
            memory_gb = 1.5
            preemption = true

            [[queues]]
            name = "batch"
            "#,
        )
        .unwrap();
        let research = queues.get("research").unwrap();
        assert_eq!(research.weight, 3);
        assert_eq!(
            research.quota,
            Quota {
                cpu_millis: Some(500),
                memory_mib: Some(1536),
                gpus: Some(8),
            }
        );
        assert_eq!(research.preemption, Some(true));
        let batch = queues.get("batch").unwrap();
        assert_eq!(
            (batch.weight, batch.quota, batch.preemption),
            (1, Quota::NONE, None)
        );
        assert!(queues.get("default").is_some(), "always defined");
        assert_eq!(parse_queues("").unwrap(), Queues::default());
    }

    #[test]
    fn a_bad_queues_file_is_refused_naming_the_queue() {
        for (text, expect) in [
            ("[[queues]]\nname = \"Research\"", "Research"),
            ("[[queues]]\nname = \"a\"\nweight = 0", "weight"),
            ("[[queues]]\nname = \"a\"\ncpu_cores = -1", "cpu_cores"),
            ("[[queues]]\nname = \"a\"\nmemory_gb = 0", "memory_gb"),
            (
                "[[queues]]\nname = \"a\"\n[[queues]]\nname = \"a\"",
                "defined twice",
            ),
            ("[[queues]]\nname = \"a\"\ngpu = 1", "unknown field"),
        ] {
            let e = parse_queues(text).unwrap_err();
            assert!(e.contains(expect), "{text:?}: {e}");
        }
        let e = read_queues_file(Path::new("/nonexistent/queues.toml")).unwrap_err();
        assert!(e.contains("/nonexistent/queues.toml"), "{e}");
    }
}
