//! Infrastructure tests of the catalog: the Kubernetes verbs against the API emulator (kmock with fidelity
//! fixes, `support/kube_emulator.py`), directly through the kube-rs backend and through the real Python
//! playbooks; Demisto and Phantom against local HTTP receivers; and `riposte call isolate` end to end.

use crate::support;

use riposte::execute::capability::http::{HttpClient, HttpConfig};
use riposte::execute::capability::kubernetes::objects::{ISOLATION_LABEL, ISOLATION_POLICY};
use riposte::execute::capability::recording::Recorder;
use riposte::execute::capability::{Backends, CaptureJob, Kubernetes, Taint};
use riposte::execute::runtime::{Runtime, RuntimeConfig};
use riposte::model::alert::Alert;
use riposte::model::execution::{Execution, Handler, Status};
use riposte::model::function::{Function, Settings};
use riposte::model::state_dir::StateDir;
use riposte::model::wit::CallError;
use riposte::ops::builder::Builder;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::kube::KubeEmulator;

/// A Falco alert about `namespace/pod`.
fn alert_about(namespace: &str, pod: &str) -> Alert {
    let raw = json!({
        "uuid": "5b0e6c1e-8a41-4c1e-9b7b-7d3c9a1f2e01",
        "output": format!("14:05:12.123456789: Warning File below a known binary directory opened for writing (user=root file_updated=/bin/evil command=touch /bin/evil k8s_ns={namespace} k8s_pod_name={pod})"),
        "priority": "Warning",
        "rule": "Write below binary dir",
        "time": "2026-03-02T14:05:12.123456789Z",
        "output_fields": {
            "container.id": "3ad8d1c2b4e5",
            "evt.time": 1772460312123456789u64,
            "k8s.ns.name": namespace,
            "k8s.pod.name": pod,
            "user.name": "root",
        },
        "source": "syscall",
        "tags": ["filesystem"],
        "hostname": "worker-1",
    });
    Alert::parse(raw.to_string().as_bytes()).unwrap()
}

/// Builds are serialized: the tests share one state directory.
static BUILDS: Mutex<()> = Mutex::new(());

/// Runs a catalog playbook once with these settings and backends.
async fn run_playbook(name: &str, settings: &[(&str, &str)], backends: Backends, alert: &Alert) -> Execution {
    let state = StateDir::new(Some(support::shared_state()));
    let builder = Builder::new(support::root().join("playbooks"), &state);
    let (_, manifest) = builder.manifest(name).unwrap();
    let given: Vec<(String, String)> = settings.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    let settings = Settings::resolve(&manifest, &given).unwrap();
    let (runtime, component) = tokio::task::block_in_place(|| {
        let built = {
            let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
            builder.build(name).unwrap()
        };
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: false }).unwrap();
        let component = runtime.load(&std::fs::read(&built.path).unwrap(), name).unwrap();
        (runtime, component)
    });
    let function = Function {
        name: name.into(),
        manifest,
        artifact: component.digest.clone(),
        settings,
        runs_on: None,
        policy: Default::default(),
    };
    runtime.function(component, &function, backends).handle(alert).await
}

fn with_kubernetes(kubernetes: Arc<dyn Kubernetes>) -> Backends {
    let r = Arc::new(Recorder::new());
    Backends { http: r.clone(), kubernetes, object_store: r }
}

fn with_http() -> Backends {
    let r = Arc::new(Recorder::new());
    let http = HttpClient::new(&HttpConfig::default()).unwrap();
    Backends { http: Arc::new(http), kubernetes: r.clone(), object_store: r }
}

