//! The connection to a Docker Engine API (Docker or `podman system service`): which socket, and a clear
//! one-line error when nothing answers there. Also where the alert files containers mount are written, and
//! where containers that outlived their runner are removed: a runner killed mid-alert cannot remove its
//! container, so a starting runner removes those of its own name ([`ContainerEngine::remove_left_by`]) and
//! every runner removes those past their deadline ([`ContainerEngine::remove_overdue`]).

use super::exit::ExitProbe;
use super::libpod::Libpod;
use super::short;
use super::{ContainerError, ContainerFunction};
use super::{DEADLINE_LABEL, FUNCTION_LABEL, RUNNER_LABEL};
use crate::model::function::Function;
use crate::model::limits::CONTAINER_CONNECT_TIMEOUT;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where riposte looks when neither `--container-host`, `RIPOSTE_CONTAINER_HOST` nor `DOCKER_HOST` is set:
/// Podman's root socket, then Docker's.
const DEFAULT_SOCKETS: [&str; 2] = ["/run/podman/podman.sock", "/var/run/docker.sock"];

/// A reachable container engine, shared by every container function of a runner.
#[derive(Clone)]
pub struct ContainerEngine {
    pub(crate) docker: Docker,
    pub(crate) host: Arc<str>,
    pub(crate) network: Arc<NetworkEnv>,
    pub(crate) exits: ExitProbe,
    /// The runner whose containers these are (label [`RUNNER_LABEL`]); `None` for one-off commands.
    pub(crate) runner: Option<Arc<str>>,
    /// Where alert files are written for the containers to mount (removed when the last clone goes).
    pub(crate) alert_dir: Arc<AlertDir>,
    /// Podman's own API, when the engine is Podman: containers are created there, with a deadline the engine
    /// enforces (see [`libpod`](super::libpod)).
    pub(crate) libpod: Option<Libpod>,
}

/// What a container with network gets from the runner: its proxy settings and CA bundle.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NetworkEnv {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` (and their lower-case forms) as the runner has them.
    pub proxy: Vec<(String, String)>,
    /// A PEM bundle mounted read-only into the container, named by `SSL_CERT_FILE` and friends.
    pub ca_bundle: Option<PathBuf>,
}

impl NetworkEnv {
    /// The runner's own proxy variables, and a CA bundle if one is configured.
    pub fn from_env(ca_bundle: Option<PathBuf>) -> NetworkEnv {
        let proxy = ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()).map(|v| ((*k).to_owned(), v)))
            .collect();
        NetworkEnv { proxy, ca_bundle }
    }
}

impl ContainerEngine {
    /// The engine address to use: `host` when given (a `--container-host` flag, which clap also fills from
    /// `RIPOSTE_CONTAINER_HOST`), else `DOCKER_HOST`, else the first of Podman's and Docker's default
    /// sockets that exists (Podman's when none does, so the error names it).
    pub fn resolve_host(host: Option<&str>) -> String {
        if let Some(h) = host.filter(|h| !h.is_empty()) {
            return h.to_owned();
        }
        for var in ["RIPOSTE_CONTAINER_HOST", "DOCKER_HOST"] {
            if let Ok(h) = std::env::var(var) {
                if !h.is_empty() {
                    return h;
                }
            }
        }
        let path = DEFAULT_SOCKETS.iter().find(|p| Path::new(p).exists()).unwrap_or(&DEFAULT_SOCKETS[0]);
        format!("unix://{path}")
    }

    /// Connects to the engine at `host` (see [`resolve_host`](Self::resolve_host)) and checks it answers.
    pub async fn connect(host: Option<&str>) -> Result<ContainerEngine, ContainerError> {
        Self::connect_with(host, NetworkEnv::from_env(None)).await
    }

