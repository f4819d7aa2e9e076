//! Turning a [`ContainerSpec`] into the engine's create request: limits, env, labels, GPUs,
//! the volume allow-list check, and the hardening every job container gets (an init as
//! PID 1, no privilege gain, dropped capabilities, a bounded log file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig, Mount, MountType,
};
use dwr_core::runtime::{LABEL_ATTEMPT, LABEL_EXECUTOR, LABEL_JOB_ID};
use dwr_core::{ContainerSpec, RuntimeError, VolumeMount};

use crate::config::DockerConfig;
use crate::error::Error;

/// Variables the runtime sets itself; a job's env cannot override them.
pub const RESERVED_ENV: [&str; 3] = ["JOB_ID", "EXECUTOR_IP", "NVIDIA_VISIBLE_DEVICES"];

/// What `NVIDIA_VISIBLE_DEVICES` holds for a job without GPUs: the NVIDIA container runtime
/// exposes no device for `void`, whatever the image sets.
pub const NO_GPUS: &str = "void";

/// Capabilities dropped from every job container, beyond Docker's defaults: `NET_RAW`
/// (raw and packet sockets: spoofing on the executor's network) and `MKNOD` (device nodes).
pub const DROPPED_CAPABILITIES: [&str; 2] = ["NET_RAW", "MKNOD"];

/// Security options of every job container: no process in it can gain privileges (setuid
/// binaries, file capabilities) beyond those it started with.
pub const SECURITY_OPTIONS: [&str; 1] = ["no-new-privileges"];

/// The log driver of every job container: a local file the engine rotates, which is also
/// what the logs API reads back.
pub const LOG_DRIVER: &str = "json-file";

/// The container name of a job: `dwr-<job id>`.
pub fn container_name(spec: &ContainerSpec) -> String {
    format!("dwr-{}-{}", spec.job, spec.attempt)
}

/// The create request for `spec` under `config`. Fails with `VolumeRefused` for a host path
/// outside the allow-list (or missing), and `CreateFailed` for an unusable env name or a
/// zero CPU or memory limit (which the engine would take as no limit at all).
pub fn container_config(
    spec: &ContainerSpec,
    config: &DockerConfig,
) -> Result<ContainerCreateBody, RuntimeError> {
    for (field, value) in [
        ("cpu_millis", spec.cpu_millis),
        ("memory_mib", spec.memory_mib),
    ] {
        if value == 0 {
            return Err(RuntimeError::CreateFailed {
                job: spec.job,
                source: Box::new(Error::ZeroLimit { field }),
            });
        }
    }
    let mounts = spec
        .volumes
        .iter()
        .map(|v| bind_mount(v, &config.volume_allowlist))
        .collect::<Result<Vec<_>, _>>()?;
    let env = container_env(spec)?;
    let labels = HashMap::from([
        (LABEL_JOB_ID.to_owned(), spec.job.to_string()),
        (LABEL_EXECUTOR.to_owned(), spec.executor.to_string()),
        (LABEL_ATTEMPT.to_owned(), spec.attempt.to_string()),
    ]);
    let memory_bytes =
        i64::try_from(spec.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let nano_cpus = i64::try_from(spec.cpu_millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let device_requests = (!spec.gpu_ids.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".to_owned()),
            count: None,
            device_ids: Some(spec.gpu_ids.clone()),
            capabilities: Some(vec![vec!["gpu".to_owned()]]),
            options: None,
        }]
    });
    let network_mode = (config.network_mode != "default").then(|| config.network_mode.clone());
    let host_config = HostConfig {
        nano_cpus: Some(nano_cpus),
        memory: Some(memory_bytes),
        memory_swap: Some(memory_bytes),
        pids_limit: config.pids_limit.map(i64::from),
        privileged: Some(false),
        // Docker's init (tini) as PID 1 forwards SIGTERM to the job and reaps orphans. A job
        // that is PID 1 itself ignores SIGTERM unless it installs a handler (most don't), so
        // every stop would wait out the whole grace and end in SIGKILL.
        init: Some(true),
        security_opt: Some(SECURITY_OPTIONS.map(str::to_owned).to_vec()),
        cap_drop: Some(DROPPED_CAPABILITIES.map(str::to_owned).to_vec()),
        readonly_rootfs: Some(spec.read_only_rootfs),
        log_config: Some(log_config(config)),
        network_mode,
        device_requests,
        mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: config.container_user.clone(),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(host_config),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        ..Default::default()
    })
}

/// The `json-file` driver, rotated at [`DockerConfig::log_max_size`] and keeping
/// [`DockerConfig::log_max_files`] files, so a job's output cannot fill the executor's disk.
fn log_config(config: &DockerConfig) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some(LOG_DRIVER.to_owned()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), docker_size(config.log_max_size)),
            ("max-file".to_owned(), config.log_max_files.to_string()),
        ])),
    }
}

