//! The Kubernetes objects and patches the verbs send, built without a cluster so they can be tested alone.

use crate::execute::capability::{CaptureJob, Taint};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

/// The label `isolate-pod` puts on a pod; the NetworkPolicy selects it.
pub const ISOLATION_LABEL: &str = "riposte.falco.org/isolated";
/// The NetworkPolicy `isolate-pod` creates (or reuses) in the pod's namespace.
pub const ISOLATION_POLICY: &str = "riposte-isolate";
/// The image of the capture Job, as in the original capture playbook.
pub const CAPTURE_IMAGE: &str = "sysdig/capturer";

/// The DaemonSet that owns a pod, if any.
pub fn daemonset_owner(pod: &Pod) -> Option<&str> {
    pod.metadata.owner_references.iter().flatten().find(|o| o.kind == "DaemonSet").map(|o| o.name.as_str())
}

/// The node's taints with `taint` added, or `None` when it is already there (nothing to patch). A taint with
/// the same key and effect is replaced, as `kubectl taint --overwrite` does; every other taint is kept.
pub fn with_taint(node: &Node, taint: &Taint) -> Option<Vec<k8s_openapi::api::core::v1::Taint>> {
    let existing = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let value = Some(taint.value.clone()).filter(|v| !v.is_empty());
    if existing.iter().any(|t| t.key == taint.key && t.effect == taint.effect && t.value == value) {
        return None;
    }
    let mut taints: Vec<_> =
        existing.into_iter().filter(|t| !(t.key == taint.key && t.effect == taint.effect)).collect();
    taints.push(k8s_openapi::api::core::v1::Taint {
        key: taint.key.clone(),
        value,
        effect: taint.effect.clone(),
        time_added: None,
    });
    Some(taints)
}

/// A merge patch setting the node's taints, conditional on the version read (a concurrent change is a Conflict).
pub fn taints_patch(node: &Node, taints: &[k8s_openapi::api::core::v1::Taint]) -> Value {
    json!({
        "metadata": { "resourceVersion": node.metadata.resource_version },
        "spec": { "taints": taints },
    })
}

/// A merge patch adding labels.
pub fn labels_patch(labels: &[(String, String)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({ "metadata": { "labels": labels } })
}

/// The deny-all NetworkPolicy's spec: every pod with the isolation label, both directions, no rule allowing
/// anything.
pub fn isolation_spec() -> Value {
    json!({
        "podSelector": { "matchLabels": { ISOLATION_LABEL: "true" } },
        "policyTypes": ["Ingress", "Egress"],
    })
}

/// The deny-all NetworkPolicy of a namespace.
pub fn isolation_policy(namespace: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": ISOLATION_POLICY,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/managed-by": "riposte" },
        },
        "spec": isolation_spec(),
    })
}

/// Whether an existing policy still denies everything for isolated pods.
pub fn is_isolating(spec: &Value) -> bool {
    let ingress_rules = spec.get("ingress").and_then(Value::as_array).is_some_and(|r| !r.is_empty());
    let egress_rules = spec.get("egress").and_then(Value::as_array).is_some_and(|r| !r.is_empty());
    spec.get("podSelector") == isolation_spec().get("podSelector")
        && spec.get("policyTypes") == isolation_spec().get("policyTypes")
        && !ingress_rules
        && !egress_rules
}

/// A merge patch putting a drifted policy back to deny-all (explicit nulls remove any rules).
pub fn isolation_repair() -> Value {
    let mut spec = isolation_spec();
    spec["ingress"] = Value::Null;
    spec["egress"] = Value::Null;
    json!({ "spec": spec })
}

