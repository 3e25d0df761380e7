//! `playbook.toml`: what a playbook is, what it may call, its limits and its settings. The folder it describes
//! is read through [`folder`]: regular files only, each bounded.

pub mod folder;

use crate::model::limits::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A playbook's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The playbook's name: its folder in `playbooks/`.
    pub name: String,
    /// One line for `riposte playbook list`.
    #[serde(default)]
    pub description: String,
    /// How it runs.
    pub kind: Kind,
    /// What it may call besides settings and log: "http", "object-store", "kubernetes.<verb>", "kubernetes.*".
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Outbound HTTP allow-list.
    #[serde(default)]
    pub http: HttpSection,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// The settings it takes.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
    /// For `kind = "container"`: the image and how to run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSection>,
    /// How a dry run answers the playbook's calls.
    #[serde(default, skip_serializing_if = "DryRunSection::is_default")]
    pub dry_run: DryRunSection,
}

/// `[dry_run]`: what the recording backends answer when the function runs dry (`--dry-run`), so a dry run
/// sees the success the playbook's real API gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DryRunSection {
    /// The HTTP status every request gets (e.g. 202 for PagerDuty's Events API v2); 100..=599, default 200.
    pub http_status: u16,
}

impl Default for DryRunSection {
    fn default() -> Self {
        DryRunSection { http_status: 200 }
    }
}

impl DryRunSection {
    fn is_default(&self) -> bool {
        *self == DryRunSection::default()
    }

    fn validate(&self) -> Result<(), String> {
        if !(100..=599).contains(&self.http_status) {
            return Err(format!(
                "dry_run.http_status {} must be an HTTP status between 100 and 599 (the success the playbook's API gives, e.g. 202)",
                self.http_status
            ));
        }
        Ok(())
    }
}

/// One entry of a manifest's `capabilities`: a host interface the playbook may call (settings and log are
/// always granted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Capability {
    /// `http`: outbound requests to allowed hosts.
    Http,
    /// `object-store`: put objects in the function's own namespace.
    ObjectStore,
    /// `kubernetes.<verb>`: one typed Kubernetes verb.
    Kubernetes(KubernetesVerb),
    /// `kubernetes.*`: every Kubernetes verb.
    KubernetesAll,
}

/// The Kubernetes verbs the host offers, as named in capabilities (`kubernetes.<verb>`) and in the WIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubernetesVerb {
    DeletePod,
    LabelPod,
    TaintNodeOfPod,
    CordonNodeOfPod,
    IsolatePod,
    CreateCaptureJob,
}

impl KubernetesVerb {
    /// Every verb.
    pub const ALL: [KubernetesVerb; 6] = [
        KubernetesVerb::DeletePod,
        KubernetesVerb::LabelPod,
        KubernetesVerb::TaintNodeOfPod,
        KubernetesVerb::CordonNodeOfPod,
        KubernetesVerb::IsolatePod,
        KubernetesVerb::CreateCaptureJob,
    ];

    /// Its name in capabilities and in the WIT, e.g. "delete-pod".
    pub fn as_str(self) -> &'static str {
        match self {
            KubernetesVerb::DeletePod => "delete-pod",
            KubernetesVerb::LabelPod => "label-pod",
            KubernetesVerb::TaintNodeOfPod => "taint-node-of-pod",
            KubernetesVerb::CordonNodeOfPod => "cordon-node-of-pod",
            KubernetesVerb::IsolatePod => "isolate-pod",
            KubernetesVerb::CreateCaptureJob => "create-capture-job",
        }
    }
}

impl TryFrom<String> for Capability {
    type Error = String;

    /// Parses one capability; the error names the unknown entry and lists the known ones.
    fn try_from(text: String) -> Result<Capability, String> {
        match text.as_str() {
            "http" => Ok(Capability::Http),
            "object-store" => Ok(Capability::ObjectStore),
            "kubernetes.*" => Ok(Capability::KubernetesAll),
            other => other
                .strip_prefix("kubernetes.")
                .and_then(|v| KubernetesVerb::ALL.into_iter().find(|k| k.as_str() == v))
                .map(Capability::Kubernetes)
                .ok_or_else(|| {
                    format!(
                        "unknown capability {other:?}; known: http, object-store, kubernetes.*, {}",
                        KubernetesVerb::ALL.map(|v| format!("kubernetes.{}", v.as_str())).join(", ")
                    )
                }),
        }
    }
}

