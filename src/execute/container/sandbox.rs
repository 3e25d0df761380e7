//! What a container action may do, in one place: no privileges, every capability dropped, no new privileges,
//! a read-only root filesystem with a small `/tmp`, no network unless the manifest allows it, and the
//! function's memory, CPU and process limits, and an unprivileged user (65534:65534) unless the manifest names
//! another (`[container] user = "root"` asks for root explicitly). Settings become environment variables; the
//! alert comes on stdin, in a read-only file named by `FALCO_ALERT_FILE` and, when small, in `FALCO_ALERT`.
//! Labels name the function, the runner and the deadline, so that a container outliving its runner is found
//! and removed (see [`engine`](super::engine)).

use super::engine::NetworkEnv;
use super::{DEADLINE_LABEL, FUNCTION_LABEL, RUNNER_LABEL};
use crate::model::alert::Alert;
use crate::model::function::Function;
use crate::model::limits::{CONTAINER_ENV_ALERT_BYTES, CONTAINER_PIDS, CONTAINER_TMPFS_MB};
use bollard::models::{ContainerCreateBody, HostConfig};
use std::collections::HashMap;
use std::path::Path;

/// Where the runner's CA bundle appears inside a container with network.
pub const CA_BUNDLE_PATH: &str = "/etc/riposte/ca-bundle.pem";
/// Where the alert appears inside every container (read-only), named by `FALCO_ALERT_FILE`.
pub const ALERT_PATH: &str = "/run/riposte/alert.json";
/// The user a container runs as unless its manifest names another (`[container] user`).
pub const UNPRIVILEGED_USER: &str = "65534:65534";

/// What one run adds to a function's container: where the alert file is, and its labels.
#[derive(Debug, Clone, Default)]
pub struct Run<'a> {
    /// The host file holding the alert, mounted read-only at [`ALERT_PATH`].
    pub alert_file: Option<&'a Path>,
    /// The runner that starts it (label [`RUNNER_LABEL`]).
    pub runner: Option<&'a str>,
    /// When it must be gone, in seconds since the epoch (label [`DEADLINE_LABEL`]).
    pub deadline_unix: u64,
}

/// The user a container of `function` runs as: its manifest's `[container] user` (`"root"` as `0:0`, which
/// needs no passwd file in the image), else [`UNPRIVILEGED_USER`].
pub fn user(function: &Function) -> String {
    match function.manifest.container.as_ref().and_then(|c| c.user.as_deref()) {
        Some("root") => "0:0".to_owned(),
        Some(user) => user.to_owned(),
        None => UNPRIVILEGED_USER.to_owned(),
    }
}

