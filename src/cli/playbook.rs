//! `riposte playbook list`.

use anyhow::Result;
use riposte::builder::Builder;
use riposte::state_dir::StateDir;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every playbook in the catalog with its kind, capabilities and settings.
    List,
}

pub async fn run(cmd: Command, playbooks: &Path, state: &StateDir) -> Result<ExitCode> {
    match cmd {
        Command::List => {
            let builder = Builder::new(playbooks.to_owned(), state);
            println!("{:<10} {:<9} {:<32} SETTINGS", "NAME", "KIND", "CAPABILITIES");
            for name in builder.names() {
                let (_, m) = builder.manifest(&name)?;
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
                    settings.join(" ")
                );
                if !m.description.is_empty() {
                    println!("{:<10} {}", "", m.description);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
