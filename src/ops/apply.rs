//! Declarative configuration: one file (YAML; TOML when it ends in `.toml`) declaring functions and triggers,
//! applied as a plan — what to create, update, leave unchanged and (with prune) delete — and the registry
//! exported as such a file.
//!
//! ```yaml
//! functions:
//!   falco-slack:
//!     playbook: slack                          # a catalog name or a playbook folder
//!     settings:
//!       SLACK_WEBHOOK_URL: {env: SLACK_URL}    # secrets: {env: NAME} or {file: PATH}, never the value
//!     runs-on: site-a                          # optional
//!     limits: {concurrency: 8}                 # optional, overrides the playbook's [limits]
//! triggers:
//!   falco-slack-trigger-0: {function: falco-slack, topic: "falco.error.*"}
//! ```
//!
//! Everything is read, resolved, built and checked before anything is written, with the deploy rules of
//! [`crate::ops::deploy`] (artifact before function, consumer before trigger, definition before consumer on
//! delete). Applying the same file twice writes nothing the second time.

use crate::model::function::Function;
use crate::model::limits::Limits;
use crate::model::name::valid_name;
use crate::model::state_dir::StateDir;
use crate::model::trigger::Trigger;
use crate::nats::registry::Registry;
use crate::nats::streams::StreamError;
use crate::ops::builder::Catalog;
use crate::ops::deploy::{self, DeployError, PreparedFunction, Source, Workshop};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSpec>,
    #[serde(default)]
    pub triggers: BTreeMap<String, TriggerSpec>,
}

/// One function as declared.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FunctionSpec {
    /// A playbook in the catalog, or a playbook folder.
    pub playbook: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<String>,
    /// Overrides of the playbook's `[limits]`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// Run with recording backends (`--dry-run`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Deduplication (`--dedup-window`/`--dedup-key`): `{window_ms: 60000, key: "EXPR"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<crate::model::function::Dedup>,
}

/// One trigger as declared.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    pub function: String,
    pub topic: String,
    /// Keep a topic falcosidekick never publishes on (another publisher, a custom subject template), as
    /// `trigger create --force` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// A condition over the whole alert (CEL), as `trigger create --when`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// `skip` (default) or `run`, as `trigger create --on-condition-error`.
    #[serde(default, skip_serializing_if = "crate::model::trigger::OnConditionError::is_skip")]
    pub on_condition_error: crate::model::trigger::OnConditionError,
}

/// A setting's value: a literal (only for settings the playbook declares `secret = false`), or where to read
/// a secret from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    Env { env: String },
    File { file: PathBuf },
    Literal(Literal),
}

/// A literal value: text, a number or a boolean (kept as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Text(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl Literal {
    fn text(&self) -> String {
        match self {
            Literal::Text(s) => s.clone(),
            Literal::Bool(b) => b.to_string(),
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => f.to_string(),
        }
    }
}

/// Why a file was not applied; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes: split it")]
    TooLarge { path: PathBuf },
    #[error("{}{why}", at(path, *line))]
    Invalid { path: PathBuf, line: Option<usize>, why: String },
    #[error("{}{what}: {source}", at(path, *line))]
    Deploy {
        path: PathBuf,
        line: Option<usize>,
        what: String,
        #[source]
        source: Box<DeployError>,
    },
    #[error(transparent)]
    Write(Box<DeployError>),
    #[error(transparent)]
    Nats(#[from] StreamError),
}

impl From<DeployError> for ApplyError {
    fn from(e: DeployError) -> ApplyError {
        ApplyError::Write(Box::new(e))
    }
}

fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}: ", path.display()),
        None => format!("{}: ", path.display()),
    }
}

/// What applying does to one function or trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// What differs, e.g. `settings SLACK_WEBHOOK_URL`, `limits`, `topic`.
    Update(Vec<String>),
    Unchanged,
    Delete,
}

/// What a step writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Function,
    Trigger,
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Object::Function => "function",
            Object::Trigger => "trigger",
        })
    }
}

/// One line of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: Object,
    pub name: String,
    pub action: Action,
    /// For functions: the playbook and the setting names (never values); for triggers: topic -> function.
    pub detail: String,
}

