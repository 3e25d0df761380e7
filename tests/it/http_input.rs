//! The HTTP alert input through the `riposte run --http-addr` binary, with a real HTTP client (keep-alive) and a
//! real nats-server: falcosidekick's webhook and talon bodies and Falco's http_output body (no uuid) reach a
//! deployed function; a resend runs once; no token or a wrong one is refused and publishes nothing; a body
//! that is not an alert, an oversized one, a wrong method or type get their own codes; NATS down → 503 and the
//! sender's retry after it came back is taken; slow clients do not stop alerts that come through NATS.

use crate::support;

use riposte::model::function::ResponsePolicy;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::fleet::{self, results};
use support::nats::TestNats;
use support::process::Run;
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "tok-3f9a-http-input";

/// A sidekick-shaped body (webhook and talon outputs send the same one).
fn sidekick(uuid: &str, rule: &str) -> String {
    fleet::alert(uuid, "Warning", rule, "something happened", serde_json::json!({"proc.name": "bash"}))
}

/// Falco's own http_output body (json_output: true): no uuid.
fn falco_body() -> String {
    serde_json::json!({
        "hostname": "node-1", "output": "12:00:00.000000000: Notice A shell was spawned", "priority": "Notice",
        "rule": "Terminal shell in container", "source": "syscall", "tags": ["shell"],
        "time": "2026-12-04T12:00:00.000000000Z", "output_fields": {"proc.name": "bash"}
    })
    .to_string()
}

/// `riposte run` with the HTTP input on a free port and `extra` options.
fn start(nats: &TestNats, extra: &[&str]) -> Run {
    Run::start(nats, "http-in", &[&["--http-addr", "127.0.0.1:0"], extra].concat())
}

