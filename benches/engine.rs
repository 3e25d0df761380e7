//! Engine benchmark: publishes alerts with core NATS to a local nats-server and measures, through the whole
//! engine (JetStream consumer, dispatcher, WASM function, result stored, ack):
//! - throughput from the first publish to the last result, trivial WAT guest;
//! - publish→done latency p50/p99 at a steady 1,000 alerts/s, trivial guest;
//! - the slack playbook against a local receiver, and in the same run a warm Python process that subscribes
//!   with core NATS and posts the same message (benches/python_baseline.py), twice: with the original
//!   playbook's `requests.post` per alert, and tuned (one kept-alive connection).
//!
//! - the trivial and slack runs again on a runner without metrics and on one with them (`--metrics-addr`, the
//!   endpoint scraped every second), alternating, so the cost of metrics is read side by side.
//!
//! `cargo bench --profile dev --bench engine` (env BENCH_N, BENCH_SLACK_N, BENCH_CONC, BENCH_SLACK_CONC to size
//! the runs, BENCH_SKIP_TRIVIAL=1 to skip the trivial rows, BENCH_SKIP_METRICS=1 the metrics rows,
//! BENCH_ONLY_METRICS=1 for those alone, BENCH_SKIP_POLICY=1 the response-policy rows (no condition / matching /
//! rejecting / dedup on distinct keys, and a bare async-nats consumer that only acks: the machine's ceiling),
//! BENCH_SKIP_SLACK=1 the slack rows, BENCH_SKIP_HTTP=1 the HTTP input rows, BENCH_HTTP_N their size).
//!
//! - the HTTP alert input (`riposte run --http-addr`, a bearer token) against the NATS path, side by side: the
//!   trivial guest on falcosidekick's subject for the alert, its alerts published with core NATS, then posted by
//!   one keep-alive client and by 16, each POST answered once JetStream stored it.

#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::state_dir::StateDir;
use riposte::model::trigger::Trigger;
use riposte::nats::registry::Registry;
use riposte::nats::results::ResultRecord;
use riposte::runner::{Runner, RunnerConfig};
use std::io::BufRead;
use std::time::{Duration, Instant};
use support::nats::TestNats;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn alert(i: usize) -> String {
    serde_json::json!({
        "uuid": format!("bench-{i}"), "output": "16:31:56.746609046: Error File below a known binary directory opened for writing (user=root command=touch /bin/hack file=/bin/hack)",
        "priority": "Error", "rule": "Write below binary dir", "time": "2019-05-17T15:31:56.746609046Z",
        "output_fields": {"evt.time": 1507591916746609046u64, "fd.name": "/bin/hack", "user.name": "root"},
        "source": "syscall", "hostname": "localhost", "tags": []
    })
    .to_string()
}

async fn deploy(reg: &Registry, name: &str, manifest: Manifest, settings: Settings, bytes: &[u8], topic: &str) {
    deploy_with_policy(reg, name, manifest, settings, bytes, topic, None, Default::default()).await
}

