//! Container actions: playbooks that are container images, run once per alert through the Docker Engine API
//! (Docker or Podman, with `bollard`). A container action gets the same settings and limits as a WASM playbook:
//! settings as environment variables, the alert on stdin, in a read-only file (`FALCO_ALERT_FILE`) and, when
//! small, in `FALCO_ALERT`; its stdout as the output.
//!
//! - [`engine`]: the connection to the engine, and where "no engine reachable" is explained.
//! - [`image`]: making sure the image exists, built from the playbook's Containerfile when it does not.
//! - [`sandbox`]: what a container may do (no privileges, no capabilities, read-only root, no network, limits).
//! - [`action`]: one alert, one container: create, feed, wait, kill at the deadline, always remove.
//! - [`libpod`]: on Podman, containers are created through its own API so that the engine holds the deadline
//!   even when no runner is left.
//! - [`exit`](self::exit): when a container has ended, and its exit code (fast: Podman's `stopped` counts).
//! - [`outcome`]: exit code, stdout and stderr → an [`Execution`](crate::model::execution::Execution).

pub mod action;
pub mod engine;
mod exit;
pub mod image;
mod libpod;
pub mod outcome;
pub mod sandbox;

pub use action::ContainerFunction;
pub use engine::ContainerEngine;

/// The label every container riposte creates carries, with the function's name as its value: list them with
/// `podman ps -a --filter label=riposte.function`.
pub const FUNCTION_LABEL: &str = "riposte.function";
/// The label naming the runner that started a container: a starting runner removes the ones of its own name
/// left by an earlier run (killed before it could remove them).
pub const RUNNER_LABEL: &str = "riposte.runner";
/// The label holding a container's deadline (seconds since the epoch): past it (and
/// [`Timings::container_sweep_grace`](crate::model::timings::Timings::container_sweep_grace)), any runner on the engine removes it.
pub const DEADLINE_LABEL: &str = "riposte.deadline";

/// Why the container engine could not be used (running one alert never fails this way: it becomes an
/// [`Execution`](crate::model::execution::Execution)).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(
        "no container engine at {host} ({why}): start one with `podman system service --time=0 unix:///run/podman/podman.sock` (or point --container-host / DOCKER_HOST at Docker's socket)"
    )]
    Unreachable { host: String, why: String },
    #[error("container engine at {host}: {source}")]
    Engine { host: String, source: bollard::errors::Error },
    #[error("image {image} is not in the container engine and playbook {playbook} has no containerfile to build it: pull or build it first")]
    NoImage { image: String, playbook: String },
    #[error("building image {image} from {containerfile} failed: {why}")]
    Build { image: String, containerfile: String, why: String },
    #[error("playbook {0} is not a container playbook (kind = \"container\" with a [container] section)")]
    NotContainer(String),
    #[error(
        "playbook {playbook}: [container] context {name} = {path:?} is outside the playbook folder ({real}), nothing built: to put that host file into the image, pass --context-allow {allow} (or set RIPOSTE_CONTEXT_ALLOW)"
    )]
    ContextOutside { playbook: String, name: String, path: String, real: String, allow: String },
    #[error("playbook {playbook}: [container] context {name} = {path:?}: {why}")]
    ContextFile { playbook: String, name: String, path: String, why: String },
    /// The playbook's folder holds what riposte does not read (a link, a device, a file over its bound).
    #[error(transparent)]
    Folder(#[from] crate::model::manifest::folder::FolderError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An engine error in a few words (bollard's `Display` can carry a whole HTTP body).
pub(crate) fn short(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::SocketNotFoundError(path) => format!("socket {path} does not exist"),
        E::DockerResponseServerError { status_code, message } => format!("{status_code}: {}", message.trim()),
        other => {
            let text = other.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(other);
            let mut last = None;
            while let Some(s) = src {
                last = Some(s.to_string());
                src = s.source();
            }
            match last {
                Some(root) if !text.contains(&root) => format!("{text}: {root}"),
                _ => text,
            }
        }
    }
}
