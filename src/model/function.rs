//! A function: a playbook deployed with its settings. Settings are secrets to riposte: the `Settings` type
//! never prints its values, so a function can be logged, listed and put in results safely.

use crate::model::manifest::Manifest;
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
    /// `manifest` (short ones excepted, see [`crate::secrets::redact::MIN_REDACTED_LEN`]), in every form they are
    /// looked for, and the basic credentials any two values make with one of them secret.
    pub fn secrets(&self, manifest: &Manifest) -> crate::secrets::redact::Secrets {
        crate::secrets::redact::Secrets::of_settings(self.iter().map(|(name, value)| (value, manifest.is_secret(name))))
    }

    /// Settings exactly as given (for specs and tests that bypass a manifest).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Settings {
        Settings(pairs.into_iter().collect())
    }
}

/// A setting problem, found before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("playbook {playbook} needs setting {name}: pass -e {name}=VALUE")]
    Missing { playbook: String, name: String },
    #[error("playbook {playbook} has no setting {name} (it takes: {known})")]
    Unknown { playbook: String, name: String, known: String },
    /// The value is not of the setting's type; `why` never contains the value.
    #[error("setting {name} of playbook {playbook} {why}")]
    Invalid { playbook: String, name: String, why: String },
    #[error("setting {0:?} is not KEY=VALUE, KEY=@FILE or KEY")]
    Malformed(String),
    #[error("setting {name}: cannot read {path}: {source} (-e {name}=@FILE takes the value from FILE; write @@ for a value starting with @)")]
    File {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("setting {name}: {path} is larger than {max} bytes", max = crate::model::limits::MAX_SETTING_FILE_BYTES)]
    FileTooLarge { name: String, path: std::path::PathBuf },
    #[error("setting {name}: {path} is not UTF-8 text")]
    FileNotText { name: String, path: std::path::PathBuf },
    #[error("setting {0}: the environment variable {0} is not set (-e {0} takes the value from it; or pass -e {0}=VALUE or -e {0}=@FILE)")]
    Unset(String),
}

/// Parses `-e KEY=VALUE`, `-e KEY=@FILE` (the file's content, without one trailing newline; `@@` escapes a
/// value starting with `@`) and `-e KEY` (the value of the environment variable KEY). The last two keep
/// secrets out of the command line, which every local user can read in /proc.
pub fn parse_setting(text: &str) -> Result<(String, String), SettingsError> {
    parse_setting_with(text, |name| std::env::var_os(name))
}

fn parse_setting_with(
    text: &str,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(String, String), SettingsError> {
    let Some((key, value)) = text.split_once('=') else {
        let name = text.trim();
        if name.is_empty() {
            return Err(SettingsError::Malformed(text.to_owned()));
        }
        let value = env(name).ok_or_else(|| SettingsError::Unset(name.to_owned()))?;
        let value = value.into_string().map_err(|_| SettingsError::Malformed(name.to_owned()))?;
        return Ok((name.to_owned(), value));
    };
    let name = key.trim();
    if name.is_empty() {
        return Err(SettingsError::Malformed(text.to_owned()));
    }
    let value = if let Some(literal) = value.strip_prefix("@@") {
        format!("@{literal}")
    } else if let Some(path) = value.strip_prefix('@') {
        read_setting_file(name, std::path::Path::new(path))?
    } else {
        value.to_owned()
    };
    Ok((name.to_owned(), value))
}

/// The content of the file of `-e NAME=@PATH`, bounded, without one trailing newline.
fn read_setting_file(name: &str, path: &std::path::Path) -> Result<String, SettingsError> {
    use std::io::Read;
    let err = |source| SettingsError::File { name: name.to_owned(), path: path.to_owned(), source };
    let max = crate::model::limits::MAX_SETTING_FILE_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes)).map_err(err)?;
    if bytes.len() > max {
        return Err(SettingsError::FileTooLarge { name: name.to_owned(), path: path.to_owned() });
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|_| SettingsError::FileNotText { name: name.to_owned(), path: path.to_owned() })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
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

    fn env(name: &str) -> Option<std::ffi::OsString> {
        (name == "SLACK_TOKEN").then(|| "xoxb-from-env".into())
    }

    #[test]
    fn a_setting_is_given_inline_from_a_file_or_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(parse_setting_with("K=v=w", env).unwrap(), pair("K", "v=w"));
        assert_eq!(parse_setting_with("K=", env).unwrap(), pair("K", ""));
        assert_eq!(parse_setting_with(&format!("K=@{}", file.display()), env).unwrap(), pair("K", "s3cr3t"));
        std::fs::write(&file, "two\n\n").unwrap();
        assert_eq!(parse_setting_with(&format!("K=@{}", file.display()), env).unwrap().1, "two\n", "one newline");
        std::fs::write(&file, "crlf\r\n").unwrap();
        assert_eq!(parse_setting_with(&format!("K=@{}", file.display()), env).unwrap().1, "crlf");
        assert_eq!(parse_setting_with("K=@@handle", env).unwrap(), pair("K", "@handle"), "@@ escapes @");
        assert_eq!(parse_setting_with("K=a@b", env).unwrap(), pair("K", "a@b"));
        assert_eq!(parse_setting_with("SLACK_TOKEN", env).unwrap(), pair("SLACK_TOKEN", "xoxb-from-env"));
    }

    #[test]
    fn a_missing_file_or_an_unset_variable_is_one_line_naming_the_setting() {
        let e = parse_setting_with("TOKEN=@/nonexistent/riposte-token", env).unwrap_err().to_string();
        assert!(e.starts_with("setting TOKEN: cannot read /nonexistent/riposte-token: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse_setting_with("TOKEN", env).unwrap_err().to_string();
        assert!(e.contains("setting TOKEN: the environment variable TOKEN is not set"), "{e}");
        assert!(matches!(parse_setting_with("=v", env), Err(SettingsError::Malformed(_))));
        assert!(matches!(parse_setting_with("", env), Err(SettingsError::Malformed(_))));
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; crate::model::limits::MAX_SETTING_FILE_BYTES + 1]).unwrap();
        let e = parse_setting_with(&format!("K=@{}", big.display()), env).unwrap_err();
        assert!(matches!(e, SettingsError::FileTooLarge { .. }), "{e}");
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
