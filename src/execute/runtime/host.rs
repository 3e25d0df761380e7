//! The host side of every import: the per-instance state a guest's calls reach, the grant check before each
//! capability, and the memory limiter.

use crate::execute::capability::{denied, Backends, Grants};
use crate::model::execution::LogLine;
use crate::model::function::Settings;
use crate::model::limits::{LOG_LINE_BYTES, MAX_LOG_LINES, OBJECT_KEY_BYTES};
use crate::model::manifest::KubernetesVerb;
use crate::model::wit::riposte::playbook as wit;
use crate::model::wit::CallError;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a function's calls are checked against and served by; shared by all its instances.
pub(crate) struct FunctionContext {
    /// The function's name: its namespace in the object store.
    pub name: String,
    pub settings: Settings,
    /// Values to redact from everything the function's executions report.
    pub secrets: crate::secrets::redact::Secrets,
    pub grants: Grants,
    pub backends: Backends,
    /// `ALLOW_DAEMONSET_PODS=true` in the settings lets delete-pod remove DaemonSet pods.
    pub allow_daemonset: bool,
    /// The playbook's name and the settings its manifest declares, to tell an undeclared setting from an
    /// unset one.
    pub playbook: String,
    pub declared: std::collections::BTreeSet<String>,
}

/// The state of one execution (reset before each alert a warm instance serves).
#[derive(Default)]
pub(crate) struct CallState {
    pub logs: Vec<LogLine>,
    pub dropped_logs: usize,
    /// The first call the guest was refused, reported even if the guest ignores the error.
    pub denied: Option<String>,
    pub deadline: Option<Instant>,
    /// The longest `Retry-After` of a 429 answer, so a failure is retried no sooner than the server asked.
    pub retry_after: Option<std::time::Duration>,
}

/// The store's data: one per instance.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// The guest's stdout and stderr, taken after each alert.
    pub output: super::output::GuestOutput,
    pub func: std::sync::Arc<FunctionContext>,
    pub call: CallState,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Raised (as a trap) when an instance asks for more memory than its function's cap.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the playbook asked for {asked_mb} MiB in all, its limit is {cap_mb} MiB (limits.memory_mb)"
)]
pub struct MemoryExceeded {
    pub asked_mb: usize,
    pub cap_mb: usize,
}

/// Caps the sum of an instance's linear memories.
pub(crate) struct MemoryLimiter {
    pub cap: usize,
    pub total: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let next = self.total.saturating_add(desired.saturating_sub(current));
        if next > self.cap {
            return Err(wasmtime::Error::new(MemoryExceeded { asked_mb: next >> 20, cap_mb: self.cap >> 20 }));
        }
        self.total = next;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl HostState {
    fn refuse(&mut self, what: &str) -> CallError {
        self.note_denied(denied(what))
    }

    /// Remembers the first refusal of this execution, so it is reported even if the guest ignores it.
    fn note_denied(&mut self, err: CallError) -> CallError {
        if let (None, CallError::Denied(msg)) = (&self.call.denied, &err) {
            self.call.denied = Some(msg.clone());
        }
        err
    }

    fn kubernetes(&mut self, verb: KubernetesVerb) -> Result<(), CallError> {
        if self.func.grants.kubernetes.contains(&verb) {
            Ok(())
        } else {
            Err(self.refuse(&format!("kubernetes.{}", verb.as_str())))
        }
    }
}

impl wit::types::Host for HostState {}

impl wit::settings::Host for HostState {
    async fn get(&mut self, name: String) -> Option<String> {
        self.func.settings.get(&name).map(str::to_owned)
    }

