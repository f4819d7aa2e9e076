//! `dwr executors` and `dwr stats`: the cluster as tables.

use super::args::trim_number;
use super::table::{key_values, Table};
use super::ClientError;
use dwr_client::{
    to_pretty_json, Client, ClusterStats, ExecutorsResponse, QueuesResponse, StatsResponse,
};

/// `dwr executors`: one line per executor and a totals line.
pub async fn executors(api: &Client, json: bool) -> Result<String, ClientError> {
    let executors = api.executors().await?;
    if json {
        return Ok(to_pretty_json(&executors) + "\n");
    }
    Ok(executors_text(&executors))
}

/// `dwr queues`: one line per queue.
pub async fn queues(api: &Client, json: bool) -> Result<String, ClientError> {
    let queues = api.queues().await?;
    if json {
        return Ok(to_pretty_json(&queues) + "\n");
    }
    Ok(queues_text(&queues))
}

/// The queues table: weight, what each holds against its quota, share, pending jobs.
pub fn queues_text(response: &QueuesResponse) -> String {
    let mut table = Table::new([
        "QUEUE", "WEIGHT", "CPUS", "MEMORY", "GPUS", "SHARE", "PENDING", "PREEMPTS",
    ])
    .right_align(&[1, 2, 3, 4, 5, 6]);
    for q in &response.queues {
        let of = |used: Option<f64>, quota: Option<f64>, unit: &str| {
            let used = trim_number(used.unwrap_or(0.0));
            match quota {
                Some(limit) => format!("{used}/{}{unit}", trim_number(limit)),
                None => format!("{used}{unit}"),
            }
        };
        let name = if q.defined {
            q.name.clone()
        } else {
            format!("{} (not defined)", q.name)
        };
        table.push([
            name,
            q.weight.to_string(),
            of(q.used.cpu_cores, q.quota.cpu_cores, ""),
            of(q.used.memory_gb, q.quota.memory_gb, "g"),
            of(q.used.gpus.map(f64::from), q.quota.gpus.map(f64::from), ""),
            format!("{}%", trim_number(q.share * 100.0)),
            q.pending.to_string(),
            if q.preemption { "yes" } else { "no" }.to_owned(),
        ]);
    }
    format!("{table}\n")
}

/// `dwr stats`: queue counts, cluster totals and scheduler figures.
pub async fn stats(api: &Client, json: bool) -> Result<String, ClientError> {
    let stats = api.stats().await?;
    if json {
        return Ok(to_pretty_json(&stats) + "\n");
    }
    Ok(stats_text(&stats))
}

/// The executors table followed by the cluster totals.
pub fn executors_text(response: &ExecutorsResponse) -> String {
    if response.executors.is_empty() {
        return "no executors registered (start one with `dwr executor`, or run `dwr dev`)\n"
            .to_owned();
    }
    let mut table = Table::new([
        "EXECUTOR",
        "IP",
        "ALIVE",
        "CPUS FREE",
        "MEMORY FREE",
        "GPUS FREE",
        "GPU TYPES",
        "REGION",
        "DATACENTER",
        "JOBS",
        "LAST HEARTBEAT",
    ])
    .right_align(&[3, 4, 5, 9]);
    for e in &response.executors {
        table.push([
            e.id.clone(),
            e.ip.clone(),
            if e.alive { "yes" } else { "no" }.to_owned(),
            format!(
                "{}/{}",
                trim_number(e.available_cpu_cores),
                trim_number(e.total_cpu_cores)
            ),
            format!(
                "{}/{}g",
                trim_number(e.available_memory_gb),
                trim_number(e.total_memory_gb)
            ),
            format!("{}/{}", e.available_gpus, e.total_gpus),
            e.gpu_types.join(","),
            e.region.clone().unwrap_or_default(),
            e.datacenter.clone().unwrap_or_default(),
            e.running_jobs.to_string(),
            e.last_heartbeat.clone(),
        ]);
    }
    format!("{table}\n{}\n", cluster_line(&response.cluster_stats))
}

