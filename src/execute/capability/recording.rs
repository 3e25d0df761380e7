//! The recording backend of every capability, for specs and tests: each call is recorded as JSON (keys as
//! `specs/README.md` lists them) and answered from canned responses, or with a default answer.

use super::{CallResult, CaptureJob, Http, HttpRequest, HttpResponse, Kubernetes, ObjectStore, Taint};
use crate::model::limits::{DRY_RUN_CALL_BYTES, MAX_DRY_RUN_CALLS};
use crate::model::manifest::DryRunSection;
use crate::model::wit::CallError;
use crate::secrets::redact::Secrets;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A canned answer to one host call.
#[derive(Debug, Clone)]
pub enum Canned {
    /// An HTTP reply.
    Http { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// The ok value of a non-HTTP call (a string for most verbs).
    Ok(Value),
    /// An error.
    Err(CallError),
}

/// Records calls and answers them.
pub struct Recorder {
    calls: Mutex<Vec<Value>>,
    canned: Mutex<HashMap<String, VecDeque<Canned>>>,
    /// For a dry run: the secret values to redact, and the calls are bounded (see [`recorded`]).
    dry_run: Option<Secrets>,
    /// Calls a dry run made beyond `MAX_DRY_RUN_CALLS` (answered, not kept).
    omitted: AtomicUsize,
    /// The status of an HTTP call with no canned answer: 200, or a dry-run function's `[dry_run] http_status`.
    http_status: u16,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            calls: Mutex::default(),
            canned: Mutex::default(),
            dry_run: None,
            omitted: AtomicUsize::new(0),
            http_status: DryRunSection::default().http_status,
        }
    }
}

impl Recorder {
    /// A recorder with no canned answers: every call gets its default.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Queues an answer for the next call named `call` (e.g. "http.send", "kubernetes.delete-pod").
    pub fn respond(&self, call: &str, answer: Canned) {
        self.canned.lock().unwrap().entry(call.to_owned()).or_default().push_back(answer);
    }

    /// The calls recorded so far, in order.
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: &str, mut fields: Map<String, Value>) -> Option<Canned> {
        fields.insert("call".into(), call.into());
        let mut calls = self.calls.lock().unwrap();
        match &self.dry_run {
            None => calls.push(Value::Object(fields)),
            Some(_) if calls.len() >= MAX_DRY_RUN_CALLS => {
                self.omitted.fetch_add(1, Ordering::Relaxed);
            }
            Some(secrets) => calls.push(bound_call(secrets.redact_json(Value::Object(fields)))),
        }
        drop(calls);
        self.canned.lock().unwrap().get_mut(call).and_then(VecDeque::pop_front)
    }

    fn answer_string(&self, call: &str, fields: Value, default: &str) -> CallResult<String> {
        match self.record(call, into_map(fields)) {
            None => Ok(default.to_owned()),
            Some(Canned::Ok(Value::String(s))) => Ok(s),
            Some(Canned::Ok(Value::Null)) => Ok(default.to_owned()),
            Some(Canned::Ok(other)) => Ok(other.to_string()),
            Some(Canned::Err(e)) => Err(e),
            Some(Canned::Http { .. }) => Err(CallError::Failed(format!("spec gives an HTTP reply to {call}"))),
        }
    }
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn pairs(items: &[(String, String)]) -> Value {
    Value::Object(items.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// A request's headers as recorded, names lower-cased. A dry run's calls are stored in its result: there every
/// credential header shows `***` ([`crate::secrets::redact::shown_header`]), whatever its value (base64 of a user and a
/// password contains no setting as it is). A spec's calls are compared with what the spec expects, whole.
fn request_headers(items: &[(String, String)], dry_run: bool) -> Value {
    let shown = |k: &str, v: &str| if dry_run { crate::secrets::redact::shown_header(k, v) } else { v.to_owned() };
    Value::Object(items.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(shown(k, v)))).collect())
}

