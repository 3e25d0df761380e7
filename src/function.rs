//! A function: a playbook deployed with its settings. Settings are secrets to riposte: the `Settings` type
//! never prints its values, so a function can be logged, listed and put in results safely.

use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A deployed playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// Its name, e.g. "falco-slack".
    pub name: String,
    /// The playbook's manifest as deployed (kind, capabilities, limits, setting specs).
    pub manifest: Manifest,
    /// What runs: the component's sha256 (wasm) or the image reference (container).
    pub artifact: String,
    /// Settings given at deploy time, defaults applied.
    pub settings: Settings,
    /// Only the runner of this name takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<String>,
    /// Dry-run and deduplication (`--dry-run`, `--dedup-window`, `--dedup-key`).
    #[serde(default, skip_serializing_if = "ResponsePolicy::is_default")]
    pub policy: ResponsePolicy,
}

/// What the runner decides around running a function (the dispatcher's policy step).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePolicy {
    /// Run on real alerts with recording backends: nothing reaches the world, results are `dry-run`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Run once per key within a window, across all runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<Dedup>,
}

impl ResponsePolicy {
    /// Neither dry-run nor dedup.
    pub fn is_default(&self) -> bool {
        *self == ResponsePolicy::default()
    }
}

/// A function's deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// The key (CEL); default: the rule and the output without its time prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Dedup {
    /// The window.
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.window_ms)
    }
}

