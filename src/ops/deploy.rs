//! Deploying functions and triggers: the rules every deploy follows, whichever command asks (`deploy_playbook`,
//! `function deploy`, `trigger create`, `function delete`).
//!
//! - Everything is checked (names, playbook, settings, component, topics, NATS) before anything is written.
//! - A function is written artifact first, then its definition: a runner never sees a function whose
//!   component it cannot fetch.
//! - A trigger is written consumer first, then its definition, so a runner never sees a trigger without the
//!   consumer that keeps its alerts; it is deleted definition first (runners stop), then its consumer.

use crate::execute::container::image::{ContextAllow, ImageStatus};
use crate::execute::container::{ContainerEngine, ContainerError};
use crate::execute::runtime::{Runtime, RuntimeConfig, RuntimeError};
use crate::model::function::{parse_setting, Function, ResponsePolicy, Settings, SettingsError};
use crate::model::manifest::{Kind, Manifest};
use crate::model::name::valid_name;
use crate::model::state_dir::StateDir;
use crate::model::trigger::{Pattern, Trigger};
use crate::nats::registry::Registry;
use crate::nats::streams::StreamError;
use crate::ops::builder::Catalog;
use crate::ops::builder::{BuildError, Builder};
use crate::policy::condition::{Condition, ConditionError};
use crate::policy::topic_check::{check_topic, TopicError};
use std::path::{Path, PathBuf};

/// Where a function's code comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A playbook: a folder, or a name in the catalog.
    Playbook(String),
    /// A component file, with an optional manifest (default: no capabilities, default limits).
    Wasm { file: PathBuf, manifest: Option<PathBuf> },
}

/// Where playbooks are found and built on this machine: the catalog, the state directory (compile cache), and
/// the host files outside a playbook's folder that its image build may use.
#[derive(Debug, Clone, Copy)]
pub struct Workshop<'a> {
    pub playbooks: &'a Catalog,
    pub state: &'a StateDir,
    pub allow: &'a ContextAllow,
    /// Whether secret setting values can be sealed (the registry has a settings key): without one, a function
    /// given secret settings is refused before anything is built ([`check_key`] is the same rule at write time).
    pub sealing: bool,
}

/// A function checked and ready to be written, with its component bytes (none for a container function).
pub struct PreparedFunction {
    pub function: Function,
    pub bytes: Option<Vec<u8>>,
    /// For a container function: what happened to its image on this machine.
    pub image: Option<ImageNote>,
}

/// What preparing a container function did about its image in this machine's container engine.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageNote {
    /// The image was there already.
    Present,
    /// The image was built from the playbook's Containerfile, in the engine at `host`.
    Built { host: String },
    /// No engine answers here: the runners that take the function need the image (the reason says why).
    NoEngine { why: String },
}

