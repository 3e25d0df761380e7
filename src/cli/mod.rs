//! The command line: clap definitions and dispatch. Errors end here as one line that says what to do.

mod apply;
mod args;
mod build;
mod call;
mod deploy;
mod doctor;
mod function;
mod ingest;
mod new;
mod playbook;
mod print;
mod run;
mod runner;
mod settings_key;
mod spec;
mod trigger;

use clap::{Parser, Subcommand, ValueEnum};
use riposte::model::state_dir::StateDir;
use std::path::PathBuf;
use std::process::ExitCode;

/// riposte reacts to Falco alerts: NATS subjects trigger sandboxed WebAssembly or container playbooks.
#[derive(Debug, Parser)]
#[command(name = "riposte", version, about, long_about = None)]
pub struct Cli {
    /// Where built components, the compile cache and local data live.
    #[arg(long, global = true, env = "RIPOSTE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The playbook catalog, for every command: this folder alone when given; else ./playbooks when it exists,
    /// then the catalog installed with riposte (<prefix>/share/riposte/playbooks), a playbook taken from the
    /// first that has it. `riposte new` writes into ./playbooks unless this names another folder.
    #[arg(long, global = true, env = "RIPOSTE_PLAYBOOKS")]
    playbooks: Option<PathBuf>,
    /// Log format on stderr (RUST_LOG sets the level, default info).
    #[arg(long, global = true, env = "RIPOSTE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a playbook (playbooks/NAME: manifest and app.py) and its spec (specs/NAME.toml), from riposte's
    /// webhook template or --from another playbook; `riposte spec NAME` passes as generated.
    New(new::Args),
    /// Build playbooks into WebAssembly components (all of them when none is named); cached by source digest.
    Build(build::Args),
    /// Run playbook specs (specs/<playbook>.toml) with recorded capabilities: no network, no cluster.
    Spec(spec::Args),
    /// Run a playbook once on an alert file, with real capabilities and -e KEY=VALUE settings.
    Call(call::Args),
    /// The playbook catalog.
    #[command(subcommand)]
    Playbook(playbook::Command),
    /// Run the trigger engine: dispatch alerts from NATS to the deployed functions (starts a local
    /// nats-server when no --nats is given).
    Run(run::Args),
    /// The HTTP alert input alone (no runner): take Falco's or falcosidekick's POSTs into the alert stream of
    /// this NATS, for the runners elsewhere to react (--http-addr and the same options as `run`).
    Ingest(ingest::Args),
    /// Deployed functions: deploy, list, delete, logs, top, call.
    #[command(subcommand)]
    Function(function::Command),
    /// Triggers: subject patterns bound to functions.
    #[command(subcommand)]
    Trigger(trigger::Command),
    /// Runners on this NATS, from their heartbeats.
    #[command(subcommand)]
    Runner(runner::Command),
    /// Check this machine and its NATS before going live: each check ok, warning or failure with the fix;
    /// exits 1 when any check fails.
    Doctor(doctor::Args),
    /// Build and deploy a catalog playbook as falco-<playbook> with triggers falco-<playbook>-trigger-<i>
    /// (what ./deploy_playbook runs).
    DeployPlaybook(deploy::PlaybookArgs),
    /// Make the registry match a file declaring functions and triggers (YAML, or TOML): prints the plan
    /// (create / update / unchanged / delete), then writes; a second apply changes nothing.
    Apply(apply::ApplyArgs),
    /// Print the deployed functions and triggers as a file `riposte apply` takes (secret settings as
    /// env: references to fill in).
    Export(apply::ExportArgs),
    /// The settings key that seals secret setting values in the registry (README: Settings at rest).
    #[command(subcommand)]
    SettingsKey(settings_key::Command),
}

/// Parses arguments, runs the command, and turns an error into one line and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // RIPOSTE_TIMINGS (tests only) shortens the periods a runner waits on; a value that cannot be read stops here.
    match riposte::model::timings::Timings::from_env() {
        Ok(t) => {
            riposte::model::timings::install(t);
        }
        Err(e) => {
            eprintln!("riposte: {e}");
            return ExitCode::FAILURE;
        }
    }
    let state = StateDir::new(cli.state_dir.clone());
    let playbooks = riposte::ops::builder::Catalog::resolve(cli.playbooks.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot start tokio");
    let result = runtime.block_on(async {
        match cli.command {
            Command::New(args) => new::run(args, &playbooks),
            Command::Build(args) => build::run(args, &playbooks, &state).await,
            Command::Spec(args) => spec::run(args, &playbooks, &state).await,
            Command::Call(args) => call::run(args, &playbooks, &state).await,
            Command::Playbook(cmd) => playbook::run(cmd, &playbooks, &state).await,
            Command::Run(args) => run::run(args, &state).await,
            Command::Ingest(args) => ingest::run(args, &state).await,
            Command::Function(cmd) => function::run(cmd, &playbooks, &state).await,
            Command::Trigger(cmd) => trigger::run(cmd, &state).await,
            Command::Runner(cmd) => runner::run(cmd, &state).await,
            Command::Doctor(args) => doctor::run(args, &state).await,
            Command::DeployPlaybook(args) => deploy::deploy_playbook(args, &playbooks, &state).await,
            Command::Apply(args) => apply::apply(args, &playbooks, &state).await,
            Command::Export(args) => apply::export(args, &playbooks, &state).await,
            Command::SettingsKey(cmd) => settings_key::run(cmd),
        }
    });
    // A task still blocked (a lookup, a file read, a client waiting on an unreachable NATS) does not hold the exit.
    runtime.shutdown_timeout(riposte::model::limits::STOP_STEP_TIMEOUT);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("riposte: {}", print::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The log levels without RUST_LOG. async-nats' own connection errors are off: riposte reports a failed connect
/// once in its error, and losing or regaining a connection itself (riposte::nats).
const DEFAULT_LOG_FILTER: &str = "info,wasmtime=warn,cranelift=warn,async_nats=warn,async_nats::connector=off";

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
