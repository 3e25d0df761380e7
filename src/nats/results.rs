//! What a runner records about each execution: a result on `riposte.results.<function>.<runner>` (history for
//! `function logs` and `function top`), and for an alert it gave up on, a dead letter on
//! `riposte.deadletter.<function>.<runner>` carrying the alert and the error. Neither ever holds setting values.
//!
//! The runner's name is in the subject so that NATS permissions can confine each runner's credential to its own
//! records (`riposte.results.*.<runner>`, README's least-privilege layout), and every reader checks that a
//! record says what its subject says (function and runner): a record published by a credential under one name
//! and claiming another function or runner is dropped with a warning, never shown or counted as real. (Records
//! on the subjects of earlier versions, `riposte.results.<function>`, carry no runner and are dropped the same.)
//!
//! Every record fits in one NATS message: its texts are cut at creation (message, detail, logs, and the fields
//! an alert fills: the bounds are in `limits.rs`, and a cut text says how many bytes were dropped), and before
//! it is published the whole record is checked against the `max_payload` the server announced; a result still
//! too large loses its logs, then its detail, then the end of its message. A dead letter too large keeps the
//! alert in the object store `riposte-deadletters` (named in the letter) instead of in itself.

use crate::model::execution::{Execution, LogLine, Status};
use crate::model::limits::{
    LOG_LINE_BYTES, PUBLISH_HEADROOM_BYTES, RECORD_FIELD_BYTES, RESULT_DETAIL_BYTES, RESULT_LOGS_BYTES,
    RESULT_MESSAGE_BYTES,
};
use crate::nats::streams::{Doing, StreamError, DEADLETTER_OBJECTS, DEADLETTER_PREFIX, RESULTS_PREFIX, RESULTS_STREAM};
use crate::secrets::truncate::truncate;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// What the runner did with the alert after the execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Acked: the reaction is done.
    Acked,
    /// Nak'ed with a delay: it will be delivered again.
    Retry,
    /// Terminated: it can never succeed (malformed alert, non-retryable failure).
    Terminated,
    /// Published to the dead-letter subject after the last attempt, then terminated.
    DeadLettered,
    /// Acked unrun: an alert with the same dedup key ran within the function's window.
    Deduplicated,
    /// Acked after a dry run (recording backends; nothing reached the world), whatever its status.
    DryRun,
    /// Acked unrun: the trigger's condition could not be evaluated on it (status `condition-error`).
    Skipped,
}

impl Disposition {
    /// The kebab-case name, as in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Acked => "acked",
            Disposition::Retry => "retry",
            Disposition::Terminated => "terminated",
            Disposition::DeadLettered => "dead-lettered",
            Disposition::Deduplicated => "deduplicated",
            Disposition::DryRun => "dry-run",
            Disposition::Skipped => "skipped",
        }
    }
}

/// One execution, as published on `riposte.results.<function>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRecord {
    pub function: String,
    pub trigger: String,
    pub runner: String,
    /// The alert's uuid (empty when the alert could not be parsed).
    pub alert_uuid: String,
    pub subject: String,
    /// Delivery attempt, from 1.
    pub attempt: u32,
    pub status: Status,
    pub disposition: Disposition,
    /// Time of the execution itself.
    pub duration_us: u64,
    pub instantiate_us: u64,
    /// From the alert's arrival in JetStream to the end of the reaction.
    pub latency_us: u64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// For a dry run: the host calls it would have made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_calls: Vec<serde_json::Value>,
    /// For `retry`: the delay before the next delivery, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// The dedup key the alert claimed (a dry run: in the dry run's own memory, so arming starts afresh), or
    /// for a duplicate the key another alert holds; cut to `RECORD_FIELD_BYTES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// When it finished, RFC 3339.
    pub time: String,
}

