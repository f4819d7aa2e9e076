//! DockerRuntime against a real Docker engine: limits, logs, exit status, abort, images,
//! volumes, labels and reconciliation.
//!
//! The image comes from `DWR_TEST_IMAGE` (default `dwr-test/busybox:latest`, built offline by
//! `scripts/provision.sh`). Without a reachable engine the tests skip with a note, unless
//! `DWR_REQUIRE_SERVICES=1`, where they fail. Every test runs under its own executor id, and
//! a guard removes every container of that executor even when the test fails.

use std::time::{Duration, Instant};

use dwr_core::runtime::{LABEL_EXECUTOR, LABEL_JOB_ID};
use dwr_core::{
    ContainerId, ContainerRuntime, ContainerRuntimeExt, JobId, LogSource, RuntimeError, VolumeMount,
};
use dwr_docker::{DockerConfig, DockerRuntime, PullPolicy};
use futures::StreamExt;
use tokio::sync::mpsc::unbounded_channel;

mod common;

use common::{inspect, texts, Harness};

#[tokio::test]
async fn exit_code_propagates() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let (status, _) = h.run(&h.spec(&["sh", "-c", "echo bye; exit 3"])).await;
    assert_eq!((status.code, status.oom_killed), (3, false));
    let (status, _) = h.run(&h.spec(&["true"])).await;
    assert_eq!((status.code, status.oom_killed), (0, false));
    h.finish().await;
}

#[tokio::test]
async fn stdout_and_stderr_lines_arrive_in_order() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let script = "for i in $(seq 1 50); do echo out$i; echo err$i >&2; done; printf partial";
    let (status, lines) = h.run(&h.spec(&["sh", "-c", script])).await;
    assert_eq!(status.code, 0);
    let mut want_out: Vec<String> = (1..=50).map(|i| format!("out{i}")).collect();
    want_out.push("partial".to_owned());
    let want_err: Vec<String> = (1..=50).map(|i| format!("err{i}")).collect();
    assert_eq!(texts(&lines, LogSource::Stdout), want_out);
    assert_eq!(texts(&lines, LogSource::Stderr), want_err);
    h.finish().await;
}

#[tokio::test]
async fn logs_stream_while_the_container_runs() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let spec = h.spec(&["sh", "-c", "echo first; sleep 600"]);
    let id = h.runtime.create_and_start(&spec).await.expect("start");
    let mut stream = h.runtime.logs(&id);
    let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a line arrives while the container still runs")
        .expect("stream open")
        .expect("line");
    assert_eq!(first.text, "first");
    h.runtime.remove(&id).await.expect("remove");
    h.finish().await;
}

