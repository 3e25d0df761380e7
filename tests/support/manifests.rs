//! Kubernetes manifests as the tests read them: YAML documents, and each read into its k8s-openapi 0.29 type and
//! compared with what it said, so a field the API schema does not have (k8s-openapi skips unknown fields
//! silently) or a value of the wrong type fails.

use serde_json::Value;

/// The non-empty YAML documents of a (multi-document) text.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The manifest read into its k8s-openapi type and written back: what the API schema understood of it.
pub fn through_typed(doc: &Value) -> Result<Value, String> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Result<Value, String> {
        let object: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(object).unwrap())
    }
    match (doc["apiVersion"].as_str().unwrap_or_default(), doc["kind"].as_str().unwrap_or_default()) {
        ("v1", "Namespace") => typed::<Namespace>(doc),
        ("v1", "ServiceAccount") => typed::<ServiceAccount>(doc),
        ("v1", "ConfigMap") => typed::<ConfigMap>(doc),
        ("v1", "Service") => typed::<Service>(doc),
        ("apps/v1", "Deployment") => typed::<Deployment>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => typed::<ClusterRoleBinding>(doc),
        ("networking.k8s.io/v1", "NetworkPolicy") => typed::<NetworkPolicy>(doc),
        (v, k) => Err(format!("apiVersion {v:?} kind {k:?} is not a type this test knows: add it to through_typed")),
    }
}

/// Where `original` says something `typed` does not: a field the schema does not have (k8s-openapi skips
/// unknown fields silently, so a typo would vanish) or a value read differently.
fn unread(path: &str, original: &Value, typed: &Value, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(t) => unread(&format!("{path}.{key}"), value, t, out),
                    None => out.push(format!("{path}.{key}: unknown field")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, t)) in a.iter().zip(b).enumerate() {
                unread(&format!("{path}[{i}]"), v, t, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} was read as {b}")),
    }
}

pub fn check(doc: &Value) -> Vec<String> {
    match through_typed(doc) {
        Ok(typed) => {
            let mut out = Vec::new();
            unread("", doc, &typed, &mut out);
            out
        }
        Err(e) => vec![e],
    }
}
