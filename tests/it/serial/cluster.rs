//! riposte on a real 3-node nats-server cluster (three processes on 127.0.0.1, routed, JetStream on each):
//! every stream and bucket at R3, and no acknowledged alert lost when the node leading the alert stream is
//! killed with SIGKILL while alerts are being published; the runner connected to that node carries on
//! through the others.

use crate::support;

use async_nats::jetstream;
use riposte::model::execution::Status;
use riposte::nats::registry::Registry;
use riposte::nats::results::{read_results, ResultRecord};
use riposte::nats::streams::StreamSettings;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::cluster::TestCluster;
use support::runner::{alert, deploy, runner};
use support::{guests, wait_until};

const LONG: Duration = Duration::from_secs(90);

async fn connect(urls: &[String]) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    async_nats::ConnectOptions::new().max_reconnects(None).connect(addrs).await.unwrap()
}

/// The registry at R3, once the cluster has elected its JetStream meta leader (creating streams fails until then).
async fn registry_r3(client: &async_nats::Client) -> Registry {
    let js = jetstream::new(client.clone());
    let settings = StreamSettings { replicas: Some(3), update: false };
    let deadline = Instant::now() + LONG;
    loop {
        let attempt = async {
            riposte::nats::streams::ensure_with(&js, None, &settings).await?;
            Registry::open_with(&js, &settings).await
        };
        match attempt.await {
            Ok(reg) => return reg,
            Err(e) if Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the streams were not created on the cluster: {e}"),
        }
    }
}

