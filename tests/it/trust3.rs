//! Issue 23, §6, §7, §8 and §10, through the `riposte` binary against real nats-servers: a swapped artifact
//! cannot open a function's sealed settings, a forged result or heartbeat is not shown as real, the alert stream
//! is bounded (and an unbounded one is bounded when a runner ensures it), and a container manifest naming a host
//! file is refused at deploy even with no container engine at hand.

use crate::support;

use std::path::Path;
use support::nats::TestNats;
use support::{riposte_bin, wait_until};

/// `riposte ARGS` with the state `state` and catalog `catalog`, no container engine reachable; (success, stdout,
/// stderr).
fn riposte_without_engine(state: &Path, catalog: &Path, args: &[&str]) -> (bool, String, String) {
    let out = riposte_bin(state)
        .env("RIPOSTE_PLAYBOOKS", catalog)
        .env("DOCKER_HOST", "unix:///nonexistent/riposte-test/docker.sock")
        .env("XDG_RUNTIME_DIR", "/nonexistent/riposte-test")
        .env_remove("RIPOSTE_CONTAINER_HOST")
        .env_remove("RIPOSTE_CONTEXT_ALLOW")
        .env_remove("CONTAINER_HOST")
        .args(args)
        .output()
        .unwrap();
    support::outcome(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_manifest_naming_a_host_file_is_refused_at_deploy_with_no_engine_and_nothing_is_written() {
    let nats = TestNats::start();
    let url = nats.url();
    let catalog = tempfile::tempdir().unwrap();
    let dir = catalog.path().join("shadow");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("Containerfile"), "FROM scratch\nCOPY s /s\n").unwrap();
    std::fs::write(
        dir.join("playbook.toml"),
        "name = \"shadow\"\nkind = \"container\"\n[container]\nimage = \"localhost/riposte-test-shadow:1\"\ncontainerfile = \"Containerfile\"\ncontext = { s = \"/etc/shadow\" }\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| riposte_without_engine(state.path(), catalog.path(), args);

    let (ok, out, err) = run(&["function", "deploy", "shadow", "--playbook", "shadow", "--nats", &url]);
    assert!(!ok, "deployed: {out}{err}");
    assert!(err.contains("[container] context s = \"/etc/shadow\" is outside the playbook folder"), "{err}");
    assert!(err.contains("--context-allow /etc/shadow"), "{err}");
    let (ok, out, err) = run(&["deploy-playbook", "-p", "shadow", "-t", "falco.notice.*", "--nats", &url]);
    assert!(!ok && err.contains("--context-allow /etc/shadow"), "deployed: {out}{err}");

    let (ok, out, err) = run(&["function", "list", "--nats", &url]);
    assert!(ok, "{err}");
    assert!(!out.contains("shadow"), "the refused manifest is in the registry: {out}");
    let (ok, out, err) = run(&["trigger", "list", "--nats", &url]);
    assert!(ok && !out.contains("shadow"), "{out}{err}");

    // A file the folder holds is fine without an engine: deployed, and the note says the runners need the image.
    std::fs::write(dir.join("s"), "not a secret").unwrap();
    let manifest = std::fs::read_to_string(dir.join("playbook.toml")).unwrap().replace("/etc/shadow", "s");
    std::fs::write(dir.join("playbook.toml"), manifest).unwrap();
    let (ok, out, err) = run(&["function", "deploy", "shadow", "--playbook", "shadow", "--nats", &url]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = run(&["function", "list", "--nats", &url]);
    assert!(out.contains("shadow"), "{out}");
}

const LONG: std::time::Duration = std::time::Duration::from_secs(120);

/// `riposte ARGS` on the shared state (settings key, compile cache); (success, stdout, stderr).
fn riposte(args: &[&str]) -> (bool, String, String) {
    support::outcome(riposte_bin(&support::shared_state()).args(args).output().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_entry_rewritten_to_other_code_cannot_open_its_settings_and_each_alert_says_redeploy() {
    use riposte::model::execution::Status;
    let nats = TestNats::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.wasm");
    std::fs::write(&original, support::guests::requires_setting("TOKEN")).unwrap();
    let manifest = dir.path().join("playbook.toml");
    std::fs::write(&manifest, "name = \"bound\"\nkind = \"wasm\"\n[settings.TOKEN]\nrequired = true\n").unwrap();
    let (original, manifest) = (original.to_str().unwrap(), manifest.to_str().unwrap());
    let deploy = || {
        let (ok, out, err) = riposte(&[
            "function",
            "deploy",
            "bound",
            "--wasm",
            original,
            "--manifest",
            manifest,
            "-e",
            "TOKEN=canary-Tok3n-0451",
            "--nats",
            &url,
        ]);
        assert!(ok, "{out}{err}");
    };
    deploy();
    let (ok, out, err) =
        riposte(&["trigger", "create", "bound-t", "--function", "bound", "--topic", "falco.error.*", "--nats", &url]);
    assert!(ok, "{out}{err}");
    let mut runner = riposte_bin(&support::shared_state())
        .args(["run", "--nats", &url, "--name", "bound-runner"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let results = || riposte::nats::results::read_results(&js, Some("bound"), None);
    let alert = |uuid: &str| {
        let (client, body) = (client.clone(), support::runner::alert(uuid));
        async move {
            client.publish("falco.error.x", body.into()).await.unwrap();
            client.flush().await.unwrap();
        }
    };
    // Published until the runner (starting meanwhile) has run one: the deployed code opens its setting.
    wait_until("the deployed function to run", LONG, || async {
        alert(&uuid::Uuid::new_v4().to_string()).await;
        results().await.unwrap_or_default().iter().any(|r| r.status == Status::Ok)
    })
    .await;

    // A registry writer without the key points the entry at another component, keeping the sealed setting.
    let kv = js.get_key_value("riposte-registry").await.unwrap();
    let stored = kv.get("functions.bound").await.unwrap().unwrap();
    let mut entry: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    let thief =
        riposte::nats::registry::Registry::open(&js).await.unwrap().put_artifact(&support::guests::ok()).await.unwrap();
    entry["artifact"] = thief.into();
    kv.put("functions.bound", entry.to_string().into()).await.unwrap();
    wait_until("the runner to refuse the rewritten function", LONG, || async {
        riposte(&["runner", "list", "--nats", &url]).1.contains("refuses function bound")
    })
    .await;
    let stolen = "stolen-0";
    wait_until("the swapped function's alert to be recorded", LONG, || async {
        alert(stolen).await;
        results().await.unwrap_or_default().iter().any(|r| r.alert_uuid == stolen)
    })
    .await;
    let records = results().await.unwrap();
    let record = records.iter().find(|r| r.alert_uuid == stolen).unwrap();
    assert_eq!(record.status, Status::MissingSetting, "the new code ran with the secret: {record:?}");
    assert!(
        record.message.contains("artifact or manifest") && record.message.contains("deploy the function again"),
        "{}",
        record.message
    );
    assert!(!record.message.contains("canary-Tok3n-0451"));
    assert!(records.iter().filter(|r| r.alert_uuid == stolen).all(|r| r.status == Status::MissingSetting));
    assert!(runner.try_wait().unwrap().is_none(), "the runner is still running");

    // Deployed again with the key: sealed for the code deployed, and it runs.
    deploy();
    wait_until("the redeployed function to run", LONG, || async {
        alert("after-redeploy").await;
        results().await.unwrap_or_default().iter().any(|r| r.alert_uuid == "after-redeploy" && r.status == Status::Ok)
    })
    .await;
    runner.kill().unwrap();
    let _ = runner.wait();
}

/// A result record as a runner publishes it, claiming `function` and `runner`.
fn record(function: &str, runner: &str, uuid: &str) -> serde_json::Value {
    serde_json::json!({
        "function": function, "trigger": format!("{function}-t"), "runner": runner, "alert_uuid": uuid,
        "subject": "falco.error.x", "attempt": 1, "status": "ok", "disposition": "acked", "duration_us": 1,
        "instantiate_us": 0, "latency_us": 1, "message": "done", "time": "2026-12-04T00:00:00Z"
    })
}

/// A heartbeat claiming runner `name`, alive.
fn heartbeat(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name, "host": "h", "version": "0", "started_at": "2026-12-04T00:00:00Z", "functions": [],
        "in_flight": 0, "handled": 0, "failed": 0, "unstored": 0,
        "container_engine": {"available": false, "detail": ""}, "kubernetes": {"available": false, "detail": ""}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_credential_cannot_publish_as_another_runner_and_forged_records_are_not_shown() {
    let nats = TestNats::start_with_config(&crate::nats_auth::readme_least_privilege());
    let port = nats.port();
    let deployer = format!("nats://deployer:change-me-deployer@127.0.0.1:{port}");
    let runner_a = format!("nats://runner-a:change-me-runner@127.0.0.1:{port}");
    // The deployer makes the streams and a function pinned to a runner no one runs.
    let (ok, out, err) = riposte(&["function", "list", "--nats", &deployer]);
    assert!(ok, "{out}{err}");
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("ok.wasm");
    std::fs::write(&wasm, support::guests::ok()).unwrap();
    let (ok, out, err) = riposte(&[
        "function",
        "deploy",
        "real-f",
        "--wasm",
        wasm.to_str().unwrap(),
        "--runs-on",
        "ghost",
        "--nats",
        &deployer,
    ]);
    assert!(ok, "{out}{err}");

    let config =
        riposte::nats::connect::NatsConfig { url: Some(runner_a.clone()), name: "forger".into(), ..Default::default() };
    let client = config.connect(&runner_a, None).await.unwrap();
    let js =
        async_nats::jetstream::context::ContextBuilder::new().timeout(std::time::Duration::from_secs(2)).build(client);
    let publish = |subject: String, body: serde_json::Value| {
        let js = js.clone();
        async move {
            match js.publish(subject, body.to_string().into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    };
    // Under another runner's name: the server refuses.
    assert!(!publish("riposte.results.real-f.runner-b".into(), record("real-f", "runner-b", "u1")).await);
    assert!(!publish("riposte.results.real-f".into(), record("real-f", "runner-b", "u2")).await, "the old subject");
    let runners = js.get_key_value("riposte-runners").await.unwrap();
    assert!(runners.put("runners.ghost", heartbeat("ghost").to_string().into()).await.is_err());
    // Under its own name, claiming someone else: stored, and not shown.
    assert!(publish("riposte.results.real-f.runner-a".into(), record("real-f", "runner-b", "u3")).await);
    assert!(publish("riposte.results.other-f.runner-a".into(), record("real-f", "runner-a", "u4")).await);
    runners.put("runners.runner-a", heartbeat("ghost").to_string().into()).await.unwrap();

    let (ok, out, err) = riposte(&["function", "logs", "real-f", "--all", "--json", "--nats", &deployer]);
    assert!(ok, "{err}");
    assert!(out.trim().is_empty(), "a forged record is shown: {out}");
    assert!(err.contains("2 record(s) in RIPOSTE_RESULTS not shown") || err.contains("not shown"), "{err}");
    let (ok, out, err) = riposte(&["function", "top", "--nats", &deployer]);
    assert!(ok && !out.contains("real-f"), "forged records are counted: {out}{err}");
    let (ok, out, err) = riposte(&["runner", "list", "--nats", &deployer]);
    assert!(ok, "{err}");
    assert!(!out.contains("ghost") && !out.contains("alive"), "a forged heartbeat is shown: {out}");
    assert!(err.contains("function real-f is pinned (--runs-on) to runner ghost"), "the warning is hidden: {err}");
}

/// The `stream NAME` check of `riposte doctor --json --nats URL`.
fn doctor_stream(url: &str, name: &str) -> serde_json::Value {
    let (_, out, err) = riposte(&["doctor", "--json", "--nats", url]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let check = format!("stream {name}");
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == check).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_stream_made_unbounded_is_bounded_by_the_runner_and_a_flood_keeps_the_newest_alerts() {
    use async_nats::jetstream::stream;
    let nats = TestNats::start();
    let url = nats.url();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    // The alert stream as an earlier riposte made it: no max_bytes, no max_msg_size.
    js.create_stream(stream::Config {
        name: "FALCO".into(),
        subjects: vec!["falco.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let check = doctor_stream(&url, "FALCO");
    assert_eq!(check["level"], "warning", "{check:#}");
    assert!(check["detail"].as_str().unwrap().contains("unbounded"), "{check:#}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut runner = riposte_bin(&support::shared_state())
        .args(["run", "--nats", &url, "--name", "bounded-runner", "--metrics-addr", &addr])
        .args(["--alert-stream-max-bytes", "64K", "--alert-max-bytes", "4K"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let config = || async {
        let mut s = js.get_stream("FALCO").await.unwrap();
        s.info().await.unwrap().clone()
    };
    wait_until("the runner to bound the alert stream", LONG, || async {
        let info = config().await;
        info.config.max_bytes == 64 * 1024 && info.config.max_message_size == 4096
    })
    .await;
    assert_eq!(config().await.config.discard, stream::DiscardPolicy::Old);

    // A flood of 2 KiB alerts: every one is taken, the stream stays within its bound, the newest are kept.
    let padding = "x".repeat(2000);
    let mut last = String::new();
    for i in 0..100 {
        last = format!("flood-{i}");
        let body = support::runner::alert_with(&last, &padding);
        js.publish("falco.error.flood", body.into()).await.unwrap().await.unwrap();
    }
    let info = config().await;
    assert!(info.state.bytes <= 64 * 1024, "{:?}", info.state);
    assert!(info.state.first_sequence > 1, "the oldest were discarded: {:?}", info.state);
    let newest = js.get_stream("FALCO").await.unwrap().get_raw_message(info.state.last_sequence).await.unwrap();
    assert!(String::from_utf8_lossy(&newest.payload).contains(&last), "the newest alert survives");
    // An alert over --alert-max-bytes is refused by the server.
    let big = support::runner::alert_with("too-big", &"y".repeat(8000));
    let refused = match js.publish("falco.error.big", big.into()).await {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "an alert over max_msg_size was stored");

    // How full it is: in the runner's metrics and in doctor.
    wait_until("the stream's bound in the metrics", LONG, || async {
        let Ok(r) = reqwest::get(format!("http://{addr}/metrics")).await else { return false };
        let text = r.text().await.unwrap_or_default();
        text.contains("riposte_stream_max_bytes{stream=\"FALCO\"} 65536")
            && text.lines().any(|l| l.starts_with("riposte_stream_bytes{stream=\"FALCO\"} "))
    })
    .await;
    let check = doctor_stream(&url, "FALCO");
    assert_eq!(check["level"], "warning", "{check:#}");
    assert!(check["detail"].as_str().unwrap().contains("nearly full"), "{check:#}");
    runner.kill().unwrap();
    let _ = runner.wait();
}
