//! The trigger engine against a real nats-server (2.9.10 from apt): end to end through `deploy_playbook` and
//! the `riposte` binary, live registry changes, no loss across runner and server restarts, a fleet of two
//! runners, pinning, and the failure path (retry with backoff, dead letter, malformed alerts).
//! Most runners run in-process through the library; the end-to-end and kill tests run the real binary.

use crate::support;

use async_nats::jetstream;
use futures::StreamExt;
use riposte::model::execution::Status;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::trigger::Trigger;
use riposte::nats::registry::Registry;
use riposte::nats::results::{read_deadletters, read_results, Disposition, ResultRecord};
use riposte::runner::Runner;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::nats::TestNats;
use support::{guests, riposte_bin, wait_until};

const LONG: Duration = Duration::from_secs(60);

async fn registry(nats: &TestNats) -> Registry {
    let js = jetstream::new(nats.client().await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    Registry::open(&js).await.unwrap().with_keys(Some(support::settings_keys()))
}

async fn deploy(reg: &Registry, name: &str, bytes: &[u8], limits: &str, runs_on: Option<&str>) -> Function {
    let artifact = reg.put_artifact(bytes).await.unwrap();
    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n[limits]\n{limits}\n")).unwrap();
    let f = Function {
        name: name.into(),
        manifest,
        artifact,
        settings: Settings::default(),
        runs_on: runs_on.map(Into::into),
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
    f
}

async fn add_trigger(reg: &Registry, name: &str, f: &Function, topic: &str) -> Trigger {
    let t = Trigger {
        name: name.into(),
        function: f.name.clone(),
        topic: topic.into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
    t
}

async fn runner(nats: &TestNats, name: &str) -> Runner {
    Runner::start(nats.client().await, support::runner::test_config(name), support::runner::recorded()).await.unwrap()
}

fn alert(uuid: &str, priority: &str, rule: &str) -> String {
    serde_json::json!({
        "uuid": uuid, "output": format!("12:00:00.000000000: {priority} {rule} (user=root)"), "priority": priority,
        "rule": rule, "time": "2024-05-17T15:31:56.746609046Z", "output_fields": {"user.name": "root", "evt.time": 1},
        "source": "syscall", "hostname": "h", "tags": []
    })
    .to_string()
}

/// Publishes `n` alerts with plain core NATS (as falcosidekick does); returns their uuids.
async fn publish(client: &async_nats::Client, subject: &str, prefix: &str, n: usize) -> Vec<String> {
    let uuids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for u in &uuids {
        client.publish(subject.to_owned(), alert(u, "Error", "Write below binary dir").into()).await.unwrap();
    }
    client.flush().await.unwrap();
    // flush only empties the client's buffer; a request on the same connection returns after the server has
    // read every publish before it, so the caller may drop the connection at once.
    // ($JS.API.INFO answers on every server; async-nats cannot parse 2.9's reply, so it is read raw.)
    client.request("$JS.API.INFO", bytes::Bytes::new()).await.unwrap();
    uuids
}

async fn results(reg: &Registry, function: &str) -> Vec<ResultRecord> {
    read_results(reg.jetstream(), Some(function), None).await.unwrap()
}

/// Distinct uuids with an ok result.
async fn handled(reg: &Registry, function: &str) -> HashSet<String> {
    results(reg, function).await.into_iter().filter(|r| r.status == Status::Ok).map(|r| r.alert_uuid).collect()
}

async fn wait_handled(reg: &Registry, function: &str, uuids: &[String]) {
    let want: HashSet<String> = uuids.iter().cloned().collect();
    wait_until(&format!("{} alerts handled by {function}", want.len()), LONG, || async {
        want.is_subset(&handled(reg, function).await)
    })
    .await;
}

async fn alerts_stored(reg: &Registry) -> u64 {
    let mut s = reg.jetstream().get_stream(riposte::nats::streams::ALERT_STREAM).await.unwrap();
    s.info().await.unwrap().state.messages
}

/// Publishes `n` alerts with core NATS while no runner is up and waits until the alert stream holds all of them
/// (the publishing connection stays open until then); returns their uuids.
async fn publish_stored(nats: &TestNats, reg: &Registry, prefix: &str, n: usize) -> Vec<String> {
    let client = nats.client().await;
    let before = alerts_stored(reg).await;
    let uuids = publish(&client, "falco.error.x", prefix, n).await;
    let want = before + n as u64;
    let mut seen = before;
    let deadline = std::time::Instant::now() + LONG;
    while seen != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the alert stream holds {seen} alerts, {want} expected; see {}",
            nats.dir.path().join("nats-server.log").display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = alerts_stored(reg).await;
    }
    drop(client);
    uuids
}

fn spawn_runner(nats: &TestNats, name: &str) -> Child {
    riposte_bin(&support::shared_state())
        .args(["run", "--nats", &nats.url(), "--name", name])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_playbook_slack_then_a_core_nats_alert_reaches_the_receiver() {
    let nats = TestNats::start();
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let out = Command::new(support::root().join("deploy_playbook"))
        .env("RIPOSTE_BIN", env!("CARGO_BIN_EXE_riposte"))
        .env("RIPOSTE_SETTINGS_KEY_FILE", support::settings_key())
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("PATH", format!("{}:{}", support::root().join(".venv/bin").display(), std::env::var("PATH").unwrap()))
        .args(["-p", "slack", "-e", &format!("SLACK_WEBHOOK_URL={}/services/T0/B0/X", receiver.uri())])
        .args(["-t", "falco.error.*", "-t", "falco.critical.*", "--nats", &nats.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("function falco-slack deployed"), "{stdout}");
    assert!(stdout.contains("trigger falco-slack-trigger-0 -> falco-slack on falco.error.*"), "{stdout}");
    assert!(stdout.contains("trigger falco-slack-trigger-1 -> falco-slack on falco.critical.*"), "{stdout}");

    let mut run = spawn_runner(&nats, "e2e");
    let client = nats.client().await;
    let reg = registry(&nats).await;
    publish(&client, "falco.notice.terminal_shell_in_container", "nomatch", 1).await;
    let body = support::alert_json("write-below-binary-dir");
    client.publish("falco.error.write_below_binary_dir", body.into()).await.unwrap();
    client.flush().await.unwrap();
    wait_until("the receiver to get the slack message", LONG, || async {
        !receiver.received_requests().await.unwrap().is_empty()
    })
    .await;
    let got = receiver.received_requests().await.unwrap();
    let msg: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(msg["text"].as_str().unwrap().contains("File below a known binary directory opened for writing"), "{msg}");
    assert_eq!(got[0].url.path(), "/services/T0/B0/X");
    let recorded = results(&reg, "falco-slack").await;
    assert_eq!(recorded.len(), 1, "only the matching alert runs: {recorded:?}");
    assert_eq!(recorded[0].subject, "falco.error.write_below_binary_dir");
    assert_eq!(recorded[0].runner, "e2e");
    assert!(
        !serde_json::to_string(&recorded[0]).unwrap().contains("/services/T0/B0/X"),
        "no setting values in results"
    );
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);

    // What the user sees: `function logs` and `function top`, over everything kept or a recent window.
    let cli = |args: &[&str]| {
        let out = riposte_bin(&support::shared_state()).args(args).args(["--nats", &nats.url()]).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, logs, _) = cli(&["function", "logs", "falco-slack"]);
    assert!(ok && logs.contains("falco.error.write_below_binary_dir") && logs.contains("acked"), "{logs}");
    let top_row = |text: &str| {
        text.lines().find(|l| l.starts_with("falco-slack ")).map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
    };
    let (ok, top, _) = cli(&["function", "top"]);
    assert!(ok, "{top}");
    assert!(top.contains("OK P99 MS") && top.contains("P50/P99: every execution, failures included"), "{top}");
    assert_eq!(top_row(&top).as_deref(), Some("1"), "one execution: {top}");
    let (ok, top, _) = cli(&["function", "top", "--since", "1h"]);
    assert_eq!((ok, top_row(&top).as_deref()), (true, Some("1")), "{top}");
    wait_until("the execution to fall out of a one-second window", LONG, || async {
        top_row(&cli(&["function", "top", "--since", "1s"]).1).is_none()
    })
    .await;
    let (ok, _, err) = cli(&["function", "top", "--since", "an hour"]);
    assert!(!ok && err.contains("e.g. 90s, 30m, 1h, 7d"), "{err}");

    // Re-running updates in place and removes the triggers no longer asked for.
    let out = Command::new(support::root().join("deploy_playbook"))
        .env("RIPOSTE_BIN", env!("CARGO_BIN_EXE_riposte"))
        .env("RIPOSTE_SETTINGS_KEY_FILE", support::settings_key())
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .args(["-p", "slack", "-e", &format!("SLACK_WEBHOOK_URL={}/services/T0/B0/X", receiver.uri())])
        .args(["-t", "falco.critical.*", "--nats", &nats.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let triggers = reg.triggers().await.unwrap();
    assert_eq!(triggers.keys().collect::<Vec<_>>(), ["falco-slack-trigger-0"]);
    assert_eq!(triggers["falco-slack-trigger-0"].topic, "falco.critical.*");

    // The redeploy started a new deployment: `function logs` shows its results (none yet), --all the earlier.
    let (ok, logs, err) = cli(&["function", "logs", "falco-slack"]);
    assert!(
        ok && !logs.contains("falco.error.write_below_binary_dir"),
        "the earlier deployment's result is hidden: {logs}"
    );
    assert!(err.contains("--all shows earlier deployments"), "{err}");
    let (ok, logs, _) = cli(&["function", "logs", "falco-slack", "--all"]);
    assert!(ok && logs.contains("falco.error.write_below_binary_dir"), "{logs}");
    run.kill().unwrap();
    run.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_playbook_refuses_bad_input_and_writes_nothing() {
    let nats = TestNats::start();
    let state = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["-p", "nosuch", "-t", "falco.error.*"], "no playbook \"nosuch\""),
        (&["-p", "slack", "-t", "falco.error.*"], "needs setting SLACK_WEBHOOK_URL"),
        (&["-p", "slack", "-e", "SLACK_WEBHOOK_URL=http://x"], "no trigger given"),
        (&["-p", "slack", "-e", "SLACK_WEBHOOK_URL=http://x", "-t", "falco.{error"], "not a valid pattern"),
    ];
    for (args, expected) in cases {
        let out =
            riposte_bin(state.path()).arg("deploy-playbook").args(args).args(["--nats", &nats.url()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let reg = registry(&nats).await;
    assert!(reg.functions().await.unwrap().is_empty());
    assert!(reg.triggers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_and_deletes_apply_live_without_restart() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let client = nats.client().await;
    let runner = runner(&nats, "live").await;
    let f = deploy(&reg, "live", &guests::ok(), "timeout_ms = 1000", None).await;
    let t = add_trigger(&reg, "live-t", &f, "falco.{critical,error}.*").await;
    wait_until("the trigger to start", LONG, || async { runner.active_triggers().contains("live-t") }).await;
    let first = publish(&client, "falco.error.x", "live-a", 3).await;
    wait_handled(&reg, "live", &first).await;
    // A glob trigger on a subject the NATS filter covers but the glob does not match: acked, no run.
    publish(&client, "falco.notice.x", "live-notice", 1).await;

    // A redeploy with another concurrency carries it over to the trigger's consumer.
    let f = deploy(&reg, "live", &guests::ok(), "timeout_ms = 1000\nconcurrency = 3", None).await;
    let mut c = riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    assert_eq!(c.info().await.unwrap().config.max_ack_pending, 12);
    wait_until("the redeployed function to run", LONG, || async { runner.active_triggers().contains("live-t") }).await;

    riposte::nats::streams::delete_consumer(reg.jetstream(), &t).await.unwrap();
    reg.delete_trigger("live-t").await.unwrap();
    wait_until("the trigger to stop", LONG, || async { !runner.active_triggers().contains("live-t") }).await;
    publish(&client, "falco.error.x", "live-b", 3).await;
    // A second function proves the runner is alive and has seen everything published before its alert.
    let g = deploy(&reg, "marker", &guests::ok(), "timeout_ms = 1000", None).await;
    add_trigger(&reg, "marker-t", &g, "falco.error.*").await;
    let marker = publish(&client, "falco.error.x", "marker", 1).await;
    wait_handled(&reg, "marker", &marker).await;
    let mut uuids: Vec<String> = results(&reg, "live").await.into_iter().map(|r| r.alert_uuid).collect();
    uuids.sort();
    assert_eq!(uuids, first, "after the delete nothing more ran, and the notice alert never did");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_published_while_no_runner_is_up_are_all_handled() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let f = deploy(&reg, "later", &guests::ok(), "timeout_ms = 1000\nconcurrency = 32", None).await;
    add_trigger(&reg, "later-t", &f, "falco.error.*").await;
    let uuids = publish_stored(&nats, &reg, "later", 1000).await;
    let runner = runner(&nats, "later").await;
    wait_handled(&reg, "later", &uuids).await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_killed_mid_batch_loses_nothing_after_restart() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    // A little work per alert so the kill lands mid-batch.
    let f = deploy(&reg, "killed", &guests::ok(), "timeout_ms = 1000\nconcurrency = 4", None).await;
    add_trigger(&reg, "killed-t", &f, "falco.error.*").await;
    let mut run = spawn_runner(&nats, "k1");
    let uuids = publish(&nats.client().await, "falco.error.x", "killed", 1000).await;
    wait_until("some alerts handled", LONG, || async { !handled(&reg, "killed").await.is_empty() }).await;
    run.kill().unwrap();
    run.wait().unwrap();
    let before = handled(&reg, "killed").await.len();
    let mut run = spawn_runner(&nats, "k2");
    wait_handled(&reg, "killed", &uuids).await;
    eprintln!("handled before the kill: {before}/1000");
    run.kill().unwrap();
    run.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_server_restart_mid_batch_loses_nothing() {
    let mut nats = TestNats::start();
    let reg = registry(&nats).await;
    let f = deploy(&reg, "restart", &guests::ok(), "timeout_ms = 1000\nconcurrency = 4", None).await;
    add_trigger(&reg, "restart-t", &f, "falco.error.*").await;
    let uuids = publish_stored(&nats, &reg, "restart", 1000).await;
    let runner = runner(&nats, "restart").await;
    wait_until("some alerts handled", LONG, || async { !handled(&reg, "restart").await.is_empty() }).await;
    nats.restart();
    let reg = registry(&nats).await;
    wait_handled(&reg, "restart", &uuids).await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_handle_each_alert_exactly_once_and_pinning_holds() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let f = deploy(&reg, "shared", &guests::ok(), "timeout_ms = 2000\nconcurrency = 16", None).await;
    add_trigger(&reg, "shared-t", &f, "falco.error.*").await;
    let p = deploy(&reg, "pinned", &guests::ok(), "timeout_ms = 2000", Some("b")).await;
    add_trigger(&reg, "pinned-t", &p, "falco.critical.*").await;
    let a = runner(&nats, "a").await;
    let b = runner(&nats, "b").await;
    wait_until("both runners to start", LONG, || async {
        a.active_triggers().contains("shared-t") && b.active_triggers().contains("pinned-t")
    })
    .await;
    assert!(!a.active_triggers().contains("pinned-t"), "runner a must not consume a function pinned to b");
    let client = nats.client().await;
    let uuids = publish(&client, "falco.error.x", "shared", 1000).await;
    let pinned = publish(&client, "falco.critical.x", "pinned", 50).await;
    wait_handled(&reg, "shared", &uuids).await;
    wait_handled(&reg, "pinned", &pinned).await;
    let shared = results(&reg, "shared").await;
    assert_eq!(shared.len(), 1000, "each alert exactly once across the fleet");
    let mut per_runner: HashMap<String, usize> = HashMap::new();
    for r in &shared {
        *per_runner.entry(r.runner.clone()).or_default() += 1;
    }
    eprintln!("work split: {per_runner:?}");
    let pinned_results = results(&reg, "pinned").await;
    assert_eq!(pinned_results.len(), 50);
    assert!(pinned_results.iter().all(|r| r.runner == "b"), "pinned function ran elsewhere");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_playbook_is_retried_with_backoff_then_dead_lettered() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let f =
        deploy(&reg, "failing", &guests::fails(), "timeout_ms = 1000\nmax_deliver = 3\nretry_backoff_ms = 100", None)
            .await;
    add_trigger(&reg, "failing-t", &f, "falco.error.*").await;
    let runner = runner(&nats, "fail").await;
    publish(&nats.client().await, "falco.error.x", "failing", 1).await;
    wait_until("a dead letter", LONG, || async {
        !read_deadletters(reg.jetstream(), "failing").await.unwrap().is_empty()
    })
    .await;
    let letters = read_deadletters(reg.jetstream(), "failing").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].status, Status::Failed);
    assert_eq!(letters[0].error, "boom");
    assert_eq!(letters[0].alert_uuid, "failing-0");
    assert!(letters[0].alert.contains("\"uuid\":\"failing-0\""));
    let recorded = results(&reg, "failing").await;
    let dispositions: Vec<(u32, Disposition)> = recorded.iter().map(|r| (r.attempt, r.disposition)).collect();
    assert_eq!(dispositions, [(1, Disposition::Retry), (2, Disposition::Retry), (3, Disposition::DeadLettered)]);
    let at = |i: usize| {
        time::OffsetDateTime::parse(&recorded[i].time, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(at(1) - at(0) >= time::Duration::milliseconds(100), "first retry after the backoff");
    assert!(at(2) - at(1) >= time::Duration::milliseconds(200), "the backoff doubles");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_alert_is_terminated_and_recorded_never_retried() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let f = deploy(&reg, "strict", &guests::ok(), "timeout_ms = 1000\nretry_backoff_ms = 10", None).await;
    add_trigger(&reg, "strict-t", &f, "falco.error.*").await;
    let runner = runner(&nats, "strict").await;
    let client = nats.client().await;
    client.publish("falco.error.x", "{not json".into()).await.unwrap();
    client
        .publish(
            "falco.error.x",
            r#"{"uuid":"no-rule","output":"x","priority":"Error","time":"2024-01-01T00:00:00Z","output_fields":{}}"#
                .into(),
        )
        .await
        .unwrap();
    let good = publish(&client, "falco.error.x", "good", 1).await;
    wait_handled(&reg, "strict", &good).await;
    wait_until("both malformed alerts recorded", LONG, || async {
        results(&reg, "strict").await.iter().filter(|r| r.status == Status::InvalidAlert).count() == 2
    })
    .await;
    let bad: Vec<ResultRecord> =
        results(&reg, "strict").await.into_iter().filter(|r| r.status == Status::InvalidAlert).collect();
    assert!(bad.iter().all(|r| r.disposition == Disposition::Terminated && r.attempt == 1), "{bad:?}");
    assert!(bad.iter().any(|r| r.message.contains("rule")), "the error names the field: {bad:?}");
    // Terminated means gone: nothing is pending or waiting for an ack on the consumer.
    let t = reg.trigger("strict-t").await.unwrap().unwrap();
    let mut c: jetstream::consumer::PullConsumer = reg
        .jetstream()
        .get_consumer_from_stream(t.consumer_name(), riposte::nats::streams::ALERT_STREAM)
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0), "{info:?}");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_matching_several_triggers_runs_each_function_once() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let a = deploy(&reg, "fa", &guests::ok(), "timeout_ms = 1000", None).await;
    let b = deploy(&reg, "fb", &guests::ok(), "timeout_ms = 1000", None).await;
    add_trigger(&reg, "fa-0", &a, "falco.error.*").await;
    add_trigger(&reg, "fa-1", &a, "falco.*.*binary*").await;
    add_trigger(&reg, "fb-0", &b, "falco.>").await;
    let runner = runner(&nats, "multi").await;
    let client = nats.client().await;
    let mut uuids = publish(&client, "falco.error.write_below_binary_dir", "both", 1).await;
    uuids.extend(publish(&client, "falco.notice.write_below_binary_dir", "second", 1).await);
    wait_handled(&reg, "fa", &uuids).await;
    wait_handled(&reg, "fb", &uuids).await;
    let ran: Vec<(String, String)> = results(&reg, "fa").await.into_iter().map(|r| (r.alert_uuid, r.trigger)).collect();
    assert_eq!(ran.iter().filter(|(u, _)| u == "both-0").count(), 1, "fa runs once per alert: {ran:?}");
    assert!(ran.contains(&("both-0".into(), "fa-0".into())), "{ran:?}");
    assert!(ran.contains(&("second-0".into(), "fa-1".into())), "{ran:?}");
    assert_eq!(results(&reg, "fb").await.len(), 2);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn riposte_run_without_nats_starts_a_local_server_that_other_commands_find() {
    let state = tempfile::tempdir().unwrap();
    let out = riposte_bin(state.path())
        .args(["run"])
        .env("RIPOSTE_NATS_SERVER", "/nonexistent/nats-server")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("apt-get install nats-server"), "{stderr}");
    let out = riposte_bin(state.path()).args(["function", "list"]).env_remove("RIPOSTE_NATS_URL").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("start `riposte run`"), "{out:?}");

    let mut run = riposte_bin(state.path()).args(["run", "--name", "local"]).stderr(Stdio::piped()).spawn().unwrap();
    let url_file = state.path().join("nats/url");
    wait_until("the local server's URL to be recorded", LONG, || async { url_file.exists() }).await;
    let out = riposte_bin(state.path()).args(["trigger", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NAME"), "{out:?}");
    // SIGTERM: a graceful stop that also stops the local server and forgets its URL.
    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
    let status = run.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("started a local nats-server at nats://127.0.0.1:"), "{stderr}");
    assert!(!url_file.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_redelivered_after_its_reaction_succeeded_does_not_run_again() {
    use riposte::model::execution::Execution;
    use riposte::nats::results::{publish_result, Delivery};
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    // timeout 1 s: JetStream's ack wait is 2 s.
    let f = deploy(&reg, "once", &guests::ok(), "timeout_ms = 1000", None).await;
    let t = add_trigger(&reg, "once-t", &f, "falco.error.*").await;
    let client = nats.client().await;
    let uuids = publish(&client, "falco.error.x", "once", 2).await;
    // A runner takes both alerts, reacts to the first and stores its result, then dies before acking either.
    let consumer = riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    let taken: Vec<_> = consumer.fetch().max_messages(2).messages().await.unwrap().collect::<Vec<_>>().await;
    assert_eq!(taken.len(), 2);
    let delivery = Delivery {
        function: "once",
        trigger: "once-t",
        runner: "crashed",
        alert_uuid: &uuids[0],
        subject: "falco.error.x",
        attempt: 1,
        published_ns: 0,
    };
    let earlier = ResultRecord::new(&delivery, &Execution::ok("done"), Disposition::Acked);
    publish_result(reg.jetstream(), &earlier).await.unwrap();

    // JetStream delivers both again after the ack wait: the runner acks the first without running it.
    let runner = runner(&nats, "once").await;
    wait_handled(&reg, "once", &uuids).await;
    let (js, consumer_name) = (reg.jetstream().clone(), t.consumer_name());
    wait_until("both alerts acked", LONG, || {
        let (js, name) = (js.clone(), consumer_name.clone());
        async move {
            let mut c: jetstream::consumer::PullConsumer =
                js.get_consumer_from_stream(name, riposte::nats::streams::ALERT_STREAM).await.unwrap();
            let info = c.info().await.unwrap();
            info.num_ack_pending == 0 && info.num_pending == 0
        }
    })
    .await;
    let records = results(&reg, "once").await;
    let by = |uuid: &str| {
        records.iter().filter(|r| r.alert_uuid == uuid).map(|r| (r.runner.as_str(), r.attempt)).collect::<Vec<_>>()
    };
    assert_eq!(by(&uuids[0]), [("crashed", 1)], "handled once, by the runner that died: {records:?}");
    assert_eq!(by(&uuids[1]), [("once", 2)], "the other alert ran on its second delivery: {records:?}");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redelivery_check_finds_an_earlier_ok_result_and_gives_up_on_a_crowded_window() {
    use riposte::model::execution::Execution;
    use riposte::nats::results::{already_handled, publish_result, Delivery};
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let js = reg.jetstream();
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let store = |function: &'static str, uuid: String, status: Status| {
        let js = js.clone();
        async move {
            let d = Delivery {
                function,
                trigger: "t",
                runner: "r",
                alert_uuid: &uuid,
                subject: "falco.error.x",
                attempt: 1,
                published_ns: 0,
            };
            let disposition = if status == Status::Ok { Disposition::Acked } else { Disposition::Retry };
            publish_result(&js, &ResultRecord::new(&d, &Execution::refused(status, "x"), disposition)).await.unwrap();
        }
    };
    assert!(already_handled(js, "quiet", "u1", since).await.unwrap().is_none(), "no results at all");
    store("quiet", "u1".into(), Status::Failed).await;
    assert!(already_handled(js, "quiet", "u1", since).await.unwrap().is_none(), "a failed attempt is not a success");
    store("quiet", "u2".into(), Status::Ok).await;
    store("quiet", "u1".into(), Status::Ok).await;
    assert_eq!(already_handled(js, "quiet", "u1", since).await.unwrap().map(|r| r.alert_uuid), Some("u1".into()));
    let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    assert!(
        already_handled(js, "quiet", "u1", later).await.unwrap().is_none(),
        "only results since the given time count"
    );
    // A storm: more results in the window than the check reads; it answers "not known" and the alert runs again.
    store("busy", "wanted".into(), Status::Ok).await;
    for i in 0..600 {
        store("busy", format!("other-{i}"), Status::Failed).await;
    }
    assert!(already_handled(js, "busy", "wanted", since).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_falcosidekick_never_publishes_is_refused_and_rules_show_what_a_topic_matches() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    deploy(&reg, "topics", &guests::ok(), "timeout_ms = 1000", None).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("falco_rules.yaml");
    std::fs::write(
        &rules,
        "- macro: container\n  condition: container.id != host\n\
         - rule: Terminal shell in container\n  condition: container\n  output: shell\n  priority: NOTICE\n\
         - rule: Write below binary dir\n  condition: open_write\n  output: write\n  priority: ERROR\n\
         - rule: Contact K8S API Server From Container\n  condition: outbound\n  output: k8s\n  priority: INFO\n",
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = riposte_bin(&support::shared_state()).args(args).args(["--nats", &nats.url()]).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // What the Kubeless response engine's README deployed: refused with the fix, nothing written.
    let (ok, _, stderr) = cli(&["trigger", "create", "old", "--function", "topics", "--topic", "falco.info.*"]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "falcosidekick publishes Informational alerts as falco.informational.<rule>, use falco.informational.*"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let (ok, _, stderr) = cli(&[
        "deploy-playbook",
        "-p",
        "slack",
        "-e",
        "SLACK_WEBHOOK_URL=http://x",
        "-t",
        "falco.error.*",
        "-t",
        "falco.error.Write-Below-Binary-Dir",
    ]);
    assert!(!ok && stderr.contains("use falco.error.write_below_binary_dir"), "{stderr}");
    assert!(reg.triggers().await.unwrap().is_empty(), "nothing written");

    // --force keeps it, for another publisher; --rules shows the rules a topic matches.
    let (ok, stdout, stderr) =
        cli(&["trigger", "create", "forced", "--function", "topics", "--topic", "falco.info.*", "--force"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("trigger forced -> topics on falco.info.*"), "{stdout}");
    let rules_arg = rules.to_str().unwrap();
    let (ok, stdout, stderr) = cli(&[
        "trigger",
        "create",
        "shells",
        "--function",
        "topics",
        "--topic",
        "falco.*.*{shell,k8s}*",
        "--rules",
        rules_arg,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("matches 2 of the 3 rules"), "{stdout}");
    assert!(
        stdout.contains("falco.notice.terminal_shell_in_container") && stdout.contains("Terminal shell in container"),
        "{stdout}"
    );
    assert!(stdout.contains("falco.informational.contact_k8s_api_server_from_container"), "{stdout}");
    assert!(!stdout.contains("Write below binary dir"), "{stdout}");
    let (ok, stdout, _) = cli(&["trigger", "list", "--rules", rules_arg]);
    assert!(ok);
    let forced = stdout.lines().skip_while(|l| !l.starts_with("forced ")).nth(1).unwrap_or_default();
    assert!(forced.contains("matches none of the 3 rules"), "{stdout}");
    assert!(stdout.contains("matches 2 of the 3 rules"), "{stdout}");
    let (ok, _, stderr) = cli(&["trigger", "list", "--rules", "/nonexistent/falco_rules.yaml"]);
    assert!(!ok && stderr.contains("cannot read Falco rules file /nonexistent/falco_rules.yaml"), "{stderr}");
}
