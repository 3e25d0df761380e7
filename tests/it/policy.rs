//! The response policy against a real nats-server: trigger conditions (CEL), deduplication shared by two
//! runners, live dry-run (no request reaches a receiver or the Kubernetes emulator), and a 429 with
//! `Retry-After` retried after the delay the server asked for.

use crate::support;

use riposte::execute::capability::http::{HttpClient, HttpConfig};
use riposte::execute::capability::recording::Recorder;
use riposte::execute::capability::Backends;
use riposte::model::execution::Status;
use riposte::model::function::{Dedup, ResponsePolicy, Settings};
use riposte::nats::results::Disposition;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::fleet::{self, alert, publish, results};
use support::nats::TestNats;
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(60);

fn riposte_bin(nats: &TestNats) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riposte"));
    c.env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("RIPOSTE_PLAYBOOKS", support::root().join("playbooks"))
        .env("RIPOSTE_NATS_URL", nats.url())
        .env("RIPOSTE_SETTINGS_KEY_FILE", support::settings_key())
        .env("RUST_LOG", "warn");
    c
}

fn dedup(window_ms: u64) -> ResponsePolicy {
    ResponsePolicy { dry_run: false, dedup: Some(Dedup { window_ms, key: None }) }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_acks_the_alerts_it_rejects_without_running_them_and_records_those_it_cannot_judge() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "cond", &guests::ok(), "", ResponsePolicy::default()).await;
    let when = "priority >= Critical && alert.output_fields['k8s.ns.name'] != 'kube-system'";
    fleet::trigger(&reg, "cond-t", &f, "falco.>", Some(when)).await;
    let runner = fleet::runner(&nats, "r1", None).await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("cond-t") }).await;
    let ns = |n: &str| json!({"k8s.ns.name": n});
    let alerts = [
        ("match", "Critical", ns("prod")),
        ("above", "Emergency", ns("prod")),
        ("too-low", "Error", ns("prod")),
        ("system", "Critical", ns("kube-system")),
        ("no-ns", "Critical", json!({})),
    ];
    let batch: Vec<(String, String)> = alerts
        .iter()
        .map(|(u, p, fields)| (format!("falco.{}.x", p.to_lowercase()), alert(u, p, "X", "x happened", fields.clone())))
        .collect();
    publish(&nats.client().await, &batch).await;
    wait_until("two runs, two skipped and one condition error", LONG, || async {
        let c = runner.trigger_counts().get("cond-t").copied().unwrap_or_default();
        c.succeeded == 2 && c.skipped_by_condition == 2 && c.condition_errors == 1
    })
    .await;
    // The counts reach `riposte runner list` with the runner's next heartbeat, each under its own name.
    wait_until("the counts in the runner's heartbeat", LONG, || async {
        let out = riposte_bin(&nats).args(["runner", "list", "--json"]).output().unwrap();
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        listing["runners"][0]["triggers"]["cond-t"]
            == json!({"alerts_received": 5, "deliveries": 5, "succeeded": 2, "skipped_by_condition": 2, "condition_errors": 1})
    })
    .await;
    let out = riposte_bin(&nats).args(["runner", "list"]).output().unwrap();
    let (table, warned) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let line = "trigger cond-t: received 5 (deliveries 5, redeliveries 0), succeeded 2, failed 0, dead-lettered 0, \
                skipped by condition 2, condition errors 1, deduplicated 0, dry-run 0, already handled 0, unstored 0";
    assert!(table.contains(line), "{table}");
    assert!(warned.contains("trigger cond-t: its condition could not be evaluated on 1 alert(s)"), "{warned}");
    let out = riposte_bin(&nats).args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "conditions").unwrap().clone();
    assert_eq!(check["level"], "warning", "{check}");
    assert!(check["detail"].as_str().unwrap().contains("cond-t (1)"), "{check}");
    let records = results(&reg, "cond").await;
    let mut ran: Vec<&str> = records.iter().filter(|r| r.status == Status::Ok).map(|r| r.alert_uuid.as_str()).collect();
    ran.sort();
    assert_eq!(ran, ["above", "match"], "rejected alerts store no result");
    // The alert the condition could not judge is not silent: its result says so, and it did not run.
    let unjudged: Vec<_> = records.iter().filter(|r| r.status != Status::Ok).collect();
    assert_eq!(unjudged.len(), 1, "{records:?}");
    let r = unjudged[0];
    assert_eq!(
        (r.alert_uuid.as_str(), r.status, r.disposition),
        ("no-ns", Status::ConditionError, Disposition::Skipped)
    );
    assert!(
        r.message.contains("could not be evaluated") && r.message.contains("--on-condition-error run"),
        "{}",
        r.message
    );
    let out = riposte_bin(&nats).args(["function", "logs", "cond"]).output().unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.lines().any(|l| l.contains("condition-error") && l.contains("skipped")), "{logs}");
    let out = riposte_bin(&nats).args(["function", "top"]).output().unwrap();
    let top = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = top.lines().find(|l| l.starts_with("cond ")).unwrap().split_whitespace().collect();
    assert_eq!((row[1], row[7]), ("2", "1"), "two executions, one condition error: {top}");
    let consumer = riposte::model::trigger::Trigger {
        name: "cond-t".into(),
        function: "cond".into(),
        topic: "falco.>".into(),
        when: None,
        on_condition_error: Default::default(),
    }
    .consumer_name();
    wait_until("every alert acked", LONG, || async {
        let mut c: async_nats::jetstream::consumer::PullConsumer = reg
            .jetstream()
            .get_consumer_from_stream(consumer.as_str(), riposte::nats::streams::ALERT_STREAM)
            .await
            .unwrap();
        c.info().await.map(|i| i.num_ack_pending == 0 && i.num_pending == 0).unwrap_or(false)
    })
    .await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_conditions_are_refused_at_create_time_with_their_position() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    fleet::deploy(&reg, "f", &guests::ok(), "", ResponsePolicy::default()).await;
    let out = riposte_bin(&nats)
        .args(["trigger", "create", "t1", "--function", "f", "--topic", "falco.>", "--when", "alert.rul == 'x'"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 1, column 6") && stderr.contains("no field `rul`"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let out = riposte_bin(&nats)
        .args(["deploy-playbook", "-p", "slack", "-e", "SLACK_WEBHOOK_URL=http://127.0.0.1:9/x", "-t", "falco.>"])
        .args(["--when", "priority >= 'Critical'"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("priority >= Critical"), "{stderr}");
    assert!(reg.triggers().await.unwrap().is_empty(), "nothing written");
    assert!(reg.function("falco-slack").await.unwrap().is_none(), "nothing written");

    let good = "priority >= Critical";
    let out = riposte_bin(&nats)
        .args(["trigger", "create", "t1", "--function", "f", "--topic", "falco.>", "--when", good])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = riposte_bin(&nats).args(["trigger", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.lines().any(|l| l.starts_with("t1 ") && l.ends_with(good)), "{listing}");

    // `function deploy --when` checks the condition and the dedup flags first, then sets the condition on
    // every trigger of the function.
    let wasm = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-ok.wasm");
    std::fs::write(&wasm, guests::ok()).unwrap();
    let deploy = |extra: &[&str]| {
        let mut c = riposte_bin(&nats);
        c.args(["function", "deploy", "f", "--wasm", wasm.to_str().unwrap()]).args(extra);
        c.output().unwrap()
    };
    let refused = [
        (&["--when", "alert.output_fields.exists(k,\n alert.tags.exists(t, t == k))"][..], "line 2, column"),
        (&["--dedup-window", "60s", "--dedup-key", "alert.nosuch"][..], "no field `nosuch`"),
        (&["--dedup-window", "8d"][..], "1s to 7d"),
        (
            &["--dedup-window", "60s", "--dedup-key", "alert.output_fields.k8s.pod.name"][..],
            r#"alert.output_fields["k8s.pod.name"]"#,
        ),
    ];
    for (args, why) in refused {
        let out = deploy(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    assert_eq!(reg.function("f").await.unwrap().unwrap().policy, ResponsePolicy::default(), "nothing written");
    let out = deploy(&["--when", "alert.source == 'syscall'", "--dedup-window", "90s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reg.triggers().await.unwrap()["t1"].when.as_deref(), Some("alert.source == 'syscall'"));
    assert_eq!(reg.function("f").await.unwrap().unwrap().policy, dedup(90_000));
    // The choice for alerts the condition cannot judge goes with --when, and `trigger list` shows it.
    let out = deploy(&["--on-condition-error", "run"]);
    assert!(!out.status.success(), "--on-condition-error without --when is refused");
    let out = deploy(&["--when", "alert.source == 'syscall'", "--on-condition-error", "run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("when alert.source == 'syscall' (on condition error: run)"));
    assert_eq!(reg.triggers().await.unwrap()["t1"].on_condition_error, riposte::model::trigger::OnConditionError::Run);
    let out = riposte_bin(&nats).args(["trigger", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("alert.source == 'syscall' (on condition error: run)"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_selecting_a_dotted_output_field_is_refused_with_the_index_to_write() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    fleet::deploy(&reg, "f", &guests::ok(), "", ResponsePolicy::default()).await;
    let create = |when: &str, extra: &[&str]| {
        let mut c = riposte_bin(&nats);
        c.args(["trigger", "create", "t1", "--function", "f", "--topic", "falco.>", "--when", when]).args(extra);
        c.output().unwrap()
    };
    let out = create(r#"alert.output_fields.k8s.ns.name != "kube-system""#, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(stderr.contains(r#"write alert.output_fields["k8s.ns.name"]"#), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    // One the checker can tell fails on every alert that has the fields it names.
    let out = create("alert.tags['shell'] == 'x'", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("fails on every alert that has the fields it names"), "{stderr}");
    let out = create("priority >= Critical", &["--on-condition-error", "sometimes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("write skip"), "{stderr}");
    assert!(reg.triggers().await.unwrap().is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_with_on_condition_error_run_runs_the_alerts_its_condition_cannot_judge_and_counts_them() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    fleet::deploy(&reg, "lenient", &guests::ok(), "", ResponsePolicy::default()).await;
    let when = "alert.output_fields['k8s.ns.name'] != 'kube-system'";
    let out = riposte_bin(&nats)
        .args(["trigger", "create", "lenient-t", "--function", "lenient", "--topic", "falco.>", "--when", when])
        .args(["--on-condition-error", "run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(on condition error: run)"));
    let stored = &reg.triggers().await.unwrap()["lenient-t"];
    assert_eq!(stored.on_condition_error, riposte::model::trigger::OnConditionError::Run, "kept in the registry");
    let runner = fleet::runner(&nats, "r1", None).await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("lenient-t") }).await;
    let batch = [
        ("falco.critical.x".to_owned(), alert("no-ns", "Critical", "X", "x", json!({}))),
        ("falco.critical.x".to_owned(), alert("system", "Critical", "X", "x", json!({"k8s.ns.name": "kube-system"}))),
    ];
    publish(&nats.client().await, &batch).await;
    wait_until("one run despite the error, one skipped", LONG, || async {
        let c = runner.trigger_counts().get("lenient-t").copied().unwrap_or_default();
        c.succeeded == 1 && c.condition_errors == 1 && c.skipped_by_condition == 1
    })
    .await;
    let records = results(&reg, "lenient").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].alert_uuid.as_str(), records[0].status), ("no-ns", Status::Ok));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn arming_a_dry_run_never_inherits_its_dedup_claims() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let policy = |dry_run: bool| ResponsePolicy { dry_run, dedup: Some(Dedup { window_ms: 600_000, key: None }) };
    let f = fleet::deploy(&reg, "armed", &guests::ok(), "", policy(true)).await;
    fleet::trigger(&reg, "armed-t", &f, "falco.>", None).await;
    let runner = fleet::runner(&nats, "r1", None).await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("armed-t") }).await;
    let x = |uuid: &str| vec![("falco.error.x".to_owned(), alert(uuid, "Error", "X", "shell in pod web", json!({})))];
    publish(&nats.client().await, &x("dry")).await;
    wait_until("the dry run's result", LONG, || async { !results(&reg, "armed").await.is_empty() }).await;
    let dry = results(&reg, "armed").await.remove(0);
    assert_eq!(dry.disposition, Disposition::DryRun);
    assert_eq!(dry.dedup_key.as_deref(), Some("X\nError shell in pod web"), "the key it would have claimed");
    let out = riposte_bin(&nats).args(["function", "logs", "armed"]).output().unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("(dedup key: X Error shell in pod web)"), "{logs}");

    // Armed, the same alert (a new uuid) runs: the dry run's claim is in the dry run's memory only. Until the
    // runner has the armed version, an alert may still be dry-run (and deduplicated there): publish until an
    // armed result arrives; had arming inherited the claim, every armed result would be `deduplicated`.
    fleet::deploy(&reg, "armed", &guests::ok(), "", policy(false)).await;
    let mut tries = 0;
    wait_until("an armed reaction to the same alert", LONG, || {
        tries += 1;
        let (uuid, reg, nats) = (format!("armed-{tries}"), &reg, &nats);
        async move {
            publish(&nats.client().await, &x(&uuid)).await;
            wait_until("its result", LONG, || async {
                results(reg, "armed").await.iter().any(|r| r.alert_uuid == uuid)
            })
            .await;
            let records = results(reg, "armed").await;
            let armed: Vec<_> = records
                .iter()
                .filter(|r| r.disposition != Disposition::DryRun && r.disposition != Disposition::Deduplicated)
                .collect();
            !armed.is_empty()
        }
    })
    .await;
    let records = results(&reg, "armed").await;
    let first_armed = records.iter().find(|r| r.disposition == Disposition::Acked).expect("an armed run");
    assert_eq!(first_armed.status, Status::Ok);
    assert_eq!(first_armed.dedup_key.as_deref(), Some("X\nError shell in pod web"));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_react_once_to_a_storm_of_one_alert_per_window_and_once_per_key() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "storm", &guests::ok(), "concurrency = 32", dedup(3000)).await;
    fleet::trigger(&reg, "storm-t", &f, "falco.>", None).await;
    let (r1, r2) = (fleet::runner(&nats, "r1", None).await, fleet::runner(&nats, "r2", None).await);
    for r in [&r1, &r2] {
        wait_until("the trigger to start", LONG, || async { r.active_triggers().contains("storm-t") }).await;
    }
    let copies = |prefix: &str, n: usize, output: &str| -> Vec<(String, String)> {
        (0..n)
            .map(|i| ("falco.error.x".to_owned(), alert(&format!("{prefix}-{i}"), "Error", "X", output, json!({}))))
            .collect()
    };
    let count = |records: &[riposte::nats::results::ResultRecord], d: Disposition| {
        records.iter().filter(|r| r.disposition == d).count()
    };
    publish(&nats.client().await, &copies("a", 200, "shell in pod web")).await;
    wait_until("200 results", LONG, || async { results(&reg, "storm").await.len() == 200 }).await;
    let records = results(&reg, "storm").await;
    assert_eq!(count(&records, Disposition::Acked), 1, "exactly one reaction");
    assert_eq!(count(&records, Disposition::Deduplicated), 199);
    let runners: std::collections::HashSet<&str> = records.iter().map(|r| r.runner.as_str()).collect();
    assert_eq!(runners.len(), 2, "both runners took part: {runners:?}");

    // After the window, the key is free again: the same alert runs once more.
    wait_until("the key to expire", LONG, || async {
        let mut s = reg.jetstream().get_stream(riposte::nats::dedup::stream_name("storm")).await.unwrap();
        s.info().await.map(|i| i.state.messages == 0).unwrap_or(false)
    })
    .await;
    publish(&nats.client().await, &copies("b", 20, "shell in pod web")).await;
    // Different keys: one reaction each.
    let mut distinct = copies("c", 10, "shell in pod db");
    distinct.extend(copies("d", 10, "shell in pod cache"));
    publish(&nats.client().await, &distinct).await;
    wait_until("240 results", LONG, || async { results(&reg, "storm").await.len() == 240 }).await;
    let records = results(&reg, "storm").await;
    let acked: Vec<&str> =
        records.iter().filter(|r| r.disposition == Disposition::Acked).map(|r| &r.alert_uuid[..1]).collect::<Vec<_>>();
    let mut by_batch = acked.clone();
    by_batch.sort();
    assert_eq!(by_batch, ["a", "b", "c", "d"], "one reaction per key and window: {acked:?}");
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_runs_when_the_reaction_holding_its_key_failed_for_good() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "flaky", &guests::fails(), "max_deliver = 1", dedup(60_000)).await;
    fleet::trigger(&reg, "flaky-t", &f, "falco.>", None).await;
    let runner = fleet::runner(&nats, "r1", None).await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("flaky-t") }).await;
    let one = |u: &str| vec![("falco.error.x".to_owned(), alert(u, "Error", "X", "same", json!({})))];
    publish(&nats.client().await, &one("first")).await;
    wait_until("the first to be dead-lettered", LONG, || async { results(&reg, "flaky").await.len() == 1 }).await;
    publish(&nats.client().await, &one("second")).await;
    wait_until("the second result", LONG, || async { results(&reg, "flaky").await.len() == 2 }).await;
    let records = results(&reg, "flaky").await;
    assert!(
        records.iter().all(|r| r.disposition == Disposition::DeadLettered && r.status == Status::Failed),
        "the duplicate ran, it was not swallowed: {records:?}"
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_delete_records_the_call_and_never_reaches_the_cluster() {
    let k = support::kube::KubeEmulator::start().await;
    k.add_pod("default", "nginx", "node-1", Some(("ReplicaSet", "nginx-6799"))).await;
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let manifest = riposte::model::manifest::Manifest::parse(
        "name = \"dry-delete\"\nkind = \"wasm\"\ncapabilities = [\"kubernetes.delete-pod\"]\n",
    )
    .unwrap();
    let policy = ResponsePolicy { dry_run: true, dedup: None };
    let f = fleet::deploy_with(&reg, "dry-delete", &guests::deletes_pod(), manifest, Settings::default(), policy).await;
    fleet::trigger(&reg, "dry-delete-t", &f, "falco.>", None).await;
    let r = Arc::new(Recorder::new());
    let backends = Backends { http: r.clone(), kubernetes: k.backend(), object_store: r };
    let runner = fleet::runner(&nats, "r1", Some(backends)).await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("dry-delete-t") }).await;
    let batch = vec![("falco.error.x".to_owned(), alert("d1", "Error", "X", "x", json!({})))];
    publish(&nats.client().await, &batch).await;
    wait_until("the dry run's result", LONG, || async { !results(&reg, "dry-delete").await.is_empty() }).await;
    let record = results(&reg, "dry-delete").await.remove(0);
    assert_eq!((record.status, record.disposition), (Status::Ok, Disposition::DryRun), "{record:?}");
    assert_eq!(record.host_calls.len(), 1, "{record:?}");
    assert_eq!(record.host_calls[0]["call"], "kubernetes.delete-pod");
    assert_eq!(record.host_calls[0]["namespace"], "default");
    assert_eq!(record.host_calls[0]["name"], "nginx");
    assert!(k.pod("default", "nginx").await.is_some(), "the pod is still there");
    runner.stop().await;
}

/// Builds the slack playbook (cached) and compiles it into the runners' compile cache, as `deploy` does (so a
/// runner's first alert waits for no cold compile), and returns its manifest and component bytes.
fn slack() -> (riposte::model::manifest::Manifest, Vec<u8>) {
    let state = riposte::model::state_dir::StateDir::new(Some(support::shared_state()));
    let builder = riposte::ops::builder::Builder::new(support::root().join("playbooks"), &state);
    tokio::task::block_in_place(|| {
        let built = builder.build("slack").expect("slack builds (componentize-py in .venv)");
        let bytes = std::fs::read(&built.path).unwrap();
        let config = riposte::execute::runtime::RuntimeConfig { cache_dir: state.compiled(), pooling: false };
        riposte::execute::runtime::Runtime::new(&config).unwrap().load(&bytes, "slack").unwrap();
        (builder.manifest("slack").unwrap().1, bytes)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_slack_posts_nothing_and_its_result_holds_the_post_until_redeployed_armed() {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let url = format!("{}/services/T0/B0/SECRET", receiver.uri());
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let deploy = |dry: bool| {
        let mut c = riposte_bin(&nats);
        c.args(["deploy-playbook", "-p", "slack", "-e", &format!("SLACK_WEBHOOK_URL={url}"), "-t", "falco.error.*"]);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(deploy(true).contains("dry run"));
    let out = riposte_bin(&nats).args(["function", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.lines().any(|l| l.starts_with("falco-slack ") && l.contains("dry-run")), "{listing}");

    let http = HttpClient::new(&HttpConfig::default()).unwrap();
    let r = Arc::new(Recorder::new());
    let backends = Backends { http: Arc::new(http), kubernetes: r.clone(), object_store: r };
    let runner = fleet::runner(&nats, "r1", Some(backends)).await;
    wait_until("the trigger to start", LONG, || async { !runner.active_triggers().is_empty() }).await;
    let body = support::alert_json("write-below-binary-dir");
    publish(&nats.client().await, &[("falco.error.write_below_binary_dir".into(), body.clone())]).await;
    wait_until("the dry run's result", LONG, || async { !results(&reg, "falco-slack").await.is_empty() }).await;
    let record = results(&reg, "falco-slack").await.remove(0);
    assert_eq!((record.status, record.disposition), (Status::Ok, Disposition::DryRun), "{record:?}");
    assert!(receiver.received_requests().await.unwrap().is_empty(), "a dry run posts nothing");
    let post = &record.host_calls[0];
    assert_eq!((post["call"].as_str(), post["method"].as_str()), (Some("http.send"), Some("POST")), "{post}");
    assert!(post["json"]["text"].as_str().unwrap().contains("File below a known binary directory"), "{post}");
    assert!(!serde_json::to_string(&record).unwrap().contains("SECRET"), "the webhook URL is a secret: {record:?}");

    // Deployed again without --dry-run, it is armed.
    assert!(!deploy(false).contains("dry run"));
    wait_until("the armed function to post", LONG, || async {
        publish(&nats.client().await, &[("falco.error.write_below_binary_dir".into(), body.clone())]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        !receiver.received_requests().await.unwrap().is_empty()
    })
    .await;
    runner.stop().await;

    // `riposte call --dry-run` prints the call and makes none.
    let out = riposte_bin(&nats)
        .args(["call", "slack", "--dry-run", "-e", &format!("SLACK_WEBHOOK_URL={url}")])
        .args(["--alert", support::root().join("specs/alerts/write-below-binary-dir.json").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("dry run, not made") && stdout.contains("\"POST\""), "{stdout}");
    assert!(!stdout.contains("SECRET"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_is_retried_after_the_servers_retry_after_not_the_backoff() {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let (mut manifest, bytes) = slack();
    // A backoff far longer than the test: only the server's one second can bring the retries in time.
    manifest.limits.retry_backoff_ms = 600_000;
    manifest.limits.max_deliver = 3;
    let settings =
        Settings::resolve(&manifest, &[("SLACK_WEBHOOK_URL".into(), format!("{}/services/T0/B0/X", receiver.uri()))])
            .unwrap();
    let f = fleet::deploy_with(&reg, "limited", &bytes, manifest, settings, ResponsePolicy::default()).await;
    fleet::trigger(&reg, "limited-t", &f, "falco.>", None).await;
    let http = HttpClient::new(&HttpConfig::default()).unwrap();
    let r = Arc::new(Recorder::new());
    let runner =
        fleet::runner(&nats, "r1", Some(Backends { http: Arc::new(http), kubernetes: r.clone(), object_store: r }))
            .await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("limited-t") }).await;
    let body = support::alert_json("write-below-binary-dir");
    publish(&nats.client().await, &[("falco.error.write_below_binary_dir".into(), body)]).await;
    wait_until("three results", LONG, || async { results(&reg, "limited").await.len() == 3 }).await;
    let records = results(&reg, "limited").await;
    let seen: Vec<(Disposition, Option<u64>)> = records.iter().map(|r| (r.disposition, r.retry_in_ms)).collect();
    assert_eq!(
        seen,
        [(Disposition::Retry, Some(1000)), (Disposition::Retry, Some(1000)), (Disposition::Acked, None)],
        "{records:?}"
    );
    assert_eq!(receiver.received_requests().await.unwrap().len(), 3);
    runner.stop().await;
}
