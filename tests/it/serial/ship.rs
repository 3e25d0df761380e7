//! Shipping riposte, checked the way a user gets it: the Debian package (scripts/deb packaging the test build
//! with dpkg-deb, installed on this machine and purged again) with its systemd unit verified and scored by
//! systemd-analyze; the container image (the Containerfile's runtime stage as written, built offline on a base
//! made of this machine's libraries) running the shipped catalog and a runner against a nats-server on the host;
//! and the Kubernetes manifests, parsed into k8s-openapi's typed objects with nothing left unread.

use crate::support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::manifests::{check, documents};
use support::nats::TestNats;
use support::podman::podman;

const LONG: Duration = Duration::from_secs(120);

/// Runs a command, panicking with its output when it fails; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `scripts/catalog DEST`: the catalog the package and the image ship, components built by the test build.
fn lay_out_catalog(dest: &Path) {
    let path = format!("{}:{}", support::root().join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new(support::root().join("scripts/catalog"))
        .arg(dest)
        .arg(env!("CARGO_BIN_EXE_riposte"))
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("PATH", path));
}

// ---------------------------------------------------------------------------------------------------------
// The Debian package

/// Purges the package when dropped, so a failed assertion does not leave it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "riposte"]).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_debian_package_installs_a_hardened_service_and_the_catalog_runs_from_it() {
    let root = support::root();
    assert!(
        !Command::new("dpkg").args(["-s", "riposte"]).output().unwrap().status.success(),
        "package riposte is installed on this machine; this test installs and purges it: remove it first (dpkg --purge riposte)"
    );
    let work = tempfile::tempdir().unwrap();
    lay_out_catalog(&root.join("target/catalog"));
    // The binary the test profile built: no release build here (README has the release command).
    let out = Command::new(root.join("scripts/deb"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_riposte"))
        .arg("--catalog")
        .arg(root.join("target/catalog"))
        .arg("-o")
        .arg(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/deb failed (scripts/setup installs what it needs): {}", text(&out));
    let deb = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("scripts/deb wrote a .deb");

    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for wanted in [
        "./usr/bin/riposte",
        "./usr/bin/deploy_playbook",
        "./usr/share/riposte/playbooks/slack/playbook.toml",
        "./usr/share/riposte/playbooks/_lib/riposte_playbook.py",
        "./usr/share/riposte/wit/playbook.wit",
        "./usr/share/riposte/specs/slack.toml",
        "./usr/share/riposte/components/slack-",
        "/systemd/system/riposte.service",
        "./etc/default/riposte",
    ] {
        assert!(contents.contains(wanted), "the package lacks {wanted}:\n{contents}");
    }
    assert!(!contents.contains("__pycache__") && !contents.contains("/build/"), "build leftovers shipped:\n{contents}");
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("adduser"), "Depends names adduser (postinst creates the user):\n{info}");

    run(Command::new("dpkg").arg("-i").arg(&deb));
    let _installed = Installed;

    // The system user and the private state directory.
    let passwd = run(Command::new("getent").args(["passwd", "riposte"]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!((fields[5], fields[6]), ("/var/lib/riposte", "/usr/sbin/nologin"), "{passwd}");
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {passwd}");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let state = std::fs::metadata("/var/lib/riposte").unwrap();
    assert_eq!((state.permissions().mode() & 0o7777, state.uid()), (0o700, uid), "/var/lib/riposte is riposte's, 0700");
    let env_file = std::fs::metadata("/etc/default/riposte").unwrap();
    assert_eq!((env_file.permissions().mode() & 0o7777, env_file.uid()), (0o640, 0), "/etc/default/riposte");
    let defaults = std::fs::read_to_string("/etc/default/riposte").unwrap();
    for key in ["RIPOSTE_NATS_URL=", "RIPOSTE_RUNNER_NAME=", "RIPOSTE_NATS_CREDS=", "RIPOSTE_METRICS_ADDR="] {
        assert!(defaults.contains(key), "/etc/default/riposte documents {key}");
    }

    // The unit: valid for systemd, and its exposure score stays low (the figure is printed for the notes).
    let unit = ["/lib/systemd/system/riposte.service", "/usr/lib/systemd/system/riposte.service"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("the unit is installed");
    let verify = Command::new("systemd-analyze").args(["verify", unit]).output().unwrap();
    assert!(verify.status.success() && !text(&verify).contains("riposte"), "systemd-analyze verify: {}", text(&verify));
    let security = text(&Command::new("systemd-analyze").args(["security", "--offline=true", unit]).output().unwrap());
    let score: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for riposte.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {security}"));
    eprintln!("systemd-analyze security riposte.service: exposure {score}");
    assert!(score <= 2.0, "the unit's exposure grew to {score} (was 1.3):\n{security}");

    // The installed binary runs the installed catalog's specs with the components the package ships: nothing
    // to build (no componentize-py on this PATH). The compile cache is the tests' own, to spare the CPU.
    let home = work.path().join("home");
    let state_dir = home.join("state");
    std::fs::create_dir_all(support::shared_state().join("compiled")).unwrap();
    std::fs::create_dir_all(&state_dir).unwrap();
    std::os::unix::fs::symlink(support::shared_state().join("compiled"), state_dir.join("compiled")).unwrap();
    let installed = |program: &str| {
        let mut cmd = Command::new(program);
        cmd.env_clear().env("PATH", "/usr/bin:/bin").env("HOME", &home).env("RIPOSTE_STATE_DIR", &state_dir);
        cmd
    };
    let spec =
        installed("/usr/bin/riposte").args(["--playbooks", "/usr/share/riposte/playbooks", "spec"]).output().unwrap();
    let report = text(&spec);
    assert!(spec.status.success() && report.contains(" passed, 0 failed"), "installed riposte spec: {report}");
    assert!(!state_dir.join("components").exists(), "nothing was built: the shipped components served");

    // The installed deploy_playbook finds the installed binary and catalog.
    let nats = TestNats::start();
    let deployed = installed("/usr/bin/deploy_playbook")
        .args(["-p", "isolate", "-t", "falco.error.*", "--nats", &nats.url()])
        .output()
        .unwrap();
    assert!(
        deployed.status.success() && text(&deployed).contains("function falco-isolate deployed"),
        "installed deploy_playbook: {}",
        text(&deployed)
    );

    drop(_installed);
    assert!(!Command::new("dpkg").args(["-s", "riposte"]).output().unwrap().status.success(), "purged");
    for gone in ["/usr/bin/riposte", "/usr/share/riposte", "/var/lib/riposte", "/etc/default/riposte", unit] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The container image

/// Removes the test's images, container and volume when dropped.
struct PodmanLeftovers(Vec<[String; 2]>);

impl Drop for PodmanLeftovers {
    fn drop(&mut self) {
        for [what, name] in self.0.iter().rev() {
            let _ = match what.as_str() {
                "container" => podman().args(["rm", "-f", "-t", "0", name]).output(),
                "volume" => podman().args(["volume", "rm", "-f", name]).output(),
                _ => podman().args(["rmi", "-f", name]).output(),
            };
        }
    }
}

/// Copies `from` (following symbolic links) to `root` + `at`.
fn copy_into(root: &Path, at: &Path, from: &Path) {
    let dest = root.join(at.strip_prefix("/").unwrap_or(at));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
}

/// A base image standing in for distroless: the shared libraries `ldd` lists for riposte, CA certificates and
/// the users `nonroot` (65532) and `root`.
fn lay_out_base(dir: &Path, binary: &Path) {
    let ldd = run(Command::new("ldd").arg(binary));
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            copy_into(dir, Path::new(path), Path::new(path));
        }
    }
    let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certs.is_file() {
        copy_into(dir, certs, certs);
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
}

/// The Containerfile's runtime stage as written, on `base`, with `COPY --from=build /x` reading `x` from the
/// build context instead of the build stage.
fn runtime_stage(containerfile: &str, base: &str) -> String {
    let lines: Vec<&str> = containerfile.lines().collect();
    let start = lines.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM line");
    let mut out = format!("FROM {base}\n");
    for line in &lines[start + 1..] {
        if let Some(rest) = line.strip_prefix("COPY --from=build ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (dest, rest) = words.split_last().unwrap();
            let args: Vec<&str> =
                rest.iter().map(|w| if w.starts_with("--") { w } else { w.trim_start_matches('/') }).collect();
            out.push_str(&format!("COPY {} {dest}\n", args.join(" ")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_image_runs_the_shipped_catalog_and_a_runner_against_nats_on_the_host() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_riposte"));
    let ctx = tempfile::tempdir().unwrap();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
    );
    let (base, image, volume, container) = (
        format!("localhost/riposte-ship-base:{tag}"),
        format!("localhost/riposte-ship:{tag}"),
        format!("riposte-ship-state-{tag}"),
        format!("riposte-ship-{tag}"),
    );
    let mut leftovers = PodmanLeftovers(vec![["image".into(), base.clone()]]);

    lay_out_base(&ctx.path().join("base"), &binary);
    std::fs::write(ctx.path().join("Containerfile.base"), "FROM scratch\nCOPY base/ /\n").unwrap();
    run(podman().args(["build", "-q", "-t", &base, "-f"]).arg(ctx.path().join("Containerfile.base")).arg(ctx.path()));

    let out = ctx.path().join("out");
    copy_into(&out, Path::new("/usr/bin/riposte"), &binary);
    lay_out_catalog(&out.join("usr/share/riposte"));
    std::fs::create_dir(ctx.path().join("state")).unwrap();
    let containerfile = std::fs::read_to_string(support::root().join("Containerfile")).unwrap();
    std::fs::write(ctx.path().join("Containerfile"), runtime_stage(&containerfile, &base)).unwrap();
    leftovers.0.push(["image".into(), image.clone()]);
    run(podman().args(["build", "-q", "-t", &image, "-f"]).arg(ctx.path().join("Containerfile")).arg(ctx.path()));
    let size = run(podman().args(["image", "inspect", "--format", "{{.Size}}", &image]));
    eprintln!(
        "image {image}: {} MB (riposte binary {} MB)",
        size.trim().parse::<u64>().unwrap() / 1_000_000,
        std::fs::metadata(&binary).unwrap().len() / 1_000_000
    );
    let user = run(podman().args(["image", "inspect", "--format", "{{.Config.User}}", &image]));
    assert_eq!(user.trim(), "65532:65532", "the image runs as a non-root user");

    // One state volume for the three runs (podman fills it from the image: owned by 65532). Its compile cache is
    // the host's, read-only: the same binary compiled these components for the host's own spec run just above,
    // so nothing compiles again in the image (each would take minutes on 2 cores).
    let compiled = support::shared_state().join("compiled");
    let host_state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(&compiled).unwrap();
    std::os::unix::fs::symlink(&compiled, host_state.path().join("compiled")).unwrap();
    run(Command::new(&binary)
        .arg("--playbooks")
        .arg(out.join("usr/share/riposte/playbooks"))
        .args(["spec", "slack", "isolate"])
        .env("RIPOSTE_STATE_DIR", host_state.path()));
    let cache = format!("{}:/var/lib/riposte/compiled:ro", compiled.display());
    leftovers.0.push(["volume".into(), volume.clone()]);
    let in_image = |args: &[&str]| {
        let mut cmd = podman();
        cmd.args(["run", "--rm", "--network", "host", "-v", &format!("{volume}:/var/lib/riposte"), "-v", &cache])
            .arg(&image)
            .args(args);
        cmd
    };
    // Two playbooks' specs, from the image's catalog and binary (the deb test runs them all).
    let spec = in_image(&["spec", "slack", "isolate"]).output().unwrap();
    assert!(
        spec.status.success() && text(&spec).contains(" passed, 0 failed"),
        "riposte spec in the image: {}",
        text(&spec)
    );

    // Deployed from the image (its shipped component), run by the image's runner, on a nats-server on the host.
    let nats = TestNats::start();
    let deployed =
        in_image(&["deploy-playbook", "-p", "isolate", "-t", "falco.error.*", "--nats", &nats.url()]).output().unwrap();
    assert!(deployed.status.success(), "deploy-playbook in the image: {}", text(&deployed));
    leftovers.0.push(["container".into(), container.clone()]);
    run(podman()
        .args([
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            "host",
            "-v",
            &format!("{volume}:/var/lib/riposte"),
            "-v",
            &cache,
            &image,
        ])
        .args(["run", "--nats", &nats.url(), "--name", "in-image"]));
    let client = nats.client().await;
    client
        .publish("falco.error.terminal_shell_in_container", support::alert_json("terminal-shell-k8s").into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    // The result, read from the host: handled by the runner in the image; no cluster there, so denied.
    let logs = || {
        let out = Command::new(&binary)
            .args(["function", "logs", "falco-isolate", "--json", "--nats", &nats.url()])
            .env("RIPOSTE_STATE_DIR", ctx.path().join("host-state"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect::<Vec<_>>()
    };
    support::wait_until("the runner in the image to record a result", LONG, || async { !logs().is_empty() }).await;
    let result = &logs()[0];
    assert_eq!((result["runner"].as_str(), result["status"].as_str()), (Some("in-image"), Some("denied")), "{result}");
    assert!(result["message"].as_str().unwrap_or_default().contains("no Kubernetes cluster"), "{result}");

    // SIGTERM: the runner stops gracefully.
    run(podman().args(["stop", "-t", "60", &container]));
    let code = run(podman().args(["inspect", "--format", "{{.State.ExitCode}}", &container]));
    let logs = text(&podman().args(["logs", &container]).output().unwrap());
    assert_eq!(code.trim(), "0", "the runner exits 0 on SIGTERM: {logs}");
    assert!(logs.contains("stopping"), "{logs}");
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes

/// Every YAML document under `deploy/kubernetes`, as (file, document), except the falcosidekick Helm values.
fn manifests() -> Vec<(String, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else if e.path().extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&support::root().join("deploy/kubernetes"), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for file in files.into_iter().filter(|f| !f.ends_with("falcosidekick-values.yaml")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(support::root()).unwrap().display().to_string();
        docs.extend(documents(&text).unwrap_or_else(|e| panic!("{name}: {e}")).into_iter().map(|d| (name.clone(), d)));
    }
    docs
}

#[test]
fn every_kubernetes_manifest_reads_into_its_typed_api_object_with_no_unknown_field() {
    let docs = manifests();
    let kinds: std::collections::BTreeSet<&str> = docs.iter().filter_map(|(_, d)| d["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "deploy/kubernetes has a {kind}");
    }
    let problems: Vec<String> = docs
        .iter()
        .flat_map(|(file, doc)| check(doc).into_iter().map(move |p| format!("{file}: {} {p}", doc["kind"])))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_typo_in_a_manifest_is_caught() {
    let (_, deployment) = manifests().into_iter().find(|(_, d)| d["kind"] == "Deployment").unwrap();
    let mut typo = deployment.clone();
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpget"] =
        serde_json::json!({"path": "/readyz"});
    assert_eq!(check(&typo), [".spec.template.spec.containers[0].readinessProbe.httpget: unknown field"]);
    let mut wrong_type = deployment;
    wrong_type["spec"]["replicas"] = serde_json::json!("two");
    assert!(check(&wrong_type)[0].contains("invalid type"), "{:?}", check(&wrong_type));
}

fn playbook_toml(name: &str) -> toml::Value {
    let path = support::root().join("playbooks").join(name).join("playbook.toml");
    toml::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no playbook {name}"))).unwrap()
}

#[test]
fn every_kubernetes_capability_has_its_own_cluster_role_bound_to_the_runners_account() {
    let docs = manifests();
    let account = docs.iter().find(|(_, d)| d["kind"] == "ServiceAccount").map(|(_, d)| d["metadata"].clone()).unwrap();
    let deployment = docs.iter().find(|(_, d)| d["kind"] == "Deployment").map(|(_, d)| d.clone()).unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["serviceAccountName"], account["name"]);
    let mut capabilities = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(support::root().join("playbooks")).unwrap().flatten() {
        if entry.path().join("playbook.toml").is_file() {
            let manifest = playbook_toml(&entry.file_name().to_string_lossy());
            for c in manifest.get("capabilities").and_then(|c| c.as_array()).into_iter().flatten() {
                if let Some(verb) = c.as_str().and_then(|c| c.strip_prefix("kubernetes.")) {
                    capabilities.insert(verb.to_owned());
                }
            }
        }
    }
    assert!(capabilities.contains("isolate-pod") && capabilities.contains("delete-pod"), "{capabilities:?}");
    for verb in capabilities.iter().map(String::as_str).chain(["label-pod", "cordon-node-of-pod"]) {
        let file = format!("deploy/kubernetes/rbac/{verb}.yaml");
        let in_file: Vec<&Value> = docs.iter().filter(|(f, _)| *f == file).map(|(_, d)| d).collect();
        let role =
            in_file.iter().find(|d| d["kind"] == "ClusterRole").unwrap_or_else(|| panic!("{file} has a ClusterRole"));
        let binding =
            in_file.iter().find(|d| d["kind"] == "ClusterRoleBinding").unwrap_or_else(|| panic!("{file} binds it"));
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"], "{file}");
        assert_eq!(binding["subjects"][0]["name"], account["name"], "{file}");
        assert_eq!(binding["subjects"][0]["namespace"], account["namespace"], "{file}");
    }
}

#[test]
fn the_deployment_probes_the_metrics_port_and_falcosidekick_publishes_where_the_runners_read() {
    let docs = manifests();
    let deployment = docs.iter().find(|(_, d)| d["kind"] == "Deployment").map(|(_, d)| d.clone()).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let runner = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["args"][0] == "run")
        .expect("a container runs `riposte run`");
    let args: Vec<&str> = runner["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let addr = args.iter().position(|a| *a == "--metrics-addr").map(|i| args[i + 1]).expect("run --metrics-addr");
    let port: i64 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(addr.starts_with("0.0.0.0:"), "the kubelet probes the pod's address, not its loopback: {addr}");
    let named = runner["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["containerPort"] == port)
        .expect("the metrics port is declared");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(runner[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(runner[probe]["httpGet"]["port"], named["name"], "{probe}");
    }
    let security = &runner["securityContext"];
    assert_eq!(
        (security["readOnlyRootFilesystem"].as_bool(), security["allowPrivilegeEscalation"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    let nats_url = |c: &Value| {
        c["env"].as_array().unwrap().iter().find(|e| e["name"] == "RIPOSTE_NATS_URL").map(|e| e["value"].clone())
    };
    let values: Value = serde_norway::from_str(
        &std::fs::read_to_string(support::root().join("deploy/kubernetes/falcosidekick-values.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        nats_url(runner),
        Some(values["config"]["nats"]["hostport"].clone()),
        "falcosidekick publishes to the runners' NATS"
    );
    let key_file = |c: &Value| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "RIPOSTE_SETTINGS_KEY_FILE")
            .map(|e| e["value"].clone())
    };
    assert!(key_file(runner).is_some(), "runners open sealed settings with the settings key");
    for init in pod["initContainers"].as_array().into_iter().flatten() {
        assert_eq!(nats_url(init), nats_url(runner), "{}", init["name"]);
        assert_eq!(key_file(init), key_file(runner), "{} seals with the runners' settings key", init["name"]);
    }
}

#[test]
fn the_response_configmap_deploys_catalog_playbooks_with_secrets_only_by_reference() {
    let docs = manifests();
    let map = docs.iter().find(|(_, d)| d["kind"] == "ConfigMap").map(|(_, d)| d.clone()).unwrap();
    let response: Value =
        serde_norway::from_str(map["data"]["response.yaml"].as_str().expect("data.response.yaml")).unwrap();
    let functions = response["functions"].as_array().expect("functions");
    for f in functions {
        let manifest = playbook_toml(f["playbook"].as_str().unwrap());
        for (name, value) in f["settings"].as_object().into_iter().flatten() {
            let declared =
                manifest.get("settings").and_then(|s| s.get(name)).unwrap_or_else(|| panic!("{f}: no setting {name}"));
            let secret = declared.get("secret").and_then(toml::Value::as_bool).unwrap_or(true);
            assert!(
                !secret || value.is_object(),
                "{name} is secret: give it as {{ env: NAME }} or {{ file: PATH }}, not a value"
            );
        }
    }
    let names: Vec<&Value> = functions.iter().map(|f| &f["name"]).collect();
    for t in response["triggers"].as_array().expect("triggers") {
        assert!(names.contains(&&t["function"]), "trigger {} names a declared function", t["name"]);
        riposte::model::trigger::Pattern::parse(t["topic"].as_str().unwrap()).unwrap();
    }
}