/// A checked plan, ready to be applied.
pub struct Plan {
    pub steps: Vec<Step>,
    functions: Vec<PreparedFunction>,
    triggers: Vec<Trigger>,
}

impl Plan {
    /// Whether applying it would write anything.
    pub fn changes(&self) -> bool {
        self.steps.iter().any(|s| s.action != Action::Unchanged)
    }
}

/// Reads a file (YAML, or TOML by extension).
pub fn read(path: &Path) -> Result<(String, Declared), ApplyError> {
    let meta = std::fs::metadata(path).map_err(|source| ApplyError::Read { path: path.to_owned(), source })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ApplyError::TooLarge { path: path.to_owned() });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ApplyError::Read { path: path.to_owned(), source })?;
    let declared = parse(&text, path)?;
    Ok((text, declared))
}

/// Parses the file's text; errors carry the line.
pub fn parse(text: &str, path: &Path) -> Result<Declared, ApplyError> {
    let invalid = |line, why: String| ApplyError::Invalid { path: path.to_owned(), line, why };
    if path.extension().is_some_and(|x| x == "toml") {
        return toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            invalid(line, format!("{}: fix the file", e.message()))
        });
    }
    serde_norway::from_str::<Option<Declared>>(text).map(Option::unwrap_or_default).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let why = e.to_string();
        // The message repeats the location at its end: keep what it says.
        let why = why.split(" at line ").next().unwrap_or(&why).to_owned();
        invalid(line, format!("{why}: fix the file"))
    })
}

/// The line where `name` is declared under `section` (for messages), when it can be found.
fn line_of(text: &str, section: &str, name: &str) -> Option<usize> {
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if !line.starts_with([' ', '\t']) && !trimmed.is_empty() && !trimmed.starts_with('#') {
            inside = trimmed.starts_with(&format!("{section}:")) || trimmed.starts_with(&format!("[{section}"));
            if trimmed.starts_with(&format!("[{section}.{name}]")) {
                return Some(i + 1);
            }
            continue;
        }
        let key = trimmed.trim_start_matches(['"', '\'']);
        if inside
            && key.starts_with(name)
            && key[name.len()..].trim_start_matches(['"', '\'']).starts_with([':', ' ', '='])
        {
            return Some(i + 1);
        }
    }
    None
}

