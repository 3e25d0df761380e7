//! The decision a dispatcher takes on each alert before (or instead of) running its function, in this order:
//!
//! 1. **condition** (the trigger's `--when`, CEL), OR'ed across the function's triggers that match the
//!    subject ([`Admission`]): the function runs once when any of them accepts the alert; an alert none accepts
//!    is acked at once, nothing instantiated, no result stored, only counted. A condition that cannot be
//!    evaluated on the alert (a missing field) does what its trigger's `--on-condition-error` says: `skip` (the
//!    default) does not accept, and an alert no trigger then accepts gets a result of status `condition-error`
//!    (with the error) instead of vanishing; `run` accepts it. Either way it is counted and warned about;
//! 2. **dedup** (the function's `--dedup-window`/`--dedup-key`): the first alert of a key within the window
//!    claims it in NATS (shared by every runner, [`crate::nats::dedup`]) and runs; the others are acked with a
//!    `deduplicated` result. A redelivered alert (attempt > 1) is the one that claimed, or ran before: it is
//!    not checked again. When the reaction holding a key ends without success for good (terminated or
//!    dead-lettered) the key is released, so the next duplicate runs: a failure never swallows the storm;
//!    duplicates that arrived while it was still being retried count as the same attempt;
//! 3. **dry-run** (the function's `--dry-run`): the function runs with recording backends (the handler
//!    does that) and its result, whatever its status, is acked with disposition `dry-run`.

use crate::model::alert::Alert;
use crate::model::function::Function;
use crate::model::trigger::{OnConditionError, Pattern, Trigger};
use crate::nats::dedup::{self, Claim};
use crate::nats::streams::StreamError;
use crate::policy::condition::Condition;
use std::time::Duration;

/// Whether this trigger runs an alert, by the conditions of the function's triggers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Admit {
    /// This trigger runs it: its condition accepts and no earlier-named matching trigger's does.
    Run,
    /// This trigger runs it although its condition could not be evaluated (`--on-condition-error run`).
    RunDespiteConditionError,
    /// No trigger accepts it and a condition could not be evaluated (`skip`): record `condition-error` with
    /// this message, ack, do not run.
    ConditionError(String),
    /// Another trigger of the function runs it (an earlier-named one accepts) or counts it (a later-named one
    /// matches): ack, nothing else.
    Covered,
    /// No trigger of the function that matches accepts it, and this one is the last of them: ack, counted.
    Rejected,
}

/// What to do with an alert this trigger runs, after its condition: dedup.
#[derive(Debug)]
pub(crate) enum Decision {
    /// A duplicate of an alert that holds the key: ack with a `deduplicated` result.
    Duplicate { window: Duration, key: String },
    /// Run it; `claim` is the dedup key it holds, released if the reaction fails for good.
    Run { claim: Option<Claimed> },
}

/// A dedup key an alert holds.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    /// The key's text (shown in the result: `dedup_key`).
    pub key: String,
    /// Its subject in the dedup stream.
    pub subject: String,
}

/// One trigger's policy, compiled when its dispatcher starts.
pub(crate) struct Policy {
    function: String,
    admission: Admission,
    dedup: Option<(Duration, Option<Condition>)>,
    dry_run: bool,
}

/// The conditions that decide whether this trigger runs an alert: its own and those of the function's other
/// triggers. Conditions are OR'ed across a function's triggers that match the subject, and the function still
/// runs once: exactly the first-named trigger that matches and accepts runs the alert, the others ack it as
/// covered. A condition that cannot be evaluated does not accept.
///
/// Counts stay one per alert for the function: an alert that no matching trigger accepts is counted (as a
/// condition error when one of their conditions could not be evaluated, as rejected otherwise) only by the
/// last-named trigger that matches its subject, under that trigger's name; an alert is counted as matched by
/// the trigger whose condition let it through and runs it. Each trigger logs its own condition's evaluation
/// errors.
pub(crate) struct Admission {
    own: Option<Condition>,
    own_name: String,
    on_error: OnConditionError,
    /// Triggers of the function named before this one: their names, patterns and conditions (None accepts
    /// all) and what their condition errors do.
    earlier: Vec<(String, Pattern, Option<Condition>, OnConditionError)>,
    /// Patterns of the triggers named after it.
    later: Vec<Pattern>,
}

