//! `riposte run`: the runner. Connects to NATS (or starts a local nats-server), then dispatches alerts to
//! the deployed functions until SIGINT/SIGTERM, finishing the reactions in flight before it exits. With
//! `--metrics-addr` it also serves Prometheus metrics and health probes ([`riposte::runner::health`]).

use super::args::{MissingKey, Server};
use anyhow::{Context, Result};
use riposte::model::limits::STOP_STEP_TIMEOUT;
use riposte::model::state_dir::StateDir;
use riposte::nats::connect::LocalServer;
use riposte::runner::ingest::Ingest;
use riposte::runner::shutdown::{Shutdown, StopDeadline, Stopper};
use riposte::runner::{Runner, RunnerConfig};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    nats: super::args::NatsArgs,
    #[command(flatten)]
    key: super::args::SettingsKeyArgs,
    /// This runner's name; functions deployed with --runs-on NAME run only on the runner of that name.
    #[arg(long, env = "RIPOSTE_RUNNER_NAME")]
    name: Option<String>,
    /// Subjects the alert stream captures (comma-separated); falcosidekick publishes on falco.<priority>.<rule>.
    #[arg(long, env = "RIPOSTE_STREAM_SUBJECTS", value_delimiter = ',', default_value = riposte::nats::streams::DEFAULT_ALERT_SUBJECTS)]
    stream_subjects: Vec<String>,
    /// Alerts in flight at once on this runner, across all functions.
    #[arg(long, env = "RIPOSTE_MAX_IN_FLIGHT", default_value_t = riposte::model::limits::RUNNER_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    #[command(flatten)]
    backends: super::args::BackendArgs,
    #[command(flatten)]
    container: super::args::ContainerArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics and probes at /healthz and /readyz, e.g.
    /// 127.0.0.1:9464 (port 0 picks one; the address is printed).
    #[arg(long, env = "RIPOSTE_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<String>,
    #[command(flatten)]
    http: super::args::HttpInputArgs,
    /// Idle warm WASM instances kept across all functions (the least recently used released first; 0: none,
    /// every alert instantiates). Memory follows traffic: an instance exists only once its function had an alert.
    #[arg(long, env = "RIPOSTE_MAX_WARM_INSTANCES", value_name = "N", default_value_t = riposte::execute::runtime::DEFAULT_MAX_WARM)]
    max_warm_instances: usize,
    /// Release a warm instance idle this long (90s, 30m, 1h; 0: never, only the budget releases them).
    #[arg(long, env = "RIPOSTE_INSTANCE_IDLE_TIMEOUT", value_name = "WINDOW", default_value = "60s", value_parser = parse_idle)]
    instance_idle_timeout: IdleTimeout,
}

/// `--instance-idle-timeout`: a window, or 0 for never.
#[derive(Debug, Clone, Copy)]
struct IdleTimeout(Option<std::time::Duration>);

fn parse_idle(text: &str) -> Result<IdleTimeout, String> {
    if text.trim() == "0" {
        return Ok(IdleTimeout(None));
    }
    super::args::parse_window(text).map(|w| IdleTimeout(Some(w)))
}

