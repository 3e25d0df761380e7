//! `riposte build [PLAYBOOK...]`.

use anyhow::Result;
use riposte::model::manifest::Kind;
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Builder;
use riposte::ops::builder::Catalog;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Playbooks to build (default: every WASM playbook in the catalog).
    names: Vec<String>,
}

pub async fn run(args: Args, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    let builder = builder(playbooks, state);
    let names = if args.names.is_empty() {
        builder
            .names()
            .into_iter()
            .filter(|n| builder.manifest(n).map(|(_, m)| m.kind == Kind::Wasm).unwrap_or(true))
            .collect()
    } else {
        args.names
    };
    if names.is_empty() {
        anyhow::bail!(
            "no playbooks in {}: pass --playbooks DIR, or create one with `riposte new NAME`",
            playbooks.searched()
        );
    }
    let built = build_all(&builder, &names).await?;
    for b in built {
        println!("{:<10} {} {}", b.name, if b.rebuilt { "built " } else { "cached" }, b.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A builder that says "building P…" on stderr when stderr is a terminal (a first build is silent for ~20 s
/// otherwise); scripts and logs get nothing extra.
pub fn builder(playbooks: &Catalog, state: &StateDir) -> Builder {
    let builder = Builder::new(playbooks.clone(), state);
    if std::io::stderr().is_terminal() {
        builder.on_build(|name| eprintln!("building {name}…"))
    } else {
        builder
    }
}

/// Builds several playbooks, as many at once as there are cores.
pub async fn build_all(builder: &Builder, names: &[String]) -> Result<Vec<riposte::ops::builder::Built>> {
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut out = Vec::new();
    for chunk in names.chunks(parallel) {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|n| s.spawn(move || builder.build(n))).collect();
            handles.into_iter().map(|h| h.join().expect("build thread panicked")).collect()
        });
        for r in results {
            out.push(r?);
        }
    }
    Ok(out)
}
