//! Secret setting values never leave in clear. One canary setting goes through every path a WebAssembly playbook
//! has (outcome message, detail, rejection reason, exception text, log, print, a refused HTTP call to a URL whose
//! hostname holds it, lower-cased) and is looked for, in any case, everywhere a user can look: the results and
//! dead-letter streams (raw), `function logs` plain and `--json`, `function top`, `function list`, `trigger
//! list`, and the runner's stderr in text and JSON. At rest, the registry holds secret setting values sealed: a
//! NATS reader without the settings key sees ciphertext only (in the KV entry and in JetStream's files), a
//! deployer without a key is refused, and a runner without the right key refuses that function and serves the
//! others. (A container action's stdout and stderr: `tests/container.rs`,
//! `a_secret_a_container_prints_is_redacted_in_its_result_dead_letter_and_the_streams`.)

use crate::support;

use async_nats::jetstream;
use futures::StreamExt;
use riposte::model::execution::Status;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::trigger::Trigger;
use riposte::nats::registry::{Change, Registry, REGISTRY_BUCKET};
use riposte::nats::results::{read_deadletters, read_results};
use riposte::secrets::seal::SettingsKeys;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::nats::TestNats;
use support::{guests, wait_until};

/// Mixed case on purpose: a URL parser lower-cases it inside a hostname.
const CANARY: &str = "Canary-Tok3n-7Qz";
const LONG: Duration = Duration::from_secs(90);

/// A Python playbook that takes the path to follow from the alert's rule and puts the canary in it.
const CANARY_APP: &str = r#"
import json
from wit_world.imports import http, log, settings, types
from riposte_playbook import guarded, rejected


class WitWorld:
    @guarded
    def handle(self, alert):
        secret = settings.get("CANARY")
        path = alert.rule
        if path == "message":
            return types.Outcome(message=f"message {secret}", detail=None)
        if path == "detail":
            return types.Outcome(message="detail", detail=json.dumps({"value": secret, secret: [f"x{secret}x"]}))
        if path == "reason":
            raise rejected(f"Forbidden{secret}", f"no {secret}", 403)
        if path == "exception":
            raise RuntimeError(f"exception {secret}")
        if path == "log":
            log.write(log.Level.WARN, f"log {secret}")
            return types.Outcome(message="logged", detail=None)
        if path == "print":
            print(f"print {secret}")
            raise SystemExit(f"crash {secret}")
        if path == "http":
            http.send(http.Request(method="GET", url=f"http://{secret}.invalid/{secret}", headers=[], body=None,
                                   verify_tls=True))
            return types.Outcome(message="sent", detail=None)
        return types.Outcome(message="unknown path", detail=None)
"#;

const CANARY_TOML: &str = r#"
name = "canary"
kind = "wasm"
capabilities = ["http"]
[limits]
max_deliver = 2
retry_backoff_ms = 100
[settings.CANARY]
required = true
"#;

const PATHS: [&str; 7] = ["message", "detail", "reason", "exception", "log", "print", "http"];

fn alert(uuid: &str, rule: &str) -> String {
    serde_json::json!({
        "uuid": uuid, "output": "12:00:00.000000000: Warning canary", "priority": "Warning", "rule": rule,
        "time": "2024-05-17T15:31:56.746609046Z", "output_fields": {}, "source": "syscall", "hostname": "h", "tags": []
    })
    .to_string()
}

/// `riposte` in a catalog folder outside the repository, on `nats`, with the test settings key.
fn riposte(catalog: &Path, nats: &TestNats) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riposte"));
    c.current_dir(catalog)
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env_remove("RIPOSTE_PLAYBOOKS")
        .env("RIPOSTE_NATS_URL", nats.url())
        .env("RIPOSTE_SETTINGS_KEY_FILE", support::settings_key())
        .env("RUST_LOG", "info")
        .env("PATH", format!("{}:{}", support::root().join(".venv/bin").display(), std::env::var("PATH").unwrap()));
    c
}

/// Its stdout and stderr together; it must succeed.
fn ok(out: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "riposte {what}: {text}");
    text
}

