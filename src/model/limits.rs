//! Every resource limit riposte enforces, in one place: per function (from the manifest's `[limits]`) and
//! per runner (from the command line). The runtime reads them from here and nowhere else. The periods a runner
//! waits on (heartbeats, sweeps, back-offs, the drain) are in [`crate::model::timings`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits of one function, from `[limits]` in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time for one alert, host calls included (epoch deadline for guest CPU plus a timeout
    /// around the whole call).
    pub timeout_ms: u64,
    /// Cap on the sum of an instance's linear memories, in MiB.
    pub memory_mb: u64,
    /// How many alerts one warm instance may serve before it is retired; 1 = a fresh instance per alert.
    /// An instance is always retired after a trap, a timeout or an error.
    pub reuse: u32,
    /// How many alerts of this function run at once on one runner (admission before instantiation).
    pub concurrency: u32,
    /// How many times the runner delivers an alert to this function before it is dead-lettered.
    pub max_deliver: u32,
    /// Delay before the first retry of a failed or timed-out alert; doubles with each attempt, up to
    /// `Timings::retry_backoff_max`.
    pub retry_backoff_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 10_000,
            memory_mb: 256,
            reuse: 1000,
            concurrency: 16,
            max_deliver: 5,
            retry_backoff_ms: 1000,
        }
    }
}

impl Limits {
    /// The wall-clock deadline for one alert.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// How long to wait before redelivering after failed attempt number `attempt` (1-based).
    pub fn retry_backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        Duration::from_millis(self.retry_backoff_ms.saturating_mul(1 << exp))
            .min(crate::model::timings::get().retry_backoff_max)
    }

    /// How long JetStream waits for an ack before it redelivers the alert (to any runner): twice the
    /// function's timeout, within `Timings::ack_wait_min..=ACK_WAIT_MAX`. Short, so a crashed runner's alerts come back
    /// soon; a live runner sends `Progress` every `progress_every()` while a reaction runs.
    pub fn ack_wait(&self) -> Duration {
        (self.timeout() * 2).clamp(crate::model::timings::get().ack_wait_min, ACK_WAIT_MAX)
    }

    /// How often a running reaction tells JetStream it is still alive.
    pub fn progress_every(&self) -> Duration {
        self.ack_wait() / 3
    }

    /// Checks the numbers make sense; the error says which one to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("limits.timeout_ms must be at least 1".into());
        }
        if self.memory_mb < 1 || self.memory_mb > MAX_MEMORY_MB {
            return Err(format!("limits.memory_mb must be between 1 and {MAX_MEMORY_MB}"));
        }
        if self.reuse == 0 {
            return Err("limits.reuse must be at least 1 (1 = a fresh instance per alert)".into());
        }
        if self.concurrency == 0 {
            return Err("limits.concurrency must be at least 1".into());
        }
        if self.max_deliver == 0 {
            return Err("limits.max_deliver must be at least 1".into());
        }
        Ok(())
    }
}

/// The largest memory cap a function may ask for: also the size of a pooled memory slot.
pub const MAX_MEMORY_MB: u64 = 4096;

/// How often the epoch ticks; guest CPU deadlines are checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Extra time a timed-out call is given to unwind before it is abandoned.
pub const TIMEOUT_SLACK: Duration = Duration::from_millis(250);

/// Bytes of a WASM guest's stdout and stderr kept per alert, and of a container action's stderr: the last ones
/// (a Python traceback ends there); earlier bytes are dropped and counted, never refused (a full pipe must not
/// trap a warm instance).
pub const GUEST_OUTPUT_BYTES: usize = 16 * 1024;

/// Log lines a single execution may record; more are counted and dropped.
pub const MAX_LOG_LINES: usize = 200;

/// Bytes of one log line kept (a playbook's log call, a line of its output, a container's stderr line).
pub const LOG_LINE_BYTES: usize = 4 * 1024;

/// Bytes of a result's message (and a dead letter's error) kept; a longer one is cut, saying how much was dropped.
pub const RESULT_MESSAGE_BYTES: usize = 4 * 1024;

/// Bytes of a result's detail kept, as JSON; a larger detail is stored as its JSON text, cut.
pub const RESULT_DETAIL_BYTES: usize = 64 * 1024;

/// Bytes of log lines one result keeps in all; the lines past it are dropped and counted.
pub const RESULT_LOGS_BYTES: usize = 64 * 1024;

/// Bytes kept of the short texts of a record that an alert or a playbook fills (subject, uuid, reason).
pub const RECORD_FIELD_BYTES: usize = 1024;

/// Longest object key a playbook may give `object-store.put`.
pub const OBJECT_KEY_BYTES: usize = 1024;

/// Room left under the server's `max_payload` for a publish's headers: a record is at most
/// `max_payload - PUBLISH_HEADROOM_BYTES` bytes of JSON.
pub const PUBLISH_HEADROOM_BYTES: usize = 1024;

/// Attempts to store one result or dead letter; after the last, the alert is settled without it (logged and
/// counted) rather than run again.
pub const RECORD_PUBLISH_ATTEMPTS: u32 = 3;

/// JetStream's own `max_deliver` on a trigger's consumer is `limits.max_deliver` plus this: a backstop that
/// ends redelivery even if the runner never settles an alert (riposte dead-letters at `limits.max_deliver`).
pub const MAX_DELIVER_BACKSTOP: i64 = 2;

