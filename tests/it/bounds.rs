//! Records that would not fit in a NATS message, against a real nats-server: a playbook whose outcome message
//! or logs exceed 1 MiB, an alert whose dead letter would exceed it, a server with a smaller `max_payload`, and
//! JetStream's own `max_deliver` on trigger consumers. Each alert ends after at most `max_deliver` runs with its
//! result stored; a result that cannot be stored at all is counted and its alert still settled. Also: control
//! characters from alerts and heartbeats never reach the terminal through the CLI's tables.

use crate::support;

use async_nats::jetstream;
use riposte::model::execution::{Execution, Status};
use riposte::model::limits::{RESULT_LOGS_BYTES, RESULT_MESSAGE_BYTES};
use riposte::nats::results::{deadletter_alert, read_deadletters, Delivery, Disposition, ResultRecord};
use std::process::Command;
use std::time::Duration;
use support::nats::TestNats;
use support::runner::{
    alert_with, consumer_info, deploy, deploy_function, publish_body, results, runner, trigger, wait_settled,
};
use support::{guests, wait_until};

/// The registry (streams ensured) of this server.
async fn registry(nats: &TestNats) -> riposte::nats::registry::Registry {
    support::runner::registry(nats.client().await, &Default::default()).await
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn an_outcome_message_over_a_mib_is_cut_stored_and_the_alert_runs_once() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    deploy(&reg, "loud", &guests::big_message(1_500_000), "timeout_ms = 5000\nretry_backoff_ms = 10", "falco.error.*")
        .await;
    let t = trigger(&reg, "loud-t").await;
    let runner = runner(nats.client().await, "loud", None).await;
    publish_body(&nats.client().await, "falco.error.x", alert_with("loud-0", "x")).await;
    wait_until("the result", LONG, || async { !results(&reg, "loud").await.is_empty() }).await;
    wait_settled(&reg, &t).await;
    let recorded = results(&reg, "loud").await;
    assert_eq!(recorded.len(), 1, "one run, one result");
    let r = &recorded[0];
    assert_eq!((r.status, r.disposition, r.attempt), (Status::Ok, Disposition::Acked, 1));
    assert!(r.message.len() <= RESULT_MESSAGE_BYTES, "{}", r.message.len());
    assert!(r.message.starts_with("xxxx"), "{}", &r.message[..20]);
    let dropped = 1_500_000 - r.message.split(" … [").next().unwrap().len();
    assert!(r.message.ends_with(&format!(" … [{dropped} bytes dropped]")), "{}", &r.message[r.message.len() - 40..]);
    assert_eq!(consumer_info(&reg, &t).await.num_redelivered, 0);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_playbook_logging_over_a_mib_ends_dead_lettered_after_max_deliver_runs() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let limits = "timeout_ms = 5000\nmax_deliver = 3\nretry_backoff_ms = 10";
    deploy(&reg, "chatty", &guests::logs_then_fails(300, 8000), limits, "falco.error.*").await;
    let t = trigger(&reg, "chatty-t").await;
    let runner = runner(nats.client().await, "chatty", None).await;
    publish_body(&nats.client().await, "falco.error.x", alert_with("chatty-0", "x")).await;
    wait_until("a dead letter", LONG, || async {
        !read_deadletters(reg.jetstream(), "chatty").await.unwrap().is_empty()
    })
    .await;
    wait_settled(&reg, &t).await;
    let recorded = results(&reg, "chatty").await;
    let dispositions: Vec<(u32, Disposition)> = recorded.iter().map(|r| (r.attempt, r.disposition)).collect();
    assert_eq!(dispositions, [(1, Disposition::Retry), (2, Disposition::Retry), (3, Disposition::DeadLettered)]);
    for r in &recorded {
        let bytes: usize = r.logs.iter().map(|l| l.message.len()).sum();
        assert!(bytes <= RESULT_LOGS_BYTES + 200, "{bytes} bytes of logs");
        let last = r.logs.last().unwrap();
        assert!(last.message.contains("more log lines") && last.message.contains("dropped"), "{last:?}");
        assert!(r.logs[0].message.ends_with("bytes dropped]"), "each line is cut: {}", r.logs[0].message.len());
    }
    let letters = read_deadletters(reg.jetstream(), "chatty").await.unwrap();
    assert_eq!((letters.len(), letters[0].attempts, letters[0].error.as_str()), (1, 3, "boom"));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_of_880_kb_of_quotes_ends_dead_lettered_with_the_alert_in_the_object_store() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    deploy(
        &reg,
        "quotes",
        &guests::fails(),
        "timeout_ms = 5000\nmax_deliver = 2\nretry_backoff_ms = 10",
        "falco.error.*",
    )
    .await;
    let t = trigger(&reg, "quotes-t").await;
    let runner = runner(nats.client().await, "quotes", None).await;
    // Each quote is escaped once in the alert (880 KB) and twice in a dead letter that carried it (1.76 MB).
    let body = alert_with("quotes-0", &"\"".repeat(440_000));
    assert!(body.len() > 880_000 && body.len() < 900_000);
    publish_body(&nats.client().await, "falco.error.x", body.clone()).await;
    wait_until("a dead letter", LONG, || async {
        !read_deadletters(reg.jetstream(), "quotes").await.unwrap().is_empty()
    })
    .await;
    wait_settled(&reg, &t).await;
    let letters = read_deadletters(reg.jetstream(), "quotes").await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.attempts, letter.alert_uuid.as_str()), (2, "quotes-0"));
    assert!(letter.alert.is_empty(), "the alert is not in the letter");
    assert_eq!(letter.alert_object.as_deref(), Some(format!("quotes/{}", letter.alert_sequence).as_str()));
    assert_eq!(deadletter_alert(reg.jetstream(), letter).await.unwrap(), body, "the object holds the alert in full");
    let recorded = results(&reg, "quotes").await;
    let dispositions: Vec<(u32, Disposition)> = recorded.iter().map(|r| (r.attempt, r.disposition)).collect();
    assert_eq!(dispositions, [(1, Disposition::Retry), (2, Disposition::DeadLettered)]);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_smaller_max_payload_is_read_from_the_server_and_results_shrink_to_it() {
    let nats = TestNats::start_with_config("max_payload: 65536\n");
    let reg = registry(&nats).await;
    assert_eq!(
        riposte::nats::results::max_record_bytes(reg.jetstream()),
        65536 - riposte::model::limits::PUBLISH_HEADROOM_BYTES
    );
    let limits = "timeout_ms = 5000\nmax_deliver = 2\nretry_backoff_ms = 10";
    deploy(&reg, "small", &guests::logs_then_fails(300, 8000), limits, "falco.error.*").await;
    let t = trigger(&reg, "small-t").await;
    let runner = runner(nats.client().await, "small", None).await;
    publish_body(&nats.client().await, "falco.error.x", alert_with("small-0", "x")).await;
    wait_until("a dead letter", LONG, || async {
        !read_deadletters(reg.jetstream(), "small").await.unwrap().is_empty()
    })
    .await;
    wait_settled(&reg, &t).await;
    let recorded = results(&reg, "small").await;
    assert_eq!(recorded.len(), 2);
    for r in &recorded {
        assert!(serde_json::to_vec(r).unwrap().len() <= 65536);
        assert_eq!(r.logs.len(), 1, "the logs gave way: {:?}", r.logs);
        assert!(r.logs[0].message.contains("max_payload"), "{:?}", r.logs[0]);
        assert_eq!(r.message, "boom");
    }
    // An alert too large for a dead letter here (40 KB of quotes: 80 KB escaped) goes to the object store.
    publish_body(&nats.client().await, "falco.error.x", alert_with("small-1", &"\"".repeat(20_000))).await;
    wait_until("a second dead letter", LONG, || async {
        read_deadletters(reg.jetstream(), "small").await.unwrap().len() == 2
    })
    .await;
    let letters = read_deadletters(reg.jetstream(), "small").await.unwrap();
    assert!(letters[1].alert_object.is_some() && letters[0].alert_object.is_none(), "{letters:?}");
    runner.stop().await;
}

