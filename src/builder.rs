//! `riposte build`: Python playbooks → WebAssembly components with the pinned componentize-py, cached by a
//! digest of everything that goes in (the playbook's files, `playbooks/_lib`, `wit/`, the tool's version).
//! An installed catalog (the Debian package, the container image) ships its components built, in
//! `components/` beside `playbooks/`, under the same digest names: found there, nothing is built.

use crate::manifest::{Kind, Manifest, ManifestError};
use crate::runtime::{LoadedComponent, Runtime, RuntimeError};
use crate::state_dir::StateDir;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The componentize-py version riposte builds with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Why a playbook could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no playbook {name:?} in {dir}; available: {available}")]
    Unknown { name: String, dir: PathBuf, available: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "componentize-py not found; install it with: python3 -m venv .venv && .venv/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION} (or set RIPOSTE_COMPONENTIZE_PY to its path)"
    )]
    NoComponentizePy,
    #[error("componentize-py at {path} is version {found}, riposte needs {COMPONENTIZE_PY_VERSION}: pip install componentize-py=={COMPONENTIZE_PY_VERSION}")]
    WrongVersion { path: PathBuf, found: String },
    #[error("building playbook {name} failed:\n{output}")]
    Failed { name: String, output: String },
    #[error("playbook {0} is a container playbook: it has no component to build (riposte call builds its image from its Containerfile)")]
    NotWasm(String),
    #[error(transparent)]
    Load(#[from] RuntimeError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where playbooks and the WIT are, and where built components go.
pub struct Builder {
    playbooks: PathBuf,
    wit: PathBuf,
    out: PathBuf,
    shipped: PathBuf,
}

/// A built (or cached) component.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub path: PathBuf,
    /// Whether this call ran componentize-py (false: the cached build was current).
    pub rebuilt: bool,
}

impl Builder {
    /// A builder for the catalog in `playbooks` (its `../wit` is the contract).
    pub fn new(playbooks: PathBuf, state: &StateDir) -> Builder {
        let root = playbooks.parent().map(Path::to_path_buf).unwrap_or_default();
        Builder { wit: root.join("wit"), shipped: root.join("components"), playbooks, out: state.components() }
    }

    /// The catalog directory.
    pub fn playbooks_dir(&self) -> &Path {
        &self.playbooks
    }

    /// Names of every playbook in the catalog, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.playbooks)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("playbook.toml").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// The folder and manifest of one playbook, or an error listing what exists.
    pub fn manifest(&self, name: &str) -> Result<(PathBuf, Manifest), BuildError> {
        let dir = self.playbooks.join(name);
        if !dir.join("playbook.toml").is_file() || name.starts_with('_') || name.contains('/') {
            return Err(BuildError::Unknown {
                name: name.to_owned(),
                dir: self.playbooks.clone(),
                available: self.names().join(", "),
            });
        }
        let manifest = Manifest::load(&dir)?;
        Ok((dir, manifest))
    }

    /// Builds the playbook (or takes its current build) and loads it into `runtime`, compiling it only when the
    /// compile cache lacks it. Blocking: call it off the async threads (`block_in_place`, `spawn_blocking`).
    /// Returns the loaded component and its bytes (what a deploy stores).
    pub fn load(&self, runtime: &Runtime, name: &str) -> Result<(Arc<LoadedComponent>, Vec<u8>), BuildError> {
        let built = self.build(name)?;
        let bytes =
            std::fs::read(&built.path).map_err(|source| BuildError::Read { path: built.path.clone(), source })?;
        let component = runtime.load(&bytes, &format!("playbook {name}"))?;
        Ok((component, bytes))
    }

    /// Builds one WASM playbook unless a build of the same sources exists.
    pub fn build(&self, name: &str) -> Result<Built, BuildError> {
        let (dir, manifest) = self.manifest(name)?;
        if manifest.kind != Kind::Wasm {
            return Err(BuildError::NotWasm(name.to_owned()));
        }
        let digest = self.source_digest(&dir)?;
        let file = format!("{name}-{}.wasm", &digest[..16]);
        if let Some(path) = [self.out.join(&file), self.shipped.join(&file)].into_iter().find(|p| p.is_file()) {
            return Ok(Built { name: name.to_owned(), path, rebuilt: false });
        }
        let path = self.out.join(file);
        let tool = find_componentize_py(&self.playbooks)?;
        std::fs::create_dir_all(&self.out)?;
        let tmp = self.out.join(format!(".{name}-{}.wasm.tmp", std::process::id()));
        let out = Command::new(&tool)
            .arg("-d")
            .arg(&self.wit)
            .args(["-w", "playbook", "componentize", "app", "-p"])
            .arg(&dir)
            .arg("-p")
            .arg(self.playbooks.join("_lib"))
            .arg("-o")
            .arg(&tmp)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stdout));
            return Err(BuildError::Failed { name: name.to_owned(), output });
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Built { name: name.to_owned(), path, rebuilt: true })
    }

    fn source_digest(&self, dir: &Path) -> Result<String, BuildError> {
        let mut hasher = Sha256::new();
        hasher.update(COMPONENTIZE_PY_VERSION);
        for root in [dir.to_owned(), self.playbooks.join("_lib"), self.wit.clone()] {
            let mut files = Vec::new();
            collect_files(&root, &mut files)?;
            files.sort();
            for file in files {
                hasher.update(file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().as_bytes());
                hasher.update([0]);
                hasher.update(std::fs::read(&file)?);
                hasher.update([0]);
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "__pycache__" || name == "build" || name.starts_with('.') || name.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// componentize-py: `RIPOSTE_COMPONENTIZE_PY`, the project's `.venv`, or `PATH`; checked for the pinned version.
pub fn find_componentize_py(playbooks: &Path) -> Result<PathBuf, BuildError> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("RIPOSTE_COMPONENTIZE_PY") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(root) = playbooks.parent() {
        candidates.push(root.join(".venv/bin/componentize-py"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("componentize-py")));
    }
    let tool = candidates.into_iter().find(|c| c.is_file()).ok_or(BuildError::NoComponentizePy)?;
    let out = Command::new(&tool).arg("--version").output().map_err(|_| BuildError::NoComponentizePy)?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !found.contains(COMPONENTIZE_PY_VERSION) {
        return Err(BuildError::WrongVersion { path: tool, found });
    }
    Ok(tool)
}
