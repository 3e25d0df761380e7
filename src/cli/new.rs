//! `riposte new NAME [--from PLAYBOOK]`.

use anyhow::Result;
use riposte::ops::builder::Catalog;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new playbook's name (lower-case letters, digits and '-').
    name: String,
    /// Copy this playbook of the catalog (and its spec) instead of starting from the template.
    #[arg(long, value_name = "PLAYBOOK")]
    from: Option<String>,
    /// The specs folder (default: specs/ beside the playbook catalog).
    #[arg(long, env = "RIPOSTE_SPECS")]
    specs: Option<PathBuf>,
}

pub fn run(args: Args, catalog: &Catalog) -> Result<ExitCode> {
    let playbooks = &catalog.for_new();
    let specs = args.specs.unwrap_or_else(|| super::spec::default_specs_dir(playbooks));
    let written = riposte::ops::scaffold::create(playbooks, &specs, &args.name, args.from.as_deref())?;
    for path in &written {
        println!("created {}", path.display());
    }
    let name = &args.name;
    println!("next:\n  riposte spec {name}          # run its spec (builds it first)");
    if args.from.is_none() {
        println!(
            "  riposte call {name} --alert {}/alerts/{}.json -e WEBHOOK_URL=https://...",
            specs.display(),
            riposte::ops::assets::SAMPLE_ALERT_NAME
        );
        println!("  riposte function deploy {name} --playbook {name} -e WEBHOOK_URL=https://...");
    }
    Ok(ExitCode::SUCCESS)
}
