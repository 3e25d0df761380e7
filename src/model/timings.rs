//! Every period a runner (or a command reading the fleet) waits on, in one value: heartbeats and when a runner
//! counts as gone, the container sweep, the ack-wait floor, retry and store back-offs, the pull heartbeat, the
//! drain on stop. The defaults are the production figures; they exist as a value, not as constants spread over
//! the code, so tests can shorten them (a test that waited 15 s for a killed runner to be marked gone now waits
//! a second) and one place says what the runner waits for.
//!
//! The process-wide value is [`get`]. It is read once from `RIPOSTE_TIMINGS` (for tests only: a comma-separated
//! list such as `heartbeat_every=200ms,gone_after=1s`; names as the fields below, durations in `ms` or `s`),
//! else the defaults. Tests in one process [`install`] theirs before starting anything.

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable a spawned `riposte` reads its timings from (tests only; documented in `--help` of
/// no command on purpose: production runs with the defaults).
pub const ENV: &str = "RIPOSTE_TIMINGS";

/// The periods a runner waits on. `Default` is production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How often a runner puts its heartbeat.
    pub heartbeat_every: Duration,
    /// A runner whose last heartbeat is older than this is shown as gone (three missed beats).
    pub gone_after: Duration,
    /// How often a runner connected to a container engine looks for container actions past their deadline.
    pub container_sweep_every: Duration,
    /// A container action still there this long after its deadline is removed by any runner on its engine.
    pub container_sweep_grace: Duration,
    /// The shortest time JetStream waits for an ack before redelivering (see `Limits::ack_wait`).
    pub ack_wait_min: Duration,
    /// Longest delay between two deliveries of a failing alert (a server's `Retry-After` included).
    pub retry_backoff_max: Duration,
    /// A trigger's pull request asks for an idle heartbeat this often (two missed: pull again).
    pub pull_heartbeat: Duration,
    /// How long one pull request waits for alerts before the runner renews it.
    pub pull_expires: Duration,
    /// How long a stopping runner waits for reactions in flight before it leaves them to redelivery.
    pub drain_timeout: Duration,
    /// Delay before the second attempt to store a record; doubles with each attempt (up to 1 s).
    pub record_retry: Duration,
    /// How long a record whose store failed transiently (a leader election, a lost connection) is tried again.
    pub record_retry_for: Duration,
    /// How far before the last ack wait a redelivered alert's earlier result is looked for.
    pub redelivery_slack: Duration,
    /// How long a trigger whose function cannot be loaded waits before trying again.
    pub handler_retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat_every: Duration::from_secs(5),
            gone_after: Duration::from_secs(15),
            container_sweep_every: Duration::from_secs(5),
            container_sweep_grace: Duration::from_secs(5),
            ack_wait_min: Duration::from_secs(2),
            retry_backoff_max: Duration::from_secs(300),
            pull_heartbeat: Duration::from_secs(2),
            pull_expires: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            record_retry: Duration::from_millis(200),
            record_retry_for: Duration::from_secs(30),
            redelivery_slack: Duration::from_secs(10),
            handler_retry: Duration::from_secs(10),
        }
    }
}

/// A `RIPOSTE_TIMINGS` text that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{ENV}: {0} (write e.g. heartbeat_every=200ms,gone_after=1s; it is for tests only: unset it in production)")]
pub struct TimingsError(String);

impl Timings {
    /// Short periods for tests: a killed runner is gone after 1 s, a sweep every second. The ack-wait floor and
    /// the pull heartbeat stay as in production: shorter ones redeliver alerts that a loaded machine is still
    /// running, which tests that count deliveries would see.
    pub fn fast() -> Timings {
        Timings {
            heartbeat_every: Duration::from_millis(250),
            gone_after: Duration::from_millis(1000),
            container_sweep_every: Duration::from_secs(1),
            container_sweep_grace: Duration::from_millis(2000),
            ack_wait_min: Duration::from_secs(2),
            retry_backoff_max: Duration::from_secs(300),
            pull_heartbeat: Duration::from_secs(2),
            pull_expires: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            record_retry: Duration::from_millis(100),
            record_retry_for: Duration::from_secs(20),
            redelivery_slack: Duration::from_secs(10),
            handler_retry: Duration::from_millis(500),
        }
    }

