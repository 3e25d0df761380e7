//! The runner: connects the registry to dispatchers. It ensures the streams and the registry exist, watches
//! the registry, and keeps one [`dispatch::Dispatcher`] running per trigger whose function this runner takes
//! (every function, except those pinned with `runs-on` to another runner). A deploy, a new trigger or a
//! delete is applied as soon as the watch delivers it, without a restart. With metrics on, each dispatcher
//! counts its decisions, and [`Runner::probe`] samples the rest and says whether the runner is ready.

mod dispatch;
pub mod health;
mod heartbeat;
pub mod ingest;
mod ledger;
pub mod metrics;
mod policy;
mod settle;
pub mod shutdown;

pub use crate::nats::fleet::Counts;

use crate::execute::capability::Backends;
use crate::execute::handlers::{ContainerSetup, HandlerCache, StartError};
use crate::model::function::Function;
use crate::model::limits::STOP_STEP_TIMEOUT;
use crate::model::state_dir::StateDir;
use crate::model::trigger::{Pattern, Trigger};
use crate::nats::registry::{Change, Registry};
use crate::nats::streams::{StreamError, StreamSettings};
use crate::runner::health::Probe;
use crate::runner::metrics::{ConsumerSample, InstanceSample, Metrics, Sample};
use crate::runner::shutdown::{Shutdown, StopDeadline, Stopper};
use dispatch::Starting;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// How a runner runs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Its name (`--name`): functions pinned with `runs-on` to this name run here only.
    pub name: String,
    /// Subjects the alert stream captures.
    pub alert_subjects: Vec<String>,
    /// Alerts in flight at once on this runner, across functions.
    pub max_in_flight: usize,
    /// State directory: compile cache and artifact cache.
    pub state: StateDir,
    /// Use the pooling allocator.
    pub pooling: bool,
    /// Where container functions run.
    pub containers: ContainerSetup,
    /// Where dispatchers count their decisions (`--metrics-addr`); `None`: not counted.
    pub metrics: Option<Metrics>,
    /// Replicas of the streams and buckets it creates, and whether it may change existing ones.
    pub streams: StreamSettings,
    /// The keys that open the functions' secret setting values ([`crate::secrets::seal`]); a function sealed with a key
    /// this runner lacks is refused (logged, and named in the heartbeat) while the others run.
    pub settings_keys: Option<crate::secrets::seal::SettingsKeys>,
    /// How many warm WASM instances are kept idle, and for how long.
    pub warm: WarmConfig,
}

/// Warm WASM instances (`riposte run --max-warm-instances`, `--instance-idle-timeout`): memory follows traffic.
#[derive(Debug, Clone, Copy)]
pub struct WarmConfig {
    /// At most this many idle instances across all functions, the least recently used released first.
    pub max_idle: usize,
    /// An instance idle this long is released (`None`: kept until evicted by the budget).
    pub idle_timeout: Option<std::time::Duration>,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig { max_idle: crate::execute::runtime::DEFAULT_MAX_WARM, idle_timeout: Some(DEFAULT_IDLE_TIMEOUT) }
    }
}

/// How long an idle warm instance is kept by default.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// What every dispatcher of a runner shares.
pub(crate) struct RunnerContext {
    pub runner: String,
    pub js: async_nats::jetstream::Context,
    pub handlers: HandlerCache,
    pub in_flight: Arc<Semaphore>,
    /// Every count of every trigger (heartbeat, /metrics, [`Runner::trigger_counts`]).
    pub ledger: Arc<ledger::Ledger>,
    /// Per function: the permits of its `concurrency`, shared by all of its triggers' dispatchers (a function
    /// with two triggers still runs at most `concurrency` alerts at once, WASM or container alike).
    pub admissions: Mutex<BTreeMap<String, (u32, Arc<Semaphore>)>>,
    /// Functions this runner refuses (their settings do not open with its keys), and why: in the heartbeat.
    pub refused: Arc<Mutex<BTreeMap<String, String>>>,
}

impl RunnerContext {
    /// The function's admission permits, shared by its triggers; new ones when its `concurrency` changed.
    fn admission(&self, function: &crate::model::function::Function) -> Arc<Semaphore> {
        let concurrency = function.manifest.limits.concurrency.max(1);
        let mut admissions = self.admissions.lock().unwrap();
        match admissions.get(&function.name) {
            Some((c, permits)) if *c == concurrency => permits.clone(),
            _ => {
                let permits = Arc::new(Semaphore::new(concurrency as usize));
                admissions.insert(function.name.clone(), (concurrency, permits.clone()));
                permits
            }
        }
    }
}