#[test]
fn a_result_shrinks_logs_then_detail_then_message_to_fit() {
    let exec = Execution {
        detail: Some(serde_json::json!({"text": "d".repeat(30_000)})),
        logs: (0..50)
            .map(|_| riposte::model::execution::LogLine { level: "info".into(), message: "l".repeat(1000) })
            .collect(),
        ..Execution::refused(Status::Failed, "\"".repeat(3000))
    };
    let ctx = Delivery {
        function: "f",
        trigger: "t",
        runner: "r",
        alert_uuid: "u",
        subject: "falco.error.x",
        attempt: 1,
        published_ns: 0,
    };
    let record = ResultRecord::new(&ctx, &exec, Disposition::Retry);
    let full = serde_json::to_vec(&record).unwrap().len();
    let parse = |max: usize| -> ResultRecord {
        let body = record.to_json_within(max).unwrap();
        assert!(body.len() <= max, "{} > {max}", body.len());
        serde_json::from_slice(&body).unwrap()
    };
    let r = parse(full);
    assert_eq!((r.logs.len(), r.detail.is_some()), (50, true), "a record that fits is kept whole");
    let r = parse(full - 1000);
    assert_eq!((r.logs.len(), r.detail.is_some(), r.message.len()), (1, true, 3000), "logs go first");
    let r = parse(20_000);
    assert!(r.detail.is_none() && r.message.len() == 3000, "then the detail");
    let r = parse(3000);
    assert!(r.message.starts_with("\"\"") && r.message.ends_with("bytes dropped]"), "then the message: {}", r.message);
    assert!(record.to_json_within(100).is_err(), "a bound nothing fits in is an error, not a loop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_consumer_made_without_max_deliver_gets_the_backstop_and_keeps_its_alerts() {
    use riposte::model::limits::MAX_DELIVER_BACKSTOP;
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let f = deploy_function(&reg, "old", &guests::ok(), "timeout_ms = 1000\nmax_deliver = 4").await;
    let t = riposte::model::trigger::Trigger {
        name: "old-t".into(),
        function: "old".into(),
        topic: "falco.error.*".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    // As riposte made consumers before: no max_deliver.
    let stream = reg.jetstream().get_stream(riposte::nats::streams::ALERT_STREAM).await.unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(t.consumer_name()),
            filter_subject: "falco.error.*".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_deliver: -1,
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    reg.put_trigger(&t).await.unwrap();
    publish_body(&nats.client().await, "falco.error.x", alert_with("old-0", "x")).await;
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    let info = consumer_info(&reg, &t).await;
    assert_eq!(info.config.max_deliver, 4 + MAX_DELIVER_BACKSTOP);
    assert_eq!(info.num_pending, 1, "the alert waiting for the trigger is still there");
    let runner = runner(nats.client().await, "old", None).await;
    wait_until("the waiting alert handled", LONG, || async { !results(&reg, "old").await.is_empty() }).await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_from_alerts_never_reach_the_terminal_through_the_cli() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    let esc = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m";
    let f = deploy_function(&reg, "esc", &guests::ok(), "").await;
    reg.put_function(&riposte::model::function::Function { runs_on: Some(format!("r{esc}")), ..f.clone() })
        .await
        .unwrap();
    let t = riposte::model::trigger::Trigger {
        name: "esc-t".into(),
        function: "esc".into(),
        topic: format!("falco.{esc}"),
        when: None,
        on_condition_error: Default::default(),
    };
    reg.put_trigger(&t).await.unwrap();
    let ctx = Delivery {
        function: "esc",
        trigger: "esc-t",
        runner: "r",
        alert_uuid: "u",
        subject: &format!("falco.error.{esc}"),
        attempt: 1,
        published_ns: 0,
    };
    let record = ResultRecord::new(&ctx, &Execution::refused(Status::Failed, format!("bad {esc}")), Disposition::Retry);
    riposte::nats::results::publish_result(reg.jetstream(), &record).await.unwrap();
    // A heartbeat full of escapes (its name is its key's: one that names another runner is not shown at all).
    let beat = serde_json::json!({
        "name": "esc", "host": format!("h{esc}"), "version": format!("v{esc}"),
        "started_at": format!("2026-01-01T00:00:00Z{esc}"), "functions": [{"name": format!("f{esc}"), "pinned": true}],
        "in_flight": 0, "handled": 0, "failed": 0, "unstored": 0,
        "container_engine": {"available": false, "detail": esc}, "kubernetes": {"available": false, "detail": esc},
        "policy": {format!("t{esc}"): {"matched": 1, "rejected": 0, "errors": 0, "deduplicated": 0}}
    });
    let store = riposte::nats::fleet::open(reg.jetstream()).await.unwrap();
    store.put(riposte::nats::fleet::key("esc"), beat.to_string().into()).await.unwrap();
    let commands =
        [&["function", "logs", "esc"][..], &["function", "top"], &["function", "list"], &["trigger", "list"]];
    for args in commands.into_iter().chain([&["runner", "list"][..]]) {
        let out = Command::new(env!("CARGO_BIN_EXE_riposte"))
            .env("RIPOSTE_STATE_DIR", support::shared_state())
            .args(args)
            .args(["--nats", &nats.url()])
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
        assert!(out.status.success(), "{args:?}: {stderr}");
        for printed in [&stdout, &stderr] {
            assert!(
                !printed.chars().any(|c| c.is_control() && c != '\n'),
                "{args:?} printed a control character: {printed:?}"
            );
        }
        if args[1] != "top" {
            assert!(stdout.contains("\\u{1b}[2J"), "{args:?} shows the escape as text: {stdout}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_that_cannot_be_stored_is_counted_and_its_alert_settled_after_one_run() {
    let nats = TestNats::start();
    let reg = registry(&nats).await;
    deploy(&reg, "lost", &guests::ok(), "timeout_ms = 5000\nretry_backoff_ms = 10", "falco.error.*").await;
    let t = trigger(&reg, "lost-t").await;
    let metrics = riposte::runner::metrics::Metrics::new();
    let runner = runner(nats.client().await, "lost", Some(metrics.clone())).await;
    // No results stream: every publish of a result fails (the runner made it at start; nothing makes it again).
    reg.jetstream().delete_stream(riposte::nats::streams::RESULTS_STREAM).await.unwrap();
    publish_body(&nats.client().await, "falco.error.x", alert_with("lost-0", "x")).await;
    wait_settled(&reg, &t).await;
    let info = consumer_info(&reg, &t).await;
    assert_eq!((info.delivered.consumer_sequence, info.num_redelivered), (1, 0), "one delivery, never again");
    assert_eq!(runner.unstored_records(), 1);
    let e = support::runner::Exposition::parse(&metrics.encode());
    assert_eq!(e.get(r#"riposte_records_unstored_total{function="lost",trigger="lost-t"}"#), 1.0, "{:?}", e.0);
    assert_eq!(e.sum("riposte_alerts_settled_total", &[r#"disposition="acked""#]), 1.0, "{:?}", e.0);
    // The heartbeat carries the count, and `riposte runner list` shows it.
    let store = riposte::nats::fleet::open(reg.jetstream()).await.unwrap();
    wait_until("the heartbeat counts the unstored result", LONG, || async {
        let runners = riposte::nats::fleet::runners(&store).await.unwrap();
        runners.iter().any(|r| r.heartbeat.name == "lost" && r.heartbeat.counts.unstored == 1)
    })
    .await;
    let out = Command::new(env!("CARGO_BIN_EXE_riposte"))
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .args(["runner", "list", "--nats", &nats.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = stdout.lines().find(|l| l.starts_with("lost ")).expect(&stdout).split_whitespace().collect();
    let column = header.iter().position(|h| *h == "UNSTORED").expect(&stdout);
    // STARTED is one word (a date), LAST-SEEN two ("3s ago"): the row has one more word before UNSTORED.
    assert_eq!(row[column + 1], "1", "{stdout}");
    runner.stop().await;
}
