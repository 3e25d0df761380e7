//! The result of running one function on one alert: what riposte records, publishes and shows, for WASM and
//! container functions alike. It never holds setting values: [`Handler::handle`] redacts every execution a
//! handler finishes ([`Execution::redact`]) before anyone else sees it.

use crate::model::wit::CallError;
use serde::{Deserialize, Serialize};

/// One log line of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The reaction is done.
    Ok,
    /// The alert cannot be handled: never retried.
    InvalidAlert,
    /// A required setting is missing or malformed: never retried.
    MissingSetting,
    /// The playbook called something it was not granted: never retried.
    Denied,
    /// A remote API refused (Kubernetes NotFound, HTTP 4xx): not retried.
    Rejected,
    /// A transient failure: retried.
    Failed,
    /// The deadline passed: retried.
    Timeout,
    /// The playbook went over its memory limit: not retried.
    Memory,
    /// The playbook crashed (a trap, an uncaught exception): not retried.
    Trap,
    /// Not run: the trigger's condition could not be evaluated on the alert (`--on-condition-error skip`).
    ConditionError,
    /// Not run: an alert with the same dedup key ran within the function's window.
    Deduplicated,
}

impl Status {
    /// Whether another delivery could succeed.
    pub fn retryable(self) -> bool {
        matches!(self, Status::Failed | Status::Timeout)
    }

    /// The kebab-case name, as in results and specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InvalidAlert => "invalid-alert",
            Status::MissingSetting => "missing-setting",
            Status::Denied => "denied",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Memory => "memory",
            Status::Trap => "trap",
            Status::ConditionError => "condition-error",
            Status::Deduplicated => "deduplicated",
        }
    }
}

/// Anything that reacts to one alert: a WASM function or a container action.
#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    /// Runs the reaction and redacts the function's secret values from every field of the execution: the one
    /// way executions leave a handler, so results, dead letters, runner logs and CLI output never hold them.
    async fn handle(&self, alert: &crate::model::alert::Alert) -> Execution {
        let mut exec = self.react(alert).await;
        exec.redact(self.secrets());
        exec
    }

    /// Runs the reaction; every failure is an `Execution` with a status, never a panic. Call
    /// [`handle`](Self::handle) instead.
    async fn react(&self, alert: &crate::model::alert::Alert) -> Execution;

    /// What to redact from the function's executions (see [`crate::model::function::Settings::secrets`]).
    fn secrets(&self) -> &crate::secrets::redact::Secrets;

    /// Its warm-instance counters, for handlers that keep instances (WASM functions).
    fn instances(&self) -> Option<InstanceCounts> {
        None
    }
}

/// How a handler's instances were used since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceCounts {
    /// Instances created.
    pub created: u64,
    /// Alerts served by an already-warm instance.
    pub reused: u64,
    /// Instances retired (after a trap, a timeout, an error or their reuse limit).
    pub retired: u64,
    /// Idle instances released (idle too long, or the least recently used over the warm budget).
    pub released: u64,
    /// Idle warm instances now.
    pub idle: u64,
    /// Times the component was unloaded after the idle timeout (loaded again by the next alert).
    pub unloads: u64,
}

/// One function run on one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub status: Status,
    /// The outcome's message, or the error.
    pub message: String,
    /// For `rejected`: the API's reason ("NotFound", "Forbidden", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The outcome's detail, parsed when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// Lines the playbook logged (and, after a crash, the end of its stderr).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Wall time of the whole execution, in microseconds.
    pub duration_us: u64,
    /// Time spent instantiating, in microseconds (0 when a warm instance served it).
    pub instantiate_us: u64,
    /// The host calls a dry run recorded instead of making them (redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_calls: Vec<serde_json::Value>,
    /// The longest `Retry-After` a server answered a 429 with during the execution, in milliseconds: a
    /// failure then is retried after that delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Execution {
    /// Whether the reaction is done.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// An execution with `status` and `message` and nothing else: one that ended before it started (bad alert,
    /// missing setting, no engine); build a success with [`Execution::ok`].
    pub fn refused(status: Status, message: impl Into<String>) -> Execution {
        Execution::ended(status, message.into())
    }

    /// A successful execution saying what was done.
    pub fn ok(message: impl Into<String>) -> Execution {
        Execution::ended(Status::Ok, message.into())
    }

    fn ended(status: Status, message: String) -> Execution {
        Execution {
            status,
            message,
            reason: None,
            detail: None,
            logs: Vec::new(),
            duration_us: 0,
            instantiate_us: 0,
            host_calls: Vec::new(),
            retry_after_ms: None,
        }
    }

    /// Replaces every secret value ([`crate::secrets::redact::Secrets::redact`]) in every text of the execution: message,
    /// reason, detail (its strings, keys and numbers, at any depth), log lines and dry-run host calls.
    pub fn redact(&mut self, secrets: &crate::secrets::redact::Secrets) {
        if secrets.is_empty() {
            return;
        }
        let r = |text: &str| secrets.redact(text);
        self.message = r(&self.message);
        if let Some(reason) = &mut self.reason {
            *reason = r(reason);
        }
        if let Some(detail) = self.detail.take() {
            self.detail = Some(secrets.redact_json(detail));
        }
        for line in &mut self.logs {
            line.level = r(&line.level);
            line.message = r(&line.message);
        }
        let calls = std::mem::take(&mut self.host_calls);
        self.host_calls = calls.into_iter().map(|c| secrets.redact_json(c)).collect();
    }

    /// Status, message and reason from an error the guest returned.
    pub fn from_call_error(err: CallError) -> Execution {
        let (status, message, reason) = match err {
            CallError::InvalidAlert(m) => (Status::InvalidAlert, m, None),
            CallError::MissingSetting(m) => (Status::MissingSetting, m, None),
            CallError::Denied(m) => (Status::Denied, m, None),
            CallError::Rejected(api) => {
                (Status::Rejected, format!("{} ({} {})", api.message, api.code, api.reason), Some(api.reason))
            }
            CallError::Failed(m) => (Status::Failed, m, None),
        };
        Execution { reason, ..Execution::refused(status, message) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_every_field() {
        let secret = "Canary-Tok3n-XYZ";
        let mut exec = Execution {
            reason: Some(format!("Reason{secret}")),
            detail: Some(serde_json::json!({"k": secret, secret: [1, {"deep": format!("x{secret}x")}]})),
            logs: vec![LogLine { level: "info".into(), message: format!("host {}.invalid", secret.to_lowercase()) }],
            host_calls: vec![serde_json::json!({"url": format!("https://h/{secret}")})],
            ..Execution::refused(Status::Rejected, format!("refused {secret}"))
        };
        exec.redact(&crate::secrets::redact::Secrets::new([secret]));
        let text = serde_json::to_string(&exec).unwrap();
        assert!(!text.to_lowercase().contains(&secret.to_lowercase()), "{text}");
        assert_eq!(exec.message, "refused ***");
        assert_eq!(exec.reason.as_deref(), Some("Reason***"));
        assert_eq!(exec.detail.as_ref().unwrap()["***"][1]["deep"], "x***x");
        assert_eq!(exec.logs[0].message, "host ***.invalid");
        assert_eq!(exec.host_calls[0]["url"], "https://h/***");
    }
}