impl ResultRecord {
    /// A record of `exec` (whose message and logs are already redacted), each text cut to its bound.
    pub fn new(ctx: &Delivery<'_>, exec: &Execution, disposition: Disposition) -> ResultRecord {
        ResultRecord {
            function: ctx.function.to_owned(),
            trigger: ctx.trigger.to_owned(),
            runner: ctx.runner.to_owned(),
            alert_uuid: truncate(ctx.alert_uuid, RECORD_FIELD_BYTES).into_owned(),
            subject: truncate(ctx.subject, RECORD_FIELD_BYTES).into_owned(),
            attempt: ctx.attempt,
            status: exec.status,
            disposition,
            duration_us: exec.duration_us,
            instantiate_us: exec.instantiate_us,
            latency_us: ctx.latency_us(),
            message: truncate(&exec.message, RESULT_MESSAGE_BYTES).into_owned(),
            reason: exec.reason.as_deref().map(|r| truncate(r, RECORD_FIELD_BYTES).into_owned()),
            detail: exec.detail.as_ref().map(bounded_detail),
            logs: bounded_logs(&exec.logs),
            host_calls: exec.host_calls.clone(),
            retry_in_ms: None,
            dedup_key: None,
            time: now_rfc3339(),
        }
    }

    /// The record as JSON of at most `max` bytes: as it is when it fits, else without its logs (and dry-run host
    /// calls), then without its detail, then with its message cut (a warning log line says what was dropped and why).
    pub fn to_json_within(&self, max: usize) -> Result<Vec<u8>, StreamError> {
        let body = serde_json::to_vec(self).expect("a result serializes");
        if body.len() <= max {
            return Ok(body);
        }
        let size = body.len();
        let mut fitted = self.clone();
        let why = format!("the result was {size} bytes, over the {max} bytes the NATS server takes (max_payload)");
        let calls = match self.host_calls.len() {
            0 => String::new(),
            n => format!(" and {n} dry-run host calls"),
        };
        fitted.host_calls = Vec::new();
        fitted.logs = vec![LogLine {
            level: "warn".into(),
            message: format!("{} log lines{calls} dropped: {why}", self.logs.len()),
        }];
        let body = serde_json::to_vec(&fitted).expect("a result serializes");
        if body.len() <= max {
            return Ok(body);
        }
        fitted.detail = None;
        fitted.logs[0].message = format!("{} log lines{calls} and the detail dropped: {why}", self.logs.len());
        let mut body = serde_json::to_vec(&fitted).expect("a result serializes");
        // JSON escapes make the message longer on the wire than in memory: cut, measure, cut again.
        while body.len() > max && !fitted.message.is_empty() {
            // Keep the share of the message its escaped form has room for (less room for the cut's note).
            let escaped = serde_json::to_string(&fitted.message).map_or(usize::MAX, |m| m.len()).max(1);
            let room = max.saturating_sub(body.len().saturating_sub(escaped));
            let share = (fitted.message.len() as u128 * room as u128 / escaped as u128) as usize;
            let keep = share.saturating_sub(64).min(fitted.message.len() - 1);
            fitted.message = truncate(&fitted.message, keep).into_owned();
            body = serde_json::to_vec(&fitted).expect("a result serializes");
        }
        if body.len() > max {
            return Err(StreamError::new(
                "publishing a result",
                format!("even without logs, detail and message it is {} bytes, over max_payload", body.len()),
            ));
        }
        Ok(body)
    }
}

/// A detail within `RESULT_DETAIL_BYTES` of JSON: as it is, or its JSON text cut (a string then).
fn bounded_detail(detail: &serde_json::Value) -> serde_json::Value {
    let text = detail.to_string();
    if text.len() <= RESULT_DETAIL_BYTES {
        return detail.clone();
    }
    serde_json::Value::String(truncate(&text, RESULT_DETAIL_BYTES).into_owned())
}

/// Log lines within `RESULT_LOGS_BYTES` in all, each within `LOG_LINE_BYTES`; the lines past the budget are
/// replaced by one warning that counts them.
fn bounded_logs(logs: &[LogLine]) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut used = 0;
    for (i, line) in logs.iter().enumerate() {
        let message = truncate(&line.message, LOG_LINE_BYTES);
        if used + message.len() > RESULT_LOGS_BYTES {
            let rest = &logs[i..];
            let bytes: usize = rest.iter().map(|l| l.message.len()).sum();
            out.push(LogLine {
                level: "warn".into(),
                message: format!(
                    "{} more log lines ({bytes} bytes) dropped: a result keeps {RESULT_LOGS_BYTES} bytes of logs",
                    rest.len()
                ),
            });
            break;
        }
        used += message.len();
        out.push(LogLine { level: truncate(&line.level, 16).into_owned(), message: message.into_owned() });
    }
    out
}

