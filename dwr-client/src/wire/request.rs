//! The body of `POST /jobs` and its conversion into a validated [`JobSpec`].

use std::collections::BTreeMap;
use std::time::Duration;

use dwr_core::deps::UnknownDependency;
use dwr_core::retry::MAX_RETRY_BACKOFF;
use dwr_core::spec::{MAX_CPU_MILLIS, MAX_MEMORY_MIB};
use dwr_core::units::{self, MIB_PER_GB};
use dwr_core::{
    GpuModel, GpuRequest, JobId, JobSpec, RetryCause, SpecError, SpecField, VolumeMount,
};
use serde::{Deserialize, Serialize};

/// The body of `POST /jobs`.
///
/// Unknown fields are accepted and ignored. Exactly one of `memory_gb` and `memory_mb` must
/// be given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRequest {
    /// Docker image reference, e.g. `busybox:latest`.
    #[cfg_attr(feature = "openapi", schema(example = "dwr-test/busybox:latest"))]
    pub docker_image: String,
    /// Command and arguments, not run through a shell.
    #[cfg_attr(feature = "openapi", schema(example = json!(["echo", "hello from dwr"])))]
    pub command: Vec<String>,
    /// CPU cores (> 0); rounded up to whole millicores.
    #[cfg_attr(feature = "openapi", schema(example = 0.5))]
    pub cpu_cores: f64,
    /// Memory in GB (> 0; 1 GB = 1024 MiB); rounded up to whole MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = 0.25))]
    pub memory_gb: Option<f64>,
    /// Memory in MiB, an alternative to `memory_gb` (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub memory_mb: Option<u64>,
    /// `null` for no GPU, `"any"`, or a model name matched against the executors' GPUs
    /// (case-insensitive substring, `"A100"` matches `"NVIDIA A100-SXM4-80GB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// GPU devices wanted; defaults to 1 when `gpu_type` is set, else 0. A count without a
    /// `gpu_type` accepts any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub gpu_count: Option<u32>,
    /// Seconds the job may wait for room before it fails (default 300, at least 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub allocation_timeout: Option<u64>,
    /// Regions the job may run in; empty or absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_regions: Option<Vec<String>>,
    /// Datacenters the job may run in; empty or absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_datacenters: Option<Vec<String>>,
    /// Host volumes, `host:container[:ro|rw]` with absolute paths (refused by executors
    /// without an allow-list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// Extra environment variables for the container (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Longest run in seconds before the job is stopped and failed (default 3600; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub max_runtime_seconds: Option<u64>,
    /// Retries after a failed first attempt, 0..=100 (default 0; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub max_retries: Option<u32>,
    /// Seconds before the first retry, doubling for each later one up to 600 (default 10;
    /// extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 600))]
    pub retry_backoff_seconds: Option<u64>,
    /// The failures that are retried, out of `executor_lost`, `start_failed`,
    /// `exit_nonzero` and `oom` (default: all of them; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
    /// Run the container with a read-only root filesystem (default false; volumes keep
    /// their own mode; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_rootfs: Option<bool>,
    /// 0 (lowest) to 100 (default 50): a pending job of higher priority is placed first; a
    /// waiting job gains a point for every 1,000 jobs submitted after it (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub priority: Option<u32>,
    /// The queue the job waits in (default `default`); one of the scheduler's queues
    /// (`GET /queues`; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "default"))]
    pub queue: Option<String>,
    /// Ids of jobs this one waits for (at most 100, each existing; extension): see
    /// `dependency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// When its dependencies are met: `afterok` (default: every one succeeded), `afterany`
    /// (every one ended) or `afternotok` (every one ended, at least one did not succeed);
    /// Slurm's names (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// Submit an array of tasks of this job instead of one job (extension): the answer is
    /// the array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<super::ArrayRequest>,
}

/// Deserializes an optional whole number written as an integer (`30`) or as a number without
/// a fraction (`30.0`): JSON Schema's `integer` admits both, and so did the original
/// system's server. A fraction, a negative number or one out of `T`'s range is refused,
/// naming the field.
pub(super) fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Error, Unexpected};
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => n,
        // Below 2^64 (`u64::MAX as f64` rounds up to it), the cast is exact.
        (None, Some(f)) if f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&f) => f as u64,
        (None, Some(f)) => {
            return Err(D::Error::invalid_value(
                Unexpected::Float(f),
                &"a whole number, 0 or more",
            ))
        }
        (None, None) => {
            return Err(D::Error::invalid_value(
                Unexpected::Other("a number"),
                &"a whole number, 0 or more",
            ))
        }
    };
    T::try_from(whole).map(Some).map_err(|_| {
        D::Error::invalid_value(Unexpected::Unsigned(whole), &"a smaller whole number")
    })
}

/// [`whole_number`] for a required field.
pub(super) fn required_whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    whole_number(deserializer)?.ok_or_else(|| D::Error::custom("a whole number is required"))
}