fn token_file(dir: &std::path::Path) -> String {
    let path = dir.join("tokens");
    std::fs::write(&path, format!("# rotated monthly\nold-token-1\n{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn alerts_stored(nats: &TestNats) -> u64 {
    let js = async_nats::jetstream::new(nats.client().await);
    js.get_stream("FALCO").await.unwrap().info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_falco_bodies_posted_with_a_token_reach_the_function_once_each_and_bad_requests_get_their_codes() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "http-f", &guests::ok(), "", ResponsePolicy::default()).await;
    fleet::trigger(&reg, "http-f-t", &f, "falco.>", None).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let run = start(&nats, &["--http-token-file", &tokens, "--metrics-addr", "127.0.0.1:0"]);
    let addr = run.addr("HTTP alert input on http://").await;
    let metrics = run.addr("metrics and probes on http://").await;
    let url = format!("http://{addr}/");
    let http = reqwest::Client::new(); // one pool: keep-alive, as falcosidekick and Falco do
    let post = |body: String| http.post(&url).header("Content-Type", "application/json").body(body);

    // No token, a wrong one: 401, saying what is missing, never echoing a token; nothing published.
    let r = post(sidekick("s-0", "Denied")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(r.text().await.unwrap().contains("no bearer token: send the header Authorization: Bearer"));
    let r = post(sidekick("s-0", "Denied")).bearer_auth("guessed-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let why = r.text().await.unwrap();
    assert!(why.contains("not one of --http-token-file's") && !why.contains("guessed"), "{why}");
    assert_eq!(alerts_stored(&nats).await, 0, "a refused request publishes nothing");

    // falcosidekick's webhook output (custom header), its talon output's shape, Falco's http_output (no uuid),
    // then Falco resending the same alert: each answered 200 once stored.
    let r = post(sidekick("s-1", "Webhook rule")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "ok: stored\n".to_owned()));
    let talon = http
        .post(format!("http://{addr}/falco"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", "Falcosidekick")
        .bearer_auth("old-token-1")
        .body(sidekick("t-1", "Talon rule"))
        .send()
        .await
        .unwrap();
    assert_eq!(talon.status(), 200, "the /falco alias and a rotated-out token still listed");
    for answer in ["ok: stored\n", "ok: already stored (a resend)\n"] {
        let r = post(falco_body()).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, answer.to_owned()));
    }

    // Bad requests: each its own code and one line; none stored.
    let r = post(r#"{"rule":"r","time":"2026-12-04T12:00:00Z","output_fields":{}}"#.into()).bearer_auth(TOKEN).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("alert has no `priority`"));
    // Over the bound: refused from its Content-Length, before the body is read (a client still writing it sees
    // the connection close, so the answer is read here from a raw connection).
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    let length = riposte::runner::ingest::MAX_BODY_BYTES + 1;
    let head =
        format!("POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n");
    raw.write_all(head.as_bytes()).unwrap();
    let mut status = String::new();
    BufReader::new(raw).read_line(&mut status).unwrap();
    assert_eq!(status.trim(), "HTTP/1.1 413 Payload Too Large");
    let r = http.post(&url).header("Content-Type", "text/plain").bearer_auth(TOKEN).body(falco_body()).send();
    assert_eq!(r.await.unwrap().status(), 415);
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "POST"));
    assert_eq!(http.get(format!("http://{addr}/readyz")).send().await.unwrap().status(), 200);

    // Three alerts, three executions: the resend ran once.
    wait_until("three executions", LONG, || async { results(&reg, "http-f").await.len() >= 3 }).await;
    let mut uuids: Vec<String> = results(&reg, "http-f").await.into_iter().map(|r| r.alert_uuid).collect();
    uuids.sort();
    assert_eq!(uuids.len(), 3, "{uuids:?}");
    assert!(uuids.contains(&"s-1".to_owned()) && uuids.contains(&"t-1".to_owned()), "{uuids:?}");
    assert_eq!(alerts_stored(&nats).await, 3);
    let m = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    for line in [
        "riposte_http_input_alerts_total{outcome=\"accepted\"} 3",
        "riposte_http_input_alerts_total{outcome=\"deduplicated\"} 1",
        "riposte_http_input_requests_total{code=\"401\"} 2",
        "riposte_http_input_requests_total{code=\"413\"} 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    assert!(!m.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_down_answers_503_and_the_senders_retry_after_it_is_back_runs_the_function() {
    let mut nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "http-down", &guests::ok(), "", ResponsePolicy::default()).await;
    fleet::trigger(&reg, "http-down-t", &f, "falco.>", None).await;
    let run = start(&nats, &["--http-allow-anonymous"]);
    let addr = run.addr("HTTP alert input on http://").await;
    assert!(run.stderr.lock().unwrap().contains("takes alerts from anyone who reaches"), "anonymous is warned about");
    let http = reqwest::Client::new();
    let send = || http.post(format!("http://{addr}/")).body(sidekick("down-1", "Retried rule")).send();

    nats.stop();
    let r = send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()), (503, "5"));
    assert_eq!(http.get(format!("http://{addr}/readyz")).send().await.unwrap().status(), 503);
    nats.start_again();
    wait_until("the retry accepted", LONG, || async { send().await.is_ok_and(|r| r.status() == 200) }).await;
    wait_until("the function ran", LONG, || async {
        results(&reg, "http-down").await.iter().any(|r| r.alert_uuid == "down-1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_authentication_the_input_does_not_start_and_says_what_to_give() {
    let nats = TestNats::start();
    let out = support::riposte_bin(&support::shared_state())
        .args(["run", "--nats", &nats.url(), "--name", "http-noauth", "--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--http-addr needs authentication: give --http-token-file FILE"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("tokens");
    std::fs::write(&open, "t\n").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = support::riposte_bin(&support::shared_state())
        .args(["run", "--nats", &nats.url(), "--name", "http-noauth", "--http-addr", "127.0.0.1:0"])
        .args(["--http-token-file", &open.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("can be read by other users: chmod 600 it"), "{stderr}");
    // `riposte doctor` checks the same options the same way, and fails on them.
    let doctor = || {
        let out = support::riposte_bin(&support::shared_state())
            .args(["doctor", "--nats", &nats.url(), "--http-addr", "127.0.0.1:0"])
            .args(["--http-token-file", &open.display().to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout.lines().find(|l| l.contains("http input")).unwrap_or_else(|| panic!("{stdout}")).to_owned();
        (out.status.success(), line)
    };
    let (ok, line) = doctor();
    assert!(!ok && line.contains("chmod 600 it"), "{line}");
    chmod(&open, 0o600);
    let (_, line) = doctor();
    assert!(line.contains("authentication: bearer tokens"), "{line}");
    let js = async_nats::jetstream::new(nats.client().await);
    let kv = js.get_key_value("riposte-runners").await;
    let alive = match kv {
        Ok(kv) => futures::StreamExt::count(kv.keys().await.unwrap()).await,
        Err(_) => 0,
    };
    assert_eq!(alive, 0, "a refused configuration starts no runner");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_slow_http_clients_do_not_stop_alerts_arriving_through_nats() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "http-slow", &guests::ok(), "", ResponsePolicy::default()).await;
    fleet::trigger(&reg, "http-slow-t", &f, "falco.>", None).await;
    let dir = tempfile::tempdir().unwrap();
    let run = start(&nats, &["--http-token-file", &token_file(dir.path())]);
    let addr = run.addr("HTTP alert input on http://").await;
    // Each sends half a header and then nothing.
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
        slow.push(s);
    }
    let client = nats.client().await;
    fleet::publish(&client, &[("falco.warning.x".into(), sidekick("via-nats", "X"))]).await;
    wait_until("the NATS alert ran", LONG, || async {
        results(&reg, "http-slow").await.iter().any(|r| r.alert_uuid == "via-nats")
    })
    .await;
    // And the input still answers a well-behaved client.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/"))
        .bearer_auth(TOKEN)
        .body(sidekick("via-http", "Y"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(slow);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_client_certificates_only_a_certificate_of_the_ca_posts_and_others_are_refused_at_tls() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "http-tls", &guests::ok(), "", ResponsePolicy::default()).await;
    fleet::trigger(&reg, "http-tls-t", &f, "falco.>", None).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = support::secure::Pki::new(&dir.path().join("pki"));
    let other = support::secure::Pki::new(&dir.path().join("other"));
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let run = start(&nats, &["--http-tls-cert", &cert, "--http-tls-key", &key, "--http-client-ca", &pki.ca()]);
    let addr = run.addr("HTTP alert input on https://").await;
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let client = |identity: Option<&support::secure::Pki>| {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
        let mut b = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca);
        if let Some(p) = identity {
            let mut pem = std::fs::read(p.cert("pkcs8")).unwrap();
            pem.extend(std::fs::read(p.key("pkcs8")).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    let url = format!("https://localhost:{port}/");
    let post = |c: reqwest::Client, uuid: &str| {
        let (body, url) = (sidekick(uuid, "Tls rule"), url.clone());
        async move { c.post(url).header("Content-Type", "application/json").body(body).send().await }
    };
    assert!(post(client(None), "no-cert").await.is_err(), "no client certificate: refused in the handshake");
    assert!(post(client(Some(&other)), "other-ca").await.is_err(), "another CA's certificate: refused");
    let r = post(client(Some(&pki)), "tls-1").await.unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the function ran", LONG, || async {
        results(&reg, "http-tls").await.iter().any(|r| r.alert_uuid == "tls-1")
    })
    .await;
    assert_eq!(alerts_stored(&nats).await, 1, "only the certified client's alert was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn riposte_ingest_alone_forwards_posts_to_the_runners_on_the_same_nats() {
    let nats = TestNats::start();
    let reg = fleet::registry(&nats).await;
    let f = fleet::deploy(&reg, "ingest-f", &guests::ok(), "", ResponsePolicy::default()).await;
    fleet::trigger(&reg, "ingest-f-t", &f, "falco.>", None).await;
    // Without --http-addr: refused, saying what to give.
    let out = support::riposte_bin(&support::shared_state()).args(["ingest", "--nats", &nats.url()]).output().unwrap();
    let (ok, _, err) = support::outcome(out);
    assert!(!ok && err.contains("riposte ingest needs --http-addr"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let mut command = support::riposte_bin(&support::shared_state());
    command.args(["ingest", "--nats", &nats.url(), "--http-addr", "127.0.0.1:0", "--http-token-file", &tokens]);
    let ingest = Run::spawn(command);
    let addr = ingest.addr("HTTP alert input on http://").await;
    let runner = fleet::runner(&nats, "elsewhere", None).await;
    let http = reqwest::Client::new();
    let post = |token: &str| {
        http.post(format!("http://{addr}/"))
            .header("Content-Type", "application/json")
            .bearer_auth(token)
            .body(sidekick("ing-1", "Forwarded rule"))
            .send()
    };
    assert_eq!(post("guessed").await.unwrap().status(), 401);
    assert_eq!(post(TOKEN).await.unwrap().status(), 200);
    wait_until("the runner elsewhere reacted", LONG, || async { !results(&reg, "ingest-f").await.is_empty() }).await;
    let records = results(&reg, "ingest-f").await;
    assert_eq!((records.len(), records[0].alert_uuid.as_str()), (1, "ing-1"));
    runner.stop().await;
}