/// Where an alert came from, for records.
pub struct Delivery<'a> {
    pub function: &'a str,
    pub trigger: &'a str,
    pub runner: &'a str,
    pub alert_uuid: &'a str,
    pub subject: &'a str,
    pub attempt: u32,
    /// When JetStream stored the alert, in ns since the epoch.
    pub published_ns: i128,
}

impl Delivery<'_> {
    fn latency_us(&self) -> u64 {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        u64::try_from((now - self.published_ns).max(0) / 1000).unwrap_or(u64::MAX)
    }
}

/// An alert riposte gave up on, as published on `riposte.deadletter.<function>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub function: String,
    pub trigger: String,
    pub runner: String,
    pub subject: String,
    pub alert_uuid: String,
    pub attempts: u32,
    pub status: Status,
    pub error: String,
    /// The alert as received, so it can be replayed; empty when it did not fit in the letter (see
    /// `alert_object`).
    pub alert: String,
    /// When the alert was too large for the letter: the object in the `riposte-deadletters` object store that
    /// holds it in full (read it with [`deadletter_alert`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_object: Option<String>,
    /// The alert's sequence number in the alert stream.
    #[serde(default)]
    pub alert_sequence: u64,
    pub time: String,
}

impl DeadLetter {
    /// The dead letter of the alert `raw` (sequence `sequence` in the alert stream) after `exec`, its last attempt.
    pub fn new(ctx: &Delivery<'_>, exec: &Execution, raw: &[u8], sequence: u64, time: String) -> DeadLetter {
        DeadLetter {
            function: ctx.function.to_owned(),
            trigger: ctx.trigger.to_owned(),
            runner: ctx.runner.to_owned(),
            subject: truncate(ctx.subject, RECORD_FIELD_BYTES).into_owned(),
            alert_uuid: truncate(ctx.alert_uuid, RECORD_FIELD_BYTES).into_owned(),
            attempts: ctx.attempt,
            status: exec.status,
            error: truncate(&exec.message, RESULT_MESSAGE_BYTES).into_owned(),
            alert: String::from_utf8_lossy(raw).into_owned(),
            alert_object: None,
            alert_sequence: sequence,
            time,
        }
    }
}

/// The subject of the results of `function` that runner `runner` publishes.
pub fn results_subject(function: &str, runner: &str) -> String {
    format!("{RESULTS_PREFIX}.{function}.{runner}")
}

/// The subject of the dead letters of `function` that runner `runner` publishes.
pub fn deadletter_subject(function: &str, runner: &str) -> String {
    format!("{DEADLETTER_PREFIX}.{function}.{runner}")
}

/// What a record says about where it comes from, to be checked against the subject it came on.
pub trait Attributed {
    /// The function and the runner it names.
    fn claims(&self) -> (&str, &str);
}

impl Attributed for ResultRecord {
    fn claims(&self) -> (&str, &str) {
        (&self.function, &self.runner)
    }
}

impl Attributed for DeadLetter {
    fn claims(&self) -> (&str, &str) {
        (&self.function, &self.runner)
    }
}

/// Whether a record that came on `subject` (under `prefix`) names the function and runner its subject names.
pub fn matches_subject(prefix: &str, subject: &str, record: &impl Attributed) -> bool {
    let (function, runner) = record.claims();
    subject.strip_prefix(prefix).and_then(|s| s.strip_prefix('.')) == Some(&format!("{function}.{runner}"))
}

/// The largest record this connection's server takes: its `max_payload` (announced when the client connected),
/// less room for headers.
pub fn max_record_bytes(js: &jetstream::Context) -> usize {
    let client = js.client();
    let announced = match client.server_info().max_payload {
        0 => client.max_payload(),
        n => n,
    };
    announced.saturating_sub(PUBLISH_HEADROOM_BYTES)
}

