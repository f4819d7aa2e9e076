//! [`DockerRuntime`]: the [`ContainerRuntime`] over a Docker engine, through bollard.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerStateStatusEnum, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use dwr_core::runtime::{LABEL_EXECUTOR, LABEL_JOB_ID};
use dwr_core::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerUsage, ExecutorId, ExitStatus, JobId,
    LogLine, OwnedContainer, ProgressSink, RuntimeError,
};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::config::{DockerConfig, PullPolicy};
use crate::create::{container_config, container_name};
use crate::image::{follow_pull, pull_reference};
use crate::logs::follow_lines;
use crate::stats::usage_of;

/// A Docker engine as a [`ContainerRuntime`].
///
/// Cheap to clone (the connection is shared). The API version is negotiated at connect time,
/// so engines older than bollard's default version (Docker 20.10 speaks 1.41) work.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    endpoint: String,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.docker.client_version().to_string())
            .field("config", &self.config)
            .finish()
    }
}

/// What [`DockerRuntime::engine_version`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineVersion {
    /// The engine's version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// The API version spoken after negotiation.
    pub api_version: String,
}

impl DockerRuntime {
    /// Connects to the engine `config` names and negotiates the API version. An engine that
    /// does not answer is `Unreachable` naming the socket or URL.
    pub async fn connect(config: DockerConfig) -> Result<Self, RuntimeError> {
        let endpoint = config.endpoint().to_owned();
        let timeout = config.request_timeout.as_secs().max(1);
        let unreachable = |source: BollardError| RuntimeError::Unreachable {
            endpoint: endpoint.clone(),
            source: Box::new(source),
        };
        let docker = if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(&endpoint, timeout, API_DEFAULT_VERSION)
        } else if endpoint.starts_with("unix://") || endpoint.starts_with('/') {
            Docker::connect_with_socket(&endpoint, timeout, API_DEFAULT_VERSION)
        } else {
            Err(BollardError::UnsupportedURISchemeError {
                uri: endpoint.clone(),
            })
        }
        .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        tracing::debug!(%endpoint, api = %docker.client_version(), "connected to the Docker engine");
        Ok(Self {
            docker,
            config,
            endpoint,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The engine endpoint (socket path or URL).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The engine's version and the negotiated API version.
    pub async fn engine_version(&self) -> Result<EngineVersion, RuntimeError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| self.error("version", e))?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: self.docker.client_version().to_string(),
        })
    }

    /// Maps a bollard error: connection failures are `Unreachable`, everything else `Engine`.
    fn error(&self, operation: &'static str, e: BollardError) -> RuntimeError {
        map_error(&self.endpoint, operation, e)
    }

    /// Like [`error`](Self::error), with 404 as `ContainerNotFound`.
    fn container_error(
        &self,
        id: &ContainerId,
        operation: &'static str,
        e: BollardError,
    ) -> RuntimeError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => RuntimeError::ContainerNotFound { id: id.0.clone() },
            e => self.error(operation, e),
        }
    }

    async fn pull(&self, image: &str, progress: &ProgressSink) -> Result<(), RuntimeError> {
        let reference = pull_reference(image);
        tracing::info!(%image, %reference, "pulling image");
        let _ = progress.send(format!("pull: pulling {reference}"));
        let options = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let stream = self.docker.create_image(Some(options), None, None);
        follow_pull(
            image,
            stream,
            self.config.pull_stall_timeout,
            progress,
            |e| self.error("pull", e),
        )
        .await
    }

    async fn remove_quietly(&self, id: &str, job: JobId) {
        if let Err(e) = self.remove(&ContainerId(id.to_owned())).await {
            tracing::warn!(%job, container = %id, error = %e, "could not remove a container that failed to start");
        }
    }
}

