//! `riposte build`: Python playbooks → WebAssembly components with the pinned componentize-py, cached by a
//! digest of everything that goes in (the playbook's files, the catalog's `_lib`, the WIT and helper library
//! riposte carries, the tool's version). Before componentize-py runs, the settings the code reads by literal
//! name are checked against the manifest; a failed build is reported as `file:line: error` and the line.
//! Both read the playbook's folder through [`folder`]: a link, a device or a fifo in it, or a file over its
//! bound, stops the build with its path before anything is read.
//! An installed catalog (the Debian package, the container image) ships its components built, in
//! `components/` beside `playbooks/`, under the same digest names: found there, nothing is built.
//! Which folders hold playbooks is one rule for every command, [`Catalog::resolve`].

use crate::execute::runtime::{LoadedComponent, Runtime, RuntimeError};
use crate::model::manifest::folder::{self, FolderError};
use crate::model::manifest::{Kind, Manifest, ManifestError};
use crate::model::state_dir::StateDir;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The componentize-py version riposte builds with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Why a playbook could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no playbook {name:?} in {searched}; available: {available}")]
    Unknown { name: String, searched: String, available: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "componentize-py not found (looked for {searched}); install it with: python3 -m venv .venv && .venv/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION} (or set RIPOSTE_COMPONENTIZE_PY to its path)"
    )]
    NoComponentizePy { searched: String },
    #[error("componentize-py at {path} is version {found}, riposte needs {COMPONENTIZE_PY_VERSION}: pip install componentize-py=={COMPONENTIZE_PY_VERSION}")]
    WrongVersion { path: PathBuf, found: String },
    #[error("building playbook {name} failed:\n{output}")]
    Failed { name: String, output: String },
    /// The code reads settings the manifest does not declare (one line per read).
    #[error("{}", .reads.join("\n"))]
    UndeclaredSettings { reads: Vec<String> },
    /// Python refused the code: `file:line: SyntaxError: …`, the line and a caret.
    #[error("{0}")]
    Python(String),
    #[error("playbook {0} is a container playbook: it has no component to build (riposte call builds its image from its Containerfile)")]
    NotWasm(String),
    #[error(transparent)]
    Load(#[from] RuntimeError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The playbook's folder (or the catalog's `_lib`) holds what riposte does not read.
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Told the playbook's name when a build actually starts.
type OnBuild = Box<dyn Fn(&str) + Send + Sync>;

/// The folders playbooks are looked up in, in order: the same rule for every command (`new`, `build`, `spec`,
/// `call`, `playbook list`, `deploy_playbook`, `function deploy`, `apply`).
#[derive(Debug, Clone)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    /// Whether `--playbooks` named the folder (then it is the only one).
    explicit: bool,
}

impl Catalog {
    /// `--playbooks DIR` (or `RIPOSTE_PLAYBOOKS`) when given: that folder alone. Else `./playbooks` when it
    /// exists, then the installed catalog ([`installed_catalog`]): a playbook is taken from the first that has it.
    pub fn resolve(explicit: Option<&Path>) -> Catalog {
        if let Some(dir) = explicit {
            return Catalog::from(dir.to_owned());
        }
        let mut dirs = vec![PathBuf::from("playbooks")];
        dirs.extend(installed_catalog());
        Catalog { dirs, explicit: false }
    }

    /// The folders searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The first folder: where `riposte new` writes (`./playbooks` unless `--playbooks` names another) and whose
    /// `specs/` sibling holds the specs.
    pub fn primary(&self) -> &Path {
        self.dirs.iter().find(|d| d.is_dir()).unwrap_or(&self.dirs[0])
    }

    /// Where a new playbook goes: `--playbooks DIR`, else `./playbooks` (never the installed catalog).
    pub fn for_new(&self) -> PathBuf {
        if self.explicit {
            self.dirs[0].clone()
        } else {
            PathBuf::from("playbooks")
        }
    }

    /// The folders searched, for messages: "playbooks (not there) and /usr/share/riposte/playbooks".
    pub fn searched(&self) -> String {
        let shown: Vec<String> = self
            .dirs
            .iter()
            .map(|d| if d.is_dir() { d.display().to_string() } else { format!("{} (not there)", d.display()) })
            .collect();
        shown.join(" and ")
    }

