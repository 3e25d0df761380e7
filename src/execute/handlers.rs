//! Turns a deployed function into a [`Handler`]: the one place that knows each kind of function (a WASM
//! component run by the [`runtime`](crate::execute::runtime), or a container action). Handlers are shared by every
//! trigger of a function (one admission semaphore, one pool of warm instances) and rebuilt when the function
//! is redeployed. The runner and `riposte function call` get their handlers here. A dry-run function's
//! handler runs the same component with recording backends, each execution recording its own calls.

use crate::execute::capability::recording::{self, Scoped};
use crate::execute::capability::Backends;
use crate::execute::container::engine::NetworkEnv;
use crate::execute::container::ContainerEngine;
use crate::execute::runtime::{Runtime, RuntimeConfig, RuntimeError};
use crate::model::alert::Alert;
use crate::model::execution::{Execution, Handler};
use crate::model::function::Function;
use crate::model::manifest::{DryRunSection, Kind};
use crate::model::state_dir::StateDir;
use crate::nats::registry::Registry;
use crate::secrets::redact::Secrets;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Why a function cannot run on this runner.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("function {function} is a container function and this runner has no container engine: {why}")]
    NoContainerEngine { function: String, why: String },
    #[error("function {function}: {why}")]
    Artifact { function: String, why: String },
}

