//! What a job asks for ([`JobSpec`]) and its validation.
//!
//! Validation lives here so every entry point (HTTP API, client, embedded use) refuses the same
//! bad input with the same typed error naming the field.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::deps::{Dependency, MAX_DEPENDENCIES};
use crate::ids::JobId;
use crate::queues::{check_queue_name, DEFAULT_QUEUE};
use crate::resources::Resources;
use crate::retry::{RetryPolicy, MAX_RETRIES, MAX_RETRY_BACKOFF};

/// Default time a job may wait for room before it fails.
pub const DEFAULT_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Shortest allowed allocation timeout.
pub const MIN_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest allowed allocation timeout (7 days).
pub const MAX_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default longest run of a job.
pub const DEFAULT_MAX_RUNTIME: Duration = Duration::from_secs(60 * 60);
/// Longest allowed max runtime (30 days).
pub const MAX_MAX_RUNTIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest CPU request in millicores (1024 cores).
pub const MAX_CPU_MILLIS: u64 = 1024 * 1000;
/// Largest memory request in MiB (16 TiB).
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
/// Largest GPU count of one job.
pub const MAX_GPUS: u32 = 64;
/// Most command arguments (the program included).
pub const MAX_COMMAND_ARGS: usize = 4096;
/// Most bytes of all command arguments together.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// Most environment variables.
pub const MAX_ENV_ENTRIES: usize = 512;
/// Most bytes of all environment names and values together.
pub const MAX_ENV_BYTES: usize = 128 * 1024;
/// Most volumes.
pub const MAX_VOLUMES: usize = 64;
/// Longest image reference (Docker's own limit on a repository name is 255).
pub const MAX_IMAGE_REFERENCE: usize = 512;
/// A job's priority when none is given.
pub const DEFAULT_PRIORITY: u8 = 50;
/// The highest priority (the lowest is 0).
pub const MAX_PRIORITY: u8 = 100;
/// Aging: a pending job gains one point of priority for every this many jobs submitted after
/// it. A job of higher priority goes first in a queue of any realistic length (one 40
/// points higher passes 40,000 older ones), and no job is ever passed by more than
/// `MAX_PRIORITY` times this many later ones, so nothing starves. Counting arrivals rather
/// than seconds ages a job exactly when later work competes with it, and makes the order a
/// fixed key ([`JobSpec::queue_key`]) that a store can index.
pub const PRIORITY_AGING_JOBS: u64 = 1000;

/// Checks a list of strings against a count and a total size, and for NUL bytes (which no
/// process argument or environment entry can carry).
fn check_strings<'a>(
    field: SpecField,
    items: impl Iterator<Item = &'a String>,
    max_count: usize,
    max_bytes: usize,
) -> Result<(), SpecError> {
    let (mut count, mut bytes) = (0usize, 0usize);
    for item in items {
        count += 1;
        bytes += item.len();
        if item.contains('\0') {
            return Err(SpecError::Invalid {
                field,
                reason: "contains a NUL byte".into(),
            });
        }
    }
    // The environment is counted as names and values: report it in variables.
    let (what, count, max_count) = if field == SpecField::Env {
        ("variables", count / 2, max_count / 2)
    } else {
        ("arguments", count, max_count)
    };
    if count > max_count {
        return Err(SpecError::Invalid {
            field,
            reason: format!("at most {max_count} {what}, got {count}"),
        });
    }
    if bytes > max_bytes {
        return Err(SpecError::Invalid {
            field,
            reason: format!("at most {max_bytes} bytes in all, got {bytes}"),
        });
    }
    Ok(())
}