impl From<Capability> for String {
    fn from(c: Capability) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capability::Http => f.write_str("http"),
            Capability::ObjectStore => f.write_str("object-store"),
            Capability::KubernetesAll => f.write_str("kubernetes.*"),
            Capability::Kubernetes(verb) => write!(f, "kubernetes.{}", verb.as_str()),
        }
    }
}

/// How a playbook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A WebAssembly component for `wit/playbook.wit`.
    Wasm,
    /// A container image run through the Docker Engine API.
    Container,
}

impl Kind {
    /// "wasm" or "container".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wasm => "wasm",
            Kind::Container => "container",
        }
    }
}

/// `[http]`: hosts reachable besides those named by URL-valued settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `host` or `host:port` entries; `*.example.com` matches subdomains.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `[container]`: a container action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSection {
    /// Image reference, e.g. "localhost/riposte-webhook:1".
    pub image: String,
    /// Containerfile (relative to the playbook folder) that builds the image when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerfile: Option<String>,
    /// Command and arguments; the image's entrypoint when empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Whether the container gets a network (none by default).
    #[serde(default)]
    pub network: bool,
    /// CPU limit in cores, e.g. 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Process limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Files added to the Containerfile's build context, name in the context → path (relative to the playbook
    /// folder, or absolute), e.g. `busybox = "/bin/busybox"`, so an image can be built offline from what the
    /// host has. A file outside the playbook folder is used only when the person building allows it
    /// (`--context-allow`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
    /// Who the container runs as: `"root"` asks for root explicitly, `"UID"` or `"UID:GID"` (numbers) for
    /// another user; unset, it runs as 65534:65534 (nobody), whatever the image's `USER` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ContainerSection {
    fn validate(&self) -> Result<(), String> {
        for name in self.context.keys() {
            let plain = |part: &str| !part.is_empty() && part != "." && part != "..";
            if name.len() > 255 || !name.split('/').all(plain) {
                return Err(format!(
                    "[container] context name {:?} must be a relative path in the build context, without '..', e.g. busybox",
                    name.chars().take(64).collect::<String>()
                ));
            }
        }
        if let Some(user) = &self.user {
            let numeric = |part: &str| !part.is_empty() && part.len() <= 10 && part.bytes().all(|b| b.is_ascii_digit());
            let ok = user == "root"
                || match user.split_once(':') {
                    Some((uid, gid)) => numeric(uid) && numeric(gid),
                    None => numeric(user),
                };
            if !ok {
                return Err(format!(
                    "[container] user {:?} must be \"root\", \"UID\" or \"UID:GID\" (numbers); leave it out to run as 65534:65534",
                    user.chars().take(64).collect::<String>()
                ));
            }
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

/// One setting a playbook takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    /// What it is, for `riposte playbook list`.
    #[serde(default)]
    pub description: String,
    /// Deploying without it is an error.
    #[serde(default)]
    pub required: bool,
    /// The value when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether the value is a secret (the default): it is replaced with `***` wherever it would appear in
    /// logs, results and listings. Declare `secret = false` for values that may be shown (a taint key).
    #[serde(default = "yes")]
    pub secret: bool,
    /// What the value must be, checked at deploy time: `text` (anything, the default), `url` (http:// or
    /// https:// with a host), `bool` (true/false/yes/no/on/off/1/0) or `integer`.
    #[serde(default, rename = "type", skip_serializing_if = "SettingType::is_text")]
    pub kind: SettingType,
}

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    /// Any text.
    #[default]
    Text,
    /// An http:// or https:// URL with a host.
    Url,
    /// true/false, yes/no, on/off, 1/0 (any case).
    Bool,
    /// A whole number.
    Integer,
}

impl SettingType {
    fn is_text(&self) -> bool {
        *self == SettingType::Text
    }

    /// Checks a value; the error says what is wrong without repeating the value (it may be a secret).
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            SettingType::Text => Ok(()),
            SettingType::Url => match url::Url::parse(value.trim()) {
                Err(url::ParseError::RelativeUrlWithoutBase) => {
                    Err("is not a URL: it has no scheme (write http://… or https://…)".into())
                }
                Err(e) => Err(format!("is not a URL: {e}")),
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    Err("is not an http:// or https:// URL (write http://… or https://…)".into())
                }
                Ok(u) if u.host_str().is_none_or(str::is_empty) => Err("is not a URL: it has no host".into()),
                Ok(_) => Ok(()),
            },
            SettingType::Bool => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "false" | "yes" | "no" | "on" | "off" | "1" | "0" => Ok(()),
                _ => Err("must be true or false (or yes/no, on/off, 1/0)".into()),
            },
            SettingType::Integer => {
                value.trim().parse::<i64>().map(|_| ()).map_err(|_| "must be a whole number".to_owned())
            }
        }
    }
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not a regular file within its bound, or unreadable.
    #[error(transparent)]
    Read(#[from] folder::FolderError),
    #[error("{path} is not a valid playbook manifest: {why}")]
    Invalid { path: PathBuf, why: String },
}

