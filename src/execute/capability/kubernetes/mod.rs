//! The `kubernetes` backends: [`Cluster`] talks to a real API server with kube-rs; [`NoCluster`] answers every
//! verb with how to configure one. Every call is made here; the objects it sends are built in [`objects`].

pub mod objects;

use super::{rejected, CallResult, CaptureJob, Kubernetes, Taint};
use crate::model::manifest::KubernetesVerb;
use crate::model::wit::CallError;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The backend of a runner with no cluster configured.
pub struct NoCluster;

fn no_cluster<T>() -> CallResult<T> {
    Err(CallError::Denied("no Kubernetes cluster is configured for this runner: pass --kubeconfig, set KUBECONFIG or run riposte in a cluster".into()))
}

#[async_trait::async_trait]
impl Kubernetes for NoCluster {
    fn available(&self) -> bool {
        false
    }
    async fn delete_pod(&self, _: &str, _: &str, _: Option<u32>, _: bool) -> CallResult<String> {
        no_cluster()
    }
    async fn label_pod(&self, _: &str, _: &str, _: &[(String, String)]) -> CallResult<()> {
        no_cluster()
    }
    async fn taint_node_of_pod(&self, _: &str, _: &str, _: &Taint) -> CallResult<String> {
        no_cluster()
    }
    async fn cordon_node_of_pod(&self, _: &str, _: &str) -> CallResult<String> {
        no_cluster()
    }
    async fn isolate_pod(&self, _: &str, _: &str) -> CallResult<String> {
        no_cluster()
    }
    async fn create_capture_job(&self, _: &CaptureJob) -> CallResult<String> {
        no_cluster()
    }
}

/// Where the cluster's configuration comes from.
#[derive(Debug, Clone)]
pub enum ClusterConfig {
    /// A kubeconfig file the user named (`--kubeconfig`), with its current context.
    Kubeconfig(PathBuf),
    /// The usual inference: `KUBECONFIG`, `~/.kube/config`, else the in-cluster service account.
    Infer,
}

impl ClusterConfig {
    /// The configuration to use, or `None` when nothing says a cluster exists (no `--kubeconfig`, no
    /// `KUBECONFIG`, no `~/.kube/config`, not in a pod). An explicit kubeconfig is read now, so a broken one is
    /// reported at startup rather than at the first alert.
    pub fn detect(explicit: Option<&Path>) -> Result<Option<ClusterConfig>, ConfigError> {
        if let Some(path) = explicit {
            Kubeconfig::read_from(path)
                .map_err(|e| ConfigError::Kubeconfig { path: path.to_owned(), reason: e.to_string() })?;
            return Ok(Some(ClusterConfig::Kubeconfig(path.to_owned())));
        }
        let from_env = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
        let home = dirs::home_dir().is_some_and(|h| h.join(".kube/config").is_file());
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        Ok((from_env || home || in_cluster).then_some(ClusterConfig::Infer))
    }

    async fn load(&self) -> Result<kube::Config, String> {
        match self {
            ClusterConfig::Kubeconfig(path) => {
                let config = Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))
            }
            ClusterConfig::Infer => kube::Config::infer().await.map_err(|e| e.to_string()),
        }
    }
}

impl ClusterConfig {
    /// A client for this configuration (nothing is sent yet).
    pub async fn client(&self) -> Result<Client, String> {
        Client::try_from(self.load().await?).map_err(|e| e.to_string())
    }
}

/// What a verb needs the API server to allow (RBAC), as (API group, resource, verb): what `riposte doctor`
/// asks with a SelfSubjectAccessReview each, and what the catalog's RBAC column lists.
pub fn rbac(verb: KubernetesVerb) -> &'static [(&'static str, &'static str, &'static str)] {
    const POD: (&str, &str, &str) = ("", "pods", "get");
    match verb {
        KubernetesVerb::DeletePod => &[POD, ("", "pods", "delete")],
        KubernetesVerb::LabelPod => &[POD, ("", "pods", "patch")],
        KubernetesVerb::TaintNodeOfPod | KubernetesVerb::CordonNodeOfPod => {
            &[POD, ("", "nodes", "get"), ("", "nodes", "patch")]
        }
        KubernetesVerb::IsolatePod => &[
            POD,
            ("", "pods", "patch"),
            ("networking.k8s.io", "networkpolicies", "get"),
            ("networking.k8s.io", "networkpolicies", "create"),
            ("networking.k8s.io", "networkpolicies", "patch"),
        ],
        KubernetesVerb::CreateCaptureJob => &[POD, ("batch", "jobs", "create")],
    }
}