/// Publishes a result to JetStream, shrunk to fit the server's `max_payload`, and waits for it to be stored
/// (the alert is settled only after that).
pub async fn publish_result(js: &jetstream::Context, record: &ResultRecord) -> Result<(), StreamError> {
    let body = record.to_json_within(max_record_bytes(js))?;
    let subject = results_subject(&record.function, &record.runner);
    let ack = js.publish(subject, body.into()).await.doing("publishing a result")?;
    ack.await.map(|_| ()).doing("publishing a result")
}

/// Publishes a dead letter and waits for it to be stored. When the letter would not fit in the server's
/// `max_payload`, the alert goes to the object store `riposte-deadletters` first and the letter names it.
pub async fn publish_deadletter(js: &jetstream::Context, letter: &DeadLetter) -> Result<(), StreamError> {
    let max = max_record_bytes(js);
    let mut body = serde_json::to_vec(letter).expect("a dead letter serializes");
    if body.len() > max {
        let what = "storing a dead letter's alert in the object store";
        let mut moved = letter.clone();
        let name = format!("{}/{}", letter.function, letter.alert_sequence);
        let store = js.get_object_store(DEADLETTER_OBJECTS).await.doing(what)?;
        store.put(name.as_str(), &mut letter.alert.as_bytes()).await.doing(what)?;
        moved.alert = String::new();
        moved.alert_object = Some(name);
        body = serde_json::to_vec(&moved).expect("a dead letter serializes");
        if body.len() > max {
            return Err(StreamError::new(
                "publishing a dead letter",
                format!("{} bytes, over max_payload", body.len()),
            ));
        }
    }
    let subject = deadletter_subject(&letter.function, &letter.runner);
    let ack = js.publish(subject, body.into()).await.doing("publishing a dead letter")?;
    ack.await.map(|_| ()).doing("publishing a dead letter")
}

/// The alert of a dead letter, in full: from the letter, or from the object store when it did not fit there.
pub async fn deadletter_alert(js: &jetstream::Context, letter: &DeadLetter) -> Result<String, StreamError> {
    let Some(name) = &letter.alert_object else { return Ok(letter.alert.clone()) };
    let what = format!("reading dead-letter alert {name} from the object store");
    let store = js.get_object_store(DEADLETTER_OBJECTS).await.doing(what.clone())?;
    let mut object = store.get(name.as_str()).await.doing(what.clone())?;
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes).await.doing(what)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a function's results (every function's with `None`), oldest first; keeps the last `last` if given.
pub async fn read_results(
    js: &jetstream::Context,
    function: Option<&str>,
    last: Option<usize>,
) -> Result<Vec<ResultRecord>, StreamError> {
    let filter = function.map(function_results).unwrap_or_else(|| format!("{RESULTS_PREFIX}.>"));
    Ok(read_stream(js, RESULTS_STREAM, &filter, last, consumer::DeliverPolicy::All, None).await?.unwrap_or_default())
}

/// One function's results stored since `since`, oldest first; keeps the last `last` if given.
pub async fn read_function_results_since(
    js: &jetstream::Context,
    function: &str,
    since: time::OffsetDateTime,
    last: Option<usize>,
) -> Result<Vec<ResultRecord>, StreamError> {
    let policy = consumer::DeliverPolicy::ByStartTime { start_time: since };
    Ok(read_stream(js, RESULTS_STREAM, &function_results(function), last, policy, None).await?.unwrap_or_default())
}

/// Every function's results stored since `since`, oldest first (JetStream starts the read at that time, so
/// a short window over a long history reads only the window).
pub async fn read_results_since(
    js: &jetstream::Context,
    since: time::OffsetDateTime,
) -> Result<Vec<ResultRecord>, StreamError> {
    let policy = consumer::DeliverPolicy::ByStartTime { start_time: since };
    Ok(read_stream(js, RESULTS_STREAM, &format!("{RESULTS_PREFIX}.>"), None, policy, None).await?.unwrap_or_default())
}