/// Why no function can run at all: the WebAssembly runtime did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly runtime")]
pub struct StartError(#[source] pub RuntimeError);

/// Where a runner's container functions run.
#[derive(Debug, Clone, Default)]
pub struct ContainerSetup {
    /// Docker Engine API address (`--container-host`); `None`: DOCKER_HOST or the default sockets.
    pub host: Option<String>,
    /// CA bundle mounted into containers that have network.
    pub ca_bundle: Option<PathBuf>,
    /// The runner's name (set by the runner): its containers carry it, and at its first connection to the
    /// engine the containers of this name left by an earlier run are removed.
    pub runner: Option<String>,
}

/// A handler being loaded (or loaded) once, shared by every caller that asks for it meanwhile.
type HandlerCell = Arc<OnceCell<Arc<dyn Handler>>>;

/// Handlers of the functions a runner runs, loaded once per deployed version.
pub struct HandlerCache {
    runtime: Arc<Runtime>,
    registry: Registry,
    backends: Backends,
    artifacts: PathBuf,
    container_setup: ContainerSetup,
    /// Connected on the first container function (a runner with only WASM functions needs no engine).
    containers: tokio::sync::Mutex<Option<ContainerEngine>>,
    /// Removes containers past their deadline while this runner is connected to an engine.
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    loaded: Mutex<HashMap<String, (Function, HandlerCell)>>,
    /// Handlers loaded since the runner started.
    loads: std::sync::atomic::AtomicU64,
}

impl HandlerCache {
    /// Handlers with their own WebAssembly runtime (compile cache in `state`; the pooling allocator when
    /// `pooling`), artifacts fetched from `registry` and cached in `state`, capabilities from `backends`.
    pub fn new(
        state: &StateDir,
        pooling: bool,
        registry: Registry,
        backends: Backends,
        container_setup: ContainerSetup,
    ) -> Result<HandlerCache, StartError> {
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling }).map_err(StartError)?;
        Ok(HandlerCache {
            runtime: Arc::new(runtime),
            registry,
            backends,
            artifacts: state.artifacts(),
            container_setup,
            containers: tokio::sync::Mutex::new(None),
            sweeper: Mutex::new(None),
            loaded: Mutex::new(HashMap::new()),
            loads: Default::default(),
        })
    }

    /// The handler of this version of the function, loading it on first use (off the alert path).
    pub async fn get(&self, function: &Function) -> Result<Arc<dyn Handler>, LoadError> {
        let cell = {
            let mut loaded = self.loaded.lock().unwrap();
            match loaded.get(&function.name) {
                Some((f, cell)) if f == function => cell.clone(),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    loaded.insert(function.name.clone(), (function.clone(), cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_try_init(|| async {
            let handler = self.load(function).await;
            self.loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            handler
        })
        .await
        .cloned()
    }

    /// Handlers loaded (or tried) since this cache was made.
    pub fn loads(&self) -> u64 {
        self.loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes every alert of this version of `function` fail with `why` (its settings do not open for its code):
    /// the one handler it gets until it is deployed again.
    pub fn refuse(&self, function: &Function, why: String) {
        let handler: Arc<dyn Handler> = Arc::new(Unopened { why, secrets: Secrets::default() });
        let cell = Arc::new(OnceCell::new_with(Some(handler)));
        self.loaded.lock().unwrap().insert(function.name.clone(), (function.clone(), cell));
    }

    /// Whether the handler of the function's current version is loaded.
    pub fn is_loaded(&self, function: &str) -> bool {
        self.loaded.lock().unwrap().get(function).is_some_and(|(_, cell)| cell.initialized())
    }

    /// The instance counters of each loaded function that keeps instances.
    pub fn instance_counts(&self) -> Vec<(String, crate::model::execution::InstanceCounts)> {
        let loaded = self.loaded.lock().unwrap();
        loaded.iter().filter_map(|(name, (_, cell))| Some((name.clone(), cell.get()?.instances()?))).collect()
    }

    /// Keeps at most `n` idle warm instances across all functions (see [`crate::execute::runtime::WarmPools`]).
    pub fn set_max_warm(&self, n: usize) {
        self.runtime.set_max_warm(n);
    }

    /// Releases the warm instances idle for `idle_for` or longer, of every function, and unloads the components
    /// of functions without an alert for that long; returns how many instances and components went.
    pub fn release_idle(&self, idle_for: std::time::Duration) -> (usize, u64) {
        let warm = self.runtime.warm();
        let unloads = warm.unloads();
        let released = warm.release_idle(idle_for);
        (released, warm.unloads().saturating_sub(unloads))
    }

    /// Components loaded from the compile cache, and compiled, since this runner started.
    pub fn compile_counts(&self) -> (u64, u64) {
        (self.runtime.cache().hits(), self.runtime.cache().compiles())
    }

    /// Forgets a deleted function.
    pub fn forget(&self, name: &str) {
        self.loaded.lock().unwrap().remove(name);
    }

    async fn load(&self, function: &Function) -> Result<Arc<dyn Handler>, LoadError> {
        match function.manifest.kind {
            Kind::Wasm => {
                let bytes = self.artifact(function).await?;
                let runtime = self.runtime.clone();
                let what = format!("function {}", function.name);
                let component = tokio::task::spawn_blocking(move || runtime.load(&bytes, &what))
                    .await
                    .expect("component loading panicked")
                    .map_err(|e| LoadError::Artifact { function: function.name.clone(), why: e.to_string() })?;
                // Unloaded once the function had no alert for the idle timeout, loaded again from the artifact cache
                // (only when the artifact is there: a state directory that could not keep it keeps the component).
                let artifact = self.artifacts.join(format!("{}.wasm", function.artifact));
                let unloadable = |f: crate::execute::runtime::WasmFunction| {
                    if artifact.is_file() {
                        f.unload_when_idle(artifact.clone())
                    } else {
                        f
                    }
                };
                if function.policy.dry_run {
                    let inner = unloadable(self.runtime.function(component, function, Scoped::backends()));
                    return Ok(Arc::new(DryRun::new(Arc::new(inner), function)));
                }
                Ok(Arc::new(unloadable(self.runtime.function(component, function, self.backends.clone()))))
            }
            Kind::Container if function.policy.dry_run => Err(LoadError::Artifact {
                function: function.name.clone(),
                why: "a container action cannot run dry (its calls cannot be recorded); redeploy it without --dry-run"
                    .into(),
            }),
            Kind::Container => {
                let engine = self.container_engine(function).await?;
                if engine.docker().inspect_image(&function.artifact).await.is_err() {
                    return Err(LoadError::Artifact {
                        function: function.name.clone(),
                        why: format!(
                            "image {} is not in the container engine at {}: deploy the playbook from this machine (deploy_playbook builds it) or build it there",
                            function.artifact,
                            engine.host()
                        ),
                    });
                }
                Ok(Arc::new(engine.function(function)))
            }
        }
    }

    /// Connects to the container engine now when one of `functions` is a container function: a restarted
    /// runner removes the containers its killed predecessor left behind before any alert comes (see
    /// [`ContainerSetup::runner`]). Without an engine this is only logged; each alert then says why.
    pub async fn connect_early<'a>(&self, functions: impl IntoIterator<Item = &'a Function>) {
        if let Some(function) = functions.into_iter().find(|f| f.manifest.kind == Kind::Container) {
            if let Err(e) = self.container_engine(function).await {
                tracing::warn!(error = %e, "no container engine yet");
            }
        }
    }

    async fn container_engine(&self, function: &Function) -> Result<ContainerEngine, LoadError> {
        let mut engine = self.containers.lock().await;
        if let Some(engine) = engine.as_ref() {
            return Ok(engine.clone());
        }
        let network = NetworkEnv::from_env(self.container_setup.ca_bundle.clone());
        let mut connected = ContainerEngine::connect_with(self.container_setup.host.as_deref(), network)
            .await
            .map_err(|e| LoadError::NoContainerEngine { function: function.name.clone(), why: e.to_string() })?;
        if let Some(runner) = &self.container_setup.runner {
            connected = connected.for_runner(runner);
            // Before any alert runs here: an earlier run of this runner that was killed left these behind
            // (their alerts are redelivered and run again in new containers).
            match connected.remove_left_by(runner).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(runner = %runner, "removed {n} container(s) left by an earlier run of this runner")
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for containers left by an earlier run"),
            }
            let sweeping = connected.clone();
            *self.sweeper.lock().unwrap() = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(crate::model::timings::get().container_sweep_every).await;
                    if let Err(e) = sweeping.remove_overdue().await {
                        tracing::debug!(error = %e, "cannot look for containers past their deadline");
                    }
                }
            }));
        }
        *engine = Some(connected.clone());
        Ok(connected)
    }

    /// The component's bytes: from the local cache, else from the registry's object store.
    async fn artifact(&self, function: &Function) -> Result<Vec<u8>, LoadError> {
        let bad = |why: String| LoadError::Artifact { function: function.name.clone(), why };
        let digest = &function.artifact;
        if !crate::model::digest::is_digest(digest) {
            return Err(bad(format!("artifact {digest:?} is not a sha256 digest")));
        }
        let path = self.artifacts.join(format!("{digest}.wasm"));
        if let Ok(bytes) = std::fs::read(&path) {
            if crate::model::digest::digest(&bytes) == *digest {
                return Ok(bytes);
            }
        }
        let bytes = self.registry.artifact(digest).await.map_err(|e| bad(e.to_string()))?;
        let _ = std::fs::create_dir_all(&self.artifacts);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        Ok(bytes)
    }
}