/// Why a deploy was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("function name {0:?} is not valid: use lower-case letters, digits and '-', at most 63")]
    FunctionName(String),
    #[error("trigger name {0:?} is not valid: use lower-case letters, digits and '-', at most 63")]
    TriggerName(String),
    #[error("--runs-on {0:?} is not a valid runner name: use lower-case letters, digits and '-'")]
    RunnerName(String),
    #[error("no trigger given: pass at least one -t TOPIC, e.g. -t 'falco.error.*'")]
    NoTopics,
    #[error("no function {0}: deploy it first (riposte function deploy)")]
    NoFunction(String),
    #[error("no function {0}: see `riposte function list`")]
    UnknownFunction(String),
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid manifest: {why}")]
    Manifest { path: PathBuf, why: String },
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Component(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ContainerError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    Condition(#[from] ConditionError),
    #[error("--dedup-window {0:?} is out of range: give 1s to 7d, e.g. 60s")]
    DedupWindow(String),
    #[error("--dedup-key needs --dedup-window (e.g. --dedup-window 60s)")]
    DedupKeyWithoutWindow,
    #[error("function {0} is a container action: --dry-run works for WebAssembly playbooks only (a container reaches the world itself, its calls cannot be recorded)")]
    DryRunContainer(String),
    #[error(transparent)]
    Seal(#[from] crate::secrets::seal::SealError),
    #[error(transparent)]
    Nats(#[from] StreamError),
}

impl PreparedFunction {
    /// Sets the function's dry-run and dedup policy, checked first: a window in range, a dedup key that
    /// compiles, dry-run only for WebAssembly functions.
    pub fn with_policy(mut self, policy: ResponsePolicy) -> Result<PreparedFunction, DeployError> {
        if policy.dry_run && self.function.manifest.kind == Kind::Container {
            return Err(DeployError::DryRunContainer(self.function.name.clone()));
        }
        if let Some(d) = &policy.dedup {
            let window = d.window();
            if !(crate::model::limits::DEDUP_WINDOW_MIN..=crate::model::limits::DEDUP_WINDOW_MAX).contains(&window) {
                return Err(DeployError::DedupWindow(format!("{}ms", d.window_ms)));
            }
            if let Some(key) = &d.key {
                Condition::compile_key(key)?;
            }
        }
        self.function.policy = policy;
        Ok(self)
    }
}

/// Checks a trigger on its own: its name, its topic ([`check_topic`] without the stream's subjects; `force`
/// keeps a topic falcosidekick never publishes on), and its condition (which must compile against the alert;
/// the error gives the line and column).
pub fn check_trigger(trigger: &Trigger, force: bool) -> Result<(), DeployError> {
    if !valid_name(&trigger.name) {
        return Err(DeployError::TriggerName(trigger.name.clone()));
    }
    check_topic(&trigger.topic, None, force)?;
    if let Some(when) = &trigger.when {
        Condition::compile(when)?;
    }
    Ok(())
}

/// Checks and builds a function without writing anything: name, runner name, settings against the manifest,
/// the component (compiled now, which checks it and fills this machine's compile cache for local runners) or,
/// for a container function, its image in this machine's engine.
pub async fn prepare(
    name: &str,
    source: &Source,
    settings: &[String],
    runs_on: Option<String>,
    here: Workshop<'_>,
) -> Result<PreparedFunction, DeployError> {
    let Workshop { playbooks, state, allow, sealing } = here;
    let sealable = |manifest: &Manifest, settings: &Settings| {
        if !sealing && crate::secrets::seal::has_secret_settings(manifest, settings) {
            return Err(DeployError::from(crate::secrets::seal::SealError::NoKey { function: name.to_owned() }));
        }
        Ok(())
    };
    if !valid_name(name) {
        return Err(DeployError::FunctionName(name.to_owned()));
    }
    if let Some(r) = runs_on.as_deref().filter(|r| !valid_name(r)) {
        return Err(DeployError::RunnerName(r.to_owned()));
    }
    let given = settings.iter().map(|s| parse_setting(s)).collect::<Result<Vec<_>, _>>()?;
    let runtime = || Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: false });
    let (manifest, settings, artifact, bytes, image) = match source {
        Source::Playbook(p) => {
            let (builder, playbook) = builder_for(p, playbooks, state)?;
            let (dir, manifest) = builder.manifest(&playbook)?;
            let settings = Settings::resolve(&manifest, &given)?;
            sealable(&manifest, &settings)?;
            match manifest.kind {
                Kind::Wasm => {
                    let runtime = runtime()?;
                    // Building and compiling block: off the async threads (any runtime flavour).
                    let (component, bytes) = tokio::task::spawn_blocking(move || builder.load(&runtime, &playbook))
                        .await
                        .expect("building a playbook panicked")?;
                    (manifest, settings, component.digest.clone(), Some(bytes), None)
                }
                Kind::Container => {
                    let note = ensure_image_here(&manifest, &dir, allow).await?;
                    let image = manifest.container.as_ref().map(|c| c.image.clone()).unwrap_or_default();
                    (manifest, settings, image, None, Some(note))
                }
            }
        }
        Source::Wasm { file, manifest } => {
            let bytes = std::fs::read(file).map_err(|source| DeployError::Read {
                what: "component",
                path: file.clone(),
                source,
            })?;
            let (manifest, settings) = match manifest {
                Some(m) => {
                    let text = std::fs::read_to_string(m).map_err(|source| DeployError::Read {
                        what: "manifest",
                        path: m.clone(),
                        source,
                    })?;
                    let manifest =
                        Manifest::parse(&text).map_err(|why| DeployError::Manifest { path: m.clone(), why })?;
                    let settings = Settings::resolve(&manifest, &given)?;
                    (manifest, settings)
                }
                None => {
                    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n"))
                        .expect("a minimal manifest parses");
                    (manifest, Settings::from_pairs(given))
                }
            };
            sealable(&manifest, &settings)?;
            let runtime = runtime()?;
            let what = format!("function {name}");
            let (component, bytes) = tokio::task::spawn_blocking(move || {
                let component = runtime.load(&bytes, &what);
                component.map(|c| (c, bytes))
            })
            .await
            .expect("loading a component panicked")?;
            (manifest, settings, component.digest.clone(), Some(bytes), None)
        }
    };
    let function =
        Function { name: name.to_owned(), manifest, artifact, settings, runs_on, policy: Default::default() };
    Ok(PreparedFunction { function, bytes, image })
}

/// The builder and playbook name for `playbook`: a folder with a playbook.toml (its parent is the catalog), or
/// a name looked up in the catalog `playbooks`.
pub fn builder_for(playbook: &str, playbooks: &Catalog, state: &StateDir) -> Result<(Builder, String), DeployError> {
    let path = Path::new(playbook);
    if path.join("playbook.toml").is_file() {
        let dir = path.canonicalize().map_err(|source| DeployError::Read {
            what: "playbook folder",
            path: path.to_owned(),
            source,
        })?;
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let catalog = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok((Builder::new(catalog, state), name));
    }
    Ok((Builder::new(playbooks.clone(), state), playbook.to_owned()))
}

/// Builds a container playbook's image in this machine's container engine when it is missing there (the
/// engine runners on this machine use). With no engine here, the runners that take the function need it. What a
/// build would refuse (a context file outside the folder and not allowed, a link in the folder) is refused first,
/// engine or not, image present or not: such a manifest is never written to the registry.
async fn ensure_image_here(manifest: &Manifest, dir: &Path, allow: &ContextAllow) -> Result<ImageNote, DeployError> {
    crate::execute::container::image::check_build_inputs(manifest, dir, allow)?;
    match ContainerEngine::connect(None).await {
        Ok(engine) => Ok(match engine.ensure_image(manifest, dir, allow).await? {
            ImageStatus::Present => ImageNote::Present,
            ImageStatus::Built => ImageNote::Built { host: engine.host().to_owned() },
        }),
        Err(e) => Ok(ImageNote::NoEngine { why: e.to_string() }),
    }
}

/// Writes the artifact, then the function (its secret settings sealed with the registry's key: refused before
/// anything is written when it has none), and carries a new concurrency or timeout over to the consumers of the
/// function's existing triggers.
pub async fn write_function(registry: &Registry, prepared: &PreparedFunction) -> Result<(), DeployError> {
    check_key(registry, &prepared.function)?;
    if let Some(bytes) = &prepared.bytes {
        registry.put_artifact(bytes).await?;
    }
    let f = &prepared.function;
    match &f.policy.dedup {
        Some(d) => crate::nats::dedup::ensure(registry.jetstream(), &f.name, d.window()).await?,
        None => crate::nats::dedup::delete(registry.jetstream(), &f.name).await?,
    }
    registry.put_function(&prepared.function).await?;
    let limits = &prepared.function.manifest.limits;
    for t in registry.triggers().await?.into_values().filter(|t| t.function == prepared.function.name) {
        crate::nats::streams::ensure_consumer(registry.jetstream(), &t, limits).await?;
    }
    Ok(())
}

/// Refuses a function with secret settings when the registry has no settings key to seal them with.
pub fn check_key(registry: &Registry, function: &Function) -> Result<(), DeployError> {
    if crate::secrets::seal::needs_key(function) && registry.keys().is_none() {
        return Err(crate::secrets::seal::SealError::NoKey { function: function.name.clone() }.into());
    }
    Ok(())
}

/// Creates or replaces a trigger: its consumer first, then its definition; a consumer of an older topic goes.
pub async fn write_trigger(registry: &Registry, trigger: &Trigger, function: &Function) -> Result<(), DeployError> {
    let js = registry.jetstream();
    let old = registry.trigger(&trigger.name).await?;
    crate::nats::streams::ensure_consumer(js, trigger, &function.manifest.limits).await?;
    registry.put_trigger(trigger).await?;
    if let Some(old) = old.filter(|o| o.consumer_name() != trigger.consumer_name()) {
        crate::nats::streams::delete_consumer(js, &old).await?;
    }
    Ok(())
}

/// Deletes a trigger: definition first (runners stop), then its consumer.
pub async fn delete_trigger(registry: &Registry, trigger: &Trigger) -> Result<(), DeployError> {
    registry.delete_trigger(&trigger.name).await?;
    crate::nats::streams::delete_consumer(registry.jetstream(), trigger).await?;
    Ok(())
}

/// Checks a trigger against the registry (its function exists, its topic is inside the alert stream's
/// subjects and, unless `force`, one falcosidekick can publish on: [`check_topic`]; its condition compiles),
/// then writes it; returns its pattern.
pub async fn create_trigger(registry: &Registry, trigger: &Trigger, force: bool) -> Result<Pattern, DeployError> {
    check_trigger(trigger, force)?;
    let function =
        registry.function(&trigger.function).await?.ok_or_else(|| DeployError::NoFunction(trigger.function.clone()))?;
    let subjects = crate::nats::streams::alert_subjects(registry.jetstream()).await?;
    let pattern = check_topic(&trigger.topic, Some(&subjects), force)?;
    write_trigger(registry, trigger, &function).await?;
    Ok(pattern)
}

/// What [`deploy_with_triggers`] wrote.
pub struct Deployed {
    /// The function's triggers now.
    pub triggers: Vec<Trigger>,
    /// Triggers of the function that were removed because they were no longer asked for.
    pub removed: Vec<Trigger>,
}

/// The triggers `deploy_playbook` gives function `function`: `<function>-trigger-<index>`, one per topic, each
/// with the condition `when`.
pub fn numbered_triggers(
    function: &str,
    topics: &[String],
    when: Option<&str>,
    on_condition_error: crate::model::trigger::OnConditionError,
) -> Vec<Trigger> {
    topics
        .iter()
        .enumerate()
        .map(|(i, topic)| Trigger {
            name: format!("{function}-trigger-{i}"),
            function: function.to_owned(),
            topic: topic.clone(),
            when: when.map(str::to_owned),
            on_condition_error,
        })
        .collect()
}

/// Deploys a prepared function with exactly these triggers (the `deploy_playbook` workflow): every topic is
/// checked ([`check_topic`]; `force` keeps topics falcosidekick never publishes on) first, then the function
/// and its triggers are written, and the function's other triggers removed.
pub async fn deploy_with_triggers(
    registry: &Registry,
    prepared: &PreparedFunction,
    triggers: Vec<Trigger>,
    force: bool,
) -> Result<Deployed, DeployError> {
    if triggers.is_empty() {
        return Err(DeployError::NoTopics);
    }
    for t in &triggers {
        check_trigger(t, force)?;
    }
    let subjects = crate::nats::streams::alert_subjects(registry.jetstream()).await?;
    for t in &triggers {
        check_topic(&t.topic, Some(&subjects), force)?;
    }
    write_function(registry, prepared).await?;
    for t in &triggers {
        write_trigger(registry, t, &prepared.function).await?;
    }
    let name = &prepared.function.name;
    let removed: Vec<Trigger> = registry
        .triggers()
        .await?
        .into_values()
        .filter(|t| t.function == *name && !triggers.iter().any(|n| n.name == t.name))
        .collect();
    for t in &removed {
        delete_trigger(registry, t).await?;
    }
    Ok(Deployed { triggers, removed })
}

/// Deletes a function and its triggers (each trigger as [`delete_trigger`] does); returns the triggers deleted.
pub async fn delete_function(registry: &Registry, name: &str) -> Result<Vec<Trigger>, DeployError> {
    if registry.function(name).await?.is_none() {
        return Err(DeployError::UnknownFunction(name.to_owned()));
    }
    let triggers: Vec<Trigger> = registry.triggers().await?.into_values().filter(|t| t.function == name).collect();
    for t in &triggers {
        delete_trigger(registry, t).await?;
    }
    registry.delete_function(name).await?;
    crate::nats::dedup::delete(registry.jetstream(), name).await?;
    Ok(triggers)
}

/// Puts condition `when` (or none), with what an alert it cannot judge does, on every trigger of `function`
/// (`function deploy --when [--on-condition-error]`); checks it first. Returns the triggers rewritten.
pub async fn set_condition(
    registry: &Registry,
    function: &Function,
    when: Option<&str>,
    on_condition_error: crate::model::trigger::OnConditionError,
) -> Result<Vec<Trigger>, DeployError> {
    if let Some(w) = when {
        Condition::compile(w)?;
    }
    let mut rewritten = Vec::new();
    for mut t in registry.triggers().await?.into_values().filter(|t| t.function == function.name) {
        t.when = when.map(str::to_owned);
        t.on_condition_error = on_condition_error;
        write_trigger(registry, &t, function).await?;
        rewritten.push(t);
    }
    Ok(rewritten)
}