/// Checks `reference` against Docker's reference grammar:
/// `[host[:port]/]path[:tag][@algorithm:hex]`, where each path component is lowercase
/// letters and digits joined by `.`, `_`, `__` or dashes, a tag is up to 128 of
/// `[A-Za-z0-9_.-]` not starting with `.` or `-`, and a digest is `algorithm:hex` (32 or
/// more hex digits).
pub fn check_image_reference(reference: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!("{why} (an image reference such as registry.example.com:5000/team/app:1.2 or busybox@sha256:<hex>)"))
    };
    if reference.len() > MAX_IMAGE_REFERENCE {
        return bad(&format!("longer than {MAX_IMAGE_REFERENCE} characters"));
    }
    if reference.chars().any(|c| !c.is_ascii_graphic()) {
        return bad("must be printable ASCII without spaces");
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return bad("has a malformed digest");
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return bad("has a malformed tag");
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry host when it looks like one.
    if parts.len() > 1
        && (parts[0].contains(['.', ':'])
            || parts[0] == "localhost"
            || parts[0].bytes().any(|b| b.is_ascii_uppercase()))
    {
        let host = parts.remove(0);
        let (domain, port) = match host.split_once(':') {
            Some((d, p)) => (d, Some(p)),
            None => (host, None),
        };
        let domain_ok = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let port_ok = match port {
            None => true,
            Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
        };
        if !domain_ok || !port_ok {
            return bad("has a malformed registry host");
        }
    }
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |i: usize| {
            b.get(i)
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        let mut i = 0;
        loop {
            let run = i;
            while alnum(i) {
                i += 1;
            }
            if i == run {
                return false;
            }
            if i == b.len() {
                return true;
            }
            match b[i] {
                b'.' => i += 1,
                b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
                b'-' => {
                    while b.get(i) == Some(&b'-') {
                        i += 1;
                    }
                }
                _ => return false,
            }
        }
    };
    if parts.is_empty() || !parts.iter().all(|p| component_ok(p)) {
        return bad("has a malformed repository name: lowercase letters, digits and separators (. _ __ -) between them");
    }
    Ok(())
}

/// Which GPU model a job accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuModel {
    /// Any GPU model.
    Any,
    /// A model name, matched case-insensitively as a substring of the probe's model name
    /// (`"A100"` matches `"NVIDIA A100-SXM4-80GB"`).
    Named(String),
}

impl GpuModel {
    /// Parses the API's `gpu_type`: `"any"` (any case) or a model name.
    pub fn parse(text: &str) -> GpuModel {
        if text.trim().eq_ignore_ascii_case("any") {
            GpuModel::Any
        } else {
            GpuModel::Named(text.trim().to_owned())
        }
    }

    /// True when a device whose probe reported `model` satisfies this rule.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            GpuModel::Any => true,
            GpuModel::Named(want) => model.to_lowercase().contains(&want.to_lowercase()),
        }
    }
}

impl fmt::Display for GpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuModel::Any => f.write_str("any"),
            GpuModel::Named(name) => f.write_str(name),
        }
    }
}

/// A GPU request: how many devices, and which model rule they must satisfy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuRequest {
    /// Number of devices; 0 means no GPU.
    pub count: u32,
    /// The model rule; required when `count > 0`.
    pub model: Option<GpuModel>,
}

/// A host path mounted into the container: `host:container[:ro|rw]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeMount {
    /// Absolute path on the executor's host.
    pub host_path: String,
    /// Absolute path inside the container.
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl fmt::Display for VolumeMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.read_only { "ro" } else { "rw" };
        write!(f, "{}:{}:{}", self.host_path, self.container_path, mode)
    }
}

impl FromStr for VolumeMount {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| SpecError::BadVolume {
            value: s.chars().take(256).collect(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, "ro"] => (*h, *c, true),
            [h, c, "rw"] => (*h, *c, false),
            [_, _, _] => return Err(bad("mode must be ro or rw")),
            _ => return Err(bad("expected host:container[:ro|rw]")),
        };
        for path in [host, container] {
            if !path.starts_with('/') {
                return Err(bad("paths must be absolute"));
            }
            if path.split('/').any(|seg| seg == "..") {
                return Err(bad("paths must not contain '..'"));
            }
        }
        Ok(VolumeMount {
            host_path: host.to_owned(),
            container_path: container.to_owned(),
            read_only,
        })
    }
}

