//! The dispatcher of one trigger: pulls alerts from the trigger's durable consumer, admits them (per function,
//! across all its triggers, up to its concurrency; per runner up to `--max-in-flight`), runs the function on
//! each concurrently, and settles each alert with JetStream only after its reaction finished, as
//! [`settlement`] decides (`settle.rs`, a pure function tested row by row against this table) and
//! `Dispatcher::finish` carries out:
//!
//! | outcome | result published | JetStream |
//! | --- | --- | --- |
//! | ok | `acked` | Ack |
//! | failed / timeout, attempts left | `retry` | Nak with backoff (`limits.retry_backoff_ms`, doubling) |
//! | failed / timeout, last attempt (`limits.max_deliver`) | `dead-lettered` | dead letter stored, then Term |
//! | malformed alert, or a failure that cannot succeed later | `terminated` | Term |
//! | a dry run, whatever its status | `dry-run` | Ack |
//! | a duplicate (status `deduplicated`) | `deduplicated` | Ack |
//! | a condition that could not be evaluated, `--on-condition-error skip` (status `condition-error`) | `skipped` | Ack |
//!
//! Records always fit (see `results`). Storing one is tried `RECORD_PUBLISH_ATTEMPTS` times; if it still fails
//! (NATS unreachable, stream full), the failure is logged and counted and the alert is settled as the table says
//! anyway: a record that cannot be stored never makes a reaction run again. JetStream's own `max_deliver`
//! (`limits.max_deliver` + `MAX_DELIVER_BACKSTOP`) ends redelivery even if a runner never settles an alert.
//!
//! A redelivered alert (attempt > 1) whose reaction already succeeded — its `ok` result is stored, the runner
//! stopped before the ack — is acked without running again.
//!
//! A long reaction sends `Progress` every `limits.progress_every()` so JetStream does not hand the alert to another
//! runner. An alert that matches the consumer's NATS filter but not the trigger's glob is acked without a result.
//!
//! Before running, the trigger's [`Policy`] decides (condition → dedup → dry-run, see `policy.rs`). Conditions
//! are OR'ed across the function's triggers that match the subject, so a function runs once per alert when any
//! of them accepts it: the first-named matching trigger whose condition accepts runs it, the others ack it
//! without a result ([`Admit::Covered`]), and an alert none accepts is acked without a result and counted once
//! (a malformed alert is recorded by the first-named matching trigger); one whose condition could not be
//! evaluated gets a `condition-error` result unless its trigger says `--on-condition-error run`. A duplicate is
//! acked with a `deduplicated` result, and a dry run's result is acked as `dry-run` whatever its status. A
//! failure after a server's 429 is retried after the `Retry-After` it asked for. Each outcome is counted once,
//! in the runner's ledger (`ledger.rs`).

use super::ledger::{Event, TriggerLedger};
use super::policy::{Admit, Claimed, Decision, Policy};
use super::settle::{settlement, Reply};
use super::RunnerContext;
use crate::model::alert::Alert;
use crate::model::execution::{Execution, Handler, Status};
use crate::model::function::Function;
use crate::model::limits::RECORD_PUBLISH_ATTEMPTS;
use crate::model::trigger::{Pattern, Trigger};
use crate::nats::results::{self, DeadLetter, Delivery, ResultRecord};
use crate::nats::streams::StreamError;
use crate::runner::shutdown::Shutdown;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

type Messages = async_nats::jetstream::consumer::pull::Stream;
use tracing::Instrument;

/// What a trigger's dispatcher starts from; [`Starting::run`] loads the function's handler and the trigger's
/// policy, then dispatches as a [`Dispatcher`].
pub(crate) struct Starting {
    pub trigger: Trigger,
    pub pattern: Pattern,
    /// The function's other triggers: their conditions are OR'ed with this one's.
    pub siblings: Vec<Trigger>,
    pub function: Arc<Function>,
    pub ctx: Arc<RunnerContext>,
    /// This trigger's tally in the runner's ledger: each outcome below is counted there, once.
    pub ledger: Arc<TriggerLedger>,
    /// The function's admission permits (`concurrency`), shared with its other triggers' dispatchers.
    pub admission: Arc<Semaphore>,
}

/// One trigger's dispatcher, its policy compiled.
pub(crate) struct Dispatcher {
    pub trigger: Trigger,
    pub pattern: Pattern,
    pub function: Arc<Function>,
    pub ctx: Arc<RunnerContext>,
    pub ledger: Arc<TriggerLedger>,
    pub admission: Arc<Semaphore>,
    /// The trigger's policy (condition OR'ed with its siblings', dedup, dry-run).
    pub policy: Policy,
}

