//! `riposte call PLAYBOOK --alert FILE [-e KEY=VALUE]...`: one run, real capabilities.

use anyhow::{Context, Result};
use riposte::alert::Alert;
use riposte::builder::Builder;
use riposte::container::image::Prepared;
use riposte::execution::Handler;
use riposte::manifest::Kind;
use riposte::capability::Backends;
use riposte::function::{parse_setting, Function, Settings};
use riposte::runtime::{Runtime, RuntimeConfig};
use riposte::state::StateDir;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The playbook (a folder in the catalog).
    playbook: String,
    /// The alert: a falcosidekick JSON file, or - for stdin.
    #[arg(long, short)]
    alert: PathBuf,
    /// A setting, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    #[command(flatten)]
    backends: super::call::BackendArgs,
    #[command(flatten)]
    container: ContainerArgs,
    /// Print the execution as JSON.
    #[arg(long)]
    json: bool,
}

/// Where container playbooks run, shared by every command that runs them.
#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    /// Docker Engine API of Docker or Podman for container playbooks, e.g. unix:///run/podman/podman.sock
    /// (default: DOCKER_HOST, else Podman's or Docker's default socket).
    #[arg(long, env = "RIPOSTE_CONTAINER_HOST", value_name = "URL")]
    pub container_host: Option<String>,
}

impl ContainerArgs {
    /// Connects to the engine; containers with network get the runner's proxy settings and `ca_bundle`.
    pub async fn engine(&self, ca_bundle: Option<PathBuf>) -> Result<riposte::container::ContainerEngine> {
        let network = riposte::container::engine::NetworkEnv::from_env(ca_bundle);
        Ok(riposte::container::ContainerEngine::connect_with(self.container_host.as_deref(), network).await?)
    }
}

/// Options of the real capability backends, shared by every command that runs playbooks.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// Extra trusted CA certificates (PEM bundle) for playbook HTTPS calls; HTTPS_PROXY/NO_PROXY are honoured.
    #[arg(long, env = "RIPOSTE_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Proxy for playbook HTTP(S) calls, e.g. http://proxy.internal:3128 (default: HTTPS_PROXY/HTTP_PROXY).
    #[arg(long, env = "RIPOSTE_PROXY")]
    pub proxy: Option<String>,
    /// Kubeconfig of the cluster playbooks act on; without it KUBECONFIG, ~/.kube/config or the in-cluster
    /// service account are used when present, and Kubernetes verbs are refused when none is.
    #[arg(long, env = "RIPOSTE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

impl BackendArgs {
    pub fn backends(&self, state: &StateDir) -> Result<Backends> {
        let http = riposte::capability::http::HttpClient::new(&riposte::capability::http::HttpConfig {
            ca_bundle: self.ca_bundle.clone(),
            timeout: None,
            proxy: self.proxy.clone(),
        })?;
        Ok(Backends {
            http: std::sync::Arc::new(http),
            kubernetes: riposte::capability::kubernetes::Cluster::detect(self.kubeconfig.as_deref())?,
            object_store: std::sync::Arc::new(riposte::capability::object_store::DirStore::new(state.objects())),
        })
    }
}

pub async fn run(args: Args, playbooks: &Path, state: &StateDir) -> Result<ExitCode> {
    let builder = Builder::new(playbooks.to_owned(), state);
    let (dir, manifest) = builder.manifest(&args.playbook)?;
    let given = args.settings.iter().map(|s| parse_setting(s)).collect::<Result<Vec<_>, _>>()?;
    let settings = Settings::resolve(&manifest, &given)?;
    let raw = read_alert(&args.alert)?;
    let alert = Alert::parse(&raw).with_context(|| format!("alert {}", args.alert.display()))?;
    let exec = if manifest.kind == Kind::Container {
        let engine = args.container.engine(args.backends.ca_bundle.clone()).await?;
        if engine.ensure_image(&manifest, &dir).await? == Prepared::Built {
            tracing::info!(playbook = %args.playbook, "built image {}", manifest.container.as_ref().map(|c| c.image.as_str()).unwrap_or(""));
        }
        let image = manifest.container.as_ref().map(|c| c.image.clone()).unwrap_or_default();
        let function = Function { name: args.playbook.clone(), manifest, artifact: image, settings, runs_on: None };
        engine.function(&function).handle(&alert).await
    } else {
        let backends = args.backends.backends(state)?;
        let built = builder.build(&args.playbook)?;
        let bytes = std::fs::read(&built.path)?;
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: false })?;
        let component = tokio::task::block_in_place(|| runtime.load(&bytes, &args.playbook))?;
        let function = Function {
            name: args.playbook.clone(),
            manifest,
            artifact: component.digest.clone(),
            settings,
            runs_on: None,
        };
        runtime.function(component, &function, backends).handle(&alert).await
    };
    print_execution(&exec, args.json)
}

/// Prints an execution (status: message, detail, log lines; or JSON); exit code 0 only when it is ok.
pub fn print_execution(exec: &riposte::execution::Execution, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(exec)?);
    } else {
        println!("{}: {}", exec.status.as_str(), exec.message);
        if let Some(detail) = &exec.detail {
            println!("detail: {detail}");
        }
        for line in &exec.logs {
            println!("[{}] {}", line.level, line.message);
        }
    }
    Ok(if exec.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Reads an alert file, or stdin for `-`.
pub fn read_alert(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read alert file {}", path.display()))
}