/// `bytes` as Docker writes a size: in the largest binary unit that divides it (`10m`).
pub fn docker_size(bytes: u64) -> String {
    for (unit, size) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// The job's env, then `JOB_ID`, `EXECUTOR_IP` and `NVIDIA_VISIBLE_DEVICES`, which win over
/// any value the job gives them (a job cannot pose as another job or widen its GPUs).
fn container_env(spec: &ContainerSpec) -> Result<Vec<String>, RuntimeError> {
    let mut env = Vec::with_capacity(spec.env.len() + RESERVED_ENV.len());
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(RuntimeError::CreateFailed {
                job: spec.job,
                source: Box::new(Error::InvalidEnvKey { key: key.clone() }),
            });
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            tracing::warn!(job = %spec.job, %key, "job env may not set a reserved variable; ignored");
            continue;
        }
        env.push(format!("{key}={value}"));
    }
    let gpus = if spec.gpu_ids.is_empty() {
        NO_GPUS.to_owned()
    } else {
        spec.gpu_ids.join(",")
    };
    env.push(format!("JOB_ID={}", spec.job));
    env.push(format!("EXECUTOR_IP={}", spec.executor_ip));
    env.push(format!("NVIDIA_VISIBLE_DEVICES={gpus}"));
    Ok(env)
}