/// One sentence of cluster totals.
fn cluster_line(c: &ClusterStats) -> String {
    format!(
        "{} executors ({} alive): {}/{} cpus free, {}/{}g memory free, {}/{} gpus free, {} jobs on executors",
        c.total_executors,
        c.alive_executors,
        trim_number(c.available_cpu_cores),
        trim_number(c.total_cpu_cores),
        trim_number(c.available_memory_gb),
        trim_number(c.total_memory_gb),
        c.available_gpus,
        c.total_gpus,
        c.running_jobs,
    )
}

/// `GET /stats` as `key: value` lines.
pub fn stats_text(s: &StatsResponse) -> String {
    let q = &s.queue;
    let failures = if s.scheduler.placement_failures.is_empty() {
        "none".to_owned()
    } else {
        s.scheduler
            .placement_failures
            .iter()
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    key_values(&[
        (
            "jobs",
            format!(
                "{} total: {} pending, {} assigned, {} running, {} succeeded, {} failed, {} aborted",
                q.total, q.pending, q.assigned, q.running, q.succeeded, q.failed, q.aborted
            ),
        ),
        ("cluster", cluster_line(&s.cluster)),
        (
            "utilization",
            format!(
                "cpu {}%, memory {}%",
                trim_number(s.cluster.cpu_utilization),
                trim_number(s.cluster.memory_utilization)
            ),
        ),
        (
            "scheduler",
            format!(
                "{} passes, {} placements, last pass {} ms",
                s.scheduler.passes,
                s.scheduler.placements,
                trim_number(s.scheduler.last_pass_seconds * 1000.0)
            ),
        ),
        ("not placed", failures),
        ("uptime", format!("{}s", s.scheduler.uptime_seconds)),
        ("at", s.timestamp.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_client::{ExecutorView, QueueStats, SchedulerStats};

    fn executor(id: &str, alive: bool) -> ExecutorView {
        ExecutorView {
            id: id.into(),
            ip: "10.0.0.7".into(),
            total_cpu_cores: 8.0,
            available_cpu_cores: 6.5,
            total_memory_gb: 16.0,
            available_memory_gb: 15.5,
            gpu_types: vec!["NVIDIA H200".into()],
            total_gpus: 2,
            available_gpus: 1,
            gpus: vec![],
            region: Some("eu".into()),
            datacenter: None,
            last_heartbeat: "2026-01-01T00:00:00Z".into(),
            alive,
            cpu_utilization: 18.75,
            memory_utilization: 3.1,
            observed_cpu_percent: 0.0,
            observed_memory_used_gb: 0.0,
            running_jobs: 1,
            job_ids: vec![],
        }
    }

    #[test]
    fn executors_show_free_over_total() {
        let views = vec![executor("worker-1", true), executor("worker-22", false)];
        let response = ExecutorsResponse {
            cluster_stats: ClusterStats::from_executors(&views),
            executors: views,
        };
        let text = executors_text(&response);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("worker-1 "), "{text}");
        assert!(
            lines[1].contains("6.5/8") && lines[1].contains("15.5/16g"),
            "{text}"
        );
        assert!(
            lines[1].contains("1/2") && lines[1].contains("NVIDIA H200"),
            "{text}"
        );
        assert!(lines[2].contains(" no "), "{text}");
        assert!(text.contains("2 executors (1 alive)"), "{text}");
    }

    #[test]
    fn no_executors_says_how_to_start_one() {
        let response = ExecutorsResponse {
            executors: vec![],
            cluster_stats: ClusterStats::default(),
        };
        assert!(executors_text(&response).contains("dwr executor"));
    }

    #[test]
    fn stats_list_queue_and_failures() {
        let s = StatsResponse {
            queue: QueueStats {
                pending: 2,
                total: 5,
                ..QueueStats::default()
            },
            cluster: ClusterStats::default(),
            scheduler: SchedulerStats {
                placement_failures: [("gpu".to_string(), 3)].into(),
                ..SchedulerStats::default()
            },
            timestamp: "t".into(),
        };
        let text = stats_text(&s);
        assert!(text.contains("5 total: 2 pending"), "{text}");
        assert!(text.contains("gpu=3"), "{text}");
    }
}