#[allow(clippy::too_many_arguments)]
async fn deploy_with_policy(
    reg: &Registry,
    name: &str,
    manifest: Manifest,
    settings: Settings,
    bytes: &[u8],
    topic: &str,
    when: Option<&str>,
    policy: riposte::model::function::ResponsePolicy,
) {
    let artifact = reg.put_artifact(bytes).await.unwrap();
    let f = Function { name: name.into(), manifest, artifact, settings, runs_on: None, policy };
    reg.put_function(&f).await.unwrap();
    let t = Trigger {
        name: format!("{name}-t"),
        function: name.into(),
        topic: topic.into(),
        when: when.map(Into::into),
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

/// Publishes `n` alerts on `subject` (paced at `rate`/s when given) and waits for `n` results of `function`.
/// Returns alerts/s from the first publish to the last result, and latencies (µs) sorted.
async fn run(
    client: &async_nats::Client,
    function: &str,
    subject: &str,
    n: usize,
    rate: Option<u64>,
) -> (f64, Vec<u64>) {
    let mut durations = Vec::with_capacity(n);
    let mut results = client.subscribe(format!("riposte.results.{function}.*")).await.unwrap();
    client.flush().await.unwrap();
    let payloads: Vec<String> = (0..n).map(alert).collect();
    let started = Instant::now();
    let publisher = {
        let client = client.clone();
        let subject = subject.to_owned();
        tokio::spawn(async move {
            let mut tick = rate.map(|r| tokio::time::interval(Duration::from_micros(1_000_000 / r)));
            for p in payloads {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                client.publish(subject.clone(), p.into()).await.unwrap();
            }
            client.flush().await.unwrap();
        })
    };
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let msg =
            tokio::time::timeout(Duration::from_secs(60), results.next()).await.expect("results stalled").unwrap();
        let r: ResultRecord = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(r.status, riposte::model::execution::Status::Ok, "{r:?}");
        latencies.push(r.latency_us);
        durations.push(r.duration_us);
    }
    let elapsed = started.elapsed();
    publisher.await.unwrap();
    latencies.sort_unstable();
    durations.sort_unstable();
    println!("  ({function}: execution time p50 {:.3} ms p99 {:.3} ms)", pct(&durations, 0.5), pct(&durations, 0.99));
    (n as f64 / elapsed.as_secs_f64(), latencies)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let nats = TestNats::start();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    let reg = Registry::open(&js).await.unwrap().with_keys(Some(support::settings_keys()));
    let state = StateDir::new(Some(support::shared_state()));
    let recorder = std::sync::Arc::new(riposte::execute::capability::recording::Recorder::new());
    let http =
        riposte::execute::capability::http::HttpClient::new(&riposte::execute::capability::http::HttpConfig::default())
            .unwrap();
    let backends = riposte::execute::capability::Backends {
        http: std::sync::Arc::new(http),
        kubernetes: recorder.clone(),
        object_store: recorder,
    };
    let config = RunnerConfig { pooling: true, ..support::runner::test_config("bench") };
    let runner = Runner::start(nats.client().await, config.clone(), backends.clone()).await.unwrap();
    let only_metrics = std::env::var_os("BENCH_ONLY_METRICS").is_some();

    // Trivial guest.
    let manifest = Manifest::parse(&format!(
        "name = \"trivial\"\nkind = \"wasm\"\n[limits]\nconcurrency = {}\n",
        env_n("BENCH_CONC", 64)
    ))
    .unwrap();
    deploy(&reg, "trivial", manifest, Settings::default(), &support::guests::ok(), "falco.trivial.*").await;
    let n = env_n("BENCH_N", 20_000);
    if std::env::var_os("BENCH_SKIP_TRIVIAL").is_none() && !only_metrics {
        let _ = run(&client, "trivial", "falco.trivial.warmup", 500, None).await;
        let (rate, lat) = run(&client, "trivial", "falco.trivial.x", n, None).await;
        println!("trivial guest, {n} alerts as fast as possible: {rate:.0} alerts/s (first publish -> last result); latency p50 {:.2} ms p99 {:.2} ms", pct(&lat, 0.5), pct(&lat, 0.99));
        let steady = 5_000;
        let (_, lat) = run(&client, "trivial", "falco.trivial.y", steady, Some(1000)).await;
        println!("trivial guest, {steady} alerts at a steady 1000/s: publish->done latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms", pct(&lat, 0.5), pct(&lat, 0.99), pct(&lat, 1.0));
    }

    if std::env::var_os("BENCH_SKIP_POLICY").is_none() && !only_metrics {
        policy_rows(&reg, &client, &runner, n).await;
    }
    if std::env::var_os("BENCH_SKIP_HTTP").is_none() && !only_metrics {
        http_rows(&reg, &client, env_n("BENCH_HTTP_N", 5_000)).await;
    }
    if std::env::var_os("BENCH_SKIP_SLACK").is_some() {
        runner.stop().await;
        return;
    }

    // Slack playbook against a local receiver, and the Python baseline against the same receiver.
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let webhook = format!("{}/services/T0/B0/X", receiver.uri());
    let builder = riposte::ops::builder::Builder::new(support::root().join("playbooks"), &state);
    let built = builder.build("slack").expect("slack builds (componentize-py in .venv)");
    let (_, manifest) = builder.manifest("slack").unwrap();
    let mut manifest = manifest;
    manifest.limits.concurrency = env_n("BENCH_SLACK_CONC", 32) as u32;
    let settings = Settings::resolve(&manifest, &[("SLACK_WEBHOOK_URL".into(), webhook.clone())]).unwrap();
    deploy(&reg, "slack-bench", manifest, settings, &std::fs::read(&built.path).unwrap(), "falco.slack.*").await;
    let sn = env_n("BENCH_SLACK_N", 5_000);
    let _ = run(&client, "slack-bench", "falco.slack.warmup", 200, None).await;
    if only_metrics {
        runner.stop().await;
        metrics_rows(&nats, &client, &config, &backends, n, sn).await;
        return;
    }
    let (slack_rate, lat) = run(&client, "slack-bench", "falco.slack.x", sn, None).await;
    println!("slack playbook, {sn} alerts (JetStream, ack after the post): {slack_rate:.0} alerts/s; latency p50 {:.2} ms p99 {:.2} ms", pct(&lat, 0.5), pct(&lat, 0.99));
    runner.stop().await;

    // The same message from a warm Python process: the original playbook's way, then a tuned one.
    if std::env::var_os("BENCH_SKIP_METRICS").is_none() {
        metrics_rows(&nats, &client, &config, &backends, n, sn).await;
    }
    for (mode, what) in [
        ("requests", "the original playbook's code: requests.post per alert, a new connection each"),
        ("keepalive", "tuned: http.client over one kept-alive connection"),
    ] {
        match python_baseline(&nats, &client, &webhook, sn, mode).await {
            Some(py_rate) => println!(
                "python baseline, {what} (warm process, core NATS, no JetStream, same receiver): {py_rate:.0} alerts/s; slack / python = {:.2}x",
                slack_rate / py_rate
            ),
            None => println!("python baseline ({mode}) skipped: run scripts/setup for .venv with requests"),
        }
    }
}

/// The HTTP input against the NATS path, side by side in one run: alerts/s from the first send to the last result,
/// and for HTTP the POST's round trip (answered once JetStream stored the alert).
async fn http_rows(reg: &Registry, client: &async_nats::Client, n: usize) {
    let subject = "falco.error.write_below_binary_dir";
    let manifest = Manifest::parse(&format!(
        "name = \"ingested\"\nkind = \"wasm\"\n[limits]\nconcurrency = {}\n",
        env_n("BENCH_CONC", 64)
    ))
    .unwrap();
    deploy(reg, "ingested", manifest, Settings::default(), &support::guests::ok(), subject).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "bench-token\n").unwrap();
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = riposte::runner::ingest::IngestConfig {
        addr: "127.0.0.1:0".into(),
        token_file: Some(tokens),
        allow_anonymous: false,
        tls_cert: None,
        tls_key: None,
        client_ca: None,
    };
    let (stopper, shutdown) = riposte::runner::shutdown::Stopper::new();
    let ingest = riposte::runner::ingest::Ingest::start(
        &config,
        async_nats::jetstream::new(client.clone()),
        client.clone(),
        Default::default(),
        shutdown,
    )
    .await
    .unwrap();
    let url = format!("http://{}/", ingest.addr());
    let _ = run(client, "ingested", subject, 500, None).await;
    let (nats_rate, _) = run(client, "ingested", subject, n, None).await;
    println!("NATS path, {n} alerts published with core NATS on {subject}: {nats_rate:.0} alerts/s");
    for (round, clients) in [(1usize, 1usize), (2, 16)] {
        let mut results = client.subscribe("riposte.results.ingested.*").await.unwrap();
        client.flush().await.unwrap();
        let started = Instant::now();
        let senders: Vec<_> = (0..clients)
            .map(|c| {
                let url = url.clone();
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut trips = Vec::new();
                    for i in (c..n).step_by(clients) {
                        let t = Instant::now();
                        let r = http
                            .post(&url)
                            .bearer_auth("bench-token")
                            .header("Content-Type", "application/json")
                            .body(alert(round * 1_000_000 + i))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        trips.push(t.elapsed().as_micros() as u64);
                    }
                    trips
                })
            })
            .collect();
        let mut done = 0;
        while done < n {
            tokio::time::timeout(Duration::from_secs(60), results.next()).await.expect("results stalled").unwrap();
            done += 1;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        let mut trips: Vec<u64> = Vec::new();
        for s in senders {
            trips.extend(s.await.unwrap());
        }
        trips.sort_unstable();
        println!(
            "HTTP input, {n} alerts posted by {clients} keep-alive client(s) with a bearer token: {rate:.0} alerts/s \
             ({:.0}% of the NATS path); POST round trip p50 {:.2} ms p99 {:.2} ms",
            rate / nats_rate * 100.0,
            pct(&trips, 0.5),
            pct(&trips, 0.99)
        );
    }
    stopper.stop();
    drop(ingest);
}

