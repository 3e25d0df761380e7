//! The recording backend of every capability, for specs and tests: each call is recorded as JSON (keys as
//! `specs/README.md` lists them) and answered from canned responses, or with a default answer.

use super::{CallResult, CaptureJob, Http, HttpRequest, HttpResponse, Kubernetes, ObjectStore, Taint};
use crate::wit::CallError;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

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
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Value>>,
    canned: Mutex<HashMap<String, VecDeque<Canned>>>,
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
        self.calls.lock().unwrap().push(Value::Object(fields));
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

fn pairs(items: &[(String, String)], lower: bool) -> Value {
    let map: Map<String, Value> = items
        .iter()
        .map(|(k, v)| (if lower { k.to_ascii_lowercase() } else { k.clone() }, Value::String(v.clone())))
        .collect();
    Value::Object(map)
}

#[async_trait::async_trait]
impl Http for Recorder {
    async fn send(&self, request: HttpRequest) -> CallResult<HttpResponse> {
        let mut fields = Map::new();
        fields.insert("method".into(), request.method.clone().into());
        fields.insert("url".into(), request.url.clone().into());
        fields.insert("headers".into(), pairs(&request.headers, true));
        fields.insert("verify_tls".into(), request.verify_tls.into());
        if let Some(body) = &request.body {
            let text = String::from_utf8_lossy(body).into_owned();
            if let Ok(parsed) = serde_json::from_str::<Value>(&text) {
                fields.insert("json".into(), parsed);
            }
            fields.insert("body".into(), text.into());
        }
        match self.record("http.send", fields) {
            None => Ok(HttpResponse { status: 200, headers: Vec::new(), body: Vec::new() }),
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
        let f = json!({"namespace": namespace, "name": name, "labels": pairs(labels, false)});
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
            "duration_seconds": job.duration_seconds, "s3_bucket": job.s3_bucket, "env": pairs(&job.env, false)});
        self.answer_string("kubernetes.create-capture-job", f, &job.job_name.clone())
    }
}

#[async_trait::async_trait]
impl ObjectStore for Recorder {
    async fn put(&self, key: &str, data: Vec<u8>, content_type: Option<String>) -> CallResult<String> {
        let f = json!({"key": key, "content_type": content_type, "size": data.len()});
        self.answer_string("object-store.put", f, &format!("mem://{key}"))
    }
}