fn rejected_reason(e: &CallError) -> &str {
    match e {
        CallError::Rejected(api) => &api.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------- backend

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_pod_and_reports_its_node_then_not_found() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-1", Some(("ReplicaSet", "web-6799"))).await;
    let backend = k.backend();
    assert_eq!(backend.delete_pod("prod", "web", Some(0), false).await.unwrap(), "node-1");
    assert!(k.pod("prod", "web").await.is_none(), "pod still there");
    let again = backend.delete_pod("prod", "web", None, false).await.unwrap_err();
    assert_eq!(rejected_reason(&again), "NotFound");
    let CallError::Rejected(api) = again else { unreachable!() };
    assert_eq!(api.code, 404);
    assert!(api.message.contains("\"web\" not found"), "{}", api.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemonset_pod_is_refused_unless_allowed() {
    let k = KubeEmulator::start().await;
    k.add_pod("kube-system", "falco-x2v9", "node-1", Some(("DaemonSet", "falco"))).await;
    let backend = k.backend();
    match backend.delete_pod("kube-system", "falco-x2v9", None, false).await {
        Err(CallError::Denied(m)) => {
            assert!(m.contains("DaemonSet falco") && m.contains("ALLOW_DAEMONSET_PODS=true"), "{m}")
        }
        other => panic!("expected denied, got {other:?}"),
    }
    assert!(k.pod("kube-system", "falco-x2v9").await.is_some(), "a refused pod must stay");
    backend.delete_pod("kube-system", "falco-x2v9", None, true).await.unwrap();
    assert!(k.pod("kube-system", "falco-x2v9").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn taint_keeps_existing_taints_and_is_idempotent() {
    let k = KubeEmulator::start().await;
    k.add_node("node-1", &[("dedicated", "gpu", "NoSchedule")]).await;
    k.add_pod("prod", "web", "node-1", None).await;
    let backend = k.backend();
    let taint = Taint { key: "falco/alert".into(), value: "true".into(), effect: "NoSchedule".into() };
    assert_eq!(backend.taint_node_of_pod("prod", "web", &taint).await.unwrap(), "node-1");
    assert_eq!(k.taints("node-1").await, ["dedicated=gpu:NoSchedule", "falco/alert=true:NoSchedule"]);
    backend.taint_node_of_pod("prod", "web", &taint).await.unwrap();
    assert_eq!(k.taints("node-1").await, ["dedicated=gpu:NoSchedule", "falco/alert=true:NoSchedule"]);
    let changed = Taint { value: "again".into(), ..taint };
    backend.taint_node_of_pod("prod", "web", &changed).await.unwrap();
    assert_eq!(k.taints("node-1").await, ["dedicated=gpu:NoSchedule", "falco/alert=again:NoSchedule"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cordon_marks_the_node_unschedulable() {
    let k = KubeEmulator::start().await;
    k.add_node("node-2", &[]).await;
    k.add_pod("prod", "web", "node-2", None).await;
    assert_eq!(k.backend().cordon_node_of_pod("prod", "web").await.unwrap(), "node-2");
    assert_eq!(k.node("node-2").await.spec.unwrap().unschedulable, Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn label_merges_with_the_pods_labels() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-1", None).await;
    k.backend().label_pod("prod", "web", &[("quarantine".into(), "yes".into())]).await.unwrap();
    let labels = k.pod("prod", "web").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(labels.get("quarantine").map(String::as_str), Some("yes"));
    let gone = k.backend().label_pod("prod", "nope", &[("a".into(), "b".into())]).await.unwrap_err();
    assert_eq!(rejected_reason(&gone), "NotFound");
}

/// The isolation policy: the label selector and both directions, no rule.
async fn assert_isolated(k: &KubeEmulator, namespace: &str, pod: &str) {
    let policy = k.policy(namespace, ISOLATION_POLICY).await.expect("no isolation NetworkPolicy");
    let spec = policy.spec.unwrap();
    let selector = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(selector.get(ISOLATION_LABEL).map(String::as_str), Some("true"));
    assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    assert!(spec.ingress.unwrap_or_default().is_empty() && spec.egress.unwrap_or_default().is_empty());
    let labels = k.pod(namespace, pod).await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get(ISOLATION_LABEL).map(String::as_str), Some("true"), "pod not labelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn isolate_creates_the_policy_once_and_reuses_it() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-1", None).await;
    k.add_pod("prod", "db", "node-1", None).await;
    let backend = k.backend();
    assert_eq!(backend.isolate_pod("prod", "web").await.unwrap(), ISOLATION_POLICY);
    assert_isolated(&k, "prod", "web").await;
    let uid = k.policy("prod", ISOLATION_POLICY).await.unwrap().metadata.uid;
    backend.isolate_pod("prod", "db").await.unwrap();
    assert_isolated(&k, "prod", "db").await;
    assert_eq!(k.policies("prod").await.len(), 1, "the policy is reused, not duplicated");
    assert_eq!(k.policy("prod", ISOLATION_POLICY).await.unwrap().metadata.uid, uid);
    // Only isolated pods are selected: the emulator filters by label as a real server does.
    let isolated = k
        .pods("prod")
        .list(&kube::api::ListParams::default().labels(&format!("{ISOLATION_LABEL}=true")))
        .await
        .unwrap();
    assert_eq!(isolated.items.len(), 2);
    let missing = backend.isolate_pod("prod", "gone").await.unwrap_err();
    assert_eq!(rejected_reason(&missing), "NotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_job_runs_on_the_pods_node_with_its_environment() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-3", None).await;
    let job = CaptureJob {
        namespace: "prod".into(),
        pod: "web".into(),
        job_name: "sysdig-web-1772460312123456789".into(),
        duration_seconds: 30,
        s3_bucket: "captures".into(),
        env: vec![("AWS_S3_BUCKET".into(), "captures".into()), ("AWS_ACCESS_KEY_ID".into(), "AKIA".into())],
    };
    let backend = k.backend();
    assert_eq!(backend.create_capture_job(&job).await.unwrap(), job.job_name);
    let created = k.job("prod", &job.job_name).await.expect("no Job");
    let pod = created.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("node-3"));
    let env: Vec<(String, String)> =
        pod.containers[0].env.clone().unwrap().into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect();
    assert!(env.contains(&("AWS_ACCESS_KEY_ID".into(), "AKIA".into())), "{env:?}");
    assert!(env.contains(&("CAPTURE_DURATION".into(), "30".into())), "{env:?}");
    let twice = backend.create_capture_job(&job).await.unwrap_err();
    assert_eq!(rejected_reason(&twice), "AlreadyExists");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_cluster_is_a_retryable_failure_and_no_cluster_is_denied() {
    let k = KubeEmulator::start().await;
    let backend = k.backend();
    assert!(backend.delete_pod("prod", "web", None, false).await.is_err(), "no such pod yet");
    drop(k); // the server is gone: a network error, worth a retry
    match backend.delete_pod("prod", "web", None, false).await {
        Err(CallError::Failed(m)) => assert!(m.contains("Kubernetes API"), "{m}"),
        other => panic!("expected failed, got {other:?}"),
    }
    let none = riposte::execute::capability::kubernetes::NoCluster;
    assert!(matches!(none.isolate_pod("a", "b").await, Err(CallError::Denied(_))));
}

// ------------------------------------------------------------------------------------------------ playbooks

#[tokio::test(flavor = "multi_thread")]
async fn the_delete_playbook_deletes_the_pod_and_reports_not_found_after() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-1", None).await;
    let exec = run_playbook("delete", &[], with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}\n{}", k.log());
    assert_eq!(exec.message, "Deleted pod prod/web (node node-1)");
    assert!(k.pod("prod", "web").await.is_none());
    let exec = run_playbook("delete", &[], with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
    assert_eq!(exec.status, Status::Rejected, "{exec:?}");
    assert_eq!(exec.reason.as_deref(), Some("NotFound"));
    assert!(!exec.status.retryable());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delete_playbook_honours_allow_daemonset_pods() {
    let k = KubeEmulator::start().await;
    k.add_pod("monitoring", "agent-1", "node-1", Some(("DaemonSet", "agent"))).await;
    let alert = alert_about("monitoring", "agent-1");
    let exec = run_playbook("delete", &[], with_kubernetes(k.backend()), &alert).await;
    assert_eq!(exec.status, Status::Denied, "{exec:?}");
    assert!(exec.message.contains("ALLOW_DAEMONSET_PODS"), "{}", exec.message);
    assert!(k.pod("monitoring", "agent-1").await.is_some());
    let exec = run_playbook("delete", &[("ALLOW_DAEMONSET_PODS", "true")], with_kubernetes(k.backend()), &alert).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    assert!(k.pod("monitoring", "agent-1").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_taint_playbook_taints_the_node_beside_its_taints() {
    let k = KubeEmulator::start().await;
    k.add_node("node-1", &[("dedicated", "gpu", "NoSchedule")]).await;
    k.add_pod("prod", "web", "node-1", None).await;
    for _ in 0..2 {
        let exec = run_playbook("taint", &[], with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Ok, "{exec:?}");
        assert_eq!(exec.message, "Tainted node node-1 with falco/alert=true:NoSchedule");
    }
    assert_eq!(k.taints("node-1").await, ["dedicated=gpu:NoSchedule", "falco/alert=true:NoSchedule"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cordon_playbook_cordons_the_pods_node_and_the_label_playbook_merges_its_labels() {
    let k = KubeEmulator::start().await;
    k.add_node("node-2", &[]).await;
    k.add_pod("prod", "web", "node-2", None).await;
    for _ in 0..2 {
        let exec = run_playbook("cordon", &[], with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Ok, "{exec:?}");
        assert_eq!(exec.message, "Cordoned node node-2 of pod prod/web");
    }
    assert_eq!(k.node("node-2").await.spec.unwrap().unschedulable, Some(true));

    let settings = [("LABELS", "security.example.com/quarantine=yes,team=sec-ops")];
    let exec = run_playbook("label", &settings, with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let labels = k.pod("prod", "web").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("web"), "its own labels are kept");
    assert_eq!(labels.get("security.example.com/quarantine").map(String::as_str), Some("yes"));
    assert_eq!(labels.get("team").map(String::as_str), Some("sec-ops"));
    let bad = [("LABELS", "team=sec ops")];
    let exec = run_playbook("label", &bad, with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
    assert_eq!(exec.status, Status::MissingSetting, "{exec:?}");
    let labels = k.pod("prod", "web").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("sec-ops"), "a bad LABELS changes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_isolate_playbook_cuts_the_pod_off() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-1", None).await;
    for _ in 0..2 {
        let exec = run_playbook("isolate", &[], with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Ok, "{exec:?}");
        assert_eq!(exec.message, format!("Isolated pod prod/web with NetworkPolicy {ISOLATION_POLICY}"));
    }
    assert_isolated(&k, "prod", "web").await;
    assert_eq!(k.policies("prod").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_capture_playbook_starts_the_job_on_the_node() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-3", None).await;
    let settings = [
        ("AWS_S3_BUCKET", "captures"),
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ("CAPTURE_DURATION", "15"),
    ];
    let exec = run_playbook("capture", &settings, with_kubernetes(k.backend()), &alert_about("prod", "web")).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let name = "sysdig-web-1772460312123456789";
    let job = k.job("prod", name).await.expect("no capture Job");
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("node-3"));
    let env: Vec<(String, String)> =
        pod.containers[0].env.clone().unwrap().into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect();
    for expected in [
        ("AWS_S3_BUCKET", "captures"),
        ("CAPTURE_DURATION", "15"),
        ("CAPTURE_FILE_NAME", name),
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
    ] {
        assert!(env.contains(&(expected.0.into(), expected.1.into())), "{expected:?} not in {env:?}");
    }
    assert!(!serde_json::to_string(&exec).unwrap().contains("s3cr3t"), "a secret leaked into the result");
}

// ------------------------------------------------------------------------------------- Demisto and Phantom

mod receivers {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn body(server_requests: &[wiremock::Request]) -> Value {
        assert_eq!(server_requests.len(), 1, "one request expected");
        serde_json::from_slice(&server_requests[0].body).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn demisto_creates_an_incident_with_the_key_as_authorization() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/incident"))
            .and(header("authorization", "the-key"))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "7" })))
            .mount(&server)
            .await;
        let settings = [("DEMISTO_API_KEY", "the-key"), ("DEMISTO_BASE_URL", &server.uri() as &str)];
        let exec = run_playbook("demisto", &settings, with_http(), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Ok, "{exec:?}");
        assert_eq!(exec.message, "Created Demisto incident 7 \"Write below binary dir\"");
        let sent = body(&server.received_requests().await.unwrap());
        assert_eq!(sent["type"], "Policy Violation");
        assert_eq!(sent["name"], "Write below binary dir");
        assert_eq!(sent["severity"], 2);
        assert!(sent["details"].as_str().unwrap().starts_with("File below a known binary directory"), "{sent}");
        let labels = sent["labels"].as_array().unwrap();
        assert!(labels.contains(&json!({ "type": "k8s.pod.name", "value": "web" })), "{labels:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn demisto_anything_but_created_fails() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
        let settings = [("DEMISTO_API_KEY", "k"), ("DEMISTO_BASE_URL", &server.uri() as &str)];
        let exec = run_playbook("demisto", &settings, with_http(), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Failed, "a 5xx is retried: {exec:?}");
        let refusing = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(401)).mount(&refusing).await;
        let settings = [("DEMISTO_API_KEY", "k"), ("DEMISTO_BASE_URL", &refusing.uri() as &str)];
        let exec = run_playbook("demisto", &settings, with_http(), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Rejected, "a 4xx is not retried: {exec:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn phantom_creates_a_container_with_basic_auth() {
        let server = MockServer::start().await;
        // admin:s3cret
        Mock::given(method("POST"))
            .and(path("/rest/container"))
            .and(header("authorization", "Basic YWRtaW46czNjcmV0"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": true, "id": 12 })))
            .mount(&server)
            .await;
        let settings =
            [("PHANTOM_USER", "admin"), ("PHANTOM_PASSWORD", "s3cret"), ("PHANTOM_BASE_URL", &server.uri() as &str)];
        let exec = run_playbook("phantom", &settings, with_http(), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Ok, "{exec:?}");
        assert_eq!(exec.message, "Created Phantom container 12 \"Write below binary dir\"");
        let sent = body(&server.received_requests().await.unwrap());
        assert_eq!(sent["name"], "Write below binary dir");
        assert_eq!(sent["severity"], "medium");
        assert_eq!(sent["label"], "events");
        assert_eq!(sent["status"], "new");
        assert_eq!(sent["data"]["k8s.pod.name"], "web");
        assert!(!serde_json::to_string(&exec).unwrap().contains("s3cret"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn phantom_without_success_is_rejected_with_its_message() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "failed": true, "message": "bad label" })))
            .mount(&server)
            .await;
        let settings = [("PHANTOM_USER", "u"), ("PHANTOM_PASSWORD", "p"), ("PHANTOM_BASE_URL", &server.uri() as &str)];
        let exec = run_playbook("phantom", &settings, with_http(), &alert_about("prod", "web")).await;
        assert_eq!(exec.status, Status::Rejected, "{exec:?}");
        assert!(exec.message.contains("bad label"), "{}", exec.message);
    }
}

// -------------------------------------------------------------------------------------------- end to end

#[tokio::test(flavor = "multi_thread")]
async fn riposte_call_isolate_isolates_the_pod_in_the_emulator() {
    let k = KubeEmulator::start().await;
    k.add_pod("prod", "web", "node-1", None).await;
    let dir = tempfile::tempdir().unwrap();
    let alert = dir.path().join("alert.json");
    std::fs::write(&alert, alert_about("prod", "web").raw).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_riposte"))
        .args(["--state-dir", support::shared_state().to_str().unwrap()])
        .args(["call", "isolate", "--alert", alert.to_str().unwrap(), "--kubeconfig", k.kubeconfig.to_str().unwrap()])
        .current_dir(support::root())
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "riposte call failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Isolated pod prod/web with NetworkPolicy riposte-isolate"), "{stdout}");
    assert_isolated(&k, "prod", "web").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn riposte_call_with_a_broken_kubeconfig_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("kubeconfig");
    std::fs::write(&broken, "this: [is not a kubeconfig").unwrap();
    let alert = dir.path().join("alert.json");
    std::fs::write(&alert, alert_about("prod", "web").raw).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_riposte"))
        .args(["--state-dir", support::shared_state().to_str().unwrap()])
        .args(["call", "isolate", "--alert", alert.to_str().unwrap(), "--kubeconfig", broken.to_str().unwrap()])
        .current_dir(support::root())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot use kubeconfig") && stderr.contains("--kubeconfig"), "{stderr}");
}

// ------------------------------------------------------------------------------------------------ VERIFY_SSL

/// A one-request HTTPS receiver with a self-signed certificate (openssl + Python's ssl): answers 201 and
/// prints what it received as JSON.
struct TlsReceiver {
    child: std::process::Child,
    url: String,
    lines: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

const TLS_RECEIVER: &str = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(json.dumps({"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()}), flush=True)
        reply = b'{"id": "tls-1"}'
        self.send_response(201); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply))); self.end_headers(); self.wfile.write(reply)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = c.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

impl TlsReceiver {
    fn start() -> TlsReceiver {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is needed for the VERIFY_SSL tests");
        assert!(made.success());
        let mut child = std::process::Command::new("python3")
            .args(["-c", TLS_RECEIVER])
            .arg(&cert)
            .arg(&key)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut port).unwrap();
        // Keep reading in the background so the requests can be collected.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = format!("https://127.0.0.1:{}", port.trim());
        TlsReceiver { child, url, lines: rx, _dir: dir }
    }

    /// What arrived so far, reading until the receiver has been quiet for half a second.
    fn received(&self) -> Vec<Value> {
        std::iter::from_fn(|| self.lines.recv_timeout(std::time::Duration::from_millis(500)).ok())
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    }

    /// The first request, waiting for it up to a deadline, then whatever else arrived.
    fn received_at_least_one(&self) -> Vec<Value> {
        let first = self.lines.recv_timeout(std::time::Duration::from_secs(60)).expect("a request within 60 s");
        let mut got = vec![serde_json::from_str(&first).unwrap()];
        got.extend(self.received());
        got
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_ssl_decides_whether_a_self_signed_server_is_trusted() {
    let server = TlsReceiver::start();
    let alert = alert_about("prod", "web");
    let checked = [("DEMISTO_API_KEY", "k"), ("DEMISTO_BASE_URL", server.url.as_str())];
    let exec = run_playbook("demisto", &checked, with_http(), &alert).await;
    assert_eq!(exec.status, Status::Failed, "a self-signed certificate must fail with VERIFY_SSL=true: {exec:?}");
    assert!(server.received().is_empty(), "no request may reach an untrusted server");

    let unchecked = [("DEMISTO_API_KEY", "k"), ("DEMISTO_BASE_URL", server.url.as_str()), ("VERIFY_SSL", "false")];
    let exec = run_playbook("demisto", &unchecked, with_http(), &alert).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let got = server.received_at_least_one();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["path"], "/incident");
    assert_eq!(got[0]["headers"]["authorization"], "k");
    let body: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "Policy Violation");

    let phantom = [("PHANTOM_USER", "u"), ("PHANTOM_PASSWORD", "p"), ("PHANTOM_BASE_URL", server.url.as_str())];
    let exec = run_playbook("phantom", &phantom, with_http(), &alert).await;
    assert_eq!(exec.status, Status::Failed, "{exec:?}");
}
