//! `riposte new`: a new playbook in a catalog, from riposte's template (a webhook poster using the helper
//! library) or copied from another playbook, with a spec whose cases pass as generated.

use std::path::{Path, PathBuf};

const TEMPLATE_MANIFEST: &str = include_str!("../templates/new/playbook.toml");
const TEMPLATE_APP: &str = include_str!("../templates/new/app.py");
const TEMPLATE_SPEC: &str = include_str!("../templates/new/spec.toml");

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
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates playbook `name` in `playbooks` and its spec in `specs` (with the sample alert the template's spec
/// uses, when `specs/alerts` lacks it). `from`: copy that playbook of the catalog (and its spec, if it has
/// one) instead of the template. Returns the files written.
pub fn create(playbooks: &Path, specs: &Path, name: &str, from: Option<&str>) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !crate::name::valid_name(name) {
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
            let alert = specs.join("alerts").join(format!("{}.json", crate::assets::SAMPLE_ALERT_NAME));
            if !alert.exists() {
                files.push((alert, crate::assets::SAMPLE_ALERT.as_bytes().to_vec()));
            }
        }
        Some(source) => {
            let src = playbooks.join(source);
            if source.starts_with('_') || !src.join("playbook.toml").is_file() {
                return Err(ScaffoldError::NoSource { name: source.to_owned(), dir: playbooks.to_owned() });
            }
            let mut found = Vec::new();
            collect(&src, &mut found)?;
            for path in found {
                let rel = path.strip_prefix(&src).unwrap_or(&path).to_owned();
                let mut bytes = read(&path)?;
                if rel == Path::new("playbook.toml") {
                    bytes = renamed_manifest(&String::from_utf8_lossy(&bytes), source, name).into_bytes();
                }
                files.push((dir.join(rel), bytes));
            }
            let source_spec = specs.join(format!("{source}.toml"));
            if source_spec.is_file() {
                let text = String::from_utf8_lossy(&read(&source_spec)?).into_owned();
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

fn read(path: &Path) -> Result<Vec<u8>, ScaffoldError> {
    std::fs::read(path).map_err(|source| ScaffoldError::Read { path: path.to_owned(), source })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ScaffoldError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ScaffoldError::Read { path: dir.to_owned(), source })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file == "__pycache__" || file.starts_with('.') || file.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    #[test]
    fn the_template_manifest_is_valid_and_named() {
        let m = Manifest::parse(&TEMPLATE_MANIFEST.replace("{{name}}", "teams")).unwrap();
        assert_eq!(m.name, "teams");
        assert_eq!(m.settings["WEBHOOK_URL"].kind, crate::manifest::SettingType::Url);
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
}