fn runner(catalog: &Path, nats: &TestNats, format: &str, stderr: &Path) -> Child {
    riposte(catalog, nats)
        .args(["--log-format", format, "run", "--name", &format!("canary-{format}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

fn assert_no_canary(place: &str, text: &str) {
    assert!(!text.is_empty(), "{place} is empty: nothing was checked");
    assert!(
        !text.to_ascii_lowercase().contains(&CANARY.to_ascii_lowercase()),
        "the canary setting shows in {place}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_setting_never_leaves_in_clear_on_any_path() {
    let nats = TestNats::start();
    let catalog = tempfile::tempdir().unwrap();
    let dir = catalog.path().join("playbooks/canary");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.py"), CANARY_APP).unwrap();
    std::fs::write(dir.join("playbook.toml"), CANARY_TOML).unwrap();
    let cli = |args: &[&str]| ok(riposte(catalog.path(), &nats).args(args).output().unwrap(), &args.join(" "));
    cli(&["function", "deploy", "canary", "--playbook", "canary", "-e", &format!("CANARY={CANARY}")]);
    cli(&["trigger", "create", "canary-t", "--function", "canary", "--topic", "falco.warning.*"]);
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let logs = tempfile::tempdir().unwrap();

    // Once with a text log, once with a JSON log: every path each time.
    for (round, format) in ["text", "json"].into_iter().enumerate() {
        let stderr = logs.path().join(format!("runner-{format}.log"));
        let mut run = runner(catalog.path(), &nats, format, &stderr);
        for path in PATHS {
            let body = alert(&format!("{format}-{path}"), path);
            client.publish(format!("falco.warning.{path}"), body.into()).await.unwrap();
        }
        client.flush().await.unwrap();
        wait_until("every path's final result and the dead letter", LONG, || {
            let js = js.clone();
            async move {
                let results = read_results(&js, Some("canary"), None).await.unwrap_or_default();
                let done = PATHS.iter().all(|p| {
                    let mine: Vec<_> = results.iter().filter(|r| r.alert_uuid == format!("{format}-{p}")).collect();
                    mine.iter().any(|r| !r.status.retryable()) || mine.len() >= 2
                });
                done && read_deadletters(&js, "canary").await.unwrap_or_default().len() > round
            }
        })
        .await;
        Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
        run.wait().unwrap();
        let log = std::fs::read_to_string(&stderr).unwrap();
        assert!(log.contains("did not succeed"), "the runner logged the failures: {log}");
        assert_no_canary(&format!("the runner's {format} log"), &log);
    }

    // Each path was taken: its result holds the redaction mark where the value was.
    let results = read_results(&js, Some("canary"), None).await.unwrap();
    let by = |path: &str| results.iter().find(|r| r.alert_uuid == format!("text-{path}")).unwrap();
    for path in PATHS {
        let text = serde_json::to_string(by(path)).unwrap();
        assert!(text.contains("***"), "path {path} did not carry the canary: {text}");
    }
    assert_eq!(by("message").message, "message ***");
    assert_eq!(by("detail").detail, Some(serde_json::json!({"value": "***", "***": ["x***x"]})));
    assert_eq!((by("reason").status, by("reason").reason.as_deref()), (Status::Rejected, Some("Forbidden***")));
    assert!(by("exception").message.contains("exception ***"), "{:?}", by("exception"));
    assert!(by("log").logs.iter().any(|l| l.message == "log ***"), "{:?}", by("log").logs);
    assert_eq!(by("print").status, Status::Trap, "an uncaught exit: {:?}", by("print"));
    assert!(by("print").logs.iter().any(|l| l.message.contains("print ***")), "{:?}", by("print").logs);
    assert!(by("http").message.contains("***.invalid"), "the hostname, lower-cased: {}", by("http").message);

    assert_no_canary(
        "the results stream",
        &support::runner::raw_stream(&js, riposte::nats::streams::RESULTS_STREAM).await,
    );
    assert_no_canary(
        "the dead-letter stream",
        &support::runner::raw_stream(&js, riposte::nats::streams::DEADLETTER_STREAM).await,
    );
    for args in [
        &["function", "logs", "canary", "-n", "100"][..],
        &["function", "logs", "canary", "-n", "100", "--json"],
        &["function", "top"],
        &["function", "list"],
        &["trigger", "list"],
    ] {
        assert_no_canary(&format!("riposte {}", args.join(" ")), &cli(args));
    }
}

/// Deploys function `name` running the `ok` guest with secret settings `settings`, and trigger `<name>-t`.
async fn deploy(reg: &Registry, name: &str, settings: &[(&str, &str)]) -> Function {
    let artifact = reg.put_artifact(&guests::ok()).await.unwrap();
    let declared: String = settings.iter().map(|(k, _)| format!("[settings.{k}]\n")).collect();
    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n{declared}")).unwrap();
    let pairs = settings.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let f = Function {
        name: name.into(),
        manifest,
        artifact,
        settings: Settings::from_pairs(pairs),
        runs_on: None,
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
    let t = Trigger {
        name: format!("{name}-t"),
        function: name.into(),
        topic: "falco.error.*".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
    f
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_are_sealed_at_rest_and_a_runner_without_the_key_refuses_only_that_function() {
    let nats = TestNats::start();
    let js = jetstream::new(nats.client().await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    let keys = support::settings_keys();
    let reg = Registry::open(&js).await.unwrap().with_keys(Some(keys.clone()));
    let secret = "s3aled-Value-at-rest";
    deploy(&reg, "sealed", &[("TOKEN", secret)]).await;
    deploy(&reg, "open", &[]).await;

    // A NATS reader without the key: the KV entry, and JetStream's files on disk, hold ciphertext only.
    let kv = js.get_key_value(REGISTRY_BUCKET).await.unwrap();
    let raw = kv.get("functions.sealed").await.unwrap().unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.contains("\"TOKEN\":\"sealed:v3:") && !raw.contains(secret), "{raw}");
    let on_disk = || {
        let mut files = Vec::new();
        files_under(nats.dir.path(), &mut files);
        files
            .iter()
            .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
            .collect::<Vec<_>>()
    };
    support::wait_for("the sealed entry on disk", LONG, || on_disk().iter().any(|t| t.contains("sealed:v3:"))).await;
    assert!(!on_disk().iter().any(|t| t.contains(secret)), "JetStream's files hold the value in clear");

    // With the key it opens; without one, listing works and deploying is refused with what to do.
    let stored = reg.function("sealed").await.unwrap().unwrap();
    assert_eq!(reg.open_settings(stored.clone()).unwrap().settings.get("TOKEN"), Some(secret));
    let keyless = Registry::open(&js).await.unwrap();
    let f = reg.open_settings(stored).unwrap();
    let err = keyless.put_function(&f).await.unwrap_err().to_string();
    assert!(err.contains("--settings-key-file") && err.contains("riposte settings-key new"), "{err}");
    assert!(!err.contains(secret), "{err}");
    assert_eq!(keyless.functions().await.unwrap()["sealed"].settings.names().collect::<Vec<_>>(), ["TOKEN"]);

    // A watch with another key says why it refuses that function, naming the key it lacks.
    let other_dir = tempfile::tempdir().unwrap();
    let other = SettingsKeys::load_or_generate(&other_dir.path().join("k")).unwrap();
    let watch = Registry::open(&js).await.unwrap().with_keys(Some(other.clone())).watch().await.unwrap();
    let mut refusals = watch
        .filter_map(|c| async move {
            match c {
                Ok(Change::Refused(name, e)) => Some((name, e.to_string())),
                _ => None,
            }
        })
        .boxed();
    let (name, why) = tokio::time::timeout(Duration::from_secs(10), refusals.next()).await.unwrap().unwrap();
    assert_eq!(name, "sealed");
    assert!(why.contains(keys.sealing_key_id()) && why.contains("--settings-key-file"), "{why}");

    // A runner with another key refuses that function (its heartbeat says why) and runs the other.
    let wrong = runner_with(&nats, "wrong-key", Some(other)).await;
    let client = nats.client().await;
    client.publish("falco.error.x", support::runner::alert("sealed-1").into()).await.unwrap();
    client.flush().await.unwrap();
    wait_until("the other function's result", LONG, || {
        let js = js.clone();
        async move { !read_results(&js, Some("open"), None).await.unwrap_or_default().is_empty() }
    })
    .await;
    assert!(wrong.active_triggers().contains("open-t") && !wrong.active_triggers().contains("sealed-t"));
    let store = riposte::nats::fleet::open(&js).await.unwrap();
    wait_until("the refusal in the heartbeat", LONG, || {
        let store = store.clone();
        async move {
            let runners = riposte::nats::fleet::runners(&store).await.unwrap_or_default();
            runners.iter().any(|r| r.heartbeat.refused.get("sealed").is_some_and(|why| why.contains("settings key")))
        }
    })
    .await;
    assert!(read_results(&js, Some("sealed"), None).await.unwrap().is_empty());
    wrong.stop().await;

    // Its alert waited in JetStream: a runner with the key runs it.
    let right = runner_with(&nats, "right-key", Some(keys)).await;
    wait_until("the sealed function's result", LONG, || {
        let js = js.clone();
        async move { !read_results(&js, Some("sealed"), None).await.unwrap_or_default().is_empty() }
    })
    .await;
    assert_eq!(read_results(&js, Some("sealed"), None).await.unwrap()[0].status, Status::Ok);
    right.stop().await;
}

async fn runner_with(nats: &TestNats, name: &str, keys: Option<SettingsKeys>) -> riposte::runner::Runner {
    let config =
        riposte::runner::RunnerConfig { max_in_flight: 16, settings_keys: keys, ..support::runner::test_config(name) };
    riposte::runner::Runner::start(nats.client().await, config, support::runner::recorded()).await.unwrap()
}

#[test]
fn deploying_secret_settings_to_a_nats_without_a_key_is_refused_with_how_to_make_one() {
    let nats = TestNats::start();
    let dir = tempfile::tempdir().unwrap();
    let (wasm, manifest) = (dir.path().join("ok.wasm"), dir.path().join("playbook.toml"));
    std::fs::write(&wasm, guests::ok()).unwrap();
    std::fs::write(&manifest, "name = \"keyed\"\nkind = \"wasm\"\n[settings.TOKEN]\n").unwrap();
    let deploy = |key: Option<&Path>| {
        let mut c = support::riposte_bin(&support::shared_state());
        c.env("RIPOSTE_NATS_URL", nats.url()).env_remove("RIPOSTE_SETTINGS_KEY_FILE");
        c.args(["function", "deploy", "keyed", "--wasm", wasm.to_str().unwrap()]);
        c.args(["--manifest", manifest.to_str().unwrap(), "-e", "TOKEN=s3cr3t-token"]);
        if let Some(key) = key {
            c.args(["--settings-key-file", key.to_str().unwrap()]);
        }
        c.output().unwrap()
    };
    let out = deploy(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no settings key was given") && stderr.contains("riposte settings-key new FILE"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t-token"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // `settings-key new` makes a private key file, never overwrites one, and deploying with it works.
    let key = dir.path().join("settings.key");
    let new =
        || support::riposte_bin(dir.path()).args(["settings-key", "new", key.to_str().unwrap()]).output().unwrap();
    let out = new();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--settings-key-file"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(&key).unwrap();
    assert!(!new().status.success());
    assert_eq!(std::fs::read(&key).unwrap(), before, "not overwritten");
    let out = deploy(Some(&key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A key file that cannot be read is refused before the playbook is built (nothing lands in the state).
    let state = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.key");
    let out = support::riposte_bin(state.path())
        .current_dir(support::root())
        .env("RIPOSTE_NATS_URL", nats.url())
        .args(["deploy-playbook", "-p", "slack", "-e", "SLACK_WEBHOOK_URL=https://hooks.invalid/x", "-t", "falco.>"])
        .args(["--settings-key-file", missing.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no-such.key"), "{stderr}");
    assert!(!state.path().join("components").exists(), "built before the key was read: {stderr}");
    // So is a secret setting with no key at all: refused before the build, the value never shown.
    let out = support::riposte_bin(state.path())
        .current_dir(support::root())
        .env("RIPOSTE_NATS_URL", nats.url())
        .env_remove("RIPOSTE_SETTINGS_KEY_FILE")
        .args([
            "deploy-playbook",
            "-p",
            "slack",
            "-e",
            "SLACK_WEBHOOK_URL=https://hooks.invalid/s3cr3t",
            "-t",
            "falco.>",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no settings key was given"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(!state.path().join("components").exists(), "built before the missing key was noticed: {stderr}");
}