impl JobRequest {
    /// A request for `image` running `command` with `cpu_cores` and `memory_gb`, all else
    /// default.
    pub fn new(
        image: impl Into<String>,
        command: Vec<String>,
        cpu_cores: f64,
        memory_gb: f64,
    ) -> Self {
        Self {
            docker_image: image.into(),
            command,
            cpu_cores,
            memory_gb: Some(memory_gb),
            ..Self::default()
        }
    }

    /// Converts to a validated [`JobSpec`]. Errors name the wire field (`cpu_cores`,
    /// `memory_gb`, `docker_image`, …), never an internal one.
    pub fn into_spec(self) -> Result<JobSpec, SpecError> {
        let cpu_millis = cores_to_millis(self.cpu_cores)?;
        let memory_mib = match (self.memory_gb, self.memory_mb) {
            (Some(_), Some(_)) => {
                return Err(SpecError::Invalid {
                    field: SpecField::MemoryGb,
                    reason: "give memory_gb or memory_mb, not both".into(),
                })
            }
            (Some(gb), None) => gb_to_mib(gb)?,
            (None, Some(0)) => {
                return Err(SpecError::NotPositive {
                    field: SpecField::MemoryMb,
                })
            }
            (None, Some(mb)) => mb,
            (None, None) => {
                return Err(SpecError::Invalid {
                    field: SpecField::MemoryGb,
                    reason: "is required (or memory_mb)".into(),
                })
            }
        };
        let model = self.gpu_type.as_deref().map(GpuModel::parse);
        let gpu = match (model, self.gpu_count) {
            (None, None) | (None, Some(0)) => GpuRequest::default(),
            (None, Some(count)) => GpuRequest {
                count,
                model: Some(GpuModel::Any),
            },
            (Some(model), count) => GpuRequest {
                count: count.unwrap_or(1),
                model: Some(model),
            },
        };
        let volumes = self
            .volumes
            .unwrap_or_default()
            .iter()
            .map(|v| v.parse::<VolumeMount>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut spec = JobSpec::new(self.docker_image, self.command, cpu_millis, memory_mib);
        spec.gpu = gpu;
        spec.env = self.env.unwrap_or_default();
        spec.eligible_regions = self.eligible_regions.unwrap_or_default();
        spec.eligible_datacenters = self.eligible_datacenters.unwrap_or_default();
        spec.volumes = volumes;
        spec.read_only_rootfs = self.read_only_rootfs.unwrap_or(false);
        if let Some(priority) = self.priority {
            let max = dwr_core::spec::MAX_PRIORITY;
            spec.priority =
                u8::try_from(priority)
                    .ok()
                    .filter(|&p| p <= max)
                    .ok_or(SpecError::OutOfRange {
                        field: SpecField::Priority,
                        min: 0,
                        max: u64::from(max),
                        value: u64::from(priority),
                    })?;
        }
        if let Some(queue) = self.queue {
            spec.queue = queue;
        }
        if let Some(secs) = self.allocation_timeout {
            spec.allocation_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = self.max_runtime_seconds {
            spec.max_runtime = Duration::from_secs(secs);
        }
        if let Some(n) = self.max_retries {
            spec.retry.max_retries = n;
        }
        if let Some(secs) = self.retry_backoff_seconds {
            if secs > MAX_RETRY_BACKOFF.as_secs() {
                return Err(SpecError::OutOfRange {
                    field: SpecField::RetryBackoffSeconds,
                    min: 0,
                    max: MAX_RETRY_BACKOFF.as_secs(),
                    value: secs,
                });
            }
            spec.retry.backoff = Duration::from_secs(secs);
        }
        if let Some(ids) = self.depends_on {
            spec.depends_on = ids
                .iter()
                .map(|id| id.parse::<JobId>())
                .collect::<Result<_, _>>()
                .map_err(|e| SpecError::Invalid {
                    field: SpecField::DependsOn,
                    reason: e.to_string(),
                })?;
        }
        if let Some(kind) = self.dependency {
            spec.dependency = kind
                .parse()
                .map_err(|e: UnknownDependency| SpecError::Invalid {
                    field: SpecField::Dependency,
                    reason: e.to_string(),
                })?;
        }
        if let Some(causes) = self.retry_on {
            spec.retry.retry_on = causes
                .iter()
                .map(|c| c.parse::<RetryCause>())
                .collect::<Result<_, _>>()
                .map_err(|e| SpecError::Invalid {
                    field: SpecField::RetryOn,
                    reason: e.to_string(),
                })?;
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// Cores to millicores by [`units`]' rule (rounding up); refuses non-finite, non-positive
/// and too large.
fn cores_to_millis(cores: f64) -> Result<u64, SpecError> {
    if !cores.is_finite() || cores <= 0.0 {
        return Err(SpecError::NotPositive {
            field: SpecField::CpuCores,
        });
    }
    units::millicores(cores)
        .filter(|&millis| millis <= MAX_CPU_MILLIS)
        .ok_or_else(|| SpecError::Invalid {
            field: SpecField::CpuCores,
            reason: format!(
                "at most {} cores, got {cores}",
                units::cores(MAX_CPU_MILLIS)
            ),
        })
}

/// GB (1 GB = 1024 MiB) to MiB by [`units`]' rule (rounding up); refuses non-finite,
/// non-positive and too large.
fn gb_to_mib(gb: f64) -> Result<u64, SpecError> {
    if !gb.is_finite() || gb <= 0.0 {
        return Err(SpecError::NotPositive {
            field: SpecField::MemoryGb,
        });
    }
    units::mib(gb, MIB_PER_GB as f64)
        .filter(|&mib| mib <= MAX_MEMORY_MIB)
        .ok_or_else(|| SpecError::Invalid {
            field: SpecField::MemoryGb,
            reason: format!("at most {} GB, got {gb}", units::gb(MAX_MEMORY_MIB)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> JobRequest {
        JobRequest::new("busybox", vec!["echo".into(), "hi".into()], 0.5, 0.25)
    }

    #[test]
    fn a_request_converts_with_rounding_up() {
        let spec = JobRequest {
            cpu_cores: 0.0001,
            memory_gb: Some(0.0001),
            ..req()
        }
        .into_spec()
        .unwrap();
        assert_eq!((spec.cpu_millis, spec.memory_mib), (1, 1));
        let spec = req().into_spec().unwrap();
        assert_eq!((spec.cpu_millis, spec.memory_mib), (500, 256));
        assert_eq!(spec.allocation_timeout, Duration::from_secs(300));
        assert_eq!(spec.gpu.count, 0);
    }

    #[test]
    fn gpu_defaults() {
        let spec = JobRequest {
            gpu_type: Some("A100".into()),
            ..req()
        }
        .into_spec()
        .unwrap();
        assert_eq!(spec.gpu.count, 1);
        assert_eq!(spec.gpu.model, Some(GpuModel::Named("A100".into())));
        let spec = JobRequest {
            gpu_count: Some(2),
            ..req()
        }
        .into_spec()
        .unwrap();
        assert_eq!((spec.gpu.count, spec.gpu.model), (2, Some(GpuModel::Any)));
    }

    #[test]
    fn errors_name_wire_fields() {
        // Each patch of a valid request is refused, naming the field it patches.
        type Patch = fn(&mut JobRequest);
        let cases: &[(Patch, &str)] = &[
            (|r| r.cpu_cores = 0.0, "cpu_cores"),
            (|r| r.cpu_cores = -1.0, "cpu_cores"),
            (|r| r.cpu_cores = f64::NAN, "cpu_cores"),
            (|r| r.cpu_cores = 1e12, "cpu_cores"),
            (|r| r.memory_gb = Some(-2.0), "memory_gb"),
            (|r| r.memory_gb = None, "memory_gb"),
            (
                |r| (r.memory_mb, r.memory_gb) = (Some(0), None),
                "memory_mb",
            ),
            (|r| r.command = vec![], "command"),
            (|r| r.docker_image = "".into(), "docker_image"),
            (|r| r.allocation_timeout = Some(5), "allocation_timeout"),
            (|r| r.max_runtime_seconds = Some(0), "max_runtime_seconds"),
            (|r| r.volumes = Some(vec!["relative:/x".into()]), "volumes"),
        ];
        for &(patch, field) in cases {
            let mut request = req();
            patch(&mut request);
            let err = request.into_spec().expect_err(field);
            assert_eq!(err.field().name(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let parse = |extra: serde_json::Value| {
            let mut body = serde_json::json!({
                "docker_image": "busybox", "command": ["true"], "cpu_cores": 1
            });
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<JobRequest>(body)
        };
        let r = parse(serde_json::json!({"memory_mb": 256.0, "gpu_count": 0.0, "max_retries": 2}))
            .unwrap();
        assert_eq!(
            (r.memory_mb, r.gpu_count, r.max_retries),
            (Some(256), Some(0), Some(2))
        );
        for bad in [
            serde_json::json!({"memory_mb": 1.5}),
            serde_json::json!({"allocation_timeout": -30}),
            serde_json::json!({"gpu_count": 5e9}),
            serde_json::json!({"max_runtime_seconds": "60"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            parse(serde_json::json!({"memory_mb": null}))
                .unwrap()
                .memory_mb,
            None
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_nulls_accepted() {
        let r: JobRequest = serde_json::from_value(serde_json::json!({
            "docker_image": "busybox", "command": ["true"], "cpu_cores": 1, "memory_gb": 1,
            "gpu_type": null, "eligible_regions": null, "priority": 5
        }))
        .unwrap();
        assert_eq!(r.into_spec().unwrap().cpu_millis, 1000);
    }
}