/// A running runner. Dropping it aborts everything at once (as a crash would: unacked alerts are
/// redelivered); [`Runner::stop`] stops gracefully.
pub struct Runner {
    stopper: Stopper,
    task: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    observed: Arc<Observed>,
    client: async_nats::Client,
    ctx: Arc<RunnerContext>,
}

/// What the watch loop lets others see: the triggers dispatched now, and whether the registry is watched.
#[derive(Default)]
struct Observed {
    active: Mutex<BTreeMap<String, Trigger>>,
    watching: AtomicBool,
}

impl Runner {
    /// Ensures the streams and the registry, then starts watching and dispatching.
    pub async fn start(
        client: async_nats::Client,
        config: RunnerConfig,
        backends: Backends,
    ) -> Result<Runner, RunnerError> {
        let js = async_nats::jetstream::new(client.clone());
        crate::nats::streams::ensure_with(&js, Some(&config.alert_subjects), &config.streams).await?;
        let registry = Registry::open_with(&js, &config.streams).await?.with_keys(config.settings_keys.clone());
        let kubernetes = if backends.kubernetes.available() {
            crate::nats::fleet::Access { available: true, detail: "cluster configured".into() }
        } else {
            crate::nats::fleet::Access { available: false, detail: "no cluster configured".into() }
        };
        let containers = ContainerSetup { runner: Some(config.name.clone()), ..config.containers.clone() };
        let handlers = HandlerCache::new(&config.state, config.pooling, registry.clone(), backends, containers)?;
        handlers.set_max_warm(config.warm.max_idle);
        if let Ok(functions) = registry.functions().await {
            let here = functions.values().filter(|f| f.runs_on.as_ref().is_none_or(|r| *r == config.name));
            handlers.connect_early(here).await;
        }
        let runners = crate::nats::fleet::open_with(&js, &config.streams).await?;
        let started_at =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let ctx = Arc::new(RunnerContext {
            runner: config.name.clone(),
            js,
            handlers,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            ledger: Arc::new(ledger::Ledger::new(config.metrics.clone())),
            admissions: Mutex::default(),
            refused: Arc::default(),
        });
        let changes = registry.watch().await?;
        let (stopper, shutdown) = Stopper::new();
        let active = Arc::new(Mutex::new(BTreeMap::new()));
        let heartbeat = tokio::spawn(heartbeat::run(
            heartbeat::Sources {
                store: runners,
                name: config.name.clone(),
                started_at,
                active: active.clone(),
                ledger: ctx.ledger.clone(),
                refused: ctx.refused.clone(),
                in_flight: ctx.in_flight.clone(),
                max_in_flight: config.max_in_flight.max(1),
                container_host: config.containers.host.clone(),
                kubernetes,
            },
            stopper.subscribe(),
        ));
        if let Some(idle) = config.warm.idle_timeout {
            tokio::spawn(release_idle(Arc::downgrade(&ctx), idle));
        }
        let observed = Arc::new(Observed { watching: AtomicBool::new(true), ..Default::default() });
        let task = tokio::spawn(watch_loop(ctx.clone(), changes, shutdown, active, observed.clone()));
        Ok(Runner { stopper, task, heartbeat, observed, client, ctx })
    }

    /// How many results and dead letters this runner could not store (each alert was settled anyway; each
    /// failure is logged).
    pub fn unstored_records(&self) -> u64 {
        self.ctx.ledger.total().unstored
    }

    /// Names of the triggers this runner is dispatching now.
    pub fn active_triggers(&self) -> BTreeSet<String> {
        self.observed.active.lock().unwrap().keys().cloned().collect()
    }

    /// What the metrics endpoint asks: scrape-time samples and readiness.
    pub fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(RunnerProbe { client: self.client.clone(), ctx: self.ctx.clone(), observed: self.observed.clone() })
    }

    /// Per trigger that counted anything since this runner started: its counts (the heartbeat's).
    pub fn trigger_counts(&self) -> BTreeMap<String, Counts> {
        self.ctx.ledger.per_trigger()
    }

    /// Stops pulling, lets reactions in flight finish (bounded by `Timings::drain_timeout`), removes its heartbeat,
    /// flushes what the client still holds (acks), and returns. Each step after the drain is bounded by
    /// `STOP_STEP_TIMEOUT` whatever NATS does; a step abandoned is logged (its alerts are redelivered).
    pub async fn stop(self) {
        self.stop_within(None).await
    }

    /// [`Runner::stop`], naming each step to `deadline` as it starts.
    pub async fn stop_within(mut self, deadline: Option<&StopDeadline>) {
        let step = |what| {
            if let Some(d) = deadline {
                d.step(what)
            }
        };
        self.stopper.stop();
        step("finishing the reactions in flight");
        if timeout(crate::model::timings::get().drain_timeout + STOP_STEP_TIMEOUT, &mut self.task).await.is_err() {
            tracing::warn!(
                "dispatchers still running after the drain; abandoning them (JetStream redelivers their alerts)"
            );
            self.task.abort();
        }
        step("removing the heartbeat");
        if timeout(STOP_STEP_TIMEOUT, &mut self.heartbeat).await.is_err() {
            tracing::warn!("heartbeat removal abandoned (NATS does not answer); the runner will show as gone");
            self.heartbeat.abort();
        }
        step("flushing the NATS client");
        match timeout(STOP_STEP_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "acks not flushed; JetStream redelivers their alerts"),
            Err(_) => tracing::warn!("flush abandoned (NATS does not answer); JetStream redelivers unacked alerts"),
        }
    }

    /// Waits until the runner stops on its own (it only does when its registry watch ends for good).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.task.abort();
        self.heartbeat.abort();
    }
}

