//! Podman's own API (libpod), for the one thing Docker's API cannot say: a deadline the engine enforces.
//!
//! A runner kills its container at the function's timeout, but a runner killed outright (SIGKILL, OOM, a lost
//! machine) kills nothing, and until another runner sweeps it (see [`engine`](super::engine)) the container
//! keeps running. Podman can hold the deadline itself: a container created with `timeout` (what
//! `podman run --timeout` sets) is killed by its conmon, the small process that watches it, whether or not
//! any runner or even the Podman service is still there. Docker's container-create body has no such field, and
//! Podman's Docker-compatible endpoint ignores it, so on Podman riposte creates containers through
//! `POST /libpod/containers/create`, whose body (a `SpecGenerator`) is [`spec`]: the hardened Docker body of
//! [`sandbox`](super::sandbox), translated field by field. Every other call (attach, start, logs, remove) stays
//! on the Docker API; Docker itself has only the sweep.
//!
//! The translation fails closed: a field of the Docker body it does not know is an error, never dropped, so a
//! hardening setting added to the sandbox cannot silently go missing on Podman.

use bollard::models::ContainerCreateBody;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The fields of the Docker create body that [`spec`] translates (top level, then `HostConfig`). The attach
/// flags and `StdinOnce` have no libpod counterpart (Podman's Docker endpoint ignores them as well): stdin is
/// `stdin`, and it ends when riposte closes its side of the attach.
const TRANSLATED: &[&str] = &[
    "Image",
    "Entrypoint",
    "Cmd",
    "User",
    "Env",
    "Labels",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "OpenStdin",
    "StdinOnce",
    "Tty",
    "NetworkDisabled",
    "HostConfig",
];
const TRANSLATED_HOST: &[&str] = &[
    "Privileged",
    "CapDrop",
    "SecurityOpt",
    "ReadonlyRootfs",
    "Tmpfs",
    "NetworkMode",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "PidsLimit",
    "Binds",
];

/// Podman's API on a plain-HTTP transport (a Unix socket or `tcp://` without TLS).
#[derive(Clone)]
pub(crate) struct Libpod {
    client: reqwest::Client,
    base: String,
}

/// Why a container could not be created through libpod.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LibpodError {
    #[error("the sandbox sets {0}, which riposte cannot translate for Podman's API")]
    Untranslated(String),
    #[error("{0}")]
    Request(String),
}

impl Libpod {
    /// Podman's API behind `client` and `base` (as the exit probe reaches the engine), when the engine is
    /// Podman: its `/libpod/_ping` answers (Docker says 404).
    pub(crate) async fn detect(client: &reqwest::Client, base: &str) -> Option<Libpod> {
        let ping = client.get(format!("{base}/libpod/_ping")).timeout(Duration::from_secs(3)).send().await.ok()?;
        ping.status().is_success().then(|| Libpod { client: client.clone(), base: base.to_owned() })
    }

    /// Creates container `name` from the Docker body `body`, killed by the engine `timeout` after it starts;
    /// returns its id.
    pub(crate) async fn create(
        &self,
        name: &str,
        body: &ContainerCreateBody,
        timeout: Duration,
    ) -> Result<String, LibpodError> {
        let spec = spec(name, body, timeout)?;
        let reply = self
            .client
            .post(format!("{}/v4.0.0/libpod/containers/create", self.base))
            .json(&spec)
            .send()
            .await
            .map_err(|e| LibpodError::Request(e.without_url().to_string()))?;
        let status = reply.status();
        let answer: Value = reply.json().await.map_err(|e| LibpodError::Request(e.without_url().to_string()))?;
        match answer.get("Id").and_then(Value::as_str) {
            Some(id) if status.is_success() => Ok(id.to_owned()),
            _ => {
                let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
                Err(LibpodError::Request(format!("{}: {}", status.as_u16(), message.trim())))
            }
        }
    }
}

/// The engine's timeout for a function's `timeout`: whole seconds (what Podman takes), rounded up, plus one,
/// so that a live runner always kills first (and reports a timeout) and the engine only acts without it.
pub fn engine_timeout(timeout: Duration) -> Duration {
    Duration::from_secs(timeout.as_millis().div_ceil(1000) as u64 + 1)
}

