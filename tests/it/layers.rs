//! The module layers stay layers: no module imports one above it (README "Architecture"). A lower module that
//! reaches up to borrow a type fails here, naming the file and the line; move the type down instead.

use std::path::{Path, PathBuf};

/// Each layer, bottom first, with the folders under src/ it holds (a folder may be split into sub-layers, named
/// `folder/module`). A path under src/ belongs to the longest entry it starts with.
const LAYERS: &[&[&str]] = &[
    // Data, decisions and text: no I/O. These three use each other (a trigger holds its condition, a
    // function's settings redact themselves), so they share a layer.
    &["model", "policy", "secrets"],
    &["nats"],
    &["execute/capability"],
    &["execute/container", "execute/runtime"],
    &["execute/handlers", "ops"],
    &["runner"],
];

/// The layer of a module path such as `execute/runtime/host` or `model`.
fn layer_of(path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (n, layer) in LAYERS.iter().enumerate() {
        for entry in *layer {
            let matches = path == *entry || path.starts_with(&format!("{entry}/"));
            if matches && best.is_none_or(|(len, _)| entry.len() > len) {
                best = Some((entry.len(), n));
            }
        }
    }
    // A folder split into sub-layers (`execute`) declares them all: it sits with the highest.
    let split = LAYERS.iter().rposition(|l| l.iter().any(|e| e.starts_with(&format!("{path}/"))));
    best.map(|(_, n)| n).or(split)
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

/// A file's module path under src/, as `folder/module` (`execute/runtime/mod.rs` → `execute/runtime`).
fn module_of(rel: &Path) -> String {
    let path = rel.with_extension("").to_string_lossy().replace('\\', "/");
    path.strip_suffix("/mod").unwrap_or(&path).to_owned()
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
        let module = module_of(rel);
        if module == "main" || module == "lib" || module == "cli" || module.starts_with("cli/") {
            continue;
        }
        let own = layer_of(&module).unwrap_or_else(|| panic!("src/{} is in no layer: add it to LAYERS", rel.display()));
        seen += 1;
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let used: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
                let used = used.trim_end_matches(':').replace("::", "/");
                if let Some(layer) = layer_of(&used) {
                    if layer > own {
                        wrong.push(format!("src/{}:{}: {module} uses crate::{used}", rel.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(seen > 30, "only {seen} files read");
    assert!(wrong.is_empty(), "imports from a higher layer:\n{}", wrong.join("\n"));
}

#[test]
fn the_top_of_src_is_the_layer_folders_and_nothing_else() {
    // The tree shows the layers: a new module goes into the folder of its layer, not beside them.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let folder = entry.path().is_dir();
        let known =
            if folder { name == "cli" || layer_of(&name).is_some() } else { name == "lib.rs" || name == "main.rs" };
        if !known {
            stray.push(name);
        }
    }
    assert!(
        stray.is_empty(),
        "src/ holds {stray:?}: move each into the folder of its layer (tests/it/layers.rs LAYERS)"
    );
}

#[test]
fn nothing_below_the_runtime_knows_it_and_nothing_below_the_runner_knows_the_runner() {
    // The test above checks layers; this names the two arrows the architecture issue removed.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in ["execute/capability", "execute/container"] {
        let mut files = Vec::new();
        rust_files(&src.join(dir), &mut files);
        assert!(!files.is_empty(), "src/{dir} has no files");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains("crate::execute::runtime"), "{} imports crate::execute::runtime", f.display());
            assert!(!text.contains("crate::runner"), "{} imports crate::runner", f.display());
        }
    }
}

/// What each module's code (not its comments) uses: `crate::a::b` and, in a folder, `super::x`; a module's use
/// of its own parent or children is not an edge.
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: Vec<(String, String)> =
        files.iter().map(|f| (module_of(f.strip_prefix(src).unwrap()), std::fs::read_to_string(f).unwrap())).collect();
    let known: std::collections::BTreeSet<&str> = modules.iter().map(|(m, _)| m.as_str()).collect();
    // The longest known module a path names.
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("/")).find(|c| known.contains(c.as_str()))
    };
    let mut graph = std::collections::BTreeMap::new();
    for (module, text) in &modules {
        let parent = module.rsplit_once('/').map(|(p, _)| p.to_owned()).unwrap_or_default();
        let mut uses = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (marker, base) in [("crate::", String::new()), ("super::", parent.clone())] {
                let mut rest = line;
                while let Some(i) = rest.find(marker) {
                    rest = &rest[i + marker.len()..];
                    let path: String =
                        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
                    let path = format!("{base}/{}", path.trim_end_matches(':').replace("::", "/"));
                    if let Some(used) = resolve(&path) {
                        let related = used == *module
                            || used.starts_with(&format!("{module}/"))
                            || module.starts_with(&format!("{used}/"));
                        if !related {
                            uses.insert(used);
                        }
                    }
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

#[test]
fn no_two_modules_use_each_other_even_through_others() {
    // A cycle (cli/args → cli/function → cli/deploy → cli/trigger → cli/args was one) means neither side can be
    // read or changed alone: move what both need below them.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() > 60 && graph["cli/function"].contains("cli/args"), "{} modules read", graph.len());
    fn visit<'a>(
        m: &'a str,
        graph: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            return Some(format!("{} → {m}", path[i..].join(" → ")));
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for used in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(used, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("modules in a cycle: {cycle}");
        }
    }
}
