//! Memory benchmark: the runner's resident memory (this process's VmRSS; the runner runs in it, nats-server
//! apart) as functions are deployed and alerts arrive, with the pooling allocator as `riposte run` uses it:
//! - started, no function deployed;
//! - the 7 catalog functions of the original engine deployed and idle (each component loaded: its compiled code
//!   mapped from the compile cache, no instance yet);
//! - 23 more deployed functions (copies of slack: 30 in all), idle: what each further function costs;
//! - after a burst of BENCH_BURST alerts (default 50) on each of the 7 (every capability recorded, no network);
//! - 30 deployed and no alert for the idle timeout (`--instance-idle-timeout`, BENCH_IDLE seconds, default 60):
//!   their components unloaded;
//! - once the idle warm instances are released and the components unloaded again after the burst.
//!
//! `cargo bench --profile dev --bench memory` (release: `cargo bench --bench memory`). The figures move with
//! the allocator's retention; compare rows of one run.

#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt;
use riposte::model::function::Settings;
use riposte::model::state_dir::StateDir;
use riposte::nats::registry::Registry;
use riposte::runner::{Runner, RunnerConfig, WarmConfig};
use std::time::{Duration, Instant};
use support::nats::TestNats;

const CATALOG: [&str; 7] = ["slack", "demisto", "phantom", "delete", "taint", "isolate", "capture"];

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// This process's resident memory, in MB, once the allocator gave back what it keeps free (`malloc_trim`, as the
/// runner does after releasing idle instances): what the runner holds.
fn rss_trimmed() -> f64 {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
    rss_mb()
}

/// This process's resident memory, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn settings_for(playbook: &str) -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = match playbook {
        "slack" => &[("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/X")],
        "demisto" => &[("DEMISTO_API_KEY", "k"), ("DEMISTO_BASE_URL", "https://demisto.example.com")],
        "phantom" => {
            &[("PHANTOM_USER", "u"), ("PHANTOM_PASSWORD", "p"), ("PHANTOM_BASE_URL", "https://phantom.example.com")]
        }
        "capture" => &[("AWS_S3_BUCKET", "b"), ("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
        _ => &[],
    };
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

async fn deploy(reg: &Registry, state: &StateDir, name: &str, playbook: &str) {
    let builder = riposte::ops::builder::Builder::new(support::root().join("playbooks"), state);
    let built = builder.build(playbook).expect("the catalog builds (componentize-py in .venv)");
    let (_, manifest) = builder.manifest(playbook).unwrap();
    let settings = Settings::resolve(&manifest, &settings_for(playbook)).unwrap();
    let bytes = std::fs::read(&built.path).unwrap();
    let f = support::fleet::deploy_with(reg, name, &bytes, manifest, settings, Default::default()).await;
    support::fleet::trigger(reg, &format!("{name}-t"), &f, &subject(name), None).await;
}

/// Past the idle timeout, the runner's release loop has run.
const GRACE: Duration = Duration::from_secs(6);

/// Waits the idle timeout and [`GRACE`] (the bench measures what time does; nothing to wait on instead).
async fn idle_past(idle: Duration) {
    tokio::time::sleep(idle + GRACE).await;
}

/// The subject only `name`'s trigger takes (a rule slug of its own).
fn subject(name: &str) -> String {
    format!("falco.notice.memory_{}", name.replace('-', "_"))
}

/// Waits until the runner dispatches `n` triggers and has loaded each one's handler (its readiness).
async fn settled(runner: &Runner, n: usize) {
    let probe = runner.probe();
    let deadline = Instant::now() + Duration::from_secs(600);
    while runner.active_triggers().len() < n || !probe.not_ready().is_empty() {
        assert!(Instant::now() < deadline, "not ready: {:?}", probe.not_ready());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alert(i: u64) -> String {
    support::fleet::alert(
        &format!("mem-{i}"),
        "Notice",
        "Terminal shell in container",
        "A shell was spawned",
        serde_json::json!({"k8s.ns.name": "default", "k8s.pod.name": "web", "evt.time": 1_772_460_312_123_456_789u64}),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let idle = Duration::from_secs(env_n("BENCH_IDLE", 60));
    let burst = env_n("BENCH_BURST", 50);
    let nats = TestNats::start();
    let reg = support::fleet::registry(&nats).await;
    let state = StateDir::new(Some(support::shared_state()));
    // Built (and compiled) before measuring, so the rows show the runner, not the build.
    for p in CATALOG {
        riposte::ops::builder::Builder::new(support::root().join("playbooks"), &state).build(p).unwrap();
    }
    let warm = WarmConfig { idle_timeout: Some(idle), ..WarmConfig::default() };
    let config = RunnerConfig { pooling: true, warm, ..support::runner::test_config("memory") };
    let runner = Runner::start(nats.client().await, config, support::runner::recorded()).await.unwrap();
    settled(&runner, 0).await;
    let started = rss_mb();
    println!("runner started, no function deployed: RSS {started:.0} MB");

    for p in CATALOG {
        deploy(&reg, &state, p, p).await;
    }
    settled(&runner, CATALOG.len()).await;
    let seven = rss_mb();
    println!("7 catalog functions deployed, idle (components loaded, no instance): RSS {seven:.0} MB");

    for i in 0..23 {
        deploy(&reg, &state, &format!("slack-{i}"), "slack").await;
    }
    settled(&runner, 30).await;
    let thirty = rss_mb();
    println!(
        "30 functions deployed, idle: RSS {thirty:.0} MB ({:.2} MB per further function)",
        (thirty - seven) / 23.0
    );

    idle_past(idle).await;
    let unloaded = rss_mb();
    println!(
        "30 functions deployed, no alert for {} s (components unloaded): RSS {unloaded:.0} MB",
        (idle + GRACE).as_secs()
    );

    let client = nats.client().await;
    let mut results = client.subscribe("riposte.results.>").await.unwrap();
    client.flush().await.unwrap();
    for p in CATALOG {
        for i in 0..burst {
            client.publish(subject(p), alert(i).into()).await.unwrap();
        }
    }
    client.flush().await.unwrap();
    let expected = burst * CATALOG.len() as u64;
    for _ in 0..expected {
        tokio::time::timeout(Duration::from_secs(120), results.next()).await.expect("results stalled").unwrap();
    }
    let after = rss_mb();
    let trimmed = rss_trimmed();
    println!(
        "after a burst of {burst} alerts on each of the 7 ({expected} executions): RSS {after:.0} MB \
         ({trimmed:.0} MB once the allocator gave back its free memory)"
    );

    idle_past(idle).await;
    let later = rss_mb();
    println!(
        "{} s after the burst (idle instances released and components unloaded after {} s): RSS {later:.0} MB",
        (idle + GRACE).as_secs(),
        idle.as_secs()
    );
    runner.stop().await;
}
