//! `riposte doctor`: runs the library's checks ([`riposte::doctor`]) with the options a runner on this
//! machine would get, prints one line per check (and the fix), exits 1 when any check failed.

use anyhow::Result;
use riposte::doctor::{self, DoctorConfig, Level};
use riposte::state_dir::StateDir;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object: {"checks": [{"name", "level", "detail", "fix"}], "failures": N, "warnings": N}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: super::args::NatsArgs,
    #[command(flatten)]
    backends: super::args::BackendArgs,
    #[command(flatten)]
    container: super::args::ContainerArgs,
}

pub async fn run(args: Args, state: &StateDir) -> Result<ExitCode> {
    let config = DoctorConfig {
        nats: args.nats.config("riposte-doctor"),
        state: state.clone(),
        container_host: args.container.container_host.clone(),
        kubeconfig: args.backends.kubeconfig.clone(),
        ca_bundle: args.backends.ca_bundle.clone(),
        proxy: args.backends.proxy.clone(),
    };
    let checks = doctor::run(&config).await;
    let count = |level| checks.iter().filter(|c| c.level == level).count();
    let (failures, warnings) = (count(Level::Failure), count(Level::Warning));
    if args.json {
        println!("{}", serde_json::json!({ "checks": checks, "failures": failures, "warnings": warnings }));
    } else {
        for c in &checks {
            println!("{:<8} {:<28} {}", c.level.as_str(), c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("{:<8} {:<28} fix: {fix}", "", "");
            }
        }
        println!("{} checks: {failures} failed, {warnings} warnings", checks.len());
    }
    Ok(if failures > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