/// Resolves, builds and checks everything the file declares against the registry, and says what applying
/// it would change. Writes nothing.
pub async fn plan(
    text: &str,
    declared: &Declared,
    path: &Path,
    registry: &Registry,
    prune: bool,
    here: Workshop<'_>,
) -> Result<Plan, ApplyError> {
    let fline = |name: &str| line_of(text, "functions", name);
    let tline = |name: &str| line_of(text, "triggers", name);
    let invalid = |line, why: String| ApplyError::Invalid { path: path.to_owned(), line, why };
    let base = path.parent().unwrap_or(Path::new("."));
    let current_functions = registry.functions().await?;
    let current_triggers = registry.triggers().await?;
    let mut steps = Vec::new();
    let mut functions = Vec::new();
    for (name, spec) in &declared.functions {
        let line = fline(name);
        let deploy_err = |source| ApplyError::Deploy {
            path: path.to_owned(),
            line,
            what: format!("function {name}"),
            source: Box::new(source),
        };
        let mut given = Vec::new();
        for (setting, value) in &spec.settings {
            let text = match value {
                SettingValue::Literal(l) => l.text(),
                SettingValue::Env { env } => std::env::var(env).map_err(|_| {
                    invalid(line, format!("function {name}: setting {setting} reads environment variable {env}, which is not set: export it"))
                })?,
                SettingValue::File { file } => {
                    let p = base.join(file);
                    let bytes = std::fs::read(&p).map_err(|e| {
                        invalid(line, format!("function {name}: setting {setting} reads {}: {e}", p.display()))
                    })?;
                    String::from_utf8(bytes)
                        .map_err(|_| invalid(line, format!("function {name}: setting {setting}: {} is not UTF-8 text", p.display())))?
                        .trim_end_matches(['\n', '\r'])
                        .to_owned()
                }
            };
            given.push(format!("{setting}={text}"));
        }
        let source = Source::Playbook(resolve_playbook(&spec.playbook, base));
        let mut prepared =
            deploy::prepare(name, &source, &given, spec.runs_on.clone(), here).await.map_err(deploy_err)?;
        for (setting, value) in &spec.settings {
            let secret = prepared.function.manifest.settings.get(setting).is_none_or(|s| s.secret);
            if secret && matches!(value, SettingValue::Literal(_)) {
                return Err(invalid(
                    line,
                    format!(
                        "function {name}: setting {setting} is a secret: write {{env: NAME}} or {{file: PATH}} instead of its value"
                    ),
                ));
            }
        }
        if !spec.limits.is_empty() {
            prepared.function.manifest.limits = override_limits(&prepared.function.manifest.limits, &spec.limits)
                .map_err(|why| invalid(line, format!("function {name}: limits: {why}")))?;
        }
        let policy = crate::model::function::ResponsePolicy { dry_run: spec.dry_run, dedup: spec.dedup.clone() };
        let prepared = prepared.with_policy(policy).map_err(deploy_err)?;
        let f = &prepared.function;
        deploy::check_key(registry, f).map_err(deploy_err)?;
        let detail = describe_function(&spec.playbook, f);
        // The stored function's secret settings are sealed: compared opened.
        let action = match current_functions.get(name).map(|old| registry.open_settings(old.clone())) {
            None => Action::Create,
            Some(Ok(old)) if old == *f => Action::Unchanged,
            Some(Ok(old)) => Action::Update(function_changes(&old, f)),
            Some(Err(_)) => Action::Update(vec![
                "settings do not open (another settings key, an earlier riposte, or rewritten for other code): sealed again".into(),
            ]),
        };
        steps.push(Step { kind: Object::Function, name: name.clone(), action, detail });
        functions.push(prepared);
    }
    let subjects = crate::nats::streams::alert_subjects(registry.jetstream()).await?;
    let mut triggers = Vec::new();
    for (name, spec) in &declared.triggers {
        let line = tline(name);
        if !valid_name(name) {
            return Err(ApplyError::Deploy {
                path: path.to_owned(),
                line,
                what: format!("trigger {name}"),
                source: Box::new(DeployError::TriggerName(name.clone())),
            });
        }
        let known = declared.functions.contains_key(&spec.function)
            || (!prune && current_functions.contains_key(&spec.function));
        if !known {
            return Err(invalid(
                line,
                format!(
                    "trigger {name}: function {} is not declared in the file: declare it under functions",
                    spec.function
                ),
            ));
        }
        crate::policy::topic_check::check_topic(&spec.topic, Some(&subjects), spec.force)
            .map_err(|e| invalid(line, format!("trigger {name}: {e}")))?;
        if let Some(when) = &spec.when {
            crate::policy::condition::Condition::compile(when)
                .map_err(|e| invalid(line, format!("trigger {name}: {e}")))?;
        }
        let t = Trigger {
            name: name.clone(),
            function: spec.function.clone(),
            topic: spec.topic.clone(),
            when: spec.when.clone(),
            on_condition_error: spec.on_condition_error,
        };
        let action = match current_triggers.get(name) {
            None => Action::Create,
            Some(old) if *old == t => Action::Unchanged,
            Some(old) => {
                let mut what = Vec::new();
                if old.topic != t.topic {
                    what.push("topic".to_owned());
                }
                if old.function != t.function {
                    what.push("function".to_owned());
                }
                if old.when != t.when {
                    what.push("condition".to_owned());
                }
                if old.on_condition_error != t.on_condition_error {
                    what.push("on_condition_error".to_owned());
                }
                Action::Update(what)
            }
        };
        steps.push(Step {
            kind: Object::Trigger,
            name: name.clone(),
            action,
            detail: format!("{} -> {}", t.topic, t.function),
        });
        triggers.push(t);
    }
    if prune {
        for (name, t) in &current_triggers {
            if !declared.triggers.contains_key(name) {
                steps.push(Step {
                    kind: Object::Trigger,
                    name: name.clone(),
                    action: Action::Delete,
                    detail: format!("{} -> {}", t.topic, t.function),
                });
            }
        }
        for (name, f) in &current_functions {
            if !declared.functions.contains_key(name) {
                steps.push(Step {
                    kind: Object::Function,
                    name: name.clone(),
                    action: Action::Delete,
                    detail: describe_function(&f.manifest.name, f),
                });
            }
        }
    }
    Ok(Plan { steps, functions, triggers })
}