    /// The folder holding playbook `name`, the first in order.
    pub fn find(&self, name: &str) -> Option<&Path> {
        self.dirs.iter().map(PathBuf::as_path).find(|d| has_manifest(&d.join(name)))
    }
}

impl From<PathBuf> for Catalog {
    fn from(dir: PathBuf) -> Catalog {
        Catalog { dirs: vec![dir], explicit: true }
    }
}

/// The catalog installed with this riposte binary: `<prefix>/share/riposte/playbooks` beside
/// `<prefix>/bin/riposte` (the Debian package, the image, `/usr/local`), or a checkout's `playbooks/` when the
/// binary is its `target/<profile>/riposte`.
pub fn installed_catalog() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let bin = exe.parent()?;
    let share = bin.parent()?.join("share/riposte/playbooks");
    if share.is_dir() {
        return Some(share);
    }
    let checkout = bin.parent()?.parent()?;
    (checkout.join("Cargo.toml").is_file() && checkout.join("playbooks").is_dir()).then(|| checkout.join("playbooks"))
}

/// Where playbooks are, where built components go, and whom to tell that a build starts.
pub struct Builder {
    catalog: Catalog,
    state_root: PathBuf,
    out: PathBuf,
    on_build: Option<OnBuild>,
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
    /// A builder for the playbooks of `catalog` (any folder: the WIT and helper library come with riposte).
    pub fn new(catalog: impl Into<Catalog>, state: &StateDir) -> Builder {
        Builder {
            catalog: catalog.into(),
            state_root: state.root().to_owned(),
            out: state.components(),
            on_build: None,
        }
    }

