//! Issue 23, second part, through the `riposte` binary against real nats-servers: a runner told to stop while
//! its NATS is unreachable still exits within its bound.

use crate::support;

use async_nats::jetstream;
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use riposte::nats::registry::Registry;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::nats::TestNats;
use support::{guests, riposte_bin, wait_until};

/// Above the product's bound (`riposte::model::limits::stop_timeout()`), so a slow machine does not fail the test.
const EXIT_DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_stopped_while_its_nats_is_gone_exits_within_its_bound() {
    let mut nats = TestNats::start();
    let url = nats.url();
    // A function with a trigger: its dispatcher pulls when NATS goes away.
    let js = jetstream::new(nats.client().await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    riposte::nats::fleet::open(&js).await.unwrap();
    let reg = Registry::open(&js).await.unwrap().with_keys(Some(support::settings_keys()));
    let f = Function {
        name: "stop-f".into(),
        manifest: Manifest::parse("name = \"stop-f\"\nkind = \"wasm\"\n[limits]\ntimeout_ms = 20000").unwrap(),
        artifact: reg.put_artifact(&guests::spins()).await.unwrap(),
        settings: Settings::default(),
        runs_on: None,
        policy: Default::default(),
    };
    reg.put_function(&f).await.unwrap();
    let t = riposte::model::trigger::Trigger {
        name: "stop-t".into(),
        function: "stop-f".into(),
        topic: "falco.error.*".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(&js, &t, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&t).await.unwrap();
    let mut runner = riposte_bin(&support::shared_state())
        .args(["run", "--nats", &url, "--name", "stop-unreachable"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until("the runner to be listed", Duration::from_secs(60), || async {
        let state = tempfile::tempdir().unwrap();
        let out = riposte_bin(state.path()).args(["runner", "list", "--json", "--nats", &url]).output().unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list["runners"].as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["name"] == "stop-unreachable"
                    && r["functions"].as_array().is_some_and(|fs| fs.iter().any(|f| f["name"] == "stop-f"))
            })
        })
    })
    .await;

    for _ in 0..4 {
        js.publish("falco.error.spin", support::alert_json("terminal-shell-k8s").into()).await.unwrap().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.stop();
    let term = std::process::Command::new("kill").args(["-TERM", &runner.id().to_string()]).status().unwrap();
    assert!(term.success());
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = runner.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > EXIT_DEADLINE {
            runner.kill().unwrap();
            let _ = runner.wait();
            panic!("the runner was still running {EXIT_DEADLINE:?} after SIGTERM with its NATS gone");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    nats.stop();
    assert!(status.success(), "a stop, even one that abandons steps, exits 0: {status}");
    assert!(
        sent.elapsed() < riposte::model::limits::stop_timeout() + Duration::from_secs(10),
        "took {:?}",
        sent.elapsed()
    );
}