/// The capture Job: the original playbook's privileged `sysdig/capturer` pod with the host's filesystems
/// mounted, pinned to `node` and never restarted, with the playbook's environment.
pub fn capture_job(job: &CaptureJob, node: &str) -> Value {
    let mut env: Vec<(String, String)> = job.env.clone();
    for (key, value) in
        [("AWS_S3_BUCKET", job.s3_bucket.clone()), ("CAPTURE_DURATION", job.duration_seconds.to_string())]
    {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key.to_owned(), value));
        }
    }
    let env: Vec<Value> = env.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
    let host = |name: &str, path: &str| json!({ "name": name, "hostPath": { "path": path } });
    let mount =
        |name: &str, path: &str, read_only: bool| json!({ "name": name, "mountPath": path, "readOnly": read_only });
    let labels = json!({
        "app.kubernetes.io/managed-by": "riposte",
        "app.kubernetes.io/name": "sysdig-capture",
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": job.job_name, "namespace": job.namespace, "labels": labels },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "name": job.job_name, "labels": labels },
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "capturer",
                        "image": CAPTURE_IMAGE,
                        "imagePullPolicy": "Always",
                        "securityContext": { "privileged": true },
                        "env": env,
                        "volumeMounts": [
                            mount("docker-socket", "/host/var/run/docker.sock", false),
                            mount("dev-fs", "/host/dev", false),
                            mount("proc-fs", "/host/proc", true),
                            mount("boot-fs", "/host/boot", true),
                            mount("lib-modules", "/host/lib/modules", true),
                            mount("usr-fs", "/host/usr", true),
                            mount("dshm", "/dev/shm", false),
                        ],
                    }],
                    "volumes": [
                        { "name": "dshm", "emptyDir": { "medium": "Memory" } },
                        host("docker-socket", "/var/run/docker.sock"),
                        host("dev-fs", "/dev"),
                        host("proc-fs", "/proc"),
                        host("boot-fs", "/boot"),
                        host("lib-modules", "/lib/modules"),
                        host("usr-fs", "/usr"),
                    ],
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(taints: &[(&str, &str, &str)]) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, v, e)| k8s_openapi::api::core::v1::Taint {
                            key: (*k).into(),
                            value: Some((*v).into()),
                            effect: (*e).into(),
                            time_added: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(k: &str, v: &str, e: &str) -> Taint {
        Taint { key: k.into(), value: v.into(), effect: e.into() }
    }

    #[test]
    fn a_taint_is_added_beside_the_others_and_replaces_only_its_own_key_and_effect() {
        let n = node(&[
            ("dedicated", "gpu", "NoSchedule"),
            ("falco/alert", "old", "NoSchedule"),
            ("falco/alert", "x", "NoExecute"),
        ]);
        let t = with_taint(&n, &taint("falco/alert", "true", "NoSchedule")).unwrap();
        let shown: Vec<_> = t.iter().map(|t| format!("{}={}:{}", t.key, t.value.clone().unwrap(), t.effect)).collect();
        assert_eq!(shown, ["dedicated=gpu:NoSchedule", "falco/alert=x:NoExecute", "falco/alert=true:NoSchedule"]);
    }

    #[test]
    fn an_existing_identical_taint_needs_no_patch() {
        let n = node(&[("falco/alert", "true", "NoSchedule")]);
        assert!(with_taint(&n, &taint("falco/alert", "true", "NoSchedule")).is_none());
        assert!(with_taint(&Node::default(), &taint("a", "b", "NoExecute")).is_some_and(|t| t.len() == 1));
    }

    #[test]
    fn the_isolation_policy_denies_everything_and_drift_is_noticed() {
        let p = isolation_policy("prod");
        assert!(is_isolating(&p["spec"]));
        assert_eq!(p["spec"]["podSelector"]["matchLabels"][ISOLATION_LABEL], "true");
        let mut open = p["spec"].clone();
        open["ingress"] = json!([{}]);
        assert!(!is_isolating(&open), "an allow-all ingress rule is not isolation");
        assert!(!is_isolating(&json!({ "podSelector": {}, "policyTypes": ["Ingress"] })));
    }

    #[test]
    fn the_capture_job_runs_on_the_node_with_the_playbooks_environment() {
        let job = CaptureJob {
            namespace: "prod".into(),
            pod: "web".into(),
            job_name: "sysdig-web-1".into(),
            duration_seconds: 30,
            s3_bucket: "b".into(),
            env: vec![("AWS_S3_BUCKET".into(), "b".into()), ("AWS_ACCESS_KEY_ID".into(), "id".into())],
        };
        let j = capture_job(&job, "node-7");
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(spec["nodeName"], "node-7");
        assert_eq!(spec["restartPolicy"], "Never");
        let env = &spec["containers"][0]["env"];
        assert_eq!(env.as_array().unwrap().len(), 3, "{env}");
        assert_eq!(env[2], json!({ "name": "CAPTURE_DURATION", "value": "30" }));
        assert_eq!(spec["containers"][0]["securityContext"]["privileged"], true);
        let _: k8s_openapi::api::batch::v1::Job = serde_json::from_value(j).unwrap();
    }
}
