//! A runner's Prometheus metrics. Two kinds:
//! - what the dispatcher decides per alert (alerts received, deliveries and redeliveries, executions per
//!   status, settled per disposition, execution duration, in flight, dead-lettered, skipped by condition,
//!   condition errors, deduplicated, dry runs, records not stored), fed by the runner's ledger of counts
//!   (`runner/ledger.rs`, the one place an outcome is counted, which also serves heartbeats) through one
//!   [`TriggerMetrics`] per trigger whose series are resolved once, so an alert costs a few atomic adds, no
//!   lookup and no allocation;
//! - what is read at scrape time ([`Sample`]: each trigger's consumer backlog, warm instances, the compile
//!   cache, the NATS connection), polled by whoever serves the metrics, never per alert.
//!
//! Label values are names riposte validated (function, trigger) or fixed words (status, disposition), never
//! anything an alert carries, so the number of series is bounded by what is deployed.

use crate::model::execution::Status;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex, OnceLock};

/// Upper bounds of the execution duration buckets, in seconds: 100 µs (a warm WASM call) to 2 min (the
/// longest timeout).
const DURATION_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    function: String,
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    function: String,
    trigger: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DispositionLabels {
    function: String,
    trigger: String,
    disposition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

/// The labels of a stream's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The metrics of one runner; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    received: Family<TriggerLabels, Counter>,
    deliveries: Family<TriggerLabels, Counter>,
    redeliveries: Family<TriggerLabels, Counter>,
    executions: Family<StatusLabels, Counter>,
    settled: Family<DispositionLabels, Counter>,
    dead_lettered: Family<TriggerLabels, Counter>,
    skipped_by_condition: Family<TriggerLabels, Counter>,
    condition_errors: Family<TriggerLabels, Counter>,
    deduplicated: Family<TriggerLabels, Counter>,
    dry_runs: Family<TriggerLabels, Counter>,
    unstored: Family<TriggerLabels, Counter>,
    duration: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<FunctionLabels, Gauge>,
    sample: Arc<Mutex<Sample>>,
    http: HttpInputMetrics,
}

/// The HTTP alert input's counts (`riposte run --http-addr`): requests by the status answered, and alerts taken
/// by the alert stream, new or a resend JetStream deduplicated.
#[derive(Clone, Default)]
pub struct HttpInputMetrics {
    requests: Family<CodeLabels, Counter>,
    alerts: Family<OutcomeLabels, Counter>,
}

impl HttpInputMetrics {
    /// A request answered with `code`.
    pub fn answered(&self, code: u16) {
        self.requests.get_or_create(&CodeLabels { code }).inc();
    }