    /// Calls `f` with the playbook's name when a build actually starts (not for a cached one), e.g. to show
    /// "building P…" on a terminal.
    pub fn on_build(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Builder {
        self.on_build = Some(Box::new(f));
        self
    }

    /// The folders playbooks are looked up in.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Names of every playbook in the catalog's folders, sorted, each once (the first folder's wins).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog
            .dirs
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
            .filter(|e| has_manifest(&e.path()) && !e.file_name().to_string_lossy().starts_with('_'))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The folder and manifest of one playbook, or an error naming the folders searched and what they hold.
    pub fn manifest(&self, name: &str) -> Result<(PathBuf, Manifest), BuildError> {
        let found = self.catalog.find(name).filter(|_| !name.starts_with('_') && !name.contains('/'));
        let Some(catalog) = found else {
            let available = self.names();
            return Err(BuildError::Unknown {
                name: name.to_owned(),
                searched: self.catalog.searched(),
                available: if available.is_empty() { "none".to_owned() } else { available.join(", ") },
            });
        };
        let dir = catalog.join(name);
        let manifest = Manifest::load(&dir)?;
        Ok((dir, manifest))
    }

    /// Builds the playbook (or takes its current build) and loads it into `runtime`, compiling it only when the
    /// compile cache lacks it. Blocking: call it off the async threads (`spawn_blocking`).
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
        check_settings(&dir, &manifest)?;
        let assets = crate::ops::assets::write_build_assets(&self.state_root.join("build"))?;
        let digest = self.source_digest(&dir)?;
        let file = format!("{name}-{}.wasm", &digest[..16]);
        let catalog = catalog_of(&dir);
        let shipped = catalog.parent().map(|root| root.join("components").join(&file));
        if let Some(path) = [Some(self.out.join(&file)), shipped].into_iter().flatten().find(|p| p.is_file()) {
            return Ok(Built { name: name.to_owned(), path, rebuilt: false });
        }
        let path = self.out.join(file);
        let tool = find_componentize_py(catalog)?;
        if let Some(f) = &self.on_build {
            f(name);
        }
        std::fs::create_dir_all(&self.out)?;
        let tmp = self.out.join(format!(".{name}-{}.wasm.tmp", std::process::id()));
        // The Python path, in order: componentize-py names these folders /0, /1, … in its messages.
        let mut python_path = vec![dir.clone()];
        let catalog_lib = catalog.join("_lib");
        if catalog_lib.is_dir() {
            python_path.push(catalog_lib);
        }
        python_path.push(assets.lib.clone());
        let mut command = Command::new(&tool);
        command.arg("-d").arg(&assets.wit).args(["-w", "playbook", "componentize", "app"]);
        for p in &python_path {
            command.arg("-p").arg(p);
        }
        let out = command
            .arg("-o")
            .arg(&tmp)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("VIRTUAL_ENV", &assets.empty_venv)
            // Its backtraces are about componentize-py itself, never about the playbook.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stdout));
            let shown: Vec<PathBuf> = python_path
                .iter()
                .map(|p| if p == &assets.lib { PathBuf::from("(riposte's helper library)") } else { p.clone() })
                .collect();
            return Err(match python_error(&output, &shown) {
                Some(short) => BuildError::Python(short),
                None => BuildError::Failed { name: name.to_owned(), output: without_backtrace(&output) },
            });
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Built { name: name.to_owned(), path, rebuilt: true })
    }

    fn source_digest(&self, dir: &Path) -> Result<String, BuildError> {
        let mut hasher = Sha256::new();
        hasher.update(COMPONENTIZE_PY_VERSION);
        // The WIT and helper library are hashed as riposte carries them, not read back from their folders: a
        // concurrent build (another process on the same state dir) may have its temporary file there.
        hasher.update(crate::ops::assets::PLAYBOOK_WIT);
        hasher.update([0]);
        hasher.update(crate::ops::assets::HELPER_LIBRARY);
        hasher.update([0]);
        for root in [dir.to_owned(), catalog_of(dir).join("_lib")] {
            for file in folder::files(&root, not_built)? {
                hasher.update(file.relative.to_string_lossy().as_bytes());
                hasher.update([0]);
                hasher.update(folder::read(&file.path)?);
                hasher.update([0]);
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// The helpers (and raw imports) that read a setting by name.
const SETTING_READERS: [&str; 6] = ["required", "setting", "flag", "integer", "settings.get", "settings.require"];

/// Refuses code that reads, by literal name, a setting the manifest does not declare: deploying could never
/// give it a value (`-e X=…` is refused for undeclared names).
fn check_settings(dir: &Path, manifest: &Manifest) -> Result<(), BuildError> {
    let mut reads = Vec::new();
    for file in folder::files(dir, not_built)?.into_iter().filter(|f| f.path.extension().is_some_and(|x| x == "py")) {
        let file = file.path;
        let text = folder::read_to_string(&file)?;
        for (line, name) in setting_reads(&text) {
            if !manifest.settings.contains_key(&name) {
                reads.push(format!(
                    "{}:{line}: setting {name} is not declared in {}: add [settings.{name}]",
                    file.display(),
                    dir.join("playbook.toml").display()
                ));
            }
        }
    }
    if reads.is_empty() {
        Ok(())
    } else {
        Err(BuildError::UndeclaredSettings { reads })
    }
}

/// (line, setting name) of every read of a setting by literal name: `required("X")`, `setting('X', …)`,
/// `settings.get("X")` and the like. Comment lines are skipped.
pub fn setting_reads(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for reader in SETTING_READERS {
            let call = format!("{reader}(");
            let mut from = 0;
            while let Some(at) = line[from..].find(&call).map(|i| i + from) {
                from = at + call.len();
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || (c == '.' && !reader.contains('.'))) {
                    continue;
                }
                let rest = line[from..].trim_start();
                let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
                let Some(end) = rest[1..].find(quote) else { continue };
                let name = &rest[1..1 + end];
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.') {
                    out.push((n + 1, name.to_owned()));
                }
            }
        }
    }
    out
}

