//! `riposte spec`: runs the cases in `specs/<playbook>.toml` against the playbook's real component with
//! recording capability backends, and compares the recorded host calls and the outcome with the case.
//! The file format is in `specs/README.md`.

use crate::execute::capability::recording::{Canned, Recorder};
use crate::execute::capability::Backends;
use crate::execute::runtime::{LoadedComponent, Runtime};
use crate::model::alert::Alert;
use crate::model::execution::{Execution, Status};
use crate::model::function::{Function, Settings};
use crate::model::manifest::Manifest;
use crate::model::wit::{ApiError, CallError};
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
        Err(
            e @ (crate::model::function::SettingsError::Missing { .. }
            | crate::model::function::SettingsError::Invalid { .. }),
        ) => return Ok((Execution::refused(Status::MissingSetting, e.to_string()), recorder.calls())),
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
    let exec =
        crate::model::execution::Handler::handle(&runtime.function(component, &function, backends), &alert).await;
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

/// Compares expected and recorded calls; `None` when they match, else every difference: for each call, each
/// differing path with the expected and the recorded value, pretty-printed; when the number of calls differs,
/// the calls themselves (an HTTP body shown once, as `json` when it is JSON).
pub fn compare_calls(expected: &[Value], recorded: &[Value]) -> Option<String> {
    let mut out = Vec::new();
    if expected.len() != recorded.len() {
        out.push(format!("expected {} host call(s), recorded {}", expected.len(), recorded.len()));
    }
    for (i, (e, r)) in expected.iter().zip(recorded).enumerate() {
        let mut diffs = Vec::new();
        differences(e, r, "", &mut diffs);
        if diffs.is_empty() {
            continue;
        }
        let call = r.get("call").and_then(Value::as_str).unwrap_or("?");
        out.push(format!("call #{} ({call}) differs:", i + 1));
        for d in diffs {
            out.push(format!("  at {}", if d.path.is_empty() { "the top" } else { &d.path }));
            out.push(format!("    expected: {}", pretty(&d.expected, 14)));
            out.push(format!(
                "    recorded: {}",
                d.recorded.as_ref().map(|v| pretty(v, 14)).unwrap_or_else(|| "(absent)".into())
            ));
        }
    }
    if out.is_empty() {
        return None;
    }
    if expected.len() != recorded.len() {
        let show = |calls: &[Value]| -> String {
            if calls.is_empty() {
                return "  (none)".into();
            }
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| format!("  #{} {}", i + 1, pretty(&shown_call(c), 5)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        out.push(format!("expected calls:\n{}\nrecorded calls:\n{}", show(expected), show(recorded)));
    }
    Some(out.join("\n    "))
}

/// A recorded call as shown: the body once (`json` when it parsed, else `body`).
fn shown_call(call: &Value) -> Value {
    let mut call = call.clone();
    if let Some(m) = call.as_object_mut() {
        if m.contains_key("json") {
            m.remove("body");
        }
    }
    call
}

/// Pretty JSON, continuation lines indented by `indent` spaces (plus the report's own).
fn pretty(value: &Value, indent: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.replace('\n', &format!("\n    {}", " ".repeat(indent)))
}

/// One place where a recorded call differs from its expectation.
#[derive(Debug, PartialEq)]
pub struct Difference {
    /// `.json.attachments[0].color`; empty for the whole value.
    pub path: String,
    pub expected: Value,
    /// `None` when the key is absent.
    pub recorded: Option<Value>,
}

/// Every place where `actual` does not satisfy `expected`: object keys recursively (keys not expected are not
/// checked), arrays element-wise with the same length, `{ "<contains>" = [items] }` an array holding each item
/// (as a subset) anywhere, `"<null>"` a key absent or null, other values equal (numbers by value).
pub fn differences(expected: &Value, actual: &Value, path: &str, out: &mut Vec<Difference>) {
    let differ = |out: &mut Vec<Difference>| {
        out.push(Difference { path: path.to_owned(), expected: expected.clone(), recorded: Some(actual.clone()) })
    };
    match (expected, actual) {
        (Value::Object(e), _) if e.len() == 1 && e.contains_key(CONTAINS) => {
            let items = match &e[CONTAINS] {
                Value::Array(items) => items.clone(),
                one => vec![one.clone()],
            };
            let Value::Array(a) = actual else { return differ(out) };
            for item in items {
                if !a.iter().any(|av| {
                    let mut d = Vec::new();
                    differences(&item, av, path, &mut d);
                    d.is_empty()
                }) {
                    out.push(Difference {
                        path: format!("{path} (an item like this)"),
                        expected: item,
                        recorded: Some(actual.clone()),
                    });
                }
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) if is_null_marker(ev) => {
                        if !av.is_null() {
                            out.push(Difference { path: p, expected: Value::Null, recorded: Some(av.clone()) });
                        }
                    }
                    Some(av) => differences(ev, av, &p, out),
                    None if ev.is_null() || is_null_marker(ev) => {}
                    None => out.push(Difference { path: p, expected: ev.clone(), recorded: None }),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                differences(ev, av, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        _ => differ(out),
    }
}

/// Whether `expected` is satisfied by `actual` (see [`differences`]); the error is the first differing path.
pub fn subset(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    let mut d = Vec::new();
    differences(expected, actual, path, &mut d);
    match d.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(first.path),
    }
}

/// `{ "<contains>" = [...] }` in an expectation: the array holds each item somewhere, in any order.
const CONTAINS: &str = "<contains>";

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
    fn every_difference_is_reported_once_with_both_values() {
        let recorded =
            json!({"call": "http.send", "body": "{\"text\":\"hi\",\"n\":1}", "json": {"text": "hi", "n": 1}});
        let report =
            compare_calls(&[json!({"call": "http.send", "json": {"text": "ho", "n": 2, "gone": true}})], &[recorded])
                .unwrap();
        for want in [
            "call #1 (http.send) differs:",
            "at .json.text",
            "expected: \"ho\"",
            "recorded: \"hi\"",
            "at .json.n",
            "at .json.gone",
            "recorded: (absent)",
        ] {
            assert!(report.contains(want), "{want:?} in:\n{report}");
        }
        assert!(!report.contains("\\\"text"), "the body is not repeated as an escaped string:\n{report}");
    }

    #[test]
    fn contains_finds_an_item_anywhere_in_a_list() {
        let actual = json!({"fields": [{"title": "Rule", "value": "r"}, {"title": "Priority", "value": "Notice"}]});
        assert!(
            subset(&json!({"fields": {"<contains>": [{"title": "Priority", "value": "Notice"}]}}), &actual, "").is_ok()
        );
        assert!(subset(&json!({"fields": {"<contains>": {"title": "Rule"}}}), &actual, "").is_ok());
        assert!(
            subset(&json!({"fields": {"<contains>": [{"title": "Priority", "value": "Error"}]}}), &actual, "").is_err()
        );
        assert!(subset(&json!({"fields": {"<contains>": [{"title": "Rule"}]}}), &json!({"fields": "x"}), "").is_err());
    }

    #[test]
    fn merges_and_removes_alert_fields() {
        let mut v = json!({"priority": "Notice", "output_fields": {"k8s.pod.name": "a", "x": 1}});
        merge(&mut v, &json!({"priority": "Critical", "output_fields": {"k8s.pod.name": "b"}}));
        remove(&mut v, &["output_fields".into(), "x".into()]);
        assert_eq!(v, json!({"priority": "Critical", "output_fields": {"k8s.pod.name": "b"}}));
    }
}
