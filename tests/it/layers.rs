//! The module layers stay layers: no module imports one above it (README "Architecture"). A lower module that
//! reaches up to borrow a type fails here, naming the file and the line; move the type down instead.

use std::path::{Path, PathBuf};

/// Each layer, bottom first, with the top-level modules (files or folders under src/) it holds.
const LAYERS: &[&[&str]] = &[
    &[
        "alert",
        "assets",
        "condition",
        "digest",
        "execution",
        "function",
        "limits",
        "manifest",
        "metrics",
        "name",
        "redact",
        "seal",
        "shutdown",
        "rules",
        "state_dir",
        "timings",
        "topic_check",
        "trigger",
        "truncate",
        "wit",
    ],
    &["dedup", "embedded", "fleet", "nats", "registry", "results", "streams"],
    &["capability"],
    &["container", "runtime"],
    &["apply", "builder", "deploy", "doctor", "handlers", "scaffold", "spec"],
    &["health", "runner"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if matches!(top.as_str(), "cli" | "main" | "lib") {
            continue;
        }
        let own = layer_of(&top).unwrap_or_else(|| panic!("src/{} is in no layer: add it to LAYERS", rel.display()));
        seen += 1;
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let used: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if let Some(layer) = layer_of(&used) {
                    if layer > own {
                        wrong.push(format!("src/{}:{}: {top} uses crate::{used}", rel.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(seen > 30, "only {seen} files read");
    assert!(wrong.is_empty(), "imports from a higher layer:\n{}", wrong.join("\n"));
}

#[test]
fn nothing_below_the_runtime_knows_it_and_nothing_below_the_runner_knows_the_runner() {
    // The test above checks layers; this names the two arrows the architecture issue removed.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in ["capability", "container"] {
        let mut files = Vec::new();
        rust_files(&src.join(dir), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains("crate::runtime"), "{} imports crate::runtime", f.display());
            assert!(!text.contains("crate::runner"), "{} imports crate::runner", f.display());
        }
    }
}