/// The libpod `SpecGenerator` of container `name`: the Docker create body `body` (see
/// [`sandbox::create_body`](super::sandbox::create_body)) with `timeout` (whole seconds, rounded up) as the
/// deadline the engine enforces.
pub(crate) fn spec(name: &str, body: &ContainerCreateBody, timeout: Duration) -> Result<Value, LibpodError> {
    let docker = serde_json::to_value(body).map_err(|e| LibpodError::Request(e.to_string()))?;
    let host = docker.get("HostConfig").cloned().unwrap_or(Value::Null);
    check_translated(&docker, TRANSLATED, "")?;
    check_translated(&host, TRANSLATED_HOST, "HostConfig.")?;
    let hc = body.host_config.clone().unwrap_or_default();

    let mut spec = Map::new();
    spec.insert("name".into(), json!(name));
    spec.insert("image".into(), json!(body.image));
    if let Some(entrypoint) = &body.entrypoint {
        spec.insert("entrypoint".into(), json!(entrypoint));
    }
    if let Some(cmd) = &body.cmd {
        spec.insert("command".into(), json!(cmd));
    }
    if let Some(user) = &body.user {
        spec.insert("user".into(), json!(user));
    }
    let env: Map<String, Value> = body
        .env
        .iter()
        .flatten()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), json!(v)),
            None => (kv.clone(), json!("")),
        })
        .collect();
    spec.insert("env".into(), Value::Object(env));
    spec.insert("labels".into(), json!(body.labels.clone().unwrap_or_default()));
    spec.insert("stdin".into(), json!(body.open_stdin.unwrap_or(false)));
    spec.insert("terminal".into(), json!(body.tty.unwrap_or(false)));
    spec.insert("timeout".into(), json!(timeout.as_millis().div_ceil(1000) as u64));

    spec.insert("privileged".into(), json!(hc.privileged.unwrap_or(false)));
    spec.insert("cap_drop".into(), json!(hc.cap_drop.clone().unwrap_or_default()));
    for opt in hc.security_opt.iter().flatten() {
        match opt.as_str() {
            "no-new-privileges" | "no-new-privileges:true" => {
                spec.insert("no_new_privileges".into(), json!(true));
            }
            other => return Err(LibpodError::Untranslated(format!("HostConfig.SecurityOpt {other:?}"))),
        }
    }
    spec.insert("read_only_filesystem".into(), json!(hc.readonly_rootfs.unwrap_or(false)));
    let nsmode = match (hc.network_mode.as_deref(), body.network_disabled) {
        (Some("none"), _) | (_, Some(true)) => "none",
        (Some("bridge"), _) => "bridge",
        (other, _) => return Err(LibpodError::Untranslated(format!("HostConfig.NetworkMode {other:?}"))),
    };
    spec.insert("netns".into(), json!({ "nsmode": nsmode }));

    let mut limits = Map::new();
    if hc.memory.is_some() || hc.memory_swap.is_some() {
        limits.insert("memory".into(), json!({ "limit": hc.memory, "swap": hc.memory_swap }));
    }
    if let Some(pids) = hc.pids_limit {
        limits.insert("pids".into(), json!({ "limit": pids }));
    }
    if let Some(nano) = hc.nano_cpus {
        // What Podman's own Docker endpoint does with NanoCpus.
        limits.insert("cpu".into(), json!({ "quota": nano / 10_000, "period": 100_000 }));
    }
    spec.insert("resource_limits".into(), Value::Object(limits));

    let mut mounts = Vec::new();
    for (path, options) in hc.tmpfs.iter().flatten() {
        let options: Vec<&str> = options.split(',').filter(|o| !o.is_empty()).collect();
        mounts.push(json!({ "destination": path, "type": "tmpfs", "source": "tmpfs", "options": options }));
    }
    for bind in hc.binds.iter().flatten() {
        let parts: Vec<&str> = bind.split(':').collect();
        let (source, destination, options) = match parts[..] {
            [source, destination] => (source, destination, ""),
            [source, destination, options] => (source, destination, options),
            _ => return Err(LibpodError::Untranslated(format!("HostConfig.Binds {bind:?}"))),
        };
        let mut options: Vec<&str> = options.split(',').filter(|o| !o.is_empty()).collect();
        options.push("rbind");
        mounts.push(json!({ "destination": destination, "type": "bind", "source": source, "options": options }));
    }
    spec.insert("mounts".into(), json!(mounts));
    Ok(Value::Object(spec))
}

