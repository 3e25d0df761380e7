//! The JetStream streams and consumers riposte relies on, created idempotently by every runner and command:
//! the alert stream (captures `falco.>` so alerts published with core NATS are kept while no runner is up),
//! the results stream (`riposte.results.<function>.<runner>`, history for `function logs` / `top`), the
//! dead-letter stream (`riposte.deadletter.<function>.<runner>`), and one durable pull consumer per trigger.
//!
//! Replicas: a stream is created with the replicas asked for (`--replicas`, default 1). An existing stream
//! is never changed silently: when it has other replicas than asked for, riposte says so and changes it only
//! when told to (`--update-streams`); without `--replicas`, whatever an operator set is left alone.
//!
//! Size: every stream riposte writes to has a `max_bytes`, so a flood of alerts (falcosidekick publishes with
//! core NATS and never learns an alert was dropped) cannot fill the server's store and starve the results and
//! the registry. The alert stream discards its oldest alerts when full (the newest survive: they are the attack
//! in progress) and refuses any alert over `max_msg_size`; both are set with `--alert-stream-max-bytes` and
//! `--alert-max-bytes`. A stream made by an earlier riposte without a bound gets one when it is ensured; a
//! bound an operator set is changed only by those flags.

use crate::model::limits::{
    Limits, ALERT_MAX_BYTES, ALERT_STREAM_MAX_BYTES, DEADLETTER_MAX_BYTES, FLEET_ACK_PENDING_FACTOR,
    MAX_DELIVER_BACKSTOP,
};
use crate::model::trigger::{Pattern, Trigger};
use async_nats::jetstream::{self, consumer, stream};

use std::time::Duration;

/// The alert stream's name.
pub const ALERT_STREAM: &str = "FALCO";
/// Subjects the alert stream captures unless configured otherwise.
pub const DEFAULT_ALERT_SUBJECTS: &str = "falco.>";
/// The results stream and its subjects.
pub const RESULTS_STREAM: &str = "RIPOSTE_RESULTS";
pub const RESULTS_PREFIX: &str = "riposte.results";
/// The dead-letter stream and its subjects.
pub const DEADLETTER_STREAM: &str = "RIPOSTE_DEADLETTER";
pub const DEADLETTER_PREFIX: &str = "riposte.deadletter";
/// The object store of alerts too large for their dead letter (`<function>/<alert sequence>`).
pub const DEADLETTER_OBJECTS: &str = "riposte-deadletters";

/// How long alerts are kept in the alert stream (acked or not: other triggers may still need them).
pub const ALERT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// History kept in the results stream.
pub const RESULTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
pub const RESULTS_MAX_MSGS: i64 = 1_000_000;
pub const RESULTS_MAX_BYTES: i64 = 1 << 30;
/// Dead letters are kept longer: someone has to look at them.
pub const DEADLETTER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Any error, boxed: the cause a [`StreamError`] keeps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A JetStream problem: what riposte was doing, and the cause (kept as the error's source).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct StreamError {
    /// What riposte was doing, e.g. "publishing a result".
    pub what: String,
    /// Why it failed.
    #[source]
    pub source: BoxError,
}

impl StreamError {
    /// An error while doing `what`, caused by `source` (an error, or a message).
    pub fn new(what: impl Into<String>, source: impl Into<BoxError>) -> StreamError {
        StreamError { what: what.into(), source: source.into() }
    }
}

impl StreamError {
    /// Whether trying again may succeed: the server did not answer in time, no stream answered (a leader is being
    /// elected), or the connection is down. A record the server refuses, or one that does not fit, is not.
    pub fn is_transient(&self) -> bool {
        use async_nats::jetstream::context::{PublishError, PublishErrorKind as K};
        match self.source.downcast_ref::<PublishError>() {
            Some(e) => matches!(e.kind(), K::TimedOut | K::StreamNotFound | K::BrokenPipe | K::MaxAckPending),
            None => false,
        }
    }
}