/// Everything a job asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Docker image reference.
    pub image: String,
    /// Command and arguments (not run through a shell).
    pub command: Vec<String>,
    /// Extra environment variables for the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPU devices wanted.
    #[serde(default, skip_serializing_if = "is_default_gpu")]
    pub gpu: GpuRequest,
    /// Regions the job may run in; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_regions: Vec<String>,
    /// Datacenters the job may run in; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_datacenters: Vec<String>,
    /// How long the job may stay pending before it fails.
    #[serde(
        default = "default_allocation_timeout",
        skip_serializing_if = "is_default_allocation_timeout"
    )]
    pub allocation_timeout: Duration,
    /// How long the job may run before it is stopped and failed.
    #[serde(
        default = "default_max_runtime",
        skip_serializing_if = "is_default_max_runtime"
    )]
    pub max_runtime: Duration,
    /// Host volumes to mount (refused by executors without an allow-list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// How failed attempts are retried (by default they are not). Like every field but the
    /// image, command, CPU and memory, not written when default: the JSON a store keeps of
    /// every job, and sends its executor, is a third as long for a job that sets nothing
    /// else. (Versions before issue 17's under-way index required the fields from `env` to
    /// `volumes`; they cannot share a store with this one anyway.)
    #[serde(default, skip_serializing_if = "is_default_retry")]
    pub retry: RetryPolicy,
    /// Run the container with a read-only root filesystem (default false); mounted volumes
    /// keep their own mode.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_rootfs: bool,
    /// 0 (lowest) to [`MAX_PRIORITY`]; [`DEFAULT_PRIORITY`] by default. A pending job of
    /// higher priority is considered first (see [`PRIORITY_AGING_JOBS`]).
    #[serde(
        default = "default_priority",
        skip_serializing_if = "is_default_priority"
    )]
    pub priority: u8,
    /// The tenant that submitted it (the API's named tokens); `None` for the single token
    /// or an API without tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The queue it waits in ([`DEFAULT_QUEUE`] by default; see [`crate::queues`]). Not
    /// written when default, so a stored default job reads the same to an older version.
    #[serde(default = "default_queue", skip_serializing_if = "is_default_queue")]
    pub queue: String,
    /// Jobs it waits for (see [`crate::deps`]); each must exist when it is submitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<JobId>,
    /// When its dependencies are met (default: every one succeeded).
    #[serde(default, skip_serializing_if = "is_default_dependency")]
    pub dependency: Dependency,
}

fn is_default_gpu(gpu: &GpuRequest) -> bool {
    *gpu == GpuRequest::default()
}

fn default_allocation_timeout() -> Duration {
    DEFAULT_ALLOCATION_TIMEOUT
}

fn is_default_allocation_timeout(timeout: &Duration) -> bool {
    *timeout == DEFAULT_ALLOCATION_TIMEOUT
}

fn default_max_runtime() -> Duration {
    DEFAULT_MAX_RUNTIME
}

fn is_default_max_runtime(runtime: &Duration) -> bool {
    *runtime == DEFAULT_MAX_RUNTIME
}

fn is_default_dependency(dependency: &Dependency) -> bool {
    *dependency == Dependency::default()
}

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

fn is_default_priority(priority: &u8) -> bool {
    *priority == DEFAULT_PRIORITY
}

fn is_default_retry(retry: &RetryPolicy) -> bool {
    *retry == RetryPolicy::default()
}

fn is_false(b: &bool) -> bool {
    !b
}

fn default_queue() -> String {
    DEFAULT_QUEUE.to_owned()
}

fn is_default_queue(queue: &str) -> bool {
    queue == DEFAULT_QUEUE
}

impl JobSpec {
    /// A spec with the defaults for everything but image, command, CPU and memory.
    pub fn new(
        image: impl Into<String>,
        command: Vec<String>,
        cpu_millis: u64,
        memory_mib: u64,
    ) -> Self {
        Self {
            image: image.into(),
            command,
            env: BTreeMap::new(),
            cpu_millis,
            memory_mib,
            gpu: GpuRequest::default(),
            eligible_regions: Vec::new(),
            eligible_datacenters: Vec::new(),
            allocation_timeout: DEFAULT_ALLOCATION_TIMEOUT,
            max_runtime: DEFAULT_MAX_RUNTIME,
            volumes: Vec::new(),
            retry: RetryPolicy::default(),
            read_only_rootfs: false,
            priority: DEFAULT_PRIORITY,
            owner: None,
            queue: default_queue(),
            depends_on: Vec::new(),
            dependency: Dependency::default(),
        }
    }