/// The short form of a Python error in componentize-py's output: `path:line: Kind: message`, then the line
/// and its caret. `python_path[i]` is what `/i/` stands for. `None` when the output is not a Python error.
fn python_error(output: &str, python_path: &[PathBuf]) -> Option<String> {
    // componentize-py wraps the traceback: "AssertionError: <traceback>\n\nCaused by: …".
    let body = output.split("\n\nCaused by:").next().unwrap_or(output);
    let lines: Vec<&str> = body.lines().collect();
    let (at, file, line_no) = lines.iter().enumerate().rev().find_map(|(i, l)| {
        // A frame: `  File "…", line N`, or the wrapper's `AssertionError:   File "…", line N` (a SyntaxError's).
        let l = l.trim_start();
        let rest = l.strip_prefix("AssertionError:").map(str::trim_start).unwrap_or(l).strip_prefix("File \"")?;
        let (file, rest) = rest.split_once('"')?;
        let line_no: usize =
            rest.trim_start_matches(", line ").split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        Some((i, file.to_owned(), line_no))
    })?;
    let error = lines[at + 1..].iter().rev().find(|l| {
        let t = l.trim();
        !l.starts_with(' ')
            && t.split(':')
                .next()
                .is_some_and(|k| k.ends_with("Error") || k.ends_with("Exception") || k.ends_with("Exit"))
    })?;
    let error = error.trim().trim_start_matches("AssertionError: ");
    // "/0/app.py" → "playbooks/p/app.py".
    let shown = file
        .strip_prefix('/')
        .and_then(|f| f.split_once('/'))
        .and_then(|(index, rel)| python_path.get(index.parse::<usize>().ok()?).map(|p| p.join(rel)))
        .map(|p| p.display().to_string())
        .unwrap_or(file);
    let mut out = format!("{shown}:{line_no}: {error}");
    if error.starts_with("ModuleNotFoundError") {
        out.push_str(
            " (a playbook gets the standard library, riposte_playbook and its own folder; HTTP goes through post_json)",
        );
    }
    for l in &lines[at + 1..] {
        let t = l.trim_end();
        if t.trim().is_empty() || t.trim() == error || !l.starts_with("    ") {
            break;
        }
        out.push('\n');
        out.push_str(t);
    }
    Some(out)
}

/// componentize-py's output without a Rust backtrace it may append.
fn without_backtrace(output: &str) -> String {
    output.split("\nStack backtrace:").next().unwrap_or(output).trim_end().to_owned()
}

/// Entries of a playbook folder that are no part of its build (caches, a local build, hidden files).
fn not_built(name: &str) -> bool {
    name == "__pycache__" || name == "build" || name.starts_with('.') || name.ends_with(".pyc")
}

/// Whether `dir` holds a `playbook.toml` entry (of any kind: a link there is a playbook refused with its path,
/// not a missing one).
fn has_manifest(dir: &Path) -> bool {
    dir.join("playbook.toml").symlink_metadata().is_ok()
}

/// The catalog folder a playbook folder is in.
fn catalog_of(dir: &Path) -> &Path {
    dir.parent().unwrap_or(Path::new("."))
}

/// componentize-py, the same from any folder, first found of: `RIPOSTE_COMPONENTIZE_PY`; the `.venv` beside the
/// catalog being built; `./.venv`; the `.venv` of the checkout this riposte was built in (`target/<profile>/`);
/// `PATH`. Checked for the pinned version; when none is found the message lists every place looked at.
pub fn find_componentize_py(catalog: &Path) -> Result<PathBuf, BuildError> {
    const TOOL: &str = ".venv/bin/componentize-py";
    if let Some(tool) = std::env::var_os("RIPOSTE_COMPONENTIZE_PY").map(PathBuf::from) {
        if !tool.is_file() {
            return Err(BuildError::NoComponentizePy {
                searched: format!("RIPOSTE_COMPONENTIZE_PY={}, which is not a file", tool.display()),
            });
        }
        return checked_version(tool);
    }
    let mut candidates = Vec::new();
    if let Some(root) = catalog.parent() {
        candidates.push(if root.as_os_str().is_empty() { PathBuf::from(TOOL) } else { root.join(TOOL) });
    }
    candidates.push(PathBuf::from(TOOL));
    if let Some(checkout) = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.parent()?.to_owned()))
    {
        candidates.push(checkout.join(TOOL));
    }
    let mut searched = vec!["RIPOSTE_COMPONENTIZE_PY (unset)".to_owned()];
    for c in &candidates {
        let shown = c.display().to_string();
        if !searched.contains(&shown) {
            searched.push(shown);
        }
    }
    searched.push("componentize-py on PATH".to_owned());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("componentize-py")));
    }
    let missing = || BuildError::NoComponentizePy { searched: searched.join(", ") };
    let tool = candidates.into_iter().find(|c| c.is_file()).ok_or_else(missing)?;
    checked_version(tool)
}