    async fn require(&mut self, name: String) -> Result<String, CallError> {
        match self.func.settings.get(&name) {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            None if !self.func.declared.contains(&name) => Err(CallError::MissingSetting(format!(
                "setting {name} is not declared in playbooks/{}/playbook.toml: add [settings.{name}]",
                self.func.playbook
            ))),
            _ => Err(CallError::MissingSetting(format!("setting {name} is not set: deploy with -e {name}=VALUE"))),
        }
    }
}

impl wit::log::Host for HostState {
    async fn write(&mut self, level: wit::log::Level, message: String) {
        if self.call.logs.len() >= MAX_LOG_LINES {
            self.call.dropped_logs += 1;
            return;
        }
        let level = match level {
            wit::log::Level::Debug => "debug",
            wit::log::Level::Info => "info",
            wit::log::Level::Warn => "warn",
            wit::log::Level::Error => "error",
        };
        // Redacted before it is cut, so a cut cannot leave half a secret unrecognised.
        let message = self.func.secrets.redact(&message);
        let message = crate::secrets::truncate::truncate(&message, LOG_LINE_BYTES).into_owned();
        self.call.logs.push(LogLine { level: level.to_owned(), message });
    }
}

impl wit::http::Host for HostState {
    async fn send(&mut self, req: wit::http::Request) -> Result<wit::http::Response, CallError> {
        if !self.func.grants.http {
            return Err(self.refuse("http"));
        }
        if let Err(why) = self.func.grants.check_url(&req.url) {
            return Err(self.note_denied(CallError::Denied(why)));
        }
        let http = self.func.backends.http.clone();
        let response = http.send(req).await?;
        if response.status == 429 {
            let asked = retry_after(&response.headers);
            self.call.retry_after = self.call.retry_after.max(asked);
        }
        Ok(response)
    }
}

/// A 429's `Retry-After` (delay-seconds or an HTTP date), bounded by `Timings::retry_backoff_max`; None when absent
/// or unreadable (the function's own backoff applies).
pub(crate) fn retry_after(headers: &[(String, String)]) -> Option<std::time::Duration> {
    let value = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after")).map(|(_, v)| v.trim())?;
    let delay = match value.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => {
            let format = time::format_description::well_known::Rfc2822;
            let at = time::OffsetDateTime::parse(value, &format).ok()?;
            let left = at - time::OffsetDateTime::now_utc();
            std::time::Duration::try_from(left).unwrap_or_default()
        }
    };
    Some(delay.min(crate::model::timings::get().retry_backoff_max))
}

impl wit::kubernetes::Host for HostState {
    async fn delete_pod(&mut self, namespace: String, name: String, grace: Option<u32>) -> Result<String, CallError> {
        self.kubernetes(KubernetesVerb::DeletePod)?;
        let (k8s, allow) = (self.func.backends.kubernetes.clone(), self.func.allow_daemonset);
        k8s.delete_pod(&namespace, &name, grace, allow).await
    }

    async fn label_pod(
        &mut self,
        namespace: String,
        name: String,
        labels: Vec<(String, String)>,
    ) -> Result<(), CallError> {
        self.kubernetes(KubernetesVerb::LabelPod)?;
        let k8s = self.func.backends.kubernetes.clone();
        k8s.label_pod(&namespace, &name, &labels).await
    }

    async fn taint_node_of_pod(
        &mut self,
        namespace: String,
        pod: String,
        taint: wit::kubernetes::Taint,
    ) -> Result<String, CallError> {
        self.kubernetes(KubernetesVerb::TaintNodeOfPod)?;
        let k8s = self.func.backends.kubernetes.clone();
        k8s.taint_node_of_pod(&namespace, &pod, &taint).await
    }

    async fn cordon_node_of_pod(&mut self, namespace: String, pod: String) -> Result<String, CallError> {
        self.kubernetes(KubernetesVerb::CordonNodeOfPod)?;
        let k8s = self.func.backends.kubernetes.clone();
        k8s.cordon_node_of_pod(&namespace, &pod).await
    }

    async fn isolate_pod(&mut self, namespace: String, pod: String) -> Result<String, CallError> {
        self.kubernetes(KubernetesVerb::IsolatePod)?;
        let k8s = self.func.backends.kubernetes.clone();
        k8s.isolate_pod(&namespace, &pod).await
    }

    async fn create_capture_job(&mut self, job: wit::kubernetes::CaptureJob) -> Result<String, CallError> {
        self.kubernetes(KubernetesVerb::CreateCaptureJob)?;
        let k8s = self.func.backends.kubernetes.clone();
        k8s.create_capture_job(&job).await
    }
}

impl wit::object_store::Host for HostState {
    async fn put(&mut self, key: String, data: Vec<u8>, content_type: Option<String>) -> Result<String, CallError> {
        if !self.func.grants.object_store {
            return Err(self.refuse("object-store"));
        }
        if key.len() > OBJECT_KEY_BYTES {
            let why = format!("object key of {} bytes: at most {OBJECT_KEY_BYTES} are allowed", key.len());
            return Err(crate::execute::capability::rejected("BadRequest", why, 400));
        }
        let store = self.func.backends.object_store.clone();
        store.put(&self.func.name, &key, data, content_type).await
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use std::time::Duration;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_bounded() {
        let h = |v: &str| vec![("Retry-After".to_owned(), v.to_owned())];
        assert_eq!(retry_after(&h("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&h("86400")), Some(crate::model::timings::get().retry_backoff_max));
        assert_eq!(retry_after(&h("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO), "a past date");
        assert_eq!(retry_after(&h("soon")), None);
        assert_eq!(retry_after(&[]), None);
    }
}
