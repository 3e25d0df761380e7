//! Driving the trigger engine from tests: deploy a guest component with a trigger, start an in-process
//! runner with recorded capabilities, publish alerts, read results, wait for a trigger's consumer to settle
//! everything, scrape a metrics endpoint.

use async_nats::jetstream;
use riposte::execute::capability::recording::Recorder;
use riposte::execute::capability::Backends;
use riposte::model::execution::Status;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::state_dir::StateDir;
use riposte::model::trigger::Trigger;
use riposte::nats::registry::Registry;
use riposte::nats::results::{read_results, ResultRecord};
use riposte::nats::streams::StreamSettings;
use riposte::runner::{Runner, RunnerConfig};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The streams and the registry on `client`'s server, created with `streams`.
pub async fn registry(client: async_nats::Client, streams: &StreamSettings) -> Registry {
    let js = jetstream::new(client);
    riposte::nats::streams::ensure_with(&js, None, streams).await.unwrap();
    Registry::open_with(&js, streams).await.unwrap().with_keys(Some(super::settings_keys()))
}

/// Deploys `bytes` as function `name` with `[limits]` lines `limits`, and trigger `<name>-t` on `topic`.
pub async fn deploy(reg: &Registry, name: &str, bytes: &[u8], limits: &str, topic: &str) -> Function {
    let f = deploy_function(reg, name, bytes, limits).await;
    let t = Trigger {
        name: format!("{name}-t"),
        function: name.into(),
        topic: topic.into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
    f
}

/// Deploys `bytes` as function `name` with `[limits]` lines `limits`, without a trigger.
pub async fn deploy_function(reg: &Registry, name: &str, bytes: &[u8], limits: &str) -> Function {
    let artifact = reg.put_artifact(bytes).await.unwrap();
    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n[limits]\n{limits}\n")).unwrap();
    let f = Function {
        name: name.into(),
        manifest,
        artifact,
        settings: Settings::default(),
        runs_on: None,
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
    f
}

/// The trigger `name`, as deployed.
pub async fn trigger(reg: &Registry, name: &str) -> Trigger {
    reg.trigger(name).await.unwrap().unwrap_or_else(|| panic!("no trigger {name}"))
}

/// What every test runner starts from: alerts on `falco.>`, 256 alerts in flight, the shared state directory,
/// no instance pooling, no metrics, the test settings key. A test changes the fields it is about.
pub fn test_config(name: &str) -> RunnerConfig {
    RunnerConfig {
        name: name.into(),
        alert_subjects: vec!["falco.>".into()],
        max_in_flight: 256,
        state: StateDir::new(Some(super::shared_state())),
        pooling: false,
        containers: Default::default(),
        metrics: None,
        streams: StreamSettings::default(),
        settings_keys: Some(super::settings_keys()),
        warm: Default::default(),
    }
}

/// Backends that record every capability call instead of making it.
pub fn recorded() -> Backends {
    let r = Arc::new(Recorder::new());
    Backends { http: r.clone(), kubernetes: r.clone(), object_store: r }
}

/// A runner named `name` on `client`, with recorded capabilities and `metrics` when given.
pub async fn runner(
    client: async_nats::Client,
    name: &str,
    metrics: Option<riposte::runner::metrics::Metrics>,
) -> Runner {
    Runner::start(client, RunnerConfig { metrics, ..test_config(name) }, recorded()).await.unwrap()
}

/// A falcosidekick-shaped alert.
pub fn alert(uuid: &str) -> String {
    alert_with(uuid, "12:00:00.000000000: Error Write below binary dir (user=root)")
}

/// A falcosidekick-shaped alert with this output.
pub fn alert_with(uuid: &str, output: &str) -> String {
    serde_json::json!({
        "uuid": uuid, "output": output, "priority": "Error",
        "rule": "Write below binary dir", "time": "2024-05-17T15:31:56.746609046Z",
        "output_fields": {"user.name": "root", "evt.time": 1}, "source": "syscall", "hostname": "h", "tags": []
    })
    .to_string()
}

/// Publishes `n` alerts `<prefix>-<i>` with core NATS and returns once the server has read them all.
pub async fn publish(client: &async_nats::Client, subject: &str, prefix: &str, n: usize) -> Vec<String> {
    let uuids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for u in &uuids {
        client.publish(subject.to_owned(), alert(u).into()).await.unwrap();
    }
    client.flush().await.unwrap();
    // A request on the same connection returns after the server read every publish before it.
    client.request("$JS.API.INFO", bytes::Bytes::new()).await.unwrap();
    uuids
}

/// Publishes one alert body with core NATS and returns once the server has read it.
pub async fn publish_body(client: &async_nats::Client, subject: &str, body: String) {
    client.publish(subject.to_owned(), body.into()).await.unwrap();
    client.flush().await.unwrap();
    client.request("$JS.API.INFO", bytes::Bytes::new()).await.unwrap();
}

/// Every message of a stream, raw (to look for what must not be there).
pub async fn raw_stream(js: &jetstream::Context, stream: &str) -> String {
    let stream = js.get_stream(stream).await.unwrap();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    let mut out = String::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push_str(&String::from_utf8_lossy(&m.payload));
            out.push('\n');
        }
    }
    out
}

/// Every result of `function`.
pub async fn results(reg: &Registry, function: &str) -> Vec<ResultRecord> {
    read_results(reg.jetstream(), Some(function), None).await.unwrap()
}

/// Distinct uuids with an ok result.
pub async fn handled(reg: &Registry, function: &str) -> HashSet<String> {
    results(reg, function).await.into_iter().filter(|r| r.status == Status::Ok).map(|r| r.alert_uuid).collect()
}

/// A Prometheus exposition, parsed: `name{labels}` → value.
pub struct Exposition(pub BTreeMap<String, f64>);

impl Exposition {
    /// Parses the text format (comments skipped).
    pub fn parse(text: &str) -> Exposition {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            samples.insert(series.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {line}")));
        }
        Exposition(samples)
    }

    /// The value of one series, e.g. `riposte_executions_total{function="f",trigger="f-t",status="ok"}`;
    /// 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every series of metric `name` whose labels contain each of `labels` (`key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(s, _)| s.split('{').next() == Some(name) && labels.iter().all(|l| s.contains(l)))
            .map(|(_, v)| v)
            .sum()
    }
}

/// GET `http://<addr><path>`: status and body.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Scrapes `/metrics` at `addr`.
pub async fn scrape(addr: &str) -> Exposition {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Exposition::parse(&body)
}

/// The state of a trigger's consumer.
pub async fn consumer_info(reg: &Registry, trigger: &Trigger) -> jetstream::consumer::Info {
    let mut c: jetstream::consumer::PullConsumer = reg
        .jetstream()
        .get_consumer_from_stream(trigger.consumer_name(), riposte::nats::streams::ALERT_STREAM)
        .await
        .unwrap();
    c.info().await.unwrap().clone()
}

/// Waits until nothing of the trigger's consumer is pending or waiting for an ack: every alert is settled.
pub async fn wait_settled(reg: &Registry, trigger: &Trigger) {
    super::wait_until("every alert settled", std::time::Duration::from_secs(60), || async {
        let info = consumer_info(reg, trigger).await;
        info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0
    })
    .await;
}