/// `tool` when it is the pinned componentize-py version.
fn checked_version(tool: PathBuf) -> Result<PathBuf, BuildError> {
    let out = Command::new(&tool).arg("--version").output().map_err(|e| BuildError::NoComponentizePy {
        searched: format!("{}, which does not run ({e})", tool.display()),
    })?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !found.contains(COMPONENTIZE_PY_VERSION) {
        return Err(BuildError::WrongVersion { path: tool, found });
    }
    Ok(tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_setting_reads_are_found() {
        let code =
            "url = required(\"URL\")\n# required(\"COMMENTED\")\nx = setting('COLOR', 'red') or flag(\"VERIFY\")\n\
                    y = settings.get(\"RAW\"); z = required(name); w = my_required(\"NOT\")\n";
        let names: Vec<(usize, String)> = setting_reads(code);
        assert_eq!(names, vec![(1, "URL".into()), (3, "COLOR".into()), (3, "VERIFY".into()), (4, "RAW".into())]);
    }

    #[test]
    fn a_syntax_error_is_one_line_and_the_code() {
        let output = "Traceback (most recent call last):\n  File \"/venv/bin/componentize-py\", line 8, in <module>\n    sys.exit(script())\n             ^^^^^^^^\nAssertionError:   File \"/0/app.py\", line 5\n    x = (1,\n        ^\nSyntaxError: '(' was never closed\n\n\nCaused by:\n    SyntaxError: '(' was never closed (app.py, line 5)\n\nStack backtrace:\n   0: anyhow\n";
        let short = python_error(output, &[PathBuf::from("playbooks/p"), PathBuf::from("lib")]).unwrap();
        assert_eq!(short, "playbooks/p/app.py:5: SyntaxError: '(' was never closed\n    x = (1,\n        ^");
    }

    #[test]
    fn an_import_time_exception_points_at_its_line() {
        let output = "AssertionError: Traceback (most recent call last):\n  File \"/0/app.py\", line 3, in <module>\n    import requests\nModuleNotFoundError: No module named 'requests'\n\nCaused by:\n    x\n";
        let short = python_error(output, &[PathBuf::from("cat/p")]).unwrap();
        assert!(
            short.starts_with("cat/p/app.py:3: ModuleNotFoundError: No module named 'requests' (a playbook gets"),
            "{short}"
        );
        assert!(short.ends_with("\n    import requests"), "{short}");
    }

    #[test]
    fn a_playbook_folder_holding_a_link_is_refused_at_once_and_nothing_is_written() {
        let root = tempfile::tempdir().unwrap();
        let (playbooks, state) = (root.path().join("playbooks"), root.path().join("state"));
        let dir = playbooks.join("x");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("playbook.toml"), "name = \"x\"\nkind = \"wasm\"\n").unwrap();
        std::fs::write(dir.join("app.py"), "def handle(alert):\n    return 'ok'\n").unwrap();
        let builder = Builder::new(playbooks.clone(), &StateDir::new(Some(state.clone())));
        for (link, to, what) in [("data.bin", "/dev/zero", "file"), ("conf", "/etc", "folder")] {
            std::os::unix::fs::symlink(to, dir.join(link)).unwrap();
            let started = std::time::Instant::now();
            let e = builder.build("x").unwrap_err().to_string();
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
            let path = dir.join(link);
            let want = format!(
                "{} is a symbolic link: playbook folders may hold only regular files; copy the {what} in instead",
                path.display()
            );
            assert_eq!(e, want);
            std::fs::remove_file(path).unwrap();
        }
        assert!(!state.exists(), "nothing written");
        // A manifest that is a link is refused the same way, not taken for a missing playbook.
        std::fs::rename(dir.join("playbook.toml"), dir.join("real.toml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("playbook.toml")).unwrap();
        let e = builder.build("x").unwrap_err().to_string();
        assert!(e.ends_with("x/playbook.toml is a symbolic link: playbook folders may hold only regular files; copy the file in instead"), "{e}");
        assert_eq!(builder.names(), ["x"]);
    }
}
