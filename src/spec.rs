//! `riposte spec`: runs the cases in `specs/<playbook>.toml` against the playbook's real component with
//! recording capability backends, and compares the recorded host calls and the outcome with the case.
//! The file format is in `specs/README.md`.

use crate::alert::Alert;
use crate::capability::recording::{Canned, Recorder};
use crate::capability::Backends;
use crate::execution::{Execution, Status};
use crate::function::{Function, Settings};
use crate::manifest::Manifest;
use crate::runtime::{LoadedComponent, Runtime};
use crate::wit::{ApiError, CallError};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// The playbook it specifies.
    pub playbook: String,
    /// Its cases.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// One case: an alert, settings, canned answers, expected calls and outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub alert: Option<String>,
    #[serde(default)]
    pub alert_raw: Option<String>,
    #[serde(default)]
    pub alert_set: Option<Value>,
    #[serde(default)]
    pub alert_remove: Vec<Vec<String>>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub respond: Vec<Respond>,
    #[serde(default)]
    pub expect_call: Vec<Value>,
    pub expect: Expect,
}

/// A canned answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    pub call: String,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub json: Option<Value>,
    #[serde(default)]
    pub ok: Option<Value>,
    #[serde(default)]
    pub error: Option<BTreeMap<String, Value>>,
}

/// The expected outcome.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub message_contains: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_contains: Option<String>,
}

/// The verdict on one case.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed; else one paragraph per mismatch.
    pub failures: Vec<String>,
}

/// Why a spec file could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid spec: {why}")]
    Invalid { path: String, why: String },
}

impl SpecFile {
    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<SpecFile, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| SpecError::Invalid { path: path.display().to_string(), why: e.message().to_owned() })
    }
}

/// Runs every case of a spec against a loaded component.
pub async fn run_cases(
    runtime: &Runtime,
    component: Arc<LoadedComponent>,
    manifest: &Manifest,
    spec: &SpecFile,
    alerts_dir: &Path,
) -> Vec<CaseResult> {
    let mut results = Vec::new();
    for case in &spec.cases {
        let failures = match run_case(runtime, component.clone(), manifest, case, alerts_dir).await {
            Ok((exec, calls)) => judge(case, &exec, &calls),
            Err(setup) => vec![setup],
        };
        results.push(CaseResult { name: case.name.clone(), failures });
    }
    results
}

async fn run_case(
    runtime: &Runtime,
    component: Arc<LoadedComponent>,
    manifest: &Manifest,
    case: &Case,
    alerts_dir: &Path,
) -> Result<(Execution, Vec<Value>), String> {
    let recorder = Arc::new(Recorder::new());
    for r in &case.respond {
        recorder.respond(&r.call, canned(r)?);
    }
    let given: Vec<(String, String)> = case.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let settings = match Settings::resolve(manifest, &given) {
        Ok(s) => s,
        Err(e @ crate::function::SettingsError::Missing { .. }) => {
            return Ok((Execution::refused(Status::MissingSetting, e.to_string()), recorder.calls()))
        }
        Err(e) => return Err(format!("the case's settings are wrong: {e}")),
    };
    let raw = alert_text(case, alerts_dir)?;
    let alert = match Alert::parse(raw.as_bytes()) {
        Ok(a) => a,
        Err(e) => return Ok((Execution::refused(Status::InvalidAlert, e.to_string()), recorder.calls())),
    };
    let function = Function {
        name: format!("spec-{}", manifest.name),
        manifest: manifest.clone(),
        artifact: component.digest.clone(),
        settings,
        runs_on: None,
        policy: Default::default(),
    };
    let backends = Backends { http: recorder.clone(), kubernetes: recorder.clone(), object_store: recorder.clone() };
    let exec = runtime.function(component, &function, backends).handle(&alert).await;
    Ok((exec, recorder.calls()))
}

fn canned(r: &Respond) -> Result<Canned, String> {
    if let Some(error) = &r.error {
        let (kind, value) = error.iter().next().ok_or("respond.error is empty")?;
        let text = || value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        let err = match kind.as_str() {
            "invalid-alert" => CallError::InvalidAlert(text()),
            "missing-setting" => CallError::MissingSetting(text()),
            "denied" => CallError::Denied(text()),
            "failed" => CallError::Failed(text()),
            "rejected" => CallError::Rejected(ApiError {
                reason: value.get("reason").and_then(Value::as_str).unwrap_or("").to_owned(),
                message: value.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
                code: value.get("code").and_then(Value::as_u64).unwrap_or(0) as u16,
            }),
            other => {
                return Err(format!(
                "respond.error kind {other:?} is not one of invalid-alert, missing-setting, denied, rejected, failed"
            ))
            }
        };
        return Ok(Canned::Err(err));
    }
    if r.call == "http.send" {
        let body = match (&r.json, &r.body) {
            (Some(json), _) => json.to_string().into_bytes(),
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => Vec::new(),
        };
        let headers = r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        return Ok(Canned::Http { status: r.status.unwrap_or(200), headers, body });
    }
    Ok(Canned::Ok(r.ok.clone().unwrap_or(Value::Null)))
}

