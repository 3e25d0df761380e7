//! Issue 23 through the `riposte` binary, on a temporary catalog: a playbook folder holding anything but
//! regular files (a link to /dev/zero, a link to a folder) is refused quickly with one line naming the path,
//! by every command that reads the folder, and changes nothing; `playbook list` prints no control character a
//! manifest carries. No Python build: every refusal comes before componentize-py would run.

use crate::support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn riposte(catalog: &Path, state: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_riposte"))
        .current_dir(catalog)
        .env("RIPOSTE_STATE_DIR", state)
        .env_remove("RIPOSTE_PLAYBOOKS")
        .env_remove("RIPOSTE_SPECS")
        .env("RUST_LOG", "warn")
        .args(["--playbooks", &catalog.join("playbooks").to_string_lossy()])
        .args(args)
        .output()
        .expect("riposte runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `text` as a TOML basic string (control characters as `\uXXXX`).
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => out.extend(['\\', c]),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A catalog with one WASM playbook `x` (manifest, app.py, a spec) in a temporary folder; `hostile` is the
/// manifest's description, the name of one setting and the default of another.
fn catalog(hostile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("playbooks/x");
    std::fs::create_dir_all(&playbook).unwrap();
    let t = toml_string(hostile);
    std::fs::write(
        playbook.join("playbook.toml"),
        format!(
            "name = \"x\"\ndescription = {t}\nkind = \"wasm\"\n[settings.{t}]\n[settings.COLOR]\nsecret = false\ndefault = {t}\n"
        ),
    )
    .unwrap();
    std::fs::write(playbook.join("app.py"), "def handle(alert):\n    return 'ok'\n").unwrap();
    std::fs::create_dir_all(dir.path().join("specs/alerts")).unwrap();
    std::fs::write(dir.path().join("specs/x.toml"), "playbook = \"x\"\n").unwrap();
    std::fs::write(dir.path().join("specs/alerts/a.json"), support::alert_json("terminal-shell-k8s")).unwrap();
    dir
}

/// Every file, folder and link under `dir` (links not followed), with its size, to tell that nothing changed.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path().strip_prefix(dir).unwrap().display().to_string(), meta.len()));
        }
    }
    out.sort();
    out
}

fn assert_refused(catalog: &Path, state: &Path, link: &str, what: &str) {
    let before = listing(catalog);
    let commands: [&[&str]; 3] = [&["build", "x"], &["spec", "x"], &["call", "x", "--alert", "specs/alerts/a.json"]];
    for args in commands {
        let started = Instant::now();
        let out = riposte(catalog, state, args);
        let (stdout, stderr) = text(&out);
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", started.elapsed());
        assert!(!out.status.success(), "{args:?} refused: {stdout}{stderr}");
        let want = format!(
            "playbooks/x/{link} is a symbolic link: playbook folders may hold only regular files; copy {what} in instead"
        );
        assert!(stderr.contains(&want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!stdout.contains("passed"), "{stdout}");
    }
    assert_eq!(listing(catalog), before, "nothing changed in the catalog");
    let built: Vec<_> = listing(state).into_iter().filter(|(f, _)| f.ends_with(".wasm")).collect();
    assert!(built.is_empty(), "nothing built: {built:?}");
}

#[test]
fn a_playbook_folder_holding_a_link_to_dev_zero_is_refused_quickly_by_every_command() {
    let catalog = catalog("a playbook");
    let state = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", catalog.path().join("playbooks/x/data.bin")).unwrap();
    assert_refused(catalog.path(), state.path(), "data.bin", "the file");
}

#[test]
fn a_playbook_folder_holding_a_link_to_a_folder_is_refused_with_its_path() {
    let catalog = catalog("a playbook");
    let state = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", catalog.path().join("playbooks/x/conf")).unwrap();
    assert_refused(catalog.path(), state.path(), "conf", "the folder");
}

#[test]
fn playbook_list_prints_no_control_character_a_manifest_carries() {
    let catalog = catalog("\u{1b}]0;pwned\u{7}\u{1b}[2J");
    let state = tempfile::tempdir().unwrap();
    let out = riposte(catalog.path(), state.path(), &["playbook", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.matches("\\u{1b}]0;pwned\\u{7}\\u{1b}[2J").count(), 3, "shown escaped: {stdout}");
    let controls: Vec<char> = stdout.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(controls.is_empty(), "control characters {controls:?} in {stdout:?}");
}
