//! Prints what an executor on this host would see: GPUs (NVML), CPU and memory (sysinfo), and
//! whether the Docker engine answers. Run with `cargo run -p dwr-docker --example probe`.

use std::time::Duration;

use dwr_core::{GpuProbe, HostProbe};
use dwr_docker::{DockerConfig, DockerRuntime, NvmlGpuProbe, SysinfoHostProbe};

#[tokio::main]
async fn main() {
    // NVML and Docker log through tracing; RUST_LOG=debug shows more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    println!("dwr executor host probe");
    println!();

    println!("GPUs (NvmlGpuProbe, NVML loaded at run time):");
    let gpu_probe = NvmlGpuProbe::new();
    let gpus = gpu_probe.gpus();
    match gpu_probe.unavailable_reason() {
        Some(reason) => {
            println!("  no NVIDIA driver: NVML could not be loaded, so this host offers 0 GPUs");
            println!("  ({reason})");
        }
        None if gpus.is_empty() => println!("  NVML loaded, but it reports 0 devices"),
        None => {
            println!(
                "  {} device(s); jobs are given exactly the UUIDs assigned:",
                gpus.len()
            );
            for g in &gpus {
                println!(
                    "  - index {}  uuid {}  model {:?}  memory {} MiB",
                    g.index, g.uuid, g.model, g.memory_mib
                );
            }
        }
    }
    println!();

    println!("CPU and memory (SysinfoHostProbe):");
    let host = SysinfoHostProbe::new();
    println!(
        "  capacity: {} millicores ({} logical cores), {} MiB memory",
        host.cpu_millis(),
        host.cpu_millis() / 1000,
        host.memory_mib()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let usage = host.usage();
    println!(
        "  usage now: {:.1} % CPU (all cores), {} MiB memory used",
        usage.cpu_percent, usage.memory_used_mib
    );
    println!();

    println!("Docker engine (DockerRuntime):");
    let config = match DockerConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            println!("  configuration error: {e}");
            std::process::exit(2);
        }
    };
    println!("  endpoint: {}", config.endpoint());
    println!(
        "  policy: network mode {:?}, pids limit {}, volume allow-list {}",
        config.network_mode,
        config
            .pids_limit
            .map_or_else(|| "none".to_owned(), |n| n.to_string()),
        if config.volume_allowlist.is_empty() {
            "empty (every host mount refused)".to_owned()
        } else {
            format!("{:?}", config.volume_allowlist)
        }
    );
    match DockerRuntime::connect(config).await {
        Ok(runtime) => match runtime.engine_version().await {
            Ok(v) => println!(
                "  reachable: engine {} (API {} negotiated)",
                v.version, v.api_version
            ),
            Err(e) => println!("  connected, but version failed: {}", e.job_reason()),
        },
        Err(e) => println!("  NOT reachable: {}", e.job_reason()),
    }
}