/// Setting values. `Debug` and `Display` show names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Settings(BTreeMap<String, String>);

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Settings {
    /// The value of one setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Setting names, for listings.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Names and values, for the places that must pass them on (guest calls, container environment).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Applies the manifest: defaults filled in, unknown names and missing required settings refused.
    pub fn resolve(manifest: &Manifest, given: &[(String, String)]) -> Result<Settings, SettingsError> {
        let mut values = BTreeMap::new();
        for (name, value) in given {
            if !manifest.settings.contains_key(name) {
                return Err(SettingsError::Unknown {
                    playbook: manifest.name.clone(),
                    name: name.clone(),
                    known: manifest.settings.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
            let spec = &manifest.settings[name];
            if !value.is_empty() || spec.required {
                spec.kind.check(value).map_err(|why| SettingsError::Invalid {
                    playbook: manifest.name.clone(),
                    name: name.clone(),
                    why,
                })?;
            }
            values.insert(name.clone(), value.clone());
        }
        for (name, spec) in &manifest.settings {
            if values.contains_key(name) {
                continue;
            }
            match &spec.default {
                Some(default) => {
                    values.insert(name.clone(), default.clone());
                }
                None if spec.required => {
                    return Err(SettingsError::Missing { playbook: manifest.name.clone(), name: name.clone() })
                }
                None => {}
            }
        }
        Ok(Settings(values))
    }

    /// What to redact from the function's executions: the values of the settings that are secret under
    /// `manifest` (short ones excepted, see [`crate::redact::MIN_REDACTED_LEN`]), in every form they are
    /// looked for, and the basic credentials any two values make with one of them secret.
    pub fn secrets(&self, manifest: &Manifest) -> crate::redact::Secrets {
        crate::redact::Secrets::of_settings(self.iter().map(|(name, value)| (value, manifest.is_secret(name))))
    }

    /// Settings exactly as given (for specs and tests that bypass a manifest).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Settings {
        Settings(pairs.into_iter().collect())
    }
}

/// A setting problem, found before anything runs.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("playbook {playbook} needs setting {name}: pass -e {name}=VALUE")]
    Missing { playbook: String, name: String },
    #[error("playbook {playbook} has no setting {name} (it takes: {known})")]
    Unknown { playbook: String, name: String, known: String },
    /// The value is not of the setting's type; `why` never contains the value.
    #[error("setting {name} of playbook {playbook} {why}")]
    Invalid { playbook: String, name: String, why: String },
    #[error("setting {0:?} is not KEY=VALUE")]
    Malformed(String),
}

/// Parses `-e KEY=VALUE`.
pub fn parse_setting(text: &str) -> Result<(String, String), SettingsError> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(SettingsError::Malformed(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
name = "slack"
kind = "wasm"
capabilities = ["http"]
[settings.SLACK_WEBHOOK_URL]
required = true
[settings.COLOR]
default = "red"
"#,
        )
        .unwrap()
    }

    #[test]
    fn resolve_fills_defaults_and_refuses_missing_or_unknown() {
        let m = manifest();
        let s = Settings::resolve(&m, &[("SLACK_WEBHOOK_URL".into(), "https://h/x".into())]).unwrap();
        assert_eq!(s.get("COLOR"), Some("red"));
        let e = Settings::resolve(&m, &[]).unwrap_err();
        assert_eq!(e.to_string(), "playbook slack needs setting SLACK_WEBHOOK_URL: pass -e SLACK_WEBHOOK_URL=VALUE");
        let e = Settings::resolve(&m, &[("SLACK_WEBHOOK".into(), "x".into())]).unwrap_err();
        assert!(e.to_string().contains("it takes: COLOR, SLACK_WEBHOOK_URL"), "{e}");
    }

    #[test]
    fn settings_never_print_values() {
        let s = Settings::from_pairs([("TOKEN".to_owned(), "s3cr3t-value".to_owned())]);
        assert_eq!(format!("{s:?}"), "{\"TOKEN\"}");
        let m = Manifest::parse("name = \"x\"\nkind = \"wasm\"\n[settings.TOKEN]\n[settings.KEY]\nsecret = false\n")
            .unwrap();
        let s = Settings::from_pairs([
            ("TOKEN".to_owned(), "s3cr3t".to_owned()),
            ("KEY".to_owned(), "falco/alert".to_owned()),
        ]);
        let secrets = s.secrets(&m);
        assert_eq!(secrets.redact("s3cr3t falco/alert"), "*** falco/alert");
        // base64("s3cr3t:falco/alert"): a pair of values with one secret is a basic credential.
        assert_eq!(secrets.redact("Basic czNjcjN0OmZhbGNvL2FsZXJ0"), "Basic ***");
    }

    #[test]
    fn typed_settings_are_checked_without_showing_the_value() {
        let m = Manifest::parse(
            "name = \"x\"\nkind = \"wasm\"\n[settings.HOOK]\ntype = \"url\"\n[settings.ON]\ntype = \"bool\"\n[settings.N]\ntype = \"integer\"\n",
        )
        .unwrap();
        let resolve = |k: &str, v: &str| Settings::resolve(&m, &[(k.into(), v.into())]).map_err(|e| e.to_string());
        assert!(resolve("HOOK", "https://hooks.example.com/x").is_ok());
        assert!(resolve("ON", "Yes").is_ok() && resolve("N", "42").is_ok());
        let cases = [
            ("HOOK", "127.0.0.1:9/s3cr3t", "setting HOOK of playbook x is not a URL: it has no scheme"),
            ("HOOK", "ftp://h/s3cr3t", "is not an http:// or https:// URL"),
            ("ON", "s3cr3t", "setting ON of playbook x must be true or false"),
            ("N", "s3cr3t", "setting N of playbook x must be a whole number"),
        ];
        for (k, v, want) in cases {
            let e = resolve(k, v).unwrap_err();
            assert!(e.contains(want), "{k}={v}: {e}");
            assert!(!e.contains("s3cr3t"), "the value is not shown: {e}");
        }
        let e =
            Manifest::parse("name = \"x\"\nkind = \"wasm\"\n[settings.N]\ntype = \"integer\"\ndefault = \"many\"\n")
                .unwrap_err();
        assert_eq!(e, "the default of setting N must be a whole number");
    }

    #[test]
    fn settings_are_key_value() {
        assert!(parse_setting("A=b=c").unwrap() == ("A".into(), "b=c".into()));
        assert!(parse_setting("=x").is_err());
    }
}