    /// The defaults changed by `text` (`name=duration,…`).
    pub fn parse(text: &str) -> Result<Timings, TimingsError> {
        let mut t = Timings::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) =
                item.split_once('=').ok_or_else(|| TimingsError(format!("{item:?} is not name=duration")))?;
            let d = parse_duration(value.trim()).ok_or_else(|| {
                TimingsError(format!("{value:?} (for {name}) is not a duration: a whole number and ms or s"))
            })?;
            let slot = t
                .slots()
                .into_iter()
                .find(|(n, _)| *n == name.trim())
                .map(|(_, slot)| slot)
                .ok_or_else(|| TimingsError(format!("{:?} is not a timing", name.trim())))?;
            if d.is_zero() {
                return Err(TimingsError(format!("{name} must be more than 0")));
            }
            *slot = d;
        }
        Ok(t)
    }

    /// The text [`Timings::parse`] reads back into this value.
    pub fn to_env(&self) -> String {
        let mut copy = *self;
        let items: Vec<String> =
            copy.slots().into_iter().map(|(name, d)| format!("{name}={}ms", d.as_millis())).collect();
        items.join(",")
    }

    /// Every field with its name in `RIPOSTE_TIMINGS`: the one list both directions read.
    fn slots(&mut self) -> [(&'static str, &mut Duration); 13] {
        [
            ("heartbeat_every", &mut self.heartbeat_every),
            ("gone_after", &mut self.gone_after),
            ("container_sweep_every", &mut self.container_sweep_every),
            ("container_sweep_grace", &mut self.container_sweep_grace),
            ("ack_wait_min", &mut self.ack_wait_min),
            ("retry_backoff_max", &mut self.retry_backoff_max),
            ("pull_heartbeat", &mut self.pull_heartbeat),
            ("pull_expires", &mut self.pull_expires),
            ("drain_timeout", &mut self.drain_timeout),
            ("record_retry", &mut self.record_retry),
            ("record_retry_for", &mut self.record_retry_for),
            ("redelivery_slack", &mut self.redelivery_slack),
            ("handler_retry", &mut self.handler_retry),
        ]
    }

    /// `RIPOSTE_TIMINGS` when set, else the defaults.
    pub fn from_env() -> Result<Timings, TimingsError> {
        match std::env::var(ENV) {
            Ok(text) => Timings::parse(&text),
            Err(_) => Ok(Timings::default()),
        }
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    if let Some(n) = text.strip_suffix("ms") {
        return n.parse().ok().map(Duration::from_millis);
    }
    text.strip_suffix('s')?.parse().ok().map(Duration::from_secs)
}

static CURRENT: OnceLock<Timings> = OnceLock::new();

/// The process's timings: installed, else read from `RIPOSTE_TIMINGS` (an unreadable value is logged and the
/// defaults are used; `riposte` itself checks it at start and refuses to run with it).
pub fn get() -> &'static Timings {
    CURRENT.get_or_init(|| {
        Timings::from_env().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "using the default timings");
            Timings::default()
        })
    })
}

/// Sets the process's timings unless they were read already; whether they were set (tests call it first thing).
pub fn install(t: Timings) -> bool {
    CURRENT.set(t).is_ok() || *get() == t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_text_round_trips_and_names_what_is_wrong() {
        let fast = Timings::fast();
        assert_eq!(Timings::parse(&fast.to_env()).unwrap(), fast);
        assert_eq!(Timings::parse("").unwrap(), Timings::default());
        let t = Timings::parse("gone_after=2s, heartbeat_every=100ms").unwrap();
        assert_eq!((t.gone_after, t.heartbeat_every), (Duration::from_secs(2), Duration::from_millis(100)));
        assert!(Timings::parse("gone=1s").unwrap_err().to_string().contains("\"gone\" is not a timing"));
        assert!(Timings::parse("gone_after=1m").unwrap_err().to_string().contains("not a duration"));
        assert!(Timings::parse("gone_after=0ms").unwrap_err().to_string().contains("more than 0"));
        assert!(Timings::parse("gone_after").unwrap_err().to_string().contains("not name=duration"));
    }
}