#[async_trait::async_trait]
impl Http for Recorder {
    async fn send(&self, request: HttpRequest) -> CallResult<HttpResponse> {
        let mut fields = Map::new();
        fields.insert("method".into(), request.method.clone().into());
        fields.insert("url".into(), request.url.clone().into());
        fields.insert("headers".into(), request_headers(&request.headers, self.dry_run.is_some()));
        fields.insert("verify_tls".into(), request.verify_tls.into());
        if let Some(body) = &request.body {
            let text = String::from_utf8_lossy(body).into_owned();
            // A dry run keeps no parsed copy of a body it would cut anyway.
            let small = self.dry_run.is_none() || text.len() <= DRY_RUN_CALL_BYTES;
            if let Some(parsed) = small.then(|| serde_json::from_str::<Value>(&text).ok()).flatten() {
                fields.insert("json".into(), parsed);
            }
            fields.insert("body".into(), text.into());
        }
        match self.record("http.send", fields) {
            None => Ok(HttpResponse { status: self.http_status, headers: Vec::new(), body: Vec::new() }),
            Some(Canned::Http { status, headers, body }) => Ok(HttpResponse { status, headers, body }),
            Some(Canned::Err(e)) => Err(e),
            Some(Canned::Ok(v)) => {
                Ok(HttpResponse { status: 200, headers: Vec::new(), body: v.to_string().into_bytes() })
            }
        }
    }
}

#[async_trait::async_trait]
impl Kubernetes for Recorder {
    async fn delete_pod(&self, namespace: &str, name: &str, grace: Option<u32>, _: bool) -> CallResult<String> {
        let f = json!({"namespace": namespace, "name": name, "grace_period_seconds": grace});
        self.answer_string("kubernetes.delete-pod", f, "worker-1")
    }
    async fn label_pod(&self, namespace: &str, name: &str, labels: &[(String, String)]) -> CallResult<()> {
        let f = json!({"namespace": namespace, "name": name, "labels": pairs(labels)});
        self.answer_string("kubernetes.label-pod", f, "").map(|_| ())
    }
    async fn taint_node_of_pod(&self, namespace: &str, pod: &str, taint: &Taint) -> CallResult<String> {
        let f = json!({"namespace": namespace, "pod": pod,
            "taint": {"key": taint.key, "value": taint.value, "effect": taint.effect}});
        self.answer_string("kubernetes.taint-node-of-pod", f, "worker-1")
    }
    async fn cordon_node_of_pod(&self, namespace: &str, pod: &str) -> CallResult<String> {
        self.answer_string("kubernetes.cordon-node-of-pod", json!({"namespace": namespace, "pod": pod}), "worker-1")
    }
    async fn isolate_pod(&self, namespace: &str, pod: &str) -> CallResult<String> {
        self.answer_string("kubernetes.isolate-pod", json!({"namespace": namespace, "pod": pod}), "riposte-isolate")
    }
    async fn create_capture_job(&self, job: &CaptureJob) -> CallResult<String> {
        let f = json!({"namespace": job.namespace, "pod": job.pod, "job_name": job.job_name,
            "duration_seconds": job.duration_seconds, "s3_bucket": job.s3_bucket, "env": pairs(&job.env)});
        self.answer_string("kubernetes.create-capture-job", f, &job.job_name.clone())
    }
}

#[async_trait::async_trait]
impl ObjectStore for Recorder {
    async fn put(&self, function: &str, key: &str, data: Vec<u8>, content_type: Option<String>) -> CallResult<String> {
        let f = json!({"function": function, "key": key, "content_type": content_type, "size": data.len()});
        self.answer_string("object-store.put", f, key)
    }
}

tokio::task_local! {
    /// The recorder of the dry-run execution being polled (see [`recorded`]).
    static DRY_RUN: Arc<Recorder>;
}

/// Runs `f` with every call made to [`Scoped`] backends recorded, and returns its output with the calls.
/// A dry-run function's backends are [`Scoped`]: each execution records into its own recorder, while the
/// function keeps one pool of warm instances. The calls are what a result carries, so they are bounded as
/// they are recorded: credential headers masked and `secrets` (setting values) replaced by `***` first, then
/// at most `MAX_DRY_RUN_CALLS` calls (a last entry counts the others) of at most `DRY_RUN_CALL_BYTES` each.
/// Each HTTP call is answered with the function's declared success (`answers`, its manifest's `[dry_run]`).
pub async fn recorded<F: std::future::Future>(
    secrets: Secrets,
    answers: DryRunSection,
    f: F,
) -> (F::Output, Vec<Value>) {
    let recorder =
        Arc::new(Recorder { dry_run: Some(secrets), http_status: answers.http_status, ..Recorder::default() });
    let out = DRY_RUN.scope(recorder.clone(), f).await;
    let mut calls = recorder.calls();
    let omitted = recorder.omitted.load(Ordering::Relaxed);
    if omitted > 0 {
        calls.push(json!({"call": "more", "omitted": omitted}));
    }
    (out, calls)
}

