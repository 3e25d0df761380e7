//! What riposte carries for playbook authors, compiled into the binary so that any folder of playbooks builds
//! (not only the repository's): the WIT contract the host implements, the Python helper library
//! (`riposte_playbook.py`), a sample alert, and a reference of the helpers generated from their docstrings.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `wit/playbook.wit`: the world every WASM playbook is built for (the one this binary implements).
pub const PLAYBOOK_WIT: &str = include_str!("../../wit/playbook.wit");
/// `playbooks/_lib/riposte_playbook.py`: the helpers every catalog playbook uses.
pub const HELPER_LIBRARY: &str = include_str!("../../playbooks/_lib/riposte_playbook.py");
/// The helper library's module name.
pub const HELPER_MODULE: &str = "riposte_playbook";
/// A falcosidekick alert about a Kubernetes pod, for generated specs (`specs/alerts/<SAMPLE_ALERT_NAME>.json`).
pub const SAMPLE_ALERT: &str = include_str!("../../specs/alerts/terminal-shell-k8s.json");
/// The name generated specs use for [`SAMPLE_ALERT`].
pub const SAMPLE_ALERT_NAME: &str = "terminal-shell-k8s";

/// The WIT folder and the helper-library folder written out for componentize-py.
#[derive(Debug, Clone)]
pub struct BuildAssets {
    /// A folder with `playbook.wit`.
    pub wit: PathBuf,
    /// A folder with `riposte_playbook.py`.
    pub lib: PathBuf,
    /// An empty virtual environment: componentize-py bundles `$VIRTUAL_ENV`'s site-packages (else those of
    /// the Python it runs in), and packages from there (requests, urllib3…) need sockets the sandbox does not
    /// have. A playbook bundles a pure-Python package by putting it in its own folder.
    pub empty_venv: PathBuf,
}

/// Writes the embedded WIT and helper library under `root` (once per content: the folder is named by their
/// digest, so two riposte versions never share one) and returns their folders.
pub fn write_build_assets(root: &Path) -> std::io::Result<BuildAssets> {
    let mut hasher = Sha256::new();
    hasher.update(PLAYBOOK_WIT);
    hasher.update([0]);
    hasher.update(HELPER_LIBRARY);
    let dir = root.join(format!("assets-{}", &hex::encode(hasher.finalize())[..16]));
    let assets = BuildAssets { wit: dir.join("wit"), lib: dir.join("lib"), empty_venv: dir.join("venv") };
    std::fs::create_dir_all(assets.empty_venv.join("lib/site-packages"))?;
    write_once(&assets.wit.join("playbook.wit"), PLAYBOOK_WIT)?;
    write_once(&assets.lib.join(format!("{HELPER_MODULE}.py")), HELPER_LIBRARY)?;
    Ok(assets)
}

/// Writes `text` to `path` unless it holds exactly that already; through a temporary file of its own (named by
/// process and call, since playbooks build in parallel threads), so a concurrent build never reads half a
/// file and two writers never rename each other's file away.
fn write_once(path: &Path, text: &str) -> std::io::Result<()> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let dir = path.parent().expect("asset paths have a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("asset"),
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// One public helper of the library: its signature and docstring.
#[derive(Debug, Clone, PartialEq)]
pub struct Helper {
    /// `post_json(what, url, body, headers=(), verify_tls=True)`.
    pub signature: String,
    /// The docstring, dedented, paragraphs joined into lines.
    pub doc: String,
    /// The section comment it is under (`errors`, `settings`, `the alert`, …).
    pub section: String,
}

/// The public functions of the helper library (top-level `def`s not starting with `_`), in source order.
pub fn helpers() -> Vec<Helper> {
    parse_helpers(HELPER_LIBRARY)
}

fn parse_helpers(source: &str) -> Vec<Helper> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    let mut section = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.strip_prefix("# ---") {
            section = rest.trim_start_matches('-').trim().to_owned();
        }
        let Some(def) = line.strip_prefix("def ") else {
            i += 1;
            continue;
        };
        // The signature may span lines; it ends at the line ending with "):".
        let mut signature = def.trim().to_owned();
        while !signature.ends_with(':') && i + 1 < lines.len() {
            i += 1;
            signature.push(' ');
            signature.push_str(lines[i].trim());
        }
        let signature = signature.trim_end_matches(':').to_owned();
        i += 1;
        let mut doc = Vec::new();
        if let Some(first) = lines.get(i).map(|l| l.trim()).and_then(|l| l.strip_prefix("\"\"\"")) {
            let mut text = first.to_owned();
            while !text.contains("\"\"\"") && i + 1 < lines.len() {
                i += 1;
                text.push('\n');
                text.push_str(lines[i].trim());
            }
            doc.push(text.split("\"\"\"").next().unwrap_or_default().to_owned());
        }
        if !signature.starts_with('_') {
            let doc = doc
                .join("\n")
                .split("\n\n")
                .map(|p| p.split('\n').collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n\n");
            out.push(Helper { signature, doc, section: section.clone() });
        }
    }
    out
}

/// The helper reference as Markdown: one section per part of the library, one entry per helper.
pub fn helper_reference() -> String {
    let mut out = String::new();
    let mut section = None;
    for h in helpers() {
        if section.as_deref() != Some(h.section.as_str()) {
            if !h.section.is_empty() {
                out.push_str(&format!("\n### {}\n\n", h.section));
            }
            section = Some(h.section.clone());
        }
        out.push_str(&format!("- `{}`", h.signature));
        if !h.doc.is_empty() {
            out.push_str(&format!(": {}", h.doc.replace("\n\n", " ")));
        }
        out.push('\n');
    }
    out.trim_start().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_writing_the_assets_at_once_all_succeed() {
        // Playbooks build in parallel threads of one process: each writes the assets on a fresh state dir.
        for _ in 0..20 {
            let root = tempfile::tempdir().unwrap();
            let failures: Vec<String> = std::thread::scope(|s| {
                let writers: Vec<_> = (0..8).map(|_| s.spawn(|| write_build_assets(root.path()))).collect();
                writers.into_iter().filter_map(|w| w.join().unwrap().err().map(|e| e.to_string())).collect()
            });
            assert!(failures.is_empty(), "{failures:?}");
            let assets = write_build_assets(root.path()).unwrap();
            assert_eq!(std::fs::read_to_string(assets.wit.join("playbook.wit")).unwrap(), PLAYBOOK_WIT);
        }
    }

    #[test]
    fn every_public_helper_has_a_docstring() {
        let helpers = helpers();
        for name in ["guarded", "post_json", "status_error", "required", "field", "falco_text", "http_date"] {
            let h = helpers
                .iter()
                .find(|h| h.signature.starts_with(&format!("{name}(")))
                .unwrap_or_else(|| panic!("{name}"));
            assert!(!h.doc.is_empty(), "{name} has no docstring");
        }
        let undocumented: Vec<_> = helpers.iter().filter(|h| h.doc.is_empty()).map(|h| &h.signature).collect();
        assert!(undocumented.is_empty(), "helpers without a docstring: {undocumented:?}");
        assert!(helpers.iter().all(|h| !h.signature.starts_with('_')));
    }

    #[test]
    fn a_signature_over_two_lines_is_joined() {
        let h = parse_helpers("# --- errors\n\ndef f(a,\n      b=1):\n    \"\"\"Does f.\n    Twice.\"\"\"\n    pass\n");
        assert_eq!(
            h,
            vec![Helper { signature: "f(a, b=1)".into(), doc: "Does f. Twice.".into(), section: "errors".into() }]
        );
    }
}