    /// The job's place in the pending queue, given its arrival sequence number `seq`
    /// (0, 1, 2, ... in submission order): lower goes first. `seq` less the priority's worth
    /// of arrivals: ordering by it is ordering by priority plus aging (one point per
    /// [`PRIORITY_AGING_JOBS`] later arrivals), then by arrival.
    pub fn queue_key(&self, seq: u64) -> i64 {
        seq as i64 - i64::from(self.priority) * PRIORITY_AGING_JOBS as i64
    }

    /// Puts the job in `queue`.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the GPU request.
    pub fn with_gpus(mut self, count: u32, model: GpuModel) -> Self {
        self.gpu = GpuRequest {
            count,
            model: Some(model),
        };
        self
    }

    /// The resources this job occupies while assigned or running.
    pub fn resources(&self) -> Resources {
        Resources::new(self.cpu_millis, self.memory_mib, self.gpu.count)
    }

    /// The spec as placement reads it: what decides where and whether it fits (resources,
    /// GPUs, regions, datacenters) and when it gives up (allocation timeout), without what
    /// only the container needs (`command`, `env`, `volumes`), which may be large. See
    /// [`JobStore::pending_for_placement`](crate::JobStore::pending_for_placement).
    pub fn for_placement(&self) -> JobSpec {
        JobSpec {
            command: Vec::new(),
            env: BTreeMap::new(),
            volumes: Vec::new(),
            ..self.clone()
        }
    }

    /// Whether this is a [`for_placement`](Self::for_placement) view (a stored job always
    /// has a command).
    pub fn is_placement_view(&self) -> bool {
        self.command.is_empty()
    }

