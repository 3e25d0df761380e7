//! `riposte trigger create | list | delete`: subject patterns bound to functions.

use super::print::cell;
use anyhow::{Context, Result};
use riposte::model::state_dir::StateDir;
use riposte::model::trigger::{Pattern, Trigger};
use riposte::ops::deploy;
use riposte::policy::rules::RuleSet;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Bind a subject pattern to a function (replaces a trigger of the same name).
    Create {
        name: String,
        /// The function it runs.
        #[arg(long)]
        function: String,
        /// A NATS subject with * and > wildcards, or a glob: 'falco.{critical,error}.*', 'falco.*.*shell*'.
        #[arg(long)]
        topic: String,
        /// Keep a topic falcosidekick's subjects (falco.<priority>.<rule slug>) can never match: for another
        /// publisher or a custom nats.subjecttemplate.
        #[arg(long)]
        force: bool,
        /// Falco rules files (repeatable): show which of their rules the topic matches.
        #[arg(long, value_name = "FALCO_RULES_YAML")]
        rules: Vec<PathBuf>,
        /// A condition over the whole alert (CEL): alerts it rejects are acked without running, e.g.
        /// 'priority >= Critical && alert.output_fields[?"k8s.ns.name"].orValue("") != "kube-system"'.
        #[arg(long, value_name = "EXPR")]
        when: Option<String>,
        /// What an alert whose condition cannot be evaluated does: skip (the default: a result of status
        /// condition-error, the function not run) or run (as if the condition had accepted it). Either way the
        /// error is counted (`runner list`, /metrics) and warned about.
        #[arg(long, value_name = "skip|run", default_value = "skip")]
        on_condition_error: riposte::model::trigger::OnConditionError,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Every trigger: its function, topic, the NATS filter of its consumer and its condition (with what an alert it
    /// cannot judge does, when that is `run`).
    List {
        /// Falco rules files (repeatable): show which of their rules each trigger matches.
        #[arg(long, value_name = "FALCO_RULES_YAML")]
        rules: Vec<PathBuf>,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Delete a trigger and its consumer.
    Delete {
        name: String,
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
}

pub async fn run(cmd: Command, state: &StateDir) -> Result<ExitCode> {
    match cmd {
        Command::Create { name, function, topic, when, on_condition_error, force, rules, nats } => {
            let trigger = Trigger {
                name: name.clone(),
                function: function.clone(),
                topic: topic.clone(),
                when,
                on_condition_error,
            };
            deploy::check_trigger(&trigger, force)?;
            let rules = load_rules(&rules)?;
            let registry = nats.registry(state).await?;
            let pattern = deploy::create_trigger(&registry, &trigger, force).await?;
            match trigger.shown_condition() {
                Some(when) => println!("trigger {name} -> {function} on {topic} when {when}"),
                None => println!("trigger {name} -> {function} on {topic}"),
            }
            if let Some(rules) = &rules {
                print_matches(rules, &pattern);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { rules, nats } => {
            let rules = load_rules(&rules)?;
            let registry = nats.registry(state).await?;
            println!("{:<32} {:<24} {:<32} {:<24} WHEN", "NAME", "FUNCTION", "TOPIC", "NATS-FILTER");
            for (name, t) in registry.triggers().await? {
                let pattern = Pattern::parse(&t.topic);
                let filter = pattern.as_ref().map(|p| p.nats_filter().to_owned()).unwrap_or_else(|e| e.to_string());
                let when = t.shown_condition().unwrap_or_else(|| "-".to_owned());
                println!(
                    "{:<32} {:<24} {:<32} {:<24} {}",
                    cell(&name),
                    cell(&t.function),
                    cell(&t.topic),
                    cell(&filter),
                    cell(&when)
                );
                if let (Some(rules), Ok(pattern)) = (&rules, &pattern) {
                    print_matches(rules, pattern);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { name, nats } => {
            let registry = nats.registry(state).await?;
            let t = registry
                .trigger(&name)
                .await?
                .with_context(|| format!("no trigger {name}: see `riposte trigger list`"))?;
            deploy::delete_trigger(&registry, &t).await?;
            println!("trigger {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads `--rules` files; `None` when none were given.
pub(crate) fn load_rules(paths: &[PathBuf]) -> Result<Option<RuleSet>> {
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(RuleSet::load(paths)?))
}

/// Prints, indented under a trigger, the Falco rules its pattern matches and the subjects they arrive on.
pub(crate) fn print_matches(rules: &RuleSet, pattern: &Pattern) {
    let matched = rules.matching(pattern);
    let files = rules.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    if matched.is_empty() {
        println!("  matches none of the {} rules in {files}: no alert of theirs would run it", rules.rules.len());
        return;
    }
    println!("  matches {} of the {} rules in {files}:", matched.len(), rules.rules.len());
    for rule in matched {
        let disabled = if rule.enabled { "" } else { " (disabled: never fires)" };
        println!("    {:<56} {}{disabled}", rule.shown_subject(), rule.name);
    }
}
