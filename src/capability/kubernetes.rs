//! The `kubernetes` backends. Until a cluster is configured, every verb says how to configure one.

use super::{CallResult, CaptureJob, Kubernetes, Taint};
use crate::runtime::bindings::riposte::playbook::types::Error as CallError;

/// The backend of a runner with no cluster configured.
pub struct NoCluster;

fn no_cluster<T>() -> CallResult<T> {
    Err(CallError::Denied("no Kubernetes cluster is configured for this runner: set KUBECONFIG or run it in a cluster".into()))
}

#[async_trait::async_trait]
impl Kubernetes for NoCluster {
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
