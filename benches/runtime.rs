//! The WASM runtime's speed, measured in one run (no timed assertions anywhere):
//! alerts/s and p50/p99 per alert for a trivial component and the slack playbook (recorded HTTP), fresh
//! instance per alert vs warm reuse, across both cores; the same slack code natively in one warm CPython
//! process; compile time of the slack component cold vs cached; RSS after loading.
//!
//! Run: `cargo bench --bench runtime --profile dev` (dependencies are optimised in the dev profile).

#[allow(dead_code)]
#[path = "../tests/support/guests.rs"]
mod guests;

use riposte::execute::capability::recording::Recorder;
use riposte::execute::capability::Backends;
use riposte::execute::runtime::{Runtime, RuntimeConfig, WasmFunction};
use riposte::model::alert::Alert;
use riposte::model::execution::Handler;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Builder;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 8;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn backends() -> Backends {
    let r = Arc::new(Recorder::new());
    Backends { http: r.clone(), kubernetes: r.clone(), object_store: r }
}

fn function(manifest: &Manifest, reuse: u32, settings: Settings) -> Function {
    let mut manifest = manifest.clone();
    manifest.limits.reuse = reuse;
    manifest.limits.concurrency = TASKS as u32;
    Function {
        name: "bench".into(),
        manifest,
        artifact: String::new(),
        settings,
        runs_on: None,
        policy: Default::default(),
    }
}

/// Runs `n` alerts through `f` from TASKS concurrent tasks; returns alerts/s and per-alert latencies.
async fn measure(f: Arc<WasmFunction>, alert: Arc<Alert>, n: usize) -> (f64, Vec<Duration>) {
    // Warm up as many instances as there will be concurrent tasks, so the run measures the steady state.
    let warmups: Vec<_> = (0..TASKS).map(|_| f.handle(&alert)).collect();
    for exec in futures::future::join_all(warmups).await {
        assert!(exec.is_ok(), "warm-up failed: {exec:?}");
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (f, alert) = (f.clone(), alert.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n / TASKS);
            for _ in 0..n / TASKS {
                let t = Instant::now();
                let exec = f.handle(&alert).await;
                assert!(exec.is_ok(), "{exec:?}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as f64 / start.elapsed().as_secs_f64(), all)
}

fn pct(lat: &mut [Duration], p: f64) -> Duration {
    lat.sort();
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
}

fn report(name: &str, (rate, mut lat): (f64, Vec<Duration>)) -> f64 {
    let (p50, p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
    println!(
        "{name:<34} {rate:>10.0} alerts/s   p50 {:>8.1} µs   p99 {:>8.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    rate
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let n: usize = std::env::var("BENCH_ALERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let state = StateDir::new(Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("riposte-state")));
        let builder = Builder::new(root().join("playbooks"), &state);
        let slack = builder.build("slack").expect("slack builds (is componentize-py in .venv?)");
        let slack_bytes = std::fs::read(&slack.path).unwrap();
        let (_, slack_manifest) = builder.manifest("slack").unwrap();
        let alert = Arc::new(Alert::parse(std::fs::read_to_string(root().join("specs/alerts/terminal-shell-k8s.json")).unwrap().as_bytes()).unwrap());

        // Compile cold vs cached.
        let cache = tempfile::tempdir().unwrap();
        let cold = Instant::now();
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: cache.path().to_owned(), pooling: true }).unwrap();
        runtime.load(&slack_bytes, "slack").unwrap();
        let cold = cold.elapsed();
        drop(runtime);
        let warm = Instant::now();
        let runtime = Runtime::new(&RuntimeConfig { cache_dir: cache.path().to_owned(), pooling: true }).unwrap();
        let slack_component = runtime.load(&slack_bytes, "slack").unwrap();
        let warm = warm.elapsed();
        assert!(!slack_component.compiled);
        println!("slack component: {:.1} MB; compile cold {:.2} s, cached load {:.1} ms ({:.0}x); RSS after load {:.0} MB; pooling {}",
            slack_bytes.len() as f64 / 1e6, cold.as_secs_f64(), warm.as_secs_f64() * 1e3,
            cold.as_secs_f64() / warm.as_secs_f64(), rss_mb(), runtime.pooling());

        let trivial_manifest = Manifest::parse("name = \"trivial\"\nkind = \"wasm\"\n").unwrap();
        let trivial = runtime.load(&guests::ok(), "trivial").unwrap();
        let settings = Settings::from_pairs([("SLACK_WEBHOOK_URL".to_owned(), "https://hooks.slack.com/services/T0/B0/X".to_owned())]);

        {
            let f = runtime.function(slack_component.clone(), &function(&slack_manifest, 1, settings.clone()), backends());
            let mut parts = Vec::new();
            for _ in 0..10 {
                let e = f.handle(&alert).await;
                parts.push(format!("{}+{}", e.instantiate_us / 1000, (e.duration_us - e.instantiate_us) / 1000));
            }
            println!("slack fresh, one at a time, instantiate+call ms: {}", parts.join(" "));
        }
        println!("{n} alerts per row, {TASKS} concurrent tasks on 2 worker threads:");
        let mk = |c: &Arc<riposte::execute::runtime::LoadedComponent>, m: &Manifest, reuse: u32, s: Settings| {
            Arc::new(runtime.function(c.clone(), &function(m, reuse, s), backends()))
        };
        report("trivial, fresh instance per alert", measure(mk(&trivial, &trivial_manifest, 1, Settings::default()), alert.clone(), n).await);
        report("trivial, warm reuse", measure(mk(&trivial, &trivial_manifest, 1000, Settings::default()), alert.clone(), n).await);
        let fresh = report("slack, fresh instance per alert", measure(mk(&slack_component, &slack_manifest, 1, settings.clone()), alert.clone(), n / 10).await);
        let warm_rate = report("slack, warm reuse (catalog default)", measure(mk(&slack_component, &slack_manifest, 1000, settings.clone()), alert.clone(), n).await);
        println!("RSS after the runs: {:.0} MB", rss_mb());

        let bindings = tempfile::tempdir().unwrap();
        let py = root().join(".venv/bin/python");
        let ok = std::process::Command::new(root().join(".venv/bin/componentize-py"))
            .args(["-d", "wit", "-w", "playbook", "bindings"])
            .arg(bindings.path())
            .current_dir(root())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            let out = std::process::Command::new(py)
                .arg(root().join("benches/python_slack.py"))
                .arg(bindings.path())
                .arg(n.to_string())
                .output()
                .unwrap();
            let native: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0);
            println!("{:<34} {native:>10.0} alerts/s   (one warm CPython process, same app.py, same recorded reply)", "slack, native Python");
            if native > 0.0 {
                println!("slack in the sandbox vs native Python: warm {:.2}x, fresh {:.2}x", warm_rate / native, fresh / native);
            }
        }
    });
}