/// A recorded call of at most `DRY_RUN_CALL_BYTES` as JSON: a larger one loses its parsed body and has its
/// strings cut; if that is not enough, only its name and size are kept.
fn bound_call(call: Value) -> Value {
    let size = |v: &Value| v.to_string().len();
    if size(&call) <= DRY_RUN_CALL_BYTES {
        return call;
    }
    let bytes = size(&call);
    let mut cut = cut_strings(call, DRY_RUN_CALL_BYTES / 8);
    if let Value::Object(m) = &mut cut {
        m.remove("json");
        m.insert("cut_from_bytes".into(), bytes.into());
    }
    if size(&cut) <= DRY_RUN_CALL_BYTES {
        return cut;
    }
    json!({"call": cut["call"].clone(), "cut_from_bytes": bytes})
}

fn cut_strings(value: Value, max: usize) -> Value {
    match value {
        Value::String(s) if s.len() > max => {
            let end = (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            Value::String(format!("{}…", &s[..end]))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| cut_strings(v, max)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, cut_strings(v, max))).collect()),
        other => other,
    }
}

/// Backends that record into the current [`recorded`] scope and answer each call with the recording
/// backend's plausible success; outside a scope every call fails (it never reaches the world).
pub struct Scoped;

impl Scoped {
    /// Every capability served by a scoped recorder.
    pub fn backends() -> super::Backends {
        let s = Arc::new(Scoped);
        super::Backends { http: s.clone(), kubernetes: s.clone(), object_store: s }
    }
}

fn current() -> CallResult<Arc<Recorder>> {
    DRY_RUN.try_with(Arc::clone).map_err(|_| CallError::Failed("dry run: no recording in scope".into()))
}

#[async_trait::async_trait]
impl Http for Scoped {
    async fn send(&self, request: HttpRequest) -> CallResult<HttpResponse> {
        current()?.send(request).await
    }
}

#[async_trait::async_trait]
impl Kubernetes for Scoped {
    async fn delete_pod(&self, namespace: &str, name: &str, grace: Option<u32>, allow: bool) -> CallResult<String> {
        current()?.delete_pod(namespace, name, grace, allow).await
    }
    async fn label_pod(&self, namespace: &str, name: &str, labels: &[(String, String)]) -> CallResult<()> {
        current()?.label_pod(namespace, name, labels).await
    }
    async fn taint_node_of_pod(&self, namespace: &str, pod: &str, taint: &Taint) -> CallResult<String> {
        current()?.taint_node_of_pod(namespace, pod, taint).await
    }
    async fn cordon_node_of_pod(&self, namespace: &str, pod: &str) -> CallResult<String> {
        current()?.cordon_node_of_pod(namespace, pod).await
    }
    async fn isolate_pod(&self, namespace: &str, pod: &str) -> CallResult<String> {
        current()?.isolate_pod(namespace, pod).await
    }
    async fn create_capture_job(&self, job: &CaptureJob) -> CallResult<String> {
        current()?.create_capture_job(job).await
    }
}

