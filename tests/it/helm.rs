//! The Helm chart `deploy/helm/riposte`, checked by the real `helm` (3.17, installed by scripts/setup into
//! .tools/bin): `helm lint --strict` and `helm template` pass with the default values and every example under
//! `ci/`; every rendered object reads into its k8s-openapi type with no unknown field; RBAC is exactly one
//! ClusterRole per capability the response uses; Secrets are referenced, never inlined; the pods are non-root
//! with a read-only root and probes; the PrometheusRule and the dashboard are the shipped files; bad values are
//! refused with what to do; and the raw manifests of `deploy/kubernetes` are what the chart renders.

use crate::support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use support::manifests::{check, documents};

fn chart() -> PathBuf {
    support::root().join("deploy/helm/riposte")
}

fn helm() -> Command {
    let path = std::env::var_os("HELM").map(PathBuf::from).unwrap_or_else(|| support::root().join(".tools/bin/helm"));
    assert!(path.is_file(), "{}: bash scripts/setup installs helm there", path.display());
    Command::new(path)
}

/// The values files: the defaults (None) and every example under ci/.
fn examples() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    std::iter::once(None).chain(files.into_iter().map(Some)).collect()
}

/// `helm template riposte` with these values and `--set` arguments: (success, stdout, stderr).
fn template(values: Option<&PathBuf>, set: &[&str]) -> (bool, String, String) {
    let mut c = helm();
    c.args(["template", "riposte"]).arg(chart()).args(["--namespace", "riposte"]);
    if let Some(v) = values {
        c.arg("-f").arg(v);
    }
    for s in set {
        c.args(["--set", s]);
    }
    support::outcome(c.output().unwrap())
}

fn render(values: Option<&PathBuf>) -> Vec<Value> {
    let (ok, out, err) = template(values, &[]);
    assert!(ok, "helm template {values:?}: {err}");
    documents(&out).unwrap()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn yaml_file(path: &str) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(support::root().join(path)).unwrap()).unwrap()
}

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_every_example() {
    for values in examples() {
        let mut c = helm();
        c.args(["lint", "--strict"]).arg(chart());
        if let Some(v) = &values {
            c.arg("-f").arg(v);
        }
        let (ok, out, err) = support::outcome(c.output().unwrap());
        assert!(ok && !out.contains("[WARNING]") && !out.contains("[ERROR]"), "lint {values:?}:\n{out}{err}");
        assert!(!err.contains("warning"), "lint {values:?}: {err}");
    }
}

