//! The decision a dispatcher takes on each alert before (or instead of) running its function, in this order:
//!
//! 1. **condition** (the trigger's `--when`, CEL): an alert it rejects is acked at once, nothing
//!    instantiated, no result stored, only counted; an evaluation error (a missing field) is a non-match
//!    with a warning;
//! 2. **dedup** (the function's `--dedup-window`/`--dedup-key`): the first alert of a key within the window
//!    claims it in NATS (shared by every runner, [`crate::dedup`]) and runs; the others are acked with a
//!    `deduplicated` result. A redelivered alert (attempt > 1) is the one that claimed, or ran before: it is
//!    not checked again. When the reaction holding a key ends without success for good (terminated or
//!    dead-lettered) the key is released, so the next duplicate runs: a failure never swallows the storm;
//!    duplicates that arrived while it was still being retried count as the same attempt;
//! 3. **dry-run** (the function's `--dry-run`): the function runs with recording backends (the handler
//!    does that) and its result, whatever its status, is acked with disposition `dry-run`.

use crate::alert::Alert;
use crate::condition::Condition;
use crate::dedup::{self, Claim};
use crate::fleet::PolicyCounts;
use crate::function::Function;
use crate::streams::StreamError;
use crate::trigger::Trigger;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters of one trigger's decisions (read by [`crate::runner::Runner::policy_counts`]).
#[derive(Debug, Default)]
pub struct PolicyCounters {
    /// Alerts the condition let through.
    pub matched: AtomicU64,
    /// Alerts the condition rejected (acked, nothing run, no result).
    pub rejected: AtomicU64,
    /// Alerts whose condition could not be evaluated (treated as rejected, with a warning).
    pub errors: AtomicU64,
    /// Alerts acked as duplicates.
    pub deduplicated: AtomicU64,
}

impl PolicyCounters {
    /// The counts now.
    pub fn snapshot(&self) -> PolicyCounts {
        PolicyCounts {
            matched: self.matched.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            deduplicated: self.deduplicated.load(Ordering::Relaxed),
        }
    }
}

/// What to do with one alert.
#[derive(Debug)]
pub(crate) enum Decision {
    /// The condition rejected it: ack, nothing else.
    Skip,
    /// A duplicate of an alert that holds `key`: ack with a `deduplicated` result.
    Duplicate { window: Duration },
    /// Run it; `claim` is the dedup subject it holds, released if the reaction fails for good.
    Run { claim: Option<String> },
}

/// One trigger's policy, compiled when its dispatcher starts.
pub(crate) struct Policy {
    function: String,
    condition: Option<Condition>,
    dedup: Option<(Duration, Option<Condition>)>,
    dry_run: bool,
    pub counters: Arc<PolicyCounters>,
}

/// Why a trigger's policy cannot be used (the trigger does not start; its alerts wait in JetStream).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Condition(#[from] crate::condition::ConditionError),
    #[error(transparent)]
    Nats(#[from] StreamError),
}

impl Policy {
    /// Compiles the trigger's condition and the function's dedup key, and ensures the dedup stream.
    pub async fn new(
        js: &async_nats::jetstream::Context,
        trigger: &Trigger,
        function: &Function,
        counters: Arc<PolicyCounters>,
    ) -> Result<Policy, PolicyError> {
        let condition = trigger.when.as_deref().map(Condition::compile).transpose()?;
        let dedup = match &function.policy.dedup {
            Some(d) => {
                dedup::ensure(js, &function.name, d.window()).await?;
                Some((d.window(), d.key.as_deref().map(Condition::compile_key).transpose()?))
            }
            None => None,
        };
        Ok(Policy { function: function.name.clone(), condition, dedup, dry_run: function.policy.dry_run, counters })
    }

    /// Whether results are `dry-run` (the handler records instead of acting).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Condition, then dedup, for delivery `attempt` of `alert`.
    pub async fn decide(&self, js: &async_nats::jetstream::Context, alert: &Alert, attempt: u32) -> Decision {
        if let Some(condition) = &self.condition {
            match condition.matches(alert) {
                Ok(true) => {}
                Ok(false) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("the trigger's condition rejected the alert");
                    return Decision::Skip;
                }
                Err(why) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    // The error may quote the alert's values: escaped like every alert-provided log field.
                    let why = crate::truncate::printable(&why.to_string()).into_owned();
                    tracing::warn!(condition = condition.as_str(), error = %why, "the trigger's condition could not be evaluated; the alert counts as not matching");
                    return Decision::Skip;
                }
            }
            self.counters.matched.fetch_add(1, Ordering::Relaxed);
        }
        let Some((window, key)) = &self.dedup else { return Decision::Run { claim: None } };
        if attempt > 1 {
            return Decision::Run { claim: None };
        }
        let key = match key {
            None => default_key(alert),
            Some(expr) => match expr.key(alert) {
                Ok(k) => k,
                Err(why) => {
                    let why = crate::truncate::printable(&why.to_string()).into_owned();
                    tracing::warn!(key = expr.as_str(), error = %why, "the dedup key could not be evaluated; running the alert");
                    return Decision::Run { claim: None };
                }
            },
        };
        let subject = dedup::key_subject(&self.function, &key);
        match dedup::claim(js, &subject, &alert.uuid).await {
            Ok(Claim::First) => Decision::Run { claim: Some(subject) },
            Ok(Claim::Duplicate) => {
                self.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
                Decision::Duplicate { window: *window }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the dedup key; running the alert");
                Decision::Run { claim: None }
            }
        }
    }

    /// Releases a claim whose reaction ended without success for good.
    pub async fn release(&self, js: &async_nats::jetstream::Context, claim: &str) {
        if let Err(e) = dedup::release(js, &self.function, claim).await {
            tracing::warn!(error = %e, "cannot release the dedup key; duplicates within the window stay deduplicated");
        }
    }
}

/// The default dedup key: the rule and the output without Falco's time prefix (`12:00:00.123456789: `), so
/// the same event seen again (another syscall, another node) has the same key.
pub fn default_key(alert: &Alert) -> String {
    format!("{}\n{}", alert.rule, strip_time_prefix(&alert.output))
}

fn strip_time_prefix(output: &str) -> &str {
    match output.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && head.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '.') => {
            rest
        }
        _ => output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_ignores_the_time_prefix() {
        assert_eq!(strip_time_prefix("16:31:56.746609046: Error File below"), "Error File below");
        assert_eq!(strip_time_prefix("no prefix: here"), "no prefix: here");
        assert_eq!(strip_time_prefix("plain"), "plain");
    }
}
