//! Where riposte keeps its files: built components, the compile cache, the embedded nats-server's data.
//! `RIPOSTE_STATE_DIR` (or `--state-dir`) overrides the default `$XDG_DATA_HOME/riposte`
//! (`~/.local/share/riposte`).

use std::path::{Path, PathBuf};

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The directory given, or the default.
    pub fn new(explicit: Option<PathBuf>) -> StateDir {
        let root =
            explicit.unwrap_or_else(|| dirs::data_dir().unwrap_or_else(|| PathBuf::from(".riposte")).join("riposte"));
        StateDir { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Compiled components (`.cwasm`), keyed by digest and engine.
    pub fn compiled(&self) -> PathBuf {
        self.root.join("compiled")
    }

    /// Components built from playbooks, keyed by playbook and source digest.
    pub fn components(&self) -> PathBuf {
        self.root.join("components")
    }

    /// Component binaries fetched from the registry's artifact store, by digest.
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// The settings key of the local nats-server's registry (`riposte run` without `--nats` creates it, mode
    /// 0600; see [`crate::secrets::seal`]).
    pub fn settings_key(&self) -> PathBuf {
        self.root.join("settings.key")
    }

    /// Objects put by playbooks through the `object-store` capability.
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }
}
