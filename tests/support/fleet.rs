//! Runners driven through the library on a [`TestNats`](super::nats::TestNats): the registry, functions from
//! test components, triggers (with conditions), in-process runners, core-NATS publishing, reading results.

use super::nats::TestNats;
use riposte::execute::capability::Backends;
use riposte::model::function::{Function, ResponsePolicy, Settings};
use riposte::model::manifest::Manifest;
use riposte::model::trigger::Trigger;
use riposte::nats::registry::Registry;
use riposte::nats::results::{read_results, ResultRecord};
use riposte::runner::Runner;

/// The registry on `nats`, streams ensured.
pub async fn registry(nats: &TestNats) -> Registry {
    let js = async_nats::jetstream::new(nats.client().await);
    riposte::nats::streams::ensure(&js, None).await.unwrap();
    Registry::open(&js).await.unwrap().with_keys(Some(super::settings_keys()))
}

/// Deploys a component as function `name` (manifest `[limits]` lines in `limits`) with `policy`.
pub async fn deploy(reg: &Registry, name: &str, bytes: &[u8], limits: &str, policy: ResponsePolicy) -> Function {
    let manifest = Manifest::parse(&format!("name = \"{name}\"\nkind = \"wasm\"\n[limits]\n{limits}\n")).unwrap();
    deploy_with(reg, name, bytes, manifest, Settings::default(), policy).await
}

/// Deploys a component with its manifest and settings, through the library's deploy rules.
pub async fn deploy_with(
    reg: &Registry,
    name: &str,
    bytes: &[u8],
    manifest: Manifest,
    settings: Settings,
    policy: ResponsePolicy,
) -> Function {
    let artifact = riposte::model::digest::digest(bytes);
    let function = Function { name: name.into(), manifest, artifact, settings, runs_on: None, policy };
    let prepared =
        riposte::ops::deploy::PreparedFunction { function: function.clone(), bytes: Some(bytes.to_vec()), image: None };
    riposte::ops::deploy::write_function(reg, &prepared).await.unwrap();
    function
}

/// Creates trigger `name` of `f` on `topic` with condition `when`, as `trigger create` does.
pub async fn trigger(reg: &Registry, name: &str, f: &Function, topic: &str, when: Option<&str>) -> Trigger {
    let t = Trigger {
        name: name.into(),
        function: f.name.clone(),
        topic: topic.into(),
        when: when.map(Into::into),
        on_condition_error: Default::default(),
    };
    riposte::ops::deploy::create_trigger(reg, &t, false).await.unwrap();
    t
}

/// A runner in this process with these backends (recording ones when None).
pub async fn runner(nats: &TestNats, name: &str, backends: Option<Backends>) -> Runner {
    let backends = backends.unwrap_or_else(super::runner::recorded);
    Runner::start(nats.client().await, super::runner::test_config(name), backends).await.unwrap()
}

/// A falcosidekick alert as JSON.
pub fn alert(uuid: &str, priority: &str, rule: &str, output: &str, fields: serde_json::Value) -> String {
    serde_json::json!({
        "uuid": uuid, "output": format!("12:00:00.000000000: {priority} {output}"), "priority": priority,
        "rule": rule, "time": "2024-05-17T15:31:56.746609046Z", "output_fields": fields,
        "source": "syscall", "hostname": "web-1", "tags": ["shell"]
    })
    .to_string()
}

/// Publishes alerts with core NATS (as falcosidekick does) and returns once the server has read them all.
pub async fn publish(client: &async_nats::Client, alerts: &[(String, String)]) {
    for (subject, body) in alerts {
        client.publish(subject.clone(), body.clone().into()).await.unwrap();
    }
    client.flush().await.unwrap();
    // A request on the same connection is answered after the server read every publish before it.
    client.request("$JS.API.INFO", bytes::Bytes::new()).await.unwrap();
}

/// Every result of a function, oldest first.
pub async fn results(reg: &Registry, function: &str) -> Vec<ResultRecord> {
    read_results(reg.jetstream(), Some(function), None).await.unwrap()
}
