//! Host capabilities: what a playbook can do to the world, each a trait with a real backend and a recording
//! backend for specs, and the grants that say which of them a function may use.
//!
//! The runtime checks grants before it calls a backend, so a backend never sees a call the function was not
//! granted, and the recording backend sees exactly what a real one would.

pub mod http;
pub mod kubernetes;
pub mod object_store;
pub mod recording;

use crate::model::function::Function;
use crate::model::manifest::{Capability, KubernetesVerb};
use crate::model::wit::{ApiError, CallError};
use std::collections::BTreeSet;
use std::sync::Arc;

pub use crate::model::wit::{CaptureJob, HttpRequest, HttpResponse, Taint};

/// The result of a host call, with the error the guest sees.
pub type CallResult<T> = Result<T, CallError>;

/// Outbound HTTP.
#[async_trait::async_trait]
pub trait Http: Send + Sync {
    /// Sends one request (already checked against the function's allow-list).
    async fn send(&self, request: HttpRequest) -> CallResult<HttpResponse>;
}

/// Typed Kubernetes verbs.
#[async_trait::async_trait]
pub trait Kubernetes: Send + Sync {
    /// Whether a cluster is configured (false only for the backend that refuses every verb).
    fn available(&self) -> bool {
        true
    }
    /// Deletes a pod; returns its node. Refuses DaemonSet pods unless `allow_daemonset`.
    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<u32>,
        allow_daemonset: bool,
    ) -> CallResult<String>;
    /// Adds or overwrites labels on a pod.
    async fn label_pod(&self, namespace: &str, name: &str, labels: &[(String, String)]) -> CallResult<()>;
    /// Taints the pod's node, keeping its other taints; returns the node.
    async fn taint_node_of_pod(&self, namespace: &str, pod: &str, taint: &Taint) -> CallResult<String>;
    /// Cordons the pod's node; returns the node.
    async fn cordon_node_of_pod(&self, namespace: &str, pod: &str) -> CallResult<String>;
    /// Labels the pod and ensures a deny-all NetworkPolicy selects it; returns the policy's name.
    async fn isolate_pod(&self, namespace: &str, pod: &str) -> CallResult<String>;
    /// Creates the capture Job on the pod's node; returns the Job's name.
    async fn create_capture_job(&self, job: &CaptureJob) -> CallResult<String>;
}

/// Object storage: one namespace per function, so functions never see or overwrite each other's objects.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores an object under `key` in `function`'s namespace; returns the key (never a host path).
    async fn put(&self, function: &str, key: &str, data: Vec<u8>, content_type: Option<String>) -> CallResult<String>;
}

/// The backends one runner (or one spec case) gives its functions.
#[derive(Clone)]
pub struct Backends {
    pub http: Arc<dyn Http>,
    pub kubernetes: Arc<dyn Kubernetes>,
    pub object_store: Arc<dyn ObjectStore>,
}

/// What one function may call: derived from its manifest's capabilities and its settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    pub http: bool,
    pub object_store: bool,
    pub kubernetes: BTreeSet<KubernetesVerb>,
    /// Hosts `http` may reach: `host`, `host:port` or `*.domain`.
    pub http_allow: Vec<String>,
}

impl Grants {
    /// The grants of these capabilities (no HTTP hosts yet).
    pub fn from_capabilities(capabilities: &[Capability]) -> Grants {
        let mut grants = Grants::default();
        for cap in capabilities {
            match cap {
                Capability::Http => grants.http = true,
                Capability::ObjectStore => grants.object_store = true,
                Capability::KubernetesAll => grants.kubernetes.extend(KubernetesVerb::ALL),
                Capability::Kubernetes(verb) => {
                    grants.kubernetes.insert(*verb);
                }
            }
        }
        grants
    }

    /// The grants of a deployed function: its manifest's capabilities, and for `http` the hosts named by its
    /// URL-valued settings plus the manifest's `[http] allow`.
    pub fn for_function(function: &Function) -> Grants {
        let mut grants = Grants::from_capabilities(&function.manifest.capabilities);
        grants.http_allow = function.manifest.http.allow.clone();
        for (_, value) in function.settings.iter() {
            if let Ok(url) = url::Url::parse(value) {
                if let (Some(host), Some(port), "http" | "https") =
                    (url.host_str(), url.port_or_known_default(), url.scheme())
                {
                    grants.http_allow.push(format!("{host}:{port}"));
                }
            }
        }
        grants
    }

    /// Whether `http` may reach this URL; the error says why not and how to allow it.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?}: only http and https are allowed"));
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(0);
        let allowed = self.http_allow.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            let (pat, pat_port) = match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_owned(), p.parse::<u16>().ok()),
                _ => (entry.clone(), None),
            };
            let host_ok = match pat.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == pat,
            };
            host_ok && pat_port.is_none_or(|p| p == port)
        });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "host {host}:{port} is not allowed for this function; name it in a setting's URL or add it to [http] allow in playbook.toml"
            ))
        }
    }
}

/// An error for a call the function was not granted.
pub fn denied(what: &str) -> CallError {
    CallError::Denied(format!("{what} is not granted to this function; add it to capabilities in playbook.toml"))
}

/// A Kubernetes-style API refusal.
pub fn rejected(reason: &str, message: impl Into<String>, code: u16) -> CallError {
    CallError::Rejected(ApiError { reason: reason.to_owned(), message: message.into(), code })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_follow_the_capabilities() {
        let g = Grants::from_capabilities(&[Capability::Http, Capability::Kubernetes(KubernetesVerb::DeletePod)]);
        assert!(g.http && !g.object_store);
        assert!(
            g.kubernetes.contains(&KubernetesVerb::DeletePod) && !g.kubernetes.contains(&KubernetesVerb::IsolatePod)
        );
        assert_eq!(Grants::from_capabilities(&[Capability::KubernetesAll]).kubernetes.len(), 6);
    }

    #[test]
    fn allow_list_from_settings_and_manifest() {
        let m = crate::model::manifest::Manifest::parse(
            "name = \"x\"\nkind = \"wasm\"\ncapabilities = [\"http\"]\n[http]\nallow = [\"*.example.com\", \"api.local:8080\"]\n[settings.URL]\n",
        )
        .unwrap();
        let settings =
            crate::model::function::Settings::from_pairs([("URL".into(), "https://hooks.slack.com/services/x".into())]);
        let f = Function {
            name: "x".into(),
            manifest: m,
            artifact: String::new(),
            settings,
            runs_on: None,
            policy: Default::default(),
        };
        let g = Grants::for_function(&f);
        assert!(g.check_url("https://hooks.slack.com/other").is_ok());
        assert!(g.check_url("http://hooks.slack.com/other").is_err(), "port 80 is not 443");
        assert!(g.check_url("https://a.example.com/").is_ok());
        assert!(g.check_url("https://example.com.evil.io/").is_err());
        assert!(g.check_url("http://api.local:8080/x").is_ok());
        assert!(g.check_url("http://api.local:8081/x").is_err());
        assert!(g.check_url("file:///etc/passwd").is_err());
    }
}