    /// Checks every field; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.image.trim().is_empty() {
            return Err(SpecError::Empty {
                field: SpecField::DockerImage,
            });
        }
        if let Err(reason) = check_image_reference(&self.image) {
            return Err(SpecError::Invalid {
                field: SpecField::DockerImage,
                reason,
            });
        }
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err(SpecError::Empty {
                field: SpecField::Command,
            });
        }
        check_strings(
            SpecField::Command,
            self.command.iter(),
            MAX_COMMAND_ARGS,
            MAX_COMMAND_BYTES,
        )?;
        check_strings(
            SpecField::Env,
            self.env.iter().flat_map(|(k, v)| [k, v]),
            2 * MAX_ENV_ENTRIES,
            MAX_ENV_BYTES,
        )?;
        if self.volumes.len() > MAX_VOLUMES {
            return Err(SpecError::Invalid {
                field: SpecField::Volumes,
                reason: format!("at most {MAX_VOLUMES} volumes, got {}", self.volumes.len()),
            });
        }
        for (field, value, max) in [
            (SpecField::CpuCores, self.cpu_millis, MAX_CPU_MILLIS),
            (SpecField::MemoryGb, self.memory_mib, MAX_MEMORY_MIB),
        ] {
            if value == 0 {
                return Err(SpecError::NotPositive { field });
            }
            if value > max {
                return Err(SpecError::OutOfRange {
                    field,
                    min: 1,
                    max,
                    value,
                });
            }
        }
        self.validate_gpu()?;
        if self.priority > MAX_PRIORITY {
            return Err(SpecError::OutOfRange {
                field: SpecField::Priority,
                min: 0,
                max: u64::from(MAX_PRIORITY),
                value: u64::from(self.priority),
            });
        }
        if self.depends_on.len() > MAX_DEPENDENCIES {
            return Err(SpecError::Invalid {
                field: SpecField::DependsOn,
                reason: format!(
                    "at most {MAX_DEPENDENCIES} jobs, got {}",
                    self.depends_on.len()
                ),
            });
        }
        for (i, id) in self.depends_on.iter().enumerate() {
            if self.depends_on[..i].contains(id) {
                return Err(SpecError::Invalid {
                    field: SpecField::DependsOn,
                    reason: format!("{id} is named twice"),
                });
            }
        }
        if let Err(reason) = check_queue_name(&self.queue) {
            return Err(SpecError::Invalid {
                field: SpecField::Queue,
                reason,
            });
        }
        if self.retry.max_retries > MAX_RETRIES {
            return Err(SpecError::OutOfRange {
                field: SpecField::MaxRetries,
                min: 0,
                max: u64::from(MAX_RETRIES),
                value: u64::from(self.retry.max_retries),
            });
        }
        Self::check_range(
            SpecField::RetryBackoffSeconds,
            self.retry.backoff,
            Duration::ZERO,
            MAX_RETRY_BACKOFF,
        )?;
        if self.retry.retry_on.is_empty() && self.retry.max_retries > 0 {
            return Err(SpecError::Invalid {
                field: SpecField::RetryOn,
                reason: "names no cause, so max_retries would never apply".into(),
            });
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError::Invalid {
                    field: SpecField::Env,
                    reason: format!("bad variable name {key:?}"),
                });
            }
        }
        for (field, list) in [
            (SpecField::EligibleRegions, &self.eligible_regions),
            (SpecField::EligibleDatacenters, &self.eligible_datacenters),
        ] {
            if list.iter().any(|name| name.trim().is_empty()) {
                return Err(SpecError::Empty { field });
            }
        }
        Self::check_range(
            SpecField::AllocationTimeout,
            self.allocation_timeout,
            MIN_ALLOCATION_TIMEOUT,
            MAX_ALLOCATION_TIMEOUT,
        )?;
        Self::check_range(
            SpecField::MaxRuntimeSeconds,
            self.max_runtime,
            Duration::from_secs(1),
            MAX_MAX_RUNTIME,
        )?;
        for volume in &self.volumes {
            // Re-parse the printed form: a mount built in code obeys the same syntax rules.
            volume.to_string().parse::<VolumeMount>()?;
        }
        Ok(())
    }

    fn validate_gpu(&self) -> Result<(), SpecError> {
        if self.gpu.count > MAX_GPUS {
            return Err(SpecError::OutOfRange {
                field: SpecField::GpuCount,
                min: 0,
                max: u64::from(MAX_GPUS),
                value: u64::from(self.gpu.count),
            });
        }
        match (&self.gpu.model, self.gpu.count) {
            (None, n) if n > 0 => Err(SpecError::Invalid {
                field: SpecField::GpuType,
                reason: "a GPU model rule (\"any\" or a model name) is required when gpu_count > 0"
                    .into(),
            }),
            (Some(GpuModel::Named(name)), _) if name.trim().is_empty() => Err(SpecError::Empty {
                field: SpecField::GpuType,
            }),
            _ => Ok(()),
        }
    }

    fn check_range(
        field: SpecField,
        value: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<(), SpecError> {
        if value < min || value > max {
            return Err(SpecError::OutOfRange {
                field,
                min: min.as_secs(),
                max: max.as_secs(),
                value: value.as_secs(),
            });
        }
        Ok(())
    }
}

/// A field of a job, by the name the HTTP API gives it: what a [`SpecError`] names.
///
/// The API's names are the ones people write (`cpu_cores`, `memory_gb`), so an error names
/// the field as it was given; a program that builds a [`JobSpec`] in Rust finds each one's
/// counterpart in [`SpecField::name`]'s table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecField {
    /// `docker_image`: [`JobSpec::image`].
    DockerImage,
    /// `command`: [`JobSpec::command`].
    Command,
    /// `cpu_cores`: [`JobSpec::cpu_millis`].
    CpuCores,
    /// `memory_gb`: [`JobSpec::memory_mib`].
    MemoryGb,
    /// `memory_mb`: [`JobSpec::memory_mib`], the API's alternative to `memory_gb`.
    MemoryMb,
    /// `gpu_type`: [`GpuRequest::model`].
    GpuType,
    /// `gpu_count`: [`GpuRequest::count`].
    GpuCount,
    /// `env`: [`JobSpec::env`].
    Env,
    /// `volumes`: [`JobSpec::volumes`].
    Volumes,
    /// `eligible_regions`: [`JobSpec::eligible_regions`].
    EligibleRegions,
    /// `eligible_datacenters`: [`JobSpec::eligible_datacenters`].
    EligibleDatacenters,
    /// `allocation_timeout` (seconds): [`JobSpec::allocation_timeout`].
    AllocationTimeout,
    /// `max_runtime_seconds`: [`JobSpec::max_runtime`].
    MaxRuntimeSeconds,
    /// `max_retries`: [`RetryPolicy::max_retries`](crate::RetryPolicy::max_retries).
    MaxRetries,
    /// `retry_backoff_seconds`: [`RetryPolicy::backoff`](crate::RetryPolicy::backoff).
    RetryBackoffSeconds,
    /// `retry_on`: [`RetryPolicy::retry_on`](crate::RetryPolicy::retry_on).
    RetryOn,
    /// `priority`: [`JobSpec::priority`].
    Priority,
    /// `queue`: [`JobSpec::queue`].
    Queue,
    /// `depends_on`: [`JobSpec::depends_on`].
    DependsOn,
    /// `dependency`: [`JobSpec::dependency`].
    Dependency,
    /// `array.count`: the tasks of an array.
    ArrayCount,
    /// `array.parallelism`: how many tasks of an array at once.
    ArrayParallelism,
}