/// Largest HTTP response body handed to a guest.
pub const MAX_HTTP_BODY: usize = 16 << 20;

/// Initial heaps up to this size are always mapped copy-on-write at instantiation (never copied).
pub const DENSE_IMAGE_BYTES: u64 = 256 << 20;

/// Pooling allocator budget: instances that may be live at once on one runner. Beyond it, instantiation
/// falls back to waiting for admission (the dispatcher never asks for more).
pub const POOL_INSTANCES: u32 = 64;

/// Longest trigger condition or dedup key expression (CEL), in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// How deep a condition or dedup key expression may nest, as `condition::depth` measures it (brackets, and the
/// operators of one chain: `1 + 1 + 1` is three levels; `&&`/`||` chains are balanced). The `cel` parser, the
/// expression check and the evaluator recurse once per level, so this bounds their stack: the deepest allowed
/// expression of every shape parses and evaluates on a 2 MiB stack (a tokio worker's) with room to spare, where
/// 4 KiB of `1+1+…` (2,000 levels) overflowed it.
pub const MAX_EXPRESSION_DEPTH: usize = 64;

/// Longest regular expression a condition's or dedup key's `matches` may use, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Largest compiled form of such a regular expression (the regex crate's `size_limit`): a Unicode class
/// repeated (`\w{100}`, 5 MB) is small to write, large to hold and slow to compile. `[\w.-]+@[\w.-]+` takes
/// 100 KB.
pub const MAX_PATTERN_COMPILED_BYTES: usize = 1 << 20;

/// How deep `all`/`exists`/`exists_one`/`map`/`filter` may nest in an expression: one level, since a nested one
/// costs the product of both lists' sizes on every alert.
pub const MAX_COMPREHENSION_DEPTH: usize = 1;

/// Most host calls a dry run's result keeps (the others are counted as omitted).
pub const MAX_DRY_RUN_CALLS: usize = 32;

/// Largest recorded host call of a dry run, as JSON, in bytes (longer strings are cut, then the call is
/// summarised).
pub const DRY_RUN_CALL_BYTES: usize = 8 * 1024;

/// Bounds of a function's dedup window (`--dedup-window`).
pub const DEDUP_WINDOW_MIN: Duration = Duration::from_secs(1);
pub const DEDUP_WINDOW_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest time JetStream waits for an ack before redelivering an alert (see `Limits::ack_wait`; the
/// shortest is `Timings::ack_wait_min`).
pub const ACK_WAIT_MAX: Duration = Duration::from_secs(120);

/// A trigger's consumer lets `concurrency` × this many alerts be in flight across the fleet: room for that
/// many runners at full concurrency (each runner still admits at most `concurrency` at once).
pub const FLEET_ACK_PENDING_FACTOR: i64 = 4;

/// Per runner: alerts in flight at once across all functions (`riposte run --max-in-flight`).
pub const RUNNER_MAX_IN_FLIGHT: usize = 256;

/// Largest file riposte reads from a playbook folder (its code, manifest, data; the catalog's `_lib`; a
/// container's build context): a playbook is someone else's code, and `riposte build`, `spec`, `call` and a
/// deploy read every file of it. A larger file is refused with its path, nothing read.
pub const PLAYBOOK_FILE_BYTES: u64 = 16 << 20;

/// Largest sum of the files of one playbook folder (and of the catalog's `_lib`).
pub const PLAYBOOK_FOLDER_BYTES: u64 = 64 << 20;

/// Most entries (files and folders) one playbook folder may hold: a listing is bounded in time and memory too.
pub const PLAYBOOK_FOLDER_ENTRIES: usize = 10_000;

/// Bytes of a file a setting's value is read from (`-e KEY=@FILE`).
pub const MAX_SETTING_FILE_BYTES: usize = 64 * 1024;

/// How long each step of a runner's stop after the drain (removing its heartbeat, flushing its NATS client,
/// stopping the probes endpoint) may take before it is abandoned: NATS may be unreachable.
pub const STOP_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The most a stopping runner takes from the signal to its exit, whatever NATS does: the drain
/// (`Timings::drain_timeout`, 30 s) plus a few steps (45 s in all); past it the process exits, logging what it
/// abandoned (systemd and Kubernetes wait for the exit).
pub fn stop_timeout() -> Duration {
    crate::model::timings::get().drain_timeout + Duration::from_secs(15)
}

/// Bytes of a container action's stdout kept (its output); the rest is dropped.
pub const CONTAINER_STDOUT_BYTES: usize = 1 << 20;

/// Process limit of a container action whose manifest sets none.
pub const CONTAINER_PIDS: i64 = 256;

/// Size of the writable `/tmp` (a tmpfs) every container action gets on its read-only root filesystem.
pub const CONTAINER_TMPFS_MB: u64 = 64;

/// An alert of at most this many bytes is also put in a container action's `FALCO_ALERT` environment variable.
/// Larger ones are not (Linux refuses a single environment string over 128 KiB, `MAX_ARG_STRLEN`: the
/// container would fail with "argument list too long"); every alert is on stdin and in the read-only file
/// named by `FALCO_ALERT_FILE` whatever its size.
pub const CONTAINER_ENV_ALERT_BYTES: usize = 64 * 1024;

/// How long connecting to the container engine may take before riposte says it is not reachable.
pub const CONTAINER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
