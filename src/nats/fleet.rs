//! The fleet: which runners are alive and what they serve. Every runner puts a [`Heartbeat`] in the KV bucket
//! `riposte-runners` (key `runners.<name>`) when it starts and every `Timings::heartbeat_every` (5 s), and deletes it when it
//! stops gracefully. A runner killed outright leaves its last heartbeat: `riposte runner list` marks it gone
//! once that is older than `Timings::gone_after` (15 s), and the bucket's stream forgets it after [`FORGOTTEN_AFTER`]
//! (`max_age`: nats-server 2.9 has no per-message TTL, an entry expires with the stream's age limit). Ages are
//! the server's time stamp of the last put against this machine's clock (`riposte doctor` checks the skew).
//!
//! A heartbeat is keyed by its runner's name so that NATS permissions can confine each runner's credential to
//! its own key (`$KV.riposte-runners.*.<runner>`, README's least-privilege layout): a credential cannot make a
//! runner that does not run look alive. A heartbeat whose content names another runner than its key is dropped
//! by [`runners`] with a warning, never listed.

use crate::model::function::Function;
use crate::nats::streams::{Doing, StreamError, StreamSettings};
use async_nats::jetstream::{self, kv, stream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The KV bucket of heartbeats.
pub const RUNNERS_BUCKET: &str = "riposte-runners";
/// A heartbeat older than this is dropped from the bucket altogether.
pub const FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

/// What a runner announces about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Its name (`--name`).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// riposte's version.
    pub version: String,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// Functions it dispatches now.
    pub functions: Vec<Served>,
    /// Alerts being handled at this moment.
    pub in_flight: u64,
    /// What its triggers counted since it started, all together (the same ledger as /metrics).
    #[serde(flatten)]
    pub counts: Counts,
    /// Functions it refuses to run, and why (their secret settings do not open with its settings key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, String>,
    /// Whether its container engine answers.
    pub container_engine: Access,
    /// Whether it has a Kubernetes cluster configured.
    pub kubernetes: Access,
    /// Per trigger that counted anything since the runner started: its counts. (Older runners wrote
    /// `policy` with `rejected`, `errors`, `deduplicated`: read as the same counts.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", alias = "policy")]
    pub triggers: BTreeMap<String, Counts>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a runner counted (one trigger's, or all of them together), each count named for exactly what it
/// counts. An alert received runs (succeeded or failed, a dry run), or ends without running (skipped by
/// condition, condition error, deduplicated, already handled). Zero counts are not written; every count reads
/// as zero when absent, and older heartbeats' `handled` and `rejected`/`errors` read as `succeeded` and
/// `skipped_by_condition`/`condition_errors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Alerts taken on their first delivery.
    #[serde(skip_serializing_if = "is_zero")]
    pub alerts_received: u64,
    /// Deliveries taken: first deliveries and redeliveries.
    #[serde(skip_serializing_if = "is_zero")]
    pub deliveries: u64,
    /// Deliveries after an alert's first (attempt > 1).
    #[serde(skip_serializing_if = "is_zero")]
    pub redeliveries: u64,
    /// Executions (not dry runs) that succeeded.
    #[serde(skip_serializing_if = "is_zero", alias = "handled")]
    pub succeeded: u64,
    /// Executions (not dry runs) that did not; each attempt counts.
    #[serde(skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// Alerts given up on after their last attempt (a dead letter).
    #[serde(skip_serializing_if = "is_zero")]
    pub dead_lettered: u64,
    /// Alerts no condition of the function's triggers let through (acked, nothing run, no result).
    #[serde(skip_serializing_if = "is_zero", alias = "rejected")]
    pub skipped_by_condition: u64,
    /// Alerts a condition could not be evaluated on (a `condition-error` result, or run with
    /// `--on-condition-error run`).
    #[serde(skip_serializing_if = "is_zero", alias = "errors")]
    pub condition_errors: u64,
    /// Alerts acked as duplicates (a `deduplicated` result).
    #[serde(skip_serializing_if = "is_zero")]
    pub deduplicated: u64,
    /// Executions in a dry run, whatever their status.
    #[serde(skip_serializing_if = "is_zero")]
    pub dry_run: u64,
    /// Redeliveries acked without running: the reaction had succeeded before (its result is stored).
    #[serde(skip_serializing_if = "is_zero")]
    pub already_handled: u64,
    /// Results and dead letters that could not be stored (their alerts were settled anyway).
    #[serde(skip_serializing_if = "is_zero")]
    pub unstored: u64,
}

impl Counts {
    /// The sum of two counts.
    pub fn plus(self, o: Counts) -> Counts {
        Counts {
            alerts_received: self.alerts_received + o.alerts_received,
            deliveries: self.deliveries + o.deliveries,
            redeliveries: self.redeliveries + o.redeliveries,
            succeeded: self.succeeded + o.succeeded,
            failed: self.failed + o.failed,
            dead_lettered: self.dead_lettered + o.dead_lettered,
            skipped_by_condition: self.skipped_by_condition + o.skipped_by_condition,
            condition_errors: self.condition_errors + o.condition_errors,
            deduplicated: self.deduplicated + o.deduplicated,
            dry_run: self.dry_run + o.dry_run,
            already_handled: self.already_handled + o.already_handled,
            unstored: self.unstored + o.unstored,
        }
    }
}

/// A function a runner dispatches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub name: String,
    /// Pinned to this runner (`--runs-on`).
    pub pinned: bool,
}

