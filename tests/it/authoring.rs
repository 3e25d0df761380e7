//! Writing a playbook as a newcomer does, through the `riposte` binary: `riposte new` in a catalog outside the
//! repository, its generated spec passing as generated, readable spec diffs, settings checked at build and
//! deploy time, Python errors as `file:line`, the no-sockets hint, `playbook list` with a broken manifest, the
//! helper reference.
//! Python builds are slow (~20 s of CPU): the tests build two playbooks in all, cached in the shared state dir.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

fn riposte_in(dir: &Path, args: &[&str]) -> Output {
    command_in(dir).args(args).output().expect("riposte runs")
}

fn command_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riposte"));
    c.current_dir(dir)
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env_remove("RIPOSTE_PLAYBOOKS")
        .env_remove("RIPOSTE_SPECS")
        .env("PATH", format!("{}/.venv/bin:{}", support::root().display(), std::env::var("PATH").unwrap_or_default()));
    c
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_new_playbook_outside_the_repository_passes_its_generated_spec_and_a_wrong_one_shows_every_difference() {
    let dir = tempfile::tempdir().unwrap();
    let out = riposte_in(dir.path(), &["new", "mattermost"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for file in [
        "playbooks/mattermost/playbook.toml",
        "playbooks/mattermost/app.py",
        "specs/mattermost.toml",
        "specs/alerts/terminal-shell-k8s.json",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} created: {stdout}");
        assert!(stdout.contains(&format!("created {file}")), "{stdout}");
    }
    assert!(stdout.contains("riposte spec mattermost"), "says what to do next: {stdout}");

    // The generated spec passes as generated, built with the WIT and helper library riposte carries.
    let out = riposte_in(dir.path(), &["spec", "mattermost"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
    assert!(!stderr.contains("building"), "no progress line when stderr is not a terminal: {stderr}");

    // A wrong expectation: every differing path with both values, the body once; `<contains>` for lists.
    let mut spec = std::fs::read_to_string(dir.path().join("specs/mattermost.toml")).unwrap();
    spec.push_str(
        r#"
[[case]]
name = "wrong on purpose"
alert = "terminal-shell-k8s"
settings = { WEBHOOK_URL = "https://hooks.example.com/services/T0" }
[[case.expect_call]]
call = "http.send"
method = "PUT"
json = { rule = "Another rule", missing = 1 }
[case.expect]
ok = true

[[case]]
name = "a list that contains an item"
alert = "terminal-shell-k8s"
settings = { WEBHOOK_URL = "https://hooks.example.com/services/T0" }
[[case.expect_call]]
call = "http.send"
json = { facts = { "<contains>" = [{ name = "Priority", value = "Notice" }, { name = "Container" }] } }
[case.expect]
ok = true
"#,
    );
    write(&dir.path().join("specs/mattermost.toml"), &spec);
    let out = riposte_in(dir.path(), &["spec", "mattermost"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("7 passed, 1 failed"), "{stdout}");
    let report = stdout.split("FAIL  mattermost: wrong on purpose").nth(1).expect("the failing case is named");
    for want in [
        "call #1 (http.send) differs:",
        "at .method",
        "expected: \"PUT\"",
        "recorded: \"POST\"",
        "at .json.rule",
        "expected: \"Another rule\"",
        "recorded: \"Terminal shell in container\"",
        "at .json.missing",
        "recorded: (absent)",
    ] {
        assert!(report.contains(want), "{want:?} in:\n{report}");
    }
    assert!(!report.contains("\\\""), "no body repeated as an escaped string:\n{report}");
    assert!(!report.contains("at .call"), "equal paths are not reported:\n{report}");
    assert!(stdout.contains("ok    mattermost: a list that contains an item"), "{stdout}");

    // Creating it again changes nothing; --from copies a playbook under a new name.
    let out = riposte_in(dir.path(), &["new", "mattermost"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("exists already"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let out = riposte_in(dir.path(), &["new", "mattermost-eu", "--from", "mattermost"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let manifest = std::fs::read_to_string(dir.path().join("playbooks/mattermost-eu/playbook.toml")).unwrap();
    assert!(manifest.contains("name = \"mattermost-eu\""), "{manifest}");
    let spec = std::fs::read_to_string(dir.path().join("specs/mattermost-eu.toml")).unwrap();
    assert!(spec.contains("playbook = \"mattermost-eu\""), "{spec}");
}

#[test]
fn a_setting_the_manifest_does_not_declare_is_caught_at_build_time() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("playbooks/p/playbook.toml"),
        "name = \"p\"\nkind = \"wasm\"\n[settings.URL]\nrequired = true\n",
    );
    write(
        &dir.path().join("playbooks/p/app.py"),
        "from riposte_playbook import guarded, required, setting\n\nclass WitWorld:\n    @guarded\n    def handle(self, alert):\n        url = required(\"URL\")\n        token = setting(\"TOKEN\")\n",
    );
    let out = riposte_in(dir.path(), &["build", "p"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        "riposte: playbooks/p/app.py:7: setting TOKEN is not declared in playbooks/p/playbook.toml: add [settings.TOKEN]"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undeclared_setting_read_at_run_time_says_where_to_declare_it() {
    use riposte::execute::capability::{recording::Recorder, Backends};
    let dir = tempfile::tempdir().unwrap();
    let runtime = riposte::execute::runtime::Runtime::new(&riposte::execute::runtime::RuntimeConfig {
        cache_dir: dir.path().into(),
        pooling: false,
    })
    .unwrap();
    let manifest =
        riposte::model::manifest::Manifest::parse("name = \"mattermost\"\nkind = \"wasm\"\n[settings.URL]\n").unwrap();
    let function = riposte::model::function::Function {
        name: "mattermost".into(),
        manifest,
        artifact: String::new(),
        settings: riposte::model::function::Settings::default(),
        runs_on: None,
        policy: Default::default(),
    };
    let alert = riposte::model::alert::Alert::parse(support::alert_json("terminal-shell-k8s").as_bytes()).unwrap();
    let r = std::sync::Arc::new(Recorder::new());
    let backends = || Backends { http: r.clone(), kubernetes: r.clone(), object_store: r.clone() };

    let undeclared = runtime.load(&support::guests::requires_setting("TOKEN"), "guest").unwrap();
    use riposte::model::execution::Handler;
    let exec = runtime.function(undeclared, &function, backends()).handle(&alert).await;
    assert_eq!(exec.status, riposte::model::execution::Status::MissingSetting, "{exec:?}");
    assert!(
        exec.message
            .contains("setting TOKEN is not declared in playbooks/mattermost/playbook.toml: add [settings.TOKEN]"),
        "{}",
        exec.message
    );

    let unset = runtime.load(&support::guests::requires_setting("URL"), "guest").unwrap();
    let exec = runtime.function(unset, &function, backends()).handle(&alert).await;
    assert!(exec.message.contains("setting URL is not set: deploy with -e URL=VALUE"), "{}", exec.message);
}

#[test]
fn a_python_error_is_its_file_line_and_code_and_a_terminal_sees_the_build_start() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("playbooks/broken/playbook.toml"), "name = \"broken\"\nkind = \"wasm\"\n");
    write(
        &dir.path().join("playbooks/broken/app.py"),
        "from riposte_playbook import guarded\n\nclass WitWorld:\n    def handle(self, alert):\n        x = (1,\n        return None\n",
    );
    // `script` gives riposte a terminal, as a user at a shell has; RUST_BACKTRACE must not leak frames.
    let riposte = env!("CARGO_BIN_EXE_riposte");
    let out = command_in(dir.path())
        .env("RUST_BACKTRACE", "1")
        .program_script(&format!("{riposte} build broken"))
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    let shown = stdout.replace('\r', "");
    assert!(shown.contains("building broken…"), "{shown}");
    let error =
        shown.split_once("riposte: ").map(|(_, e)| e.trim_end()).unwrap_or_else(|| panic!("an error line: {shown}"));
    assert_eq!(error, "playbooks/broken/app.py:5: SyntaxError: '(' was never closed\n    x = (1,\n        ^");
}

#[test]
fn a_playbook_that_opens_a_connection_itself_is_told_to_use_post_json() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("playbooks/net/playbook.toml"), "name = \"net\"\nkind = \"wasm\"\n");
    // What a newcomer writes from habit: the standard library's HTTP client (bundled, but without sockets).
    write(
        &dir.path().join("playbooks/net/app.py"),
        "import urllib.request\nfrom riposte_playbook import guarded\n\nclass WitWorld:\n    @guarded\n    def handle(self, alert):\n        urllib.request.urlopen(\"http://127.0.0.1:9/hook\")\n",
    );
    write(&dir.path().join("alert.json"), &support::alert_json("terminal-shell-k8s"));
    let out = riposte_in(dir.path(), &["call", "net", "--alert", "alert.json"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    // A refusal of the sandbox (never retried), in one sentence that names the fix: no Python exception text.
    assert!(
        stdout.contains("denied: the sandbox has no sockets: send HTTP with post_json (the http capability)"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stdout.contains("LookupError") && !stdout.contains("idna"), "stdout: {stdout}");
}

/// Runs a shell command line under `script`, with this command's environment and directory.
trait UnderScript {
    fn program_script(&mut self, line: &str) -> Command;
}

impl UnderScript for Command {
    fn program_script(&mut self, line: &str) -> Command {
        let mut c = Command::new("script");
        c.args(["-qec", line, "/dev/null"]);
        if let Some(d) = self.get_current_dir() {
            c.current_dir(d);
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }
}

#[test]
fn a_url_setting_that_is_not_a_url_is_refused_at_deploy_time_without_showing_it() {
    let root = support::root();
    let sample = "specs/alerts/terminal-shell-k8s.json";
    for args in [
        vec!["call", "slack", "--alert", sample, "-e", "SLACK_WEBHOOK_URL=127.0.0.1:9/s3cr3t-hook"],
        vec![
            "function",
            "deploy",
            "x",
            "--playbook",
            "slack",
            "-e",
            "SLACK_WEBHOOK_URL=127.0.0.1:9/s3cr3t-hook",
            "--nats",
            "nats://127.0.0.1:9",
        ],
    ] {
        let out = riposte_in(&root, &args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}: {stdout}{stderr}");
        assert_eq!(
            stderr.trim(),
            "riposte: setting SLACK_WEBHOOK_URL of playbook slack is not a URL: it has no scheme (write http://… or https://…)",
            "{args:?}"
        );
        assert!(!stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"));
    }
}

#[test]
fn bool_and_integer_settings_that_do_not_parse_are_refused_at_deploy_time_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("playbooks/p/playbook.toml"),
        "name = \"p\"\nkind = \"wasm\"\n[settings.ON]\ntype = \"bool\"\n[settings.N]\ntype = \"integer\"\n",
    );
    let deploy = |settings: &[&str]| {
        let mut args = vec!["function", "deploy", "x", "--playbook", "p", "--nats", "nats://127.0.0.1:9"];
        for s in settings {
            args.extend(["-e", s]);
        }
        riposte_in(dir.path(), &args)
    };
    let cases = [
        (vec!["ON=maybe-s3cr3t"], "riposte: setting ON of playbook p must be true or false (or yes/no, on/off, 1/0)"),
        (vec!["ON=yes", "N=4s3cr3t"], "riposte: setting N of playbook p must be a whole number"),
    ];
    for (settings, want) in cases {
        let out = deploy(&settings);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{settings:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim(), want, "{settings:?}");
        assert!(!stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"));
    }
}

#[test]
fn playbook_list_flags_an_invalid_manifest_and_lists_the_others() {
    let dir = tempfile::tempdir().unwrap();
    assert!(riposte_in(dir.path(), &["new", "good"]).status.success());
    write(&dir.path().join("playbooks/bad/playbook.toml"), "name = \"bad\"\nkind = \"lambda\"\n");
    let out = riposte_in(dir.path(), &["playbook", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("good ") && l.contains("http") && l.contains("WEBHOOK_URL (required)")),
        "{stdout}"
    );
    let bad = stdout.lines().find(|l| l.starts_with("bad ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        bad.contains("INVALID") && bad.contains("not a valid playbook manifest") && bad.contains("lambda"),
        "{bad}"
    );
    let out = riposte_in(dir.path(), &["playbook", "list", "--strict"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("1 playbook manifest(s) invalid"), "{stderr}");
}

#[test]
fn playbook_helpers_documents_the_helper_library() {
    let out = riposte_in(&support::root(), &["playbook", "helpers"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for helper in [
        "guarded(handle)",
        "post_json(what, url, body, headers=(), verify_tls=True)",
        "status_error(what, response, message=None)",
        "required(name)",
        "field(alert, name)",
        "falco_text(alert)",
        "http_date(text)",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("`{helper}`")))
            .unwrap_or_else(|| panic!("{helper} in:\n{stdout}"));
        assert!(line.len() > helper.len() + 10, "{helper} has its doc: {line}");
    }
    let readme = std::fs::read_to_string(support::root().join("playbooks/README.md")).unwrap();
    assert!(
        readme.contains(&stdout.trim()[..200]),
        "playbooks/README carries the reference (regenerate it with `riposte playbook helpers`)"
    );
}

#[test]
fn every_command_finds_playbooks_by_one_rule_and_a_missing_one_names_both_places_searched() {
    // Outside the repository, with no ./playbooks: the catalog installed with this riposte (a checkout's
    // playbooks/ for a binary in its target/) is what every command sees.
    let dir = tempfile::tempdir().unwrap();
    let installed = support::root().join("playbooks");
    let out = riposte_in(dir.path(), &["playbook", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("slack") && stdout.contains("delete"), "the installed catalog: {stdout}");
    let out = riposte_in(dir.path(), &["build", "victorops"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let want = format!("no playbook \"victorops\" in playbooks (not there) and {}; available: ", installed.display());
    assert!(stderr.contains(&want), "{stderr}");

    // With a ./playbooks of the user's own: its playbooks and the installed ones, the user's first.
    let out = riposte_in(dir.path(), &["new", "victorops"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = riposte_in(dir.path(), &["playbook", "list"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("victorops") && stdout.contains("slack"), "both folders: {stdout}");
    // spec, build and deploy_playbook take the user's playbook from ./playbooks, the catalog's from its own
    // folder (with the specs beside it).
    let out = riposte_in(dir.path(), &["spec", "victorops", "slack"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok    victorops:") && stdout.contains("ok    slack:"), "{stdout}");
    let out = Command::new(support::root().join("deploy_playbook"))
        .current_dir(dir.path())
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env_remove("RIPOSTE_PLAYBOOKS")
        .args(["-p", "nosuch", "-t", "falco.error.*", "--nats", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let want = format!("no playbook \"nosuch\" in playbooks and {}; available: ", installed.display());
    assert!(stderr.contains(&want) && stderr.contains("victorops"), "{stderr}");
}

#[test]
fn componentize_py_is_found_from_any_folder_and_a_wrong_path_is_named() {
    // No .venv on PATH and no ./.venv: the checkout's .venv beside this riposte's target/ is found.
    let dir = tempfile::tempdir().unwrap();
    let name = format!("lookup{}", std::process::id());
    let out = riposte_in(dir.path(), &["new", &name]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = command_in(dir.path()).env("PATH", "/usr/bin:/bin").args(["build", &name]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");

    // RIPOSTE_COMPONENTIZE_PY naming nothing is said as such (a changed playbook, so a build is needed).
    write(&dir.path().join(format!("playbooks/{name}/extra.py")), "X = 1\n");
    let out = command_in(dir.path())
        .env("RIPOSTE_COMPONENTIZE_PY", "/nonexistent/componentize-py")
        .args(["build", &name])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("componentize-py not found (looked for RIPOSTE_COMPONENTIZE_PY=/nonexistent/componentize-py, which is not a file)"),
        "{stderr}"
    );
}
