//! `riposte doctor`: checks a machine and its NATS before it goes live, each check ok, warning or failure with
//! what to do. It changes nothing that lasts: the clock probe is a key put and purged in the runners bucket,
//! the container probe is created, started (with an entrypoint that does not exist) and removed, and the
//! permission probes below are refused by the server. It is safe against a production NATS.
//!
//! Checks, in order: NATS reachable with the credentials given; JetStream enabled; riposte's streams and
//! buckets present (and replicated when the server is clustered); this clock against the server's; the NATS
//! permissions of each `--role`; the container engine, starting a probe container (when a container function
//! is deployed or `--container-host` is given); Kubernetes configured and allowing, per
//! SelfSubjectAccessReview, every verb the deployed functions need; the compile cache writable; the proxy and
//! CA bundle usable.
//! A failure of NATS or JetStream skips the checks that need them.
//!
//! NATS permissions are probed, not read (nats-server 2.9 has no API that tells a client its permissions): each
//! subject a role publishes on gets one request built so that it changes nothing (a JetStream API call with
//! a body the server refuses as invalid JSON, a name that does not exist, or a stream publish whose
//! `Nats-Expected-Stream` header no stream has). A denied publish is dropped by the server, which tells the
//! client so (`-ERR 'Permissions Violation for Publish to "SUBJECT"'`): the probes wait up to
//! [`PROBE_TIMEOUT`] for their answers (some, such as a pull from a consumer that does not exist, get none
//! even when allowed), then the subjects the server named are the denied ones.

use crate::execute::capability::http::{HttpClient, HttpConfig};
use crate::model::function::Function;
use crate::model::state_dir::StateDir;
use crate::nats::connect::{redact_url, NatsConfig, NatsError};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Failure,
}

impl Level {
    /// "ok", "warning" or "failure".
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Failure => "failure",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: "nats", "jetstream", "stream FALCO", "clock", "container engine", ...
    pub name: String,
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check { name: name.into(), level: Level::Ok, detail: detail.into(), fix: None }
    }
    pub fn warning(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), level: Level::Warning, detail: detail.into(), fix: Some(fix.into()) }
    }
    pub fn failure(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), level: Level::Failure, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// What to check with: the same options a runner on this machine would be given.
#[derive(Debug, Clone)]
pub struct DoctorConfig {
    pub nats: NatsConfig,
    pub state: StateDir,
    /// `--container-host`: check the engine even when no container function is deployed.
    pub container_host: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
    pub proxy: Option<String>,
    /// Whose NATS permissions to probe (`--role`): a runner's by default.
    pub roles: Vec<Role>,
    /// The settings key a runner here would be given: it must open every deployed function's secret settings.
    pub settings_keys: Option<crate::secrets::seal::SettingsKeys>,
    /// The name a runner here runs with (`--name`): a runner's credential may publish only its own records and
    /// heartbeat, so its permissions are probed under this name.
    pub runner_name: String,
}

/// A set of NATS permissions riposte needs (README, least privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// What `riposte run` publishes on: reading the registry, pulling and acking alerts, storing results.
    Runner,
    /// What deploying publishes on: creating streams and consumers, writing the registry and artifacts.
    Deployer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Runner => "runner",
            Role::Deployer => "deployer",
        }
    }
}

/// Clock skew beyond this is a warning, beyond [`SKEW_FAILURE`] a failure.
pub const SKEW_WARNING: Duration = Duration::from_secs(2);
pub const SKEW_FAILURE: Duration = Duration::from_secs(60);
/// How long a NATS request of the doctor may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a permission probe waits for an answer before it counts as denied.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs every check.
pub async fn run(config: &DoctorConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let functions = nats_checks(config, &mut checks).await;
    if let Some(functions) = &functions {
        checks.push(settings_key(config.settings_keys.as_ref(), functions));
    }
    let functions = functions.unwrap_or_default();
    checks.push(container_engine(config, &functions).await);
    checks.push(kubernetes(config, &functions).await);
    checks.push(compile_cache(&config.state));
    checks.push(http(config));
    checks
}