    /// [`connect`](Self::connect), with the proxy and CA bundle given to containers that have network.
    pub async fn connect_with(host: Option<&str>, network: NetworkEnv) -> Result<ContainerEngine, ContainerError> {
        let host = Self::resolve_host(host);
        let unreachable = |why: String| ContainerError::Unreachable { host: host.clone(), why };
        let host_uri = if host.starts_with('/') { format!("unix://{host}") } else { host.clone() };
        let docker = Docker::connect_with_host(&host_uri).map_err(|e| unreachable(short(&e)))?;
        match tokio::time::timeout(CONTAINER_CONNECT_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(short(&e))),
            Err(_) => return Err(unreachable(format!("no answer in {:?}", CONTAINER_CONNECT_TIMEOUT))),
        }
        let exits = ExitProbe::for_host(&host_uri);
        let libpod = match exits.plain() {
            Some((client, base)) => Libpod::detect(client, base).await,
            None => None,
        };
        let alert_dir =
            AlertDir::create().map_err(|e| unreachable(format!("cannot create a directory for alert files: {e}")))?;
        Ok(ContainerEngine {
            docker,
            host: host.into(),
            network: Arc::new(network),
            exits,
            runner: None,
            alert_dir: Arc::new(alert_dir),
            libpod,
        })
    }

    /// The same engine, its containers labelled as started by runner `name`.
    pub fn for_runner(mut self, name: &str) -> ContainerEngine {
        self.runner = Some(name.into());
        self
    }

    /// Removes every container of runner `name` (label [`RUNNER_LABEL`]), running or not: called by a starting
    /// runner, they were left by an earlier run of it that was killed. Returns how many were removed.
    pub async fn remove_left_by(&self, name: &str) -> Result<usize, ContainerError> {
        self.remove_where(&format!("{RUNNER_LABEL}={name}"), |_| true).await
    }

    /// Removes every riposte container whose deadline (label [`DEADLINE_LABEL`]) passed more than
    /// `Timings::container_sweep_grace` ago, whichever runner started it. Returns how many were removed.
    pub async fn remove_overdue(&self) -> Result<usize, ContainerError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let cutoff = now.saturating_sub(crate::model::timings::get().container_sweep_grace).as_secs();
        self.remove_where(FUNCTION_LABEL, |labels| {
            labels.get(DEADLINE_LABEL).and_then(|d| d.parse::<u64>().ok()).is_some_and(|d| d < cutoff)
        })
        .await
    }

    async fn remove_where(
        &self,
        label: &str,
        pick: impl Fn(&HashMap<String, String>) -> bool,
    ) -> Result<usize, ContainerError> {
        let engine_error = |source| ContainerError::Engine { host: self.host.to_string(), source };
        let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let listed = self.docker.list_containers(Some(options)).await.map_err(engine_error)?;
        let mut removed = 0;
        for container in listed {
            let (Some(id), labels) = (container.id, container.labels.unwrap_or_default()) else { continue };
            if !labels.contains_key(FUNCTION_LABEL) || !pick(&labels) {
                continue;
            }
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            match self.docker.remove_container(&id, Some(options)).await {
                Ok(()) => {
                    let function = labels.get(FUNCTION_LABEL).map(String::as_str).unwrap_or_default();
                    tracing::warn!(container = %id, function, "removed a container left past its deadline or by an earlier run");
                    removed += 1;
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(engine_error(e)),
            }
        }
        Ok(removed)
    }

    /// Writes `raw` (an alert) to a file a container can mount read-only; it goes when the guard drops.
    pub(crate) fn alert_file(&self, name: &str, raw: &str) -> std::io::Result<AlertFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.alert_dir.0.join(format!("{name}.json"));
        // Readable by the container's user (65534, mapped by a user namespace): the alert is no secret.
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path)?;
        let guard = AlertFile(path);
        file.write_all(raw.as_bytes())?;
        Ok(guard)
    }

    /// Creates container `name` from `body` (see [`sandbox`](super::sandbox)) and returns its id. On Podman
    /// this goes through its own API, and the engine kills the container `deadline` after it starts whatever
    /// becomes of the runner (see [`libpod`](super::libpod)); elsewhere through the Docker API, where only the
    /// runners' sweep stands behind the deadline. The error is a few words.
    pub async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
        deadline: std::time::Duration,
    ) -> Result<String, String> {
        match &self.libpod {
            Some(libpod) => libpod.create(name, &body, deadline).await.map_err(|e| e.to_string()),
            None => {
                let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
                self.docker.create_container(Some(options), body).await.map(|c| c.id).map_err(|e| short(&e))
            }
        }
    }

    /// Whether the engine itself kills a container at its deadline, runner or not (Podman, through its own
    /// API); otherwise only the sweep of a runner does.
    pub fn enforces_deadlines(&self) -> bool {
        self.libpod.is_some()
    }

    /// The engine address in use.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The bollard client, for callers that need more than riposte does (tests, tools).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The handler that runs `function` (a container playbook; its artifact is the image) once per alert.
    pub fn function(&self, function: &Function) -> ContainerFunction {
        ContainerFunction::new(self.clone(), function)
    }
}

/// A per-engine directory for alert files, removed on drop: private name, traversable (0711) so a container's
/// unprivileged user reaches the file it is given, not listable.
#[derive(Debug)]
pub(crate) struct AlertDir(PathBuf);

impl AlertDir {
    fn create() -> std::io::Result<AlertDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("riposte-alerts-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o711).create(&path)?;
        Ok(AlertDir(path))
    }
}

impl Drop for AlertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An alert file, removed on drop.
pub(crate) struct AlertFile(PathBuf);

impl AlertFile {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for AlertFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
