//! `riposte runner list`: the runners on this NATS, from their heartbeats, and functions pinned to a runner no
//! one is running.

use super::print::cell;
use anyhow::Result;
use riposte::model::state_dir::StateDir;
use riposte::nats::fleet::{self, RunnerStatus, UnservedPin};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Runners that sent a heartbeat (every 5 s; gone after 15 s without one, forgotten after 10 min):
    /// host, version, start, functions served (* = pinned here), alerts in flight, since start: alerts
    /// received, executions succeeded and failed, results and dead letters it could not store (UNSTORED: their
    /// alerts were settled anyway), container engine and Kubernetes access; under each runner, per trigger
    /// that counted anything, every count by name (README: Counts). Warns about triggers whose condition could
    /// not be evaluated and about functions pinned (--runs-on) to a runner that no one is running.
    List {
        /// One JSON object: {"runners": [...], "unserved_pins": [...]}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
}

pub async fn run(cmd: Command, state: &StateDir) -> Result<ExitCode> {
    match cmd {
        Command::List { json, nats } => {
            let registry = nats.registry(state).await?;
            let store = fleet::open(registry.jetstream()).await?;
            let runners = fleet::runners(&store).await?;
            let pins = fleet::unserved_pins(&registry.functions().await?, &runners);
            if json {
                println!("{}", serde_json::json!({ "runners": runners, "unserved_pins": pins }));
            } else {
                print_table(&runners);
                for r in runners.iter() {
                    for (trigger, c) in r.heartbeat.triggers.iter().filter(|(_, c)| c.condition_errors > 0) {
                        eprintln!(
                            "riposte: warning: {}",
                            condition_warning(&r.heartbeat.name, trigger, c.condition_errors)
                        );
                    }
                }
                for pin in &pins {
                    eprintln!("riposte: warning: {}", warning(pin));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_table(runners: &[RunnerStatus]) {
    println!(
        "{:<20} {:<6} {:<20} {:<8} {:<20} {:>9} {:>9} {:>8} {:>9} {:>6} {:>8} {:<10} {:<10} FUNCTIONS",
        "NAME",
        "STATUS",
        "HOST",
        "VERSION",
        "STARTED",
        "LAST-SEEN",
        "IN-FLIGHT",
        "RECEIVED",
        "SUCCEEDED",
        "FAILED",
        "UNSTORED",
        "CONTAINERS",
        "KUBERNETES"
    );
    for r in runners {
        let h = &r.heartbeat;
        let functions: Vec<String> =
            h.functions.iter().map(|f| if f.pinned { format!("{}*", f.name) } else { f.name.clone() }).collect();
        let seen = format!("{}s ago", r.seconds_since);
        let functions = if functions.is_empty() { "-".to_owned() } else { functions.join(",") };
        println!(
            "{:<20} {:<6} {:<20} {:<8} {:<20} {:>9} {:>9} {:>8} {:>9} {:>6} {:>8} {:<10} {:<10} {}",
            cell(&h.name),
            if r.gone { "gone" } else { "alive" },
            cell(&h.host),
            cell(&h.version),
            cell(h.started_at.get(..19).unwrap_or(&h.started_at)),
            seen,
            h.in_flight,
            h.counts.alerts_received,
            h.counts.succeeded,
            h.counts.failed,
            h.counts.unstored,
            if h.container_engine.available { "yes" } else { "no" },
            if h.kubernetes.available { "yes" } else { "no" },
            cell(&functions)
        );
        for (function, why) in &h.refused {
            println!("  refuses function {}: {}", cell(function), cell(why));
        }
        for (trigger, c) in &h.triggers {
            println!("  trigger {}: {}", cell(trigger), counts_line(c));
        }
    }
}

/// Every count of one trigger, by name.
fn counts_line(c: &fleet::Counts) -> String {
    format!(
        "received {} (deliveries {}, redeliveries {}), succeeded {}, failed {}, dead-lettered {}, skipped by condition {}, \
         condition errors {}, deduplicated {}, dry-run {}, already handled {}, unstored {}",
        c.alerts_received,
        c.deliveries,
        c.redeliveries,
        c.succeeded,
        c.failed,
        c.dead_lettered,
        c.skipped_by_condition,
        c.condition_errors,
        c.deduplicated,
        c.dry_run,
        c.already_handled,
        c.unstored
    )
}

fn condition_warning(runner: &str, trigger: &str, errors: u64) -> String {
    format!(
        "trigger {}: its condition could not be evaluated on {errors} alert(s) on runner {} (results of status \
         condition-error in `riposte function logs`): fix the condition (`riposte trigger create … --when`), or \
         choose --on-condition-error run",
        cell(trigger),
        cell(runner)
    )
}

fn warning(pin: &UnservedPin) -> String {
    let why = if pin.gone { "is gone (no heartbeat)" } else { "is not running (never seen)" };
    format!(
        "function {} is pinned (--runs-on) to runner {}, which {why}: its alerts wait in JetStream until \
         `riposte run --name {}` starts (or redeploy it without --runs-on)",
        cell(&pin.function),
        cell(&pin.runs_on),
        cell(&pin.runs_on)
    )
}