/// What a dispatcher is started from: a change in any of it restarts the dispatcher.
#[derive(PartialEq)]
struct Wanted {
    trigger: Trigger,
    function: Function,
    /// The function's other triggers, whose conditions are OR'ed with this one's.
    siblings: Vec<Trigger>,
}

/// A dispatcher running, with what it was started from and how to stop it.
struct Running {
    wanted: Wanted,
    stopper: Stopper,
}

async fn watch_loop(
    ctx: Arc<RunnerContext>,
    changes: impl futures::Stream<Item = Result<Change, StreamError>>,
    mut shutdown: Shutdown,
    active: Arc<Mutex<BTreeMap<String, (String, bool)>>>,
    observed: Arc<Observed>,
) {
    tokio::pin!(changes);
    let mut functions: BTreeMap<String, Function> = BTreeMap::new();
    let mut triggers: BTreeMap<String, Trigger> = BTreeMap::new();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut dispatchers = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(_) = dispatchers.join_next() => {}
            change = changes.next() => match change {
                Some(Ok(Change::Function(name, f))) => {
                    ctx.refused.lock().unwrap().remove(&name);
                    match f {
                        Some(f) => { functions.insert(name, *f); }
                        None => { functions.remove(&name); ctx.handlers.forget(&name); }
                    }
                }
                Some(Ok(Change::Refused(name, e))) => {
                    // Its alerts wait in JetStream for a runner that has the key (or this one, restarted with it).
                    tracing::error!(function = %name, error = %e, "function refused: its settings do not open here; its alerts wait in JetStream");
                    ctx.refused.lock().unwrap().insert(name.clone(), e.to_string());
                    functions.remove(&name);
                    ctx.handlers.forget(&name);
                }
                Some(Ok(Change::Unopened(f, e))) => {
                    // Nobody can open these values for this code: each alert fails with the error, visibly in
                    // `function logs`, until the function is deployed again with the key.
                    tracing::error!(function = %f.name, error = %e, "function's settings do not open for its code; its alerts are recorded as failed");
                    ctx.refused.lock().unwrap().insert(f.name.clone(), e.to_string());
                    ctx.handlers.refuse(&f, e.to_string());
                    functions.insert(f.name.clone(), *f);
                }
                Some(Ok(Change::Trigger(name, t))) => match t {
                    Some(t) => { triggers.insert(name, t); }
                    None => { triggers.remove(&name); }
                },
                Some(Err(e)) => { tracing::warn!(error = %e, "registry watch"); continue; }
                None => { tracing::error!("the registry watch ended; stopping"); break; }
            }
        }
        reconcile(&ctx, &functions, &triggers, &mut running, &mut dispatchers);
        *active.lock().unwrap() = running
            .iter()
            .map(|(name, r)| (name.clone(), (r.wanted.function.name.clone(), r.wanted.function.runs_on.is_some())))
            .collect();
        *observed.active.lock().unwrap() =
            running.iter().map(|(name, r)| (name.clone(), r.wanted.trigger.clone())).collect();
    }
    observed.watching.store(false, Ordering::Relaxed);
    for r in running.values() {
        r.stopper.stop();
    }
    while dispatchers.join_next().await.is_some() {}
}

