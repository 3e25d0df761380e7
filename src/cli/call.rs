//! `riposte call PLAYBOOK --alert FILE [-e KEY=VALUE]...`: one run, real capabilities.

use anyhow::{Context, Result};
use riposte::alert::Alert;
use riposte::builder::Builder;
use riposte::container::image::ImageStatus;
use riposte::execution::Handler;
use riposte::function::{parse_setting, Function, Settings};
use riposte::manifest::Kind;
use riposte::runtime::{Runtime, RuntimeConfig};
use riposte::state_dir::StateDir;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The playbook (a folder in the catalog).
    playbook: String,
    /// The alert: a falcosidekick JSON file, or - for stdin.
    #[arg(long, short)]
    alert: PathBuf,
    /// A setting, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    #[command(flatten)]
    backends: super::args::BackendArgs,
    #[command(flatten)]
    container: super::args::ContainerArgs,
    /// Print the execution as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, playbooks: &Path, state: &StateDir) -> Result<ExitCode> {
    let builder = Builder::new(playbooks.to_owned(), state);
    let (dir, manifest) = builder.manifest(&args.playbook)?;
    let given = args.settings.iter().map(|s| parse_setting(s)).collect::<Result<Vec<_>, _>>()?;
    let settings = Settings::resolve(&manifest, &given)?;
    let raw = super::print::read_alert(&args.alert)?;
    let alert = Alert::parse(&raw).with_context(|| format!("alert {}", args.alert.display()))?;
    let exec = if manifest.kind == Kind::Container {
        let engine = args.container.engine(args.backends.ca_bundle.clone()).await?;
        if engine.ensure_image(&manifest, &dir).await? == ImageStatus::Built {
            tracing::info!(playbook = %args.playbook, "built image {}", manifest.container.as_ref().map(|c| c.image.as_str()).unwrap_or(""));
        }
        let image = manifest.container.as_ref().map(|c| c.image.clone()).unwrap_or_default();
        let function = Function { name: args.playbook.clone(), manifest, artifact: image, settings, runs_on: None };
        engine.function(&function).handle(&alert).await
    } else {
        let backends = args.backends.backends(state)?;
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: false })?;
        let (component, _) = tokio::task::block_in_place(|| builder.load(&runtime, &args.playbook))?;
        let function = Function {
            name: args.playbook.clone(),
            manifest,
            artifact: component.digest.clone(),
            settings,
            runs_on: None,
        };
        runtime.function(component, &function, backends).handle(&alert).await
    };
    super::print::execution(&exec, args.json)
}
