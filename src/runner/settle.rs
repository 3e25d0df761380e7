//! How an alert settles, decided apart from doing it: [`settlement`] is a pure function of the execution's
//! status, the delivery attempt, the function's limits and whether it is a dry run, so every row of the settle
//! table at the top of `dispatch.rs` is a unit test below; the dispatcher's effects step (`Dispatcher::finish`)
//! then carries the answer out: releases the dedup claim, counts, stores the record and the dead letter, and
//! answers JetStream. Alerts that end without running (a duplicate, a condition that could not be evaluated)
//! are executions of their own status and settle through the same function.

use crate::model::execution::Status;
use crate::model::limits::Limits;
use crate::nats::results::Disposition;
use std::time::Duration;

/// What JetStream is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Done: never delivered again.
    Ack,
    /// Deliver it again after this delay.
    Nak(Duration),
    /// Never deliver it again (it cannot succeed, or it was dead-lettered).
    Term,
}

/// How one execution settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settlement {
    /// What the result record says happened.
    pub disposition: Disposition,
    pub reply: Reply,
    /// The dedup key the alert holds is given back, so the next duplicate runs (the reaction ended without
    /// success for good).
    pub release_claim: bool,
    /// A dead letter is stored (the alert and the error) before the reply.
    pub dead_letter: bool,
}

/// What the execution of delivery `attempt` (1-based) means, for a function with `limits`. A failure after a
/// server's 429 (`retry_after_ms`) is worth a retry whatever its status, after the delay the server asked for,
/// capped at `backoff_max`; other retries wait `limits.retry_backoff(attempt)`.
pub(crate) fn settlement(
    status: Status,
    retry_after_ms: Option<u64>,
    attempt: u32,
    limits: &Limits,
    dry_run: bool,
    backoff_max: Duration,
) -> Settlement {
    let done = |disposition, reply| Settlement { disposition, reply, release_claim: false, dead_letter: false };
    let retryable = status.retryable() || (status != Status::Ok && retry_after_ms.is_some());
    let last = attempt >= limits.max_deliver;
    match status {
        Status::Deduplicated => done(Disposition::Deduplicated, Reply::Ack),
        Status::ConditionError => done(Disposition::Skipped, Reply::Ack),
        _ if dry_run => done(Disposition::DryRun, Reply::Ack),
        Status::Ok => done(Disposition::Acked, Reply::Ack),
        _ if retryable && !last => {
            let delay = match retry_after_ms {
                Some(ms) => Duration::from_millis(ms).min(backoff_max),
                None => limits.retry_backoff(attempt),
            };
            done(Disposition::Retry, Reply::Nak(delay))
        }
        _ if retryable => Settlement {
            disposition: Disposition::DeadLettered,
            reply: Reply::Term,
            release_claim: true,
            dead_letter: true,
        },
        _ => Settlement {
            disposition: Disposition::Terminated,
            reply: Reply::Term,
            release_claim: true,
            dead_letter: false,
        },
    }
}

impl Settlement {
    /// The delay before the next delivery, for a retry.
    pub fn retry_in(&self) -> Option<Duration> {
        match self.reply {
            Reply::Nak(delay) => Some(delay),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(30);

    fn limits() -> Limits {
        Limits { max_deliver: 3, retry_backoff_ms: 100, ..Limits::default() }
    }

    fn settle(status: Status, attempt: u32) -> Settlement {
        settlement(status, None, attempt, &limits(), false, MAX)
    }

    #[test]
    fn ok_is_acked() {
        let s = settle(Status::Ok, 1);
        assert_eq!(
            (s.disposition, s.reply, s.release_claim, s.dead_letter),
            (Disposition::Acked, Reply::Ack, false, false)
        );
        assert_eq!(settle(Status::Ok, 3).disposition, Disposition::Acked, "even on the last attempt");
    }

    #[test]
    fn a_failure_or_timeout_with_attempts_left_is_retried_with_a_doubling_backoff() {
        for status in [Status::Failed, Status::Timeout] {
            let first = settle(status, 1);
            assert_eq!((first.disposition, first.release_claim, first.dead_letter), (Disposition::Retry, false, false));
            assert_eq!(first.reply, Reply::Nak(limits().retry_backoff(1)));
            assert_eq!(settle(status, 2).retry_in(), Some(limits().retry_backoff(2)));
            assert!(limits().retry_backoff(2) > limits().retry_backoff(1), "doubling");
        }
    }

    #[test]
    fn a_failure_on_the_last_attempt_is_dead_lettered_then_terminated_and_releases_its_claim() {
        for status in [Status::Failed, Status::Timeout] {
            let s = settle(status, 3);
            assert_eq!(
                s,
                Settlement {
                    disposition: Disposition::DeadLettered,
                    reply: Reply::Term,
                    release_claim: true,
                    dead_letter: true
                }
            );
        }
    }

    #[test]
    fn a_failure_that_cannot_succeed_later_is_terminated_at_once_and_releases_its_claim() {
        for status in [
            Status::InvalidAlert,
            Status::MissingSetting,
            Status::Denied,
            Status::Rejected,
            Status::Memory,
            Status::Trap,
        ] {
            let s = settle(status, 1);
            assert_eq!(
                s,
                Settlement {
                    disposition: Disposition::Terminated,
                    reply: Reply::Term,
                    release_claim: true,
                    dead_letter: false
                },
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_failure_after_a_429_is_retried_after_the_delay_the_server_asked_for_capped() {
        let s = settlement(Status::Rejected, Some(2_000), 1, &limits(), false, MAX);
        assert_eq!((s.disposition, s.reply), (Disposition::Retry, Reply::Nak(Duration::from_secs(2))));
        let capped = settlement(Status::Failed, Some(3_600_000), 1, &limits(), false, MAX);
        assert_eq!(capped.reply, Reply::Nak(MAX));
        let last = settlement(Status::Rejected, Some(2_000), 3, &limits(), false, MAX);
        assert_eq!((last.disposition, last.dead_letter), (Disposition::DeadLettered, true));
        assert_eq!(settlement(Status::Ok, Some(2_000), 1, &limits(), false, MAX).disposition, Disposition::Acked);
    }

    #[test]
    fn a_dry_run_is_acked_as_dry_run_whatever_its_status() {
        for status in [Status::Ok, Status::Failed, Status::Trap] {
            for attempt in [1, 3] {
                let s = settlement(status, Some(1), attempt, &limits(), true, MAX);
                assert_eq!(
                    s,
                    Settlement {
                        disposition: Disposition::DryRun,
                        reply: Reply::Ack,
                        release_claim: false,
                        dead_letter: false
                    }
                );
            }
        }
    }

    #[test]
    fn alerts_that_did_not_run_are_acked_with_their_own_disposition() {
        for dry_run in [false, true] {
            let dup = settlement(Status::Deduplicated, None, 1, &limits(), dry_run, MAX);
            assert_eq!((dup.disposition, dup.reply, dup.release_claim), (Disposition::Deduplicated, Reply::Ack, false));
            let unjudged = settlement(Status::ConditionError, None, 1, &limits(), dry_run, MAX);
            assert_eq!(
                (unjudged.disposition, unjudged.reply, unjudged.release_claim),
                (Disposition::Skipped, Reply::Ack, false)
            );
        }
    }
}