/// Fails on a field set in `object` that is not in `known`.
fn check_translated(object: &Value, known: &[&str], prefix: &str) -> Result<(), LibpodError> {
    for (key, value) in object.as_object().into_iter().flatten() {
        if !value.is_null() && !known.contains(&key.as_str()) {
            return Err(LibpodError::Untranslated(format!("{prefix}{key}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::HostConfig;
    use std::collections::HashMap;

    fn body() -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some("localhost/x:1".into()),
            cmd: Some(vec!["sleep 1".into()]),
            user: Some("65534:65534".into()),
            env: Some(vec!["A=b=c".into(), "HOME=/tmp".into()]),
            labels: Some(HashMap::from([("riposte.function".into(), "f".into())])),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([("/tmp".into(), "rw,nosuid,nodev,size=64m".into())])),
                network_mode: Some("none".into()),
                memory: Some(32 << 20),
                memory_swap: Some(32 << 20),
                nano_cpus: Some(500_000_000),
                pids_limit: Some(64),
                binds: Some(vec!["/h/a.json:/run/riposte/alert.json:ro".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_hardening_setting_is_translated_and_the_timeout_added() {
        let s = spec("riposte-f-1", &body(), Duration::from_millis(2500)).unwrap();
        assert_eq!(s["name"], "riposte-f-1");
        assert_eq!(s["image"], "localhost/x:1");
        assert_eq!(s["command"], json!(["sleep 1"]));
        assert_eq!(s["user"], "65534:65534");
        assert_eq!(s["env"], json!({"A": "b=c", "HOME": "/tmp"}));
        assert_eq!(s["labels"], json!({"riposte.function": "f"}));
        assert_eq!((s["stdin"].as_bool(), s["terminal"].as_bool()), (Some(true), Some(false)));
        assert_eq!(s["timeout"], 3, "whole seconds, rounded up");
        assert_eq!(s["privileged"], false);
        assert_eq!(s["cap_drop"], json!(["ALL"]));
        assert_eq!(s["no_new_privileges"], true);
        assert_eq!(s["read_only_filesystem"], true);
        assert_eq!(s["netns"], json!({"nsmode": "none"}));
        assert_eq!(s["resource_limits"]["memory"], json!({"limit": 32 << 20, "swap": 32 << 20}));
        assert_eq!(s["resource_limits"]["pids"], json!({"limit": 64}));
        assert_eq!(s["resource_limits"]["cpu"], json!({"quota": 50_000, "period": 100_000}));
        assert_eq!(
            s["mounts"],
            json!([
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "nosuid", "nodev", "size=64m"]},
                {"destination": "/run/riposte/alert.json", "type": "bind", "source": "/h/a.json", "options": ["ro", "rbind"]},
            ])
        );
        let mut bridge = body();
        bridge.network_disabled = Some(false);
        bridge.host_config.as_mut().unwrap().network_mode = Some("bridge".into());
        assert_eq!(spec("n", &bridge, Duration::from_secs(1)).unwrap()["netns"], json!({"nsmode": "bridge"}));
        assert_eq!(engine_timeout(Duration::from_millis(2500)), Duration::from_secs(4));
        assert_eq!(engine_timeout(Duration::from_millis(3000)), Duration::from_secs(4));
    }

    #[test]
    fn a_setting_it_cannot_translate_is_an_error_never_dropped() {
        let mut more = body();
        more.host_config.as_mut().unwrap().cap_add = Some(vec!["NET_ADMIN".into()]);
        let err = spec("n", &more, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("HostConfig.CapAdd"), "{err}");
        let mut more = body();
        more.working_dir = Some("/x".into());
        more.entrypoint = Some(vec!["/probe".into()]);
        assert!(spec("n", &more, Duration::from_secs(1)).unwrap_err().to_string().contains("WorkingDir"));
        let mut more = body();
        more.host_config.as_mut().unwrap().security_opt = Some(vec!["seccomp=unconfined".into()]);
        assert!(spec("n", &more, Duration::from_secs(1)).is_err());
        let mut more = body();
        more.host_config.as_mut().unwrap().network_mode = Some("host".into());
        more.network_disabled = Some(false);
        assert!(spec("n", &more, Duration::from_secs(1)).is_err());
    }
}