/// What one condition says of an alert.
#[derive(Debug, PartialEq)]
enum Verdict {
    Accept,
    Reject,
    Error(String),
}

fn verdict(condition: Option<&Condition>, alert: &Alert) -> Verdict {
    match condition.map(|c| c.matches(alert)) {
        None | Some(Ok(true)) => Verdict::Accept,
        Some(Ok(false)) => Verdict::Reject,
        Some(Err(why)) => Verdict::Error(why),
    }
}

/// Whether a verdict lets the alert through, given what the trigger's condition errors do.
fn accepts(v: &Verdict, on_error: OnConditionError) -> bool {
    match v {
        Verdict::Accept => true,
        Verdict::Reject => false,
        Verdict::Error(_) => on_error == OnConditionError::Run,
    }
}

/// What the function's conditions mean for this trigger and one alert.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Run,
    /// Run although the own condition could not be evaluated (`--on-condition-error run`).
    RunDespiteError,
    Covered,
    Rejected {
        errored: bool,
    },
}

impl Admission {
    /// Compiles the trigger's condition and those of its siblings (the function's other triggers). A sibling
    /// whose pattern or condition is refused does not run (its own dispatcher says why): here it matches nothing.
    pub fn new(trigger: &Trigger, siblings: &[Trigger]) -> Result<Admission, crate::policy::condition::ConditionError> {
        let own = trigger.when.as_deref().map(Condition::compile).transpose()?;
        let (mut earlier, mut later) = (Vec::new(), Vec::new());
        for t in siblings.iter().filter(|t| t.function == trigger.function && t.name != trigger.name) {
            let Ok(pattern) = Pattern::parse(&t.topic) else { continue };
            let Ok(condition) = t.when.as_deref().map(Condition::compile).transpose() else { continue };
            if t.name < trigger.name {
                earlier.push((t.name.clone(), pattern, condition, t.on_condition_error));
            } else {
                later.push(pattern);
            }
        }
        let (own_name, on_error) = (trigger.name.clone(), trigger.on_condition_error);
        Ok(Admission { own, own_name, on_error, earlier, later })
    }

    /// Whether a trigger of the function named before this one matches `subject`.
    pub fn earlier_matches(&self, subject: &str) -> bool {
        self.earlier.iter().any(|(_, p, _, _)| p.matches(subject))
    }

    /// Why an alert no trigger accepted was not judged: the first condition (this trigger's, then the earlier
    /// ones matching `subject`) that could not be evaluated, named with its trigger.
    fn condition_error(&self, alert: &Alert, subject: &str) -> String {
        let own = (self.own_name.as_str(), self.own.as_ref());
        let earlier =
            self.earlier.iter().filter(|(_, p, _, _)| p.matches(subject)).map(|(n, _, c, _)| (n.as_str(), c.as_ref()));
        for (name, condition) in std::iter::once(own).chain(earlier) {
            if let (Verdict::Error(why), Some(c)) = (verdict(condition, alert), condition) {
                let why = crate::secrets::truncate::printable(&why).into_owned();
                return format!(
                    "not run: the condition {:?} of trigger {name} could not be evaluated on the alert ({why}); \
                     fix the condition, or create the trigger with --on-condition-error run to run such alerts",
                    c.as_str()
                );
            }
        }
        "not run: a condition could not be evaluated on the alert".into()
    }

