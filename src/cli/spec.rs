//! `riposte spec [PLAYBOOK...]`.

use anyhow::{Context, Result};
use riposte::execute::runtime::{Runtime, RuntimeConfig};
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Catalog;
use riposte::ops::spec::{run_cases, SpecFile};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Playbooks whose specs to run (default: every specs/*.toml of the first catalog folder).
    names: Vec<String>,
    /// The specs folder (default: specs/ beside the catalog folder that holds the playbook, see --playbooks).
    #[arg(long, env = "RIPOSTE_SPECS")]
    specs: Option<PathBuf>,
}

/// `specs/` beside the catalog.
pub fn default_specs_dir(playbooks: &Path) -> PathBuf {
    playbooks.parent().unwrap_or(Path::new(".")).join("specs")
}

pub async fn run(args: Args, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    // A named playbook's spec is beside the catalog folder it is found in, unless --specs says otherwise.
    let specs_of = |name: &str| match &args.specs {
        Some(dir) => dir.clone(),
        None => default_specs_dir(playbooks.find(name).unwrap_or(playbooks.primary())),
    };
    let mut files: Vec<PathBuf> = if args.names.is_empty() {
        let specs_dir = args.specs.clone().unwrap_or_else(|| default_specs_dir(playbooks.primary()));
        std::fs::read_dir(&specs_dir)
            .with_context(|| format!("cannot read the specs folder {}", specs_dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect()
    } else {
        args.names.iter().map(|n| specs_of(n).join(format!("{n}.toml"))).collect()
    };
    files.sort();
    let builder = super::build::builder(playbooks, state);
    let specs = files.iter().map(|f| SpecFile::load(f)).collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = specs.iter().map(|s| s.playbook.clone()).collect();
    super::build::build_all(&builder, &names).await?;
    let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: true })?;
    let (mut passed, mut failed) = (0, 0);
    for (spec, file) in specs.iter().zip(&files) {
        let alerts = file.parent().unwrap_or(Path::new(".")).join("alerts");
        let (_, manifest) = builder.manifest(&spec.playbook)?;
        let (component, _) = tokio::task::block_in_place(|| builder.load(&runtime, &spec.playbook))?;
        for result in run_cases(&runtime, component, &manifest, spec, &alerts).await {
            if result.failures.is_empty() {
                passed += 1;
                println!("ok    {}: {}", spec.playbook, result.name);
            } else {
                failed += 1;
                println!("FAIL  {}: {}", spec.playbook, result.name);
                for f in &result.failures {
                    println!("    {f}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