/// A kubeconfig that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot use kubeconfig {path}: {reason}; check the file or drop --kubeconfig")]
    Kubeconfig { path: PathBuf, reason: String },
}

/// The real backend: kube-rs against the configured cluster. The client is made at the first call, so a runner
/// starts even when the cluster is away; a configuration that cannot be loaded is reported to every call.
pub struct Cluster {
    config: ClusterConfig,
    client: OnceCell<Client>,
}

impl Cluster {
    /// A backend for this configuration; nothing is read or connected yet.
    pub fn new(config: ClusterConfig) -> Cluster {
        Cluster { config, client: OnceCell::new() }
    }

    /// The backend, or [`NoCluster`] when no cluster is configured.
    pub fn detect(explicit: Option<&Path>) -> Result<Arc<dyn Kubernetes>, ConfigError> {
        let backend: Arc<dyn Kubernetes> = match ClusterConfig::detect(explicit)? {
            Some(config) => Arc::new(Cluster::new(config)),
            None => Arc::new(NoCluster),
        };
        Ok(backend)
    }

    async fn client(&self) -> CallResult<Client> {
        self.client
            .get_or_try_init(|| async {
                let config = self.config.load().await?;
                Client::try_from(config).map_err(|e| e.to_string())
            })
            .await
            .cloned()
            .map_err(|e| CallError::Denied(format!("the Kubernetes configuration cannot be used: {e}")))
    }

    async fn namespaced<K>(&self, namespace: &str) -> CallResult<Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Ok(Api::namespaced(self.client().await?, namespace))
    }

    async fn pod(&self, namespace: &str, name: &str) -> CallResult<Pod> {
        self.namespaced::<Pod>(namespace).await?.get(name).await.map_err(api_error)
    }

    /// The node a pod runs on; a pod not yet scheduled has none, which no node verb can act on.
    async fn node_of(&self, namespace: &str, pod: &str) -> CallResult<String> {
        let found = self.pod(namespace, pod).await?;
        found.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()).ok_or_else(|| {
            rejected("NotScheduled", format!("pod {namespace}/{pod} is not scheduled on a node yet"), 409)
        })
    }
}

/// A kube-rs error as the guest sees it: the API's refusal with its reason, anything else worth a retry.
fn api_error(e: kube::Error) -> CallError {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                reqwest::StatusCode::from_u16(status.code)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("Unknown")
                    .to_owned()
            } else {
                status.reason.clone()
            };
            if status.code >= 500 || status.code == 429 || reason == "Conflict" {
                CallError::Failed(format!("Kubernetes API: {reason}: {}", status.message))
            } else {
                rejected(&reason, status.message.clone(), status.code)
            }
        }
        other => CallError::Failed(format!("Kubernetes API: {other}")),
    }
}

fn merge<T: serde::Serialize>(patch: T) -> (PatchParams, Patch<T>) {
    (PatchParams::default(), Patch::Merge(patch))
}