    fn decide(&self, alert: &Alert, subject: &str) -> Outcome {
        let own = verdict(self.own.as_ref(), alert);
        if let (Verdict::Error(why), Some(c)) = (&own, &self.own) {
            // The error may quote the alert's values: escaped like every alert-provided log field.
            let why = crate::secrets::truncate::printable(&why.to_string()).into_owned();
            tracing::warn!(condition = c.as_str(), error = %why, "the trigger's condition could not be evaluated; it does not accept the alert");
        }
        let mut earlier =
            self.earlier.iter().filter(|(_, p, _, _)| p.matches(subject)).map(|(_, _, c, e)| (c.as_ref(), *e));
        let own_errored = matches!(own, Verdict::Error(_));
        if accepts(&own, self.on_error) {
            return match () {
                _ if earlier.any(|(c, e)| accepts(&verdict(c, alert), e)) => Outcome::Covered,
                _ if own_errored => Outcome::RunDespiteError,
                _ => Outcome::Run,
            };
        }
        if self.later.iter().any(|p| p.matches(subject)) {
            return Outcome::Covered;
        }
        let mut errored = own_errored;
        for (c, e) in earlier {
            let v = verdict(c, alert);
            if accepts(&v, e) {
                return Outcome::Covered;
            }
            errored |= matches!(v, Verdict::Error(_));
        }
        Outcome::Rejected { errored }
    }
}

/// Why a trigger's policy cannot be used (the trigger does not start; its alerts wait in JetStream).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Condition(#[from] crate::policy::condition::ConditionError),
    #[error(transparent)]
    Nats(#[from] StreamError),
}

impl Policy {
    /// Compiles the conditions of the trigger and its siblings (the function's other triggers) and the
    /// function's dedup key, and ensures the dedup stream.
    pub async fn new(
        js: &async_nats::jetstream::Context,
        trigger: &Trigger,
        siblings: &[Trigger],
        function: &Function,
    ) -> Result<Policy, PolicyError> {
        let admission = Admission::new(trigger, siblings)?;
        let dedup = match &function.policy.dedup {
            Some(d) => {
                dedup::ensure(js, &function.name, d.window()).await?;
                Some((d.window(), d.key.as_deref().map(Condition::compile_key).transpose()?))
            }
            None => None,
        };
        Ok(Policy { function: function.name.clone(), admission, dedup, dry_run: function.policy.dry_run })
    }

    /// Whether results are `dry-run` (the handler records instead of acting).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether this trigger runs `alert` (published on `subject`), by the conditions of the function's triggers;
    /// the caller counts it as [`Admission`] says.
    pub fn admit(&self, alert: &Alert, subject: &str) -> Admit {
        match self.admission.decide(alert, subject) {
            Outcome::Run => Admit::Run,
            Outcome::RunDespiteError => {
                tracing::warn!(
                    "running the alert although the condition could not be evaluated (--on-condition-error run)"
                );
                Admit::RunDespiteConditionError
            }
            Outcome::Covered => Admit::Covered,
            Outcome::Rejected { errored: true } => {
                Admit::ConditionError(self.admission.condition_error(alert, subject))
            }
            Outcome::Rejected { errored: false } => {
                tracing::debug!("no condition of the function's triggers accepted the alert");
                Admit::Rejected
            }
        }
    }

    /// Whether a trigger of the function named before this one matches `subject` (a malformed alert is
    /// recorded by the first trigger that matches it).
    pub fn earlier_matches(&self, subject: &str) -> bool {
        self.admission.earlier_matches(subject)
    }

