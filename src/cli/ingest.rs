//! `riposte ingest`: the HTTP alert input alone, for a host that only forwards Falco's alerts into the alert
//! stream (a Falco node whose network reaches NATS, or a DMZ), with no runner and no playbook there. It is the
//! same input as `riposte run --http-addr` (`runner/ingest.rs`): the same authentication, bounds, answers and
//! metrics; the runners elsewhere on the same NATS react.

use anyhow::{bail, Context, Result};
use riposte::model::state_dir::StateDir;
use riposte::runner::ingest::Ingest;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    nats: super::args::NatsArgs,
    #[command(flatten)]
    http: super::args::HttpInputArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics (the HTTP input's counts) and /healthz, e.g.
    /// 127.0.0.1:9464 (port 0 picks one; the address is printed).
    #[arg(long, env = "RIPOSTE_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<String>,
}

pub async fn run(args: Args, state: &StateDir) -> Result<ExitCode> {
    let mut shutdown = super::run::on_signal()?;
    let Some(config) = args.http.config() else {
        bail!("riposte ingest needs --http-addr ADDR (e.g. 0.0.0.0:2801): the address Falco or falcosidekick posts to")
    };
    config.check()?;
    let metrics = args.metrics_addr.as_ref().map(|_| riposte::runner::metrics::Metrics::new());
    let endpoint = match (&args.metrics_addr, &metrics) {
        (Some(addr), Some(m)) => {
            let probe: riposte::runner::health::ProbeSlot = Default::default();
            let e = riposte::runner::health::Endpoint::start(addr, m.clone(), probe, shutdown.clone()).await?;
            eprintln!("riposte: metrics on http://{}/metrics (/healthz)", e.addr());
            Some(e)
        }
        _ => None,
    };
    let nats = args.nats.config("riposte-ingest")?;
    let (url, local) = nats.resolve_url(state)?;
    let client = nats.connect(&url, local.then_some(state)).await?;
    let js = async_nats::jetstream::new(client.clone());
    // An alert stream made here captures falco.> (a runner's --stream-subjects decides later); an existing one
    // is left as it is.
    riposte::nats::streams::ensure_with(&js, None, &args.nats.streams())
        .await
        .context("the alert stream (riposte ingest publishes into it)")?;
    let counts = metrics.as_ref().map(|m| m.http_input()).unwrap_or_default();
    let ingest = Ingest::start(&config, js, client.clone(), counts, shutdown.clone()).await?;
    super::run::announce(&ingest, &format!(" into the alert stream of {}", riposte::nats::connect::redact_url(&url)));
    shutdown.wait().await;
    eprintln!("riposte: stopping the HTTP input");
    let step = riposte::model::limits::STOP_STEP_TIMEOUT;
    if tokio::time::timeout(step, ingest.stopped()).await.is_err() {
        tracing::warn!("the HTTP input did not stop; abandoning it");
    }
    if let Some(e) = endpoint {
        let _ = tokio::time::timeout(step, e.stopped()).await;
    }
    let _ = tokio::time::timeout(step, client.flush()).await;
    Ok(ExitCode::SUCCESS)
}