impl Default for SettingSpec {
    fn default() -> Self {
        SettingSpec {
            description: String::new(),
            required: false,
            default: None,
            secret: true,
            kind: SettingType::Text,
        }
    }
}

impl Manifest {
    /// Whether the setting's value is a secret (undeclared settings count as secret).
    pub fn is_secret(&self, setting: &str) -> bool {
        self.settings.get(setting).is_none_or(|s| s.secret)
    }

    /// Reads `<dir>/playbook.toml` (a regular file: a link, say to `/dev/zero`, is refused unread).
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join("playbook.toml");
        let text = folder::read_to_string(&path)?;
        Self::parse(&text).map_err(|why| ManifestError::Invalid { path, why })
    }

    /// Parses and validates a manifest's text.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        if !crate::model::name::valid_name(&self.name) {
            return Err(format!("name {:?} must be lower-case letters, digits and '-'", self.name));
        }
        self.limits.validate()?;
        self.dry_run.validate()?;
        for (name, spec) in &self.settings {
            if let Some(default) = &spec.default {
                spec.kind.check(default).map_err(|why| format!("the default of setting {name} {why}"))?;
            }
        }
        if self.kind == Kind::Container && self.container.is_none() {
            return Err("kind = \"container\" needs a [container] section with an image".into());
        }
        if let Some(section) = &self.container {
            section.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_into_their_enum_and_unknown_ones_are_refused() {
        let m =
            Manifest::parse("name = \"x\"\nkind = \"wasm\"\ncapabilities = [\"http\", \"kubernetes.delete-pod\"]\n")
                .unwrap();
        assert_eq!(m.capabilities, vec![Capability::Http, Capability::Kubernetes(KubernetesVerb::DeletePod)]);
        let e = Manifest::parse("name = \"x\"\nkind = \"wasm\"\ncapabilities = [\"kubernetes.exec\"]\n").unwrap_err();
        assert!(e.contains("unknown capability \"kubernetes.exec\""), "{e}");
        for c in ["http", "object-store", "kubernetes.*", "kubernetes.isolate-pod"] {
            assert_eq!(Capability::try_from(c.to_owned()).unwrap().to_string(), c);
        }
    }

    #[test]
    fn a_context_name_stays_inside_the_build_context() {
        let parse = |name: &str| {
            Manifest::parse(&format!(
                "name = \"x\"\nkind = \"container\"\n[container]\nimage = \"i\"\ncontext = {{ {name:?} = \"/bin/busybox\" }}\n"
            ))
        };
        for good in ["busybox", "bin/busybox"] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/x", "../x", "a/../../x", "a//b", ".", &"x".repeat(256)] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("[container] context name"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_dry_run_answers_http_with_200_unless_the_manifest_declares_its_apis_success() {
        let parse = |extra: &str| Manifest::parse(&format!("name = \"x\"\nkind = \"wasm\"\n{extra}"));
        assert_eq!(parse("").unwrap().dry_run.http_status, 200);
        assert_eq!(parse("[dry_run]\n").unwrap().dry_run.http_status, 200);
        assert_eq!(parse("[dry_run]\nhttp_status = 202\n").unwrap().dry_run.http_status, 202);
        for bad in ["700", "99", "0"] {
            let e = parse(&format!("[dry_run]\nhttp_status = {bad}\n")).unwrap_err();
            assert!(e.contains("dry_run.http_status") && e.contains("between 100 and 599"), "{bad}: {e}");
        }
        let e = parse("[dry_run]\nhttp_status = 70000\n").unwrap_err();
        assert!(!e.is_empty(), "a status beyond u16 is refused too: {e}");
        let e = parse("[dry_run]\nstatus = 202\n").unwrap_err();
        assert!(e.contains("status"), "{e}");
        let m = parse("").unwrap();
        assert!(
            !toml::to_string(&m).unwrap().contains("dry_run"),
            "the default is not written: stored manifests stay as they were"
        );
    }
}
