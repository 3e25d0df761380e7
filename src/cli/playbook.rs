//! `riposte playbook list | helpers`.

use super::print::cell;
use anyhow::Result;
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Builder;
use riposte::ops::builder::Catalog;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every playbook in the catalog with its kind, capabilities and settings. A playbook whose manifest is
    /// invalid is listed as INVALID with the error; the exit code is 0 unless --strict.
    List {
        /// Exit with 1 when a manifest is invalid.
        #[arg(long)]
        strict: bool,
    },
    /// The helper library playbooks import (`from riposte_playbook import …`): each helper and its doc.
    Helpers,
}

pub async fn run(cmd: Command, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    match cmd {
        Command::List { strict } => {
            let builder = Builder::new(playbooks.clone(), state);
            let names = builder.names();
            if names.is_empty() {
                anyhow::bail!(
                    "no playbooks in {}: pass --playbooks DIR, or create one with `riposte new NAME`",
                    playbooks.searched()
                );
            }
            println!("{:<10} {:<9} {:<32} SETTINGS", "NAME", "KIND", "CAPABILITIES");
            let mut invalid = 0;
            for name in names {
                let m = match builder.manifest(&name) {
                    Ok((_, m)) => m,
                    Err(e) => {
                        invalid += 1;
                        println!("{:<10} {:<9} {}", cell(&name), "INVALID", cell(&e.to_string()));
                        continue;
                    }
                };
                // A manifest is someone else's text: every part of it shown goes through `cell`.
                let settings: Vec<String> = m
                    .settings
                    .iter()
                    .map(|(k, s)| match (&s.default, s.required, s.secret) {
                        (_, true, _) => format!("{k} (required)"),
                        (Some(d), _, false) => format!("{k}={d}"),
                        (Some(_), _, true) => format!("{k}=***"),
                        _ => k.clone(),
                    })
                    .collect();
                println!(
                    "{:<10} {:<9} {:<32} {}",
                    m.name,
                    m.kind.as_str(),
                    m.capabilities.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                    cell(&settings.join(" "))
                );
                if !m.description.is_empty() {
                    println!("{:<10} {}", "", cell(&m.description));
                }
                if m.dry_run != Default::default() {
                    println!("{:<10} dry run answers HTTP {} (its API's success)", "", m.dry_run.http_status);
                }
            }
            if strict && invalid > 0 {
                eprintln!("riposte: {invalid} playbook manifest(s) invalid (see INVALID above)");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Helpers => {
            print!("{}", riposte::ops::assets::helper_reference());
            Ok(ExitCode::SUCCESS)
        }
    }
}
