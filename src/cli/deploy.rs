//! `riposte deploy-playbook` (what `./deploy_playbook` runs): build a catalog playbook and deploy it as
//! `falco-<playbook>` with triggers `falco-<playbook>-trigger-<index>`. The rules are the library's
//! ([`riposte::ops::deploy`]); this file parses and prints.

use anyhow::Result;
use riposte::model::digest::short;
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Catalog;
use riposte::ops::deploy::{self, ImageNote, PreparedFunction, Source};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `riposte deploy-playbook` / `./deploy_playbook`.
#[derive(Debug, clap::Args)]
pub struct PlaybookArgs {
    /// The playbook (a name in the catalog, or a folder): deployed as function falco-<playbook>.
    #[arg(short = 'p', long = "playbook")]
    playbook: String,
    /// A setting (repeatable): KEY=VALUE; KEY=@FILE, the value read from FILE (without one trailing
    /// newline; KEY=@@… for a value starting with @); or KEY alone, the value of the environment variable
    /// KEY. The last two keep a secret out of the command line, which every local user can read.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE|KEY=@FILE|KEY")]
    settings: Vec<String>,
    /// A subject pattern that triggers it (repeatable): triggers falco-<playbook>-trigger-<index>.
    #[arg(short = 't', long = "trigger", value_name = "TOPIC")]
    topics: Vec<String>,
    /// Run it only on the runner of this name.
    #[arg(long)]
    runs_on: Option<String>,
    /// Keep topics falcosidekick's subjects (falco.<priority>.<rule slug>) can never match: for another
    /// publisher or a custom nats.subjecttemplate.
    #[arg(long)]
    force: bool,
    /// Falco rules files (repeatable): show which of their rules each topic matches.
    #[arg(long, value_name = "FALCO_RULES_YAML")]
    rules: Vec<PathBuf>,
    /// A condition over the whole alert (CEL) on every trigger, e.g. 'priority >= Critical' (README: Conditions).
    #[arg(long, value_name = "EXPR")]
    when: Option<String>,
    /// What an alert whose condition cannot be evaluated does: skip (the default: a result of status
    /// condition-error, the function not run) or run (as if the condition had accepted it). Either way the
    /// error is counted (`runner list`, /metrics) and warned about.
    #[arg(long, value_name = "skip|run", default_value = "skip")]
    on_condition_error: riposte::model::trigger::OnConditionError,
    #[command(flatten)]
    policy: super::args::PolicyArgs,
    #[command(flatten)]
    build: super::args::BuildArgs,
    #[command(flatten)]
    nats: super::args::NatsArgs,
    #[command(flatten)]
    key: super::args::SettingsKeyArgs,
}

pub async fn deploy_playbook(args: PlaybookArgs, playbooks: &Catalog, state: &StateDir) -> Result<ExitCode> {
    if args.topics.is_empty() {
        return Err(deploy::DeployError::NoTopics.into());
    }
    // Checked before the (slow) build: a refused topic or condition costs nothing.
    let triggers =
        |name: &str| deploy::numbered_triggers(name, &args.topics, args.when.as_deref(), args.on_condition_error);
    for t in triggers("falco-x") {
        deploy::check_trigger(&t, args.force)?;
    }
    let rules = super::trigger::load_rules(&args.rules)?;
    let base = Path::new(&args.playbook).file_name().and_then(|n| n.to_str()).unwrap_or(&args.playbook).to_owned();
    let name = format!("falco-{base}");
    let source = Source::Playbook(args.playbook.clone());
    let keys = args.nats.settings_keys(state, &args.key)?;
    let allow = args.build.allow();
    let prepared = deploy::prepare(
        &name,
        &source,
        &args.settings,
        args.runs_on.clone(),
        deploy::Workshop { playbooks, state, allow: &allow, sealing: keys.is_some() },
    )
    .await?
    .with_policy(args.policy.policy())?;
    print_image_note(&prepared);
    let registry = args.nats.registry(state).await?.with_keys(keys);
    let deployed = deploy::deploy_with_triggers(&registry, &prepared, triggers(&name), args.force).await?;
    print_deployed(&prepared);
    for t in &deployed.triggers {
        match &t.when {
            Some(when) => println!("trigger {} -> {} on {} when {}", t.name, name, t.topic, when),
            None => println!("trigger {} -> {} on {}", t.name, name, t.topic),
        }
        if let (Some(rules), Ok(pattern)) = (&rules, riposte::model::trigger::Pattern::parse(&t.topic)) {
            super::trigger::print_matches(rules, &pattern);
        }
    }
    for t in &deployed.removed {
        println!("trigger {} removed (no longer asked for)", t.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `function NAME deployed (KIND ARTIFACT)`.
pub fn print_deployed(prepared: &PreparedFunction) {
    let f = &prepared.function;
    println!("function {} deployed ({} {}){}", f.name, f.manifest.kind.as_str(), short(&f.artifact), policy_note(f));
}

/// ", dry run" / ", dedup 60s": what a listing and a deploy say about a function's policy.
pub fn policy_note(f: &riposte::model::function::Function) -> String {
    let mut note = String::new();
    if f.policy.dry_run {
        note.push_str(", dry run: nothing reaches the world");
    }
    if let Some(d) = &f.policy.dedup {
        note.push_str(&format!(", dedup {}s", d.window().as_secs()));
    }
    note
}

/// What happened to a container function's image here, on stderr.
pub fn print_image_note(prepared: &PreparedFunction) {
    let image = &prepared.function.artifact;
    match &prepared.image {
        Some(ImageNote::Built { host }) => eprintln!("riposte: built image {image} in the container engine at {host}"),
        Some(ImageNote::NoEngine { why }) => {
            eprintln!("riposte: note: {why}; the runners that take this function need image {image}")
        }
        Some(ImageNote::Present) | None => {}
    }
}