/// The handler of a function whose secret settings do not open for its code: nothing runs, each alert is a
/// `missing-setting` execution (not retried) saying why and what to do.
struct Unopened {
    why: String,
    secrets: Secrets,
}

#[async_trait::async_trait]
impl Handler for Unopened {
    fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    async fn react(&self, _: &Alert) -> Execution {
        Execution::refused(crate::model::execution::Status::MissingSetting, self.why.clone())
    }
}

/// A function run dry: the real component in the real sandbox, every capability recorded instead of made.
pub struct DryRun {
    inner: Arc<dyn Handler>,
    secrets: Secrets,
    answers: DryRunSection,
}

impl DryRun {
    /// Wraps `function`'s handler, whose backends are [`Scoped`] recorders: its secret settings are redacted
    /// from the calls, and its HTTP calls get the success its manifest declares (`[dry_run] http_status`).
    pub fn new(inner: Arc<dyn Handler>, function: &Function) -> DryRun {
        let secrets = function.settings.secrets(&function.manifest);
        DryRun { inner, secrets, answers: function.manifest.dry_run }
    }
}

#[async_trait::async_trait]
impl Handler for DryRun {
    fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    async fn react(&self, alert: &Alert) -> Execution {
        let (mut exec, calls) = recording::recorded(self.secrets.clone(), self.answers, self.inner.handle(alert)).await;
        exec.host_calls = calls;
        exec
    }

    fn instances(&self) -> Option<crate::model::execution::InstanceCounts> {
        self.inner.instances()
    }
}

impl Drop for HandlerCache {
    fn drop(&mut self) {
        if let Some(sweeper) = self.sweeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            sweeper.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::capability::HttpRequest;
    use crate::model::execution::Status;

    /// A reaction that makes one HTTP call through its dry-run backends and says what status it got.
    struct Posts(Backends, Secrets);

    #[async_trait::async_trait]
    impl Handler for Posts {
        async fn react(&self, _: &Alert) -> Execution {
            let request = HttpRequest {
                method: "POST".into(),
                url: "https://events.pagerduty.com/v2/enqueue".into(),
                headers: Vec::new(),
                body: None,
                verify_tls: true,
            };
            match self.0.http.send(request).await {
                Ok(r) => Execution::ok(format!("HTTP {}", r.status)),
                Err(e) => Execution::refused(Status::Failed, e.to_string()),
            }
        }
        fn secrets(&self) -> &Secrets {
            &self.1
        }
    }

    #[tokio::test]
    async fn a_dry_run_functions_http_calls_get_the_status_its_manifest_declares() {
        let manifest = crate::model::manifest::Manifest::parse(
            "name = \"pagerduty\"\nkind = \"wasm\"\ncapabilities = [\"http\"]\n[dry_run]\nhttp_status = 202\n",
        )
        .unwrap();
        let function = Function {
            name: "falco-pagerduty".into(),
            settings: crate::model::function::Settings::resolve(&manifest, &[]).unwrap(),
            manifest,
            artifact: "sha256:0".into(),
            runs_on: None,
            policy: Default::default(),
        };
        let alert = Alert::parse(
            br#"{"output":"o","priority":"Critical","rule":"r","time":"2024-01-01T00:00:00Z","output_fields":{}}"#,
        )
        .unwrap();
        let dry = DryRun::new(Arc::new(Posts(Scoped::backends(), Secrets::default())), &function);
        let exec = dry.handle(&alert).await;
        assert_eq!(exec.message, "HTTP 202");
        assert_eq!(exec.host_calls.len(), 1, "{:?}", exec.host_calls);
    }
}