/// Whether the settings key opens the secret settings of every deployed function (a runner given it runs them
/// all; one without it refuses them).
fn settings_key(keys: Option<&crate::secrets::seal::SettingsKeys>, functions: &BTreeMap<String, Function>) -> Check {
    const NAME: &str = "settings key";
    let sealed: Vec<&Function> = functions.values().filter(|f| crate::secrets::seal::needs_key(f)).collect();
    if sealed.is_empty() {
        return Check::ok(NAME, "no deployed function has secret settings");
    }
    let names = |fs: &[&Function]| fs.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
    let Some(keys) = keys else {
        return Check::failure(
            NAME,
            format!("none given, and {} function(s) have secret settings: {}", sealed.len(), names(&sealed)),
            "give the key file they were deployed with: --settings-key-file FILE (RIPOSTE_SETTINGS_KEY_FILE)",
        );
    };
    let mut refused = Vec::new();
    let mut first_error = None;
    for f in &sealed {
        if let Err(e) = crate::secrets::seal::open_settings(Some(keys), (*f).clone()) {
            refused.push(*f);
            first_error.get_or_insert(e.to_string());
        }
    }
    match first_error {
        None => Check::ok(
            NAME,
            format!("key {} opens the secret settings of {} function(s)", keys.sealing_key_id(), sealed.len()),
        ),
        Some(e) => Check::failure(
            NAME,
            format!("key {} does not open the settings of {} ({e})", keys.sealing_key_id(), names(&refused)),
            "give runners the key file those functions were deployed with, or deploy them again with this key",
        ),
    }
}

/// NATS, JetStream, streams, clock; the deployed functions when the registry can be read.
async fn nats_checks(config: &DoctorConfig, checks: &mut Vec<Check>) -> Option<BTreeMap<String, Function>> {
    let (url, local) = match config.nats.resolve_url(&config.state) {
        Ok(u) => u,
        Err(e) => {
            checks.push(Check::failure(
                "nats",
                e.to_string(),
                "start `riposte run` (it starts a local nats-server) or pass --nats URL",
            ));
            return None;
        }
    };
    let (to, mut server_errors) = tokio::sync::mpsc::unbounded_channel();
    let nats = crate::nats::connect::NatsConfig { server_errors: Some(to), ..config.nats.clone() };
    let client = match nats.connect(&url, local.then_some(&config.state)).await {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::failure("nats", e.to_string(), connect_fix(&e)));
            return None;
        }
    };
    let info = client.server_info();
    let cluster = info.cluster.clone().filter(|c| !c.is_empty());
    checks.push(Check::ok(
        "nats",
        format!(
            "connected to {} (nats-server {}{})",
            redact_url(&url),
            info.version,
            cluster.as_deref().map(|c| format!(", cluster {c}")).unwrap_or_default()
        ),
    ));
    let js_fix = "enable JetStream: start nats-server with -js (or a `jetstream {}` block in its configuration), \
                  and for an account, `jetstream: enabled`";
    match tokio::time::timeout(REQUEST_TIMEOUT, client.request("$JS.API.INFO", bytes::Bytes::new())).await {
        Err(_) => {
            checks.push(Check::failure("jetstream", "no answer from the JetStream API within 5 s", js_fix));
            return None;
        }
        Ok(Err(e)) => {
            let detail = match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    "JetStream is not enabled on this server (no responders)".to_owned()
                }
                _ => format!("the JetStream API did not answer: {e}"),
            };
            checks.push(Check::failure("jetstream", detail, js_fix));
            return None;
        }
        Ok(Ok(reply)) => {
            let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
            if let Some(error) = v.get("error") {
                let why = error.get("description").and_then(|d| d.as_str()).unwrap_or("an error").to_owned();
                checks.push(Check::failure("jetstream", format!("the JetStream API answered: {why}"), js_fix));
                return None;
            }
            checks.push(Check::ok(
                "jetstream",
                format!("enabled ({} streams in this account)", v["streams"].as_u64().unwrap_or(0)),
            ));
        }
    }
    let js = async_nats::jetstream::new(client.clone());
    let streams = [
        crate::nats::streams::ALERT_STREAM.to_owned(),
        crate::nats::streams::RESULTS_STREAM.to_owned(),
        crate::nats::streams::DEADLETTER_STREAM.to_owned(),
        format!("KV_{}", crate::nats::registry::REGISTRY_BUCKET),
        format!("OBJ_{}", crate::nats::registry::ARTIFACT_BUCKET),
        format!("KV_{}", crate::nats::fleet::RUNNERS_BUCKET),
    ];
    for name in &streams {
        checks.push(stream(&js, name, cluster.is_some()).await);
    }
    checks.push(clock(&js, &config.runner_name).await);
    checks.push(conditions(&js).await);
    for role in &config.roles {
        checks.push(permissions(&client, *role, &config.runner_name, &mut server_errors).await);
    }
    match crate::nats::registry::Registry::existing(&js).await {
        Ok(Some(registry)) => registry.functions().await.ok(),
        _ => None,
    }
}