#[tokio::test]
async fn limits_are_visible_inside_the_container() {
    let Some(h) = Harness::default().await else {
        return;
    };
    // cgroup v2 has cpu.max ("quota period") and memory.max; v1 has separate files.
    let script = r#"
        if [ -f /sys/fs/cgroup/cpu.max ]; then
            echo "cpu $(cat /sys/fs/cgroup/cpu.max)"
            echo "mem $(cat /sys/fs/cgroup/memory.max)"
            echo "pids $(cat /sys/fs/cgroup/pids.max)"
        else
            echo "cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
            echo "mem $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
            echo "pids $(cat /sys/fs/cgroup/pids/pids.max)"
        fi"#;
    let mut spec = h.spec(&["sh", "-c", script]);
    spec.cpu_millis = 500;
    spec.memory_mib = 48;
    let (status, lines) = h.run(&spec).await;
    assert_eq!(status.code, 0, "{lines:?}");
    let out = texts(&lines, LogSource::Stdout);
    let field = |name: &str| -> Vec<String> {
        let line = out
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in {out:?}"));
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    let cpu = field("cpu");
    let quota: f64 = cpu[0].parse().expect("quota");
    let period: f64 = cpu[1].parse().expect("period");
    assert_eq!(quota / period, 0.5, "cpu quota {cpu:?}");
    assert_eq!(field("mem"), vec![(48u64 * 1024 * 1024).to_string()]);
    assert_eq!(field("pids"), vec!["4096".to_owned()]);
    h.finish().await;
}

#[tokio::test]
async fn abort_of_a_process_ignoring_sigterm_ends_within_the_grace() {
    let Some(h) = Harness::default().await else {
        return;
    };
    // The init as PID 1 passes SIGTERM on to the shell, which ignores it (and so does the
    // sleep it starts): only the SIGKILL after the grace period ends them.
    let id = h
        .runtime
        .create_and_start(&h.spec(&["sh", "-c", "trap '' TERM; sleep 600"]))
        .await
        .expect("start");
    let began = Instant::now();
    h.runtime
        .stop(&id, Duration::from_secs(2))
        .await
        .expect("stop");
    let took = began.elapsed();
    eprintln!("stop with 2 s grace of a SIGTERM-ignoring container took {took:?}");
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    let status = tokio::time::timeout(Duration::from_secs(5), h.runtime.wait(&id))
        .await
        .expect("wait returns at once after the stop")
        .expect("wait");
    assert_eq!((status.code, status.oom_killed), (137, false));
    // Stopping an exited container is not an error; removing twice is not either.
    h.runtime
        .stop(&id, Duration::from_secs(2))
        .await
        .expect("second stop");
    h.runtime.remove(&id).await.expect("remove");
    h.runtime.remove(&id).await.expect("second remove");
    h.finish().await;
}

#[tokio::test]
async fn a_missing_image_fails_clearly_without_hanging() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let image = format!(
        "{DEAD_REGISTRY}/dwr-test/missing-{}:v1",
        uuid::Uuid::new_v4().simple()
    );
    let (tx, mut rx) = unbounded_channel();
    let result = tokio::time::timeout(Duration::from_secs(30), h.runtime.ensure_image(&image, tx))
        .await
        .expect("a pull from an unreachable registry fails in time");
    match result {
        Err(RuntimeError::ImageUnavailable {
            image: named,
            reason,
        }) => {
            assert_eq!(named, image);
            assert!(!reason.is_empty());
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
    let first = rx.recv().await.expect("the pull announced itself");
    assert!(first.contains(&image), "{first}");

    // A present image is not pulled: no progress at all.
    let (tx, mut rx) = unbounded_channel();
    h.runtime
        .ensure_image(&h.image, tx)
        .await
        .expect("present image");
    assert_eq!(rx.recv().await, None);
    h.finish().await;
}

/// A registry on loopback where nothing listens: a pull from it fails at once, and no
/// packet leaves the machine (a name without a registry would make the engine ask DNS for
/// docker.io).
const DEAD_REGISTRY: &str = "127.0.0.1:1";

#[tokio::test]
async fn a_present_image_is_pulled_only_under_the_always_policy() {
    let Some(h) = Harness::default().await else {
        return;
    };
    // The test image, present locally under a name whose registry is a dead loopback port.
    let local = format!(
        "{DEAD_REGISTRY}/dwr-test/pull-policy-{}:v1",
        uuid::Uuid::new_v4().simple()
    );
    docker_cli(&["tag", &h.image, &local]);
    let missing = h.runtime.clone();
    let always = DockerRuntime::connect(DockerConfig {
        pull_policy: PullPolicy::Always,
        ..DockerConfig::from_env().expect("docker config")
    })
    .await
    .expect("connect");

    let (tx, mut rx) = unbounded_channel();
    missing
        .ensure_image(&local, tx)
        .await
        .expect("present: no pull");
    assert_eq!(
        rx.recv().await,
        None,
        "the default policy does not pull a present image"
    );

    let (tx, mut rx) = unbounded_channel();
    let result = tokio::time::timeout(Duration::from_secs(30), always.ensure_image(&local, tx))
        .await
        .expect("the pull ends in time");
    docker_cli(&["rmi", &local]);
    assert!(
        matches!(result, Err(RuntimeError::ImageUnavailable { .. })),
        "asked to pull, the runtime goes to the (dead) registry: {result:?}"
    );
    let first = rx.recv().await.expect("the pull announced itself");
    assert!(first.contains(&local), "{first}");
    h.finish().await;
}

/// Runs the docker CLI, panicking with its output when it fails.
fn docker_cli(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn volumes_are_mounted_only_under_the_allowlist() {
    let allowed = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(allowed.path().join("hello.txt"), "hello from the host\n").unwrap();
    let config = DockerConfig {
        volume_allowlist: vec![allowed.path().to_owned()],
        ..DockerConfig::from_env().expect("config")
    };
    let Some(h) = Harness::new(config).await else {
        return;
    };
    let volume = |host: &std::path::Path| VolumeMount {
        host_path: host.to_string_lossy().into_owned(),
        container_path: "/data".to_owned(),
        read_only: true,
    };

    let mut spec = h.spec(&["cat", "/data/hello.txt"]);
    spec.volumes = vec![volume(outside.path())];
    match h.runtime.create_and_start(&spec).await {
        Err(RuntimeError::VolumeRefused { host_path }) => {
            assert_eq!(host_path, outside.path().to_string_lossy())
        }
        other => panic!("expected VolumeRefused, got {other:?}"),
    }
    assert!(
        h.runtime.list_owned(&h.executor).await.unwrap().is_empty(),
        "refused job created a container"
    );

    spec.job = JobId::new();
    spec.volumes = vec![volume(allowed.path())];
    let (status, lines) = h.run(&spec).await;
    assert_eq!(status.code, 0, "{lines:?}");
    assert_eq!(
        texts(&lines, LogSource::Stdout),
        vec!["hello from the host"]
    );
    h.finish().await;
}

#[tokio::test]
async fn env_labels_and_limits_are_set_on_the_container() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let mut spec = h.spec(&[
        "sh",
        "-c",
        "echo $JOB_ID; echo $EXECUTOR_IP; echo $FOO; echo $NVIDIA_VISIBLE_DEVICES; sleep 600",
    ]);
    spec.executor_ip = "192.0.2.9".to_owned();
    spec.env.insert("FOO".to_owned(), "bar baz".to_owned());
    spec.env.insert("JOB_ID".to_owned(), "forged".to_owned());
    spec.cpu_millis = 1500;
    let id = h.runtime.create_and_start(&spec).await.expect("start");

    let inspect = inspect(&id).await;
    assert_eq!(
        inspect.name.as_deref(),
        Some(format!("/dwr-{}-{}", spec.job, spec.attempt).as_str())
    );
    let labels = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .expect("labels");
    assert_eq!(labels[LABEL_JOB_ID], spec.job.to_string());
    assert_eq!(labels[LABEL_EXECUTOR], h.executor.to_string());
    let host = inspect.host_config.expect("host config");
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.nano_cpus, Some(1_500_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.memory_swap, Some(64 * 1024 * 1024));
    assert_eq!(host.pids_limit, Some(4096));

    assert_eq!(
        h.first_lines(&id, 4).await,
        vec![
            spec.job.to_string(),
            "192.0.2.9".to_owned(),
            "bar baz".to_owned(),
            "void".to_owned()
        ]
    );
    h.runtime.remove(&id).await.expect("remove");
    h.finish().await;
}

#[tokio::test]
async fn list_owned_finds_exactly_one_executors_containers() {
    let Some(x) = Harness::default().await else {
        return;
    };
    let Some(y) = Harness::default().await else {
        return;
    };
    let x1 = x.spec(&["sleep", "600"]);
    let x2 = x.spec(&["true"]);
    let y1 = y.spec(&["sleep", "600"]);
    let x1_id = x.runtime.create_and_start(&x1).await.expect("start x1");
    let x2_id = x.runtime.create_and_start(&x2).await.expect("start x2");
    y.runtime.create_and_start(&y1).await.expect("start y1");
    x.runtime.wait(&x2_id).await.expect("x2 exits");

    let mut owned = x.runtime.list_owned(&x.executor).await.expect("list x");
    owned.sort_by_key(|c| c.job != x1.job);
    assert_eq!(owned.len(), 2, "{owned:?}");
    assert_eq!(
        (owned[0].job, &owned[0].id, owned[0].running),
        (x1.job, &x1_id, true)
    );
    assert_eq!(
        (owned[1].job, &owned[1].id, owned[1].running),
        (x2.job, &x2_id, false)
    );
    let owned_y = y.runtime.list_owned(&y.executor).await.expect("list y");
    assert_eq!(owned_y.len(), 1);
    assert_eq!(owned_y[0].job, y1.job);
    x.finish().await;
    y.finish().await;
}

#[tokio::test]
async fn usage_samples_a_busy_container() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let id = h
        .runtime
        .create_and_start(&h.spec(&["sh", "-c", "yes > /dev/null"]))
        .await
        .expect("start");
    let usage = tokio::time::timeout(Duration::from_secs(30), h.runtime.usage(&id))
        .await
        .expect("a sample in time")
        .expect("usage");
    assert!(usage.cpu_percent > 1.0, "{usage:?}");
    assert!(usage.memory_bytes > 0, "{usage:?}");
    h.runtime.remove(&id).await.expect("remove");
    let err = h.runtime.usage(&id).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ContainerNotFound { .. }),
        "{err:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_start_failure_is_clear_and_leaves_no_container() {
    // A user the image does not know: the engine refuses the start itself.
    let config = DockerConfig {
        container_user: Some("no-such-user".to_owned()),
        ..DockerConfig::from_env().expect("config")
    };
    let Some(h) = Harness::new(config).await else {
        return;
    };
    let spec = h.spec(&["true"]);
    match h.runtime.create_and_start(&spec).await {
        Err(e @ RuntimeError::StartFailed { .. }) => {
            let reason = e.job_reason();
            assert!(
                reason.contains(&spec.job.to_string()) && reason.contains("no-such-user"),
                "{reason}"
            );
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(h.runtime.list_owned(&h.executor).await.unwrap().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_missing_command_exits_127_and_says_why() {
    let Some(h) = Harness::default().await else {
        return;
    };
    // The init starts, then fails to run the command: an exit like a shell's "not found",
    // with the init's reason in the job's log (before init, this was a start failure).
    let (status, lines) = h.run(&h.spec(&["/nonexistent"])).await;
    assert_eq!(status.code, 127, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.source == LogSource::Stderr && l.text.contains("/nonexistent")),
        "{lines:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn operations_on_a_missing_container_are_typed() {
    let Some(h) = Harness::default().await else {
        return;
    };
    let id = ContainerId("dwr-no-such-container".to_owned());
    h.runtime
        .remove(&id)
        .await
        .expect("remove of a missing container is idempotent");
    let err = h.runtime.wait(&id).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ContainerNotFound { .. }),
        "{err:?}"
    );
    let err = h
        .runtime
        .stop(&id, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::ContainerNotFound { .. }),
        "{err:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn an_unreachable_engine_names_its_endpoint() {
    let config = DockerConfig {
        docker_host: Some("unix:///nonexistent/dwr-docker.sock".to_owned()),
        ..DockerConfig::default()
    };
    let err = DockerRuntime::connect(config).await.unwrap_err();
    match &err {
        RuntimeError::Unreachable { endpoint, .. } => {
            assert_eq!(endpoint, "unix:///nonexistent/dwr-docker.sock")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        err.to_string().contains("/nonexistent/dwr-docker.sock"),
        "{err}"
    );
}

#[tokio::test]
async fn gpu_device_requests_reach_the_engine() {
    let Some(h) = Harness::default().await else {
        return;
    };
    if std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("note: this host has NVIDIA devices; the refusal below cannot be observed");
        h.finish().await;
        return;
    }
    // Without the NVIDIA runtime the engine refuses the device request at create or start:
    // the error names the driver, and no container is left.
    let mut spec = h.spec(&["true"]);
    spec.gpu_ids = vec!["GPU-00000000-0000-0000-0000-000000000000".to_owned()];
    let err = h.runtime.create_and_start(&spec).await.unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::CreateFailed { .. } | RuntimeError::StartFailed { .. }
        ),
        "{err:?}"
    );
    assert!(err.job_reason().contains("nvidia"), "{}", err.job_reason());
    assert!(h.runtime.list_owned(&h.executor).await.unwrap().is_empty());
    h.finish().await;
}