impl SpecField {
    /// The field's name in the HTTP API.
    pub const fn name(self) -> &'static str {
        match self {
            SpecField::DockerImage => "docker_image",
            SpecField::Command => "command",
            SpecField::CpuCores => "cpu_cores",
            SpecField::MemoryGb => "memory_gb",
            SpecField::MemoryMb => "memory_mb",
            SpecField::GpuType => "gpu_type",
            SpecField::GpuCount => "gpu_count",
            SpecField::Env => "env",
            SpecField::Volumes => "volumes",
            SpecField::EligibleRegions => "eligible_regions",
            SpecField::EligibleDatacenters => "eligible_datacenters",
            SpecField::AllocationTimeout => "allocation_timeout",
            SpecField::MaxRuntimeSeconds => "max_runtime_seconds",
            SpecField::MaxRetries => "max_retries",
            SpecField::RetryBackoffSeconds => "retry_backoff_seconds",
            SpecField::RetryOn => "retry_on",
            SpecField::Priority => "priority",
            SpecField::Queue => "queue",
            SpecField::DependsOn => "depends_on",
            SpecField::Dependency => "dependency",
            SpecField::ArrayCount => "array.count",
            SpecField::ArrayParallelism => "array.parallelism",
        }
    }
}

impl fmt::Display for SpecField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a [`JobSpec`] was refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A required field is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: SpecField,
    },
    /// A quantity that must be positive is zero or negative.
    #[error("{field} must be greater than 0")]
    NotPositive {
        /// The field.
        field: SpecField,
    },
    /// A value outside its allowed range.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The field.
        field: SpecField,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
        /// The value given.
        value: u64,
    },
    /// A field whose value breaks a rule.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: SpecField,
        /// The rule it broke.
        reason: String,
    },
    /// A volume that is not `host:container[:ro|rw]` with absolute paths.
    #[error("volumes: {value:?} is invalid: {reason}")]
    BadVolume {
        /// The volume text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SpecError {
    /// The name of the field at fault.
    pub fn field(&self) -> SpecField {
        match self {
            SpecError::Empty { field }
            | SpecError::NotPositive { field }
            | SpecError::OutOfRange { field, .. }
            | SpecError::Invalid { field, .. } => *field,
            SpecError::BadVolume { .. } => SpecField::Volumes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryCause;
    use proptest::prelude::*;

    #[test]
    fn defaults_are_not_written() {
        let spec = JobSpec::new("img", vec!["true".into()], 100, 64);
        let json: serde_json::Value = serde_json::to_value(&spec).unwrap();
        let mut written: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        written.sort_unstable();
        assert_eq!(written, ["command", "cpu_millis", "image", "memory_mib"]);
        let mut set = spec.clone();
        set.priority = 90;
        set.read_only_rootfs = true;
        set.retry.max_retries = 1;
        set.max_runtime = Duration::from_secs(60);
        set.gpu.count = 1;
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(
            (
                &json["priority"],
                &json["read_only_rootfs"],
                &json["retry"]["max_retries"],
                &json["max_runtime"]["secs"],
                &json["gpu"]["count"],
            ),
            (
                &serde_json::json!(90),
                &serde_json::json!(true),
                &serde_json::json!(1),
                &serde_json::json!(60),
                &serde_json::json!(1),
            )
        );
    }

    /// A spec as versions before the defaults were left out wrote it, every field present,
    /// reads the same.
    #[test]
    fn a_spec_with_every_field_written_reads_the_same() {
        let old = r#"{"image":"img","command":["true"],"env":{},"cpu_millis":100,"memory_mib":64,"gpu":{"count":0,"model":null},"eligible_regions":[],"eligible_datacenters":[],"allocation_timeout":{"secs":300,"nanos":0},"max_runtime":{"secs":3600,"nanos":0},"volumes":[]}"#;
        assert_eq!(
            serde_json::from_str::<JobSpec>(old).unwrap(),
            JobSpec::new("img", vec!["true".into()], 100, 64)
        );
    }

    proptest! {
        /// A spec reads back as it was written, whatever it leaves out as default.
        #[test]
        fn a_spec_reads_back_as_written(
            max_retries in 0u32..3,
            backoff_ms in prop_oneof![Just(10_000u64), 0u64..100_000],
            causes in proptest::sample::subsequence(RetryCause::ALL.to_vec(), 0..=4),
            read_only_rootfs: bool,
            priority in prop_oneof![Just(DEFAULT_PRIORITY), 0..=MAX_PRIORITY],
            env in proptest::collection::btree_map("[A-Z]{1,4}", "[a-z]{0,3}", 0..3),
            gpus in prop_oneof![Just(0u32), 1u32..4],
            regions in proptest::collection::vec("[a-z]{1,3}", 0..3),
            datacenters in proptest::collection::vec("[a-z]{1,3}", 0..3),
            allocation_s in prop_oneof![Just(300u64), 1u64..1000],
            runtime_s in prop_oneof![Just(3600u64), 1u64..10_000],
            read_only_volume in proptest::option::of(any::<bool>()),
        ) {
            let mut spec = JobSpec::new("img", vec!["true".into()], 100, 64);
            spec.env = env;
            if gpus > 0 {
                spec.gpu = GpuRequest { count: gpus, model: Some(GpuModel::Any) };
            }
            spec.eligible_regions = regions;
            spec.eligible_datacenters = datacenters;
            spec.allocation_timeout = Duration::from_secs(allocation_s);
            spec.max_runtime = Duration::from_secs(runtime_s);
            if let Some(read_only) = read_only_volume {
                spec.volumes = vec![VolumeMount {
                    host_path: "/data".into(),
                    container_path: "/in".into(),
                    read_only,
                }];
            }
            spec.retry = RetryPolicy {
                max_retries,
                backoff: std::time::Duration::from_millis(backoff_ms),
                retry_on: causes.into_iter().collect(),
            };
            spec.read_only_rootfs = read_only_rootfs;
            spec.priority = priority;
            let json = serde_json::to_string(&spec).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
        }
    }

    #[test]
    fn image_references_follow_dockers_grammar() {
        for good in [
            "busybox",
            "busybox:latest",
            "dwr-test/busybox:latest",
            "library/ubuntu:22.04",
            "registry.example.com:5000/team/app:1.2",
            "localhost/app",
            "localhost:5000/a__b/c-d--e/f.g:v1_2-3.4",
            "ghcr.io/org/image@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "app:tag@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image_reference(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "bus box",
            "busybox/",
            "/busybox",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "app@sha256:xyz",
            "app@sha256:0123",
            "reg:port/app",
            "x".repeat(600).as_str(),
            "bad\u{7f}",
            "caf\u{e9}",
        ] {
            let err = check_image_reference(bad).unwrap_err();
            assert!(err.contains("an image reference such as"), "{bad}: {err}");
        }
    }

    #[test]
    fn commands_env_and_volumes_are_bounded() {
        let base = JobSpec::new("busybox", vec!["true".into()], 100, 64);
        let field = |spec: &JobSpec| spec.validate().err().map(|e| e.field());
        let mut s = base.clone();
        s.command = vec!["x".into(); MAX_COMMAND_ARGS + 1];
        assert_eq!(field(&s), Some(SpecField::Command));
        s.command = vec!["x".repeat(MAX_COMMAND_BYTES + 1)];
        assert_eq!(field(&s), Some(SpecField::Command));
        s.command = vec!["echo".into(), "a\0b".into()];
        assert_eq!(field(&s), Some(SpecField::Command));
        s.command = vec!["x".into(); MAX_COMMAND_ARGS];
        assert_eq!(field(&s), None, "the bound itself is allowed");

        let mut s = base.clone();
        s.env = (0..=MAX_ENV_ENTRIES)
            .map(|i| (format!("K{i}"), "v".into()))
            .collect();
        assert_eq!(field(&s), Some(SpecField::Env));
        s.env = [("K".to_owned(), "v".repeat(MAX_ENV_BYTES))].into();
        assert_eq!(field(&s), Some(SpecField::Env));
        s.env = [("K".to_owned(), "a\0b".to_owned())].into();
        assert_eq!(field(&s), Some(SpecField::Env));
        s.env = (0..MAX_ENV_ENTRIES)
            .map(|i| (format!("K{i}"), "v".into()))
            .collect();
        assert_eq!(field(&s), None);

        let mut s = base;
        s.volumes = (0..=MAX_VOLUMES)
            .map(|i| format!("/data/{i}:/mnt/{i}").parse().unwrap())
            .collect();
        assert_eq!(field(&s), Some(SpecField::Volumes));
        s.volumes.pop();
        assert_eq!(field(&s), None);
    }

    fn good() -> JobSpec {
        JobSpec::new("busybox", vec!["echo".into(), "hi".into()], 500, 256)
    }

    #[test]
    fn a_good_spec_validates() {
        assert_eq!(good().validate(), Ok(()));
        assert_eq!(good().with_gpus(2, GpuModel::Any).validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |change: fn(&mut JobSpec)| {
            let mut spec = good();
            change(&mut spec);
            spec
        };
        let cases = [
            (with(|s| s.image = " ".into()), "docker_image"),
            (with(|s| s.command = vec![]), "command"),
            (with(|s| s.command = vec!["".into()]), "command"),
            (with(|s| s.cpu_millis = 0), "cpu_cores"),
            (with(|s| s.memory_mib = 0), "memory_gb"),
            (with(|s| s.cpu_millis = MAX_CPU_MILLIS + 1), "cpu_cores"),
            (with(|s| s.gpu.count = 1), "gpu_type"),
            (good().with_gpus(1, GpuModel::Named(" ".into())), "gpu_type"),
            (good().with_gpus(65, GpuModel::Any), "gpu_count"),
            (
                with(|s| s.allocation_timeout = Duration::from_secs(29)),
                "allocation_timeout",
            ),
            (
                with(|s| s.max_runtime = Duration::ZERO),
                "max_runtime_seconds",
            ),
            (
                with(|s| s.eligible_regions = vec!["".into()]),
                "eligible_regions",
            ),
            (with(|s| s.env = [("A=B".into(), "x".into())].into()), "env"),
            (
                with(|s| {
                    s.volumes = vec![VolumeMount {
                        host_path: "rel".into(),
                        container_path: "/c".into(),
                        read_only: false,
                    }]
                }),
                "volumes",
            ),
        ];
        for (spec, field) in cases {
            let err = spec.validate().expect_err(field);
            assert_eq!(err.field().name(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn volume_syntax() {
        let v: VolumeMount = "/data:/in:ro".parse().unwrap();
        assert_eq!(v.host_path, "/data");
        assert!(v.read_only);
        assert!(!"/data:/in".parse::<VolumeMount>().unwrap().read_only);
        for bad in [
            "/data",
            "/a:/b:rx",
            "a:/b",
            "/a:b",
            "/a/../etc:/b",
            "/a:/b:ro:x",
        ] {
            assert!(bad.parse::<VolumeMount>().is_err(), "{bad}");
        }
    }

    #[test]
    fn gpu_model_rules() {
        assert!(GpuModel::parse("ANY").matches("whatever"));
        let a100 = GpuModel::parse("a100");
        assert!(a100.matches("NVIDIA A100-SXM4-80GB"));
        assert!(!a100.matches("NVIDIA H200"));
    }
}
