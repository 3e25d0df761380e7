//! A runner's heartbeat: puts what it is and what it serves in the runners bucket ([`crate::nats::fleet`]) when it
//! starts and every `Timings::heartbeat_every`, and deletes its entry when the runner stops gracefully (a runner that
//! dies leaves its last heartbeat, which `riposte runner list` then shows as gone). The container engine is
//! probed at start and about once a minute, not at every beat.

use crate::nats::fleet::{self, Access, Heartbeat, Served};
use crate::runner::shutdown::Shutdown;
use async_nats::jetstream::kv;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// What the heartbeat reads from the running runner.
pub(crate) struct Sources {
    pub store: kv::Store,
    pub name: String,
    pub started_at: String,
    /// Running triggers: trigger → (function, pinned to this runner).
    pub active: Arc<Mutex<BTreeMap<String, (String, bool)>>>,
    /// What the triggers counted (the same ledger as /metrics).
    pub ledger: Arc<super::ledger::Ledger>,
    /// Functions refused (settings that do not open here), and why.
    pub refused: Arc<Mutex<BTreeMap<String, String>>>,
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: usize,
    pub container_host: Option<String>,
    pub kubernetes: Access,
}

/// Beats until `stop` turns true, then deletes the runner's entry.
pub(crate) async fn run(sources: Sources, mut shutdown: Shutdown) {
    let key = fleet::key(&sources.name);
    let mut containers = probe_containers(sources.container_host.as_deref()).await;
    let mut beats = 0u32;
    loop {
        let value = serde_json::to_vec(&heartbeat(&sources, &containers)).expect("a heartbeat serializes");
        if let Err(e) = sources.store.put(&key, value.into()).await {
            tracing::warn!(error = %e, "heartbeat not stored; `riposte runner list` may show this runner as gone");
        }
        if shutdown.sleep_unless_stopping(crate::model::timings::get().heartbeat_every).await {
            break;
        }
        beats += 1;
        if beats.is_multiple_of(12) {
            containers = probe_containers(sources.container_host.as_deref()).await;
        }
    }
    if let Err(e) = sources.store.delete(key).await {
        tracing::warn!(error = %e, "heartbeat not removed; the runner will show as gone");
    }
}

fn heartbeat(s: &Sources, containers: &Access) -> Heartbeat {
    let mut functions: BTreeMap<String, bool> = BTreeMap::new();
    for (function, pinned) in s.active.lock().unwrap().values() {
        functions.insert(function.clone(), *pinned);
    }
    Heartbeat {
        name: s.name.clone(),
        host: fleet::host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: s.started_at.clone(),
        functions: functions.into_iter().map(|(name, pinned)| Served { name, pinned }).collect(),
        in_flight: s.max_in_flight.saturating_sub(s.in_flight.available_permits()) as u64,
        counts: s.ledger.total(),
        refused: s.refused.lock().unwrap().clone(),
        container_engine: containers.clone(),
        kubernetes: s.kubernetes.clone(),
        triggers: s.ledger.per_trigger(),
    }
}

async fn probe_containers(host: Option<&str>) -> Access {
    match crate::execute::container::ContainerEngine::connect(host).await {
        Ok(engine) => Access { available: true, detail: engine.host().to_owned() },
        Err(e) => Access { available: false, detail: e.to_string() },
    }
}
