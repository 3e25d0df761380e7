//! Deploying: everything is checked (playbook, settings, component, topics, NATS) before anything is
//! written; then the artifact, the function and its triggers are written, consumers before definitions, so a
//! runner never sees a trigger without the consumer that keeps its alerts.
//! Also `riposte deploy-playbook` (what `./deploy_playbook` runs).

use anyhow::{bail, Context, Result};
use riposte::builder::Builder;
use riposte::function::{parse_setting, valid_name, Function, Settings};
use riposte::manifest::{Kind, Manifest};
use riposte::registry::Registry;
use riposte::runtime::{Runtime, RuntimeConfig};
use riposte::state::StateDir;
use riposte::trigger::Trigger;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where a function's code comes from.
pub enum Source {
    /// A playbook: a folder, or a name in the catalog.
    Playbook(String),
    /// A component file, with an optional manifest (default: no capabilities, default limits).
    Wasm { file: PathBuf, manifest: Option<PathBuf> },
}

/// A function ready to be written, with its component bytes (none for a container function).
pub struct Prepared {
    pub function: Function,
    pub bytes: Option<Vec<u8>>,
}

/// Checks and builds a function without writing anything.
pub async fn prepare(
    name: &str,
    source: &Source,
    settings: &[String],
    runs_on: Option<String>,
    playbooks: &Path,
    state: &StateDir,
) -> Result<Prepared> {
    if !valid_name(name) {
        bail!("function name {name:?} is not valid: use lower-case letters, digits and '-', at most 63");
    }
    if let Some(r) = &runs_on {
        if !valid_name(r) {
            bail!("--runs-on {r:?} is not a valid runner name: use lower-case letters, digits and '-'");
        }
    }
    let given = settings.iter().map(|s| parse_setting(s)).collect::<Result<Vec<_>, _>>()?;
    let (manifest, settings, bytes) = match source {
        Source::Playbook(p) => {
            let path = Path::new(p);
            let (catalog, playbook) = if path.join("playbook.toml").is_file() {
                let dir = path.canonicalize().with_context(|| format!("playbook folder {p}"))?;
                let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                (dir.parent().map(Path::to_path_buf).unwrap_or_default(), name)
            } else {
                (playbooks.to_path_buf(), p.clone())
            };
            let builder = Builder::new(catalog, state);
            let (dir, manifest) = builder.manifest(&playbook)?;
            let settings = Settings::resolve(&manifest, &given)?;
            let bytes = match manifest.kind {
                Kind::Wasm => {
                    let built = tokio::task::block_in_place(|| builder.build(&playbook))?;
                    Some(std::fs::read(&built.path).with_context(|| format!("reading {}", built.path.display()))?)
                }
                Kind::Container => {
                    ensure_image_here(&manifest, &dir).await?;
                    None
                }
            };
            (manifest, settings, bytes)
        }
        Source::Wasm { file, manifest } => {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read component {}", file.display()))?;
            let (manifest, settings) = match manifest {
                Some(m) => {
                    let text = std::fs::read_to_string(m).with_context(|| format!("cannot read manifest {}", m.display()))?;
                    let manifest = Manifest::parse(&text).map_err(|why| anyhow::anyhow!("{} is not a valid manifest: {why}", m.display()))?;
                    let settings = Settings::resolve(&manifest, &given)?;
                    (manifest, settings)
                }
                None => {
                    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n")).expect("a minimal manifest parses");
                    (manifest, Settings::from_pairs(given))
                }
            };
            (manifest, settings, Some(bytes))
        }
    };
    let artifact = match &bytes {
        Some(bytes) => {
            // Compiling now checks the component and fills this machine's compile cache for local runners.
            let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: false })?;
            let component = tokio::task::block_in_place(|| runtime.load(bytes, &format!("function {name}")))?;
            component.digest.clone()
        }
        None => manifest.container.as_ref().map(|c| c.image.clone()).unwrap_or_default(),
    };
    let function = Function { name: name.to_owned(), manifest, artifact, settings, runs_on };
    Ok(Prepared { function, bytes })
}

