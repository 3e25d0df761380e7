//! Watching riposte the way Falco users do, checked by the real tools: a real Prometheus scrapes a real
//! `riposte run` (alerts through NATS and through the HTTP input, reactions that succeed and ones that end
//! dead-lettered), loads `deploy/prometheus/riposte-rules.yaml` and evaluates every rule without error (the
//! dead-letter alert fires, the runner-down ones stay quiet), and every query of every panel of
//! `deploy/grafana/riposte-dashboard.json` returns data from it. (`promtool test rules` unit-tests each alert on
//! synthetic series in scripts/test.)

use crate::support;

use riposte::model::function::ResponsePolicy;
use std::time::{Duration, Instant};
use support::fleet;
use support::nats::TestNats;
use support::process::Run;
use support::prometheus::TestPrometheus;
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(90);

/// Every query of a dashboard, with the panel it belongs to, its Grafana variables replaced by what the test
/// scrapes (job `riposte`, every function, a 1-minute rate window, a 5-minute range).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$job", "riposte")
                .replace("$function", ".*");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scraping_a_runner_evaluates_every_rule_and_every_dashboard_panel_has_data() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let good = fleet::deploy(&reg, "obs-good", &guests::ok(), "", ResponsePolicy::default()).await;
    fleet::trigger(&reg, "obs-good-t", &good, "falco.notice.>", None).await;
    let bad = fleet::deploy(
        &reg,
        "obs-bad",
        &guests::fails(),
        "max_deliver = 2\nretry_backoff_ms = 10",
        ResponsePolicy::default(),
    )
    .await;
    fleet::trigger(&reg, "obs-bad-t", &bad, "falco.error.>", None).await;
    let run = Run::start(
        &nats,
        "observed",
        &["--metrics-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--http-allow-anonymous"],
    );
    let metrics = run.addr("metrics and probes on http://").await;
    let http = run.addr("HTTP alert input on http://").await;
    let rules = support::root().join("deploy/prometheus/riposte-rules.yaml");
    let prometheus = TestPrometheus::start("riposte", &[&metrics], std::slice::from_ref(&rules)).await;

    // The counters are scraped at zero before any alert, so increase() sees the alerts that follow.
    wait_until("the runner scraped with its triggers at zero", LONG, || async {
        prometheus.value(r#"riposte_alerts_dead_lettered_total{job="riposte",function="obs-bad"}"#).await == Some(0.0)
    })
    .await;

    // Five Notice alerts through the HTTP input, three Error ones through NATS (each fails twice: dead letter).
    let client = reqwest::Client::new();
    for i in 0..5 {
        let body = fleet::alert(&format!("obs-{i}"), "Notice", "Shell in container", "a shell", serde_json::json!({}));
        let r = client
            .post(format!("http://{http}/"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let errors: Vec<_> = (0..3)
        .map(|i| {
            let body = fleet::alert(&format!("obs-e{i}"), "Error", "Write below etc", "etc", serde_json::json!({}));
            ("falco.error.write_below_etc".to_owned(), body)
        })
        .collect();
    fleet::publish(&nats.client().await, &errors).await;

    wait_until("Prometheus saw every alert received and every dead letter", LONG, || async {
        prometheus.value(r#"sum(riposte_alerts_received_total{job="riposte"})"#).await == Some(8.0)
            && prometheus.value(r#"sum(riposte_alerts_dead_lettered_total{job="riposte"})"#).await == Some(3.0)
            && prometheus.value(r#"sum(riposte_http_input_alerts_total{outcome="accepted"})"#).await == Some(5.0)
    })
    .await;

    // Every rule of the shipped file is loaded and evaluates without error; the dead letters fire their alert
    // and a runner that answers scrapes fires no runner alert.
    let file: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(&rules).unwrap()).unwrap();
    let expected: usize = file["groups"].as_array().unwrap().iter().map(|g| g["rules"].as_array().unwrap().len()).sum();
    let unhealthy = std::sync::Mutex::new(Vec::new());
    wait_until("every rule evaluated", LONG, || async {
        let data = prometheus.api("rules", &[]).await;
        let rules: Vec<serde_json::Value> =
            data["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
        let bad: Vec<_> =
            rules.iter().filter(|r| r["health"] != "ok").map(|r| (r["name"].clone(), r["lastError"].clone())).collect();
        let done = rules.len() == expected && bad.is_empty();
        *unhealthy.lock().unwrap() = bad;
        done
    })
    .await;
    let unhealthy = unhealthy.into_inner().unwrap();
    assert!(unhealthy.is_empty(), "{unhealthy:?}");
    wait_until("RiposteDeadLetters firing", LONG, || async {
        let alerts = prometheus.api("alerts", &[]).await;
        alerts["alerts"].as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == "RiposteDeadLetters"
                && a["labels"]["function"] == "obs-bad"
                && a["state"] == "firing"
        })
    })
    .await;
    let alerts = prometheus.api("alerts", &[]).await;
    let names: Vec<&str> =
        alerts["alerts"].as_array().unwrap().iter().filter_map(|a| a["labels"]["alertname"].as_str()).collect();
    for quiet in ["RiposteRunnerDown", "RiposteNoRunner", "RiposteNatsDisconnected", "RiposteRecordsUnstored"] {
        assert!(!names.contains(&quiet), "{quiet} is quiet on a healthy runner: {alerts}");
    }

    // Every panel's every query returns data from what the runner exposed.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("deploy/grafana/riposte-dashboard.json")).unwrap(),
    )
    .unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let deadline = Instant::now() + LONG;
    let empty = loop {
        let mut empty = Vec::new();
        for (panel, expr) in &queries {
            if prometheus.query(expr).await.is_empty() {
                empty.push(format!("{panel}: {expr}"));
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break empty;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    // The runners panel counts this one runner; the failures panel sees only the failing function.
    assert_eq!(prometheus.value(r#"count(up{job=~"riposte"} == 1)"#).await, Some(1.0));
    let failing = prometheus.query(&queries.iter().find(|(p, _)| p == "Failures, per function").unwrap().1).await;
    assert!(failing.iter().all(|s| s["metric"]["function"] == "obs-bad"), "{failing:?}");
    drop(run);
}
