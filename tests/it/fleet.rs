//! The fleet view and the prerequisites check through the `riposte` binary, against real nats-servers:
//! `riposte runner list` (heartbeats, a runner killed with SIGKILL marked gone, a graceful stop removing its
//! entry, functions pinned to a runner no one runs) and `riposte doctor` (healthy, NATS down, JetStream off,
//! missing credentials, container engine absent).

use crate::support;

use async_nats::jetstream;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::nats::registry::Registry;
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;
use support::nats::TestNats;
use support::{guests, riposte_bin, wait_until};

const LONG: Duration = Duration::from_secs(60);

async fn registry(nats: &TestNats) -> Registry {
    let js = jetstream::new(nats.client().await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    riposte::nats::fleet::open(&js).await.unwrap();
    Registry::open(&js).await.unwrap().with_keys(Some(support::settings_keys()))
}

async fn deploy(reg: &Registry, name: &str, manifest: &str, artifact: Option<&[u8]>, runs_on: Option<&str>) {
    let artifact = match artifact {
        Some(bytes) => reg.put_artifact(bytes).await.unwrap(),
        None => "localhost/riposte-absent:1".into(),
    };
    let manifest = Manifest::parse(&format!("name = \"{name}\"\n{manifest}")).unwrap();
    let f = Function {
        name: name.into(),
        manifest,
        artifact,
        settings: Settings::default(),
        runs_on: runs_on.map(Into::into),
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
}

fn spawn_runner(nats: &TestNats, name: &str) -> Child {
    riposte_bin(&support::shared_state())
        .args(["run", "--nats", &nats.url(), "--name", name])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Runs riposte; (exit ok, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let state = tempfile::tempdir().unwrap();
    let out = riposte_bin(state.path()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn runner_list(nats: &TestNats) -> Value {
    let (ok, stdout, stderr) = cli(&["runner", "list", "--json", "--nats", &nats.url()]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn runner<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["runners"].as_array().unwrap().iter().find(|r| r["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn runners_are_listed_a_killed_one_is_marked_gone_and_pins_to_missing_runners_are_reported() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    deploy(&reg, "anywhere", "kind = \"wasm\"", Some(&guests::ok()), None).await;
    deploy(&reg, "on-b", "kind = \"wasm\"", Some(&guests::ok()), Some("site-b")).await;
    deploy(&reg, "on-nobody", "kind = \"wasm\"", Some(&guests::ok()), Some("nobody")).await;
    for (trigger, function) in [("anywhere-t", "anywhere"), ("on-b-t", "on-b")] {
        let t = riposte::model::trigger::Trigger {
            name: trigger.into(),
            function: function.into(),
            topic: "falco.error.*".into(),
            when: None,
            on_condition_error: Default::default(),
        };
        let f = reg.function(function).await.unwrap().unwrap();
        riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
        reg.put_trigger(&t).await.unwrap();
    }
    let mut a = spawn_runner(&nats, "site-a");
    let mut b = spawn_runner(&nats, "site-b");
    let serves = |list: &Value, name: &str, function: &str, pinned: bool| {
        runner(list, name).is_some_and(|r| {
            r["gone"] == false
                && r["functions"].as_array().unwrap().iter().any(|f| f["name"] == function && f["pinned"] == pinned)
        })
    };
    wait_until("both runners to be listed with what they serve", LONG, || async {
        let list = runner_list(&nats);
        serves(&list, "site-a", "anywhere", false)
            && serves(&list, "site-b", "on-b", true)
            && serves(&list, "site-b", "anywhere", false)
    })
    .await;
    let list = runner_list(&nats);
    let a_row = runner(&list, "site-a").unwrap();
    assert_eq!(a_row["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        !a_row["functions"].as_array().unwrap().iter().any(|f| f["name"] == "on-b"),
        "on-b is pinned elsewhere: {a_row}"
    );
    assert_eq!(
        list["unserved_pins"],
        serde_json::json!([{"function": "on-nobody", "runs_on": "nobody", "gone": false}])
    );
    let (ok, table, warnings) = cli(&["runner", "list", "--nats", &nats.url()]);
    assert!(
        ok && table.lines().any(|l| l.starts_with("site-b ") && l.contains("alive") && l.contains("on-b*")),
        "{table}"
    );
    assert!(
        warnings.contains("function on-nobody is pinned (--runs-on) to runner nobody, which is not running"),
        "{warnings}"
    );

    // SIGKILL: no goodbye; the heartbeat stops and the runner is marked gone within GONE_AFTER (+ one beat).
    b.kill().unwrap();
    b.wait().unwrap();
    wait_until("site-b to be marked gone", riposte::model::timings::get().gone_after + LONG, || async {
        runner(&runner_list(&nats), "site-b").is_some_and(|r| r["gone"] == true)
    })
    .await;
    let list = runner_list(&nats);
    assert_eq!(runner(&list, "site-a").unwrap()["gone"], false);
    let pins = list["unserved_pins"].as_array().unwrap();
    assert!(pins.contains(&serde_json::json!({"function": "on-b", "runs_on": "site-b", "gone": true})), "{list}");
    let (_, table, warnings) = cli(&["runner", "list", "--nats", &nats.url()]);
    assert!(table.lines().any(|l| l.starts_with("site-b ") && l.contains("gone")), "{table}");
    assert!(warnings.contains("function on-b is pinned (--runs-on) to runner site-b, which is gone"), "{warnings}");

    // A graceful stop removes the runner's entry.
    let term = std::process::Command::new("kill").args(["-TERM", &a.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(a.wait().unwrap().success());
    assert!(runner(&runner_list(&nats), "site-a").is_none(), "a stopped runner is no longer listed");
}

/// `riposte doctor --json`: (exit ok, the checks by name).
fn doctor(args: &[&str]) -> (bool, Vec<Value>) {
    let (ok, stdout, stderr) = cli(&[&["doctor", "--json"], args].concat());
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (ok, report["checks"].as_array().unwrap().clone())
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_a_healthy_setup_and_names_each_failure_with_its_fix() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let (ok, checks) = doctor(&["--nats", &nats.url()]);
    assert!(ok, "{checks:#?}");
    assert!(checks.iter().all(|c| c["level"] != "failure"), "{checks:#?}");
    for name in [
        "nats",
        "jetstream",
        "stream FALCO",
        "stream RIPOSTE_RESULTS",
        "stream KV_riposte-registry",
        "clock",
        "compile cache",
    ] {
        assert_eq!(check(&checks, name)["level"], "ok", "{name}: {checks:#?}");
    }
    let (ok, text, _) = cli(&["doctor", "--nats", &nats.url()]);
    assert!(ok && text.contains("0 failed"), "{text}");

    // A container function deployed and no engine where the runner would look.
    deploy(&reg, "contained", "kind = \"container\"\n[container]\nimage = \"localhost/riposte-absent:1\"", None, None)
        .await;
    let (ok, checks) = doctor(&["--nats", &nats.url(), "--container-host", "unix:///nonexistent/podman.sock"]);
    assert!(!ok);
    let c = check(&checks, "container engine");
    assert_eq!(c["level"], "failure", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("needed by contained"), "{c}");
    assert!(c["fix"].as_str().unwrap().contains("podman system service"), "{c}");

    // NATS down.
    let (ok, checks) = doctor(&["--nats", "nats://127.0.0.1:1"]);
    assert!(!ok);
    assert_eq!(check(&checks, "nats")["level"], "failure");
    assert!(check(&checks, "nats")["fix"].as_str().unwrap().contains("check the URL"), "{checks:?}");
    let (ok, text, _) = cli(&["doctor", "--nats", "nats://127.0.0.1:1"]);
    assert!(!ok && text.contains("failure") && text.contains("fix: check the URL"), "{text}");

    // JetStream off.
    let plain = TestNats::start_with(&[]);
    let (ok, checks) = doctor(&["--nats", &plain.url()]);
    assert!(!ok);
    assert_eq!(check(&checks, "nats")["level"], "ok");
    let js = check(&checks, "jetstream");
    assert_eq!(js["level"], "failure", "{js}");
    assert!(js["fix"].as_str().unwrap().contains("nats-server with -js"), "{js}");

    // Credentials missing.
    let guarded = TestNats::start_with(&["-js", "--user", "riposte", "--pass", "s3cret-pass"]);
    let (ok, checks) = doctor(&["--nats", &guarded.url()]);
    assert!(!ok);
    let n = check(&checks, "nats");
    assert_eq!(n["level"], "failure", "{n}");
    assert!(n["fix"].as_str().unwrap().contains("the server wants credentials"), "{n}");
    // (With user:password@ in the URL it should pass, but async-nats 0.51 ignores a URL's user info: the
    // connection is refused the same way. Reported; not this test's subject.)
    let with = guarded.url().replace("nats://", "nats://riposte:s3cret-pass@");
    let (_, checks) = doctor(&["--nats", &with]);
    assert!(!serde_json::to_string(&checks).unwrap().contains("s3cret-pass"), "no password in the report");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_asks_kubernetes_for_every_verb_the_deployed_playbooks_need() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    deploy(&reg, "deleter", "kind = \"wasm\"\ncapabilities = [\"kubernetes.delete-pod\"]", Some(&guests::ok()), None)
        .await;
    deploy(
        &reg,
        "tainter",
        "kind = \"wasm\"\ncapabilities = [\"kubernetes.taint-node-of-pod\"]",
        Some(&guests::ok()),
        None,
    )
    .await;
    let allowing = support::kube::KubeEmulator::start().await;
    let (ok, checks) = doctor(&["--nats", &nats.url(), "--kubeconfig", allowing.kubeconfig.to_str().unwrap()]);
    let k = check(&checks, "kubernetes");
    assert!(ok, "{checks:#?}");
    assert_eq!(k["level"], "ok", "{k}");
    assert!(k["detail"].as_str().unwrap().contains("4 checked"), "pods get/delete, nodes get/patch: {k}");

    let denying = support::kube::KubeEmulator::start_denying(&["delete pods"]).await;
    let (ok, checks) = doctor(&["--nats", &nats.url(), "--kubeconfig", denying.kubeconfig.to_str().unwrap()]);
    assert!(!ok);
    let k = check(&checks, "kubernetes");
    assert_eq!(k["level"], "failure", "{k}");
    assert_eq!(k["detail"], "not allowed: delete pods (for deleter)", "{k}");
    assert!(k["fix"].as_str().unwrap().contains("ClusterRole"), "{k}");

    // No cluster configured while a function needs one: a warning, not a failure.
    let (_, checks) = doctor(&["--nats", &nats.url()]);
    let k = check(&checks, "kubernetes");
    let home_config = std::path::Path::new(&std::env::var("HOME").unwrap_or_default()).join(".kube/config");
    if std::env::var_os("KUBECONFIG").is_none()
        && std::env::var_os("KUBERNETES_SERVICE_HOST").is_none()
        && !home_config.exists()
    {
        assert_eq!(k["level"], "warning", "{k}");
        assert!(k["detail"].as_str().unwrap().contains("deleter, tainter"), "{k}");
    }
}
