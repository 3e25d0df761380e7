//! `riposte call PLAYBOOK --alert FILE [-e KEY=VALUE]... [--dry-run]`: one run, real capabilities (or, with
//! `--dry-run`, recording backends: the calls it would make are printed, none is made).

use anyhow::{Context, Result};
use riposte::execute::container::image::ImageStatus;
use riposte::execute::runtime::{Runtime, RuntimeConfig};
use riposte::model::alert::Alert;
use riposte::model::execution::Handler;
use riposte::model::function::{parse_setting, Function, Settings};
use riposte::model::manifest::Kind;
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Catalog;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The playbook (a folder in the catalog).
    playbook: String,
    /// The alert: a falcosidekick JSON file, or - for stdin.
    #[arg(long, short)]
    alert: PathBuf,
    /// A setting (repeatable): KEY=VALUE; KEY=@FILE, the value read from FILE (without one trailing
    /// newline; KEY=@@… for a value starting with @); or KEY alone, the value of the environment variable
    /// KEY. The last two keep a secret out of the command line, which every local user can read.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE|KEY=@FILE|KEY")]
    settings: Vec<String>,
    #[command(flatten)]
    backends: super::args::BackendArgs,
    #[command(flatten)]
    container: super::args::ContainerArgs,
    #[command(flatten)]
    build: super::args::BuildArgs,
    /// Print the execution as JSON.
    #[arg(long)]
    json: bool,
    /// Record every capability call instead of making it (HTTP, Kubernetes, object store) and print them.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: Args, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    let builder = super::build::builder(playbooks, state);
    let (dir, manifest) = builder.manifest(&args.playbook)?;
    let given = args.settings.iter().map(|s| parse_setting(s)).collect::<Result<Vec<_>, _>>()?;
    let settings = Settings::resolve(&manifest, &given)?;
    let raw = super::print::read_alert(&args.alert)?;
    let alert = Alert::parse(&raw).with_context(|| format!("alert {}", args.alert.display()))?;
    if args.dry_run && manifest.kind == Kind::Container {
        anyhow::bail!(
            "{} is a container action: --dry-run works for WebAssembly playbooks only (a container reaches the world itself)",
            args.playbook
        );
    }
    let exec = if manifest.kind == Kind::Container {
        let engine = args.container.engine(args.backends.ca_bundle.clone()).await?;
        if engine.ensure_image(&manifest, &dir, &args.build.allow()).await? == ImageStatus::Built {
            tracing::info!(playbook = %args.playbook, "built image {}", manifest.container.as_ref().map(|c| c.image.as_str()).unwrap_or(""));
        }
        let image = manifest.container.as_ref().map(|c| c.image.clone()).unwrap_or_default();
        let function = Function {
            name: args.playbook.clone(),
            manifest,
            artifact: image,
            settings,
            runs_on: None,
            policy: Default::default(),
        };
        engine.function(&function).handle(&alert).await
    } else {
        let backends = match args.dry_run {
            true => riposte::execute::capability::recording::Scoped::backends(),
            false => args.backends.backends(state)?,
        };
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: false })?;
        let (component, _) = tokio::task::block_in_place(|| builder.load(&runtime, &args.playbook))?;
        let function = Function {
            name: args.playbook.clone(),
            manifest,
            artifact: component.digest.clone(),
            settings,
            runs_on: None,
            policy: Default::default(),
        };
        let handler: std::sync::Arc<dyn Handler> =
            std::sync::Arc::new(runtime.function(component, &function, backends));
        match args.dry_run {
            true => riposte::execute::handlers::DryRun::new(handler, &function).handle(&alert).await,
            false => handler.handle(&alert).await,
        }
    };
    super::print::execution(&exec, args.json)
}