    /// Dedup, for delivery `attempt` of an alert this trigger runs.
    pub async fn decide(&self, js: &async_nats::jetstream::Context, alert: &Alert, attempt: u32) -> Decision {
        let Some((window, key)) = &self.dedup else { return Decision::Run { claim: None } };
        if attempt > 1 {
            return Decision::Run { claim: None };
        }
        let key = match key {
            None => default_key(alert),
            Some(expr) => match expr.key(alert) {
                Ok(k) => k,
                Err(why) => {
                    let why = crate::secrets::truncate::printable(&why.to_string()).into_owned();
                    tracing::warn!(key = expr.as_str(), error = %why, "the dedup key could not be evaluated; running the alert");
                    return Decision::Run { claim: None };
                }
            },
        };
        let memory = if self.dry_run { dedup::Memory::DryRun } else { dedup::Memory::Armed };
        let subject = dedup::key_subject(&self.function, &key, memory);
        match dedup::claim(js, &subject, &alert.uuid).await {
            Ok(Claim::First) => Decision::Run { claim: Some(Claimed { key, subject }) },
            Ok(Claim::Duplicate) => Decision::Duplicate { window: *window, key },
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

    fn trigger(name: &str, topic: &str, when: Option<&str>) -> Trigger {
        Trigger {
            name: name.into(),
            function: "f".into(),
            topic: topic.into(),
            when: when.map(Into::into),
            on_condition_error: Default::default(),
        }
    }

    fn alert(priority: &str, rule: &str) -> Alert {
        let raw = serde_json::json!({"uuid": "u", "output": "o", "priority": priority, "rule": rule,
            "time": "2024-05-17T15:31:56.746609046Z", "output_fields": {}, "source": "syscall", "hostname": "h"});
        Alert::parse(raw.to_string().as_bytes()).unwrap()
    }

    /// What each trigger of `triggers` says of the alert on `subject` (those whose pattern matches it).
    fn outcomes(triggers: &[Trigger], alert: &Alert, subject: &str) -> Vec<(String, Outcome)> {
        triggers
            .iter()
            .filter(|t| Pattern::parse(&t.topic).unwrap().matches(subject))
            .map(|t| (t.name.clone(), Admission::new(t, triggers).unwrap().decide(alert, subject)))
            .collect()
    }

    fn says(pairs: &[(&str, Outcome)]) -> Vec<(String, Outcome)> {
        pairs.iter().map(|(n, o)| (n.to_string(), o.clone())).collect()
    }

    #[test]
    fn conditions_are_ored_across_a_functions_triggers_and_the_first_accepting_one_runs() {
        let triggers =
            [trigger("a-crit", "falco.*.*", Some("priority >= Critical")), trigger("t0", "falco.notice.*", None)];
        let notice = outcomes(&triggers, &alert("Notice", "r"), "falco.notice.x");
        assert_eq!(notice, says(&[("a-crit", Outcome::Covered), ("t0", Outcome::Run)]));
        let critical = outcomes(&triggers, &alert("Critical", "r"), "falco.critical.x");
        assert_eq!(critical, says(&[("a-crit", Outcome::Run)]));
        let both = outcomes(&triggers, &alert("Critical", "r"), "falco.notice.x");
        assert_eq!(both, says(&[("a-crit", Outcome::Run), ("t0", Outcome::Covered)]), "once, not once per trigger");
    }

    #[test]
    fn an_alert_no_trigger_accepts_is_counted_once_by_the_last_matching_trigger() {
        let triggers = [
            trigger("a", "falco.>", Some("priority >= Critical")),
            trigger("b", "falco.>", Some("alert.rule == 'x'")),
            trigger("c", "falco.other.*", None),
        ];
        let none = outcomes(&triggers, &alert("Warning", "y"), "falco.warning.y");
        assert_eq!(none, says(&[("a", Outcome::Covered), ("b", Outcome::Rejected { errored: false })]));
        let second = outcomes(&triggers, &alert("Warning", "x"), "falco.warning.x");
        assert_eq!(second, says(&[("a", Outcome::Covered), ("b", Outcome::Run)]));
        // A condition that cannot be evaluated does not accept; the alert is counted as a condition error.
        let triggers = [
            trigger("a", "falco.>", Some("alert.output_fields['k8s.ns.name'] == 'prod'")),
            trigger("b", "falco.>", Some("alert.rule == 'x'")),
            trigger("z", "falco.>", Some("alert.nosuch == 1")),
        ];
        let errored = outcomes(&triggers[..2], &alert("Warning", "y"), "falco.warning.y");
        assert_eq!(errored, says(&[("a", Outcome::Covered), ("b", Outcome::Rejected { errored: true })]));
        // A sibling whose condition is refused does not run: it neither accepts nor counts.
        let admission = Admission::new(&triggers[1], &triggers).unwrap();
        assert_eq!(admission.decide(&alert("Warning", "y"), "falco.warning.y"), Outcome::Rejected { errored: true });
        assert!(Admission::new(&triggers[2], &triggers).is_err());
    }

    #[test]
    fn the_default_key_ignores_the_time_prefix() {
        assert_eq!(strip_time_prefix("16:31:56.746609046: Error File below"), "Error File below");
        assert_eq!(strip_time_prefix("no prefix: here"), "no prefix: here");
        assert_eq!(strip_time_prefix("plain"), "plain");
    }
}
