//! The runner's one ledger of counts. Every outcome of an alert is counted here, once, by the dispatcher's
//! effects step (`Dispatcher::finish`) or where an alert ends without running; the ledger serves the
//! heartbeat (`riposte runner list`, [`crate::runner::Runner::trigger_counts`]) from its own tallies and feeds
//! the trigger's Prometheus series in the same call, so `/metrics` and `runner list` cannot disagree. Each
//! count is named for what it counts ([`Counts`]): an alert received is not a delivery, a succeeded execution
//! is not a handled one.

use crate::model::execution::Status;
use crate::nats::fleet::Counts;
use crate::nats::results::Disposition;
use crate::runner::metrics::{InFlight, Metrics, TriggerMetrics};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every trigger's tally on this runner, kept after a trigger stops so the runner's totals never go down.
#[derive(Default)]
pub(crate) struct Ledger {
    metrics: Option<Metrics>,
    triggers: Mutex<BTreeMap<String, Arc<TriggerLedger>>>,
}

/// One trigger's tally and series.
pub(crate) struct TriggerLedger {
    tally: Tally,
    series: TriggerMetrics,
}

#[derive(Default)]
struct Tally {
    alerts_received: AtomicU64,
    deliveries: AtomicU64,
    redeliveries: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    skipped_by_condition: AtomicU64,
    condition_errors: AtomicU64,
    deduplicated: AtomicU64,
    dry_run: AtomicU64,
    already_handled: AtomicU64,
    unstored: AtomicU64,
}

/// Something that happened to one alert of a trigger.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// Delivery `attempt` (from 1) was taken by the trigger.
    Delivered { attempt: u32 },
    /// No condition of the function's triggers let it through.
    SkippedByCondition,
    /// A condition could not be evaluated on it (whether it then runs or is recorded as `condition-error`).
    ConditionError,
    /// A redelivery whose reaction had succeeded: acked without running.
    AlreadyHandled,
    /// It settled: an execution's `status` and how it was settled (duplicates and condition errors included).
    Settled { status: Status, duration_us: u64, disposition: Disposition },
    /// A result or dead letter could not be stored.
    Unstored,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Ledger {
    /// A ledger that also feeds `metrics` (`--metrics-addr`), when given.
    pub fn new(metrics: Option<Metrics>) -> Ledger {
        Ledger { metrics, triggers: Mutex::default() }
    }

    /// The tally of one trigger (the same one each time its dispatcher starts again).
    pub fn trigger(&self, function: &str, trigger: &str) -> Arc<TriggerLedger> {
        let mut triggers = self.triggers.lock().unwrap();
        triggers
            .entry(trigger.to_owned())
            .or_insert_with(|| {
                let series = match &self.metrics {
                    Some(m) => m.trigger(function, trigger),
                    None => TriggerMetrics::off(),
                };
                Arc::new(TriggerLedger { tally: Tally::default(), series })
            })
            .clone()
    }

    /// Per trigger that counted anything: its counts now.
    pub fn per_trigger(&self) -> BTreeMap<String, Counts> {
        let triggers = self.triggers.lock().unwrap();
        triggers.iter().map(|(n, t)| (n.clone(), t.counts())).filter(|(_, c)| *c != Counts::default()).collect()
    }

    /// Every trigger's counts together.
    pub fn total(&self) -> Counts {
        self.per_trigger().into_values().fold(Counts::default(), Counts::plus)
    }
}

impl TriggerLedger {
    /// Counts `event` once, in the tally and in the trigger's Prometheus series.
    pub fn observe(&self, event: Event) {
        let (t, s) = (&self.tally, &self.series);
        match event {
            Event::Delivered { attempt } => {
                add(&t.deliveries);
                add(if attempt > 1 { &t.redeliveries } else { &t.alerts_received });
                s.delivered(attempt);
            }
            Event::SkippedByCondition => {
                add(&t.skipped_by_condition);
                s.skipped_by_condition();
            }
            Event::ConditionError => {
                add(&t.condition_errors);
                s.condition_error();
            }
            Event::AlreadyHandled => {
                add(&t.already_handled);
                s.settled("already-handled");
            }
            Event::Settled { status, duration_us, disposition } => {
                match disposition {
                    Disposition::Deduplicated => {
                        add(&t.deduplicated);
                        s.deduplicated();
                    }
                    // Counted as a condition error when the condition was evaluated.
                    Disposition::Skipped => {}
                    Disposition::DryRun => {
                        add(&t.dry_run);
                        s.dry_run(duration_us);
                    }
                    Disposition::Acked | Disposition::Retry | Disposition::Terminated | Disposition::DeadLettered => {
                        add(if status == Status::Ok { &t.succeeded } else { &t.failed });
                        s.executed(status, duration_us);
                    }
                }
                if disposition == Disposition::DeadLettered {
                    add(&t.dead_lettered);
                    s.dead_lettered();
                }
                s.settled(disposition.as_str());
            }
            Event::Unstored => {
                add(&t.unstored);
                s.unstored();
            }
        }
    }