/// Maps a bollard error for `operation` against `endpoint`.
fn map_error(endpoint: &str, operation: &'static str, e: BollardError) -> RuntimeError {
    match e {
        BollardError::SocketNotFoundError(_)
        | BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. } => RuntimeError::Unreachable {
            endpoint: endpoint.to_owned(),
            source: Box::new(e),
        },
        e => RuntimeError::Engine {
            operation,
            source: Box::new(e),
        },
    }
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ensure_image(&self, image: &str, progress: ProgressSink) -> Result<(), RuntimeError> {
        if self.config.pull_policy == PullPolicy::Missing {
            match self.docker.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(self.error("inspect image", e)),
            }
        }
        self.pull(image, &progress).await?;
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Err(RuntimeError::ImageUnavailable {
                image: image.to_owned(),
                reason: "the pull ended but the image is still missing".to_owned(),
            }),
            Err(e) => Err(self.error("inspect image", e)),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let config = container_config(spec, &self.config)?;
        let name = container_name(spec);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                config,
            )
            .await
            .map_err(|e| match map_error(&self.endpoint, "create container", e) {
                RuntimeError::Engine { source, .. } => RuntimeError::CreateFailed {
                    job: spec.job,
                    source,
                },
                other => other,
            })?;
        for warning in &created.warnings {
            tracing::warn!(job = %spec.job, %warning, "engine warning on create");
        }
        tracing::debug!(job = %spec.job, container = %created.id, %name, "container created");
        Ok(ContainerId(created.id))
    }

    async fn start(&self, id: &ContainerId, job: JobId) -> Result<(), RuntimeError> {
        // The engine would run an exited container again on a second start: refuse it, so
        // that a container runs at most once whatever its caller does.
        let state = self
            .docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.error("inspect container", e))?
            .state;
        let never_started = state
            .as_ref()
            .and_then(|s| s.status)
            .is_some_and(|status| status == ContainerStateStatusEnum::CREATED);
        if !never_started {
            return Err(RuntimeError::StartFailed {
                job,
                source: "the container was started before (or is not in the created state)".into(),
            });
        }
        if let Err(e) = self
            .docker
            .start_container(&id.0, None::<StartContainerOptions>)
            .await
        {
            self.remove_quietly(&id.0, job).await;
            return Err(match map_error(&self.endpoint, "start container", e) {
                RuntimeError::Engine { source, .. } => RuntimeError::StartFailed { job, source },
                other => other,
            });
        }
        tracing::debug!(%job, container = %id, "container started");
        Ok(())
    }

    fn logs(&self, id: &ContainerId) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let runtime = self.clone();
        let container = id.clone();
        follow_lines(self.docker.clone(), id.clone(), move |e| {
            runtime.container_error(&container, "logs", e)
        })
    }

    async fn usage(&self, id: &ContainerId) -> Result<ContainerUsage, RuntimeError> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(false)
            .build();
        let mut stream = self.docker.stats(&id.0, Some(options));
        match stream.next().await {
            Some(Ok(stats)) => Ok(usage_of(&stats)),
            Some(Err(e)) => Err(self.container_error(id, "stats", e)),
            None => Err(RuntimeError::Engine {
                operation: "stats",
                source: "the engine sent no sample".into(),
            }),
        }
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError> {
        loop {
            let options = WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build();
            let mut stream = self.docker.wait_container(&id.0, Some(options));
            match stream.next().await {
                // bollard reports a non-zero exit as an error; the code is read below either way.
                Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) | None => {}
                // The request timeout covers the response head, which some engine versions
                // send only when the container exits: check the state and wait again.
                Some(Err(BollardError::RequestTimeoutError)) => {}
                Some(Err(e)) => return Err(self.container_error(id, "wait", e)),
            }
            let inspect = self
                .docker
                .inspect_container(&id.0, None::<InspectContainerOptions>)
                .await
                .map_err(|e| self.container_error(id, "inspect container", e))?;
            let state = inspect.state.unwrap_or_default();
            if state.running == Some(true) {
                // Not exited after all (a dropped connection): never spin on the engine.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            return Ok(ExitStatus {
                code: state.exit_code.unwrap_or(-1),
                oom_killed: state.oom_killed.unwrap_or(false),
            });
        }
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        // Round up: a grace of 500 ms must not become an immediate kill.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let t = i32::try_from(secs).unwrap_or(i32::MAX);
        // The engine answers only once the container has stopped: allow the grace and more.
        let docker = self
            .docker
            .clone()
            .with_timeout(self.config.request_timeout + Duration::from_secs(secs));
        // 304 (already stopped) is a success for bollard.
        docker
            .stop_container(&id.0, Some(StopContainerOptionsBuilder::new().t(t).build()))
            .await
            .map_err(|e| self.container_error(id, "stop container", e))
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .link(false)
            .build();
        match self.docker.remove_container(&id.0, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            // Someone else is removing it already.
            Err(e) if is_status(&e, 409) && e.to_string().contains("in progress") => Ok(()),
            Err(e) => Err(self.error("remove container", e)),
        }
    }

    async fn list_owned(&self, executor: &ExecutorId) -> Result<Vec<OwnedContainer>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_EXECUTOR}={executor}")],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error("list containers", e))?;
        let mut owned = Vec::with_capacity(containers.len());
        for c in containers {
            let id = c.id.unwrap_or_default();
            let job = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_JOB_ID))
                .and_then(|j| j.parse::<JobId>().ok());
            match job {
                Some(job) => owned.push(OwnedContainer {
                    id: ContainerId(id),
                    job,
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                    started: c.state != Some(ContainerSummaryStateEnum::CREATED),
                }),
                None => {
                    tracing::warn!(container = %id, %executor, "owned container without a valid {LABEL_JOB_ID} label; skipped")
                }
            }
        }
        Ok(owned)
    }
}
