//! The connection to a Docker Engine API (Docker or `podman system service`): which socket, and a clear
//! one-line error when nothing answers there.

use super::exit::ExitProbe;
use super::short;
use super::{ContainerError, ContainerFunction};
use crate::function::Function;
use crate::limits::CONTAINER_CONNECT_TIMEOUT;
use bollard::Docker;
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
        Ok(ContainerEngine { docker, host: host.into(), network: Arc::new(network), exits })
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
