//! A runner's metrics and probes against a real nats-server: the exposition scraped after alerts counts each
//! one per status and disposition (and agrees with the results stream), and `/readyz` follows NATS going
//! away and coming back, through the `riposte run --metrics-addr` binary.

use crate::support;

use riposte::model::execution::Status;
use riposte::nats::streams::StreamSettings;
use riposte::runner::health::{Endpoint, ProbeSlot};
use riposte::runner::metrics::Metrics;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use support::nats::TestNats;
use support::process::Run;
use support::runner::{deploy, get, publish, registry, results, runner, scrape};
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_after_alerts_counts_each_one_per_status_and_disposition() {
    let nats = TestNats::start();
    let reg = registry(nats.client().await, &StreamSettings::default()).await;
    deploy(&reg, "good", &guests::ok(), "timeout_ms = 1000", "falco.good.*").await;
    deploy(&reg, "bad", &guests::fails(), "timeout_ms = 1000\nmax_deliver = 2\nretry_backoff_ms = 10", "falco.bad.*")
        .await;
    let metrics = Metrics::new();
    let runner = runner(nats.client().await, "metrics", Some(metrics.clone())).await;
    let slot: ProbeSlot = Default::default();
    let (stopper, shutdown) = riposte::runner::shutdown::Stopper::new();
    let endpoint = Endpoint::start("127.0.0.1:0", metrics, slot.clone(), shutdown).await.unwrap();
    let _ = slot.set(runner.probe());
    let addr = endpoint.addr().to_string();

    let client = nats.client().await;
    publish(&client, "falco.good.x", "good", 20).await;
    publish(&client, "falco.bad.x", "bad", 3).await;
    client.publish("falco.good.x", "{not json".into()).await.unwrap();
    client.publish("falco.good.x", r#"{"uuid":"no-rule"}"#.into()).await.unwrap();
    client.flush().await.unwrap();

    let settled = r#"riposte_alerts_settled_total"#;
    wait_until("every alert settled", LONG, || async {
        let e = scrape(&addr).await;
        e.sum(settled, &[r#"function="good""#]) == 22.0 && e.sum(settled, &[r#"function="bad""#]) == 6.0
    })
    .await;
    let e = scrape(&addr).await;
    let good = r#"function="good",trigger="good-t""#;
    let bad = r#"function="bad",trigger="bad-t""#;
    let v = |series: String| e.get(&series);
    assert_eq!(v(format!("riposte_alerts_received_total{{{good}}}")), 22.0);
    assert_eq!(v(format!("riposte_executions_total{{{good},status=\"ok\"}}")), 20.0);
    assert_eq!(v(format!("riposte_executions_total{{{good},status=\"invalid-alert\"}}")), 2.0);
    assert_eq!(v(format!("riposte_alerts_settled_total{{{good},disposition=\"acked\"}}")), 20.0);
    assert_eq!(v(format!("riposte_alerts_settled_total{{{good},disposition=\"terminated\"}}")), 2.0);
    // Three alerts, each delivered twice: received counts alerts, deliveries every delivery.
    assert_eq!(v(format!("riposte_alerts_received_total{{{bad}}}")), 3.0);
    assert_eq!(v(format!("riposte_deliveries_total{{{bad}}}")), 6.0);
    assert_eq!(v(format!("riposte_redeliveries_total{{{bad}}}")), 3.0);
    assert_eq!(v(format!("riposte_executions_total{{{bad},status=\"failed\"}}")), 6.0);
    assert_eq!(v(format!("riposte_alerts_settled_total{{{bad},disposition=\"retry\"}}")), 3.0);
    assert_eq!(v(format!("riposte_alerts_settled_total{{{bad},disposition=\"dead-lettered\"}}")), 3.0);
    assert_eq!(v(format!("riposte_alerts_dead_lettered_total{{{bad}}}")), 3.0);
    assert_eq!(v("riposte_execution_duration_seconds_count{function=\"good\"}".into()), 22.0);
    assert_eq!(v("riposte_alerts_in_flight{function=\"good\"}".into()), 0.0);
    assert_eq!(v(format!("riposte_consumer_pending{{{good}}}")), 0.0);
    assert!(e.0.contains_key(&format!("riposte_consumer_ack_pending{{{good}}}")), "the consumer is sampled");
    let instances = v("riposte_instances_created_total{function=\"good\"}".into())
        + v("riposte_instances_reused_total{function=\"good\"}".into());
    assert_eq!(instances, 20.0, "every ok alert ran on a new or a warm instance");
    assert_eq!(v("riposte_nats_connected".into()), 1.0);
    assert!(e.0.keys().any(|k| k.starts_with("riposte_build_info{version=")));

    // Per status, the counters agree with what the results stream recorded.
    for function in ["good", "bad"] {
        let mut by_status: BTreeMap<&str, f64> = BTreeMap::new();
        for r in results(&reg, function).await {
            *by_status.entry(r.status.as_str()).or_default() += 1.0;
        }
        for (status, n) in by_status {
            let series = format!(
                "riposte_executions_total{{function=\"{function}\",trigger=\"{function}-t\",status=\"{status}\"}}"
            );
            assert_eq!(e.get(&series), n, "{series}");
        }
    }
    // Labels are names and fixed words, never alert data.
    let text = get(&addr, "/metrics").await.1;
    assert!(!text.contains("no-rule") && !text.contains("Write below"), "{text}");
    assert_eq!(Status::Ok.as_str(), "ok");

    runner.stop().await;
    stopper.stop();
    endpoint.stopped().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_nats_is_down_and_200_after_it_returns() {
    let mut nats = TestNats::start();
    let reg = registry(nats.client().await, &StreamSettings::default()).await;
    deploy(&reg, "probed", &guests::ok(), "timeout_ms = 1000", "falco.error.*").await;
    let mut command = support::riposte_bin(&support::shared_state());
    command.env("RUST_LOG", "info").args([
        "run",
        "--nats",
        &nats.url(),
        "--name",
        "probed",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let mut run = Run::spawn(command);
    let addr = run.addr("metrics and probes on http://").await;
    assert_eq!(get(&addr, "/healthz").await.0, 200);
    wait_until("ready", LONG, || async { get(&addr, "/readyz").await.0 == 200 }).await;

    nats.stop();
    wait_until("not ready while NATS is down", LONG, || async { get(&addr, "/readyz").await.0 == 503 }).await;
    let (_, why) = get(&addr, "/readyz").await;
    assert!(why.contains("NATS"), "{why}");
    assert_eq!(get(&addr, "/healthz").await.0, 200, "the process still serves");
    let e = scrape(&addr).await;
    assert_eq!(e.get("riposte_nats_connected"), 0.0);

    nats.start_again();
    wait_until("ready again once NATS is back", LONG, || async { get(&addr, "/readyz").await.0 == 200 }).await;
    wait_until("the reconnect counted", LONG, || async {
        scrape(&addr).await.get("riposte_nats_reconnects_total") >= 1.0
    })
    .await;

    terminate(&run.child);
    let (_, log) = run.wait();
    assert!(log.contains("trigger started"), "info logs were written: {log}");
    assert!(!log.contains('\u{1b}'), "no colour codes when stderr is not a terminal: {log}");
}

/// SIGTERM: the runner stops gracefully.
fn terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_instance_idle_past_the_timeout_is_released_and_counted() {
    let nats = TestNats::start();
    let reg = registry(nats.client().await, &StreamSettings::default()).await;
    deploy(&reg, "idler", &guests::ok(), "timeout_ms = 1000", "falco.idle.*").await;
    let metrics = Metrics::new();
    let warm = riposte::runner::WarmConfig { max_idle: 4, idle_timeout: Some(Duration::from_millis(300)) };
    let config =
        riposte::runner::RunnerConfig { metrics: Some(metrics.clone()), warm, ..support::runner::test_config("idler") };
    let runner =
        riposte::runner::Runner::start(nats.client().await, config, support::runner::recorded()).await.unwrap();
    let slot: ProbeSlot = Default::default();
    let (stopper, shutdown) = riposte::runner::shutdown::Stopper::new();
    let endpoint = Endpoint::start("127.0.0.1:0", metrics, slot.clone(), shutdown).await.unwrap();
    let _ = slot.set(runner.probe());
    let addr = endpoint.addr().to_string();

    publish(&nats.client().await, "falco.idle.x", "idle", 1).await;
    wait_until("the alert ran", LONG, || async { results(&reg, "idler").await.len() == 1 }).await;
    let series = |name: &str| format!("riposte_instances_{name}{{function=\"idler\"}}");
    wait_until("the idle instance released", LONG, || async {
        let e = scrape(&addr).await;
        e.get(&series("released_total")) == 1.0 && e.get(&series("idle")) == 0.0
    })
    .await;
    assert_eq!(scrape(&addr).await.get(&series("created_total")), 1.0);
    // No alert for the timeout: the component is unloaded too, and the next alert loads it again.
    let unloads = "riposte_component_unloads_total{function=\"idler\"}";
    wait_until("the component unloaded", LONG, || async { scrape(&addr).await.get(unloads) == 1.0 }).await;
    publish(&nats.client().await, "falco.idle.x", "again", 1).await;
    wait_until("the second alert ran", LONG, || async { results(&reg, "idler").await.len() == 2 }).await;
    assert!(results(&reg, "idler").await.iter().all(|r| r.status == Status::Ok));

    runner.stop().await;
    stopper.stop();
    endpoint.stopped().await;
}