/// A playbook named in the file: a folder relative to the file when one is there, else a catalog name.
fn resolve_playbook(playbook: &str, base: &Path) -> String {
    let relative = base.join(playbook);
    if relative.join("playbook.toml").is_file() {
        relative.display().to_string()
    } else {
        playbook.to_owned()
    }
}

fn describe_function(playbook: &str, f: &Function) -> String {
    let names: Vec<&str> = f.settings.names().collect();
    let mut d = format!("playbook {playbook}");
    if !names.is_empty() {
        d.push_str(&format!(", settings {}", names.join(", ")));
    }
    if let Some(r) = &f.runs_on {
        d.push_str(&format!(", runs on {r}"));
    }
    d
}

/// What differs between two versions of a function, setting names only.
fn function_changes(old: &Function, new: &Function) -> Vec<String> {
    let mut what = Vec::new();
    if old.artifact != new.artifact {
        what.push("artifact".to_owned());
    }
    let changed: Vec<&str> = old
        .settings
        .names()
        .chain(new.settings.names())
        .filter(|n| old.settings.get(n) != new.settings.get(n))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !changed.is_empty() {
        what.push(format!("settings {}", changed.join(", ")));
    }
    if old.manifest.limits != new.manifest.limits {
        what.push("limits".to_owned());
    }
    if old.runs_on != new.runs_on {
        what.push("runs-on".to_owned());
    }
    if what.is_empty() {
        what.push("manifest".to_owned());
    }
    what
}