/// Most results a redelivery check reads; beyond that (a failure storm retrying many alerts of one function)
/// the alert simply runs again.
const HANDLED_SCAN_MAX: u64 = 500;

/// The `ok` result `function` already stored for alert `uuid` since `since`, if any. JetStream delivers an alert
/// again when a runner stopped after the reaction but before its ack; the dispatcher asks this before running a
/// redelivered alert, so such an alert is not handled twice. `since` is the later of the alert's arrival and one
/// ack wait (plus slack) ago: a result stored earlier would have been acked. Best effort: when more than
/// `HANDLED_SCAN_MAX` results of the function fall in the window, the answer is None (run it again).
pub async fn already_handled(
    js: &jetstream::Context,
    function: &str,
    uuid: &str,
    since: time::OffsetDateTime,
) -> Result<Option<ResultRecord>, StreamError> {
    // A consumer starting at `since` says at once how many results match: usually none, and nothing is read.
    let policy = consumer::DeliverPolicy::ByStartTime { start_time: since };
    let records: Option<Vec<ResultRecord>> =
        read_stream(js, RESULTS_STREAM, &function_results(function), None, policy, Some(HANDLED_SCAN_MAX)).await?;
    Ok(records.unwrap_or_default().into_iter().find(|r| r.alert_uuid == uuid && r.status == Status::Ok))
}

/// Reads a function's dead letters, oldest first.
pub async fn read_deadletters(js: &jetstream::Context, function: &str) -> Result<Vec<DeadLetter>, StreamError> {
    let all = consumer::DeliverPolicy::All;
    let filter = format!("{DEADLETTER_PREFIX}.{function}.*");
    Ok(read_stream(js, crate::nats::streams::DEADLETTER_STREAM, &filter, None, all, None).await?.unwrap_or_default())
}

/// The filter of one function's results, every runner's.
fn function_results(function: &str) -> String {
    format!("{RESULTS_PREFIX}.{function}.*")
}

/// The records of `stream` on `filter` from `deliver_policy` on, oldest first (only the last `last` when given);
/// None, without reading, when more than `cap` match. A record whose subject does not say what it says (another
/// function or runner: forged, or from an earlier version's subjects) is left out, and a warning counts them.
async fn read_stream<T: serde::de::DeserializeOwned + Attributed>(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    last: Option<usize>,
    deliver_policy: consumer::DeliverPolicy,
    cap: Option<u64>,
) -> Result<Option<Vec<T>>, StreamError> {
    let what = format!("reading {stream}");
    let stream = js.get_stream(stream).await.doing(what.clone())?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .doing(what.clone())?;
    // What matched when the consumer was made: nothing to wait for when it is nothing.
    let matched = consumer.cached_info().num_pending;
    if cap.is_some_and(|cap| matched > cap) {
        return Ok(None);
    }
    let mut out = VecDeque::new();
    let mut mismatched = 0u64;
    let prefix = if stream.cached_info().config.name == RESULTS_STREAM { RESULTS_PREFIX } else { DEADLETTER_PREFIX };
    if matched == 0 {
        return Ok(Some(out.into()));
    }
    let mut messages = consumer.messages().await.doing(what.clone())?;
    // The last message says nothing is pending; a silence also ends the read (messages may have expired).
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
        let msg = msg.doing(what.clone())?;
        if let Ok(record) = serde_json::from_slice::<T>(&msg.payload) {
            if !matches_subject(prefix, &msg.subject, &record) {
                mismatched += 1;
                if msg.info().map(|i| i.pending == 0).unwrap_or(false) {
                    break;
                }
                continue;
            }
            out.push_back(record);
            if last.is_some_and(|n| out.len() > n) {
                out.pop_front();
            }
        }
        if msg.info().map(|i| i.pending == 0).unwrap_or(false) {
            break;
        }
    }
    if mismatched > 0 {
        tracing::warn!(
            "{mismatched} record(s) in {} not shown: their subject does not name the function and runner they \
             claim (forged by a credential publishing under another name, or stored by an earlier riposte)",
            stream.cached_info().config.name
        );
    }
    Ok(Some(out.into()))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
