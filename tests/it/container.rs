//! Container actions against a real Podman (its Docker-compatible API on a socket in a temp dir): the example
//! playbook posts the alert, settings arrive as env, the sandbox holds, a hang is killed at the deadline, a
//! memory hog fails cleanly, and no container is ever left behind. An image is built from host files outside
//! its playbook's folder only when the command line allows them.

use crate::support;

use riposte::execute::container::{ContainerEngine, FUNCTION_LABEL};
use riposte::model::alert::Alert;
use riposte::model::execution::{Handler, Status};
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use std::time::{Duration, Instant};
use support::podman::{test_image, Podman};

fn alert() -> Alert {
    Alert::parse(support::alert_json("terminal-shell-k8s").as_bytes()).unwrap()
}

/// A function running `script` (with `sh -c`) in the test image.
fn container_fn(name: &str, script: &str, limits: &str, settings: &[(&str, &str)]) -> Function {
    let declared: String = settings.iter().map(|(k, _)| format!("[settings.{k}]\nsecret = false\n")).collect();
    let manifest = Manifest::parse(&format!(
        "name = \"{name}\"\nkind = \"container\"\n[limits]\n{limits}\n[container]\nimage = \"{}\"\ncommand = [{}]\n{declared}",
        test_image(),
        serde_json::to_string(script).unwrap()
    ))
    .unwrap();
    Function {
        name: name.into(),
        manifest,
        artifact: test_image().into(),
        settings: Settings::from_pairs(settings.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
        runs_on: None,
        policy: Default::default(),
    }
}

/// A NATS server with riposte's streams, `f` deployed in its registry and, with `topic`, its trigger
/// `<name>-t` and consumer.
async fn deployed(f: &Function, topic: Option<&str>) -> (support::nats::TestNats, riposte::nats::registry::Registry) {
    let nats = support::nats::TestNats::start();
    let js = async_nats::jetstream::new(nats.client().await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    let registry =
        riposte::nats::registry::Registry::open(&js).await.unwrap().with_keys(Some(support::settings_keys()));
    registry.put_function(f).await.unwrap();
    if let Some(topic) = topic {
        let trigger = riposte::model::trigger::Trigger {
            name: format!("{}-t", f.name),
            function: f.name.clone(),
            topic: topic.into(),
            when: None,
            on_condition_error: Default::default(),
        };
        riposte::nats::streams::ensure_consumer(&js, &trigger, &f.manifest.limits).await.unwrap();
        registry.put_trigger(&trigger).await.unwrap();
    }
    (nats, registry)
}

fn assert_none_left(podman: &Podman, name: &str) {
    let left = podman.containers_with(&format!("{FUNCTION_LABEL}={name}"));
    assert!(left.is_empty(), "containers of {name} left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn example_webhook_action_posts_the_alert_and_its_output_is_recorded() {
    use wiremock::matchers::{body_string, method, path};
    let podman = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman.host())).await.unwrap();
    let dir = support::root().join("playbooks/webhook-action");
    let manifest = Manifest::load(&dir).unwrap();
    // The example takes the host's busybox, outside its folder: allowed as README says.
    let busybox = riposte::execute::container::image::ContextAllow::new(["/bin/busybox".into()]);
    engine.ensure_image(&manifest, &dir, &busybox).await.unwrap();

    // The container reaches the host through podman's bridge as host.containers.internal.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let receiver = wiremock::MockServer::builder().listener(listener).start().await;
    let alert = alert();
    wiremock::Mock::given(method("POST"))
        .and(path("/hooks/s3cr3t-token"))
        .and(body_string(alert.raw.clone()))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .expect(1)
        .mount(&receiver)
        .await;
    let url = format!("http://host.containers.internal:{}/hooks/s3cr3t-token", receiver.address().port());
    let settings = Settings::resolve(&manifest, &[("WEBHOOK_URL".into(), url)]).unwrap();
    let function = Function {
        name: "test-webhook".into(),
        artifact: manifest.container.as_ref().unwrap().image.clone(),
        manifest,
        settings,
        runs_on: None,
        policy: Default::default(),
    };
    let exec = engine.function(&function).handle(&alert).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    assert_eq!(exec.message, "posted the alert to the webhook");
    assert_eq!(exec.detail.as_ref().unwrap()["bytes"], alert.raw.len());
    receiver.verify().await;

    // A 4xx from the webhook is a refusal (exit 77), and the secret URL never shows.
    let refused = Function {
        settings: Settings::from_pairs([(
            "WEBHOOK_URL".to_owned(),
            format!("http://host.containers.internal:{}/nope/s3cr3t-token", receiver.address().port()),
        )]),
        ..function
    };
    let exec = engine.function(&refused).handle(&alert).await;
    assert_eq!(exec.status, Status::Rejected, "{exec:?}");
    assert!(!serde_json::to_string(&exec).unwrap().contains("s3cr3t-token"), "{exec:?}");
    assert_none_left(podman, "test-webhook");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_arrive_as_env_the_alert_on_stdin_and_the_sandbox_holds() {
    let podman = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman.host())).await.unwrap();
    let script = r#"
        stdin=$(cat)
        caps=$(grep CapEff /proc/self/status | tr -d '\t' | cut -d: -f2)
        nnp=$(grep NoNewPrivs /proc/self/status | tr -d '\t' | cut -d: -f2)
        if touch /rootfs-is-writable 2>/dev/null; then ro=false; else ro=true; fi
        net=$(ls /sys/class/net | tr '\n' ' ')
        touch /tmp/scratch && tmp=writable
        printf '{"greeting":"%s","stdin":%s,"env_alert_rule":"%s","caps":"%s","nnp":"%s","ro":%s,"net":"%s","tmp":"%s"}\n' \
          "$GREETING" "$stdin" "$(echo "$FALCO_ALERT" | grep -o '"rule":"[^"]*"' | cut -d'"' -f4)" "$caps" "$nnp" "$ro" "$net" "$tmp"
    "#;
    let function = container_fn("test-env", script, "", &[("GREETING", "hello from settings")]);
    let alert = alert();
    let exec = engine.function(&function).handle(&alert).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let d = exec.detail.expect("JSON output");
    assert_eq!(d["greeting"], "hello from settings");
    assert_eq!(d["stdin"]["rule"], alert.rule, "the alert arrives on stdin");
    assert_eq!(d["env_alert_rule"], alert.rule, "and in FALCO_ALERT");
    assert_eq!(d["caps"], "0000000000000000", "every capability dropped");
    assert_eq!(d["nnp"], "1", "no new privileges");
    assert_eq!(d["ro"], true, "read-only root filesystem");
    assert_eq!(d["net"], "lo ", "no network unless allowed: loopback only");
    assert_eq!(d["tmp"], "writable");

    // Exit code conventions: 65 = invalid alert, not retried.
    let invalid = container_fn("test-env", "echo 'no pod in this alert' >&2; exit 65", "", &[]);
    let exec = engine.function(&invalid).handle(&alert).await;
    assert_eq!(exec.status, Status::InvalidAlert, "{exec:?}");
    assert_eq!(exec.message, "exited with code 65: no pod in this alert");
    let failed = engine.function(&container_fn("test-env", "exit 3", "", &[])).handle(&alert).await;
    assert_eq!((failed.status, failed.status.retryable()), (Status::Failed, true));

    // riposte takes the end of the process (Podman's `stopped`, before its cleanup) as the end: the whole
    // output is read all the same, even from a container that writes a lot and exits at once.
    let loud = r#"printf '{"message":"loud","pad":"'; head -c 300000 /dev/zero | tr '\0' x; printf '"}'; exit 0"#;
    let exec = engine.function(&container_fn("test-env", loud, "", &[])).handle(&alert).await;
    assert_eq!(exec.status, Status::Ok, "{}", exec.message);
    assert_eq!(exec.detail.expect("JSON output")["pad"].as_str().map(str::len), Some(300_000));
    assert_none_left(podman, "test-env");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_container_is_killed_at_the_timeout_and_removed() {
    let podman = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman.host())).await.unwrap();
    let function = container_fn("test-hang", "echo started; exec sleep 600", "timeout_ms = 1500", &[]);
    let started = Instant::now();
    let exec = engine.function(&function).handle(&alert()).await;
    assert_eq!(exec.status, Status::Timeout, "{exec:?}");
    assert!(exec.message.contains("1500 ms"), "{}", exec.message);
    // Generous bound: the point is that it does not wait for `sleep 600`, not how fast podman kills.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert_none_left(podman, "test-hang");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_over_its_memory_limit_fails_cleanly() {
    let podman = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman.host())).await.unwrap();
    // `tail` of an endless line keeps all of it in memory.
    let function = container_fn("test-memory", "exec tail /dev/zero", "memory_mb = 16\ntimeout_ms = 30000", &[]);
    let exec = engine.function(&function).handle(&alert()).await;
    assert_eq!(exec.status, Status::Memory, "{exec:?}");
    assert!(!exec.status.retryable());
    assert!(exec.message.contains("16 MiB"), "{}", exec.message);
    assert_none_left(podman, "test-memory");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_engine_is_one_clear_line() {
    let err = ContainerEngine::connect(Some("unix:///nonexistent/podman.sock")).await.err().expect("no engine there");
    let line = err.to_string();
    assert!(line.contains("unix:///nonexistent/podman.sock"), "{line}");
    assert!(line.contains("podman system service --time=0 unix:///run/podman/podman.sock"), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn riposte_call_runs_a_container_playbook() {
    use wiremock::matchers::method;
    let podman = Podman::start();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let receiver = wiremock::MockServer::builder().listener(listener).start().await;
    wiremock::Mock::given(method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .expect(1)
        .mount(&receiver)
        .await;
    let url = format!("http://host.containers.internal:{}/hook", receiver.address().port());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_riposte"))
        .current_dir(support::root())
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .args(["call", "webhook-action", "--alert", "specs/alerts/terminal-shell-k8s.json", "--json"])
        .args(["-e", &format!("WEBHOOK_URL={url}"), "--container-host", &podman.host()])
        .args(["--context-allow", "/bin/busybox"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let exec: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(exec["status"], "ok");
    assert_eq!(exec["message"], "posted the alert to the webhook");
    receiver.verify().await;
    assert_none_left(podman, "webhook-action");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_function_reacts_to_a_nats_alert_through_the_runner() {
    use riposte::nats::results::read_results;
    let podman = Podman::start();
    let f = container_fn("engine-action", "cat >/dev/null; echo '{\"message\": \"reacted in a container\"}'", "", &[]);
    let (nats, registry) = deployed(&f, Some("falco.notice.*")).await;
    let js = registry.jetstream().clone();

    let runner = container_runner(&nats, podman, "container-runner").await;
    let shell = support::alert_json("terminal-shell-k8s");
    support::runner::publish_body(&nats.client().await, "falco.notice.terminal_shell_in_container", shell).await;
    let js2 = js.clone();
    support::wait_until("the container function's result", Duration::from_secs(90), || {
        let js = js2.clone();
        async move { !read_results(&js, Some("engine-action"), None).await.unwrap_or_default().is_empty() }
    })
    .await;
    let results = read_results(&js, Some("engine-action"), None).await.unwrap();
    assert_eq!(results[0].status, Status::Ok, "{:?}", results[0]);
    assert_eq!(results[0].message, "reacted in a container");
    runner.stop().await;
    assert_none_left(podman, "engine-action");
}

/// A container function's `concurrency` bounds it across all its triggers (issue 24 §4): each run notes the
/// kernel's uptime (the host's: not namespaced) when it starts and ends, a second apart; no two runs overlap.
#[tokio::test(flavor = "multi_thread")]
async fn a_container_function_with_two_triggers_runs_at_most_its_concurrency_at_once() {
    use riposte::nats::results::read_results;
    let podman = Podman::start();
    let script = "cat >/dev/null; s=$(cut -d' ' -f1 /proc/uptime); sleep 1; e=$(cut -d' ' -f1 /proc/uptime); \
                  echo \"{\\\"start\\\": $s, \\\"end\\\": $e}\"";
    let f = container_fn("bounded", script, "concurrency = 1", &[]);
    let (nats, registry) = deployed(&f, Some("falco.notice.*")).await;
    let js = registry.jetstream().clone();
    let second = riposte::model::trigger::Trigger {
        name: "bounded-u".into(),
        function: "bounded".into(),
        topic: "falco.error.*".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(&js, &second, &f.manifest.limits).await.unwrap();
    registry.put_trigger(&second).await.unwrap();

    let runner = container_runner(&nats, podman, "bounded-runner").await;
    let client = nats.client().await;
    for subject in ["falco.notice.x", "falco.error.x", "falco.notice.y", "falco.error.y"] {
        let body = support::alert_json("terminal-shell-k8s").replace("1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5", subject);
        support::runner::publish_body(&client, subject, body).await;
    }
    let js2 = js.clone();
    support::wait_until("four results", Duration::from_secs(120), || {
        let js = js2.clone();
        async move { read_results(&js, Some("bounded"), None).await.unwrap_or_default().len() >= 4 }
    })
    .await;
    let results = read_results(&js, Some("bounded"), None).await.unwrap();
    let mut runs: Vec<(f64, f64)> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, Status::Ok, "{r:?}");
            let d = r.detail.as_ref().unwrap();
            (d["start"].as_f64().unwrap(), d["end"].as_f64().unwrap())
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let triggers: std::collections::BTreeSet<&str> = results.iter().map(|r| r.trigger.as_str()).collect();
    assert_eq!(triggers.len(), 2, "both triggers ran it: {triggers:?}");
    for pair in runs.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two runs at once with concurrency = 1: {runs:?}");
    }
    runner.stop().await;
    assert_none_left(podman, "bounded");
}

/// Issue 9's canary, through a container action and a runner: a secret setting the container prints (stdout
/// as its outcome and detail, stderr as its logs, and both when it fails for good) is stored as `***` in its
/// result and dead letter, and is nowhere in the results and dead-letter streams.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_a_container_prints_is_redacted_in_its_result_dead_letter_and_the_streams() {
    use riposte::nats::results::{read_deadletters, read_results};
    const CANARY: &str = "Canary-Tok3n-7Qz";
    let podman = Podman::start();
    let script = r#"
        a=$(cat)
        echo "stderr $CANARY" >&2
        if echo "$a" | grep -q '"uuid":"fail'; then echo "stdout $CANARY"; exit 1; fi
        echo "{\"message\": \"out $CANARY\", \"detail\": {\"$CANARY\": \"x$CANARY\"}}"
    "#;
    let manifest = format!(
        "name = \"leaky\"\nkind = \"container\"\n[limits]\nmax_deliver = 1\n[container]\nimage = \"{}\"\ncommand = [{}]\n[settings.CANARY]\nrequired = true\n",
        test_image(),
        serde_json::to_string(script).unwrap()
    );
    let f = Function {
        manifest: Manifest::parse(&manifest).unwrap(),
        settings: Settings::from_pairs([("CANARY".to_owned(), CANARY.to_owned())]),
        ..container_fn("leaky", script, "", &[])
    };
    assert!(f.manifest.is_secret("CANARY"), "settings are secret unless declared otherwise");
    let (nats, registry) = deployed(&f, Some("falco.notice.*")).await;
    let js = registry.jetstream().clone();
    let runner = container_runner(&nats, podman, "leaky-runner").await;
    let client = nats.client().await;
    for uuid in ["ok-1", "fail-1"] {
        let mut alert: serde_json::Value = serde_json::from_str(&support::alert_json("terminal-shell-k8s")).unwrap();
        alert["uuid"] = uuid.into();
        client.publish("falco.notice.x", serde_json::to_string(&alert).unwrap().into()).await.unwrap();
    }
    client.flush().await.unwrap();
    support::wait_until("both results and the dead letter", Duration::from_secs(90), || {
        let js = js.clone();
        async move {
            read_results(&js, Some("leaky"), None).await.unwrap_or_default().len() >= 2
                && !read_deadletters(&js, "leaky").await.unwrap_or_default().is_empty()
        }
    })
    .await;
    runner.stop().await;

    let results = read_results(&js, Some("leaky"), None).await.unwrap();
    let by = |uuid: &str| results.iter().find(|r| r.alert_uuid == uuid).unwrap().clone();
    let ok = by("ok-1");
    assert_eq!((ok.status, ok.message.as_str()), (Status::Ok, "out ***"), "{ok:?}");
    // JSON stdout is the detail as a whole (its `message` the message).
    assert_eq!(ok.detail, Some(serde_json::json!({"message": "out ***", "detail": {"***": "x***"}})));
    assert!(ok.logs.iter().any(|l| l.message == "stderr ***"), "{:?}", ok.logs);
    let failed = by("fail-1");
    assert_eq!(failed.status, Status::Failed, "{failed:?}");
    assert!(serde_json::to_string(&failed).unwrap().contains("***"), "the failure carried the canary: {failed:?}");
    let letter = serde_json::to_string(&read_deadletters(&js, "leaky").await.unwrap()).unwrap();
    assert!(letter.contains("***"), "{letter}");
    for stream in [riposte::nats::streams::RESULTS_STREAM, riposte::nats::streams::DEADLETTER_STREAM] {
        let raw = support::runner::raw_stream(&js, stream).await;
        assert!(!raw.is_empty(), "{stream} holds the records");
        assert!(!raw.to_ascii_lowercase().contains(&CANARY.to_ascii_lowercase()), "{stream} shows the canary:\n{raw}");
    }
    assert_none_left(podman, "leaky");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_printing_over_a_mib_runs_once_and_its_result_is_stored_cut() {
    use riposte::model::limits::{RESULT_DETAIL_BYTES, RESULT_LOGS_BYTES};
    use support::runner::{consumer_info, publish_body, registry, results, wait_settled};
    let podman = Podman::start();
    let nats = support::nats::TestNats::start();
    let reg = registry(nats.client().await, &Default::default()).await;
    // 1.5 MB of stdout lines and 1.5 MB of stderr lines.
    let script = "cat >/dev/null; yes 0123456789abcdef | head -c 1500000; yes eeeeeeeeeeeeeeee | head -c 1500000 >&2";
    let f = container_fn("loud-action", script, "max_deliver = 3\nretry_backoff_ms = 10", &[]);
    reg.put_function(&f).await.unwrap();
    let trigger = riposte::model::trigger::Trigger {
        name: "loud-action-t".into(),
        function: f.name.clone(),
        topic: "falco.notice.*".into(),
        when: None,
        on_condition_error: Default::default(),
    };
    riposte::nats::streams::ensure_consumer(reg.jetstream(), &trigger, &f.manifest.limits).await.unwrap();
    reg.put_trigger(&trigger).await.unwrap();
    let runner = container_runner(&nats, podman, "loud-runner").await;
    publish_body(&nats.client().await, "falco.notice.x", support::alert_json("terminal-shell-k8s")).await;
    support::wait_until("the result", Duration::from_secs(90), || async {
        !results(&reg, "loud-action").await.is_empty()
    })
    .await;
    wait_settled(&reg, &trigger).await;
    let recorded = results(&reg, "loud-action").await;
    assert_eq!(recorded.len(), 1, "one run: {recorded:?}");
    let r = &recorded[0];
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let detail = r.detail.as_ref().and_then(|d| d.as_str()).expect("the output is the detail");
    assert!(detail.len() <= RESULT_DETAIL_BYTES && detail.ends_with("bytes dropped]"), "{}", detail.len());
    let logs: usize = r.logs.iter().map(|l| l.message.len()).sum();
    assert!(logs <= RESULT_LOGS_BYTES, "{logs}");
    assert_eq!(consumer_info(&reg, &trigger).await.num_redelivered, 0);
    runner.stop().await;
    assert_none_left(podman, "loud-action");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_starts_a_sandboxed_container_of_a_deployed_image_and_leaves_none() {
    let podman = Podman::start();
    let f = container_fn("doctored", "echo never run", "", &[("TOKEN", "s3cr3t-doctor")]);
    let (nats, _registry) = deployed(&f, None).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riposte"))
        .args(["doctor", "--json", "--nats", &nats.url(), "--container-host", &podman.host()])
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("RIPOSTE_SETTINGS_KEY_FILE", support::settings_key())
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let check = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "container engine").unwrap();
    assert_eq!(check["level"], "ok", "{report:#}");
    assert!(check["detail"].as_str().unwrap().contains("starts a sandboxed container"), "{check}");
    assert!(check["detail"].as_str().unwrap().contains("kills a container at its deadline"), "{check}");
    assert!(!out.stdout.windows(13).any(|w| w == b"s3cr3t-doctor"), "no setting in the report");
    assert!(podman.containers_with("riposte.doctor=probe").is_empty(), "the probe container was removed");
    assert_none_left(podman, "doctored");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_as_nobody_unless_root_is_asked_and_a_big_alert_arrives_whole() {
    use riposte::model::limits::CONTAINER_ENV_ALERT_BYTES;
    let podman = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman.host())).await.unwrap();
    // An alert well over Linux's 128 KiB limit on one environment string (it used to fail with "argument
    // list too long"), within what an alert may be.
    let mut big: serde_json::Value = serde_json::from_str(&support::alert_json("terminal-shell-k8s")).unwrap();
    big["output_fields"]["big"] = "x".repeat(200 * 1024).into();
    let big = Alert::parse(big.to_string().as_bytes()).unwrap();
    assert!(big.raw.len() > 128 * 1024 && big.raw.len() > CONTAINER_ENV_ALERT_BYTES);
    let script = r#"
        stdin=$(cat | wc -c)
        file=$(wc -c < "$FALCO_ALERT_FILE")
        if echo x >> "$FALCO_ALERT_FILE" 2>/dev/null; then ro=false; else ro=true; fi
        printf '{"uid":"%s","gid":"%s","stdin":%s,"file":%s,"file_path":"%s","file_ro":%s,"env":%s}\n' \
          "$(id -u)" "$(id -g)" "$stdin" "$file" "$FALCO_ALERT_FILE" "$ro" "${#FALCO_ALERT}"
    "#;
    let function = container_fn("test-user", script, "", &[]);
    let exec = engine.function(&function).handle(&big).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let d = exec.detail.expect("JSON output");
    assert_eq!((d["uid"].as_str(), d["gid"].as_str()), (Some("65534"), Some("65534")), "nobody by default");
    assert_eq!(d["stdin"], big.raw.len(), "the whole alert on stdin");
    assert_eq!(d["file"], big.raw.len(), "and in the file");
    assert_eq!(d["file_path"], "/run/riposte/alert.json");
    assert_eq!(d["file_ro"], true, "which is read-only");
    assert_eq!(d["env"], 0, "too big for FALCO_ALERT");

    // A small alert is in FALCO_ALERT too; root only when the manifest asks for it.
    let small = alert();
    let mut root = container_fn("test-user", script, "", &[]);
    root.manifest.container.as_mut().unwrap().user = Some("root".into());
    let exec = engine.function(&root).handle(&small).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let d = exec.detail.expect("JSON output");
    assert_eq!(d["uid"], "0", "root when asked explicitly");
    assert_eq!((d["env"].as_u64(), d["file"].as_u64()), (Some(small.raw.len() as u64), Some(small.raw.len() as u64)));
    assert_none_left(podman, "test-user");
}

/// Runs alone (`scripts/test` runs `serial::` tests one at a time): its runner removes any overdue riposte
/// container on the shared engine, whichever test started it.
mod serial {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn containers_of_a_killed_runner_are_removed_when_it_restarts_and_overdue_ones_by_any_runner() {
        use riposte::execute::container::{DEADLINE_LABEL, RUNNER_LABEL};

        let podman = Podman::start();
        let f = container_fn("test-killed", "cat >/dev/null; exec sleep 600", "timeout_ms = 60000", &[]);
        let (nats, _registry) = deployed(&f, Some("falco.notice.*")).await;

        // A runner process starts a container for the alert, and is killed outright (SIGKILL) meanwhile.
        let state = tempfile::tempdir().unwrap();
        let mut run = runner_given_an_alert(&nats, podman, state.path(), "site-k").await;
        let of_site_k = format!("{RUNNER_LABEL}=site-k");
        support::wait_until("the runner's container", Duration::from_secs(90), || {
            let found = !podman.containers_with(&of_site_k).is_empty();
            async move { found }
        })
        .await;
        run.kill().unwrap();
        run.wait().unwrap();
        assert_eq!(podman.containers_with(&of_site_k).len(), 1, "a killed runner cannot remove its container");

        // Containers of another runner (gone too): one past its deadline, one not yet.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let other = |name: &str, deadline: u64| {
            let out = support::podman::podman()
                .args(["run", "-d", "--name", name, "--label", &format!("{FUNCTION_LABEL}=test-other")])
                .args([
                    "--label",
                    &format!("{RUNNER_LABEL}=elsewhere"),
                    "--label",
                    &format!("{DEADLINE_LABEL}={deadline}"),
                ])
                .args([test_image(), "exec sleep 600"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        other(&format!("riposte-test-overdue-{suffix}"), now - 60);
        other(&format!("riposte-test-current-{suffix}"), now + 3600);

        // The runner restarts: before any alert, it removes what its earlier run left; and it removes what is
        // past its deadline whoever started it.
        let runner = container_runner(&nats, podman, "site-k").await;
        assert!(podman.containers_with(&of_site_k).is_empty(), "removed when the runner restarted");
        let overdue = format!("{DEADLINE_LABEL}={}", now - 60);
        support::wait_until("the overdue container's removal", Duration::from_secs(60), || {
            let gone = podman.containers_with(&overdue).is_empty();
            async move { gone }
        })
        .await;
        let current = podman.containers_with(&format!("{DEADLINE_LABEL}={}", now + 3600));
        assert_eq!(current.len(), 1, "a container before its deadline is left alone");
        runner.stop().await;
        let _ =
            support::podman::podman().args(["rm", "-f", "-t", "0", &format!("riposte-test-current-{suffix}")]).output();
        assert_none_left(podman, "test-other");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_takes_host_files_outside_its_playbook_folder_only_when_the_command_line_allows_them() {
    let podman = Podman::start();
    let base = test_image();
    let catalog = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let host_file = host.path().join("tool.txt");
    std::fs::write(&host_file, "from the host").unwrap();
    let image = format!("localhost/riposte-test-context-{}:1", uuid::Uuid::new_v4().simple());
    // A playbook whose image copies context file `x` (= `path`) and whose command prints it.
    let playbook = |name: &str, path: &str| {
        let dir = catalog.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("Containerfile"), format!("FROM {base}\nCOPY x /x\n")).unwrap();
        std::fs::write(
            dir.join("playbook.toml"),
            format!(
                "name = \"{name}\"\nkind = \"container\"\n[container]\nimage = \"{image}\"\ncontainerfile = \"Containerfile\"\ncommand = [\"cat >/dev/null; cat /x\"]\ncontext = {{ x = {path:?} }}\n"
            ),
        )
        .unwrap();
        dir
    };
    let state = tempfile::tempdir().unwrap();
    let riposte = |args: &[&str]| {
        let out = support::riposte_bin(state.path())
            .current_dir(support::root())
            .env("RIPOSTE_PLAYBOOKS", catalog.path())
            .env("RIPOSTE_CONTAINER_HOST", podman.host())
            .env_remove("RIPOSTE_CONTEXT_ALLOW")
            .args(args)
            .output()
            .unwrap();
        support::outcome(out)
    };
    let call = ["call", "--alert", "specs/alerts/terminal-shell-k8s.json", "--json"];
    let image_exists = || podman_image_exists(&image);

    // A host file named in the manifest: refused, by `call` and by a deploy (before it reaches NATS).
    playbook("shadow", "/etc/shadow");
    let (ok, _, err) = riposte(&[&call[..], &["shadow"]].concat());
    assert!(!ok, "{err}");
    assert!(err.contains("[container] context x = \"/etc/shadow\" is outside the playbook folder"), "{err}");
    assert!(err.contains("--context-allow /etc/shadow") && err.trim().lines().count() == 1, "{err}");
    let (ok, _, err) =
        riposte(&["deploy-playbook", "-p", "shadow", "-t", "falco.notice.*", "--nats", "nats://127.0.0.1:1"]);
    assert!(!ok && err.contains("--context-allow /etc/shadow"), "{err}");
    // A link in the folder to a host file is outside as well.
    let link = playbook("link", "x-link");
    std::os::unix::fs::symlink(&host_file, link.join("x-link")).unwrap();
    let (ok, _, err) = riposte(&[&call[..], &["link"]].concat());
    assert!(!ok && err.contains("[container] context x = \"x-link\" is outside the playbook folder"), "{err}");
    assert!(!image_exists(), "nothing was built");

    // The same host file, allowed on the command line: built, and in the image.
    let host_path = host_file.to_str().unwrap();
    playbook("allowed", host_path);
    let (ok, out, err) = riposte(&[&call[..], &["allowed", "--context-allow", host.path().to_str().unwrap()]].concat());
    assert!(ok, "{out}{err}");
    let exec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(exec["message"], "from the host", "{exec}");
    assert!(image_exists());
    let _ = support::podman::podman().args(["rmi", "-f", &image]).output();
    assert_none_left(podman, "allowed");
}

/// Starts `riposte run --name NAME` on `nats` and `podman` (a process of its own, to be killed) and publishes
/// one alert its container trigger takes.
async fn runner_given_an_alert(
    nats: &support::nats::TestNats,
    podman: &Podman,
    state: &std::path::Path,
    name: &str,
) -> std::process::Child {
    let run = support::riposte_bin(state)
        .args(["run", "--nats", &nats.url(), "--name", name, "--container-host", &podman.host()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let shell = support::alert_json("terminal-shell-k8s");
    support::runner::publish_body(&nats.client().await, "falco.notice.terminal_shell_in_container", shell).await;
    run
}

fn podman_image_exists(image: &str) -> bool {
    support::podman::podman().args(["image", "exists", image]).status().unwrap().success()
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_kills_a_container_at_its_deadline_when_its_runner_was_killed_and_none_is_left() {
    use riposte::execute::container::RUNNER_LABEL;
    let podman = Podman::start();
    let engine = ContainerEngine::connect(Some(&podman.host())).await.unwrap();
    assert!(engine.enforces_deadlines(), "Podman is detected");
    let f = container_fn("test-orphan", "cat >/dev/null; exec sleep 600", "timeout_ms = 2000\nmemory_mb = 48", &[]);
    let (nats, _registry) = deployed(&f, Some("falco.notice.*")).await;

    let state = tempfile::tempdir().unwrap();
    let mut run = runner_given_an_alert(&nats, podman, state.path(), "site-o").await;
    let of_site_o = format!("{RUNNER_LABEL}=site-o");
    let running = || {
        let out = support::podman::podman()
            .args(["ps", "--format", "{{.Names}}", "--filter", &format!("label={of_site_o}")])
            .args(["--filter", "status=running"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect::<Vec<_>>()
    };
    support::wait_until("the runner's container", Duration::from_secs(90), || {
        let found = !running().is_empty();
        async move { found }
    })
    .await;
    run.kill().unwrap();
    run.wait().unwrap();
    let seen = Instant::now();

    // The engine created it hardened, as the sandbox says, with a deadline of its own.
    let name = running().pop().expect("still running right after its runner was killed");
    let out = support::podman::podman().args(["inspect", &name]).output().unwrap();
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (config, host) = (&inspect[0]["Config"], &inspect[0]["HostConfig"]);
    assert_eq!(config["Timeout"], 3, "timeout_ms rounded up, plus a second: {config}");
    assert_eq!(config["User"], "65534:65534");
    assert_eq!(config["OpenStdin"], true);
    assert_eq!(config["Labels"][FUNCTION_LABEL], "test-orphan");
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    assert!(env.contains(&"FALCO_ALERT_FILE=/run/riposte/alert.json") && env.contains(&"HOME=/tmp"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("FALCO_ALERT={")), "{env:?}");
    assert_eq!(host["CapAdd"], serde_json::json!([]));
    assert!(host["CapDrop"].as_array().unwrap().iter().any(|c| c == "CAP_SYS_CHROOT"), "{}", host["CapDrop"]);
    assert_eq!(host["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    assert_eq!((host["Privileged"].as_bool(), host["ReadonlyRootfs"].as_bool()), (Some(false), Some(true)));
    assert_eq!(host["NetworkMode"], "none");
    assert_eq!((host["Memory"].as_i64(), host["MemorySwap"].as_i64()), (Some(48 << 20), Some(48 << 20)));
    assert_eq!(host["PidsLimit"], riposte::model::limits::CONTAINER_PIDS);
    assert_eq!(host["Tmpfs"]["/tmp"].as_str().map(|t| t.contains("size=64m")), Some(true), "{}", host["Tmpfs"]);
    let binds = host["Binds"].as_array().unwrap();
    assert!(binds.iter().any(|b| b.as_str().is_some_and(|b| b.contains(":/run/riposte/alert.json:ro"))), "{binds:?}");

    // No runner is left: the engine stops it at its deadline all the same (the next runner removes it).
    let stopped = Duration::from_secs(3) + Duration::from_secs(15);
    support::wait_until("the engine to stop the orphaned container", stopped.saturating_sub(seen.elapsed()), || {
        let gone = running().is_empty();
        async move { gone }
    })
    .await;
    let _ = support::podman::podman().args(["rm", "-f", "-t", "0", &name]).output();
    assert_none_left(podman, "test-orphan");
}

/// A runner named `name` whose container actions run on `podman` (capabilities recorded).
async fn container_runner(nats: &support::nats::TestNats, podman: &Podman, name: &str) -> riposte::runner::Runner {
    let config = riposte::runner::RunnerConfig {
        max_in_flight: 16,
        containers: riposte::execute::handlers::ContainerSetup { host: Some(podman.host()), ..Default::default() },
        ..support::runner::test_config(name)
    };
    riposte::runner::Runner::start(nats.client().await, config, support::runner::recorded()).await.unwrap()
}