/// The keys of a KV bucket that start with `prefix` (e.g. `runners.`), from the subjects its stream holds.
/// async-nats' `Store::keys` reads them with an ordered consumer that ends at the first entry with no more
/// pending, or at an idle heartbeat: a bucket written to more often than that heartbeat (runners beating every
/// 250 ms in tests, or a large fleet) can keep it from ever ending (seen: `riposte runner list` waiting for
/// minutes). The stream's subject list is one request per page and always ends. Deleted keys are still listed
/// (their last message is the delete marker): readers skip what they cannot read.
pub async fn kv_keys(store: &jetstream::kv::Store, prefix: &str) -> Result<Vec<String>, StreamError> {
    let what = format!("listing the {} bucket", store.name);
    let filter = format!("{}{prefix}>", store.prefix);
    let mut subjects = store.stream.info_with_subjects(filter).await.doing(what.clone())?;
    let mut keys = Vec::new();
    while let Some(item) = futures::StreamExt::next(&mut subjects).await {
        let (subject, _) = item.doing(what.clone())?;
        if let Some(key) = subject.strip_prefix(store.prefix.as_str()) {
            keys.push(key.to_owned());
        }
    }
    keys.sort();
    Ok(keys)
}

/// `result.doing("publishing a result")`: a [`StreamError`] that keeps the cause.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl Into<String>) -> Result<T, StreamError>;
}

impl<T, E: Into<BoxError>> Doing<T> for Result<T, E> {
    fn doing(self, what: impl Into<String>) -> Result<T, StreamError> {
        self.map_err(|e| StreamError::new(what, e))
    }
}

/// How the streams and buckets riposte creates are replicated and bounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSettings {
    /// Replicas asked for (`--replicas`); `None`: 1 for new streams, existing ones left as they are.
    pub replicas: Option<usize>,
    /// Change existing streams whose replicas differ (`--update-streams`) instead of refusing to start.
    pub update: bool,
    /// The alert stream's `max_bytes` (`--alert-stream-max-bytes`); `None`: [`ALERT_STREAM_MAX_BYTES`] for a
    /// new or unbounded stream, an existing bound left as it is.
    pub alert_max_bytes: Option<i64>,
    /// The largest alert it stores, `max_msg_size` (`--alert-max-bytes`); `None`: [`ALERT_MAX_BYTES`], the
    /// same way.
    pub alert_max_msg_size: Option<i32>,
}

/// A stream's size bounds as riposte wants them, and whether they were asked for explicitly (then an existing
/// stream with other bounds is changed; otherwise only a stream without any bound is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    max_bytes: i64,
    max_msg_size: i32,
    explicit: bool,
}

impl Bounds {
    fn of(config: &stream::Config) -> Bounds {
        Bounds { max_bytes: config.max_bytes, max_msg_size: config.max_message_size, explicit: false }
    }
}

/// Whether a stream limit is unset (JetStream says -1; a config made without it may say 0).
fn unbounded(limit: i64) -> bool {
    limit <= 0
}

/// Creates the alert, results and dead-letter streams when missing, with one replica; see [`ensure_with`].
pub async fn ensure(js: &jetstream::Context, alert_subjects: Option<&[String]>) -> Result<(), StreamError> {
    ensure_with(js, alert_subjects, &StreamSettings::default()).await
}