#[async_trait::async_trait]
impl Kubernetes for Cluster {
    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<u32>,
        allow_daemonset: bool,
    ) -> CallResult<String> {
        let pods = self.namespaced::<Pod>(namespace).await?;
        let pod = pods.get(name).await.map_err(api_error)?;
        if let (Some(owner), false) = (objects::daemonset_owner(&pod), allow_daemonset) {
            return Err(CallError::Denied(format!(
                "pod {namespace}/{name} belongs to DaemonSet {owner}, which would recreate it; set ALLOW_DAEMONSET_PODS=true to delete it anyway"
            )));
        }
        // The uid precondition makes sure the pod deleted is the one just checked, not a namesake.
        let params = DeleteParams {
            grace_period_seconds: grace,
            preconditions: pod.metadata.uid.clone().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        pods.delete(name, &params).await.map_err(api_error)?;
        Ok(pod.spec.and_then(|s| s.node_name).unwrap_or_default())
    }

    async fn label_pod(&self, namespace: &str, name: &str, labels: &[(String, String)]) -> CallResult<()> {
        let (params, patch) = merge(objects::labels_patch(labels));
        self.namespaced::<Pod>(namespace).await?.patch(name, &params, &patch).await.map_err(api_error)?;
        Ok(())
    }

    async fn taint_node_of_pod(&self, namespace: &str, pod: &str, taint: &Taint) -> CallResult<String> {
        let node_name = self.node_of(namespace, pod).await?;
        let nodes: Api<Node> = Api::all(self.client().await?);
        // Read-modify-write of the whole list, guarded by resourceVersion: retry when someone else changed it.
        for attempt in 1..=TAINT_ATTEMPTS {
            let node = nodes.get(&node_name).await.map_err(api_error)?;
            let Some(taints) = objects::with_taint(&node, taint) else { return Ok(node_name) };
            let (params, patch) = merge(objects::taints_patch(&node, &taints));
            match nodes.patch(&node_name, &params, &patch).await {
                Ok(_) => return Ok(node_name),
                Err(kube::Error::Api(s)) if s.reason == "Conflict" && attempt < TAINT_ATTEMPTS => continue,
                Err(e) => return Err(api_error(e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn cordon_node_of_pod(&self, namespace: &str, pod: &str) -> CallResult<String> {
        let node_name = self.node_of(namespace, pod).await?;
        let nodes: Api<Node> = Api::all(self.client().await?);
        let (params, patch) = merge(serde_json::json!({ "spec": { "unschedulable": true } }));
        nodes.patch(&node_name, &params, &patch).await.map_err(api_error)?;
        Ok(node_name)
    }

    async fn isolate_pod(&self, namespace: &str, pod: &str) -> CallResult<String> {
        self.pod(namespace, pod).await?;
        // The policy first: the moment the label lands, the pod is cut off.
        let policies = self.namespaced::<NetworkPolicy>(namespace).await?;
        match policies.get_opt(objects::ISOLATION_POLICY).await.map_err(api_error)? {
            Some(existing) => {
                let spec = serde_json::to_value(&existing.spec).unwrap_or_default();
                if !objects::is_isolating(&spec) {
                    let (params, patch) = merge(objects::isolation_repair());
                    policies.patch(objects::ISOLATION_POLICY, &params, &patch).await.map_err(api_error)?;
                }
            }
            None => {
                let policy: NetworkPolicy = serde_json::from_value(objects::isolation_policy(namespace))
                    .expect("the isolation policy is a valid NetworkPolicy");
                match policies.create(&PostParams::default(), &policy).await {
                    Ok(_) => {}
                    // Another isolation in this namespace created it meanwhile: same policy, reuse it.
                    Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {}
                    Err(e) => return Err(api_error(e)),
                }
            }
        }
        self.label_pod(namespace, pod, &[(objects::ISOLATION_LABEL.to_owned(), "true".to_owned())]).await?;
        Ok(objects::ISOLATION_POLICY.to_owned())
    }

    async fn create_capture_job(&self, job: &CaptureJob) -> CallResult<String> {
        let node = self.node_of(&job.namespace, &job.pod).await?;
        let spec: Job =
            serde_json::from_value(objects::capture_job(job, &node)).expect("the capture job is a valid Job");
        let created = self
            .namespaced::<Job>(&job.namespace)
            .await?
            .create(&PostParams::default(), &spec)
            .await
            .map_err(api_error)?;
        Ok(created.metadata.name.unwrap_or_else(|| job.job_name.clone()))
    }
}

/// How often a taint is re-read and re-applied when the node changes under it.
const TAINT_ATTEMPTS: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str) -> kube::Error {
        let mut s = kube::core::Status::failure("pods \"web\" not found", reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn api_refusals_keep_their_reason_and_transient_errors_are_retryable() {
        match api_error(status(404, "NotFound")) {
            CallError::Rejected(api) => {
                assert_eq!((api.reason.as_str(), api.code), ("NotFound", 404));
                assert_eq!(api.message, "pods \"web\" not found");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(api_error(status(403, "")), CallError::Rejected(a) if a.reason == "Forbidden"));
        assert!(matches!(api_error(status(503, "ServiceUnavailable")), CallError::Failed(_)));
        assert!(matches!(api_error(status(409, "Conflict")), CallError::Failed(_)));
    }

    #[test]
    fn an_explicit_kubeconfig_that_cannot_be_read_is_reported_at_once() {
        let e = ClusterConfig::detect(Some(Path::new("/nonexistent/kubeconfig"))).unwrap_err();
        assert!(e.to_string().contains("cannot use kubeconfig /nonexistent/kubeconfig"), "{e}");
    }
}
