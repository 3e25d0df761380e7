//! `riposte call` as a user runs it: the real binary, the real slack playbook, a local HTTP receiver; and the
//! clear one-line errors for bad input.

use crate::support;

use std::process::{Command, Output};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn riposte(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riposte"))
        .args(args)
        .current_dir(support::root())
        .env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("PATH", format!("{}/.venv/bin:{}", support::root().display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("riposte runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_posts_the_alert_to_the_webhook() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&receiver)
        .await;
    let url = format!("{}/services/T000/B000/XXXX", receiver.uri());
    let out = tokio::task::spawn_blocking(move || {
        riposte(&[
            "call",
            "slack",
            "--alert",
            "specs/alerts/terminal-shell-k8s.json",
            "-e",
            &format!("SLACK_WEBHOOK_URL={url}"),
        ])
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(!stdout.contains("XXXX") && !stderr.contains("XXXX"), "the webhook URL is a secret: {stdout}{stderr}");

    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body["text"],
        "A shell was spawned in a container with an attached terminal (user=root shell=bash parent=runc cmdline=bash terminal=34816 container_id=3ad8d1c2b4e5 image=docker.io/library/nginx k8s_ns=default k8s_pod_name=nginx-6799fc88d8-5q8ln)"
    );
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "#397ec3", "Notice is blue");
    let fields: Vec<(String, String)> = attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["title"].as_str().unwrap().to_owned(), f["value"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert!(fields.contains(&("Rule".into(), "Terminal shell in container".into())), "{fields:?}");
    assert!(fields.contains(&("Priority".into(), "Notice".into())), "{fields:?}");
    assert!(fields.contains(&("Kubernetes Pod Name".into(), "nginx-6799fc88d8-5q8ln".into())), "{fields:?}");
    assert!(fields.contains(&("Container Id".into(), "3ad8d1c2b4e5".into())), "{fields:?}");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("bad.json");
    std::fs::write(&not_json, "{not json").unwrap();
    let mut no_rule: serde_json::Value = serde_json::from_str(&support::alert_json("write-below-binary-dir")).unwrap();
    no_rule.as_object_mut().unwrap().remove("rule");
    let no_rule_path = dir.path().join("norule.json");
    std::fs::write(&no_rule_path, no_rule.to_string()).unwrap();
    let hook = "SLACK_WEBHOOK_URL=http://127.0.0.1:9/x";
    let sample = "specs/alerts/write-below-binary-dir.json";

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["call", "slack", "--alert", not_json.to_str().unwrap(), "-e", hook], "alert is not JSON"),
        (vec!["call", "slack", "--alert", no_rule_path.to_str().unwrap(), "-e", hook], "alert has no `rule`"),
        (vec!["call", "no-such-playbook", "--alert", sample], "no playbook \"no-such-playbook\""),
        (
            vec!["call", "slack", "--alert", sample],
            "playbook slack needs setting SLACK_WEBHOOK_URL: pass -e SLACK_WEBHOOK_URL=VALUE",
        ),
        (
            vec!["call", "slack", "--alert", sample, "-e", "SLACK_WEBHOOK=x"],
            "playbook slack has no setting SLACK_WEBHOOK",
        ),
        (vec!["call", "slack", "--alert", sample, "-e", "=nonsense"], "is not KEY=VALUE"),
    ];
    for (args, expected) in cases {
        let out = riposte(&args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in stderr, got: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line, got: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing on stdout: {stdout}");
    }
}

#[test]
fn an_unreachable_receiver_is_a_retryable_failure_without_the_secret() {
    let out = riposte(&[
        "call",
        "slack",
        "--alert",
        "specs/alerts/write-below-binary-dir.json",
        "-e",
        "SLACK_WEBHOOK_URL=http://127.0.0.1:9/services/SECRET-TOKEN",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    let exec: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert_eq!(exec["status"], "failed", "{exec}");
    assert!(!stdout.contains("SECRET-TOKEN") && !stderr.contains("SECRET-TOKEN"), "{stdout}{stderr}");
}