/// Creates the alert, results and dead-letter streams when missing, replicated as `settings` asks. With
/// `alert_subjects` (a runner's `--stream-subjects`) the alert stream is made to capture exactly those;
/// without (other commands), an existing alert stream is left as it is and a new one captures `falco.>`.
pub async fn ensure_with(
    js: &jetstream::Context,
    alert_subjects: Option<&[String]>,
    settings: &StreamSettings,
) -> Result<(), StreamError> {
    let subjects = alert_subjects.map(<[String]>::to_vec).unwrap_or_else(|| vec![DEFAULT_ALERT_SUBJECTS.to_owned()]);
    ensure_stream(
        js,
        if alert_subjects.is_some() { Subjects::Set } else { Subjects::Keep },
        stream::Config {
            name: ALERT_STREAM.into(),
            description: Some("Falco alerts, kept for riposte triggers".into()),
            subjects,
            max_age: ALERT_MAX_AGE,
            max_bytes: settings.alert_max_bytes.unwrap_or(ALERT_STREAM_MAX_BYTES),
            max_message_size: settings.alert_max_msg_size.unwrap_or(ALERT_MAX_BYTES),
            // Full: the oldest alerts go, the newest (the attack in progress) are kept.
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        settings,
    )
    .await?;
    ensure_stream(
        js,
        Subjects::Keep,
        stream::Config {
            name: RESULTS_STREAM.into(),
            description: Some("riposte execution results".into()),
            subjects: vec![format!("{RESULTS_PREFIX}.>")],
            max_age: RESULTS_MAX_AGE,
            max_messages: RESULTS_MAX_MSGS,
            max_bytes: RESULTS_MAX_BYTES,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        settings,
    )
    .await?;
    ensure_stream(
        js,
        Subjects::Keep,
        stream::Config {
            name: DEADLETTER_STREAM.into(),
            description: Some("alerts riposte gave up on, with the error".into()),
            subjects: vec![format!("{DEADLETTER_PREFIX}.>")],
            max_age: DEADLETTER_MAX_AGE,
            max_bytes: DEADLETTER_MAX_BYTES,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        settings,
    )
    .await?;
    // The backing stream of an object store, made here as registry.rs explains (nats-server 2.9).
    ensure_stream(
        js,
        Subjects::Keep,
        stream::Config {
            name: format!("OBJ_{DEADLETTER_OBJECTS}"),
            description: Some("riposte: alerts too large for their dead letter".into()),
            subjects: vec![format!("$O.{DEADLETTER_OBJECTS}.C.>"), format!("$O.{DEADLETTER_OBJECTS}.M.>")],
            max_age: DEADLETTER_MAX_AGE,
            max_bytes: DEADLETTER_MAX_BYTES,
            allow_rollup: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        settings,
    )
    .await
}

/// The stream behind a KV bucket, configured as async-nats's `create_key_value` would make it (one value per
/// key, rollups, no deletes, direct gets): created through [`ensure_stream`] so it is replicated and checked
/// like every other stream. (Creating it with `create_key_value` fails on nats-server 2.9.)
pub(crate) fn kv_stream_config(bucket: &str, description: &str) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// What [`ensure_stream`] does with the subjects of a stream that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subjects {
    /// Leave them as they are (another command made the stream; its runner's `--stream-subjects` decide).
    Keep,
    /// Make them the configuration's (a runner's `--stream-subjects`).
    Set,
}

/// Creates a stream when missing (with the replicas `settings` asks for); checks an existing one's replicas
/// (changing them only with `settings.update`) and, with `fix_subjects`, makes it capture `config.subjects`.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    subjects: Subjects,
    mut config: stream::Config,
    settings: &StreamSettings,
) -> Result<(), StreamError> {
    let name = config.name.clone();
    config.num_replicas = settings.replicas.unwrap_or(1);
    let mut bounds = Bounds::of(&config);
    if name == ALERT_STREAM {
        bounds.explicit = settings.alert_max_bytes.is_some() || settings.alert_max_msg_size.is_some();
    }
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let info = existing.info().await.doing(format!("reading stream {name}"))?;
            let has = info.config.num_replicas.max(1);
            if let Some(wanted) = settings.replicas.filter(|w| *w != has) {
                if !settings.update {
                    return Err(StreamError::new(
                        format!("stream {name}"),
                        format!(
                            "it has {has} replica(s) and --replicas asks for {wanted}: add --update-streams to change \
                             it (or `nats stream edit {name} --replicas {wanted}`), or drop --replicas to keep it"
                        ),
                    ));
                }
                let mut updated = info.config.clone();
                updated.num_replicas = wanted;
                js.update_stream(updated)
                    .await
                    .doing(format!("changing stream {name} from {has} to {wanted} replicas"))?;
                tracing::info!(stream = %name, from = has, to = wanted, "stream replicas changed");
            }
            if subjects == Subjects::Set && info.config.subjects != config.subjects {
                let mut updated = info.config.clone();
                updated.subjects = config.subjects.clone();
                js.update_stream(updated)
                    .await
                    .doing(format!("changing the subjects of stream {name} to {:?}", config.subjects))?;
            }
            bound_existing(js, &info.config, bounds).await;
            Ok(())
        }
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            let replicas = config.num_replicas;
            let hint =
                if replicas > 1 { " (replicas need a NATS cluster with JetStream on that many servers)" } else { "" };
            js.create_stream(config)
                .await
                .map(|_| ())
                .doing(format!("creating stream {name} with {replicas} replica(s){hint}"))
        }
        Err(e) => Err(StreamError::new(
            format!("looking up stream {name} (is JetStream enabled on the server? nats-server -js)"),
            e,
        )),
    }
}