/// The container for one alert of `function`, running `image`.
pub fn create_body(
    function: &Function,
    image: &str,
    alert: &Alert,
    network: &NetworkEnv,
    run: &Run<'_>,
) -> ContainerCreateBody {
    let section = function.manifest.container.clone().unwrap_or_default();
    let limits = &function.manifest.limits;
    let memory = i64::try_from(limits.memory_bytes()).unwrap_or(i64::MAX);

    let mut env: Vec<String> = function.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if alert.raw.len() <= CONTAINER_ENV_ALERT_BYTES {
        env.push(format!("FALCO_ALERT={}", alert.raw));
    }
    env.push("HOME=/tmp".to_owned());
    let mut binds = Vec::new();
    if let Some(file) = run.alert_file {
        binds.push(format!("{}:{ALERT_PATH}:ro", file.display()));
        env.push(format!("FALCO_ALERT_FILE={ALERT_PATH}"));
    }
    if section.network {
        env.extend(network.proxy.iter().map(|(k, v)| format!("{k}={v}")));
        if let Some(ca) = &network.ca_bundle {
            binds.push(format!("{}:{CA_BUNDLE_PATH}:ro", ca.display()));
            for var in ["SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"]
            {
                env.push(format!("{var}={CA_BUNDLE_PATH}"));
            }
        }
    }

    let host_config = HostConfig {
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([("/tmp".to_owned(), format!("rw,nosuid,nodev,size={}m", CONTAINER_TMPFS_MB))])),
        network_mode: Some(if section.network { "bridge" } else { "none" }.to_owned()),
        memory: Some(memory),
        // Equal to memory: no swap, so going over the limit is an OOM kill rather than a slow crawl.
        memory_swap: Some(memory),
        nano_cpus: section.cpus.map(|c| (c * 1e9) as i64),
        pids_limit: Some(section.pids.unwrap_or(CONTAINER_PIDS)),
        binds: (!binds.is_empty()).then_some(binds),
        ..Default::default()
    };

    let mut labels = HashMap::from([
        (FUNCTION_LABEL.to_owned(), function.name.clone()),
        (DEADLINE_LABEL.to_owned(), run.deadline_unix.to_string()),
    ]);
    if let Some(runner) = run.runner {
        labels.insert(RUNNER_LABEL.to_owned(), runner.to_owned());
    }

    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: (!section.command.is_empty()).then(|| section.command.clone()),
        user: Some(user(function)),
        env: Some(env),
        labels: Some(labels),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(!section.network),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::function::Settings;
    use crate::model::manifest::Manifest;

    fn function(network: bool) -> Function {
        let manifest = Manifest::parse(&format!(
            "name = \"hook\"\nkind = \"container\"\n[limits]\nmemory_mb = 32\n[container]\nimage = \"localhost/x:1\"\nnetwork = {network}\ncpus = 0.5\n"
        ))
        .unwrap();
        Function {
            name: "falco-hook".into(),
            manifest,
            artifact: "localhost/x:1".into(),
            settings: Settings::from_pairs([("URL".to_owned(), "http://h/x".to_owned())]),
            runs_on: None,
            policy: Default::default(),
        }
    }

    fn alert() -> Alert {
        Alert::parse(
            br#"{"output":"o","priority":"Notice","rule":"R","time":"2024-01-01T00:00:00Z","output_fields":{}}"#,
        )
        .unwrap()
    }

    #[test]
    fn no_privileges_no_network_limits_and_settings_as_env() {
        let net = NetworkEnv { proxy: vec![("HTTPS_PROXY".into(), "http://proxy:3128".into())], ca_bundle: None };
        let run =
            Run { alert_file: Some(Path::new("/tmp/a.json")), runner: Some("site-a"), deadline_unix: 1_700_000_000 };
        let body = create_body(&function(false), "localhost/x:1", &alert(), &net, &run);
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(body.user.as_deref(), Some(UNPRIVILEGED_USER), "not root unless asked");
        assert_eq!(hc.binds.as_deref(), Some(&[format!("/tmp/a.json:{ALERT_PATH}:ro")][..]));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!((labels[RUNNER_LABEL].as_str(), labels[DEADLINE_LABEL].as_str()), ("site-a", "1700000000"));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(hc.security_opt.as_deref(), Some(&["no-new-privileges".to_owned()][..]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.memory, Some(32 << 20));
        assert_eq!(hc.memory_swap, Some(32 << 20));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.pids_limit, Some(CONTAINER_PIDS));
        let env = body.env.unwrap();
        assert!(env.contains(&"URL=http://h/x".to_owned()));
        assert!(env.iter().any(|e| e.starts_with("FALCO_ALERT={")));
        assert!(env.contains(&format!("FALCO_ALERT_FILE={ALERT_PATH}")));
        assert!(!env.iter().any(|e| e.starts_with("HTTPS_PROXY")), "no proxy without network");
        assert_eq!(body.labels.unwrap()[FUNCTION_LABEL], "falco-hook");
    }

    #[test]
    fn network_brings_proxy_and_ca_bundle() {
        let net = NetworkEnv {
            proxy: vec![("HTTPS_PROXY".into(), "http://proxy:3128".into())],
            ca_bundle: Some("/etc/corp/ca.pem".into()),
        };
        let body = create_body(&function(true), "localhost/x:1", &alert(), &net, &Run::default());
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        assert_eq!(hc.binds.as_deref(), Some(&[format!("/etc/corp/ca.pem:{CA_BUNDLE_PATH}:ro")][..]));
        let env = body.env.unwrap();
        assert!(env.contains(&"HTTPS_PROXY=http://proxy:3128".to_owned()));
        assert!(env.contains(&format!("SSL_CERT_FILE={CA_BUNDLE_PATH}")));
    }

    #[test]
    fn root_only_when_asked_and_large_alerts_stay_out_of_the_environment() {
        let mut root = function(false);
        root.manifest.container.as_mut().unwrap().user = Some("root".into());
        assert_eq!(
            create_body(&root, "x", &alert(), &NetworkEnv::default(), &Run::default()).user.as_deref(),
            Some("0:0")
        );
        for bad in ["", "nobody", "0:", ":0", "1:2:3", "root:root", "12345678901"] {
            let text = format!("name = \"hook\"\nkind = \"container\"\n[container]\nimage = \"x\"\nuser = {bad:?}\n");
            let err = Manifest::parse(&text).unwrap_err();
            assert!(err.contains("[container] user") && err.contains("65534:65534"), "{bad}: {err}");
        }
        for good in ["root", "0", "1000", "1000:1000"] {
            let text = format!("name = \"hook\"\nkind = \"container\"\n[container]\nimage = \"x\"\nuser = {good:?}\n");
            assert!(Manifest::parse(&text).is_ok(), "{good}");
        }
        let big = format!(
            r#"{{"output":"{}","priority":"Notice","rule":"R","time":"2024-01-01T00:00:00Z","output_fields":{{}}}}"#,
            "x".repeat(CONTAINER_ENV_ALERT_BYTES)
        );
        let alert = Alert::parse(big.as_bytes()).unwrap();
        let run = Run { alert_file: Some(Path::new("/tmp/a.json")), ..Run::default() };
        let env = create_body(&function(false), "x", &alert, &NetworkEnv::default(), &run).env.unwrap();
        assert!(!env.iter().any(|e| e.starts_with("FALCO_ALERT=")), "over the limit: not in the environment");
        assert!(env.contains(&format!("FALCO_ALERT_FILE={ALERT_PATH}")), "but in the file");
    }
}
