//! What a runner records about each execution: a result on `riposte.results.<function>` (history for
//! `function logs` and `function top`), and for an alert it gave up on, a dead letter on
//! `riposte.deadletter.<function>` carrying the alert and the error. Neither ever holds setting values.

use crate::execution::{Execution, LogLine, Status};
use crate::streams::{Doing, StreamError, DEADLETTER_PREFIX, RESULTS_PREFIX, RESULTS_STREAM};
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
    /// When it finished, RFC 3339.
    pub time: String,
}

impl ResultRecord {
    /// A record of `exec` (whose message and logs are already redacted).
    pub fn new(ctx: &Delivery<'_>, exec: &Execution, disposition: Disposition) -> ResultRecord {
        ResultRecord {
            function: ctx.function.to_owned(),
            trigger: ctx.trigger.to_owned(),
            runner: ctx.runner.to_owned(),
            alert_uuid: ctx.alert_uuid.to_owned(),
            subject: ctx.subject.to_owned(),
            attempt: ctx.attempt,
            status: exec.status,
            disposition,
            duration_us: exec.duration_us,
            instantiate_us: exec.instantiate_us,
            latency_us: ctx.latency_us(),
            message: exec.message.clone(),
            reason: exec.reason.clone(),
            detail: exec.detail.clone(),
            logs: exec.logs.clone(),
            host_calls: exec.host_calls.clone(),
            retry_in_ms: None,
            time: now_rfc3339(),
        }
    }
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
    /// The alert as received, so it can be replayed.
    pub alert: String,
    pub time: String,
}

/// The subject of a function's results.
pub fn results_subject(function: &str) -> String {
    format!("{RESULTS_PREFIX}.{function}")
}

/// The subject of a function's dead letters.
pub fn deadletter_subject(function: &str) -> String {
    format!("{DEADLETTER_PREFIX}.{function}")
}

/// Publishes a result to JetStream and waits for it to be stored (the alert is acked only after that).
pub async fn publish_result(js: &jetstream::Context, record: &ResultRecord) -> Result<(), StreamError> {
    let body = serde_json::to_vec(record).expect("a result serializes");
    let ack = js.publish(results_subject(&record.function), body.into()).await.doing("publishing a result")?;
    ack.await.map(|_| ()).doing("publishing a result")
}

/// Publishes a dead letter and waits for it to be stored.
pub async fn publish_deadletter(js: &jetstream::Context, letter: &DeadLetter) -> Result<(), StreamError> {
    let body = serde_json::to_vec(letter).expect("a dead letter serializes");
    let ack = js.publish(deadletter_subject(&letter.function), body.into()).await.doing("publishing a dead letter")?;
    ack.await.map(|_| ()).doing("publishing a dead letter")
}

/// Reads a function's results (every function's with `None`), oldest first; keeps the last `last` if given.
pub async fn read_results(
    js: &jetstream::Context,
    function: Option<&str>,
    last: Option<usize>,
) -> Result<Vec<ResultRecord>, StreamError> {
    let filter = function.map(results_subject).unwrap_or_else(|| format!("{RESULTS_PREFIX}.>"));
    Ok(read_stream(js, RESULTS_STREAM, &filter, last, consumer::DeliverPolicy::All, None).await?.unwrap_or_default())
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
        read_stream(js, RESULTS_STREAM, &results_subject(function), None, policy, Some(HANDLED_SCAN_MAX)).await?;
    Ok(records.unwrap_or_default().into_iter().find(|r| r.alert_uuid == uuid && r.status == Status::Ok))
}

/// Reads a function's dead letters, oldest first.
pub async fn read_deadletters(js: &jetstream::Context, function: &str) -> Result<Vec<DeadLetter>, StreamError> {
    let all = consumer::DeliverPolicy::All;
    Ok(read_stream(js, crate::streams::DEADLETTER_STREAM, &deadletter_subject(function), None, all, None)
        .await?
        .unwrap_or_default())
}

/// The records of `stream` on `filter` from `deliver_policy` on, oldest first (only the last `last` when given);
/// None, without reading, when more than `cap` match.
async fn read_stream<T: serde::de::DeserializeOwned>(
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
    if matched == 0 {
        return Ok(Some(out.into()));
    }
    let mut messages = consumer.messages().await.doing(what.clone())?;
    // The last message says nothing is pending; a silence also ends the read (messages may have expired).
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
        let msg = msg.doing(what.clone())?;
        if let Ok(record) = serde_json::from_slice(&msg.payload) {
            out.push_back(record);
            if last.is_some_and(|n| out.len() > n) {
                out.pop_front();
            }
        }
        if msg.info().map(|i| i.pending == 0).unwrap_or(false) {
            break;
        }
    }
    Ok(Some(out.into()))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
