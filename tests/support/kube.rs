//! A Kubernetes API server for tests: `kube_emulator.py` (kmock with fidelity fixes) on 127.0.0.1 with a random
//! port, a kubeconfig pointing at it, and helpers to seed objects and read them back through kube-rs itself.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use riposte::execute::capability::kubernetes::{Cluster, ClusterConfig};
use riposte::execute::capability::Kubernetes;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// A running emulator; killed on drop.
pub struct KubeEmulator {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig whose current context is the emulator.
    pub kubeconfig: PathBuf,
    /// A client for seeding and reading state.
    pub client: Client,
    dir: tempfile::TempDir,
}

/// The Python with kmock: the checkout's `.venv` (made by scripts/setup), else `RIPOSTE_PYTHON` or python3.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("RIPOSTE_PYTHON") {
        return p.into();
    }
    let venv = super::root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

impl KubeEmulator {
    /// Starts an emulator and waits until it serves.
    pub async fn start() -> KubeEmulator {
        Self::start_denying(&[]).await
    }

    /// Starts an emulator whose SelfSubjectAccessReviews deny these "verb resource" pairs ("delete pods").
    pub async fn start_denying(denied: &[&str]) -> KubeEmulator {
        super::init();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
        let mut child = Command::new(python())
            .arg(super::root().join("tests/support/kube_emulator.py"))
            .env("KUBE_EMULATOR_DENY", denied.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot start python for the Kubernetes emulator; run scripts/setup");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(port) = line.trim().strip_prefix("listening on ") else {
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default();
            panic!("the Kubernetes emulator did not start (is kmock installed? run scripts/setup):\n{log}");
        };
        let url = format!("http://127.0.0.1:{port}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url)).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = Client::try_from(config).unwrap();
        KubeEmulator { child, url, kubeconfig, client, dir }
    }

    /// The real backend, configured from the emulator's kubeconfig as `--kubeconfig` would.
    pub fn backend(&self) -> Arc<dyn Kubernetes> {
        Arc::new(Cluster::new(ClusterConfig::Kubeconfig(self.kubeconfig.clone())))
    }

    /// The emulator's log (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// Adds a running pod on `node`, owned by `owner` (kind, name) if given.
    pub async fn add_pod(&self, namespace: &str, name: &str, node: &str, owner: Option<(&str, &str)>) -> Pod {
        let owners: Vec<_> = owner
            .iter()
            .map(|(kind, owner)| {
                json!({ "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": format!("uid-{owner}"), "controller": true })
            })
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "namespace": namespace, "labels": { "app": name }, "ownerReferences": owners },
            "spec": { "nodeName": node, "containers": [{ "name": "app", "image": "nginx" }] },
            "status": { "phase": "Running" },
        }))
        .unwrap();
        self.pods(namespace).create(&PostParams::default(), &pod).await.unwrap()
    }

    /// Adds a node with these taints (key, value, effect).
    pub async fn add_node(&self, name: &str, taints: &[(&str, &str, &str)]) -> Node {
        let taints: Vec<_> = taints.iter().map(|(k, v, e)| json!({ "key": k, "value": v, "effect": e })).collect();
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
            "spec": { "taints": taints },
        }))
        .unwrap();
        Api::<Node>::all(self.client.clone()).create(&PostParams::default(), &node).await.unwrap()
    }

    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods(namespace).get_opt(name).await.unwrap()
    }

    pub async fn node(&self, name: &str) -> Node {
        Api::<Node>::all(self.client.clone()).get(name).await.unwrap()
    }

    pub async fn policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        Api::<NetworkPolicy>::namespaced(self.client.clone(), namespace).get_opt(name).await.unwrap()
    }

    pub async fn policies(&self, namespace: &str) -> Vec<NetworkPolicy> {
        Api::<NetworkPolicy>::namespaced(self.client.clone(), namespace).list(&Default::default()).await.unwrap().items
    }

    pub async fn job(&self, namespace: &str, name: &str) -> Option<Job> {
        Api::<Job>::namespaced(self.client.clone(), namespace).get_opt(name).await.unwrap()
    }

    /// The node's taints as `key=value:effect`, in order.
    pub async fn taints(&self, node: &str) -> Vec<String> {
        let node = self.node(node).await;
        node.spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .map(|t| format!("{}={}:{}", t.key, t.value.clone().unwrap_or_default(), t.effect))
            .collect()
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {url}
contexts:
- name: emulator
  context:
    cluster: emulator
    user: tester
    namespace: default
current-context: emulator
users:
- name: tester
  user:
    token: emulator-token
"
    )
}