/// The registry opened through the surviving nodes. Each of its streams has its own leader, and a stream
/// led by the killed node answers lookups only once the others have elected a new one, which can take longer
/// than the alert stream's election that `wait_leader` waited for.
async fn registry_after_failover(js: &jetstream::Context) -> Registry {
    let deadline = Instant::now() + LONG;
    loop {
        match Registry::open(js).await {
            Ok(reg) => return reg,
            Err(e) if Instant::now() < deadline => {
                eprintln!("registry not readable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the registry never became readable after the leader was killed: {e}"),
        }
    }
}

async fn stream_info(js: &jetstream::Context, name: &str) -> jetstream::stream::Info {
    js.get_stream(name).await.unwrap().info().await.unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn at_r3_killing_the_alert_stream_leader_loses_no_acknowledged_alert() {
    let mut cluster = TestCluster::start(3);
    let all: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let admin = connect(&all).await;
    let reg = registry_r3(&admin).await;
    let js = reg.jetstream().clone();
    for stream in ["FALCO", "RIPOSTE_RESULTS", "RIPOSTE_DEADLETTER", "KV_riposte-registry", "OBJ_riposte-artifacts"] {
        assert_eq!(stream_info(&js, stream).await.config.num_replicas, 3, "stream {stream}");
    }
    let concurrency = 8;
    deploy(
        &reg,
        "survivor",
        &guests::ok(),
        &format!("timeout_ms = 2000\nconcurrency = {concurrency}"),
        "falco.error.*",
    )
    .await;

    let leader = wait_leader(&js).await;
    let leader_url = cluster.node(&leader).url();
    let others: Vec<String> = cluster.nodes.iter().filter(|n| n.name != leader).map(|n| n.url()).collect();
    // Runner a on the leader's node alone (it learns the other nodes from the server); b on another node.
    let a = runner(connect(std::slice::from_ref(&leader_url)).await, "on-leader", None).await;
    let b = runner(connect(&others[..1]).await, "elsewhere", None).await;
    let publisher = connect(&others).await;
    let pjs = jetstream::new(publisher.clone());

    let n = 1500;
    let kill_at = 400;
    // Published in pipelined batches (each alert's ack awaited together with the batch's); an alert whose
    // publish failed or got no ack is sent again until acknowledged. The leader dies between two batches.
    let batch = 50;
    let mut acked = Vec::new();
    let mut retries = 0;
    for start in (0..n).step_by(batch) {
        if start == kill_at {
            cluster.node(&leader).kill();
        }
        let mut todo: Vec<String> = (start..(start + batch).min(n)).map(|i| format!("c-{i}")).collect();
        let deadline = Instant::now() + LONG;
        while !todo.is_empty() {
            let sends = todo.iter().map(|uuid| {
                let pjs = pjs.clone();
                async move {
                    let sent =
                        async { pjs.publish("falco.error.x", alert(uuid).into()).await?.await.map_err(Into::into) };
                    let r: Result<_, Box<dyn std::error::Error + Send + Sync>> =
                        match tokio::time::timeout(Duration::from_secs(10), sent).await {
                            Ok(r) => r,
                            Err(_) => Err("no ack within 10 s".into()),
                        };
                    r.err().map(|e| e.to_string())
                }
            });
            let outcomes = futures::future::join_all(sends).await;
            let mut again = Vec::new();
            for (uuid, failed) in todo.into_iter().zip(outcomes) {
                match failed {
                    None => acked.push(uuid),
                    Some(e) => {
                        assert!(Instant::now() < deadline, "alert {uuid} never acknowledged: {e}");
                        again.push(uuid);
                    }
                }
            }
            if !again.is_empty() {
                retries += again.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            todo = again;
        }
    }
    let new_leader = wait_leader(&pjs).await;
    assert_ne!(new_leader, leader, "another node leads the alert stream");

    let results_reg = registry_after_failover(&pjs).await;
    let want: std::collections::HashSet<String> = acked.iter().cloned().collect();
    // Twice the usual deadline: a failover can take several ack waits to redeliver what went to the dead node.
    let until = Instant::now() + 2 * LONG;
    loop {
        let done = handled_now(&results_reg).await;
        if want.is_subset(&done) {
            break;
        }
        if Instant::now() > until {
            panic!("{}", not_handled(&results_reg, &want, &done).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut runs: HashMap<String, usize> = HashMap::new();
    for r in results_now(&results_reg).await.into_iter().filter(|r| r.status == Status::Ok) {
        *runs.entry(r.alert_uuid).or_default() += 1;
    }
    let duplicates: usize = runs.values().map(|c| c - 1).sum();
    // A record whose store failed while the results stream elected its leader is tried again (with Progress)
    // until stored: none is given up.
    assert_eq!(a.unstored_records() + b.unstored_records(), 0, "records given up during the failover");
    // At least once: an alert runs twice only when its ack was lost with the node (at most what was
    // delivered and unacked at once) or when its publish was retried after the server had stored it.
    let bound = 2 * concurrency * riposte::model::limits::FLEET_ACK_PENDING_FACTOR as usize + retries;
    eprintln!("{n} alerts acknowledged, {retries} publish retries, {duplicates} handled twice (bound {bound})");
    assert!(duplicates <= bound, "{duplicates} duplicates, more than at-least-once allows ({bound})");

    // The runner whose node died carries on: with the other runner stopped, new alerts still get handled.
    b.stop().await;
    let mut more = Vec::new();
    for i in 0..50 {
        let uuid = format!("after-{i}");
        pjs.publish("falco.error.x", alert(&uuid).into()).await.unwrap().await.unwrap();
        more.push(uuid);
    }
    let want: std::collections::HashSet<String> = more.iter().cloned().collect();
    wait_until("alerts handled by the runner whose node died", LONG, || async {
        want.is_subset(&handled_now(&results_reg).await)
    })
    .await;
    let by_a = results_now(&results_reg)
        .await
        .into_iter()
        .filter(|r| r.alert_uuid.starts_with("after-"))
        .all(|r| r.runner == "on-leader");
    assert!(by_a, "only the runner on the dead node was left");
    a.stop().await;
}

/// Why acknowledged alerts were not all handled: which ones, what results they have, the consumer's and the
/// alert stream's state (a flake seen about once in five runs on a loaded 2-core machine; see the issue notes).
async fn not_handled(
    reg: &Registry,
    want: &std::collections::HashSet<String>,
    done: &std::collections::HashSet<String>,
) -> String {
    let missing: Vec<&String> = want.difference(done).collect();
    let results: Vec<String> = results_now(reg)
        .await
        .into_iter()
        .filter(|r| missing.contains(&&r.alert_uuid))
        .map(|r| format!("{} attempt {} {:?}: {}", r.alert_uuid, r.attempt, r.status, r.message))
        .collect();
    let trigger = support::runner::trigger(reg, "survivor-t").await;
    let consumer = support::runner::consumer_info(reg, &trigger).await;
    let falco = stream_info(reg.jetstream(), "FALCO").await;
    format!(
        "{} of {} acknowledged alerts never handled, e.g. {:?}\ntheir results: {results:?}\nconsumer: pending {}, \
         ack pending {}, redelivered {}, delivered {:?}, ack floor {:?}\nalert stream: {:?}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(20)],
        consumer.num_pending,
        consumer.num_ack_pending,
        consumer.num_redelivered,
        consumer.delivered,
        consumer.ack_floor,
        falco.state
    )
}

/// Every result of the function, read again while the results stream is between leaders (a read sent to the
/// killed node's replica times out until the others elect a new leader).
async fn results_now(reg: &Registry) -> Vec<ResultRecord> {
    let deadline = Instant::now() + LONG;
    loop {
        match read_results(reg.jetstream(), Some("survivor"), None).await {
            Ok(records) => return records,
            Err(e) if Instant::now() < deadline => {
                eprintln!("results not readable yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the results stream stayed unreadable after the kill: {e}"),
        }
    }
}

/// Distinct uuids with an ok result.
async fn handled_now(reg: &Registry) -> std::collections::HashSet<String> {
    results_now(reg).await.into_iter().filter(|r| r.status == Status::Ok).map(|r| r.alert_uuid).collect()
}

/// The server leading the alert stream, once there is one.
async fn wait_leader(js: &jetstream::Context) -> String {
    let leader = std::sync::Mutex::new(None);
    wait_until("a leader for the alert stream", LONG, || async {
        let info = match js.get_stream("FALCO").await {
            Ok(mut s) => s.info().await.ok().cloned(),
            Err(_) => None,
        };
        let found = info.and_then(|i| i.cluster).and_then(|c| c.leader);
        let some = found.is_some();
        *leader.lock().unwrap() = found;
        some
    })
    .await;
    leader.into_inner().unwrap().unwrap()
}
