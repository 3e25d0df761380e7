//! `riposte run`: the runner. Connects to NATS (or starts a local nats-server), then dispatches alerts to
//! the deployed functions until SIGINT/SIGTERM, finishing the reactions in flight before it exits.

use anyhow::{Context, Result};
use riposte::embedded::NatsServer;
use riposte::engine::{Runner, RunnerConfig};
use riposte::state::StateDir;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    nats: super::connect::NatsArgs,
    /// This runner's name; functions deployed with --runs-on NAME run only on the runner of that name.
    #[arg(long, env = "RIPOSTE_RUNNER_NAME")]
    name: Option<String>,
    /// Subjects the alert stream captures (comma-separated); falcosidekick publishes on falco.<priority>.<rule>.
    #[arg(long, env = "RIPOSTE_STREAM_SUBJECTS", value_delimiter = ',', default_value = riposte::streams::DEFAULT_ALERT_SUBJECTS)]
    stream_subjects: Vec<String>,
    /// Alerts in flight at once on this runner, across all functions.
    #[arg(long, env = "RIPOSTE_MAX_IN_FLIGHT", default_value_t = riposte::runtime::limits::RUNNER_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    #[command(flatten)]
    backends: super::call::BackendArgs,
    #[command(flatten)]
    container: super::call::ContainerArgs,
}

pub async fn run(args: Args, state: &StateDir) -> Result<ExitCode> {
    let shutdown = Shutdown::listen()?;
    let name = args.name.clone().unwrap_or_else(hostname);
    if !riposte::function::valid_name(&name) {
        anyhow::bail!("runner name {name:?} is not valid: use lower-case letters, digits and '-' (--name)");
    }
    for s in &args.stream_subjects {
        riposte::trigger::Pattern::parse(s).with_context(|| "--stream-subjects")?;
    }
    let config = args.nats.config(&format!("riposte-run-{name}"));
    let mut embedded = None;
    let (url, local) = match &config.url {
        Some(url) => (url.clone(), false),
        None => match riposte::embedded::recorded_url(state) {
            // A local server left by an earlier run that still answers: use it rather than start a second one
            // on the same data directory.
            Some(url) if config.connect(&url, true).await.is_ok() => {
                eprintln!("riposte: no --nats given: using the local nats-server at {url} (started earlier)");
                (url, true)
            }
            _ => {
                let server = tokio::task::block_in_place(|| NatsServer::start_for_state(state))?;
                let url = server.url();
                eprintln!(
                    "riposte: no --nats given: started a local nats-server at {url} with JetStream (data in {}); \
                     other riposte commands on this machine find it through the state directory",
                    state.root().join("nats").display()
                );
                embedded = Some(server);
                (url, true)
            }
        },
    };
    let client = config.connect(&url, local).await?;
    let backends = args.backends.backends(state)?;
    let runner_config = RunnerConfig {
        name: name.clone(),
        alert_subjects: args.stream_subjects.clone(),
        max_in_flight: args.max_in_flight,
        state: state.clone(),
        pooling: true,
        containers: riposte::engine::functions::ContainerSetup {
            host: args.container.container_host.clone(),
            ca_bundle: args.backends.ca_bundle.clone(),
        },
    };
    let runner = Runner::start(client, runner_config, backends).await?;
    eprintln!(
        "riposte: runner {name} connected to {} (alerts on {}); watching the registry",
        riposte::nats::redact_url(&url),
        args.stream_subjects.join(",")
    );
    shutdown.wait().await;
    eprintln!("riposte: stopping: finishing the reactions in flight");
    runner.stop().await;
    drop(embedded);
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM, listened for from the start of `riposte run`: a signal that arrives while the runner is
/// still starting (starting nats-server, connecting) stops it gracefully once started, instead of killing it.
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn listen() -> Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(true);
        });
        Ok(Shutdown(rx))
    }

    async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The host name, made into a valid runner name.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "riposte".into());
    let name: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "riposte".into() } else { name }
}
