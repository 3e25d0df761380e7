//! Connecting to a secured nats-server (2.9.10 from apt), every authentication method, from flags and from the
//! environment, through the `riposte` binary and through the library path it uses (`NatsConfig::connect`) with a
//! real alert run end to end: user/password in the URL and from `--nats-user`/`--nats-password-file`, token in
//! the URL and from `--nats-token-file`, NKey seed, `.creds` (operator/account/user JWTs, memory resolver), TLS
//! with a private CA, mutual TLS with PKCS#8, PKCS#1 and SEC1 keys, server lists; wrong and missing credentials
//! refused with a message naming the credential and never showing it; the local server `riposte run` starts
//! refusing clients without its key; the README's least-privilege account layout.

use crate::support;

use async_nats::jetstream;
use riposte::model::execution::Status;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::trigger::Trigger;
use riposte::nats::connect::{Auth, NatsConfig};
use riposte::nats::registry::Registry;
use riposte::nats::results::{read_results, Disposition};
use riposte::runner::{Runner, RunnerConfig};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use support::nats::TestNats;
use support::secure::{Operator, Pki, KEY_KINDS};
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(60);
const PASSWORD: &str = "s3cr3t-pw";
const TOKEN: &str = "t0ken-xyz";

/// The binary with a fresh state directory and no NATS settings from the caller's environment.
fn riposte(args: &[&str], env: &[(&str, &str)]) -> Output {
    riposte_in(&support::shared_state(), args, env)
}

fn riposte_in(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riposte"));
    c.env("RIPOSTE_STATE_DIR", state).env_remove("RUST_LOG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RIPOSTE_NATS")) {
        c.env_remove(k);
    }
    c.args(args).envs(env.iter().copied()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn works(out: Output) {
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NAME"), "{out:?}");
}

/// Failed with one plain line (no log line from the NATS client before it, no colour codes) that says each of
/// `says` and never `secret`.
#[track_caller]
fn refused(out: Output, says: &[&str], secret: &str) {
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("riposte: ") && !err.contains('\x1b'), "{err}");
    for s in says {
        assert!(err.contains(s), "{s:?} in {err}");
    }
    assert!(!err.contains(secret), "{err}");
}

fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn config(url: &str) -> NatsConfig {
    NatsConfig { url: Some(url.into()), name: "nats-auth-test".into(), ..Default::default() }
}

