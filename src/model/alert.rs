//! Falco alerts as falcosidekick publishes them: parsing, validation and the NATS subject.
//!
//! falcosidekick rejects an alert without `priority`, `rule`, `time` or `output_fields`; riposte does the same,
//! with an error that names the field, so a malformed alert is recorded and skipped, never retried.

use serde_json::{Map, Value};

/// One Falco alert, validated.
#[derive(Debug, Clone)]
pub struct Alert {
    /// falcosidekick's id; generated when the publisher did not set one.
    pub uuid: String,
    /// The rule's output line.
    pub output: String,
    /// The priority as Falco wrote it ("Notice", "Error", ...).
    pub priority: Priority,
    /// The rule's name.
    pub rule: String,
    /// RFC 3339 event time, as received.
    pub time: String,
    /// Event source ("syscall", "k8s_audit"...); empty when absent.
    pub source: String,
    /// The host Falco runs on; empty when absent.
    pub hostname: String,
    /// Rule tags.
    pub tags: Vec<String>,
    /// `output_fields` as received.
    pub output_fields: Map<String, Value>,
    /// The JSON text as received.
    pub raw: String,
}

/// Falco's priorities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    /// Every priority, most severe first.
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// Parses a priority the way falcosidekick does: case-insensitive, `info` for informational.
    pub fn parse(text: &str) -> Option<Priority> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "info" {
            return Some(Priority::Informational);
        }
        Self::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(&lower))
    }

    /// The capitalised name Falco writes, e.g. "Notice".
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

/// Why an alert was rejected. Never worth a retry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlertError {
    #[error("alert is not JSON: {0}; falcosidekick sends one JSON object per alert")]
    NotJson(String),
    #[error("alert is not a JSON object; falcosidekick sends one JSON object per alert")]
    NotObject,
    #[error("alert has no `{0}`; falcosidekick requires priority, rule, time and output_fields")]
    Missing(&'static str),
    #[error("alert field `{field}` is invalid: {why}")]
    Invalid { field: &'static str, why: String },
}

impl Alert {
    /// Parses and validates falcosidekick's JSON.
    pub fn parse(raw: &[u8]) -> Result<Alert, AlertError> {
        let text = std::str::from_utf8(raw).map_err(|e| AlertError::NotJson(e.to_string()))?;
        let value: Value = serde_json::from_str(text).map_err(|e| AlertError::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else { return Err(AlertError::NotObject) };

        // Checked in this order (priority, rule, time, output_fields) so the first problem is the one reported;
        // each value is moved out of the parsed object, never copied.
        let priority_text = required_str(&mut obj, "priority")?;
        let priority = Priority::parse(&priority_text).ok_or_else(|| AlertError::Invalid {
            field: "priority",
            why: format!(
                "{priority_text:?} is not a Falco priority (Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug)"
            ),
        })?;
        let rule = required_str(&mut obj, "rule")?;
        if rule.trim().is_empty() {
            return Err(AlertError::Invalid { field: "rule", why: "it is empty".into() });
        }
        let time = required_str(&mut obj, "time")?;
        time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339)
            .map_err(|e| AlertError::Invalid { field: "time", why: format!("{time:?} is not RFC 3339 ({e})") })?;
        let output_fields = match obj.remove("output_fields") {
            None | Some(Value::Null) => return Err(AlertError::Missing("output_fields")),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(AlertError::Invalid { field: "output_fields", why: "it is not a JSON object".into() })
            }
        };
        let tags = match obj.remove("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|t| match t {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Some(_) => return Err(AlertError::Invalid { field: "tags", why: "it is not a list of strings".into() }),
        };
        let uuid = optional_str(&mut obj, "uuid").filter(|u| !u.is_empty());
        Ok(Alert {
            uuid: uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            output: optional_str(&mut obj, "output").unwrap_or_default(),
            priority,
            rule,
            time,
            source: optional_str(&mut obj, "source").unwrap_or_default(),
            hostname: optional_str(&mut obj, "hostname").unwrap_or_default(),
            tags,
            output_fields,
            raw: text.to_owned(),
        })
    }

    /// The subject falcosidekick publishes this alert on: `falco.<priority>.<rule slug>`.
    pub fn subject(&self) -> String {
        subject_for(self.priority, &self.rule)
    }

    /// An output field as text: strings as they are, numbers in decimal, null as `None`.
    pub fn field(&self, name: &str) -> Option<String> {
        field_text(self.output_fields.get(name)?)
    }

    /// Every output field as (name, text), in the order received.
    pub fn fields_as_text(&self) -> Vec<(String, Option<String>)> {
        self.output_fields.iter().map(|(k, v)| (k.clone(), field_text(v))).collect()
    }
}

fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Takes a required string field out of the parsed object.
fn required_str(obj: &mut Map<String, Value>, field: &'static str) -> Result<String, AlertError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Err(AlertError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(AlertError::Invalid { field, why: "it is not a string".into() }),
    }
}

/// Takes an optional string field out of the parsed object (None when absent or not a string).
fn optional_str(obj: &mut Map<String, Value>, field: &str) -> Option<String> {
    match obj.remove(field) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// falcosidekick's subject: priority lower-cased, rule lower-cased with every run of characters outside
/// `[a-z0-9]` replaced by `_`, trimmed of `_`.
pub fn subject_for(priority: Priority, rule: &str) -> String {
    format!("falco.{}.{}", priority.as_str().to_ascii_lowercase(), rule_slug(rule))
}

/// The rule part of a subject, e.g. "Terminal shell in container" → "terminal_shell_in_container".
pub fn rule_slug(rule: &str) -> String {
    let mut slug = String::with_capacity(rule.len());
    let mut gap = false;
    for c in rule.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if gap && !slug.is_empty() {
                slug.push('_');
            }
            gap = false;
            slug.push(c);
        } else {
            gap = true;
        }
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    const K8S: &str = include_str!("../../specs/alerts/terminal-shell-k8s.json");
    const BIN: &str = include_str!("../../specs/alerts/write-below-binary-dir.json");

    #[test]
    fn parses_the_fixtures_and_derives_their_subjects() {
        let a = Alert::parse(K8S.as_bytes()).unwrap();
        assert_eq!(a.subject(), "falco.notice.terminal_shell_in_container");
        assert_eq!(a.field("k8s.pod.name").as_deref(), Some("nginx-6799fc88d8-5q8ln"));
        assert_eq!(a.field("evt.time").as_deref(), Some("1772460312123456789"));
        let b = Alert::parse(BIN.as_bytes()).unwrap();
        assert_eq!(b.subject(), "falco.error.write_below_binary_dir");
        assert_eq!(b.uuid, "9b4c0a7e-2d1f-4e36-8c55-1f0f6a3e2b10");
    }

    #[test]
    fn slugs_like_falcosidekick() {
        assert_eq!(rule_slug("Terminal shell in container"), "terminal_shell_in_container");
        assert_eq!(
            rule_slug("  Read sensitive file (untrusted) -- by user! "),
            "read_sensitive_file_untrusted_by_user"
        );
        assert_eq!(rule_slug("K8s: Pod/Exec"), "k8s_pod_exec");
        assert_eq!(subject_for(Priority::parse("Info").unwrap(), "x"), "falco.informational.x");
    }

    #[test]
    fn rejects_what_falcosidekick_rejects_naming_the_field() {
        let mut v: Value = serde_json::from_str(BIN).unwrap();
        for field in ["priority", "rule", "time", "output_fields"] {
            let mut w = v.clone();
            w.as_object_mut().unwrap().remove(field);
            let err = Alert::parse(w.to_string().as_bytes()).unwrap_err();
            assert_eq!(err, AlertError::Missing(field));
            assert!(err.to_string().contains(field));
        }
        v["priority"] = "Loud".into();
        assert!(matches!(Alert::parse(v.to_string().as_bytes()), Err(AlertError::Invalid { field: "priority", .. })));
        assert!(matches!(Alert::parse(b"{not json"), Err(AlertError::NotJson(_))));
        assert_eq!(Alert::parse(b"[1]").unwrap_err(), AlertError::NotObject);
    }
}