/// The response policy on the hot path, side by side: the trivial guest with no condition, with a condition
/// that matches, with one that rejects every alert (nothing instantiated, no result: measured until the runner
/// counted them all), and with dedup on a stream of distinct keys (one claim in NATS per alert).
async fn policy_rows(reg: &Registry, client: &async_nats::Client, runner: &Runner, n: usize) {
    let manifest = |name: &str| {
        Manifest::parse(&format!(
            "name = \"{name}\"\nkind = \"wasm\"\n[limits]\nconcurrency = {}\n",
            env_n("BENCH_CONC", 64)
        ))
        .unwrap()
    };
    let ok = support::guests::ok();
    let none = riposte::model::function::ResponsePolicy::default();
    let matching = "priority >= Error && alert.output_fields[?\"fd.name\"].orValue(\"\") != \"/etc/shadow\"";
    let dedup = riposte::model::function::ResponsePolicy {
        dry_run: false,
        dedup: Some(riposte::model::function::Dedup { window_ms: 60_000, key: Some("alert.uuid".into()) }),
    };
    deploy_with_policy(reg, "plain", manifest("plain"), Settings::default(), &ok, "falco.plain.*", None, none.clone())
        .await;
    deploy_with_policy(
        reg,
        "matching",
        manifest("matching"),
        Settings::default(),
        &ok,
        "falco.matching.*",
        Some(matching),
        none.clone(),
    )
    .await;
    deploy_with_policy(
        reg,
        "rejecting",
        manifest("rejecting"),
        Settings::default(),
        &ok,
        "falco.rejecting.*",
        Some("priority >= Critical"),
        none,
    )
    .await;
    deploy_with_policy(reg, "dedup", manifest("dedup"), Settings::default(), &ok, "falco.dedup.*", None, dedup).await;
    let mut rows = Vec::new();
    for (function, what) in [
        ("plain", "no condition"),
        ("matching", "a condition that matches"),
        ("dedup", "dedup on distinct keys (a claim in NATS per alert)"),
    ] {
        let _ = run(client, function, &format!("falco.{function}.warmup"), 500, None).await;
        let (rate, _) = run(client, function, &format!("falco.{function}.x"), n, None).await;
        rows.push((what, rate));
    }
    // Rejected alerts leave no result: count them on the runner.
    let rejected =
        |runner: &Runner| runner.trigger_counts().get("rejecting-t").map(|c| c.skipped_by_condition).unwrap_or(0);
    for (subject, count) in [("falco.rejecting.warmup", 500), ("falco.rejecting.x", n)] {
        let before = rejected(runner);
        let started = Instant::now();
        for i in 0..count {
            client.publish(subject.to_owned(), alert(i).into()).await.unwrap();
        }
        client.flush().await.unwrap();
        while rejected(runner) < before + count as u64 {
            assert!(started.elapsed() < Duration::from_secs(120), "rejections stalled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if subject.ends_with(".x") {
            rows.push((
                "a condition that rejects every alert (acked, nothing run)",
                n as f64 / started.elapsed().as_secs_f64(),
            ));
        }
    }
    rows.push((
        "a bare JetStream consumer that only acks (no riposte; this machine's ceiling)",
        bare_consumer(client, n).await,
    ));
    let base = rows[0].1;
    for (what, rate) in rows {
        println!(
            "policy, trivial guest, {n} alerts, {what}: {rate:.0} alerts/s ({:.0}% of no condition)",
            100.0 * rate / base
        );
    }
}

/// What nats-server and this process allow at best: a plain async-nats pull consumer with a trigger's
/// settings (explicit ack, batches of 64, 256 unacked) that acks every alert and does nothing else.
async fn bare_consumer(client: &async_nats::Client, n: usize) -> f64 {
    use async_nats::jetstream::consumer;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(riposte::nats::streams::ALERT_STREAM).await.unwrap();
    let config = consumer::pull::Config {
        durable_name: Some("bench-bare".into()),
        filter_subject: "falco.bare.>".into(),
        ack_policy: consumer::AckPolicy::Explicit,
        max_ack_pending: 256,
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    };
    let consumer: consumer::PullConsumer = stream.get_or_create_consumer("bench-bare", config).await.unwrap();
    let mut messages = consumer.stream().max_messages_per_batch(64).messages().await.unwrap();
    let acker = tokio::spawn(async move {
        for _ in 0..n {
            let msg = tokio::time::timeout(Duration::from_secs(60), messages.next()).await.expect("stalled");
            msg.unwrap().unwrap().ack().await.unwrap();
        }
    });
    let started = Instant::now();
    for i in 0..n {
        client.publish("falco.bare.x", alert(i).into()).await.unwrap();
    }
    client.flush().await.unwrap();
    acker.await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// Runs benches/python_baseline.py in `mode` on `n` alerts published with core NATS; its alerts/s from the
/// first publish to its last post, or None when its Python lacks what the mode needs.
async fn python_baseline(
    nats: &TestNats,
    client: &async_nats::Client,
    webhook: &str,
    n: usize,
    mode: &str,
) -> Option<f64> {
    let venv = support::root().join(".venv/bin/python");
    let python = if venv.exists() { venv } else { "python3".into() };
    let subject = format!("falco.python.{mode}");
    let mut py = std::process::Command::new(python)
        .arg(support::root().join("benches/python_baseline.py"))
        .args([&nats.url(), &subject, webhook, &n.to_string(), mode])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(py.stdout.take().unwrap()).lines();
    if lines.next().and_then(Result::ok).as_deref() != Some("ready") {
        let _ = py.wait();
        return None;
    }
    let started = Instant::now();
    for i in 0..n {
        client.publish(subject.clone(), alert(i).into()).await.unwrap();
    }
    client.flush().await.unwrap();
    let done = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap()).await.unwrap();
    assert_eq!(done, "done");
    let rate = n as f64 / started.elapsed().as_secs_f64();
    py.wait().unwrap();
    Some(rate)
}

/// The trivial and slack runs on a runner without metrics and on one with them (endpoint up, scraped every
/// second), alternating off/on twice; prints the best of each side by side.
async fn metrics_rows(
    nats: &TestNats,
    client: &async_nats::Client,
    config: &RunnerConfig,
    backends: &riposte::execute::capability::Backends,
    n: usize,
    sn: usize,
) {
    let mut rows: Vec<(&str, bool, f64)> = Vec::new();
    for round in 0..2 {
        for on in [false, true] {
            let metrics = on.then(riposte::runner::metrics::Metrics::new);
            let config = RunnerConfig { metrics: metrics.clone(), ..config.clone() };
            let runner = Runner::start(nats.client().await, config, backends.clone()).await.unwrap();
            let (stopper, shutdown) = riposte::runner::shutdown::Stopper::new();
            let mut scraper = None;
            if let Some(m) = &metrics {
                let slot: riposte::runner::health::ProbeSlot = Default::default();
                let _ = slot.set(runner.probe());
                let endpoint =
                    riposte::runner::health::Endpoint::start("127.0.0.1:0", m.clone(), slot, shutdown).await.unwrap();
                let url = format!("http://{}/metrics", endpoint.addr());
                let task = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let _ = reqwest::get(&url).await;
                    }
                });
                scraper = Some((endpoint, task));
            }
            let _ = run(client, "trivial", "falco.trivial.warmup", 500, None).await;
            let _ = run(client, "slack-bench", "falco.slack.warmup", 200, None).await;
            let (t, _) = run(client, "trivial", &format!("falco.trivial.m{round}"), n, None).await;
            let (s, _) = run(client, "slack-bench", &format!("falco.slack.m{round}"), sn, None).await;
            rows.push(("trivial", on, t));
            rows.push(("slack", on, s));
            runner.stop().await;
            stopper.stop();
            if let Some((endpoint, task)) = scraper {
                task.abort();
                endpoint.stopped().await;
            }
        }
    }
    for what in ["trivial", "slack"] {
        let best = |on: bool| rows.iter().filter(|r| r.0 == what && r.1 == on).map(|r| r.2).fold(0.0, f64::max);
        let (off, on) = (best(false), best(true));
        println!(
            "{what}, metrics off / on (--metrics-addr, scraped every second; best of 2 alternating runs): {off:.0} / {on:.0} alerts/s ({:+.1}%)",
            (on / off - 1.0) * 100.0
        );
    }
}
