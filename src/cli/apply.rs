//! `riposte apply -f FILE` and `riposte export`: the declarative configuration of [`riposte::ops::apply`], parsed
//! and printed here.

use anyhow::Result;
use riposte::model::state_dir::StateDir;
use riposte::ops::apply::{self, Action};
use riposte::ops::builder::Catalog;
use std::path::PathBuf;
use std::process::ExitCode;

/// `riposte apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The file declaring functions and triggers (YAML; TOML when it ends in .toml).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Print the plan only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also delete the functions and triggers the file does not declare.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    build: super::args::BuildArgs,
    #[command(flatten)]
    nats: super::args::NatsArgs,
    #[command(flatten)]
    key: super::args::SettingsKeyArgs,
}

/// `riposte export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    nats: super::args::NatsArgs,
}

pub async fn apply(args: ApplyArgs, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    let (text, declared) = apply::read(&args.file)?;
    let registry = args.nats.keyed_registry(state, &args.key).await?;
    let allow = args.build.allow();
    let plan = apply::plan(
        &text,
        &declared,
        &args.file,
        &registry,
        args.prune,
        riposte::ops::deploy::Workshop { playbooks, state, allow: &allow, sealing: registry.keys().is_some() },
    )
    .await?;
    let mut counts = [0usize; 4];
    for step in &plan.steps {
        let (word, i) = match &step.action {
            Action::Create => ("create".to_owned(), 0),
            Action::Update(what) => (format!("update ({})", what.join("; ")), 1),
            Action::Unchanged => ("unchanged".to_owned(), 2),
            Action::Delete => ("delete".to_owned(), 3),
        };
        counts[i] += 1;
        println!("{} {}: {word} [{}]", step.kind, step.name, step.detail);
    }
    let [create, update, unchanged, delete] = counts;
    let summary = format!("{create} to create, {update} to update, {delete} to delete, {unchanged} unchanged");
    if args.dry_run {
        println!("plan: {summary} (dry run: nothing written)");
    } else if !plan.changes() {
        println!("no change: {summary}");
    } else {
        apply::execute(&registry, &plan).await?;
        println!(
            "applied: {}",
            summary.replace("to create", "created").replace("to update", "updated").replace("to delete", "deleted")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(args: ExportArgs, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    let registry = args.nats.registry(state).await?;
    print!("{}", apply::export(&registry, playbooks, state).await?);
    Ok(ExitCode::SUCCESS)
}