/// The playbook's limits with the file's overrides; unknown names are refused.
fn override_limits(limits: &Limits, overrides: &serde_json::Map<String, serde_json::Value>) -> Result<Limits, String> {
    let mut value = serde_json::to_value(limits).expect("limits serialize");
    for (k, v) in overrides {
        value[k] = v.clone();
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Writes the plan: functions first (each artifact, then definition), then triggers (consumer, then
/// definition), then, with prune, triggers and functions no longer declared.
pub async fn execute(registry: &Registry, plan: &Plan) -> Result<(), ApplyError> {
    let action = |kind: Object, name: &str| {
        plan.steps.iter().find(|s| s.kind == kind && s.name == name).map(|s| s.action.clone())
    };
    for p in &plan.functions {
        if action(Object::Function, &p.function.name) != Some(Action::Unchanged) {
            deploy::write_function(registry, p).await?;
        }
    }
    for t in &plan.triggers {
        if action(Object::Trigger, &t.name) != Some(Action::Unchanged) {
            let function = match plan.functions.iter().find(|p| p.function.name == t.function) {
                Some(p) => p.function.clone(),
                None => {
                    registry.function(&t.function).await?.ok_or_else(|| DeployError::NoFunction(t.function.clone()))?
                }
            };
            deploy::write_trigger(registry, t, &function).await?;
        }
    }
    let current_triggers = registry.triggers().await?;
    for s in plan.steps.iter().filter(|s| s.action == Action::Delete && s.kind == Object::Trigger) {
        if let Some(t) = current_triggers.get(&s.name) {
            deploy::delete_trigger(registry, t).await?;
        }
    }
    for s in plan.steps.iter().filter(|s| s.action == Action::Delete && s.kind == Object::Function) {
        deploy::delete_function(registry, &s.name).await?;
    }
    Ok(())
}

/// The registry as a file `apply` takes: secret settings as `{env: <FUNCTION>_<SETTING>}` references to fill
/// in (their values are never written), limits where they differ from the catalog playbook's.
pub async fn export(registry: &Registry, playbooks: &Catalog, state: &StateDir) -> Result<String, ApplyError> {
    let mut declared = Declared::default();
    for (name, f) in registry.functions().await? {
        let mut settings = BTreeMap::new();
        for (setting, value) in f.settings.iter() {
            let spec = f.manifest.settings.get(setting);
            let v = if spec.is_none_or(|s| s.secret) {
                SettingValue::Env { env: env_name(&name, setting) }
            } else if spec.and_then(|s| s.default.as_deref()) == Some(value) {
                continue;
            } else {
                SettingValue::Literal(Literal::Text(value.to_owned()))
            };
            settings.insert(setting.to_owned(), v);
        }
        let playbook = f.manifest.name.clone();
        let catalog_limits = deploy::builder_for(&playbook, playbooks, state)
            .ok()
            .and_then(|(b, p)| b.manifest(&p).ok())
            .map(|(_, m)| m.limits);
        let limits = limits_delta(catalog_limits.as_ref(), &f.manifest.limits);
        let spec = FunctionSpec {
            playbook,
            settings,
            runs_on: f.runs_on.clone(),
            limits,
            dry_run: f.policy.dry_run,
            dedup: f.policy.dedup.clone(),
        };
        declared.functions.insert(name, spec);
    }
    for (name, t) in registry.triggers().await? {
        // A trigger deployed with --force exports with `force: true`, so the file applies again.
        let force = crate::policy::topic_check::check_topic(&t.topic, None, false).is_err();
        declared.triggers.insert(
            name,
            TriggerSpec {
                function: t.function,
                topic: t.topic,
                force,
                when: t.when,
                on_condition_error: t.on_condition_error,
            },
        );
    }
    let body = serde_norway::to_string(&declared).expect("a declaration serializes");
    Ok(format!(
        "# riposte export: apply with `riposte apply -f FILE`. Secret settings are references: set the\n\
         # environment variables they name (or write {{file: PATH}}) before applying.\n{body}"
    ))
}

fn limits_delta(base: Option<&Limits>, limits: &Limits) -> serde_json::Map<String, serde_json::Value> {
    let new = serde_json::to_value(limits).expect("limits serialize");
    let old = base.map(|b| serde_json::to_value(b).expect("limits serialize"));
    let mut out = serde_json::Map::new();
    if let serde_json::Value::Object(fields) = new {
        for (k, v) in fields {
            if old.as_ref().map(|o| &o[&k]) != Some(&v) {
                out.insert(k, v);
            }
        }
    }
    out
}

/// `falco-slack`, `SLACK_WEBHOOK_URL` → `FALCO_SLACK_SLACK_WEBHOOK_URL`.
pub fn env_name(function: &str, setting: &str) -> String {
    format!("{function}_{setting}").to_ascii_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_names_its_line() {
        let text = "functions:\n  falco-slack:\n    playbook: slack\n    setings: {}\n";
        let e = parse(text, Path::new("r.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("r.yaml:4: "), "{e}");
        assert!(e.contains("setings"), "{e}");
    }

    #[test]
    fn settings_take_literals_env_and_file_references() {
        let text = "functions:\n  f:\n    playbook: p\n    settings:\n      A: {env: X}\n      B: {file: s.txt}\n      C: text\n      D: false\n";
        let d = parse(text, Path::new("r.yaml")).unwrap();
        let s = &d.functions["f"].settings;
        assert_eq!(s["A"], SettingValue::Env { env: "X".into() });
        assert_eq!(s["B"], SettingValue::File { file: "s.txt".into() });
        assert_eq!(s["C"], SettingValue::Literal(Literal::Text("text".into())));
        assert_eq!(s["D"], SettingValue::Literal(Literal::Bool(false)));
    }

    #[test]
    fn lines_of_declarations_are_found() {
        let text =
            "functions:\n  a:\n    playbook: x\n  b:\n    playbook: y\ntriggers:\n  a: {function: a, topic: t}\n";
        assert_eq!(line_of(text, "functions", "b"), Some(4));
        assert_eq!(line_of(text, "triggers", "a"), Some(7));
    }

    #[test]
    fn limits_are_overridden_by_name_and_typos_refused() {
        let base = Limits::default();
        let mut o = serde_json::Map::new();
        o.insert("concurrency".into(), 3.into());
        assert_eq!(override_limits(&base, &o).unwrap().concurrency, 3);
        o.insert("concurency".into(), 3.into());
        assert!(override_limits(&base, &o).unwrap_err().contains("concurency"));
        assert_eq!(limits_delta(Some(&base), &Limits { concurrency: 3, ..base.clone() }).len(), 1);
    }
}