/// One publish a role makes, and how the probe makes it harmless.
struct Probe {
    subject: String,
    body: &'static [u8],
    /// Sent with a `Nats-Expected-Stream` no stream has: a stream that captures the subject refuses to store it.
    guarded: bool,
}

/// A probe name no real stream, consumer or key has.
const PROBE: &str = "riposte-doctor-probe";
/// A body every JetStream API call refuses before acting ("invalid JSON").
const NOT_JSON: &[u8] = b"riposte doctor: not JSON";

fn api(subject: String) -> Probe {
    Probe { subject, body: NOT_JSON, guarded: false }
}

fn stored(subject: String) -> Probe {
    Probe { subject, body: b"riposte doctor probe", guarded: true }
}

/// The subjects `role` publishes on (README's least-privilege layout), one harmless probe each.
fn probes(role: Role, runner: &str) -> Vec<Probe> {
    use crate::nats::fleet::RUNNERS_BUCKET as RUNNERS;
    use crate::nats::registry::{ARTIFACT_BUCKET as OBJ, REGISTRY_BUCKET as KV};
    use crate::nats::streams::{ALERT_STREAM as FALCO, RESULTS_STREAM as RESULTS};
    let common = [
        api("$JS.API.INFO".into()),
        api(format!("$JS.API.STREAM.INFO.{FALCO}")),
        api(format!("$JS.API.DIRECT.GET.KV_{KV}.$KV.{KV}.{PROBE}")),
        api(format!("$JS.API.STREAM.MSG.GET.KV_{KV}")),
        api(format!("$JS.API.DIRECT.GET.OBJ_{OBJ}.$O.{OBJ}.M.{PROBE}")),
        api(format!("$JS.API.STREAM.MSG.GET.OBJ_{OBJ}")),
        api(format!("$JS.API.CONSUMER.CREATE.KV_{KV}")),
        api(format!("$JS.API.CONSUMER.CREATE.OBJ_{OBJ}")),
        api(format!("$JS.API.CONSUMER.CREATE.{RESULTS}")),
        api(format!("$JS.FC.{FALCO}.{PROBE}")),
    ];
    let mut probes: Vec<Probe> = common.into_iter().collect();
    match role {
        Role::Runner => probes.extend([
            api(format!("$JS.API.CONSUMER.INFO.{FALCO}.{PROBE}")),
            api(format!("$JS.API.CONSUMER.MSG.NEXT.{FALCO}.{PROBE}")),
            api(format!("$JS.API.CONSUMER.MSG.NEXT.{RESULTS}.{PROBE}")),
            api(format!("$JS.ACK.{FALCO}.{PROBE}.1.1.1.0.0.0")),
            // Its own records and heartbeat only: under its name.
            stored(crate::nats::results::results_subject(PROBE, runner)),
            stored(crate::nats::results::deadletter_subject(PROBE, runner)),
            stored(format!("$KV.{RUNNERS}.{}", crate::nats::fleet::key(runner))),
            stored(format!("$KV.{RUNNERS}.{}", clock_key(runner))),
            stored(format!("riposte.dedup.{PROBE}.{PROBE}")),
        ]),
        Role::Deployer => probes.extend([
            api("$JS.API.STREAM.CREATE.RIPOSTE_DOCTOR_PROBE".into()),
            api("$JS.API.STREAM.UPDATE.RIPOSTE_DOCTOR_PROBE".into()),
            api("$JS.API.STREAM.DELETE.RIPOSTE_DOCTOR_PROBE".into()),
            api(format!("$JS.API.STREAM.PURGE.OBJ_{OBJ}")),
            api(format!("$JS.API.STREAM.PURGE.KV_{RUNNERS}")),
            stored(format!("$KV.{RUNNERS}.{PROBE}")),
            api(format!("$JS.API.CONSUMER.CREATE.{FALCO}")),
            api(format!("$JS.API.CONSUMER.DELETE.{FALCO}.{PROBE}")),
            stored(format!("$KV.{KV}.{PROBE}")),
            stored(format!("$O.{OBJ}.C.{PROBE}")),
        ]),
    }
    probes
}