fn alert_text(case: &Case, alerts_dir: &Path) -> Result<String, String> {
    if let Some(raw) = &case.alert_raw {
        return Ok(raw.clone());
    }
    let name = case.alert.as_deref().ok_or("the case gives neither `alert` nor `alert_raw`")?;
    let path = alerts_dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read alert {}: {e}", path.display()))?;
    if case.alert_set.is_none() && case.alert_remove.is_empty() {
        return Ok(text);
    }
    let mut value: Value = serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if let Some(set) = &case.alert_set {
        merge(&mut value, set);
    }
    for path in &case.alert_remove {
        remove(&mut value, path);
    }
    Ok(value.to_string())
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn remove(value: &mut Value, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            if let Value::Object(m) = value {
                m.remove(last);
            }
        }
        [first, rest @ ..] => {
            if let Some(inner) = value.get_mut(first) {
                remove(inner, rest);
            }
        }
    }
}

fn judge(case: &Case, exec: &Execution, calls: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    let e = &case.expect;
    let want_ok = e.ok.unwrap_or(e.error.is_none());
    if want_ok && !exec.is_ok() {
        failures.push(format!("expected ok, got {}: {}{}", exec.status.as_str(), exec.message, logs_suffix(exec)));
    }
    if let Some(kind) = &e.error {
        if exec.status.as_str() != kind {
            failures.push(format!(
                "expected error {kind}, got {}: {}{}",
                exec.status.as_str(),
                exec.message,
                logs_suffix(exec)
            ));
        }
    }
    if !want_ok && e.error.is_none() && exec.is_ok() {
        failures.push(format!("expected an error, got ok: {}", exec.message));
    }
    if let Some(m) = &e.message {
        if &exec.message != m {
            failures.push(format!("message\n    expected: {m}\n    got:      {}", exec.message));
        }
    }
    for (needle, what) in [(&e.message_contains, "message"), (&e.error_contains, "error")] {
        if let Some(n) = needle {
            if !exec.message.contains(n.as_str()) {
                failures.push(format!("{what} should contain {n:?}\n    got: {}", exec.message));
            }
        }
    }
    if let Some(diff) = compare_calls(&case.expect_call, calls) {
        failures.push(diff);
    }
    failures
}

fn logs_suffix(exec: &Execution) -> String {
    exec.logs.iter().map(|l| format!("\n    [{}] {}", l.level, l.message)).collect()
}

/// Compares expected and recorded calls; `None` when they match, else the two lists side by side.
pub fn compare_calls(expected: &[Value], recorded: &[Value]) -> Option<String> {
    let mut problems = Vec::new();
    if expected.len() != recorded.len() {
        problems.push(format!("expected {} host call(s), recorded {}", expected.len(), recorded.len()));
    }
    for (i, (e, r)) in expected.iter().zip(recorded).enumerate() {
        if let Err(path) = subset(e, r, "") {
            problems.push(format!("call #{} differs at {}", i + 1, if path.is_empty() { "the top" } else { &path }));
        }
    }
    if problems.is_empty() {
        return None;
    }
    let show = |calls: &[Value]| -> String {
        if calls.is_empty() {
            return "      (none)".into();
        }
        calls.iter().enumerate().map(|(i, c)| format!("      #{} {}", i + 1, c)).collect::<Vec<_>>().join("\n")
    };
    Some(format!(
        "{}\n    expected calls:\n{}\n    recorded calls:\n{}",
        problems.join("; "),
        show(expected),
        show(recorded)
    ))
}

/// Whether `expected` is a subset of `actual`: object keys recursively, arrays element-wise with the same
/// length, other values equal (integers and floats compare by value). The error is the path that differs.
pub fn subset(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) if is_null_marker(ev) => {
                        if !av.is_null() {
                            return Err(p);
                        }
                    }
                    Some(av) => subset(ev, av, &p)?,
                    None if ev.is_null() || is_null_marker(ev) => {}
                    None => return Err(p),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => Ok(()),
        (e, a) if e == a => Ok(()),
        _ => Err(path.to_owned()),
    }
}

/// `"<null>"` in an expectation: the key must be absent or null (TOML has no null).
fn is_null_marker(v: &Value) -> bool {
    v.as_str() == Some("<null>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_rules() {
        let actual = json!({"call": "http.send", "json": {"text": "hi", "attachments": [{"color": "#fff", "x": 1}]}});
        assert!(subset(&json!({"call": "http.send"}), &actual, "").is_ok());
        assert!(subset(&json!({"json": {"attachments": [{"color": "#fff"}]}}), &actual, "").is_ok());
        assert_eq!(subset(&json!({"json": {"text": "ho"}}), &actual, ""), Err(".json.text".into()));
        assert!(subset(&json!({"json": {"attachments": []}}), &actual, "").is_err());
        assert!(subset(&json!({"g": "<null>"}), &json!({"g": null}), "").is_ok());
        assert!(subset(&json!({"g": "<null>"}), &json!({}), "").is_ok());
        assert!(subset(&json!({"g": "<null>"}), &json!({"g": 5}), "").is_err());
        assert!(compare_calls(&[json!({"call": "a"})], &[]).unwrap().contains("expected 1 host call(s), recorded 0"));
    }

    #[test]
    fn merges_and_removes_alert_fields() {
        let mut v = json!({"priority": "Notice", "output_fields": {"k8s.pod.name": "a", "x": 1}});
        merge(&mut v, &json!({"priority": "Critical", "output_fields": {"k8s.pod.name": "b"}}));
        remove(&mut v, &["output_fields".into(), "x".into()]);
        assert_eq!(v, json!({"priority": "Critical", "output_fields": {"k8s.pod.name": "b"}}));
    }
}