#[test]
fn every_rendered_object_reads_into_its_api_type_and_the_pods_are_locked_down() {
    for values in examples() {
        let docs = render(values.as_ref());
        let typed: Vec<String> = docs
            .iter()
            .filter(|d| !["ServiceMonitor", "PrometheusRule"].contains(&d["kind"].as_str().unwrap_or_default()))
            .flat_map(|d| check(d).into_iter().map(move |p| format!("{} {}: {p}", d["kind"], d["metadata"]["name"])))
            .collect();
        assert!(typed.is_empty(), "{values:?}:\n{}", typed.join("\n"));
        let deployment = of_kind(&docs, "Deployment");
        assert_eq!(deployment.len(), 1);
        let pod = &deployment[0]["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{values:?}");
        let containers: Vec<&Value> = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().into_iter().flatten())
            .collect();
        for c in &containers {
            let s = &c["securityContext"];
            assert_eq!(
                (&s["readOnlyRootFilesystem"], &s["allowPrivilegeEscalation"], &s["capabilities"]["drop"]),
                (&Value::Bool(true), &Value::Bool(false), &serde_json::json!(["ALL"])),
                "{values:?} {}",
                c["name"]
            );
            assert!(c["resources"]["limits"]["memory"].is_string(), "{values:?} {} has a memory limit", c["name"]);
        }
        let runner = &pod["containers"][0];
        assert_eq!(runner["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(runner["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(runner["readinessProbe"]["httpGet"]["port"], "metrics");
        // Every Secret the pod reads is a volume or an envFrom reference: no value is written in the chart's
        // objects, and no Secret object is rendered.
        assert!(of_kind(&docs, "Secret").is_empty(), "{values:?}: the chart never holds a secret value");
        let env: Vec<&Value> = containers.iter().flat_map(|c| c["env"].as_array().unwrap().iter()).collect();
        for e in &env {
            let name = e["name"].as_str().unwrap();
            if ["CREDS", "NKEY", "PASSWORD", "TOKEN", "KEY"].iter().any(|w| name.contains(w)) {
                let path = e["value"].as_str().unwrap();
                assert!(path.starts_with("/etc/riposte/"), "{name} names a mounted file, not a value: {path}");
            }
        }
    }
}

#[test]
fn the_full_example_references_each_secret_by_name_and_mounts_it_where_the_runner_reads() {
    let full = chart().join("ci/full-values.yaml");
    let docs = render(Some(&full));
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let secrets: BTreeSet<&str> =
        pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["secret"]["secretName"].as_str()).collect();
    assert_eq!(
        secrets,
        BTreeSet::from(["riposte-settings-key", "riposte-nats", "riposte-http-tokens", "riposte-http-tls"]),
        "{pod}"
    );
    let runner = &pod["containers"][0];
    let env = |name: &str| {
        runner["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(env("RIPOSTE_NATS_CREDS").as_deref(), Some("/etc/riposte/nats/runner.creds"));
    assert_eq!(env("RIPOSTE_NATS_CA").as_deref(), Some("/etc/riposte/nats/ca.crt"));
    assert_eq!(env("RIPOSTE_NATS_URL").as_deref(), Some("tls://nats-0.nats.svc:4222,tls://nats-1.nats.svc:4222"));
    assert_eq!(env("RIPOSTE_SETTINGS_KEY_FILE").as_deref(), Some("/etc/riposte/key/settings.key"));
    let mounts: BTreeSet<&str> =
        runner["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    for dir in ["/etc/riposte/nats", "/etc/riposte/key", "/etc/riposte/http-tokens", "/etc/riposte/http-tls"] {
        assert!(mounts.contains(dir), "{dir} mounted: {mounts:?}");
    }
    let args: Vec<&str> = runner["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for pair in [
        ["--http-addr", "0.0.0.0:2801"],
        ["--http-token-file", "/etc/riposte/http-tokens/tokens"],
        ["--http-tls-cert", "/etc/riposte/http-tls/tls.crt"],
        ["--http-client-ca", "/etc/riposte/http-tls/ca.crt"],
        ["--max-in-flight", "128"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    // The response's secret settings are references to the settings Secret, which the apply step reads.
    let init = &pod["initContainers"][0];
    assert_eq!(init["envFrom"][0]["secretRef"]["name"], "riposte-settings");
    let map = of_kind(&docs, "ConfigMap").into_iter().find(|m| m["data"]["response.yaml"].is_string()).unwrap();
    let response: Value = serde_norway::from_str(map["data"]["response.yaml"].as_str().unwrap()).unwrap();
    let capture = response["functions"].as_array().unwrap().iter().find(|f| f["name"] == "falco-capture").unwrap();
    assert_eq!(capture["settings"]["AWS_SECRET_ACCESS_KEY"], serde_json::json!({"env": "AWS_SECRET_ACCESS_KEY"}));
    // The HTTP input has its Service and its NetworkPolicy rule; the ServiceMonitor scrapes the metrics port.
    let http = of_kind(&docs, "Service").into_iter().find(|s| s["metadata"]["name"] == "riposte-http").unwrap();
    assert_eq!(http["spec"]["ports"][0]["targetPort"], "http-input");
    let policy = &of_kind(&docs, "NetworkPolicy")[0]["spec"]["ingress"];
    assert_eq!(policy.as_array().unwrap().len(), 2, "{policy}");
    let monitor = &of_kind(&docs, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(monitor["spec"]["jobLabel"], "app.kubernetes.io/name", "the rules' job=\"riposte\"");
}

#[test]
fn rbac_is_exactly_one_cluster_role_per_capability_the_response_uses() {
    let catalog = yaml_file("deploy/helm/riposte/files/capabilities.yaml");
    // The chart's table of playbooks agrees with the catalog's manifests.
    for entry in std::fs::read_dir(support::root().join("playbooks")).unwrap().flatten() {
        let manifest = entry.path().join("playbook.toml");
        if !manifest.is_file() {
            continue;
        }
        let toml: toml::Value = toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let declared: Vec<&str> = toml
            .get("capabilities")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        let name = entry.file_name().to_string_lossy().into_owned();
        let in_chart: Vec<&str> = catalog["playbooks"][&name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} in files/capabilities.yaml"))
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(in_chart, declared, "{name}: files/capabilities.yaml and playbooks/{name}/playbook.toml");
    }
    let cases = [
        (None, vec!["isolate-pod"]),
        (
            Some(chart().join("ci/full-values.yaml")),
            vec!["create-capture-job", "delete-pod", "label-pod", "taint-node-of-pod"],
        ),
        (Some(chart().join("ci/cli-managed-values.yaml")), vec!["delete-pod", "isolate-pod"]),
    ];
    for (values, expected) in cases {
        let docs = render(values.as_ref());
        let roles: Vec<&str> =
            of_kind(&docs, "ClusterRole").iter().map(|r| r["metadata"]["name"].as_str().unwrap()).collect();
        let expected_names: Vec<String> = expected.iter().map(|c| format!("riposte-{c}")).collect();
        assert_eq!(roles, expected_names, "{values:?}");
        let account = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .map(|d| d["spec"]["template"]["spec"]["serviceAccountName"].clone())
            .unwrap();
        for cap in &expected {
            let role = of_kind(&docs, "ClusterRole")
                .into_iter()
                .find(|r| r["metadata"]["name"] == format!("riposte-{cap}"))
                .unwrap();
            assert_eq!(role["rules"], catalog["capabilities"][format!("kubernetes.{cap}")]["rules"], "{cap}");
            let binding = of_kind(&docs, "ClusterRoleBinding")
                .into_iter()
                .find(|b| b["roleRef"]["name"] == role["metadata"]["name"])
                .unwrap();
            assert_eq!(binding["subjects"][0]["name"], account, "{cap} is bound to the runners' account");
            assert_eq!(binding["subjects"][0]["namespace"], "riposte");
        }
    }
}

#[test]
fn the_chart_ships_the_tested_alerting_rules_and_dashboard() {
    let same = |a: &str, b: &str| {
        assert_eq!(
            std::fs::read_to_string(support::root().join(a)).unwrap(),
            std::fs::read_to_string(support::root().join(b)).unwrap(),
            "{a} is a copy of {b}: cp {b} {a}"
        )
    };
    same("deploy/helm/riposte/files/riposte-rules.yaml", "deploy/prometheus/riposte-rules.yaml");
    same("deploy/helm/riposte/dashboards/riposte-dashboard.json", "deploy/grafana/riposte-dashboard.json");
    let docs = render(Some(&chart().join("ci/full-values.yaml")));
    let rule = &of_kind(&docs, "PrometheusRule")[0];
    assert_eq!(rule["spec"], yaml_file("deploy/prometheus/riposte-rules.yaml"));
    let dashboard =
        of_kind(&docs, "ConfigMap").into_iter().find(|m| m["metadata"]["labels"]["grafana_dashboard"] == "1").unwrap();
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboard["metadata"]["annotations"]["grafana_folder"], "falco");
    let json: Value = serde_json::from_str(dashboard["data"]["riposte-dashboard.json"].as_str().unwrap()).unwrap();
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("deploy/grafana/riposte-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json, shipped);
    // Off by default.
    let docs = render(None);
    assert!(of_kind(&docs, "PrometheusRule").is_empty() && of_kind(&docs, "ServiceMonitor").is_empty());
}

#[test]
fn bad_values_are_refused_with_what_to_do() {
    for (set, says) in [
        (
            vec!["response.functions[0].name=f", "response.functions[0].playbook=nonesuch"],
            "playbook nonesuch is not in the catalog",
        ),
        (
            vec!["rbac.extraCapabilities={kubernetes.reboot-node}"],
            "capability kubernetes.reboot-node is not one riposte has",
        ),
        (vec!["config.nats.credsKey=runner.creds"], "config.nats.existingSecret is empty"),
        (
            vec!["config.nats.existingSecret=s", "config.nats.passwordKey=p"],
            "config.nats.passwordKey needs config.nats.user",
        ),
        (vec!["config.settingsKey.existingSecret="], "create the settings key Secret"),
        (vec!["httpInput.enabled=true"], "set httpInput.tokenSecret"),
        (
            vec!["httpInput.enabled=true", "httpInput.tokenSecret=t", "httpInput.clientCA=true"],
            "httpInput.clientCA needs httpInput.tlsSecret",
        ),
    ] {
        let (ok, out, err) = template(None, &set);
        assert!(!ok && out.is_empty(), "{set:?} is refused: {out}");
        assert!(err.contains(says), "{set:?}: {err}");
    }
}

#[test]
fn the_raw_manifests_are_what_the_chart_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(support::root().join("scripts/manifests"))
        .arg("--out")
        .arg(dir.path())
        .env("HELM", helm().get_program())
        .output()
        .unwrap();
    let (ok, _, err) = support::outcome(out);
    assert!(ok, "scripts/manifests: {err}");
    let mut generated = Vec::new();
    for sub in ["", "rbac"] {
        for e in std::fs::read_dir(dir.path().join(sub)).unwrap().flatten().filter(|e| e.path().is_file()) {
            generated.push(PathBuf::from(sub).join(e.file_name()));
        }
    }
    generated.sort();
    assert!(generated.len() >= 10, "{generated:?}");
    let raw = support::root().join("deploy/kubernetes");
    for file in &generated {
        let fresh = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let shipped = std::fs::read_to_string(raw.join(file)).unwrap_or_default();
        assert!(fresh == shipped, "deploy/kubernetes/{} differs from the chart: run scripts/manifests", file.display());
    }
    // Every other file there is one of the two written by hand.
    for sub in ["", "rbac"] {
        for e in std::fs::read_dir(raw.join(sub)).unwrap().flatten().filter(|e| e.path().is_file()) {
            let file = PathBuf::from(sub).join(e.file_name());
            let by_hand = ["namespace.yaml", "falcosidekick-values.yaml"].contains(&file.to_str().unwrap());
            assert!(
                by_hand || generated.contains(&file),
                "deploy/kubernetes/{} is not rendered by the chart",
                file.display()
            );
        }
    }
}