/// Through the library path the CLI uses: connects with `config`, deploys a WASM function with a trigger, starts a
/// runner on a second connection made the same way, publishes an alert with core NATS and waits for its `ok`
/// result.
async fn runs_an_alert(config: &NatsConfig) {
    let url = config.url.clone().unwrap();
    let client = config.connect(&url, None).await.unwrap_or_else(|e| panic!("{e}"));
    let js = jetstream::new(client.clone());
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    let reg = Registry::open(&js).await.unwrap();
    let artifact = reg.put_artifact(&guests::ok()).await.unwrap();
    let manifest = Manifest::parse("name = \"secured\"\nkind = \"wasm\"\n").unwrap();
    let f = Function {
        name: "secured".into(),
        manifest,
        artifact,
        settings: Settings::default(),
        runs_on: None,
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
    let t = Trigger {
        name: "secured-t".into(),
        function: f.name.clone(),
        topic: "falco.error.>".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
    let runner = start_runner(config, "secured-runner").await;
    let uuid = uuid::Uuid::new_v4().to_string();
    client.publish("falco.error.secured", alert(&uuid).into()).await.unwrap();
    client.flush().await.unwrap();
    wait_until("the alert's ok result", LONG, || async {
        read_results(reg.jetstream(), Some("secured"), None)
            .await
            .unwrap()
            .iter()
            .any(|r| r.alert_uuid == uuid && r.status == Status::Ok)
    })
    .await;
    runner.stop().await;
}

async fn start_runner(config: &NatsConfig, name: &str) -> Runner {
    let client = config.connect(config.url.as_deref().unwrap(), None).await.unwrap();
    let runner_config = RunnerConfig { max_in_flight: 16, ..support::runner::test_config(name) };
    Runner::start(client, runner_config, support::runner::recorded()).await.unwrap()
}

fn alert(uuid: &str) -> String {
    serde_json::json!({
        "uuid": uuid, "output": "12:00:00.000000000: Error x (user=root)", "priority": "Error", "rule": "x",
        "time": "2024-05-17T15:31:56.746609046Z", "output_fields": {"user.name": "root"}, "source": "syscall",
        "hostname": "h", "tags": []
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_password_in_the_url_or_from_flags_and_env() {
    let nats = TestNats::start_with_config(&format!(
        "authorization {{ users = [ {{ user: runner, password: \"{PASSWORD}\" }} ] }}\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let password = file(dir.path(), "password", &format!("{PASSWORD}\n"));
    let wrong = file(dir.path(), "wrong", "wr0ng-pw-456\n");
    let url = nats.url();
    let in_url = format!("nats://runner:{PASSWORD}@127.0.0.1:{}", nats.port());
    works(riposte(&["trigger", "list", "--nats", &in_url], &[]));
    works(riposte(&["function", "list"], &[("RIPOSTE_NATS_URL", &in_url)]));
    works(riposte(
        &["trigger", "list", "--nats", &url, "--nats-user", "runner", "--nats-password-file", &password],
        &[],
    ));
    let env = [
        ("RIPOSTE_NATS_URL", url.as_str()),
        ("RIPOSTE_NATS_USER", "runner"),
        ("RIPOSTE_NATS_PASSWORD_FILE", &password),
    ];
    works(riposte(&["function", "list"], &env));

    let bad_url = format!("nats://runner:wr0ng-pw-123@127.0.0.1:{}", nats.port());
    refused(
        riposte(&["trigger", "list", "--nats", &bad_url], &[]),
        &["refused user \"runner\" with the password in the URL"],
        "wr0ng-pw-123",
    );
    refused(
        riposte(&["function", "list", "--nats", &url, "--nats-user", "runner", "--nats-password-file", &wrong], &[]),
        &["refused user \"runner\" with the password in", &wrong],
        "wr0ng-pw-456",
    );
    refused(
        riposte(&["trigger", "list", "--nats", &url], &[]),
        &["refused a connection without credentials", "--nats-user"],
        PASSWORD,
    );
    refused(
        riposte(&["trigger", "list", "--nats", &url, "--nats-user", "runner"], &[]),
        &["--nats-password-file"],
        PASSWORD,
    );

    let mut c = config(&url);
    c.auth = Auth::User { user: "runner".into(), password_file: password.into() };
    runs_an_alert(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_the_url_or_from_a_file() {
    let nats = TestNats::start_with_config(&format!("authorization {{ token: \"{TOKEN}\" }}\n"));
    let dir = tempfile::tempdir().unwrap();
    let token = file(dir.path(), "token", &format!("{TOKEN}\n"));
    let url = nats.url();
    let in_url = format!("nats://{TOKEN}@127.0.0.1:{}", nats.port());
    works(riposte(&["trigger", "list", "--nats", &in_url], &[]));
    works(riposte(&["function", "list"], &[("RIPOSTE_NATS_URL", &in_url)]));
    works(riposte(&["trigger", "list", "--nats", &url, "--nats-token-file", &token], &[]));
    works(riposte(&["function", "list"], &[("RIPOSTE_NATS_URL", &url), ("RIPOSTE_NATS_TOKEN_FILE", &token)]));

    let bad = format!("nats://not-the-t0ken@127.0.0.1:{}", nats.port());
    refused(riposte(&["trigger", "list", "--nats", &bad], &[]), &["refused the token in the URL"], "not-the-t0ken");
    let wrong = file(dir.path(), "wrong", "not-the-t0ken\n");
    refused(
        riposte(&["trigger", "list", "--nats", &url, "--nats-token-file", &wrong], &[]),
        &["refused the token in", &wrong],
        "not-the-t0ken",
    );
    let two = riposte(&["trigger", "list", "--nats", &in_url, "--nats-token-file", &token], &[]);
    refused(two, &["credentials in the URL and --nats-token-file: give one credential"], TOKEN);

    let mut c = config(&in_url);
    runs_an_alert(&c).await;
    c.url = Some(url);
    c.auth = Auth::TokenFile(token.into());
    runs_an_alert(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let nats = TestNats::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    ));
    let dir = tempfile::tempdir().unwrap();
    let seed = file(dir.path(), "user.nk", &format!("{}\n", user.seed().unwrap()));
    let url = nats.url();
    works(riposte(&["trigger", "list", "--nats", &url, "--nats-nkey", &seed], &[]));
    works(riposte(&["function", "list"], &[("RIPOSTE_NATS_URL", &url), ("RIPOSTE_NATS_NKEY", &seed)]));
    let other = nkeys::KeyPair::new_user();
    let other_seed = other.seed().unwrap();
    let wrong = file(dir.path(), "other.nk", &other_seed);
    refused(
        riposte(&["trigger", "list", "--nats", &url, "--nats-nkey", &wrong], &[]),
        &[&format!("refused NKey {} (seed in {wrong})", other.public_key())],
        &other_seed,
    );
    let garbage = file(dir.path(), "garbage.nk", "SUnot-a-seed\n");
    refused(
        riposte(&["trigger", "list", "--nats", &url, "--nats-nkey", &garbage], &[]),
        &["does not hold an NKey user seed"],
        "SUnot-a-seed",
    );

    let mut c = config(&url);
    c.auth = Auth::Nkey(seed.into());
    runs_an_alert(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_creds_file_of_an_operator_account_and_the_binary_runner_with_it() {
    let op = Operator::new();
    let nats = TestNats::start_with_config(&op.server_config());
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("runner.creds");
    Operator::creds(&op.account, &creds);
    let creds_s = creds.display().to_string();
    let url = nats.url();
    works(riposte(&["trigger", "list", "--nats", &url, "--nats-creds", &creds_s], &[]));
    works(riposte(&["function", "list"], &[("RIPOSTE_NATS_URL", &url), ("RIPOSTE_NATS_CREDS", &creds_s)]));
    let stranger = dir.path().join("stranger.creds");
    Operator::creds(&nkeys::KeyPair::new_account(), &stranger);
    let stranger_seed =
        std::fs::read_to_string(&stranger).unwrap().lines().find(|l| l.starts_with("SU")).unwrap().to_owned();
    let stranger_s = stranger.display().to_string();
    refused(
        riposte(&["trigger", "list", "--nats", &url, "--nats-creds", &stranger_s], &[]),
        &[&format!("refused the user JWT and seed in {stranger_s}")],
        &stranger_seed,
    );
    refused(riposte(&["trigger", "list", "--nats", &url], &[]), &["refused a connection without credentials"], "SU");

    let mut c = config(&url);
    c.auth = Auth::Creds(creds.clone());
    runs_an_alert(&c).await;

    // `riposte run` itself, configured through the environment, runs an alert published after it started.
    let mut run = Command::new(env!("CARGO_BIN_EXE_riposte"))
        .args(["run", "--name", "creds-runner"])
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("RIPOSTE_NATS_URL", &url)
        .env("RIPOSTE_NATS_CREDS", &creds)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let client = c.connect(&url, None).await.unwrap();
    let reg = Registry::open(&jetstream::new(client.clone())).await.unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    let mine = || async {
        read_results(reg.jetstream(), Some("secured"), None)
            .await
            .unwrap()
            .into_iter()
            .any(|r| r.runner == "creds-runner" && r.status == Status::Ok)
    };
    wait_until("the binary runner to handle an alert", LONG, || async {
        // Published again until the runner (connecting meanwhile) has taken one.
        client.publish("falco.error.secured", alert(&uuid).into()).await.unwrap();
        client.flush().await.unwrap();
        mine().await
    })
    .await;
    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
    assert!(run.wait().unwrap().success());
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new(&tempfile::tempdir().unwrap().keep()))
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca_and_server_name_verification() {
    let pki = pki();
    let nats = TestNats::start_with_config(&pki.server_tls("server", false));
    let port = nats.port();
    let ca = pki.ca();
    let tls = format!("tls://127.0.0.1:{port}");
    works(riposte(&["trigger", "list", "--nats", &tls, "--nats-ca", &ca], &[]));
    works(riposte(
        &["function", "list"],
        &[("RIPOSTE_NATS_URL", &format!("nats://localhost:{port}")), ("RIPOSTE_NATS_CA", &ca)],
    ));
    refused(riposte(&["trigger", "list", "--nats", &tls], &[]), &["TLS with tls://127.0.0.1", "--nats-ca"], "BEGIN");
    let other = Pki::new(&pki.dir.join("other"));
    refused(
        riposte(&["trigger", "list", "--nats", &tls, "--nats-ca", &other.ca()], &[]),
        &["not signed by the CA in --nats-ca"],
        "BEGIN",
    );

    let wrong_name = TestNats::start_with_config(&pki.server_tls("wrongname", false));
    let url = format!("tls://127.0.0.1:{}", wrong_name.port());
    refused(
        riposte(&["trigger", "list", "--nats", &url, "--nats-ca", &ca], &[]),
        &["TLS with", "not valid for the host name in the URL"],
        "BEGIN",
    );

    let mut c = config(&tls);
    c.ca = Some(ca.into());
    runs_an_alert(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_with_pkcs8_pkcs1_and_sec1_client_keys() {
    let pki = pki();
    let nats = TestNats::start_with_config(&pki.server_tls("server", true));
    let tls = format!("tls://127.0.0.1:{}", nats.port());
    let ca = pki.ca();
    for kind in KEY_KINDS {
        let (cert, key) = (pki.cert(kind), pki.key(kind));
        works(riposte(
            &["trigger", "list", "--nats", &tls, "--nats-ca", &ca, "--nats-cert", &cert, "--nats-key", &key],
            &[],
        ));
        let env = [
            ("RIPOSTE_NATS_URL", tls.as_str()),
            ("RIPOSTE_NATS_CA", &ca),
            ("RIPOSTE_NATS_CERT", &cert),
            ("RIPOSTE_NATS_KEY", &key),
        ];
        works(riposte(&["function", "list"], &env));
    }
    refused(
        riposte(&["trigger", "list", "--nats", &tls, "--nats-ca", &ca], &[]),
        &["client certificate", "--nats-cert"],
        "BEGIN",
    );
    let (cert, key) = (pki.cert("sec1"), pki.key("pkcs1"));
    refused(
        riposte(&["trigger", "list", "--nats", &tls, "--nats-ca", &ca, "--nats-cert", &cert, "--nats-key", &key], &[]),
        &["--nats-key"],
        "BEGIN",
    );

    let mut c = config(&tls);
    c.ca = Some(ca.into());
    c.cert = Some(pki.cert("pkcs1").into());
    c.key = Some(pki.key("pkcs1").into());
    runs_an_alert(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_comma_separated_server_list_with_credentials_in_one_url() {
    let nats = TestNats::start_with_config(&format!(
        "authorization {{ users = [ {{ user: runner, password: \"{PASSWORD}\" }} ] }}\n"
    ));
    // The first server is down: the client goes on to the next.
    let list = format!("nats://127.0.0.1:1,nats://runner:{PASSWORD}@127.0.0.1:{}", nats.port());
    works(riposte(&["trigger", "list", "--nats", &list], &[]));
    works(riposte(&["function", "list"], &[("RIPOSTE_NATS_URL", &list)]));
    let bad = format!("nats://runner:{PASSWORD}@a:4222,nats://b:99999");
    refused(
        riposte(&["trigger", "list", "--nats", &bad], &[]),
        &["--nats: \"nats://b:99999\" is not a NATS server URL"],
        PASSWORD,
    );
    runs_an_alert(&config(&list)).await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_server_accepts_only_the_key_riposte_run_generated() {
    let state = tempfile::tempdir().unwrap();
    let root: PathBuf = state.path().join("state");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_riposte"))
            .args(["run", "--name", "local"])
            .env("RIPOSTE_STATE_DIR", &root)
            .env_remove("RIPOSTE_NATS_URL")
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let stop = |mut run: std::process::Child| {
        Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
        assert!(run.wait().unwrap().success());
    };
    let run = start();
    let url_file = root.join("nats/url");
    wait_until("the local server's URL to be recorded", LONG, || async { url_file.exists() }).await;
    let seed = root.join("nats/client.nk");
    assert_eq!((mode(&root), mode(&root.join("nats")), mode(&seed)), (0o700, 0o700, 0o600));
    let url = std::fs::read_to_string(&url_file).unwrap();
    works(riposte_in(&root, &["trigger", "list"], &[]));
    // The settings key is made beside it, private; deploying secret settings uses it without being told.
    let settings_key = root.join("settings.key");
    wait_until("the settings key", LONG, || async { settings_key.exists() }).await;
    assert_eq!(mode(&settings_key), 0o600);
    let (wasm, manifest) = (state.path().join("ok.wasm"), state.path().join("playbook.toml"));
    std::fs::write(&wasm, guests::ok()).unwrap();
    std::fs::write(&manifest, "name = \"keyed\"\nkind = \"wasm\"\n[settings.TOKEN]\n").unwrap();
    let (wasm, manifest) = (wasm.to_str().unwrap(), manifest.to_str().unwrap());
    let deploy = ["function", "deploy", "keyed", "--wasm", wasm, "--manifest", manifest, "-e", "TOKEN=s3cr3t-token"];
    let out = riposte_in(&root, &deploy, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A client without the key is refused, by the CLI (another user's state dir knows the URL, not the key) and by
    // any NATS client.
    let e = async_nats::connect(url.trim()).await.unwrap_err();
    assert_eq!(e.kind(), async_nats::ConnectErrorKind::AuthorizationViolation, "{e}");
    let stranger = state.path().join("stranger");
    std::fs::create_dir_all(stranger.join("nats")).unwrap();
    std::fs::copy(&url_file, stranger.join("nats/url")).unwrap();
    refused(
        riposte_in(&stranger, &["trigger", "list"], &[]),
        &["refused a connection without credentials", "requires the key"],
        "SU",
    );

    let key = std::fs::read_to_string(&seed).unwrap();
    stop(run);
    // A second start keeps the key.
    let run = start();
    wait_until("the local server's URL to be recorded again", LONG, || async { url_file.exists() }).await;
    works(riposte_in(&root, &["function", "list"], &[]));
    assert_eq!(std::fs::read_to_string(&seed).unwrap(), key);
    stop(run);
}

/// The README's least-privilege nats-server configuration: the fenced block after its marker, unindented.
pub(crate) fn readme_least_privilege() -> String {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let after = &readme[readme.find("<!-- least-privilege.conf").expect("the README's marker")..];
    let block = &after[after.find("```\n").unwrap() + 4..];
    let block = &block[..block.find("   ```").unwrap()];
    block.lines().map(|l| l.strip_prefix("   ").unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

async fn deploy(reg: &Registry, name: &str, wasm: &[u8], limits: &str, topic: &str) -> Function {
    let artifact = reg.put_artifact(wasm).await.unwrap();
    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n[limits]\n{limits}\n")).unwrap();
    let f = Function {
        name: name.into(),
        manifest,
        artifact,
        settings: Settings::default(),
        runs_on: None,
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
    let t = Trigger {
        name: format!("{name}-t"),
        function: name.into(),
        topic: topic.into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
    f
}

/// A JetStream context that gives up on an unanswered request after 2 s (a denied request is never answered).
fn impatient(client: async_nats::Client) -> jetstream::Context {
    jetstream::context::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_least_privilege_layout_runs_the_flow_and_holds() {
    let nats = TestNats::start_with_config(&readme_least_privilege());
    let port = nats.port();
    let user = |name: &str, password: &str| config(&format!("nats://{name}:{password}@127.0.0.1:{port}"));
    let (deployer, runner, publisher) = (
        user("deployer", "change-me-deployer"),
        user("runner-a", "change-me-runner"),
        user("falcosidekick", "change-me-publisher"),
    );
    let connect = |c: &NatsConfig| {
        let c = c.clone();
        async move { c.connect(c.url.as_deref().unwrap(), None).await.unwrap() }
    };

    // The deployer creates the streams and deploys an ok function and one that fails and is dead-lettered.
    let js = jetstream::new(connect(&deployer).await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    let reg = Registry::open(&js).await.unwrap();
    deploy(&reg, "lp-ok", &guests::ok(), "", "falco.error.>").await;
    deploy(&reg, "lp-fails", &guests::fails(), "max_deliver = 2\nretry_backoff_ms = 100", "falco.critical.>").await;
    // With dedup: the deployer makes its dedup stream, the runner claims a key per alert.
    let deduped = deploy(&reg, "lp-dedup", &guests::ok(), "", "falco.warning.>").await;
    let dedup = riposte::model::function::Dedup { window_ms: 60_000, key: None };
    let with_dedup = riposte::model::function::ResponsePolicy { dry_run: false, dedup: Some(dedup) };
    let prepared = |policy: riposte::model::function::ResponsePolicy| riposte::ops::deploy::PreparedFunction {
        function: Function { policy, ..deduped.clone() },
        bytes: None,
        image: None,
    };
    riposte::ops::deploy::write_function(&reg, &prepared(with_dedup)).await.unwrap();
    let deployer_url = deployer.url.clone().unwrap();
    works(riposte(&["function", "list", "--nats", &deployer_url], &[]));
    works(riposte(&["trigger", "list", "--nats", &deployer_url], &[]));

    // The runner handles what the publisher publishes with core NATS: a result, a retry, a dead letter.
    let running = start_runner(&runner, "runner-a").await;
    let falcosidekick = connect(&publisher).await;
    let (ok, failing) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    falcosidekick.publish("falco.error.x", alert(&ok).into()).await.unwrap();
    falcosidekick.publish("falco.critical.y", alert(&failing).into()).await.unwrap();
    for _ in 0..2 {
        falcosidekick.publish("falco.warning.z", alert(&uuid::Uuid::new_v4().to_string()).into()).await.unwrap();
    }
    falcosidekick.flush().await.unwrap();
    wait_until("the ok result and the dead letter", LONG, || async {
        let results = read_results(&js, None, None).await.unwrap();
        let letters = riposte::nats::results::read_deadletters(&js, "lp-fails").await.unwrap();
        results.iter().any(|r| r.alert_uuid == ok && r.status == Status::Ok)
            && results.iter().filter(|r| r.alert_uuid == failing).count() == 2
            && letters.iter().any(|d| d.alert_uuid == failing)
            && results.iter().filter(|r| r.function == "lp-dedup" && r.disposition == Disposition::Deduplicated).count()
                == 1
    })
    .await;
    let logs = riposte(&["function", "logs", "lp-fails", "--nats", &deployer_url], &[]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    // The runner's heartbeat reaches the deployer's `runner list`.
    wait_until("the runner in the deployer's runner list", LONG, || async {
        let list = riposte(&["runner", "list", "--nats", &deployer_url], &[]);
        list.status.success() && String::from_utf8_lossy(&list.stdout).contains("runner-a")
    })
    .await;
    running.stop().await;
    // Deployed again without dedup: the deployer deletes the dedup stream.
    riposte::ops::deploy::write_function(&reg, &prepared(Default::default())).await.unwrap();
    assert!(js.get_stream(riposte::nats::dedup::stream_name("lp-dedup")).await.is_err());
    // Nothing was denied on the way: the permissions are all the flow needs.
    let denied: Vec<String> = nats.log().lines().filter(|l| l.contains("Violation")).map(String::from).collect();
    assert!(denied.is_empty(), "{denied:#?}");

    // A runner cannot deploy: not a function, not an artifact, not a consumer.
    let as_runner = Registry::open(&impatient(connect(&runner).await)).await.unwrap();
    let mut evil = reg.function("lp-ok").await.unwrap().unwrap();
    evil.name = "evil".into();
    assert!(as_runner.put_function(&evil).await.is_err());
    assert!(as_runner.put_artifact(b"not a component").await.is_err());
    let t = Trigger {
        name: "evil-t".into(),
        function: "evil".into(),
        topic: "falco.>".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    assert!(riposte::nats::streams::ensure_consumer(as_runner.jetstream(), &t, &evil.manifest.limits).await.is_err());
    assert!(reg.function("evil").await.unwrap().is_none());

    // The publisher cannot read the registry.
    let as_publisher = impatient(connect(&publisher).await);
    assert!(as_publisher.get_key_value("riposte-registry").await.is_err());
    assert!(Registry::open(&as_publisher).await.is_err());

    // Refused by the server's permissions, not lost elsewhere.
    support::wait_for("the server to log the denials", LONG, || {
        let log = nats.log();
        log.contains("User \"runner-a\", Subject \"$KV.riposte-registry.functions.evil\"")
            && log.contains("User \"falcosidekick\", Subject \"$JS.API.")
    })
    .await;
}

/// The `permissions (ROLE)` check of `riposte doctor --json --nats URL --role ROLE`.
fn doctor_permissions(url: &str, role: &str) -> serde_json::Value {
    let out = riposte(&["doctor", "--json", "--nats", url, "--role", role, "--name", "runner-a"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)));
    let checks = report["checks"].as_array().unwrap();
    let name = format!("permissions ({role})");
    let check = checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name}: {checks:#?}"));
    assert_eq!(out.status.success(), check["level"] != "failure", "{report:#}");
    check.clone()
}

/// Messages in each stream riposte keeps (the runners bucket aside: the doctor's clock probe writes there) and
/// the alert stream's consumers (reading the registry makes short-lived ones on its bucket).
async fn stored(js: &jetstream::Context) -> Vec<(String, u64)> {
    let mut counts = Vec::new();
    for name in ["FALCO", "RIPOSTE_RESULTS", "RIPOSTE_DEADLETTER", "KV_riposte-registry", "OBJ_riposte-artifacts"] {
        let mut stream = js.get_stream(name).await.unwrap();
        let info = stream.info().await.unwrap();
        counts.push((name.to_owned(), info.state.messages));
        if name == "FALCO" {
            counts.push((format!("{name} consumers"), info.state.consumer_count as u64));
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_probes_each_roles_permissions_and_changes_nothing() {
    let nats = TestNats::start_with_config(&readme_least_privilege());
    let port = nats.port();
    let url = |user: &str, password: &str| format!("nats://{user}:{password}@127.0.0.1:{port}");
    let (deployer, runner) = (url("deployer", "change-me-deployer"), url("runner-a", "change-me-runner"));
    let js = jetstream::new(config(&deployer).connect(&deployer, None).await.unwrap());
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    let reg = Registry::open(&js).await.unwrap();
    deploy(&reg, "dr-ok", &guests::ok(), "", "falco.error.>").await;
    let before = stored(&js).await;

    // The README's users have what their role needs.
    let check = doctor_permissions(&runner, "runner");
    assert_eq!(check["level"], "ok", "{check:#}");
    let check = doctor_permissions(&deployer, "deployer");
    assert_eq!(check["level"], "ok", "{check:#}");

    // Each lacks the other's: named subject by subject, with the fix.
    let check = doctor_permissions(&runner, "deployer");
    assert_eq!(check["level"], "failure", "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("$JS.API.STREAM.CREATE.") && detail.contains("$KV.riposte-registry."), "{detail}");
    assert!(!detail.contains("$JS.API.INFO,") && !detail.contains("$KV.riposte-runners.runners."), "{detail}");
    assert!(check["fix"].as_str().unwrap().contains("DEPLOYER permissions"), "{check:#}");
    let check = doctor_permissions(&deployer, "runner");
    assert_eq!(check["level"], "failure", "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("$JS.ACK.FALCO.") && detail.contains("riposte.results."), "{detail}");

    // The probes changed nothing: no message, consumer or stream was added or removed, the function is intact.
    assert_eq!(stored(&js).await, before);
    assert!(js.get_stream("RIPOSTE_DOCTOR_PROBE").await.is_err());
    assert!(reg.function("dr-ok").await.unwrap().is_some());
    // The denials were the server's.
    support::wait_for("the server to log a denial", LONG, || {
        nats.log().contains("User \"runner-a\", Subject \"$JS.API.STREAM.CREATE.RIPOSTE_DOCTOR_PROBE\"")
    })
    .await;
}