/// Sends `probe` and waits for its answer, if any, at most [`PROBE_TIMEOUT`].
async fn send(client: &async_nats::Client, probe: &Probe) {
    let body = bytes::Bytes::from_static(probe.body);
    let request = async {
        if probe.guarded {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Expected-Stream", PROBE);
            client.request_with_headers(probe.subject.clone(), headers, body).await
        } else {
            client.request(probe.subject.clone(), body).await
        }
    };
    let _ = tokio::time::timeout(PROBE_TIMEOUT, request).await;
}

/// The subject of a server error `Permissions Violation for Publish to "SUBJECT"`.
fn denied_publish(error: &str) -> Option<&str> {
    let rest = error.strip_prefix("Permissions Violation for Publish to ")?;
    Some(rest.trim_matches(|c| c == '"' || c == '\''))
}

/// Probes every subject `role` publishes on, all at once; `server_errors`: the connection's `-ERR` messages.
async fn permissions(
    client: &async_nats::Client,
    role: Role,
    runner: &str,
    server_errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Check {
    let name = format!("permissions ({})", role.as_str());
    let probes = probes(role, runner);
    while server_errors.try_recv().is_ok() {}
    futures::future::join_all(probes.iter().map(|p| send(client, p))).await;
    // A denied probe waited PROBE_TIMEOUT for an answer that never comes: its violation, sent by the server as
    // soon as it read the publish, has arrived by now (the flush is a last round trip for good measure).
    let _ = client.flush().await;
    let mut violations = std::collections::HashSet::new();
    while let Ok(error) = server_errors.try_recv() {
        violations.extend(denied_publish(&error).map(str::to_owned));
    }
    let denied: Vec<&str> = probes.iter().map(|p| p.subject.as_str()).filter(|s| violations.contains(*s)).collect();
    if denied.is_empty() {
        return Check::ok(
            &name,
            format!("every subject a {} publishes on is allowed ({} probed)", role.as_str(), probes.len()),
        );
    }
    Check::failure(
        &name,
        format!("the server denies publishing on {} of {} subjects: {}", denied.len(), probes.len(), denied.join(", ")),
        match role {
            Role::Runner => format!(
                "grant this user the RUNNER_A permissions of README's least-privilege layout with runner-a replaced \
                 by {runner} (or give doctor the runner's name: --name); its server log names each denial: \
                 \"Permissions Violation\""
            ),
            Role::Deployer => "grant this user the DEPLOYER permissions of README's least-privilege layout (its \
                 server log names each denial: \"Permissions Violation\")"
                .to_owned(),
        },
    )
}

fn connect_fix(e: &NatsError) -> String {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("authorization") || text.contains("authentication") || text.contains("credentials") {
        "the server wants credentials: put user:password@ or a token in --nats, or pass --nats-creds FILE or \
         --nats-nkey FILE (the same as the runners)"
            .into()
    } else if text.contains("tls") || text.contains("certificate") {
        "check --nats-ca (the CA that signs the server's certificate) and --nats-cert/--nats-key".into()
    } else {
        "check the URL and that nats-server runs and is reachable from this machine (firewall, DNS)".into()
    }
}

async fn stream(js: &async_nats::jetstream::Context, name: &str, clustered: bool) -> Check {
    let check = format!("stream {name}");
    let mut s = match js.get_stream(name).await {
        Ok(s) => s,
        Err(e) if e.to_string().contains("not found") => {
            return Check::warning(
                &check,
                "missing",
                "`riposte run` creates it when it starts (any riposte command that connects does too)",
            )
        }
        Err(e) => {
            return Check::failure(
                &check,
                format!("cannot read it: {e}"),
                "give this user the JetStream API ($JS.API.>) in its permissions",
            )
        }
    };
    match s.info().await {
        Ok(info) => {
            let replicas = info.config.num_replicas;
            let mut detail = format!(
                "present, {} messages, {replicas} replica{}",
                info.state.messages,
                if replicas == 1 { "" } else { "s" }
            );
            let (bytes, max) = (info.state.bytes, info.config.max_bytes);
            if max > 0 {
                detail.push_str(&format!(", {bytes} of {max} bytes"));
            }
            let bounded = [
                crate::nats::streams::ALERT_STREAM,
                crate::nats::streams::RESULTS_STREAM,
                crate::nats::streams::DEADLETTER_STREAM,
            ];
            if bounded.contains(&name) && max <= 0 {
                Check::warning(
                    &check,
                    format!("{detail}, unbounded (no max_bytes): a flood of alerts can fill the server's store"),
                    format!(
                        "run any deployer command (`riposte function list`), which bounds it, or `nats stream edit {name} --max-bytes 1G`"
                    ),
                )
            } else if max > 0
                && bytes.saturating_mul(100) >= max as u64 * crate::model::limits::STREAM_NEAR_FULL_PERCENT
            {
                Check::warning(
                    &check,
                    format!("{detail}: nearly full, its oldest messages are being discarded"),
                    "find the flood (`riposte function top --since 10m`), or give it more room: `riposte run --alert-stream-max-bytes` (and the server's store)",
                )
            } else if clustered && replicas < 3 {
                Check::warning(
                    &check,
                    detail,
                    format!("a node loss can lose data: `nats stream edit {name} --replicas 3`"),
                )
            } else {
                Check::ok(&check, detail)
            }
        }
        Err(e) => Check::failure(
            &check,
            format!("cannot read it: {e}"),
            "give this user the JetStream API ($JS.API.>) in its permissions",
        ),
    }
}

/// Whether any runner's heartbeat counts alerts a trigger's condition could not be evaluated on: each of them
/// got a `condition-error` result instead of its reaction (or ran with `--on-condition-error run`).
async fn conditions(js: &async_nats::jetstream::Context) -> Check {
    let runners = match js.get_key_value(crate::nats::fleet::RUNNERS_BUCKET).await {
        Ok(store) => crate::nats::fleet::runners(&store).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut failing: BTreeMap<String, u64> = BTreeMap::new();
    for r in &runners {
        for (trigger, c) in r.heartbeat.triggers.iter().filter(|(_, c)| c.condition_errors > 0) {
            *failing.entry(trigger.clone()).or_default() += c.condition_errors;
        }
    }
    if failing.is_empty() {
        return Check::ok("conditions", "no runner counts an alert a condition could not be evaluated on");
    }
    let list: Vec<String> =
        failing.iter().map(|(t, n)| format!("{} ({n})", crate::secrets::truncate::printable(t))).collect();
    Check::warning(
        "conditions",
        format!("conditions could not be evaluated on alerts of trigger(s) {}", list.join(", ")),
        "read their condition-error results (`riposte function logs FUNCTION`) and fix the condition with \
         `riposte trigger create NAME … --when`, or choose --on-condition-error run",
    )
}

/// The server's time stamp of a probe put in the runners bucket against this machine's clock.
/// The key of the clock probe of the runner `runner` in the runners bucket: under its name, which its
/// credential may write (README), and never its heartbeat's key.
fn clock_key(runner: &str) -> String {
    format!("doctor.{runner}")
}

async fn clock(js: &async_nats::jetstream::Context, runner: &str) -> Check {
    let Ok(store) = js.get_key_value(crate::nats::fleet::RUNNERS_BUCKET).await else {
        return Check::warning(
            "clock",
            "not checked: the runners bucket is missing",
            "start `riposte run` once, then run doctor again",
        );
    };
    let key = clock_key(runner);
    let before = time::OffsetDateTime::now_utc();
    let put = store.put(&key, bytes::Bytes::from_static(b"clock probe")).await;
    let after = time::OffsetDateTime::now_utc();
    let entry = match put {
        Ok(_) => store.entry(&key).await,
        Err(e) => {
            return Check::warning(
                "clock",
                format!("not checked: cannot write the probe: {e}"),
                format!("allow this user to publish to $KV.riposte-runners.*.{runner} (README, least privilege)"),
            )
        }
    };
    let _ = store.purge(key).await;
    let server = match entry {
        Ok(Some(entry)) => entry.created,
        _ => return Check::warning("clock", "not checked: the probe could not be read back", "run doctor again"),
    };
    let slack: time::Duration = (after - before) / 2;
    let middle: time::OffsetDateTime = before + slack;
    let skew: time::Duration = (server - middle).abs();
    let off = (skew - slack).max(time::Duration::ZERO);
    let detail = format!(
        "this clock is {:.1} s {} the server's",
        skew.as_seconds_f64(),
        if server > middle { "behind" } else { "ahead of" }
    );
    let fix = "synchronise the clock (chrony, systemd-timesyncd): `runner list` ages and `function top --since` windows depend on it";
    if off > SKEW_FAILURE {
        Check::failure("clock", detail, fix)
    } else if off > SKEW_WARNING {
        Check::warning("clock", detail, fix)
    } else {
        Check::ok("clock", detail)
    }
}

async fn container_engine(config: &DoctorConfig, functions: &BTreeMap<String, Function>) -> Check {
    let name = "container engine";
    let needed: Vec<&Function> =
        functions.values().filter(|f| f.manifest.kind == crate::model::manifest::Kind::Container).collect();
    if needed.is_empty() && config.container_host.is_none() {
        return Check::ok(
            name,
            "not needed: no container function is deployed (give --container-host to check one anyway)",
        );
    }
    let engine = match crate::execute::container::ContainerEngine::connect(config.container_host.as_deref()).await {
        Ok(e) => e,
        Err(e) => {
            let fix = "start one with `podman system service --time=0 unix:///run/podman/podman.sock`, or point \
                       --container-host / DOCKER_HOST at Docker's socket";
            let found = match e {
                crate::execute::container::ContainerError::Unreachable { host, why } => {
                    format!("nothing answers at {host} ({why})")
                }
                other => other.to_string(),
            };
            let why = if needed.is_empty() { String::new() } else { format!("; needed by {}", names(&needed)) };
            return Check::failure(name, format!("{found}{why}"), fix);
        }
    };
    let mut missing = Vec::new();
    for f in &needed {
        let image = &f.artifact;
        if engine.docker().inspect_image(image).await.is_err() {
            missing.push(format!("{image} ({})", f.name));
        }
    }
    if missing.is_empty() {
        let Some(function) = needed.first() else {
            return Check::ok(name, format!("{} answers (no container function deployed to try)", engine.host()));
        };
        match start_probe(&engine, function).await {
            Ok(()) => Check::ok(
                name,
                format!(
                    "{} answers, holds every deployed container function's image, and starts a sandboxed \
                     container of {} (its entrypoint replaced by one that does not exist: nothing ran); {}",
                    engine.host(),
                    function.artifact,
                    if engine.enforces_deadlines() {
                        "the engine (Podman) kills a container at its deadline even with no runner left"
                    } else {
                        "a container outliving a killed runner is stopped by the next runner's sweep only"
                    }
                ),
            ),
            Err(why) => Check::failure(
                name,
                format!("{} answers but cannot start a container of {}: {why}", engine.host(), function.artifact),
                "run `podman run --rm IMAGE` (or docker) by hand to see the same error; rootless Podman without \
                 systemd needs a containers.conf with runtime = \"runc\" and cgroup_manager = \"cgroupfs\" \
                 (README, container actions)",
            ),
        }
    } else {
        Check::warning(
            name,
            format!("{} answers but lacks image {}", engine.host(), missing.join(", ")),
            "deploy the function from this machine (it builds the image) or pull the image here",
        )
    }
}

/// Creates and starts a container of `function`'s image with its sandbox (no settings, no alert) and an
/// entrypoint that does not exist: the engine got as far as the runtime's exec when the start fails with
/// "not found" (nothing ran). The container is removed whatever happens.
async fn start_probe(engine: &crate::execute::container::ContainerEngine, function: &Function) -> Result<(), String> {
    use bollard::query_parameters::RemoveContainerOptions;
    const ENTRYPOINT: &str = "/riposte-doctor-probe";
    let probe = Function { settings: Default::default(), ..(*function).clone() };
    let alert = crate::model::alert::Alert::parse(br#"{"output":"riposte doctor","priority":"Debug","rule":"doctor","time":"2024-01-01T00:00:00Z","output_fields":{}}"#)
        .map_err(|e| e.to_string())?;
    let mut body = crate::execute::container::sandbox::create_body(
        &probe,
        &function.artifact,
        &alert,
        &Default::default(),
        &Default::default(),
    );
    body.entrypoint = Some(vec![ENTRYPOINT.to_owned()]);
    body.cmd = None;
    body.env = Some(vec!["HOME=/tmp".to_owned()]);
    body.labels = Some(std::collections::HashMap::from([("riposte.doctor".to_owned(), "probe".to_owned())]));
    (body.attach_stdin, body.open_stdin, body.stdin_once) = (Some(false), Some(false), Some(false));
    let docker = engine.docker();
    // Created the way the runner creates containers (on Podman, through its own API, with a deadline).
    let name = format!("riposte-doctor-{}", uuid::Uuid::new_v4().simple());
    let id = tokio::time::timeout(REQUEST_TIMEOUT, engine.create_container(&name, body, REQUEST_TIMEOUT * 12))
        .await
        .map_err(|_| "no answer to creating it within 5 s".to_owned())?
        .map_err(|e| format!("creating it failed: {e}"))?;
    let started = tokio::time::timeout(REQUEST_TIMEOUT * 6, docker.start_container(&id, None)).await;
    let remove = RemoveContainerOptions { force: true, ..Default::default() };
    let _ = docker.remove_container(&id, Some(remove)).await;
    match started {
        Err(_) => Err("no answer to starting it within 30 s".to_owned()),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let why = crate::execute::container::short(&e);
            let lower = why.to_ascii_lowercase();
            if lower.contains("riposte-doctor-probe") && (lower.contains("not found") || lower.contains("no such file"))
            {
                Ok(())
            } else {
                Err(format!("starting it failed: {why}"))
            }
        }
    }
}

async fn kubernetes(config: &DoctorConfig, functions: &BTreeMap<String, Function>) -> Check {
    let name = "kubernetes";
    // What the deployed functions need, and who needs it.
    let mut needs: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for f in functions.values() {
        let grants = crate::execute::capability::Grants::from_capabilities(&f.manifest.capabilities);
        for verb in grants.kubernetes {
            for need in crate::execute::capability::kubernetes::rbac(verb) {
                needs.entry(*need).or_default().push(&f.name);
            }
        }
    }
    let needing: Vec<&str> = {
        let mut all: Vec<&str> = needs.values().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let config = match crate::execute::capability::kubernetes::ClusterConfig::detect(config.kubeconfig.as_deref()) {
        Err(e) => return Check::failure(name, e.to_string(), "fix the kubeconfig or drop --kubeconfig"),
        Ok(None) if needing.is_empty() => {
            return Check::ok(name, "no cluster configured; no deployed function needs one")
        }
        Ok(None) => {
            return Check::warning(
                name,
                format!(
                    "no cluster configured, but {} use Kubernetes verbs: they would be refused",
                    needing.join(", ")
                ),
                "pass --kubeconfig FILE, set KUBECONFIG, or run the runner in the cluster with a service account",
            )
        }
        Ok(Some(c)) => c,
    };
    if needs.is_empty() {
        return Check::ok(name, "a cluster is configured; no deployed function uses Kubernetes verbs");
    }
    let client = match config.client().await {
        Ok(c) => c,
        Err(e) => {
            return Check::failure(
                name,
                format!("the Kubernetes configuration cannot be used: {e}"),
                "fix the kubeconfig",
            )
        }
    };
    let reviews: kube::Api<SelfSubjectAccessReview> = kube::Api::all(client);
    let mut denied = Vec::new();
    for ((group, resource, verb), by) in &needs {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some((*group).to_owned()),
                    resource: Some((*resource).to_owned()),
                    verb: Some((*verb).to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, reviews.create(&kube::api::PostParams::default(), &review)).await {
            Ok(Ok(answer)) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(Ok(_)) => denied.push(format!("{verb} {resource} (for {})", by.join(", "))),
            Ok(Err(e)) => {
                return Check::failure(
                    name,
                    format!("the API server did not answer a SelfSubjectAccessReview: {e}"),
                    "check the kubeconfig's server and credentials",
                )
            }
            Err(_) => {
                return Check::failure(
                    name,
                    "the API server did not answer within 5 s",
                    "check the kubeconfig's server and the network",
                )
            }
        }
    }
    if denied.is_empty() {
        Check::ok(name, format!("every verb the deployed functions need is allowed ({} checked)", needs.len()))
    } else {
        Check::failure(
            name,
            format!("not allowed: {}", denied.join("; ")),
            "grant them to the runner's Kubernetes user or service account (a Role or ClusterRole and its binding; \
             the catalog's RBAC column lists each playbook's)",
        )
    }
}

fn compile_cache(state: &StateDir) -> Check {
    let name = "compile cache";
    let dir = state.compiled();
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let result = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&probe, b"probe"))
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Check::ok(name, format!("{} is writable", dir.display())),
        Err(e) => Check::failure(
            name,
            format!("cannot write in {}: {e}", dir.display()),
            "make it writable by this user, or pass --state-dir (RIPOSTE_STATE_DIR) elsewhere",
        ),
    }
}

fn http(config: &DoctorConfig) -> Check {
    let name = "proxy and CA bundle";
    let proxy = config.proxy.clone().or_else(|| {
        ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    });
    match HttpClient::new(&HttpConfig {
        ca_bundle: config.ca_bundle.clone(),
        timeout: None,
        proxy: config.proxy.clone(),
    }) {
        Ok(_) => Check::ok(
            name,
            format!(
                "{}; {}",
                proxy.map(|p| format!("proxy {}", redact_url(&p))).unwrap_or_else(|| "no proxy".into()),
                config
                    .ca_bundle
                    .as_ref()
                    .map(|c| format!("CA bundle {} loaded", c.display()))
                    .unwrap_or_else(|| "system roots".into())
            ),
        ),
        Err(e) => Check::failure(
            name,
            e.to_string(),
            "fix --proxy (a URL such as http://proxy:3128) or --ca-bundle (a PEM file)",
        ),
    }
}

fn names(functions: &[&Function]) -> String {
    functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}