#[async_trait::async_trait]
impl ObjectStore for Scoped {
    async fn put(&self, function: &str, key: &str, data: Vec<u8>, content_type: Option<String>) -> CallResult<String> {
        current()?.put(function, key, data, content_type).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(url: &str, body: Vec<u8>) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("Authorization".into(), "Bearer SECRET-TOKEN".into())],
            body: Some(body),
            verify_tls: true,
        }
    }

    #[tokio::test]
    async fn a_dry_runs_calls_are_redacted_and_bounded() {
        let secrets = Secrets::new(["SECRET-TOKEN", "hooks/T0/SECRET"]);
        let backends = Scoped::backends();
        let ((), calls) = recorded(secrets, DryRunSection::default(), async {
            let small = br#"{"text": "shell in pod web"}"#.to_vec();
            backends.http.send(post("https://example.com/hooks/T0/SECRET", small)).await.unwrap();
            let big = serde_json::to_vec(&json!({"text": "x".repeat(1 << 20)})).unwrap();
            for _ in 0..100 {
                backends.http.send(post("https://example.com/hooks/T0/SECRET", big.clone())).await.unwrap();
            }
        })
        .await;
        assert_eq!(calls.len(), MAX_DRY_RUN_CALLS + 1);
        assert_eq!(calls[0]["json"]["text"], "shell in pod web", "a small call is kept whole");
        assert_eq!(calls[0]["url"], "https://example.com/***");
        assert!(calls[1].get("json").is_none() && calls[1]["cut_from_bytes"].as_u64() > Some(1 << 20), "{}", calls[1]);
        assert_eq!(calls[1]["headers"]["authorization"], "Bearer ***");
        assert_eq!(calls[MAX_DRY_RUN_CALLS], json!({"call": "more", "omitted": 101 - MAX_DRY_RUN_CALLS}));
        let text = serde_json::to_string(&calls).unwrap();
        assert!(!text.contains("SECRET"), "no secret, whole or cut");
        assert!(calls.iter().all(|c| c.to_string().len() <= DRY_RUN_CALL_BYTES));
        assert!(text.len() <= (MAX_DRY_RUN_CALLS + 1) * DRY_RUN_CALL_BYTES);
    }

    #[tokio::test]
    async fn a_dry_run_records_credential_headers_masked_whatever_their_value() {
        // Basic auth is base64 of "user:password": no setting value appears in it as such.
        let secrets = Secrets::new(["admin", "s3cret-pw"]);
        let backends = Scoped::backends();
        let headers = [
            ("Authorization", "Basic YWRtaW46czNjcmV0LXB3"),
            ("Proxy-Authorization", "Bearer abc.def.ghi"),
            ("Cookie", "session=0123456789"),
            ("Set-Cookie", "id=a3fWa; Secure"),
            ("X-Api-Key", "k-1"),
            ("api-key", "k-2"),
            ("X-Auth-Token", "t-3"),
            ("X-Vault-Token", "t-4"),
            ("X-Client-Secret", "t-5"),
            ("X-Password", "t-6"),
            ("X-Splunk-APIKEY", "t-7"),
            ("Content-Type", "application/json"),
        ];
        let request = HttpRequest {
            method: "POST".into(),
            url: "https://phantom.example.com/rest/container".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: None,
            verify_tls: true,
        };
        let ((), calls) = recorded(secrets, DryRunSection::default(), async {
            backends.http.send(request).await.unwrap();
        })
        .await;
        let shown = &calls[0]["headers"];
        assert_eq!(shown["authorization"], "Basic ***", "{shown}");
        assert_eq!(shown["proxy-authorization"], "Bearer ***", "{shown}");
        for name in ["cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token", "x-vault-token", "x-client-secret"]
        {
            assert_eq!(shown[name], "***", "{name}: {shown}");
        }
        assert_eq!(shown["x-password"], "***", "{shown}");
        assert_eq!(shown["x-splunk-apikey"], "***", "{shown}");
        assert_eq!(shown["content-type"], "application/json", "other headers are kept: {shown}");
    }

    #[tokio::test]
    async fn a_dry_run_answers_http_with_the_success_its_manifest_declares() {
        let get = || HttpRequest {
            method: "POST".into(),
            url: "https://events.pagerduty.com/v2/enqueue".into(),
            headers: Vec::new(),
            body: None,
            verify_tls: true,
        };
        let backends = Scoped::backends();
        let manifest = crate::model::manifest::Manifest::parse(
            "name = \"pagerduty\"\nkind = \"wasm\"\n[dry_run]\nhttp_status = 202\n",
        )
        .unwrap();
        let (answer, _) = recorded(Secrets::default(), manifest.dry_run, backends.http.send(get())).await;
        assert_eq!(answer.unwrap().status, 202);
        let (answer, _) = recorded(Secrets::default(), DryRunSection::default(), backends.http.send(get())).await;
        assert_eq!(answer.unwrap().status, 200, "undeclared, a dry run answers 200");
        let spec = Recorder::new();
        spec.respond("http.send", Canned::Http { status: 201, headers: Vec::new(), body: Vec::new() });
        assert_eq!(spec.send(get()).await.unwrap().status, 201, "a spec keeps its canned answers");
        assert_eq!(spec.send(get()).await.unwrap().status, 200);
    }
}
