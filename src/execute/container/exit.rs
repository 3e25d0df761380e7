//! When a container action has ended, and how: its exit code and whether the kernel killed it for memory.
//!
//! Podman marks a container `stopped` the moment its process exits (exit code known) and `exited` only after
//! its cleanup (network torn down), 100–300 ms later; its wait endpoint polls every 250 ms and answers at
//! `exited`. Waiting for either would add that to every alert, so riposte polls the inspect endpoint itself,
//! briefly at first, and takes `stopped` as the end. bollard's typed model has no `stopped` state (Docker has
//! none), so on a plain-HTTP engine (a Unix socket or `tcp://` without TLS) the inspect answer is read as
//! plain JSON; elsewhere bollard's typed inspect is used, which sees `exited` as Docker reports it.

use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use std::time::Duration;

/// First pause between two looks at a running container; it grows by half each time up to `POLL_MAX`.
const POLL_FIRST: Duration = Duration::from_millis(5);
/// Longest pause between two looks: a long action is looked at four times a second.
const POLL_MAX: Duration = Duration::from_millis(250);

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub code: i64,
    pub oom_killed: bool,
}

/// Reads a container's state from the engine.
#[derive(Clone)]
pub(crate) enum ExitProbe {
    /// Inspect answers read as plain JSON over the engine's plain-HTTP transport.
    Plain { client: reqwest::Client, base: String },
    /// bollard's typed inspect (TLS and SSH engines).
    Typed,
}

/// Why the state could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExitError {
    #[error("{}", super::short(.0))]
    Engine(#[from] bollard::errors::Error),
    #[error("inspecting the container: {0}")]
    Plain(String),
}

impl ExitProbe {
    /// The probe for the engine at `host` (a `unix://`, `tcp://`, `http://`… address, as bollard takes it).
    pub fn for_host(host: &str) -> ExitProbe {
        let plain = |builder: reqwest::ClientBuilder, base: String| match builder.build() {
            Ok(client) => ExitProbe::Plain { client, base },
            Err(_) => ExitProbe::Typed,
        };
        let builder = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30));
        if let Some(path) = host.strip_prefix("unix://") {
            #[cfg(unix)]
            return plain(builder.unix_socket(path), "http://engine".to_owned());
        }
        let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some();
        match host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
            Some(addr) if !tls => plain(builder, format!("http://{}", addr.trim_end_matches('/'))),
            _ => ExitProbe::Typed,
        }
    }

    /// The plain-HTTP client and base address of the engine, when it is reached that way.
    pub(crate) fn plain(&self) -> Option<(&reqwest::Client, &str)> {
        match self {
            ExitProbe::Plain { client, base } => Some((client, base)),
            ExitProbe::Typed => None,
        }
    }

    /// Waits until the container has ended and says how (polling; the caller bounds the time).
    pub async fn ended(&self, docker: &Docker, id: &str) -> Result<Exit, ExitError> {
        let mut pause = POLL_FIRST;
        loop {
            if let Some(exit) = self.look(docker, id).await? {
                return Ok(exit);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 3 / 2).min(POLL_MAX);
        }
    }

    /// The exit, when the container has ended.
    async fn look(&self, docker: &Docker, id: &str) -> Result<Option<Exit>, ExitError> {
        match self {
            ExitProbe::Plain { client, base } => {
                let reply = client
                    .get(format!("{base}/containers/{id}/json"))
                    .send()
                    .await
                    .map_err(|e| ExitError::Plain(e.without_url().to_string()))?;
                let status = reply.status();
                let body: serde_json::Value =
                    reply.json().await.map_err(|e| ExitError::Plain(e.without_url().to_string()))?;
                if !status.is_success() {
                    let message = body.get("message").and_then(|m| m.as_str()).unwrap_or_default();
                    if racing_the_exit(status.as_u16(), message) {
                        return Ok(None);
                    }
                    return Err(ExitError::Plain(format!("{}: {message}", status.as_u16())));
                }
                Ok(plain_exit(&body["State"]))
            }
            ExitProbe::Typed => {
                let state =
                    docker.inspect_container(id, None::<InspectContainerOptions>).await?.state.unwrap_or_default();
                let ended =
                    matches!(state.status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD));
                Ok(ended.then(|| Exit {
                    code: state.exit_code.unwrap_or(-1),
                    oom_killed: state.oom_killed.unwrap_or(false),
                }))
            }
        }
    }
}

/// Podman answers an inspect made while the container's process is exiting with a 500 "read /proc/<pid>/cgroup:
/// no such process": the state is about to be known, so the container is looked at again (the caller bounds
/// the time), not reported as an engine failure.
fn racing_the_exit(status: u16, message: &str) -> bool {
    status == 500 && message.contains("/cgroup: no such process")
}

/// The exit in an inspect answer's `State`, when it says the container has ended (`stopped` is Podman's word
/// for a container whose process exited and whose cleanup has not run yet).
fn plain_exit(state: &serde_json::Value) -> Option<Exit> {
    let status = state.get("Status").and_then(|s| s.as_str())?;
    matches!(status, "exited" | "dead" | "stopped").then(|| Exit {
        code: state.get("ExitCode").and_then(serde_json::Value::as_i64).unwrap_or(-1),
        oom_killed: state.get("OOMKilled").and_then(serde_json::Value::as_bool).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn podmans_answer_while_the_process_exits_is_looked_at_again_other_errors_are_not() {
        assert!(racing_the_exit(500, "read /proc/7996/cgroup: no such process"));
        assert!(!racing_the_exit(500, "no such container"));
        assert!(!racing_the_exit(404, "read /proc/7996/cgroup: no such process"));
    }

    #[test]
    fn stopped_exited_and_dead_are_ends_running_is_not() {
        assert_eq!(
            plain_exit(&json!({"Status": "stopped", "ExitCode": 65})),
            Some(Exit { code: 65, oom_killed: false })
        );
        assert_eq!(
            plain_exit(&json!({"Status": "exited", "ExitCode": 137, "OOMKilled": true})),
            Some(Exit { code: 137, oom_killed: true })
        );
        assert_eq!(plain_exit(&json!({"Status": "dead"})), Some(Exit { code: -1, oom_killed: false }));
        assert_eq!(plain_exit(&json!({"Status": "running", "ExitCode": 0})), None);
        assert_eq!(plain_exit(&json!({"Status": "created"})), None);
        assert_eq!(plain_exit(&json!({})), None);
    }

    #[test]
    fn plain_http_engines_are_read_as_json_others_through_bollard() {
        assert!(matches!(ExitProbe::for_host("unix:///run/podman/podman.sock"), ExitProbe::Plain { .. }));
        match ExitProbe::for_host("tcp://10.0.0.1:2375/") {
            ExitProbe::Plain { base, .. } => assert_eq!(base, "http://10.0.0.1:2375"),
            ExitProbe::Typed => assert!(std::env::var_os("DOCKER_TLS_VERIFY").is_some()),
        }
        assert!(matches!(ExitProbe::for_host("https://10.0.0.1:2376"), ExitProbe::Typed));
        assert!(matches!(ExitProbe::for_host("ssh://user@host"), ExitProbe::Typed));
    }
}
