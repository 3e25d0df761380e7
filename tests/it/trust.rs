//! What must hold for an operator to trust riposte's reactions, against a real nats-server and an in-process
//! runner: a function runs once per alert when any of its triggers accepts it.

use crate::support;

use riposte::model::function::ResponsePolicy;
use riposte::model::trigger::Trigger;
use serde_json::json;
use std::time::Duration;
use support::fleet::{self, alert, publish, results};
use support::nats::TestNats;
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// Waits until every alert the trigger's consumer was given is settled.
async fn settled(reg: &riposte::nats::registry::Registry, trigger: &Trigger) {
    let consumer = trigger.consumer_name();
    wait_until(&format!("every alert of {} settled", trigger.name), LONG, || async {
        let c: Result<async_nats::jetstream::consumer::PullConsumer, _> =
            reg.jetstream().get_consumer_from_stream(consumer.as_str(), riposte::nats::streams::ALERT_STREAM).await;
        match c {
            Ok(mut c) => c.info().await.map(|i| i.num_ack_pending == 0 && i.num_pending == 0).unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_triggers_condition_does_not_silence_the_functions_other_triggers() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "f", &guests::ok(), "", ResponsePolicy::default()).await;
    let t0 = fleet::trigger(&reg, "t0", &f, "falco.notice.*", None).await;
    // Named before t0, so it is the first trigger of `f` that matches a Notice alert too.
    let crit = fleet::trigger(&reg, "a-crit", &f, "falco.*.*", Some("priority >= Critical")).await;
    let runner = fleet::runner(&nats, "r1", None).await;
    wait_until("both triggers to start", LONG, || async {
        let active = runner.active_triggers();
        active.contains("t0") && active.contains("a-crit")
    })
    .await;
    let batch = [
        ("falco.notice.x".to_owned(), alert("notice", "Notice", "N", "n happened", json!({}))),
        ("falco.critical.x".to_owned(), alert("critical", "Critical", "C", "c happened", json!({}))),
    ];
    publish(&nats.client().await, &batch).await;
    wait_until("a result", LONG, || async { !results(&reg, "f").await.is_empty() }).await;
    settled(&reg, &t0).await;
    settled(&reg, &crit).await;
    let mut ran: Vec<(String, String)> =
        results(&reg, "f").await.into_iter().map(|r| (r.alert_uuid, r.status.as_str().to_owned())).collect();
    ran.sort();
    let once = |u: &str| (u.to_owned(), "ok".to_owned());
    assert_eq!(ran, [once("critical"), once("notice")], "each alert ran f once");
    let counts = runner.trigger_counts();
    let rejected: u64 = counts.values().map(|c| c.skipped_by_condition + c.condition_errors).sum();
    assert_eq!(rejected, 0, "no alert went without its reaction: {counts:?}");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_nested_too_deep_in_the_registry_is_refused_by_the_runner_which_keeps_running() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "deep", &guests::ok(), "", ResponsePolicy::default()).await;
    let mut deep = fleet::trigger(&reg, "deep-a", &f, "falco.critical.*", Some("priority >= Critical")).await;
    let other = fleet::trigger(&reg, "deep-b", &f, "falco.critical.*", None).await;
    // Rewritten as an older riposte, which did not bound the depth, would have: straight to the registry.
    deep.when = Some(format!("{} > 0", vec!["1"; 2000].join("+")));
    reg.put_trigger(&deep).await.unwrap();
    let runner = fleet::runner(&nats, "r1", None).await;
    wait_until("both triggers seen", LONG, || async {
        let active = runner.active_triggers();
        active.contains("deep-a") && active.contains("deep-b")
    })
    .await;
    let batch = [("falco.critical.x".to_owned(), alert("c1", "Critical", "C", "c happened", json!({})))];
    publish(&nats.client().await, &batch).await;
    // Still here (a stack overflow would have aborted this process): the refused trigger does not run, the
    // function's other trigger does.
    wait_until("the other trigger's result", LONG, || async { !results(&reg, "deep").await.is_empty() }).await;
    settled(&reg, &other).await;
    let ran: Vec<String> = results(&reg, "deep").await.into_iter().map(|r| r.trigger).collect();
    assert_eq!(ran, ["deep-b"]);
    runner.stop().await;
}
