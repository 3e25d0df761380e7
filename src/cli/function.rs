//! `riposte function deploy | list | delete | logs | top | call`: deployed functions, in the registry.

use super::print::cell;
use anyhow::{bail, Context, Result};
use riposte::model::alert::Alert;
use riposte::model::digest::short;
use riposte::model::execution::Status;
use riposte::model::state_dir::StateDir;
use riposte::nats::results::{
    read_function_results_since, read_results, read_results_since, Disposition, ResultRecord,
};
use riposte::ops::builder::Catalog;
use riposte::ops::deploy::{self, Source};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Deploy (or update) a function from a playbook or a component file.
    Deploy {
        /// The function's name.
        name: String,
        /// A playbook: a name in the catalog or a folder with playbook.toml.
        #[arg(long, conflicts_with = "wasm", required_unless_present = "wasm")]
        playbook: Option<String>,
        /// A component file for wit/playbook.wit.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// With --wasm: its manifest (playbook.toml); default none: no capabilities, default limits.
        #[arg(long, requires = "wasm")]
        manifest: Option<PathBuf>,
        /// A setting (repeatable): KEY=VALUE; KEY=@FILE, the value read from FILE (without one trailing
        /// newline; KEY=@@… for a value starting with @); or KEY alone, the value of the environment variable
        /// KEY. The last two keep a secret out of the command line, which every local user can read.
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE|KEY=@FILE|KEY")]
        settings: Vec<String>,
        /// Run it only on the runner of this name.
        #[arg(long)]
        runs_on: Option<String>,
        /// Put this condition (CEL) on every trigger of the function (without it, their conditions stay).
        #[arg(long, value_name = "EXPR")]
        when: Option<String>,
        /// With --when: what an alert whose condition cannot be evaluated does, skip (the default: recorded as
        /// condition-error, not run) or run.
        #[arg(long, value_name = "skip|run", requires = "when")]
        on_condition_error: Option<riposte::model::trigger::OnConditionError>,
        #[command(flatten)]
        policy: super::args::PolicyArgs,
        #[command(flatten)]
        build: super::args::BuildArgs,
        #[command(flatten)]
        nats: super::args::NatsArgs,
        #[command(flatten)]
        key: super::args::SettingsKeyArgs,
    },
    /// Deployed functions: kind, artifact, runner pinning, dry-run/dedup, triggers, setting names (never values).
    List {
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Delete a function and its triggers.
    Delete {
        name: String,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Recent executions of a function's current deployment (since it was last deployed), from the results
    /// stream; --all for every deployment's.
    Logs {
        name: String,
        /// How many, most recent last.
        #[arg(long, short = 'n', default_value_t = 20)]
        last: usize,
        /// Results of earlier deployments of this name too (before it was last deployed, or deleted and
        /// deployed again).
        #[arg(long)]
        all: bool,
        /// One JSON result per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Executions, failures and p50/p99 duration per function, from the results stream: P50/P99 over every
    /// execution (failures included), OK P50/P99 over successful ones only.
    Top {
        /// Only executions of this recent a window: 90s, 30m, 1h, 7d (default: all the stream keeps, 7 days).
        #[arg(long, value_name = "DURATION", value_parser = super::args::parse_window)]
        since: Option<std::time::Duration>,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Run a deployed function once, here, on an alert file.
    Call {
        name: String,
        /// The alert: a falcosidekick JSON file, or - for stdin.
        #[arg(long, short)]
        alert: PathBuf,
        #[command(flatten)]
        backends: super::args::BackendArgs,
        #[command(flatten)]
        container: super::args::ContainerArgs,
        #[command(flatten)]
        nats: super::args::NatsArgs,
        #[command(flatten)]
        key: super::args::SettingsKeyArgs,
        /// Print the execution as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: Command, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    match cmd {
        Command::Deploy {
            name,
            playbook,
            wasm,
            manifest,
            settings,
            runs_on,
            when,
            on_condition_error,
            policy,
            build,
            nats,
            key,
        } => {
            let source = match (playbook, wasm) {
                (Some(p), None) => Source::Playbook(p),
                (None, Some(file)) => Source::Wasm { file, manifest },
                _ => bail!("give one of --playbook DIR|NAME or --wasm FILE"),
            };
            if let Some(w) = &when {
                riposte::policy::condition::Condition::compile(w)?;
            }
            let keys = nats.settings_keys(state, &key)?;
            let allow = build.allow();
            let prepared = deploy::prepare(
                &name,
                &source,
                &settings,
                runs_on,
                deploy::Workshop { playbooks, state, allow: &allow, sealing: keys.is_some() },
            )
            .await?
            .with_policy(policy.policy())?;
            super::deploy::print_image_note(&prepared);
            let registry = nats.registry(state).await?.with_keys(keys);
            deploy::write_function(&registry, &prepared).await?;
            super::deploy::print_deployed(&prepared);
            if when.is_some() {
                let on_error = on_condition_error.unwrap_or_default();
                for t in deploy::set_condition(&registry, &prepared.function, when.as_deref(), on_error).await? {
                    println!(
                        "trigger {} -> {} on {} when {}",
                        t.name,
                        name,
                        t.topic,
                        t.shown_condition().unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { nats } => {
            let registry = nats.registry(state).await?;
            let triggers = registry.triggers().await?;
            println!(
                "{:<24} {:<9} {:<14} {:<12} {:<16} {:<36} SETTINGS",
                "NAME", "KIND", "ARTIFACT", "RUNS-ON", "POLICY", "TRIGGERS"
            );
            for (name, f) in registry.functions().await? {
                let bound: Vec<&str> =
                    triggers.values().filter(|t| t.function == name).map(|t| t.topic.as_str()).collect();
                let mut policy = Vec::new();
                if f.policy.dry_run {
                    policy.push("dry-run".to_owned());
                }
                if let Some(d) = &f.policy.dedup {
                    policy.push(format!("dedup-{}s", d.window().as_secs()));
                }
                println!(
                    "{:<24} {:<9} {:<14} {:<12} {:<16} {:<36} {}",
                    cell(&name),
                    f.manifest.kind.as_str(),
                    cell(short(&f.artifact)),
                    cell(f.runs_on.as_deref().unwrap_or("any")),
                    cell(&if policy.is_empty() { "-".to_owned() } else { policy.join(",") }),
                    cell(&if bound.is_empty() { "-".to_owned() } else { bound.join(",") }),
                    cell(&f.settings.names().collect::<Vec<_>>().join(","))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { name, nats } => {
            let registry = nats.registry(state).await?;
            for t in deploy::delete_function(&registry, &name).await? {
                println!("trigger {} deleted", t.name);
            }
            println!("function {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { name, last, all, json, nats } => {
            let registry = nats.registry(state).await?;
            let deployed = registry.deployed_at(&name).await?;
            let records = match deployed {
                Some(at) if !all => read_function_results_since(registry.jetstream(), &name, at, Some(last)).await?,
                _ => read_results(registry.jetstream(), Some(&name), Some(last)).await?,
            };
            if records.is_empty() && deployed.is_none() {
                bail!("no function {name} and no results for it: see `riposte function list`");
            }
            if let (Some(at), false, false) = (deployed, all, json) {
                let at = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                eprintln!("riposte: results since {name} was deployed at {at}; --all shows earlier deployments' too");
            }
            if json {
                for r in &records {
                    println!("{}", serde_json::to_string(r)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<31} {:<15} {:<7} {:<14} {:<12} {:>9}  {:<40} MESSAGE",
                "TIME", "STATUS", "ATTEMPT", "DISPOSITION", "RUNNER", "MS", "SUBJECT"
            );
            for r in &records {
                let first = r.message.lines().next().unwrap_or_default();
                // A dry run says which dedup key it would have claimed (in the dry run's own memory).
                let message = match (&r.dedup_key, r.disposition) {
                    (Some(key), Disposition::DryRun) => format!("{first} (dedup key: {})", key.replace('\n', " ")),
                    _ => first.to_owned(),
                };
                println!(
                    "{:<31} {:<15} {:<7} {:<14} {:<12} {:>9.1}  {:<40} {}",
                    cell(&r.time),
                    r.status.as_str(),
                    r.attempt,
                    r.disposition.as_str(),
                    cell(&r.runner),
                    r.duration_us as f64 / 1000.0,
                    cell(&r.subject),
                    cell(&message)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Top { since, nats } => {
            let registry = nats.registry(state).await?;
            let records = match since {
                Some(window) => {
                    read_results_since(registry.jetstream(), time::OffsetDateTime::now_utc() - window).await?
                }
                None => read_results(registry.jetstream(), None, None).await?,
            };
            print!("{}", top_table(&records));
            Ok(ExitCode::SUCCESS)
        }
        Command::Call { name, alert, backends, container, nats, key, json } => {
            let registry = nats.keyed_registry(state, &key).await?;
            let stored = registry
                .function(&name)
                .await?
                .with_context(|| format!("no function {name}: see `riposte function list`"))?;
            let function = registry.open_settings(stored)?;
            let raw = super::print::read_alert(&alert)?;
            let alert = Alert::parse(&raw).with_context(|| format!("alert {}", alert.display()))?;
            let setup = container.setup(&backends);
            let handlers = riposte::execute::handlers::HandlerCache::new(
                state,
                false,
                registry,
                backends.backends(state)?,
                setup,
            )?;
            let handler = handlers.get(&function).await?;
            let exec = handler.handle(&alert).await;
            super::print::execution(&exec, json)
        }
    }
}

/// Per function: executions (dry runs included), failures (any status but ok, dry runs apart), retries, dead
/// letters, dry runs, and alerts that did not run: deduplicated, and not run because their condition could
/// not be evaluated (COND-ERR); then duration percentiles twice: over every execution (failures included: a
/// timeout counts with its full wait) and over the successful ones only. A function with no success shows `-`
/// there. The words are those of `runner list` and /metrics (README: Counts).
pub fn top_table(records: &[ResultRecord]) -> String {
    #[derive(Default)]
    struct Row {
        runs: u64,
        failures: u64,
        retries: u64,
        dead: u64,
        dedup: u64,
        cond_err: u64,
        dry: u64,
        all: Vec<u64>,
        ok: Vec<u64>,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for r in records {
        let row = rows.entry(&r.function).or_default();
        match r.disposition {
            Disposition::Deduplicated => {
                row.dedup += 1;
                continue;
            }
            Disposition::Skipped => {
                row.cond_err += 1;
                continue;
            }
            _ => {}
        }
        row.runs += 1;
        let dry = r.disposition == Disposition::DryRun;
        row.dry += u64::from(dry);
        row.failures += u64::from(r.status != Status::Ok && !dry);
        row.retries += u64::from(r.disposition == Disposition::Retry);
        row.dead += u64::from(r.disposition == Disposition::DeadLettered);
        row.all.push(r.duration_us);
        if r.status == Status::Ok {
            row.ok.push(r.duration_us);
        }
    }
    fn q(sorted: &[u64], p: f64) -> String {
        if sorted.is_empty() {
            return "-".into();
        }
        format!("{:.2}", sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0)
    }
    let mut out = format!(
        "{:<24} {:>10} {:>9} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
        "FUNCTION",
        "EXECUTIONS",
        "FAILURES",
        "RETRIES",
        "DEAD",
        "DRY-RUN",
        "DEDUP",
        "COND-ERR",
        "P50 MS",
        "P99 MS",
        "OK P50 MS",
        "OK P99 MS"
    );
    for (name, mut row) in rows {
        row.all.sort_unstable();
        row.ok.sort_unstable();
        out.push_str(&format!(
            "{:<24} {:>10} {:>9} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            cell(name),
            row.runs,
            row.failures,
            row.retries,
            row.dead,
            row.dry,
            row.dedup,
            row.cond_err,
            q(&row.all, 0.50),
            q(&row.all, 0.99),
            q(&row.ok, 0.50),
            q(&row.ok, 0.99)
        ));
    }
    out.push_str("P50/P99: every execution, failures included; OK P50/P99: successful executions only\n");
    out
}
