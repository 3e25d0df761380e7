//! Turns a deployed function into a [`Handler`]: the one place that knows each kind of function. Handlers
//! are shared by every trigger of a function (one admission semaphore, one pool of warm instances) and
//! rebuilt when the function is redeployed.

use crate::capability::Backends;
use crate::execution::Handler;
use crate::function::Function;
use crate::manifest::Kind;
use crate::registry::Registry;
use crate::runtime::Runtime;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Why a function cannot run on this runner.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("function {0} is a container function: container functions need a container engine, which this runner does not have")]
    NoContainerEngine(String),
    #[error("function {function}: {why}")]
    Artifact { function: String, why: String },
}

/// Handlers of the functions a runner runs, loaded once per deployed version.
pub struct Handlers {
    runtime: Arc<Runtime>,
    registry: Registry,
    backends: Backends,
    artifacts: PathBuf,
    loaded: Mutex<HashMap<String, (Function, Arc<OnceCell<Arc<dyn Handler>>>)>>,
}

impl Handlers {
    /// Handlers backed by `runtime`, artifacts fetched from `registry` and cached in `artifacts_dir`.
    pub fn new(runtime: Arc<Runtime>, registry: Registry, backends: Backends, artifacts_dir: PathBuf) -> Handlers {
        Handlers { runtime, registry, backends, artifacts: artifacts_dir, loaded: Mutex::new(HashMap::new()) }
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
        cell.get_or_try_init(|| self.load(function)).await.cloned()
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
                Ok(Arc::new(self.runtime.function(component, function, self.backends.clone())))
            }
            // The container engine plugs in here: build its handler from the function.
            Kind::Container => Err(LoadError::NoContainerEngine(function.name.clone())),
        }
    }

    /// The component's bytes: from the local cache, else from the registry's object store.
    async fn artifact(&self, function: &Function) -> Result<Vec<u8>, LoadError> {
        let bad = |why: String| LoadError::Artifact { function: function.name.clone(), why };
        let digest = &function.artifact;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("artifact {digest:?} is not a sha256 digest")));
        }
        let path = self.artifacts.join(format!("{digest}.wasm"));
        if let Ok(bytes) = std::fs::read(&path) {
            if crate::runtime::cache::digest(&bytes) == *digest {
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
