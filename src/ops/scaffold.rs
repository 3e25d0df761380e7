//! `riposte new`: a new playbook in a catalog, from riposte's template (a webhook poster using the helper
//! library) or copied from another playbook, with a spec whose cases pass as generated. A copy reads the
//! source folder through [`folder`]: regular files only, each bounded.

use crate::model::manifest::folder::{self, FolderError};
use std::path::{Path, PathBuf};

const TEMPLATE_MANIFEST: &str = include_str!("../../templates/new/playbook.toml");
const TEMPLATE_APP: &str = include_str!("../../templates/new/app.py");
const TEMPLATE_SPEC: &str = include_str!("../../templates/new/spec.toml");

/// Why a playbook could not be created; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("playbook name {0:?} is not valid: use lower-case letters, digits and '-', at most 63")]
    InvalidName(String),
    #[error("{0} exists already: pick another name, or delete it first")]
    Exists(PathBuf),
    #[error("no playbook {name:?} in {dir} to start from")]
    NoSource { name: String, dir: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The source playbook (or its spec) holds what riposte does not read, or cannot be read.
    #[error(transparent)]
    Read(#[from] FolderError),
}

/// Creates playbook `name` in `playbooks` and its spec in `specs` (with the sample alert the template's spec
/// uses, when `specs/alerts` lacks it). `from`: copy that playbook of the catalog (and its spec, if it has
/// one) instead of the template. Returns the files written.
pub fn create(playbooks: &Path, specs: &Path, name: &str, from: Option<&str>) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !crate::model::name::valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let dir = playbooks.join(name);
    let spec = specs.join(format!("{name}.toml"));
    for path in [&dir, &spec] {
        if path.exists() {
            return Err(ScaffoldError::Exists(path.clone()));
        }
    }
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    match from {
        None => {
            let fill = |t: &str| t.replace("{{name}}", name).into_bytes();
            files.push((dir.join("playbook.toml"), fill(TEMPLATE_MANIFEST)));
            files.push((dir.join("app.py"), fill(TEMPLATE_APP)));
            files.push((spec.clone(), fill(TEMPLATE_SPEC)));
            let alert = specs.join("alerts").join(format!("{}.json", crate::ops::assets::SAMPLE_ALERT_NAME));
            if !alert.exists() {
                files.push((alert, crate::ops::assets::SAMPLE_ALERT.as_bytes().to_vec()));
            }
        }
        Some(source) => {
            let src = playbooks.join(source);
            if source.starts_with('_') || !src.join("playbook.toml").is_file() {
                return Err(ScaffoldError::NoSource { name: source.to_owned(), dir: playbooks.to_owned() });
            }
            let skip = |name: &str| name == "__pycache__" || name.starts_with('.') || name.ends_with(".pyc");
            for file in folder::files(&src, skip)? {
                let rel = file.relative;
                let mut bytes = folder::read(&file.path)?;
                if rel == Path::new("playbook.toml") {
                    bytes = renamed_manifest(&String::from_utf8_lossy(&bytes), source, name).into_bytes();
                }
                files.push((dir.join(rel), bytes));
            }
            let source_spec = specs.join(format!("{source}.toml"));
            if source_spec.is_file() {
                let text = String::from_utf8_lossy(&folder::read(&source_spec)?).into_owned();
                let text = text.replacen(&format!("playbook = \"{source}\""), &format!("playbook = \"{name}\""), 1);
                files.push((spec.clone(), text.into_bytes()));
            }
        }
    }
    let mut written = Vec::new();
    for (path, bytes) in files {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("files are in a folder"))?;
            std::fs::write(&path, &bytes)
        };
        write().map_err(|source| ScaffoldError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

/// The manifest with its `name` changed (the first `name = "…"` line; the rest is kept as written).
fn renamed_manifest(text: &str, old: &str, new: &str) -> String {
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            if !done && line.replace(' ', "") == format!("name=\"{old}\"") {
                done = true;
                format!("name = \"{new}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    let mut out = out.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Manifest;

    #[test]
    fn the_template_manifest_is_valid_and_named() {
        let m = Manifest::parse(&TEMPLATE_MANIFEST.replace("{{name}}", "teams")).unwrap();
        assert_eq!(m.name, "teams");
        assert_eq!(m.settings["WEBHOOK_URL"].kind, crate::model::manifest::SettingType::Url);
    }

    #[test]
    fn a_copy_gets_the_new_name_and_nothing_is_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let (playbooks, specs) = (root.path().join("playbooks"), root.path().join("specs"));
        let made = create(&playbooks, &specs, "hook", None).unwrap();
        assert_eq!(made.len(), 4, "{made:?}");
        let copy = create(&playbooks, &specs, "hook2", Some("hook")).unwrap();
        assert_eq!(Manifest::load(&playbooks.join("hook2")).unwrap().name, "hook2");
        assert!(std::fs::read_to_string(specs.join("hook2.toml")).unwrap().contains("playbook = \"hook2\""));
        assert_eq!(copy.len(), 3, "{copy:?}");
        assert!(matches!(create(&playbooks, &specs, "hook", None), Err(ScaffoldError::Exists(_))));
        assert!(matches!(create(&playbooks, &specs, "Bad", None), Err(ScaffoldError::InvalidName(_))));
        assert!(matches!(create(&playbooks, &specs, "x", Some("nope")), Err(ScaffoldError::NoSource { .. })));
    }

    #[test]
    fn a_copy_of_a_folder_holding_a_link_is_refused_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let (playbooks, specs) = (root.path().join("playbooks"), root.path().join("specs"));
        create(&playbooks, &specs, "hook", None).unwrap();
        std::os::unix::fs::symlink("/dev/zero", playbooks.join("hook/data.bin")).unwrap();
        let e = create(&playbooks, &specs, "hook2", Some("hook")).unwrap_err().to_string();
        assert!(e.ends_with("hook/data.bin is a symbolic link: playbook folders may hold only regular files; copy the file in instead"), "{e}");
        assert!(!playbooks.join("hook2").exists() && !specs.join("hook2.toml").exists());
    }
}
