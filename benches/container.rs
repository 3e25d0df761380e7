//! Per-alert cost of a container action, side by side in one run:
//! 1. riposte's container action (webhook-action through the Docker Engine API of `podman system service`),
//! 2. a bare `podman run --rm -i` of the same image with the same sandbox flags, env and stdin,
//! 3. the same reaction (POST the alert to a webhook) as a WASM playbook (slack), fresh and warm instances.
//!
//! Rounds alternate 1 and 2 so both see the same machine load. `RIPOSTE_BENCH_ALERTS` sets the count (20).
//!
//! cargo bench --bench container        (needs podman, busybox-static, and .venv's componentize-py for 3)

#[path = "../tests/support/mod.rs"]
mod support;

use riposte::execute::capability::Backends;
use riposte::execute::container::ContainerEngine;
use riposte::execute::runtime::{Runtime, RuntimeConfig};
use riposte::model::alert::Alert;
use riposte::model::execution::{Handler, Status};
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::state_dir::StateDir;
use riposte::ops::builder::Builder;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::podman::{podman, Podman};

fn stats(name: &str, samples: &mut [Duration]) -> f64 {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    println!(
        "{name:<44} n={:<3} mean {:>8.2} ms  median {:>8.2} ms  min {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        mean,
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1])
    );
    mean
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("RIPOSTE_BENCH_ALERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    std::env::set_var("CONTAINERS_CONF", support::podman::containers_conf());
    let alert = Alert::parse(support::alert_json("terminal-shell-k8s").as_bytes()).unwrap();

    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let receiver = wiremock::MockServer::builder().listener(listener).start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let port = receiver.address().port();

    let podman_service = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman_service.host())).await.unwrap();
    let dir = support::root().join("playbooks/webhook-action");
    let manifest = Manifest::load(&dir).unwrap();
    // The example takes the host's busybox, which lies outside its folder: allowed as its README says.
    let busybox = riposte::execute::container::image::ContextAllow::new(["/bin/busybox".into()]);
    engine.ensure_image(&manifest, &dir, &busybox).await.unwrap();
    let image = manifest.container.as_ref().unwrap().image.clone();
    let url = format!("http://host.containers.internal:{port}/hook");
    let settings = Settings::resolve(&manifest, &[("WEBHOOK_URL".into(), url.clone())]).unwrap();
    let function = Function {
        name: "bench-webhook".into(),
        manifest: manifest.clone(),
        artifact: image.clone(),
        settings,
        runs_on: None,
        policy: Default::default(),
    };
    let action = engine.function(&function);

    // The same container, flags and input, by hand.
    let bare = || {
        let mut child = podman()
            .args(["run", "--rm", "-i", "--read-only", "--cap-drop=all", "--security-opt=no-new-privileges"])
            .args(["--tmpfs=/tmp:rw,nosuid,nodev,size=64m", "--network=bridge", "--memory=32m", "--memory-swap=32m"])
            .args(["--pids-limit=32", "--label=riposte.function=bench-bare", "-e", &format!("WEBHOOK_URL={url}")])
            .args(["-e", "WEBHOOK_TIMEOUT=5", "-e", &format!("FALCO_ALERT={}", alert.raw), "-e", "HOME=/tmp", &image])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(alert.raw.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
    };

    // Warm-up: first container start pays for image layers and network setup.
    assert_eq!(action.handle(&alert).await.status, Status::Ok);
    bare();

    let (mut ours, mut theirs, mut created) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let exec = action.handle(&alert).await;
        ours.push(t.elapsed());
        created.push(Duration::from_micros(exec.instantiate_us));
        assert_eq!(exec.status, Status::Ok, "{exec:?}");
        let t = Instant::now();
        tokio::task::block_in_place(bare);
        theirs.push(t.elapsed());
    }
    println!("per alert, {n} alerts each, alternating (POST of the alert to a local webhook):");
    let a = stats("container action (riposte, engine API)", &mut ours);
    stats("  of which: create container", &mut created);
    let b = stats("bare `podman run --rm -i`, same flags", &mut theirs);
    println!("container action vs bare podman run: {:+.1}%", (a / b - 1.0) * 100.0);
    let left = podman_service.containers_with("riposte.function");
    assert!(left.is_empty(), "containers left behind: {left:?}");

    // The same reaction as a WASM playbook.
    let state = StateDir::new(Some(support::shared_state()));
    let builder = Builder::new(support::root().join("playbooks"), &state);
    let built = match tokio::task::block_in_place(|| builder.build("slack")) {
        Ok(b) => b,
        Err(e) => {
            println!("WASM comparison skipped: {e}");
            return;
        }
    };
    let (_, slack) = builder.manifest("slack").unwrap();
    let runtime = Runtime::new(&RuntimeConfig { cache_dir: state.compiled(), pooling: true }).unwrap();
    let bytes = std::fs::read(&built.path).unwrap();
    let component = tokio::task::block_in_place(|| runtime.load(&bytes, "slack")).unwrap();
    let backends = || Backends {
        http: std::sync::Arc::new(
            riposte::execute::capability::http::HttpClient::new(
                &riposte::execute::capability::http::HttpConfig::default(),
            )
            .unwrap(),
        ),
        kubernetes: std::sync::Arc::new(riposte::execute::capability::kubernetes::NoCluster),
        object_store: std::sync::Arc::new(riposte::execute::capability::object_store::DirStore::new(state.objects())),
    };
    let wasm_url = format!("http://127.0.0.1:{port}/hook");
    for (label, reuse) in [("WASM playbook (slack), fresh instance", 1), ("WASM playbook (slack), warm instance", 1000)]
    {
        let mut m: Manifest = slack.clone();
        m.limits.reuse = reuse;
        let settings = Settings::resolve(&m, &[("SLACK_WEBHOOK_URL".into(), wasm_url.clone())]).unwrap();
        let f = Function {
            name: "bench-slack".into(),
            manifest: m,
            artifact: component.digest.clone(),
            settings,
            runs_on: None,
            policy: Default::default(),
        };
        let handler = runtime.function(component.clone(), &f, backends());
        assert_eq!(handler.handle(&alert).await.status, Status::Ok);
        let mut samples = Vec::new();
        for _ in 0..n.max(200) {
            let t = Instant::now();
            let exec = handler.handle(&alert).await;
            samples.push(t.elapsed());
            assert_eq!(exec.status, Status::Ok, "{exec:?}");
        }
        stats(label, &mut samples);
    }
}