pub async fn run(args: Args, state: &StateDir) -> Result<ExitCode> {
    let mut shutdown = on_signal()?;
    let name = args.name.clone().unwrap_or_else(hostname);
    if !riposte::model::name::valid_name(&name) {
        anyhow::bail!("runner name {name:?} is not valid: use lower-case letters, digits and '-' (--name)");
    }
    for s in &args.stream_subjects {
        riposte::model::trigger::Pattern::parse(s).with_context(|| "--stream-subjects")?;
    }
    let ingest_config = args.http.config();
    if let Some(c) = &ingest_config {
        c.check()?;
    }
    // The endpoint comes first: a bad address stops the runner at once, and /healthz answers while it connects.
    let metrics = args.metrics_addr.as_ref().map(|_| riposte::runner::metrics::Metrics::new());
    let probe: riposte::runner::health::ProbeSlot = Default::default();
    let endpoint = match (&args.metrics_addr, &metrics) {
        (Some(addr), Some(m)) => {
            let e = riposte::runner::health::Endpoint::start(addr, m.clone(), probe.clone(), shutdown.clone()).await?;
            eprintln!("riposte: metrics and probes on http://{}/metrics (/healthz, /readyz)", e.addr());
            Some(e)
        }
        _ => None,
    };
    let config = args.nats.config(&format!("riposte-run-{name}"))?;
    let connection = config.connect_runner(state).await?;
    let (client, url) = (connection.client, connection.url);
    match &connection.local {
        LocalServer::None => {}
        LocalServer::Reused => {
            eprintln!("riposte: no --nats given: using the local nats-server at {url} (started earlier)")
        }
        LocalServer::Started(_) => eprintln!(
            "riposte: no --nats given: started a local nats-server at {url} with JetStream (data in {}); it \
             accepts only the key in {} (other riposte commands run by this user with this state directory find both)",
            state.root().join("nats").display(),
            riposte::nats::embedded::local_seed(state).display()
        ),
    }
    let server = if matches!(connection.local, LocalServer::None) { Server::Given } else { Server::Local };
    let settings_keys = args.key.keys(state, server, MissingKey::Create)?;
    match &settings_keys {
        Some(keys) => eprintln!("riposte: secret setting values open with settings key {}", keys.sealing_key_id()),
        None => eprintln!(
            "riposte: no settings key: functions with secret settings are refused here (give the key file their \
             deployers use: --settings-key-file FILE or RIPOSTE_SETTINGS_KEY_FILE)"
        ),
    }
    let backends = args.backends.backends(state)?;
    let runner_config = RunnerConfig {
        name: name.clone(),
        alert_subjects: args.stream_subjects.clone(),
        max_in_flight: args.max_in_flight,
        state: state.clone(),
        pooling: true,
        containers: args.container.setup(&args.backends),
        metrics,
        streams: args.nats.streams(),
        settings_keys,
        warm: riposte::runner::WarmConfig {
            max_idle: args.max_warm_instances,
            idle_timeout: args.instance_idle_timeout.0,
        },
    };
    let (ingest_client, ingest_counts) =
        (client.clone(), runner_config.metrics.as_ref().map(|m| m.http_input()).unwrap_or_default());
    let runner = Runner::start(client, runner_config, backends).await?;
    let ingest = match &ingest_config {
        Some(config) => {
            // After the runner started: the alert stream exists.
            let js = async_nats::jetstream::new(ingest_client.clone());
            let ingest = Ingest::start(config, js, ingest_client, ingest_counts, shutdown.clone()).await?;
            announce(&ingest, "");
            Some(ingest)
        }
        None => None,
    };
    let _ = probe.set(runner.probe());
    eprintln!(
        "riposte: runner {name} connected to {} (alerts on {}); watching the registry",
        riposte::nats::connect::redact_url(&url),
        args.stream_subjects.join(",")
    );
    shutdown.wait().await;
    eprintln!("riposte: stopping: finishing the reactions in flight");
    let deadline =
        StopDeadline::arm(riposte::model::limits::stop_timeout(), "finishing the reactions in flight", |what| {
            // Past the bound the process ends here, on the deadline's own thread: whatever still waits is abandoned
            // (unacked alerts are redelivered by JetStream).
            eprintln!(
                "riposte: stopped after {} s, abandoning {what} (NATS does not answer)",
                riposte::model::limits::stop_timeout().as_secs()
            );
            std::process::exit(0);
        });
    runner.stop_within(Some(&deadline)).await;
    if let Some(i) = ingest {
        deadline.step("stopping the HTTP input");
        if tokio::time::timeout(STOP_STEP_TIMEOUT, i.stopped()).await.is_err() {
            tracing::warn!("the HTTP input did not stop; abandoning it");
        }
    }
    if let Some(e) = endpoint {
        deadline.step("stopping the probes endpoint");
        if tokio::time::timeout(STOP_STEP_TIMEOUT, e.stopped()).await.is_err() {
            tracing::warn!("the probes endpoint did not stop; abandoning it");
        }
    }
    deadline.step("stopping the local nats-server");
    drop(connection.local);
    // Not done yet: `main` still ends the async runtime's tasks, under the same deadline (which dropping keeps armed).
    deadline.step("ending the async runtime's tasks");
    Ok(ExitCode::SUCCESS)
}

/// Says where the HTTP input listens (`then`: what follows on the line), and warns when it takes anyone's alerts.
pub(crate) fn announce(ingest: &Ingest, then: &str) {
    let scheme = if ingest.tls() { "https" } else { "http" };
    eprintln!("riposte: HTTP alert input on {scheme}://{}/ (POST; /readyz){then}", ingest.addr());
    if ingest.anonymous() {
        eprintln!(
            "riposte: warning: the HTTP input takes alerts from anyone who reaches {} (--http-allow-anonymous): \
             keep it on a network only Falco reaches",
            ingest.addr()
        );
    }
}

/// SIGINT or SIGTERM, listened for from the start of `riposte run`: a signal that arrives while the runner is
/// still starting (starting nats-server, connecting) stops it gracefully once started, instead of killing it.
pub(crate) fn on_signal() -> Result<Shutdown> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let (stopper, shutdown) = Stopper::new();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stopper.stop();
    });
    Ok(shutdown)
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
    if name.is_empty() {
        "riposte".into()
    } else {
        name
    }
}