/// Gives an existing stream the size bounds riposte wants when it has none (made by an earlier riposte) or when
/// they were asked for explicitly. A user not allowed to change streams (a least-privilege runner) only logs
/// it: `riposte doctor` and any deployer command (which bounds it) say the rest.
async fn bound_existing(js: &jetstream::Context, current: &stream::Config, wanted: Bounds) {
    let name = &current.name;
    let mut updated = current.clone();
    let change = |has: i64, wants: i64| wants > 0 && (unbounded(has) || (wanted.explicit && has != wants));
    if change(current.max_bytes, wanted.max_bytes) {
        updated.max_bytes = wanted.max_bytes;
    }
    if change(i64::from(current.max_message_size), i64::from(wanted.max_msg_size)) {
        updated.max_message_size = wanted.max_msg_size;
    }
    if updated == *current {
        return;
    }
    match js.update_stream(&updated).await {
        Ok(_) => tracing::info!(
            stream = %name, max_bytes = updated.max_bytes, max_msg_size = updated.max_message_size,
            "stream bounded"
        ),
        Err(e) => tracing::warn!(
            stream = %name, error = %e,
            "the stream is not bounded as configured and this user may not change it: run any deployer command \
             (`riposte function list`) or `nats stream edit {name} --max-bytes {} --max-msg-size {}`",
            updated.max_bytes, updated.max_message_size
        ),
    }
}

/// A stream's size when sampled, and its bound: for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUsage {
    pub stream: String,
    pub bytes: u64,
    pub messages: u64,
    /// `None`: unbounded.
    pub max_bytes: Option<u64>,
}

/// The size and bound of each stream riposte writes to, for `/metrics` (those it cannot read are left out).
pub async fn usage(js: &jetstream::Context) -> Vec<StreamUsage> {
    let mut out = Vec::new();
    for name in [ALERT_STREAM, RESULTS_STREAM, DEADLETTER_STREAM] {
        let Ok(mut s) = js.get_stream(name).await else { continue };
        let Ok(info) = s.info().await else { continue };
        out.push(StreamUsage {
            stream: name.to_owned(),
            bytes: info.state.bytes,
            messages: info.state.messages,
            max_bytes: u64::try_from(info.config.max_bytes).ok().filter(|b| *b > 0),
        });
    }
    out
}

/// The subjects the alert stream captures.
pub async fn alert_subjects(js: &jetstream::Context) -> Result<Vec<String>, StreamError> {
    let mut s = js.get_stream(ALERT_STREAM).await.doing("looking up the alert stream")?;
    Ok(s.info().await.doing("reading the alert stream")?.config.subjects.clone())
}

/// The durable consumer of one trigger: created when the trigger is created (so alerts are kept for it even
/// while no runner is up), opened by runners. Delivery starts with alerts published after its creation.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    trigger: &Trigger,
    limits: &Limits,
) -> Result<consumer::PullConsumer, StreamError> {
    let pattern = Pattern::parse(&trigger.topic).doing(format!("trigger {}", trigger.name))?;
    let name = trigger.consumer_name();
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!("riposte trigger {} ({}) -> {}", trigger.name, trigger.topic, trigger.function)),
        filter_subject: pattern.nats_filter().to_owned(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: limits.ack_wait(),
        // riposte counts deliveries itself (limits.max_deliver) so that the last one is dead-lettered, never
        // dropped; JetStream stops a little later, so that not even a runner bug can redeliver for ever.
        max_deliver: i64::from(limits.max_deliver) + MAX_DELIVER_BACKSTOP,
        max_ack_pending: i64::from(limits.concurrency) * FLEET_ACK_PENDING_FACTOR,
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    };
    let stream = js.get_stream_no_info(ALERT_STREAM).await.doing("looking up the alert stream")?;
    let mut consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(&name, config.clone())
        .await
        .doing(format!("creating the consumer of trigger {}", trigger.name))?;
    // A redeploy may change the function's concurrency, timeout or max_deliver, and a consumer made by an earlier
    // riposte has no max_deliver: carry them over (nats-server 2.9.10 changes these three in place, tested).
    let current =
        consumer.info().await.doing(format!("reading the consumer of trigger {}", trigger.name))?.config.clone();
    if current.max_ack_pending != config.max_ack_pending
        || current.ack_wait != config.ack_wait
        || current.max_deliver != config.max_deliver
    {
        match stream.update_consumer(config).await {
            Ok(updated) => consumer = updated,
            // The runner's own count (limits.max_deliver) still ends every alert: serve with the consumer as it is.
            Err(e) => tracing::warn!(
                trigger = %trigger.name, error = %e,
                "the server refused to update the trigger's consumer; it keeps its earlier settings"
            ),
        }
    }
    Ok(consumer)
}

/// Deletes a trigger's consumer (absent is fine).
pub async fn delete_consumer(js: &jetstream::Context, trigger: &Trigger) -> Result<(), StreamError> {
    match js.delete_consumer_from_stream(trigger.consumer_name(), ALERT_STREAM).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("not found") => Ok(()),
        Err(e) => Err(StreamError::new(format!("deleting the consumer of trigger {}", trigger.name), e)),
    }
}
