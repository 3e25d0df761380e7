//! `riposte trigger create | list | delete`: subject patterns bound to functions.

use anyhow::{Context, Result};
use riposte::deploy;
use riposte::state_dir::StateDir;
use riposte::trigger::{Pattern, Trigger};
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
        #[command(flatten)]
        nats: super::args::NatsArgs,
    },
    /// Every trigger: its function, topic and the NATS filter of its consumer.
    List {
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
        Command::Create { name, function, topic, nats } => {
            let trigger = Trigger { name: name.clone(), function: function.clone(), topic: topic.clone() };
            if !riposte::name::valid_name(&name) {
                return Err(deploy::DeployError::TriggerName(name).into());
            }
            Pattern::parse(&topic)?;
            let registry = nats.registry(state).await?;
            deploy::create_trigger(&registry, &trigger).await?;
            println!("trigger {name} -> {function} on {topic}");
            Ok(ExitCode::SUCCESS)
        }
        Command::List { nats } => {
            let registry = nats.registry(state).await?;
            println!("{:<32} {:<24} {:<32} NATS-FILTER", "NAME", "FUNCTION", "TOPIC");
            for (name, t) in registry.triggers().await? {
                let filter =
                    Pattern::parse(&t.topic).map(|p| p.nats_filter().to_owned()).unwrap_or_else(|e| e.to_string());
                println!("{:<32} {:<24} {:<32} {}", name, t.function, t.topic, filter);
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