/// Whether something a runner may need is available, and what (an address, or why not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Access {
    pub available: bool,
    pub detail: String,
}

/// A runner as seen in the bucket.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerStatus {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    /// When its last heartbeat was stored (server time), RFC 3339.
    pub last_seen: String,
    /// Seconds since then, by this machine's clock.
    pub seconds_since: u64,
    /// No heartbeat for longer than `Timings::gone_after`.
    pub gone: bool,
}

/// A function pinned to a runner that no one is running: its alerts wait in JetStream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnservedPin {
    pub function: String,
    pub runs_on: String,
    /// The runner is listed but gone (else no runner of that name has been seen).
    pub gone: bool,
}

/// Creates the bucket when missing and opens it. (The stream is made here: async-nats' `create_key_value`
/// fails on nats-server 2.9, see [`crate::nats::registry`].)
pub async fn open(js: &jetstream::Context) -> Result<kv::Store, StreamError> {
    open_with(js, &StreamSettings::default()).await
}

/// [`open`], replicated as `settings` asks. [`crate::nats::registry::Registry::open_with`] calls it too, so every
/// deployer command creates the bucket and a least-privilege runner only reads its stream's info.
pub async fn open_with(js: &jetstream::Context, settings: &StreamSettings) -> Result<kv::Store, StreamError> {
    let config = stream::Config {
        max_age: FORGOTTEN_AFTER,
        ..crate::nats::streams::kv_stream_config(RUNNERS_BUCKET, "riposte runner heartbeats")
    };
    crate::nats::streams::ensure_stream(js, crate::nats::streams::Subjects::Keep, config, settings).await?;
    js.get_key_value(RUNNERS_BUCKET).await.doing("opening the runners bucket")
}

/// The key of a runner's heartbeat.
pub fn key(runner: &str) -> String {
    format!("runners.{runner}")
}

/// Every runner with a heartbeat in the bucket, by name.
pub async fn runners(store: &kv::Store) -> Result<Vec<RunnerStatus>, StreamError> {
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for k in crate::nats::streams::kv_keys(store, "runners.").await? {
        let Some(entry) = store.entry(&k).await.doing(format!("reading {k}"))? else { continue };
        if !matches!(entry.operation, kv::Operation::Put) {
            continue;
        }
        let heartbeat: Heartbeat = match serde_json::from_slice(&entry.value) {
            Ok(h) => h,
            Err(e) => return Err(StreamError::new(format!("runners bucket entry {k}"), e)),
        };
        if k != key(&heartbeat.name) {
            tracing::warn!(
                "heartbeat {:?} not shown: it claims to be runner {:?} (forged, or written by a credential of another runner)",
                crate::secrets::truncate::truncate(&k, 128),
                crate::secrets::truncate::truncate(&heartbeat.name, 128)
            );
            continue;
        }
        let age = (now - entry.created).max(time::Duration::ZERO);
        let seconds_since = age.whole_seconds().max(0) as u64;
        out.push(RunnerStatus {
            heartbeat,
            last_seen: entry.created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            seconds_since,
            gone: age > crate::model::timings::get().gone_after,
        });
    }
    out.sort_by(|a, b| a.heartbeat.name.cmp(&b.heartbeat.name));
    Ok(out)
}

/// Functions pinned (`runs-on`) to a runner that is not alive.
pub fn unserved_pins(functions: &BTreeMap<String, Function>, runners: &[RunnerStatus]) -> Vec<UnservedPin> {
    functions
        .values()
        .filter_map(|f| {
            let runs_on = f.runs_on.as_ref()?;
            let seen = runners.iter().find(|r| &r.heartbeat.name == runs_on);
            match seen {
                Some(r) if !r.gone => None,
                _ => Some(UnservedPin { function: f.name.clone(), runs_on: runs_on.clone(), gone: seen.is_some() }),
            }
        })
        .collect()
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::function::Settings;
    use crate::model::manifest::Manifest;

    fn status(name: &str, gone: bool) -> RunnerStatus {
        let access = Access { available: false, detail: String::new() };
        RunnerStatus {
            heartbeat: Heartbeat {
                name: name.into(),
                host: "h".into(),
                version: "0".into(),
                started_at: String::new(),
                functions: vec![],
                in_flight: 0,
                counts: Counts::default(),
                refused: BTreeMap::new(),
                container_engine: access.clone(),
                kubernetes: access,
                triggers: BTreeMap::new(),
            },
            last_seen: String::new(),
            seconds_since: 0,
            gone,
        }
    }

    #[test]
    fn pins_to_absent_or_gone_runners_are_reported() {
        let f = |name: &str, runs_on: Option<&str>| Function {
            name: name.into(),
            manifest: Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n")).unwrap(),
            artifact: String::new(),
            settings: Settings::default(),
            runs_on: runs_on.map(Into::into),
            policy: Default::default(),
        };
        let functions: BTreeMap<String, Function> =
            [f("anywhere", None), f("on-a", Some("a")), f("on-b", Some("b")), f("on-c", Some("c"))]
                .into_iter()
                .map(|f| (f.name.clone(), f))
                .collect();
        let pins = unserved_pins(&functions, &[status("a", false), status("b", true)]);
        assert_eq!(
            pins,
            [
                UnservedPin { function: "on-b".into(), runs_on: "b".into(), gone: true },
                UnservedPin { function: "on-c".into(), runs_on: "c".into(), gone: false },
            ]
        );
    }
}