impl Starting {
    /// Runs until `shutdown` says stop, then lets the reactions in flight finish (up to `Timings::drain_timeout`).
    pub async fn run(self, mut shutdown: Shutdown) {
        let Some(handler) = self.load_handler(&mut shutdown).await else { return };
        let Some(policy) = self.load_policy(&mut shutdown).await else { return };
        let this = Arc::new(Dispatcher {
            trigger: self.trigger,
            pattern: self.pattern,
            function: self.function,
            ctx: self.ctx,
            ledger: self.ledger,
            admission: self.admission,
            policy,
        });
        let admission = this.admission.clone();
        let mut tasks = JoinSet::new();
        while !shutdown.is_stopping() {
            let Some(messages) = this.open(&mut shutdown).await else { break };
            this.pull(messages, &handler, &admission, &mut tasks, &mut shutdown).await;
        }
        let drained = tokio::time::timeout(crate::model::timings::get().drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(trigger = %this.trigger.name, "reactions still running after the drain timeout; JetStream will redeliver them");
        }
    }

    /// The function's handler, retried while it cannot be loaded (its alerts wait in JetStream); None when stopping.
    async fn load_handler(&self, shutdown: &mut Shutdown) -> Option<Arc<dyn Handler>> {
        loop {
            match self.ctx.handlers.get(&self.function).await {
                Ok(h) => return Some(h),
                Err(e) => {
                    tracing::error!(trigger = %self.trigger.name, error = %e, "trigger cannot run; its alerts wait in JetStream");
                    if shutdown.sleep_unless_stopping(crate::model::timings::get().handler_retry).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The trigger's policy (condition, dedup, dry-run), retried while the dedup stream cannot be made; None
    /// when stopping or when the condition does not compile (the trigger does not run; its alerts wait).
    async fn load_policy(&self, shutdown: &mut Shutdown) -> Option<Policy> {
        loop {
            match Policy::new(&self.ctx.js, &self.trigger, &self.siblings, &self.function).await {
                Ok(p) => return Some(p),
                Err(super::policy::PolicyError::Condition(e)) => {
                    tracing::error!(trigger = %self.trigger.name, error = %e, "trigger cannot run; recreate it with a valid condition");
                    return None;
                }
                Err(e) => {
                    tracing::error!(trigger = %self.trigger.name, error = %e, "trigger cannot run yet; its alerts wait in JetStream");
                    if shutdown.sleep_unless_stopping(Duration::from_secs(2)).await {
                        return None;
                    }
                }
            }
        }
    }
}

impl Dispatcher {
    /// Opens the trigger's consumer and its message stream, retrying until it works; None when stopping.
    async fn open(&self, shutdown: &mut Shutdown) -> Option<Messages> {
        let name = &self.trigger.name;
        loop {
            // The consumer is created with the trigger. When it is missing, the trigger is probably being deleted
            // (definition first, consumer second): give the registry watch a moment to say so before
            // re-creating it, or a deleted trigger would leave an orphan consumer behind.
            let existing = self
                .ctx
                .js
                .get_consumer_from_stream::<_, _, _>(self.trigger.consumer_name(), crate::nats::streams::ALERT_STREAM)
                .await;
            if existing.is_err() && shutdown.sleep_unless_stopping(Duration::from_secs(1)).await {
                return None;
            }
            let consumer = match existing {
                Ok(c) => Ok(c),
                Err(_) => {
                    crate::nats::streams::ensure_consumer(&self.ctx.js, &self.trigger, &self.function.manifest.limits)
                        .await
                }
            };
            let opened = match consumer {
                Ok(consumer) => consumer
                    .stream()
                    .max_messages_per_batch(self.function.manifest.limits.concurrency.max(1) as usize)
                    .heartbeat(crate::model::timings::get().pull_heartbeat)
                    .expires(crate::model::timings::get().pull_expires)
                    .messages()
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match opened {
                Ok(messages) => {
                    tracing::debug!(trigger = %name, consumer = %self.trigger.consumer_name(), "pulling");
                    return Some(messages);
                }
                Err(e) => {
                    tracing::warn!(trigger = %name, error = %e, "cannot pull from the trigger's consumer; retrying");
                    if shutdown.sleep_unless_stopping(Duration::from_millis(500)).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Admits and runs alerts from `messages` until the stream ends or fails (the caller reopens it) or stopping.
    async fn pull(
        self: &Arc<Self>,
        mut messages: Messages,
        handler: &Arc<dyn Handler>,
        admission: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        shutdown: &mut Shutdown,
    ) {
        use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                Some(_) = tasks.join_next() => {}
                next = messages.next() => match next {
                    Some(Ok(msg)) => {
                        let permit = admission.clone().acquire_owned().await.expect("never closed");
                        let runner_permit = self.ctx.in_flight.clone().acquire_owned().await.expect("never closed");
                        let (this, handler) = (self.clone(), handler.clone());
                        tasks.spawn(async move {
                            this.settle(msg, handler.as_ref()).await;
                            drop((permit, runner_permit));
                        });
                    }
                    // No message and no idle heartbeat for two heartbeats: the server holds no pull request of
                    // this stream (one was lost under load), and async-nats would wait for its expiry (35 s)
                    // before pulling again. A new stream pulls at once; nothing is buffered in the old one.
                    Some(Err(e)) if e.kind() == K::MissingHeartbeat => {
                        tracing::info!(trigger = %self.trigger.name, "no heartbeat from the trigger's consumer; pulling again");
                        return;
                    }
                    Some(Err(e)) if matches!(e.kind(), K::Pull | K::Other) => {
                        tracing::debug!(trigger = %self.trigger.name, error = %e, "pull interrupted");
                    }
                    Some(Err(e)) => {
                        tracing::warn!(trigger = %self.trigger.name, error = %e, "pull failed; reopening the consumer");
                        shutdown.sleep_unless_stopping(Duration::from_millis(200)).await;
                        return;
                    }
                    None => return,
                }
            }
        }
    }

    /// Runs the function on one alert and settles it with JetStream.
    async fn settle(&self, msg: jetstream::Message, handler: &dyn Handler) {
        let (attempt, published, sequence) = match msg.info() {
            Ok(info) => (u32::try_from(info.delivered).unwrap_or(1).max(1), info.published, info.stream_sequence),
            Err(_) => (1, time::OffsetDateTime::now_utc(), 0),
        };
        let published_ns = published.unix_timestamp_nanos();
        let subject = msg.subject.to_string();
        if !self.pattern.matches(&subject) {
            ack(&msg, AckKind::Ack).await;
            return;
        }
        let parsed = Alert::parse(&msg.payload);
        let uuid = parsed.as_ref().map(|a| a.uuid.clone()).unwrap_or_default();
        let delivery = Delivery {
            function: &self.function.name,
            trigger: &self.trigger.name,
            runner: &self.ctx.runner,
            alert_uuid: &uuid,
            subject: &subject,
            attempt,
            published_ns,
        };
        let span = alert_span(&subject, &uuid, &self.function.name, &self.trigger.name, attempt);
        async {
            let admitted = match &parsed {
                Ok(alert) => self.policy.admit(alert, &subject),
                Err(_) if self.policy.earlier_matches(&subject) => Admit::Covered,
                Err(_) => Admit::Run,
            };
            if admitted == Admit::Covered {
                return ack(&msg, AckKind::Ack).await;
            }
            self.ledger.observe(Event::Delivered { attempt });
            match admitted {
                Admit::Rejected => {
                    self.ledger.observe(Event::SkippedByCondition);
                    return ack(&msg, AckKind::Ack).await;
                }
                Admit::ConditionError(why) => {
                    self.ledger.observe(Event::ConditionError);
                    tracing::warn!(error = %why, "alert not run: its condition could not be evaluated (status condition-error)");
                    let exec = Execution::refused(Status::ConditionError, why);
                    return self.finish(&msg, &delivery, exec, None, sequence).await;
                }
                Admit::RunDespiteConditionError => self.ledger.observe(Event::ConditionError),
                Admit::Run | Admit::Covered => {}
            }
            let _in_flight = self.ledger.in_flight();
            let claim = match &parsed {
                Ok(alert) => match self.policy.decide(&self.ctx.js, alert, attempt).await {
                    Decision::Duplicate { window, key } => {
                        let why = format!(
                            "not run: an alert with the same dedup key ran within the {}s window",
                            window.as_secs()
                        );
                        let held = Claimed { key, subject: String::new() };
                        return self.finish(&msg, &delivery, Execution::refused(Status::Deduplicated, why), Some(held), sequence).await;
                    }
                    Decision::Run { claim } => claim,
                },
                Err(_) => None,
            };
            if attempt > 1 && !uuid.is_empty() && self.handled_before(&uuid, published).await {
                self.ledger.observe(Event::AlreadyHandled);
                ack(&msg, AckKind::Ack).await;
                return;
            }
            let exec = match &parsed {
                Ok(alert) => self.run_with_progress(&msg, handler, alert).await,
                Err(e) => Execution::refused(Status::InvalidAlert, format!("malformed alert: {e}")),
            };
            self.finish(&msg, &delivery, exec, claim, sequence).await;
        }
        .instrument(span)
        .await
    }

    /// The effects step: carries out what [`settlement`] decides for `exec` — releases the dedup claim, counts
    /// the outcome in the ledger, stores the result (and the dead letter), answers JetStream. Every alert that
    /// gets a result ends here, those that did not run (duplicates, condition errors) included.
    async fn finish(
        &self,
        msg: &jetstream::Message,
        delivery: &Delivery<'_>,
        exec: Execution,
        claim: Option<Claimed>,
        sequence: u64,
    ) {
        let limits = &self.function.manifest.limits;
        let backoff_max = crate::model::timings::get().retry_backoff_max;
        let s =
            settlement(exec.status, exec.retry_after_ms, delivery.attempt, limits, self.policy.dry_run(), backoff_max);
        if let Some(held) = claim.as_ref().filter(|c| s.release_claim && !c.subject.is_empty()) {
            self.policy.release(&self.ctx.js, &held.subject).await;
        }
        match exec.status {
            Status::Ok => tracing::debug!(duration_us = exec.duration_us, "reaction done"),
            Status::Deduplicated | Status::ConditionError => {}
            _ => {
                tracing::warn!(status = exec.status.as_str(), disposition = ?s.disposition, error = %logged(&exec.message), "reaction did not succeed")
            }
        }
        self.ledger.observe(Event::Settled {
            status: exec.status,
            duration_us: exec.duration_us,
            disposition: s.disposition,
        });
        let mut record = ResultRecord::new(delivery, &exec, s.disposition);
        record.retry_in_ms = s.retry_in().map(|d| d.as_millis() as u64);
        record.dedup_key = claim
            .map(|c| crate::secrets::truncate::truncate(&c.key, crate::model::limits::RECORD_FIELD_BYTES).into_owned());
        self.store(msg, crate::nats::streams::RESULTS_STREAM, "result", || {
            results::publish_result(&self.ctx.js, &record)
        })
        .await;
        if s.dead_letter {
            let letter = DeadLetter::new(delivery, &exec, &msg.payload, sequence, record.time.clone());
            self.store(msg, crate::nats::streams::DEADLETTER_STREAM, "dead letter", || {
                results::publish_deadletter(&self.ctx.js, &letter)
            })
            .await;
        }
        let kind = match s.reply {
            Reply::Ack => AckKind::Ack,
            Reply::Nak(delay) => AckKind::Nak(Some(delay)),
            Reply::Term => AckKind::Term,
        };
        ack(msg, kind).await;
    }

    /// Stores a record. A refusal (the record does not fit, the server rejects it) is tried
    /// `RECORD_PUBLISH_ATTEMPTS` times with a doubling delay. A transient failure (no answer in time, no
    /// responders, the connection lost: what a stream's leader election looks like) is tried again for up to
    /// `Timings::record_retry_for`, telling JetStream the alert is in progress after each try so it is not handed
    /// to another runner meanwhile: no record is lost across a leader election. After the last failure it is
    /// logged and counted (metric `riposte_records_unstored_total`, the heartbeat's `unstored`,
    /// `Runner::unstored_records`), and the caller settles the alert anyway. Whether it was stored.
    async fn store<F, Fut>(&self, msg: &jetstream::Message, stream: &str, what: &str, mut publish: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), StreamError>>,
    {
        let timings = crate::model::timings::get();
        let first = timings.record_retry;
        let give_up_at = tokio::time::Instant::now() + timings.record_retry_for;
        let mut delay = first;
        let mut refused = 0;
        let mut missing = None;
        for tried in 1.. {
            let e = match publish().await {
                Ok(()) => return true,
                Err(e) => e,
            };
            // No responders also means the stream is gone for good (deleted): ask once, so that case is not
            // retried as if a leader were being elected.
            if e.is_transient() && missing.is_none() {
                missing = Some(stream_missing(&self.ctx.js, stream).await);
            }
            let transient = e.is_transient() && missing == Some(false);
            refused += u32::from(!transient);
            let more = if transient {
                tokio::time::Instant::now() + delay < give_up_at
            } else {
                refused < RECORD_PUBLISH_ATTEMPTS
            };
            if !more {
                self.ledger.observe(Event::Unstored);
                let unstored = self.ledger.counts().unstored;
                let why = "record not stored; the alert is settled without it";
                tracing::error!(error = %e, record = what, tried, unstored, "{why}");
                return false;
            }
            tracing::warn!(error = %e, record = what, tried, transient, "record not stored; trying again");
            tokio::time::sleep(delay).await;
            if transient {
                ack(msg, AckKind::Progress).await;
            }
            delay = (delay * 2).min(first.max(Duration::from_secs(1)));
        }
        unreachable!("the loop returns")
    }

    /// Whether this function already handled the alert: a redelivery after a runner stopped between the reaction
    /// and its ack. When the results stream cannot tell, the alert runs again (at least once, never lost).
    async fn handled_before(&self, uuid: &str, published: time::OffsetDateTime) -> bool {
        // A result stored before the last ack wait would have been acked (or the reaction was still sending
        // Progress): only the window since then can hold the result of a reaction whose ack was lost.
        let window = self.function.manifest.limits.ack_wait() + crate::model::timings::get().redelivery_slack;
        let since = published.max(time::OffsetDateTime::now_utc() - window);
        match results::already_handled(&self.ctx.js, &self.function.name, uuid, since).await {
            Ok(Some(earlier)) => {
                tracing::info!(by = %earlier.runner, at = %earlier.time, "already handled (its result is stored); acked without running it again");
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the alert was handled before; running it");
                false
            }
        }
    }

    /// Runs the handler, telling JetStream the alert is in progress while it takes long.
    async fn run_with_progress(&self, msg: &jetstream::Message, handler: &dyn Handler, alert: &Alert) -> Execution {
        let run = handler.handle(alert);
        tokio::pin!(run);
        loop {
            tokio::select! {
                exec = &mut run => return exec,
                _ = tokio::time::sleep(self.function.manifest.limits.progress_every()) => ack(msg, AckKind::Progress).await,
            }
        }
    }
}

/// Whether JetStream says the stream does not exist (not: cannot answer now).
async fn stream_missing(js: &jetstream::Context, stream: &str) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(stream).await {
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(e) => e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND,
            _ => false,
        },
        Ok(_) => false,
    }
}

async fn ack(msg: &jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        // The alert stays unacked: JetStream redelivers it after the ack wait.
        tracing::warn!(error = %e, "cannot settle the alert with JetStream; it will be redelivered");
    }
}

/// The span of one alert's handling (every log line about it carries these fields). The subject and the uuid
/// come from whoever published the alert: [`logged`], so that no alert can forge, colour or retitle a log line.
fn alert_span(subject: &str, uuid: &str, function: &str, trigger: &str, attempt: u32) -> tracing::Span {
    let (subject, uuid) = (logged(subject), logged(uuid));
    tracing::info_span!("alert", %subject, %uuid, %function, %trigger, attempt)
}

/// Text an alert (or a playbook quoting one) provides, for one field of a log line: cut to `RECORD_FIELD_BYTES`
/// as in records, control characters escaped (`\u{1b}`, see [`crate::secrets::truncate::printable`]).
fn logged(text: &str) -> String {
    let cut = crate::secrets::truncate::truncate(text, crate::model::limits::RECORD_FIELD_BYTES);
    crate::secrets::truncate::printable(&cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a text-format subscriber writes.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_alerts_fields_in_log_lines_carry_no_control_character() {
        let written = Written::default();
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
        let uuid = "x\u{1b}[2J\u{1b}]0;pwned\u{7}\nINFO forged line\r";
        tracing::subscriber::with_default(subscriber, || {
            let _in = alert_span("falco.notice.x\u{1b}[31m", uuid, "slack", "slack-0", 1).entered();
            tracing::warn!(error = %logged("failed:\n\u{1b}[1Aforged"), "reaction did not succeed");
        });
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "one line: {text:?}");
        assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
        assert!(text.contains("uuid=x\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{a}INFO forged line\\u{d}"), "{text}");
        assert!(text.contains("falco.notice.x\\u{1b}[31m") && text.contains("failed:\\u{a}\\u{1b}[1Aforged"), "{text}");
        assert!(logged(&"u".repeat(5000)).len() <= crate::model::limits::RECORD_FIELD_BYTES);
    }
}
