//! What the Docker test binaries share: a runtime under a fresh executor id whose containers
//! are removed whatever happens, the test image, and helpers to run a container through.
// Each test binary uses its own part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::InspectContainerOptions;
use dwr_core::{
    ContainerId, ContainerRuntime, ContainerRuntimeExt, ContainerSpec, ExecutorId, ExitStatus,
    JobId, LogLine, LogSource,
};
use dwr_docker::{DockerConfig, DockerRuntime};
use futures::StreamExt;
use tokio::sync::mpsc::unbounded_channel;

/// How long any single container test may take before it counts as hung.
pub const TEST_BOUND: Duration = Duration::from_secs(60);

pub fn test_image() -> String {
    std::env::var("DWR_TEST_IMAGE").unwrap_or_else(|_| "dwr-test/busybox:latest".to_owned())
}

pub fn services_required() -> bool {
    std::env::var("DWR_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// A runtime under a fresh executor id, with cleanup of that executor's containers.
pub struct Harness {
    pub runtime: DockerRuntime,
    pub executor: ExecutorId,
    pub image: String,
}

impl Harness {
    /// Connects with `config`, or returns `None` (after a note) when Docker is missing and
    /// services are not required.
    pub async fn new(config: DockerConfig) -> Option<Self> {
        let runtime = match DockerRuntime::connect(config).await {
            Ok(r) => r,
            Err(e) if !services_required() => {
                eprintln!("note: skipping: Docker engine unreachable ({}); set DWR_REQUIRE_SERVICES=1 to fail instead", e.job_reason());
                return None;
            }
            Err(e) => panic!(
                "Docker engine required (DWR_REQUIRE_SERVICES=1): {}",
                e.job_reason()
            ),
        };
        let image = test_image();
        let (tx, _rx) = unbounded_channel();
        if let Err(e) = runtime.ensure_image(&image, tx).await {
            if !services_required() {
                eprintln!(
                    "note: skipping: test image {image} missing ({}); run scripts/provision.sh",
                    e.job_reason()
                );
                return None;
            }
            panic!("test image {image} required: {}", e.job_reason());
        }
        Some(Self {
            runtime,
            executor: ExecutorId::new(format!("test-{}", uuid::Uuid::new_v4())),
            image,
        })
    }

    pub async fn default() -> Option<Self> {
        Self::new(DockerConfig::from_env().expect("docker config from env")).await
    }

    pub fn spec(&self, command: &[&str]) -> ContainerSpec {
        ContainerSpec {
            job: JobId::new(),
            attempt: 1,
            executor: self.executor.clone(),
            executor_ip: "127.0.0.1".to_owned(),
            image: self.image.clone(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            cpu_millis: 1000,
            memory_mib: 64,
            gpu_ids: Vec::new(),
            volumes: Vec::new(),
            read_only_rootfs: false,
        }
    }

    /// Starts `spec`, waits for the exit, then reads the whole output; removes the container.
    pub async fn run(&self, spec: &ContainerSpec) -> (ExitStatus, Vec<LogLine>) {
        let id = self.runtime.create_and_start(spec).await.expect("start");
        let logs = tokio::spawn(collect_logs(self.runtime.clone(), id.clone()));
        let status = tokio::time::timeout(TEST_BOUND, self.runtime.wait(&id))
            .await
            .expect("container exits in time")
            .expect("wait");
        let lines = tokio::time::timeout(TEST_BOUND, logs)
            .await
            .expect("log stream ends after exit")
            .expect("log task");
        self.runtime.remove(&id).await.expect("remove");
        (status, lines)
    }

    /// The first `n` lines of a running container's output.
    pub async fn first_lines(&self, id: &ContainerId, n: usize) -> Vec<String> {
        let mut stream = self.runtime.logs(id);
        let mut out = Vec::new();
        while out.len() < n {
            let line = tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .expect("lines in time")
                .expect("stream open")
                .expect("line");
            out.push(line.text);
        }
        out
    }

    /// Removes what is left and checks that nothing of this executor remains.
    pub async fn finish(self) {
        for c in self.runtime.list_owned(&self.executor).await.expect("list") {
            self.runtime.remove(&c.id).await.expect("remove");
        }
        let left = self.runtime.list_owned(&self.executor).await.expect("list");
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

impl Drop for Harness {
    /// The safety net for a failed test: force-remove every container of this executor.
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        let executor = self.executor.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                if let Ok(owned) = runtime.list_owned(&executor).await {
                    for c in owned {
                        let _ = runtime.remove(&c.id).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The engine's view of container `id`.
pub async fn inspect(id: &ContainerId) -> ContainerInspectResponse {
    bollard::Docker::connect_with_local_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("negotiate")
        .inspect_container(&id.0, None::<InspectContainerOptions>)
        .await
        .expect("inspect")
}

/// The texts of the lines from `source`.
pub fn texts(lines: &[LogLine], source: LogSource) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.source == source)
        .map(|l| l.text.clone())
        .collect()
}

pub async fn collect_logs(runtime: DockerRuntime, id: ContainerId) -> Vec<LogLine> {
    let mut stream = runtime.logs(&id);
    let mut lines = Vec::new();
    while let Some(line) = stream.next().await {
        lines.push(line.expect("log line"));
    }
    lines
}