/// Builds a container playbook's image in this machine's container engine when it is missing there (the
/// engine runners on this machine use). With no engine here, says that runners need the image and goes on.
async fn ensure_image_here(manifest: &riposte::manifest::Manifest, dir: &Path) -> Result<()> {
    let image = manifest.container.as_ref().map(|c| c.image.as_str()).unwrap_or_default();
    match riposte::container::ContainerEngine::connect(None).await {
        Ok(engine) => {
            if engine.ensure_image(manifest, dir).await? == riposte::container::image::Prepared::Built {
                eprintln!("riposte: built image {image} in the container engine at {}", engine.host());
            }
        }
        Err(e) => eprintln!("riposte: note: {e}; the runners that take this function need image {image}"),
    }
    Ok(())
}

/// Writes the artifact and the function.
pub async fn write_function(registry: &Registry, prepared: &Prepared) -> Result<()> {
    if let Some(bytes) = &prepared.bytes {
        registry.put_artifact(bytes).await?;
    }
    registry.put_function(&prepared.function).await?;
    Ok(())
}

/// Creates or replaces a trigger: its consumer first, then its definition; a consumer of an older topic goes.
pub async fn write_trigger(registry: &Registry, trigger: &Trigger, function: &Function) -> Result<()> {
    let js = registry.jetstream();
    let old = registry.trigger(&trigger.name).await?;
    riposte::streams::ensure_consumer(js, trigger, &function.manifest.limits).await?;
    registry.put_trigger(trigger).await?;
    if let Some(old) = old.filter(|o| o.consumer_name() != trigger.consumer_name()) {
        riposte::streams::delete_consumer(js, &old).await?;
    }
    Ok(())
}

/// Deletes a trigger: definition first (runners stop), then its consumer.
pub async fn delete_trigger(registry: &Registry, trigger: &Trigger) -> Result<()> {
    registry.delete_trigger(&trigger.name).await?;
    riposte::streams::delete_consumer(registry.jetstream(), trigger).await?;
    Ok(())
}

/// `riposte deploy-playbook` / `./deploy_playbook`.
#[derive(Debug, clap::Args)]
pub struct PlaybookArgs {
    /// The playbook (a name in the catalog, or a folder): deployed as function falco-<playbook>.
    #[arg(short = 'p', long = "playbook")]
    playbook: String,
    /// A setting, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// A subject pattern that triggers it (repeatable): triggers falco-<playbook>-trigger-<index>.
    #[arg(short = 't', long = "trigger", value_name = "TOPIC")]
    topics: Vec<String>,
    /// Run it only on the runner of this name.
    #[arg(long)]
    runs_on: Option<String>,
    #[command(flatten)]
    nats: super::connect::NatsArgs,
}

pub async fn deploy_playbook(args: PlaybookArgs, playbooks: &Path, state: &StateDir) -> Result<ExitCode> {
    if args.topics.is_empty() {
        bail!("no trigger given: pass at least one -t TOPIC, e.g. -t 'falco.error.*'");
    }
    for topic in &args.topics {
        riposte::trigger::Pattern::parse(topic)?;
    }
    let base = Path::new(&args.playbook).file_name().and_then(|n| n.to_str()).unwrap_or(&args.playbook).to_owned();
    let name = format!("falco-{base}");
    let prepared = prepare(&name, &Source::Playbook(args.playbook.clone()), &args.settings, args.runs_on.clone(), playbooks, state).await?;
    let registry = args.nats.registry(state).await?;
    let subjects = riposte::streams::alert_subjects(registry.jetstream()).await?;
    let triggers: Vec<Trigger> = args
        .topics
        .iter()
        .enumerate()
        .map(|(i, topic)| Trigger { name: format!("{name}-trigger-{i}"), function: name.clone(), topic: topic.clone() })
        .collect();
    for t in &triggers {
        riposte::streams::check_topic(&t.topic, &subjects)?;
    }
    // Everything checked: write.
    write_function(&registry, &prepared).await?;
    for t in &triggers {
        write_trigger(&registry, t, &prepared.function).await?;
    }
    let stale: Vec<Trigger> = registry
        .triggers()
        .await?
        .into_values()
        .filter(|t| t.function == name && !triggers.iter().any(|n| n.name == t.name))
        .collect();
    for t in &stale {
        delete_trigger(&registry, t).await?;
    }
    println!("function {name} deployed ({} {})", prepared.function.manifest.kind.as_str(), short(&prepared.function.artifact));
    for t in &triggers {
        println!("trigger {} -> {} on {}", t.name, name, t.topic);
    }
    for t in &stale {
        println!("trigger {} removed (no longer asked for)", t.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The first 12 characters of a digest.
pub fn short(artifact: &str) -> &str {
    if artifact.len() == 64 { &artifact[..12] } else { artifact }
}
