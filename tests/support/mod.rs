//! Shared test support, so no test copies setup: tiny guest components built from WAT against the real
//! `wit/playbook.wit` ([`guests`]), a real nats-server ([`nats`]), a Podman API service ([`podman`]), the
//! Kubernetes API emulator ([`kube`]) and manifests read into their API types ([`manifests`]), certificates
//! and JWTs for secured NATS ([`secure`]), `riposte run` as a child process ([`process`]), a real Prometheus
//! ([`prometheus`]), the trigger engine's parts ([`runner`]), paths, sample alerts, and waiting on a condition
//! with a deadline.
#![allow(dead_code)]

pub mod cluster;
pub mod fleet;
pub mod guests;
pub mod kube;
pub mod manifests;
pub mod nats;
pub mod podman;
pub mod process;
pub mod prometheus;
pub mod runner;
pub mod secure;

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A state directory shared by the test runs of this checkout, so built and compiled components are cached.
pub fn shared_state() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("riposte-state")
}

/// The timings every test runs with, in this process and in every `riposte` it spawns: a killed runner is gone
/// after 3 s (15 s in production), a container sweep every second (5 s); see `riposte::model::timings::Timings::fast`.
pub fn timings() -> riposte::model::timings::Timings {
    riposte::model::timings::Timings {
        gone_after: std::time::Duration::from_secs(3),
        ..riposte::model::timings::Timings::fast()
    }
}

/// Installs [`timings`] in this process (the fixtures call it before anything reads them).
pub fn init() {
    riposte::model::timings::install(timings());
}

/// The `riposte` binary of this build, with a state directory, the catalog, the test settings key and the test
/// [`timings`] (a test of a production default removes `RIPOSTE_TIMINGS`).
pub fn riposte_bin(state: &std::path::Path) -> std::process::Command {
    init();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_riposte"));
    c.env(riposte::model::timings::ENV, timings().to_env());
    c.env("RIPOSTE_STATE_DIR", state).env("RIPOSTE_PLAYBOOKS", root().join("playbooks")).env("RUST_LOG", "warn");
    c.env("RIPOSTE_SETTINGS_KEY_FILE", settings_key());
    c
}

/// A finished command as (success, stdout, stderr), its output as text.
pub fn outcome(out: std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A sample alert from `specs/alerts`.
pub fn alert_json(name: &str) -> String {
    std::fs::read_to_string(root().join("specs/alerts").join(format!("{name}.json"))).unwrap()
}

/// The pause before the next look at a condition: 20 ms, growing by half each time up to 250 ms, so a wait that
/// reads a whole stream or spawns a command does not cost the machine more the longer it waits.
fn next_poll(poll: std::time::Duration) -> std::time::Duration {
    (poll * 3 / 2).min(std::time::Duration::from_millis(250))
}

/// Waits for a condition, polling (see [`next_poll`]), until a deadline; panics with `what` when it never holds.
pub async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: std::time::Duration, mut cond: F) {
    let deadline = std::time::Instant::now() + timeout;
    let mut poll = std::time::Duration::from_millis(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(poll).await;
        poll = next_poll(poll);
    }
}

/// Waits for an async condition, polling (see [`next_poll`]), until a deadline; panics with `what` when it never
/// holds.
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    let mut poll = std::time::Duration::from_millis(20);
    while !cond().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(poll).await;
        poll = next_poll(poll);
    }
}

/// The settings key file of every test deployer and runner (created once, in the shared state directory):
/// [`riposte_bin`] passes it, and the in-process runners and registries of this module use it.
pub fn settings_key() -> PathBuf {
    let path = shared_state().join("test-settings.key");
    if !path.exists() {
        std::fs::create_dir_all(shared_state()).unwrap();
        riposte::secrets::seal::SettingsKeys::load_or_generate(&path).expect("the test settings key");
    }
    path
}

/// The keys in [`settings_key`].
pub fn settings_keys() -> riposte::secrets::seal::SettingsKeys {
    riposte::secrets::seal::SettingsKeys::load(&settings_key()).unwrap()
}
