//! One alert, one container: create it, attach, start, feed the alert on stdin, wait for the end of its
//! process (see [`exit`](super::exit)), collect stdout and stderr, and remove it — also when the deadline
//! passes (the removal kills it), when the engine fails, and when the caller drops the future. The alert is also
//! written to a file the container mounts read-only. A runner killed outright cannot remove anything: its
//! containers carry its name and their deadline, and the engine module removes them (see
//! [`engine`](super::engine)); on Podman the engine also kills them at their deadline (see
//! [`libpod`](super::libpod)).

use super::engine::ContainerEngine;
use super::exit::ExitError;
use super::libpod::engine_timeout;
use super::outcome::{self, Ended};
use super::sandbox;
use super::short;
use crate::model::alert::Alert;
use crate::model::execution::{Execution, Handler, Status};
use crate::model::function::Function;
use crate::model::limits::{CONTAINER_STDOUT_BYTES, GUEST_OUTPUT_BYTES};
use crate::secrets::redact::Secrets;
use bollard::container::LogOutput;
use bollard::query_parameters::{AttachContainerOptions, LogsOptions, RemoveContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// A container function, ready to run alerts.
pub struct ContainerFunction {
    engine: ContainerEngine,
    function: Function,
    image: String,
    secrets: Secrets,
}

impl ContainerFunction {
    pub(crate) fn new(engine: ContainerEngine, function: &Function) -> ContainerFunction {
        let image = if function.artifact.is_empty() {
            function.manifest.container.as_ref().map(|c| c.image.clone()).unwrap_or_default()
        } else {
            function.artifact.clone()
        };
        let secrets = function.settings.secrets(&function.manifest);
        ContainerFunction { engine, function: function.clone(), image, secrets }
    }

    /// The image it runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Feeds the alert on stdin, waits for the exit, then reads stdout and stderr from the engine's log of the
    /// container. (Reading them from the attach stream loses the output of a container that exits at once:
    /// Podman resets the attach socket and writes its own error into the stream.)
    async fn run(&self, alert: &Alert, id: &str) -> Result<Ended, ExitError> {
        let docker = &self.engine.docker;
        // Attach, then start, one after the other: stdin is ours from the container's first instruction.
        // (Podman 4 records exit code 0 for a container that exited before a stdin attach, and refuses an
        // attach that a concurrent start overtakes, so neither ordering trick is safe.)
        let attach = AttachContainerOptions { stdin: true, stream: true, ..Default::default() };
        let mut io = docker.attach_container(id, Some(attach)).await?;
        docker.start_container(id, None).await?;
        // A container that exits without reading its stdin is not an error.
        let _ = io.input.write_all(alert.raw.as_bytes()).await;
        let _ = io.input.shutdown().await;
        let exit = self.engine.exits.ended(docker, id).await?;
        drop(io);
        let options = LogsOptions { stdout: true, stderr: true, tail: "all".into(), ..Default::default() };
        let mut logs = docker.logs(id, Some(options));
        // Each kept beyond its bound by the longest secret: the cut, made after redaction, splits none.
        let margin = self.secrets.longest();
        let (mut stdout, mut stderr, mut stdout_bytes) = (Vec::new(), Vec::new(), 0);
        while let Some(frame) = logs.next().await {
            match frame? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout_bytes += message.len();
                    let room = (CONTAINER_STDOUT_BYTES + margin).saturating_sub(stdout.len());
                    stdout.extend_from_slice(&message[..message.len().min(room)]);
                }
                LogOutput::StdErr { message } => {
                    stderr.extend_from_slice(&message);
                    if stderr.len() > GUEST_OUTPUT_BYTES + margin {
                        stderr.drain(..stderr.len() - GUEST_OUTPUT_BYTES - margin);
                    }
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        let truncated = stdout_bytes > CONTAINER_STDOUT_BYTES;
        Ok(Ended { exit_code: exit.code, oom_killed: exit.oom_killed, stdout, stderr, truncated })
    }
}

#[async_trait::async_trait]
impl Handler for ContainerFunction {
    fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    async fn react(&self, alert: &Alert) -> Execution {
        let started = Instant::now();
        let docker = &self.engine.docker;
        let limits = &self.function.manifest.limits;
        let name = format!("riposte-{}-{}", self.function.name, uuid::Uuid::new_v4().simple());
        let alert_file = match self.engine.alert_file(&name, &alert.raw) {
            Ok(file) => file,
            Err(e) => {
                return Execution::refused(
                    Status::Failed,
                    format!("cannot write the alert file for a container of {}: {e}", self.image),
                )
            }
        };
        let deadline = std::time::SystemTime::now() + limits.timeout();
        let run = sandbox::Run {
            alert_file: Some(alert_file.path()),
            runner: self.engine.runner.as_deref(),
            deadline_unix: deadline.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() + 1).unwrap_or(0),
        };
        let body = sandbox::create_body(&self.function, &self.image, alert, &self.engine.network, &run);
        // On Podman the engine holds the deadline too, in case this runner is killed before it can.
        let id = match self.engine.create_container(&name, body, engine_timeout(limits.timeout())).await {
            Ok(id) => id,
            Err(e) => {
                let why = self.secrets.redact(&e);
                return Execution::refused(
                    Status::Failed,
                    format!("cannot create a container of {} on {}: {why}", self.image, self.engine.host),
                );
            }
        };
        let created_us = started.elapsed().as_micros() as u64;
        let mut removal = Removal { docker: docker.clone(), id: Some(id.clone()) };
        let mut exec = match tokio::time::timeout(limits.timeout(), self.run(alert, &id)).await {
            Ok(Ok(ended)) => outcome::execution(&ended, limits.memory_mb, &self.secrets),
            Ok(Err(e)) => Execution::refused(
                Status::Failed,
                format!("container engine failed running {}: {}", self.image, self.secrets.redact(&e.to_string())),
            ),
            Err(_) => Execution::refused(
                Status::Timeout,
                format!("killed at the deadline of {} ms (limits.timeout_ms)", limits.timeout_ms),
            ),
        };
        if let Err(e) = removal.now().await {
            tracing::warn!(function = %self.function.name, container = %id, "cannot remove container: {}", short(&e));
        }
        drop(alert_file);
        exec.instantiate_us = created_us;
        exec.duration_us = started.elapsed().as_micros() as u64;
        exec
    }
}

/// Removes (and so kills) a container: now, or in the background if the future running it is dropped first.
struct Removal {
    docker: Docker,
    id: Option<String>,
}

impl Removal {
    async fn now(&mut self) -> Result<(), bollard::errors::Error> {
        match self.id.take() {
            Some(id) => remove(&self.docker, &id).await,
            None => Ok(()),
        }
    }
}

async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    match docker.remove_container(id, Some(options)).await {
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        other => other,
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let docker = self.docker.clone();
            rt.spawn(async move {
                if let Err(e) = remove(&docker, &id).await {
                    tracing::warn!(container = %id, "cannot remove container: {}", short(&e));
                }
            });
        }
    }
}