/// Starts, restarts and stops dispatchers so that exactly the wanted ones run.
fn reconcile(
    ctx: &Arc<RunnerContext>,
    functions: &BTreeMap<String, Function>,
    triggers: &BTreeMap<String, Trigger>,
    running: &mut HashMap<String, Running>,
    dispatchers: &mut JoinSet<()>,
) {
    let mut wanted: HashMap<String, Wanted> = HashMap::new();
    for (name, trigger) in triggers {
        let Some(function) = functions.get(&trigger.function) else { continue };
        if function.runs_on.as_ref().is_some_and(|r| *r != ctx.runner) {
            continue;
        }
        let siblings =
            triggers.values().filter(|t| t.function == trigger.function && t.name != *name).cloned().collect();
        wanted.insert(name.clone(), Wanted { trigger: trigger.clone(), function: function.clone(), siblings });
    }
    running.retain(|name, r| {
        let keep = wanted.get(name).is_some_and(|w| *w == r.wanted);
        if !keep {
            tracing::info!(trigger = %name, "trigger stopped");
            r.stopper.stop();
        }
        keep
    });
    for (name, w) in wanted {
        if running.contains_key(&name) {
            continue;
        }
        let pattern = match Pattern::parse(&w.trigger.topic) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(trigger = %name, error = %e, "trigger ignored");
                continue;
            }
        };
        tracing::info!(trigger = %name, topic = %w.trigger.topic, function = %w.function.name, "trigger started");
        let (stopper, shutdown) = Stopper::new();
        let dispatcher = Starting {
            ledger: ctx.ledger.trigger(&w.function.name, &name),
            admission: ctx.admission(&w.function),
            trigger: w.trigger.clone(),
            pattern,
            siblings: w.siblings.clone(),
            function: Arc::new(w.function.clone()),
            ctx: ctx.clone(),
        };
        dispatchers.spawn(dispatcher.run(shutdown));
        running.insert(name, Running { wanted: w, stopper });
    }
}

/// Releases the warm instances idle for `idle` or longer and unloads idle components, checking a few times per
/// `idle` (at most every 5 s), until the runner is gone; gives the freed memory back to the system.
async fn release_idle(ctx: std::sync::Weak<RunnerContext>, idle: std::time::Duration) {
    let every = (idle / 4).clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut loads = 0;
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        let (released, unloaded) = ctx.handlers.release_idle(idle);
        if released > 0 || unloaded > 0 {
            tracing::debug!(released, unloaded, idle_for = ?idle, "idle warm instances released, idle components unloaded");
        }
        // Loading a component reads its artifact (megabytes, freed at once): give that back too.
        let now_loaded = ctx.handlers.loads();
        if released > 0 || unloaded > 0 || now_loaded != loads {
            give_back_free_memory();
        }
        loads = now_loaded;
    }
}

/// Returns the memory the allocator keeps free to the system, so that what idle instances and components held
/// leaves the runner's RSS (glibc keeps large freed blocks otherwise: 341 MB against 223 MB in use after a burst,
/// in the memory bench).
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The runner as the metrics endpoint sees it.
struct RunnerProbe {
    client: async_nats::Client,
    ctx: Arc<RunnerContext>,
    observed: Arc<Observed>,
}

#[async_trait::async_trait]
impl Probe for RunnerProbe {
    async fn sample(&self, metrics: &Metrics) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let triggers: Vec<Trigger> = self.observed.active.lock().unwrap().values().cloned().collect();
        let mut consumers = Vec::new();
        if connected {
            let reads = triggers.iter().map(|t| async move {
                let c: async_nats::jetstream::consumer::PullConsumer = self
                    .ctx
                    .js
                    .get_consumer_from_stream(t.consumer_name(), crate::nats::streams::ALERT_STREAM)
                    .await
                    .ok()?;
                let info = c.cached_info();
                Some(ConsumerSample {
                    function: t.function.clone(),
                    trigger: t.name.clone(),
                    pending: info.num_pending,
                    ack_pending: info.num_ack_pending as u64,
                })
            });
            consumers = futures::future::join_all(reads).await.into_iter().flatten().collect();
        }
        let instances = self
            .ctx
            .handlers
            .instance_counts()
            .into_iter()
            .map(|(function, c)| InstanceSample {
                function,
                created: c.created,
                reused: c.reused,
                retired: c.retired,
                released: c.released,
                idle: c.idle,
                unloads: c.unloads,
            })
            .collect();
        let (compile_hits, compile_misses) = self.ctx.handlers.compile_counts();
        let nats_connects = self.client.statistics().connects.load(Ordering::Relaxed);
        let streams = if connected { crate::nats::streams::usage(&self.ctx.js).await } else { Vec::new() };
        metrics.set_sample(Sample {
            streams,
            consumers,
            instances,
            compile_hits,
            compile_misses,
            nats_connected: connected,
            nats_connects,
        });
    }

    fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        let state = self.client.connection_state();
        if state != async_nats::connection::State::Connected {
            why.push(format!("NATS: not connected ({state:?}), reconnecting"));
        }
        if !self.observed.watching.load(Ordering::Relaxed) {
            why.push("registry: not watched (the watch ended)".to_owned());
        }
        for t in self.observed.active.lock().unwrap().values() {
            if !self.ctx.handlers.is_loaded(&t.function) {
                why.push(format!("function {} (trigger {}): handler not loaded yet", t.function, t.name));
            }
        }
        why
    }
}
