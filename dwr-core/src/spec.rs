//! What a job asks for ([`JobSpec`]) and its validation.
//!
//! Validation lives here so every entry point (HTTP API, client, embedded use) refuses the same
//! bad input with the same typed error naming the field.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub env: BTreeMap<String, String>,
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPU devices wanted.
    pub gpu: GpuRequest,
    /// Regions the job may run in; empty means any.
    pub eligible_regions: Vec<String>,
    /// Datacenters the job may run in; empty means any.
    pub eligible_datacenters: Vec<String>,
    /// How long the job may stay pending before it fails.
    pub allocation_timeout: Duration,
    /// How long the job may run before it is stopped and failed.
    pub max_runtime: Duration,
    /// Host volumes to mount (refused by executors without an allow-list).
    pub volumes: Vec<VolumeMount>,
    /// How failed attempts are retried (by default they are not).
    #[serde(default)]
    pub retry: RetryPolicy,
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
        }
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

    /// Checks every field; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.image.trim().is_empty() {
            return Err(SpecError::Empty { field: "image" });
        }
        if self.image.len() > 512 || self.image.chars().any(char::is_whitespace) {
            return Err(SpecError::Invalid {
                field: "image",
                reason: "must be an image reference without whitespace, at most 512 characters"
                    .into(),
            });
        }
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err(SpecError::Empty { field: "command" });
        }
        if self.cpu_millis == 0 {
            return Err(SpecError::NotPositive { field: "cpu" });
        }
        if self.cpu_millis > MAX_CPU_MILLIS {
            return Err(SpecError::OutOfRange {
                field: "cpu",
                min: 1,
                max: MAX_CPU_MILLIS,
                value: self.cpu_millis,
            });
        }
        if self.memory_mib == 0 {
            return Err(SpecError::NotPositive { field: "memory" });
        }
        if self.memory_mib > MAX_MEMORY_MIB {
            return Err(SpecError::OutOfRange {
                field: "memory",
                min: 1,
                max: MAX_MEMORY_MIB,
                value: self.memory_mib,
            });
        }
        self.validate_gpu()?;
        if self.retry.max_retries > MAX_RETRIES {
            return Err(SpecError::OutOfRange {
                field: "max_retries",
                min: 0,
                max: u64::from(MAX_RETRIES),
                value: u64::from(self.retry.max_retries),
            });
        }
        if self.retry.backoff > MAX_RETRY_BACKOFF {
            return Err(SpecError::OutOfRange {
                field: "retry_backoff_seconds",
                min: 0,
                max: MAX_RETRY_BACKOFF.as_secs(),
                value: self.retry.backoff.as_secs(),
            });
        }
        if self.retry.retry_on.is_empty() && self.retry.max_retries > 0 {
            return Err(SpecError::Invalid {
                field: "retry_on",
                reason: "names no cause, so max_retries would never apply".into(),
            });
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError::Invalid {
                    field: "env",
                    reason: format!("bad variable name {key:?}"),
                });
            }
        }
        for (field, list) in [
            ("eligible_regions", &self.eligible_regions),
            ("eligible_datacenters", &self.eligible_datacenters),
        ] {
            if list.iter().any(|name| name.trim().is_empty()) {
                return Err(SpecError::Empty { field });
            }
        }
        Self::check_range(
            "allocation_timeout",
            self.allocation_timeout,
            MIN_ALLOCATION_TIMEOUT,
            MAX_ALLOCATION_TIMEOUT,
        )?;
        Self::check_range(
            "max_runtime",
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
                field: "gpu_count",
                min: 0,
                max: u64::from(MAX_GPUS),
                value: u64::from(self.gpu.count),
            });
        }
        match (&self.gpu.model, self.gpu.count) {
            (None, n) if n > 0 => Err(SpecError::Invalid {
                field: "gpu_type",
                reason: "a GPU model rule (\"any\" or a model name) is required when gpu_count > 0"
                    .into(),
            }),
            (Some(GpuModel::Named(name)), _) if name.trim().is_empty() => {
                Err(SpecError::Empty { field: "gpu_type" })
            }
            _ => Ok(()),
        }
    }

    fn check_range(
        field: &'static str,
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

/// Why a [`JobSpec`] was refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A required field is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A quantity that must be positive is zero or negative.
    #[error("{field} must be greater than 0")]
    NotPositive {
        /// The field.
        field: &'static str,
    },
    /// A value outside its allowed range.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The field.
        field: &'static str,
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
        field: &'static str,
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
    pub fn field(&self) -> &'static str {
        match self {
            SpecError::Empty { field }
            | SpecError::NotPositive { field }
            | SpecError::OutOfRange { field, .. }
            | SpecError::Invalid { field, .. } => field,
            SpecError::BadVolume { .. } => "volumes",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cases: Vec<(JobSpec, &str)> = vec![
            (
                JobSpec {
                    image: " ".into(),
                    ..good()
                },
                "image",
            ),
            (
                JobSpec {
                    command: vec![],
                    ..good()
                },
                "command",
            ),
            (
                JobSpec {
                    command: vec!["".into()],
                    ..good()
                },
                "command",
            ),
            (
                JobSpec {
                    cpu_millis: 0,
                    ..good()
                },
                "cpu",
            ),
            (
                JobSpec {
                    memory_mib: 0,
                    ..good()
                },
                "memory",
            ),
            (
                JobSpec {
                    cpu_millis: MAX_CPU_MILLIS + 1,
                    ..good()
                },
                "cpu",
            ),
            (
                JobSpec {
                    gpu: GpuRequest {
                        count: 1,
                        model: None,
                    },
                    ..good()
                },
                "gpu_type",
            ),
            (good().with_gpus(1, GpuModel::Named(" ".into())), "gpu_type"),
            (good().with_gpus(65, GpuModel::Any), "gpu_count"),
            (
                JobSpec {
                    allocation_timeout: Duration::from_secs(29),
                    ..good()
                },
                "allocation_timeout",
            ),
            (
                JobSpec {
                    max_runtime: Duration::ZERO,
                    ..good()
                },
                "max_runtime",
            ),
            (
                JobSpec {
                    eligible_regions: vec!["".into()],
                    ..good()
                },
                "eligible_regions",
            ),
            (
                JobSpec {
                    env: [("A=B".to_string(), "x".to_string())].into(),
                    ..good()
                },
                "env",
            ),
            (
                JobSpec {
                    volumes: vec![VolumeMount {
                        host_path: "rel".into(),
                        container_path: "/c".into(),
                        read_only: false,
                    }],
                    ..good()
                },
                "volumes",
            ),
        ];
        for (spec, field) in cases {
            let err = spec.validate().expect_err(field);
            assert_eq!(err.field(), field, "{err}");
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
