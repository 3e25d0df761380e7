//! `riposte apply -f FILE` and `riposte export` through the binary against a real nats-server, with catalog
//! playbooks (slack: a secret setting; taint: non-secret ones): plan and dry run, idempotence (a second apply
//! writes nothing), updates, prune, export → apply round trip, and bad files refused with their line.

use crate::support;

use async_nats::jetstream;
use riposte::nats::registry::Registry;
use std::path::Path;
use std::process::{Command, Output};
use support::nats::TestNats;

const SECRET: &str = "https://hooks.slack.example/services/T0/B0/very-secret-token";

fn riposte(nats: &TestNats, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riposte"));
    c.env("RIPOSTE_STATE_DIR", support::shared_state())
        .env("RIPOSTE_PLAYBOOKS", support::root().join("playbooks"))
        .env("RIPOSTE_NATS_URL", nats.url())
        .env("RIPOSTE_SETTINGS_KEY_FILE", support::settings_key())
        .env("RUST_LOG", "warn")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn registry(nats: &TestNats) -> Registry {
    Registry::open(&jetstream::new(nats.client().await)).await.unwrap().with_keys(Some(support::settings_keys()))
}

/// The registry bucket's last sequence: unchanged means nothing was written.
async fn registry_seq(nats: &TestNats) -> u64 {
    let js = jetstream::new(nats.client().await);
    js.get_stream("KV_riposte-registry").await.unwrap().info().await.unwrap().state.last_sequence
}

fn response(taint_key: &str, concurrency: u32) -> String {
    format!(
        "# the response configuration
functions:
  falco-slack:
    playbook: slack
    settings:
      SLACK_WEBHOOK_URL: {{env: TEST_SLACK_URL}}
  falco-taint:
    playbook: taint
    settings:
      TAINT_KEY: {taint_key}
    limits:
      concurrency: {concurrency}
triggers:
  falco-slack-trigger-0: {{function: falco-slack, topic: \"falco.error.*\"}}
  falco-taint-trigger-0:
    function: falco-taint
    topic: \"falco.critical.*\"
"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_triggers_on_condition_error_is_applied_stored_and_exported_back() {
    let nats = TestNats::start();
    let dir = tempfile::tempdir().unwrap();
    let declare = |choice: &str| {
        format!(
            "functions:\n  falco-slack:\n    playbook: slack\n    settings:\n      SLACK_WEBHOOK_URL: {{env: TEST_SLACK_URL}}\n\
             triggers:\n  t0: {{function: falco-slack, topic: \"falco.error.*\", when: \"priority >= Error\"{choice}}}\n"
        )
    };
    let file = write(dir.path(), "response.yaml", &declare(", on_condition_error: run"));
    let env = [("TEST_SLACK_URL", SECRET)];
    ok(&riposte(&nats, &["apply", "-f", &file], &env));
    let reg = registry(&nats).await;
    assert_eq!(reg.triggers().await.unwrap()["t0"].on_condition_error, riposte::model::trigger::OnConditionError::Run);
    let exported = ok(&riposte(&nats, &["export"], &[]));
    assert!(exported.contains("on_condition_error: run"), "{exported}");
    write(dir.path(), "response.yaml", &declare(""));
    let edited = ok(&riposte(&nats, &["apply", "-f", &file], &env));
    assert!(edited.contains("trigger t0: update (on_condition_error)"), "{edited}");
    let reg = registry(&nats).await;
    assert!(reg.triggers().await.unwrap()["t0"].on_condition_error.is_skip(), "the default again");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_plans_writes_once_updates_on_edit_and_prunes_what_the_file_does_not_declare() {
    let nats = TestNats::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "response.yaml", &response("riposte/test", 4));
    let env = [("TEST_SLACK_URL", SECRET)];

    let plan = ok(&riposte(&nats, &["apply", "-f", &file, "--dry-run"], &env));
    assert!(plan.contains("function falco-slack: create [playbook slack, settings SLACK_WEBHOOK_URL]"), "{plan}");
    assert!(plan.contains("trigger falco-taint-trigger-0: create [falco.critical.* -> falco-taint]"), "{plan}");
    assert!(plan.contains("4 to create, 0 to update, 0 to delete, 0 unchanged (dry run"), "{plan}");
    assert!(registry(&nats).await.functions().await.unwrap().is_empty(), "a dry run writes nothing");

    let applied = ok(&riposte(&nats, &["apply", "-f", &file], &env));
    assert!(applied.contains("applied: 4 created"), "{applied}");
    let reg = registry(&nats).await;
    let stored = reg.function("falco-slack").await.unwrap().unwrap();
    assert!(stored.settings.get("SLACK_WEBHOOK_URL").unwrap().starts_with("sealed:v3:"), "stored sealed");
    let slack = reg.open_settings(stored).unwrap();
    assert_eq!(slack.settings.get("SLACK_WEBHOOK_URL"), Some(SECRET));
    let taint = reg.function("falco-taint").await.unwrap().unwrap();
    assert_eq!(taint.settings.get("TAINT_KEY"), Some("riposte/test"));
    assert_eq!(taint.settings.get("TAINT_EFFECT"), Some("NoSchedule"), "defaults applied");
    assert_eq!(taint.manifest.limits.concurrency, 4);
    assert_eq!(taint.manifest.limits.timeout_ms, 15000, "other limits are the playbook's");
    assert_eq!(reg.triggers().await.unwrap().len(), 2);

    let before = registry_seq(&nats).await;
    let again = ok(&riposte(&nats, &["apply", "-f", &file], &env));
    assert!(again.contains("no change: 0 to create, 0 to update, 0 to delete, 4 unchanged"), "{again}");
    assert_eq!(registry_seq(&nats).await, before, "a second apply writes nothing");

    // An edit: a new secret value and a new taint key; the plan names settings, never values.
    write(dir.path(), "response.yaml", &response("riposte/edited", 4));
    let new_secret = format!("{SECRET}-rotated");
    let edited = ok(&riposte(&nats, &["apply", "-f", &file], &[("TEST_SLACK_URL", &new_secret)]));
    assert!(edited.contains("function falco-slack: update (settings SLACK_WEBHOOK_URL)"), "{edited}");
    assert!(edited.contains("function falco-taint: update (settings TAINT_KEY)"), "{edited}");
    assert!(!edited.contains(SECRET) && !edited.contains("riposte/edited"), "no values in the plan: {edited}");
    let reg = registry(&nats).await;
    assert_eq!(
        reg.open_settings(reg.function("falco-slack").await.unwrap().unwrap())
            .unwrap()
            .settings
            .get("SLACK_WEBHOOK_URL"),
        Some(new_secret.as_str())
    );

    // Prune: a trigger made by hand goes, with its consumer; without --prune it stays.
    ok(&riposte(
        &nats,
        &["trigger", "create", "by-hand", "--function", "falco-taint", "--topic", "falco.warning.*"],
        &[],
    ));
    let kept = ok(&riposte(&nats, &["apply", "-f", &file], &[("TEST_SLACK_URL", &new_secret)]));
    assert!(!kept.contains("by-hand"), "{kept}");
    let pruned = ok(&riposte(&nats, &["apply", "-f", &file, "--prune"], &[("TEST_SLACK_URL", &new_secret)]));
    assert!(pruned.contains("trigger by-hand: delete [falco.warning.* -> falco-taint]"), "{pruned}");
    let reg = registry(&nats).await;
    assert!(reg.trigger("by-hand").await.unwrap().is_none());
    let consumers = reg.jetstream().get_stream("FALCO").await.unwrap().info().await.unwrap().state.consumer_count;
    assert_eq!(consumers, 2, "the pruned trigger's consumer is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_prints_references_for_secrets_and_applies_back_unchanged() {
    let nats = TestNats::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "response.yaml", &response("riposte/test", 4));
    ok(&riposte(&nats, &["apply", "-f", &file], &[("TEST_SLACK_URL", SECRET)]));

    let exported = ok(&riposte(&nats, &["export"], &[]));
    assert!(!exported.contains(SECRET), "secret values are never exported:\n{exported}");
    assert!(exported.contains("env: FALCO_SLACK_SLACK_WEBHOOK_URL"), "{exported}");
    assert!(exported.contains("TAINT_KEY: riposte/test"), "{exported}");
    assert!(!exported.contains("TAINT_EFFECT"), "defaults are left out: {exported}");
    assert!(exported.contains("concurrency: 4"), "{exported}");
    let back = write(dir.path(), "exported.yaml", &exported);
    let before = registry_seq(&nats).await;
    let out = ok(&riposte(&nats, &["apply", "-f", &back], &[("FALCO_SLACK_SLACK_WEBHOOK_URL", SECRET)]));
    assert!(out.contains("no change"), "{out}");
    assert_eq!(registry_seq(&nats).await, before);

    // TOML says the same.
    let toml = "[functions.falco-taint]\nplaybook = \"taint\"\nsettings = { TAINT_KEY = \"riposte/test\" }\nlimits = { concurrency = 4 }\n";
    let t = write(dir.path(), "taint.toml", toml);
    let out = ok(&riposte(&nats, &["apply", "-f", &t], &[]));
    assert!(out.contains("function falco-taint: unchanged"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_file_is_refused_with_its_line_and_nothing_is_written() {
    let nats = TestNats::start();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "functions:\n  falco-taint:\n    playbook: taint\n    setings: {}\n",
            "4",
            &["unknown field `setings`"],
        ),
        (
            "functions:\n  falco-taint:\n    playbook: taint\n  falco-slack:\n    playbook: slack\n    settings:\n      SLACK_WEBHOOK_URL: https://hooks.slack.com/x\n",
            "4",
            &["SLACK_WEBHOOK_URL is a secret", "{env: NAME}"],
        ),
        (
            "functions:\n  falco-slack:\n    playbook: slack\n    settings:\n      SLACK_WEBHOOK_URL: {env: UNSET_IN_THIS_TEST}\n",
            "2",
            &["UNSET_IN_THIS_TEST", "export it"],
        ),
        (
            "functions:\n  falco-taint:\n    playbook: taint\ntriggers:\n  t1: {function: falco-nope, topic: \"falco.error.*\"}\n",
            "5",
            &["function falco-nope is not declared"],
        ),
        (
            "functions:\n  falco-taint:\n    playbook: taint\n    limits: {concurency: 2}\n",
            "2",
            &["concurency"],
        ),
        (
            "functions:\n  falco-taint:\n    playbook: taint\ntriggers:\n  t1: {function: falco-taint, topic: \"falco.error.*\", when: \"alert.rul == 'x'\"}\n",
            "5",
            &["trigger t1", "line 1, column 6", "no field `rul`"],
        ),
        (
            "functions:\n  falco-taint:\n    playbook: taint\n    dedup: {window_ms: 100}\n",
            "2",
            &["--dedup-window", "1s to 7d"],
        ),
    ];
    for (i, (text, line, says)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.yaml"), text);
        let e = err(&riposte(&nats, &["apply", "-f", &file], &[]));
        assert!(e.contains(&format!("bad{i}.yaml:{line}: ")), "case {i}: the line: {e}");
        for s in *says {
            assert!(e.contains(s), "case {i}: {s:?} in {e}");
        }
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(!e.contains("hooks.slack.com/x"), "no secret in errors: {e}");
    }
    assert!(registry(&nats).await.functions().await.unwrap().is_empty(), "nothing half-applied");
}
