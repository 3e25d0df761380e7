//! `riposte doctor`: runs the library's checks ([`riposte::ops::doctor`]) with the options a runner on this
//! machine would get, prints one line per check (and the fix), exits 1 when any check failed.

use super::args::{MissingKey, Server};
use anyhow::Result;
use riposte::model::state_dir::StateDir;
use riposte::ops::doctor::{self, Check, DoctorConfig, Level, Role};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object: {"checks": [{"name", "level", "detail", "fix"}], "failures": N, "warnings": N}.
    #[arg(long)]
    json: bool,
    /// Whose NATS permissions to probe: `runner` (what `riposte run` publishes on), `deployer` (deploying,
    /// creating streams), or both (`--role runner,deployer`). Each subject gets one request built to change
    /// nothing; the subjects the server answers with a permissions violation are listed (about 2 s).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "runner")]
    role: Vec<RoleArg>,
    /// The name of the runner on this machine (`riposte run --name`; default the host name): its NATS
    /// credential may publish only its own records and heartbeat, so its permissions are probed under it.
    #[arg(long, env = "RIPOSTE_RUNNER_NAME")]
    name: Option<String>,
    #[command(flatten)]
    nats: super::args::NatsArgs,
    #[command(flatten)]
    key: super::args::SettingsKeyArgs,
    #[command(flatten)]
    backends: super::args::BackendArgs,
    #[command(flatten)]
    container: super::args::ContainerArgs,
    /// With --http-addr: the HTTP input's configuration is checked as `riposte run` would (authentication
    /// given, token file private and not empty, certificate and key readable and matching).
    #[command(flatten)]
    http: super::args::HttpInputArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Runner,
    Deployer,
}

pub async fn run(args: Args, state: &StateDir) -> Result<ExitCode> {
    let nats = args.nats.config("riposte-doctor")?;
    let local = nats.resolve_url(state).is_ok_and(|(_, local)| local);
    let runner_name = args.name.clone().unwrap_or_else(super::run::hostname);
    let config = DoctorConfig {
        runner_name,
        settings_keys: args.key.keys(state, Server::local_if(local), MissingKey::None)?,
        nats,
        state: state.clone(),
        container_host: args.container.container_host.clone(),
        kubeconfig: args.backends.kubeconfig.clone(),
        ca_bundle: args.backends.ca_bundle.clone(),
        proxy: args.backends.proxy.clone(),
        roles: args
            .role
            .iter()
            .map(|r| match r {
                RoleArg::Runner => Role::Runner,
                RoleArg::Deployer => Role::Deployer,
            })
            .collect(),
    };
    let mut checks = doctor::run(&config).await;
    if let Some(http) = args.http.config() {
        checks.push(match http.check() {
            Ok(()) => {
                let auth = match (&http.token_file, &http.client_ca) {
                    (Some(_), Some(_)) => "bearer tokens and client certificates",
                    (Some(_), None) => "bearer tokens",
                    (None, Some(_)) => "client certificates",
                    (None, None) => "none (--http-allow-anonymous)",
                };
                let scheme = if http.tls_cert.is_some() { "HTTPS" } else { "plain HTTP" };
                let detail = format!("{scheme} on {}, authentication: {auth}", http.addr);
                if http.token_file.is_none() && http.client_ca.is_none() {
                    Check::warning(
                        "http input",
                        detail,
                        "keep the port on a network only Falco reaches, or give --http-token-file",
                    )
                } else {
                    Check::ok("http input", detail)
                }
            }
            Err(e) => Check::failure("http input", e.to_string(), "fix the --http-* options as the message says"),
        });
    }
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