    /// An alert the stream took: `duplicate` when JetStream already had its id.
    pub fn accepted(&self, duplicate: bool) {
        let outcome = if duplicate { "deduplicated" } else { "accepted" };
        self.alerts.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero, under the prefix `riposte_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("riposte");
        let received = Family::<TriggerLabels, Counter>::default();
        let deliveries = Family::<TriggerLabels, Counter>::default();
        let redeliveries = Family::<TriggerLabels, Counter>::default();
        let executions = Family::<StatusLabels, Counter>::default();
        let settled = Family::<DispositionLabels, Counter>::default();
        let dead_lettered = Family::<TriggerLabels, Counter>::default();
        let skipped_by_condition = Family::<TriggerLabels, Counter>::default();
        let condition_errors = Family::<TriggerLabels, Counter>::default();
        let deduplicated = Family::<TriggerLabels, Counter>::default();
        let dry_runs = Family::<TriggerLabels, Counter>::default();
        let unstored = Family::<TriggerLabels, Counter>::default();
        let duration = Family::<FunctionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let in_flight = Family::<FunctionLabels, Gauge>::default();
        let sample = Arc::new(Mutex::new(Sample::default()));
        registry.register(
            "alerts_received",
            "Alerts taken by a trigger on their first delivery (redeliveries are not counted again)",
            received.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries taken by a trigger: first deliveries and redeliveries",
            deliveries.clone(),
        );
        registry.register("redeliveries", "Deliveries of an alert after its first (attempt > 1)", redeliveries.clone());
        registry.register(
            "executions",
            "Executions of a function on an alert, each attempt, by status (ok: succeeded; dry runs apart)",
            executions.clone(),
        );
        registry.register(
            "alerts_settled",
            "Deliveries settled with JetStream, by disposition (acked, retry, terminated, dead-lettered, \
             deduplicated, dry-run, skipped: a condition error, already-handled: a redelivery whose reaction had \
             succeeded)",
            settled.clone(),
        );
        registry.register("alerts_dead_lettered", "Alerts given up on after their last attempt", dead_lettered.clone());
        registry.register(
            "alerts_skipped_by_condition",
            "Alerts no condition of the function's triggers let through (acked, nothing run, no result)",
            skipped_by_condition.clone(),
        );
        registry.register(
            "alerts_condition_error",
            "Alerts a condition could not be evaluated on (recorded as condition-error, or run with \
             --on-condition-error run)",
            condition_errors.clone(),
        );
        registry.register("alerts_deduplicated", "Alerts skipped as duplicates", deduplicated.clone());
        registry.register(
            "dry_runs",
            "Executions in a dry run (recording backends), whatever their status",
            dry_runs.clone(),
        );
        registry.register(
            "records_unstored",
            "Results and dead letters that could not be stored after their retries (the alert was settled anyway)",
            unstored.clone(),
        );
        registry.register("execution_duration_seconds", "Time one execution of a function took", duration.clone());
        registry.register("alerts_in_flight", "Alerts being handled now", in_flight.clone());
        let http = HttpInputMetrics::default();
        registry.register(
            "http_input_requests",
            "Requests to the HTTP alert input, by the status code answered",
            http.requests.clone(),
        );
        registry.register(
            "http_input_alerts",
            "Alerts the HTTP input put in the alert stream: accepted (new) or deduplicated (a resend JetStream had)",
            http.alerts.clone(),
        );
        registry.register("build", "The riposte build", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
        registry.register_collector(Box::new(SampleCollector(sample.clone())));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                received,
                deliveries,
                redeliveries,
                executions,
                settled,
                dead_lettered,
                skipped_by_condition,
                condition_errors,
                deduplicated,
                dry_runs,
                unstored,
                duration,
                in_flight,
                sample,
                http,
            }),
        }
    }

    /// The series of one trigger, resolved once for its dispatcher.
    pub fn trigger(&self, function: &str, trigger: &str) -> TriggerMetrics {
        let m = &self.inner;
        let labels = TriggerLabels { function: function.to_owned(), trigger: trigger.to_owned() };
        let f = FunctionLabels { function: function.to_owned() };
        TriggerMetrics(Some(Arc::new(Series {
            metrics: self.clone(),
            received: m.received.get_or_create(&labels).clone(),
            deliveries: m.deliveries.get_or_create(&labels).clone(),
            redeliveries: m.redeliveries.get_or_create(&labels).clone(),
            dead_lettered: m.dead_lettered.get_or_create(&labels).clone(),
            skipped_by_condition: m.skipped_by_condition.get_or_create(&labels).clone(),
            condition_errors: m.condition_errors.get_or_create(&labels).clone(),
            deduplicated: m.deduplicated.get_or_create(&labels).clone(),
            dry_runs: m.dry_runs.get_or_create(&labels).clone(),
            unstored: m.unstored.get_or_create(&labels).clone(),
            duration: m.duration.get_or_create(&f).clone(),
            in_flight: m.in_flight.get_or_create(&f).clone(),
            executions: Default::default(),
            settled: Default::default(),
            labels,
        })))
    }

    /// The HTTP alert input's counters.
    pub fn http_input(&self) -> HttpInputMetrics {
        self.inner.http.clone()
    }

    /// Replaces what was read at scrape time.
    pub fn set_sample(&self, sample: Sample) {
        *self.inner.sample.lock().unwrap() = sample;
    }

    /// The exposition, in the OpenMetrics text format Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).expect("writing to a String");
        out
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What is read at scrape time rather than counted per alert.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Each dispatched trigger's consumer.
    pub consumers: Vec<ConsumerSample>,
    /// Each loaded WASM function's instances (counted since the function was loaded).
    pub instances: Vec<InstanceSample>,
    /// Components loaded from the compile cache / compiled.
    pub compile_hits: u64,
    pub compile_misses: u64,
    /// Whether the NATS connection is up now.
    pub nats_connected: bool,
    /// Connections made (the first one and every reconnect).
    pub nats_connects: u64,
    /// The alert, results and dead-letter streams: bytes held and their bound.
    pub streams: Vec<crate::nats::streams::StreamUsage>,
}

/// One trigger's consumer as JetStream reports it.
#[derive(Debug, Clone)]
pub struct ConsumerSample {
    pub function: String,
    pub trigger: String,
    /// Alerts waiting for the trigger, not yet delivered.
    pub pending: u64,
    /// Alerts delivered and not acknowledged yet.
    pub ack_pending: u64,
}

/// One function's warm-instance counters.
#[derive(Debug, Clone)]
pub struct InstanceSample {
    pub function: String,
    pub created: u64,
    pub reused: u64,
    pub retired: u64,
    /// Idle instances released (idle too long, or over the warm budget).
    pub released: u64,
    /// Idle warm instances now.
    pub idle: u64,
    /// Times the function's component was unloaded after the idle timeout.
    pub unloads: u64,
}

#[derive(Debug)]
struct SampleCollector(Arc<Mutex<Sample>>);

impl prometheus_client::collector::Collector for SampleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap().clone();
        let consumers = |v: fn(&ConsumerSample) -> u64| {
            s.consumers
                .iter()
                .map(move |c| (TriggerLabels { function: c.function.clone(), trigger: c.trigger.clone() }, v(c)))
        };
        gauges(
            &mut encoder,
            "consumer_pending",
            "Alerts waiting in a trigger's consumer (lag)",
            consumers(|c| c.pending),
        )?;
        gauges(
            &mut encoder,
            "consumer_ack_pending",
            "Alerts delivered to a trigger's runners and not acknowledged yet",
            consumers(|c| c.ack_pending),
        )?;
        let instances = |v: fn(&InstanceSample) -> u64| {
            s.instances.iter().map(move |i| (FunctionLabels { function: i.function.clone() }, v(i)))
        };
        counters(&mut encoder, "instances_created", "WASM instances created", instances(|i| i.created))?;
        counters(
            &mut encoder,
            "instances_reused",
            "Alerts served by an already-warm WASM instance",
            instances(|i| i.reused),
        )?;
        counters(
            &mut encoder,
            "instances_retired",
            "WASM instances retired (after a trap, a timeout, an error or their reuse limit)",
            instances(|i| i.retired),
        )?;
        counters(
            &mut encoder,
            "instances_released",
            "Idle WASM instances released: idle longer than --instance-idle-timeout, or the least recently used \
             over --max-warm-instances",
            instances(|i| i.released),
        )?;
        gauges(&mut encoder, "instances_idle", "Idle warm WASM instances now", instances(|i| i.idle))?;
        counters(
            &mut encoder,
            "component_unloads",
            "Times a function's component was unloaded after --instance-idle-timeout without an alert (the next \
             alert loads it again from the compile cache)",
            instances(|i| i.unloads),
        )?;
        let counter = prometheus_client::metrics::MetricType::Counter;
        let gauge = prometheus_client::metrics::MetricType::Gauge;
        single(
            &mut encoder,
            "compile_cache_hits",
            "Components loaded from the compile cache",
            counter,
            s.compile_hits,
        )?;
        single(&mut encoder, "compile_cache_misses", "Components compiled", counter, s.compile_misses)?;
        single(
            &mut encoder,
            "nats_connected",
            "1 while the NATS connection is up",
            gauge,
            u64::from(s.nats_connected),
        )?;
        let streams = |v: fn(&crate::nats::streams::StreamUsage) -> Option<u64>| {
            s.streams.iter().filter_map(move |u| Some((StreamLabels { stream: u.stream.clone() }, v(u)?)))
        };
        gauges(&mut encoder, "stream_bytes", "Bytes a stream holds", streams(|u| Some(u.bytes)))?;
        gauges(&mut encoder, "stream_messages", "Messages a stream holds", streams(|u| Some(u.messages)))?;
        gauges(
            &mut encoder,
            "stream_max_bytes",
            "A stream's max_bytes (absent: unbounded); full, the alert stream discards its oldest alerts",
            streams(|u| u.max_bytes),
        )?;
        let reconnects = s.nats_connects.saturating_sub(1);
        single(&mut encoder, "nats_reconnects", "Reconnections to NATS since the runner started", counter, reconnects)?;
        Ok(())
    }
}

/// A metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: prometheus_client::metrics::MetricType,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, kind)?;
    match kind {
        prometheus_client::metrics::MetricType::Counter => ConstCounter::new(value).encode(metric),
        _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric),
    }
}

fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (labels, v) in values {
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One trigger's series, fed by the runner's ledger at each decision. [`TriggerMetrics::off`] (no
/// `--metrics-addr`) observes nothing.
#[derive(Clone, Default)]
pub struct TriggerMetrics(Option<Arc<Series>>);

struct Series {
    metrics: Metrics,
    labels: TriggerLabels,
    received: Counter,
    deliveries: Counter,
    redeliveries: Counter,
    dead_lettered: Counter,
    skipped_by_condition: Counter,
    condition_errors: Counter,
    deduplicated: Counter,
    dry_runs: Counter,
    unstored: Counter,
    duration: Histogram,
    in_flight: Gauge,
    /// Resolved on first use: statuses and dispositions are few and fixed, so a handful of slots each.
    executions: Slots,
    settled: Slots,
}

/// Counters by a fixed word, resolved on first use; lock-free afterwards.
#[derive(Default)]
struct Slots([OnceLock<(&'static str, Counter)>; 12]);

impl Slots {
    fn inc(&self, word: &'static str, make: impl Fn() -> Counter) {
        for slot in &self.0 {
            let (w, counter) = slot.get_or_init(|| (word, make()));
            if *w == word {
                counter.inc();
                return;
            }
        }
        make().inc();
    }
}

impl TriggerMetrics {
    /// No metrics.
    pub fn off() -> TriggerMetrics {
        TriggerMetrics(None)
    }

    /// A delivery taken by the trigger, `attempt` from 1: the first is an alert received.
    pub fn delivered(&self, attempt: u32) {
        if let Some(s) = &self.0 {
            s.deliveries.inc();
            if attempt > 1 {
                s.redeliveries.inc();
            } else {
                s.received.inc();
            }
        }
    }

    /// One execution (not a dry run) ended with `status` after `duration_us`.
    pub fn executed(&self, status: Status, duration_us: u64) {
        if let Some(s) = &self.0 {
            s.duration.observe(duration_us as f64 / 1e6);
            s.executions.inc(status.as_str(), || {
                let l = StatusLabels {
                    function: s.labels.function.clone(),
                    trigger: s.labels.trigger.clone(),
                    status: status.as_str(),
                };
                s.metrics.inner.executions.get_or_create(&l).clone()
            });
        }
    }

    /// One dry-run execution ended after `duration_us`.
    pub fn dry_run(&self, duration_us: u64) {
        if let Some(s) = &self.0 {
            s.duration.observe(duration_us as f64 / 1e6);
            s.dry_runs.inc();
        }
    }

    /// The alert was settled with JetStream as `disposition` (a kebab-case word).
    pub fn settled(&self, disposition: &'static str) {
        if let Some(s) = &self.0 {
            s.settled.inc(disposition, || {
                let l = DispositionLabels {
                    function: s.labels.function.clone(),
                    trigger: s.labels.trigger.clone(),
                    disposition,
                };
                s.metrics.inner.settled.get_or_create(&l).clone()
            });
        }
    }

    /// The alert was given up on after its last attempt.
    pub fn dead_lettered(&self) {
        if let Some(s) = &self.0 {
            s.dead_lettered.inc();
        }
    }

    /// The function's conditions did not let the alert through.
    pub fn skipped_by_condition(&self) {
        if let Some(s) = &self.0 {
            s.skipped_by_condition.inc();
        }
    }

    /// A condition could not be evaluated on the alert.
    pub fn condition_error(&self) {
        if let Some(s) = &self.0 {
            s.condition_errors.inc();
        }
    }

    /// The alert was skipped as a duplicate.
    pub fn deduplicated(&self) {
        if let Some(s) = &self.0 {
            s.deduplicated.inc();
        }
    }

    /// A result or dead letter could not be stored (the alert is settled anyway).
    pub fn unstored(&self) {
        if let Some(s) = &self.0 {
            s.unstored.inc();
        }
    }

    /// Counts the alert in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        InFlight(self.0.as_ref().map(|s| {
            s.in_flight.inc();
            s.in_flight.clone()
        }))
    }
}

/// An alert in flight; counted until dropped.
pub struct InFlight(Option<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_appear_in_the_exposition_with_bounded_labels() {
        let m = Metrics::new();
        let t = m.trigger("falco-slack", "falco-slack-trigger-0");
        t.delivered(1);
        t.delivered(2);
        t.executed(Status::Ok, 1500);
        t.executed(Status::Failed, 20);
        t.settled("acked");
        t.settled("retry");
        t.settled("retry");
        {
            let _g = t.in_flight();
            assert!(m.encode().contains("riposte_alerts_in_flight{function=\"falco-slack\"} 1\n"));
        }
        m.set_sample(Sample {
            consumers: vec![ConsumerSample {
                function: "falco-slack".into(),
                trigger: "falco-slack-trigger-0".into(),
                pending: 7,
                ack_pending: 2,
            }],
            instances: vec![InstanceSample {
                function: "falco-slack".into(),
                created: 1,
                reused: 5,
                retired: 0,
                released: 2,
                idle: 1,
                unloads: 0,
            }],
            compile_hits: 3,
            compile_misses: 1,
            nats_connected: true,
            nats_connects: 2,
            streams: vec![
                crate::nats::streams::StreamUsage {
                    stream: "FALCO".into(),
                    bytes: 900,
                    messages: 3,
                    max_bytes: Some(1000),
                },
                crate::nats::streams::StreamUsage { stream: "OLD".into(), bytes: 5, messages: 1, max_bytes: None },
            ],
        });
        let text = m.encode();
        assert!(text.contains("riposte_stream_bytes{stream=\"FALCO\"} 900\n"), "{text}");
        assert!(text.contains("riposte_stream_max_bytes{stream=\"FALCO\"} 1000\n"), "{text}");
        assert!(!text.contains("riposte_stream_max_bytes{stream=\"OLD\"}"), "unbounded: no bound series: {text}");
        let ft = "function=\"falco-slack\",trigger=\"falco-slack-trigger-0\"";
        for line in [
            format!("riposte_alerts_received_total{{{ft}}} 1"),
            format!("riposte_deliveries_total{{{ft}}} 2"),
            format!("riposte_redeliveries_total{{{ft}}} 1"),
            format!("riposte_executions_total{{{ft},status=\"ok\"}} 1"),
            format!("riposte_executions_total{{{ft},status=\"failed\"}} 1"),
            format!("riposte_alerts_settled_total{{{ft},disposition=\"retry\"}} 2"),
            format!("riposte_consumer_pending{{{ft}}} 7"),
            "riposte_alerts_in_flight{function=\"falco-slack\"} 0".into(),
            "riposte_execution_duration_seconds_count{function=\"falco-slack\"} 2".into(),
            "riposte_instances_reused_total{function=\"falco-slack\"} 5".into(),
            "riposte_compile_cache_hits_total 3".into(),
            "riposte_nats_connected 1".into(),
            "riposte_nats_reconnects_total 1".into(),
            format!("riposte_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn off_observes_nothing() {
        let t = TriggerMetrics::off();
        t.delivered(3);
        t.executed(Status::Ok, 1);
        t.settled("acked");
        drop(t.in_flight());
    }
}