/// A bind mount of `volume`, if its canonical host path lies under a canonical allow-list
/// entry. The canonical path is what gets mounted, so a symlink cannot lead outside.
fn bind_mount(volume: &VolumeMount, allowlist: &[PathBuf]) -> Result<Mount, RuntimeError> {
    let host = allowed_host_path(Path::new(&volume.host_path), allowlist).ok_or_else(|| {
        RuntimeError::VolumeRefused {
            host_path: volume.host_path.clone(),
        }
    })?;
    Ok(Mount {
        target: Some(volume.container_path.clone()),
        source: Some(host.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(volume.read_only),
        ..Default::default()
    })
}

/// The canonical form of `host` when it exists and lies under an allow-list entry.
pub fn allowed_host_path(host: &Path, allowlist: &[PathBuf]) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(host).ok()?;
    allowlist
        .iter()
        .filter_map(|allowed| std::fs::canonicalize(allowed).ok())
        .any(|allowed| canonical.starts_with(&allowed))
        .then_some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::{ExecutorId, JobId};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            job: JobId::new(),
            attempt: 1,
            executor: ExecutorId::new("exec-1"),
            executor_ip: "10.0.0.7".to_owned(),
            image: "busybox:latest".to_owned(),
            command: vec!["true".to_owned()],
            env: [("FOO".to_owned(), "bar".to_owned())].into(),
            cpu_millis: 1500,
            memory_mib: 512,
            gpu_ids: Vec::new(),
            volumes: Vec::new(),
            read_only_rootfs: false,
        }
    }

    fn env_of(config: &ContainerCreateBody) -> Vec<String> {
        config.env.clone().unwrap()
    }

    #[test]
    fn limits_labels_and_env_are_applied() {
        let spec = spec();
        let config = container_config(&spec, &DockerConfig::default()).unwrap();
        let host = config.host_config.as_ref().unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(512 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(
            host.network_mode, None,
            "default leaves the engine's choice"
        );
        assert_eq!(host.device_requests, None);
        assert_eq!(host.init, Some(true));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(
            host.cap_drop,
            Some(vec!["NET_RAW".to_owned(), "MKNOD".to_owned()])
        );
        assert_eq!(host.readonly_rootfs, Some(false));
        let log = host.log_config.as_ref().unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let log = log.config.as_ref().unwrap();
        assert_eq!(
            (log["max-size"].as_str(), log["max-file"].as_str()),
            ("10m", "3")
        );
        assert_eq!(config.user, None, "the image's own user by default");
        let labels = config.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_JOB_ID], spec.job.to_string());
        assert_eq!(labels[LABEL_EXECUTOR], "exec-1");
        assert_eq!(labels[LABEL_ATTEMPT], "1");
        let env = env_of(&config);
        assert!(env.contains(&"FOO=bar".to_owned()));
        assert!(env.contains(&format!("JOB_ID={}", spec.job)));
        assert!(env.contains(&"EXECUTOR_IP=10.0.0.7".to_owned()));
        assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=void".to_owned()));
        assert_eq!(container_name(&spec), format!("dwr-{}-1", spec.job));
    }

    #[test]
    fn user_read_only_root_and_log_rotation_follow_config_and_spec() {
        let mut spec = spec();
        spec.read_only_rootfs = true;
        let config = DockerConfig {
            container_user: Some("1000:1000".to_owned()),
            log_max_size: 512 * 1024,
            log_max_files: 5,
            ..DockerConfig::default()
        };
        let body = container_config(&spec, &config).unwrap();
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        let host = body.host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        let log = host.log_config.unwrap().config.unwrap();
        assert_eq!(
            (log["max-size"].as_str(), log["max-file"].as_str()),
            ("512k", "5")
        );
    }

    #[test]
    fn sizes_are_written_in_the_largest_exact_unit() {
        assert_eq!(docker_size(10 * 1024 * 1024), "10m");
        assert_eq!(docker_size(1536 * 1024), "1536k");
        assert_eq!(docker_size(2 << 30), "2g");
        assert_eq!(docker_size(1000), "1000");
    }

    #[test]
    fn gpus_are_requested_by_exact_uuid() {
        let mut spec = spec();
        spec.gpu_ids = vec!["GPU-a".to_owned(), "GPU-b".to_owned()];
        spec.env
            .insert("NVIDIA_VISIBLE_DEVICES".to_owned(), "all".to_owned());
        let config = container_config(&spec, &DockerConfig::default()).unwrap();
        let requests = config.host_config.unwrap().device_requests.unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].driver.as_deref(), Some("nvidia"));
        assert_eq!(
            requests[0].device_ids,
            Some(vec!["GPU-a".to_owned(), "GPU-b".to_owned()])
        );
        assert_eq!(requests[0].capabilities, Some(vec![vec!["gpu".to_owned()]]));
        let env = config.env.unwrap();
        let visible: Vec<_> = env
            .iter()
            .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
            .collect();
        assert_eq!(visible, vec!["NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b"]);
    }

    #[test]
    fn job_env_cannot_override_reserved_variables() {
        let mut spec = spec();
        spec.env.insert("JOB_ID".to_owned(), "forged".to_owned());
        spec.env
            .insert("EXECUTOR_IP".to_owned(), "1.2.3.4".to_owned());
        let env = env_of(&container_config(&spec, &DockerConfig::default()).unwrap());
        assert!(!env
            .iter()
            .any(|e| e == "JOB_ID=forged" || e == "EXECUTOR_IP=1.2.3.4"));
        assert_eq!(env.iter().filter(|e| e.starts_with("JOB_ID=")).count(), 1);
    }

    #[test]
    fn bad_env_name_is_a_create_error() {
        let mut spec = spec();
        spec.env.insert("A=B".to_owned(), "x".to_owned());
        let err = container_config(&spec, &DockerConfig::default()).unwrap_err();
        assert!(matches!(err, RuntimeError::CreateFailed { .. }), "{err:?}");
    }

    #[test]
    fn zero_limits_are_refused_not_unlimited() {
        for (cpu, mem, field) in [(0, 64, "cpu_millis"), (1000, 0, "memory_mib")] {
            let mut spec = spec();
            spec.cpu_millis = cpu;
            spec.memory_mib = mem;
            let err = container_config(&spec, &DockerConfig::default()).unwrap_err();
            assert!(err.job_reason().contains(field), "{}", err.job_reason());
        }
    }

    #[test]
    fn network_mode_is_passed_through() {
        let config = DockerConfig {
            network_mode: "none".to_owned(),
            pids_limit: None,
            ..DockerConfig::default()
        };
        let host = container_config(&spec(), &config)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.pids_limit, None);
    }

    #[test]
    fn volumes_only_under_the_allowlist() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside = allowed.path().join("data");
        std::fs::create_dir(&inside).unwrap();
        let escape = allowed.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &escape).unwrap();
        let config = DockerConfig {
            volume_allowlist: vec![allowed.path().to_owned()],
            ..DockerConfig::default()
        };
        let mut spec = spec();
        let mount = |host: &Path| VolumeMount {
            host_path: host.to_string_lossy().into_owned(),
            container_path: "/data".to_owned(),
            read_only: true,
        };

        spec.volumes = vec![mount(&inside)];
        let host = container_config(&spec, &config)
            .unwrap()
            .host_config
            .unwrap();
        let mounts = host.mounts.unwrap();
        assert_eq!(
            mounts[0].source.as_deref(),
            Some(inside.canonicalize().unwrap().to_str().unwrap())
        );
        assert_eq!(mounts[0].read_only, Some(true));

        for refused in [
            outside.path(),
            escape.as_path(),
            Path::new("/nonexistent/dwr"),
        ] {
            spec.volumes = vec![mount(refused)];
            let err = container_config(&spec, &config).unwrap_err();
            assert!(
                matches!(err, RuntimeError::VolumeRefused { .. }),
                "{refused:?}: {err:?}"
            );
        }
        spec.volumes = vec![mount(&inside)];
        let err = container_config(&spec, &DockerConfig::default()).unwrap_err();
        assert!(
            matches!(err, RuntimeError::VolumeRefused { .. }),
            "empty allow-list: {err:?}"
        );
    }
}