    /// Counts the alert in flight (a Prometheus gauge) until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.series.in_flight()
    }

    /// The counts now.
    pub fn counts(&self) -> Counts {
        let t = &self.tally;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            alerts_received: get(&t.alerts_received),
            deliveries: get(&t.deliveries),
            redeliveries: get(&t.redeliveries),
            succeeded: get(&t.succeeded),
            failed: get(&t.failed),
            dead_lettered: get(&t.dead_lettered),
            skipped_by_condition: get(&t.skipped_by_condition),
            condition_errors: get(&t.condition_errors),
            deduplicated: get(&t.deduplicated),
            dry_run: get(&t.dry_run),
            already_handled: get(&t.already_handled),
            unstored: get(&t.unstored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(status: Status, disposition: Disposition) -> Event {
        Event::Settled { status, duration_us: 10, disposition }
    }

    #[test]
    fn each_outcome_is_counted_once_under_its_own_name_in_the_tally_and_in_prometheus() {
        let metrics = Metrics::new();
        let ledger = Ledger::new(Some(metrics.clone()));
        let t = ledger.trigger("f", "f-t");
        for attempt in [1, 2, 1, 1, 1, 1, 1] {
            t.observe(Event::Delivered { attempt });
        }
        t.observe(settled(Status::Failed, Disposition::Retry));
        t.observe(settled(Status::Ok, Disposition::Acked));
        t.observe(Event::SkippedByCondition);
        t.observe(Event::ConditionError);
        t.observe(settled(Status::ConditionError, Disposition::Skipped));
        t.observe(settled(Status::Deduplicated, Disposition::Deduplicated));
        t.observe(settled(Status::Failed, Disposition::DryRun));
        t.observe(settled(Status::Timeout, Disposition::DeadLettered));
        let want = Counts {
            alerts_received: 6,
            deliveries: 7,
            redeliveries: 1,
            succeeded: 1,
            failed: 2,
            dead_lettered: 1,
            skipped_by_condition: 1,
            condition_errors: 1,
            deduplicated: 1,
            dry_run: 1,
            ..Counts::default()
        };
        assert_eq!(t.counts(), want);
        assert_eq!(ledger.total(), want);
        assert_eq!(ledger.trigger("f", "f-t").counts(), want, "the same tally when the dispatcher restarts");
        let text = metrics.encode();
        let ft = "function=\"f\",trigger=\"f-t\"";
        for line in [
            format!("riposte_alerts_received_total{{{ft}}} 6"),
            format!("riposte_deliveries_total{{{ft}}} 7"),
            format!("riposte_redeliveries_total{{{ft}}} 1"),
            format!("riposte_executions_total{{{ft},status=\"ok\"}} 1"),
            format!("riposte_executions_total{{{ft},status=\"failed\"}} 1"),
            format!("riposte_alerts_dead_lettered_total{{{ft}}} 1"),
            format!("riposte_alerts_skipped_by_condition_total{{{ft}}} 1"),
            format!("riposte_alerts_condition_error_total{{{ft}}} 1"),
            format!("riposte_alerts_deduplicated_total{{{ft}}} 1"),
            format!("riposte_dry_runs_total{{{ft}}} 1"),
            format!("riposte_alerts_settled_total{{{ft},disposition=\"skipped\"}} 1"),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn an_older_heartbeats_counts_read_under_the_new_names() {
        let old = r#"{"matched": 2, "rejected": 3, "errors": 1, "deduplicated": 4}"#;
        let c: Counts = serde_json::from_str(old).unwrap();
        assert_eq!((c.skipped_by_condition, c.condition_errors, c.deduplicated), (3, 1, 4));
        let c: Counts = serde_json::from_str(r#"{"handled": 5, "failed": 2, "unstored": 1}"#).unwrap();
        assert_eq!((c.succeeded, c.failed, c.unstored), (5, 2, 1));
    }
}
