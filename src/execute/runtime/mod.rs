//! The WASM runtime: one wasmtime engine per runner, components compiled once and cached on disk, an
//! `InstancePre` per component, and per function a pool of warm instances behind an admission semaphore.
//!
//! Per alert the work is: admit, take a warm instance (or instantiate one from the `InstancePre`), call
//! `handle` under a wall-clock deadline, and either return the instance to the pool or retire it (after a
//! trap, a timeout, an error, or `limits.reuse` alerts).

pub mod cache;
pub(crate) mod host;
pub(crate) mod output;

use crate::execute::capability::{Backends, Grants};
use crate::model::alert::Alert;
use crate::model::execution::{Execution, Status};
use crate::model::function::Function;
use crate::model::limits::{
    self, Limits, EPOCH_TICK, LOG_LINE_BYTES, MAX_LOG_LINES, MAX_MEMORY_MB, POOL_INSTANCES, TIMEOUT_SLACK,
};
use crate::model::wit::{Outcome, Playbook, PlaybookPre, WitAlert};
use crate::secrets::truncate::truncate;
use host::{CallState, FunctionContext, HostState, MemoryExceeded, MemoryLimiter};
use output::GuestOutput;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

/// How to build the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// Use the pooling allocator (falls back to on-demand when the address space is too small).
    pub pooling: bool,
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("{what} is not a usable playbook component: {why}")]
    Component { what: String, why: String },
}

/// The engine, linker and compile cache of one runner.
pub struct Runtime {
    engine: Engine,
    loader: Arc<Loader>,
    pooling: bool,
    warm: Arc<WarmPools>,
    _ticker: EpochTicker,
}

/// Loads components for a runtime and for its functions that reload theirs after unloading it: the linker, the
/// compile cache and the components loaded now (weakly held: a component no function holds is freed).
struct Loader {
    engine: Engine,
    linker: Linker<HostState>,
    cache: cache::CompileCache,
    loaded: Mutex<HashMap<String, std::sync::Weak<LoadedComponent>>>,
}

impl Loader {
    fn load(&self, bytes: &[u8], what: &str) -> Result<Arc<LoadedComponent>, RuntimeError> {
        let digest = crate::model::digest::digest(bytes);
        if let Some(hit) = self.loaded.lock().unwrap().get(&digest).and_then(std::sync::Weak::upgrade) {
            return Ok(hit);
        }
        let bad = |why: String| RuntimeError::Component { what: what.to_owned(), why };
        let (component, compiled): (Component, bool) =
            self.cache.load(&self.engine, bytes, &digest).map_err(|e| bad(format!("{e:#}")))?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| bad(format!("{e:#}")))?;
        let pre = PlaybookPre::new(pre).map_err(|e| {
            bad(format!("{e:#}; it must export `handle` from wit/playbook.wit (riposte:playbook@0.1.0)"))
        })?;
        let loaded = Arc::new(LoadedComponent { digest: digest.clone(), compiled, pre });
        let mut map = self.loaded.lock().unwrap();
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(digest, Arc::downgrade(&loaded));
        Ok(loaded)
    }
}

/// How many idle warm instances a runtime keeps across all of its functions (`riposte run --max-warm-instances`).
pub const DEFAULT_MAX_WARM: usize = 16;

/// The idle warm instances of every function of one runtime: at most a budget of them across all functions,
/// the least recently used evicted first, so memory follows traffic and configuration, not the number of
/// functions deployed. An instance exists only once its function had an alert.
pub struct WarmPools {
    budget: std::sync::atomic::AtomicUsize,
    pools: Mutex<Vec<std::sync::Weak<Pool>>>,
}

/// One function's idle warm instances, the most recently used last, and its component while loaded.
struct Pool {
    idle: Mutex<Vec<Warm>>,
    released: AtomicU64,
    /// The component; `None` once unloaded (idle past the timeout), loaded again by the next alert.
    component: Mutex<Option<Arc<LoadedComponent>>>,
    /// Where to load it from again; `None`: never unloaded.
    reload: Mutex<Option<PathBuf>>,
    /// Held while the component is loaded again, so concurrent alerts load it once.
    reloading: tokio::sync::Mutex<()>,
    /// Alerts running now, and when the last one ended (or the component was loaded).
    busy: AtomicU64,
    last_used: Mutex<Instant>,
    unloads: AtomicU64,
}

impl WarmPools {
    fn new() -> WarmPools {
        WarmPools { budget: std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_WARM), pools: Mutex::new(Vec::new()) }
    }

    fn register(&self, component: Arc<LoadedComponent>) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            released: AtomicU64::new(0),
            component: Mutex::new(Some(component)),
            reload: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            busy: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            unloads: AtomicU64::new(0),
        });
        let mut pools = self.pools.lock().unwrap();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        pool
    }

    fn live(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().unwrap().iter().filter_map(std::sync::Weak::upgrade).collect()
    }

    /// Evicts the least recently used idle instances (of any function) while more than the budget are idle.
    fn enforce(&self) {
        let budget = self.budget.load(Ordering::Relaxed);
        let pools = self.live();
        loop {
            let idle: usize = pools.iter().map(|p| p.idle.lock().unwrap().len()).sum();
            if idle <= budget {
                return;
            }
            // Each pool's oldest idle instance is its first.
            let oldest = pools
                .iter()
                .filter_map(|p| Some((p.idle.lock().unwrap().first()?.idle_since, p)))
                .min_by_key(|(since, _)| *since)
                .map(|(_, p)| p.clone());
            let Some(pool) = oldest else { return };
            let evicted = {
                let mut idle = pool.idle.lock().unwrap();
                if idle.is_empty() {
                    continue;
                }
                idle.remove(0)
            };
            pool.released.fetch_add(1, Ordering::Relaxed);
            drop(evicted);
        }
    }

    /// Releases every instance idle for `idle_for` or longer, and unloads the component of a function that may
    /// reload it and had no alert for `idle_for` (its memory goes too; the next alert loads it from the compile
    /// cache); returns how many instances were released.
    pub fn release_idle(&self, idle_for: std::time::Duration) -> usize {
        let mut released = 0;
        for pool in self.live() {
            let (old, none_left): (Vec<Warm>, bool) = {
                let mut idle = pool.idle.lock().unwrap();
                let keep = idle.iter().position(|w| w.idle_since.elapsed() < idle_for).unwrap_or(idle.len());
                let old = idle.drain(..keep).collect();
                (old, idle.is_empty())
            };
            pool.released.fetch_add(old.len() as u64, Ordering::Relaxed);
            released += old.len();
            drop(old);
            let quiet = pool.busy.load(Ordering::SeqCst) == 0 && pool.last_used.lock().unwrap().elapsed() >= idle_for;
            if none_left && quiet && pool.reload.lock().unwrap().is_some() {
                let mut component = pool.component.lock().unwrap();
                if pool.busy.load(Ordering::SeqCst) == 0 && component.take().is_some() {
                    pool.unloads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        released
    }

    /// Components unloaded since the runtime started, across all functions.
    pub fn unloads(&self) -> u64 {
        self.live().iter().map(|p| p.unloads.load(Ordering::Relaxed)).sum()
    }

    /// Idle warm instances now, across all functions.
    pub fn idle(&self) -> usize {
        self.live().iter().map(|p| p.idle.lock().unwrap().len()).sum()
    }
}

/// An alert running on a pool's function: the pool is not idle meanwhile, and its last use is when this ends.
struct Busy<'a>(&'a Pool);

impl<'a> Busy<'a> {
    fn enter(pool: &'a Pool) -> Busy<'a> {
        pool.busy.fetch_add(1, Ordering::SeqCst);
        Busy(pool)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.last_used.lock().unwrap() = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A component ready to instantiate.
pub struct LoadedComponent {
    /// Its sha256.
    pub digest: String,
    /// Whether loading it compiled it (false: it came from the cache).
    pub compiled: bool,
    pre: PlaybookPre<HostState>,
}

impl Runtime {
    /// Builds the engine (pooling allocator when asked and possible) and starts the epoch ticker.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let (engine, pooling) = match config.pooling {
            true => match Engine::new(&engine_config(true)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable (address space too small?); instantiating on demand");
                    (Engine::new(&engine_config(false)).map_err(|e| RuntimeError::Engine(e.to_string()))?, false)
                }
            },
            false => (Engine::new(&engine_config(false)).map_err(|e| RuntimeError::Engine(e.to_string()))?, false),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Playbook::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let cache = cache::CompileCache::new(config.cache_dir.clone(), &engine);
        let ticker = EpochTicker::start(engine.clone());
        let warm = Arc::new(WarmPools::new());
        let loader = Arc::new(Loader { engine: engine.clone(), linker, cache, loaded: Mutex::new(HashMap::new()) });
        Ok(Runtime { engine, loader, pooling, warm, _ticker: ticker })
    }

    /// Keeps at most `n` idle warm instances across all functions (0: none, each alert instantiates); the
    /// least recently used go first.
    pub fn set_max_warm(&self, n: usize) {
        self.warm.budget.store(n, Ordering::Relaxed);
        self.warm.enforce();
    }

    /// The idle warm instances of every function of this runtime.
    pub fn warm(&self) -> &Arc<WarmPools> {
        &self.warm
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The compile cache (its `compiles()` counter shows whether a load compiled).
    pub fn cache(&self) -> &cache::CompileCache {
        &self.loader.cache
    }

    /// Loads a component from its bytes: from memory if this runtime has it, else from the compile cache,
    /// else by compiling (blocking: call it off the alert path, e.g. in `spawn_blocking`).
    pub fn load(&self, bytes: &[u8], what: &str) -> Result<Arc<LoadedComponent>, RuntimeError> {
        self.loader.load(bytes, what)
    }

    /// A function of this runtime: the component with the function's settings, grants and limits.
    pub fn function(&self, component: Arc<LoadedComponent>, function: &Function, backends: Backends) -> WasmFunction {
        let ctx = FunctionContext {
            name: function.name.clone(),
            grants: Grants::for_function(function),
            allow_daemonset: function
                .settings
                .get("ALLOW_DAEMONSET_PODS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            secrets: function.settings.secrets(&function.manifest),
            settings: function.settings.clone(),
            backends,
            playbook: function.manifest.name.clone(),
            declared: function.manifest.settings.keys().cloned().collect(),
        };
        let limits = function.manifest.limits.clone();
        WasmFunction {
            engine: self.engine.clone(),
            loader: self.loader.clone(),
            digest: component.digest.clone(),
            pool: self.warm.register(component),
            admission: Arc::new(tokio::sync::Semaphore::new(limits.concurrency as usize)),
            limits,
            ctx: Arc::new(ctx),
            warm: self.warm.clone(),
            stats: InstanceStats::default(),
        }
    }
}

fn engine_config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // A Python component's initial heap is a sparse snapshot; without this its memory would be copied at
    // every instantiation instead of mapped copy-on-write.
    config.memory_guaranteed_dense_image_size(limits::DENSE_IMAGE_BYTES);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES);
        pool.total_core_instances(POOL_INSTANCES * 32);
        pool.total_memories(POOL_INSTANCES * 4);
        pool.total_tables(POOL_INSTANCES * 16);
        pool.total_stacks(POOL_INSTANCES);
        pool.max_core_instances_per_component(64);
        pool.max_memories_per_component(8);
        pool.max_tables_per_component(32);
        pool.max_component_instance_size(1 << 20);
        pool.max_core_instance_size(1 << 20);
        pool.table_elements(100_000);
        pool.max_memory_size(usize::try_from(MAX_MEMORY_MB << 20).unwrap_or(usize::MAX));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Counters of one function's instances.
#[derive(Debug, Default)]
pub struct InstanceStats {
    /// Instances created.
    pub created: AtomicU64,
    /// Alerts served by an already-warm instance.
    pub reused: AtomicU64,
    /// Instances retired after a trap, a timeout or an error.
    pub retired: AtomicU64,
}

struct Warm {
    store: Store<HostState>,
    playbook: Playbook,
    uses: u32,
    /// When it was last put back idle.
    idle_since: Instant,
}

/// A function ready to handle alerts.
pub struct WasmFunction {
    engine: Engine,
    loader: Arc<Loader>,
    /// The sha256 of its component.
    digest: String,
    limits: Limits,
    ctx: Arc<FunctionContext>,
    admission: Arc<tokio::sync::Semaphore>,
    pool: Arc<Pool>,
    warm: Arc<WarmPools>,
    /// Instance counters.
    pub stats: InstanceStats,
}

/// Raised from the epoch callback when the deadline passed while the guest was computing.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

impl WasmFunction {
    /// The sha256 digest of the component this function runs.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Lets the component be unloaded once the function had no alert for the idle timeout
    /// ([`WarmPools::release_idle`]); the next alert loads it again from `artifact` (the component's bytes on
    /// disk), through the compile cache.
    pub fn unload_when_idle(self, artifact: PathBuf) -> WasmFunction {
        *self.pool.reload.lock().unwrap() = Some(artifact);
        self
    }

    /// Whether its component is loaded now.
    pub fn loaded(&self) -> bool {
        self.pool.component.lock().unwrap().is_some()
    }

    /// The component, loaded again (off the async threads) when it was unloaded.
    async fn component(&self) -> wasmtime::Result<Arc<LoadedComponent>> {
        if let Some(c) = self.pool.component.lock().unwrap().clone() {
            return Ok(c);
        }
        // One load for every alert that finds it unloaded: the others wait for it here.
        let _one = self.pool.reloading.lock().await;
        if let Some(c) = self.pool.component.lock().unwrap().clone() {
            return Ok(c);
        }
        let path = self.pool.reload.lock().unwrap().clone();
        let Some(path) = path else { return Err(wasmtime::Error::msg("the component is not loaded")) };
        let (loader, what, digest) = (self.loader.clone(), format!("function {}", self.ctx.name), self.digest.clone());
        let loaded = tokio::task::spawn_blocking(move || -> wasmtime::Result<Arc<LoadedComponent>> {
            let bytes = std::fs::read(&path)
                .map_err(|e| wasmtime::Error::msg(format!("cannot read the component {}: {e}", path.display())))?;
            if crate::model::digest::digest(&bytes) != digest {
                return Err(wasmtime::Error::msg(format!(
                    "{} is not the function's component any more",
                    path.display()
                )));
            }
            loader.load(&bytes, &what).map_err(|e| wasmtime::Error::msg(e.to_string()))
        })
        .await
        .map_err(|e| wasmtime::Error::msg(format!("loading the component panicked: {e}")))??;
        let mut slot = self.pool.component.lock().unwrap();
        Ok(slot.get_or_insert(loaded).clone())
    }

    /// Runs the playbook on one alert, within the function's limits. Never panics on guest behaviour:
    /// every failure is an `Execution` with a status.
    async fn execute(&self, alert: &Alert) -> Execution {
        let _permit = self.admission.acquire().await.expect("the admission semaphore is never closed");
        let started = Instant::now();
        let deadline = started + self.limits.timeout();
        let mut exec =
            match tokio::time::timeout(self.limits.timeout() + TIMEOUT_SLACK, self.run(alert, deadline)).await {
                Ok(exec) => exec,
                Err(_) => {
                    // The future was dropped mid-call, taking its instance with it: nothing to return to the pool.
                    self.stats.retired.fetch_add(1, Ordering::Relaxed);
                    Execution::refused(Status::Timeout, self.timeout_message())
                }
            };
        exec.duration_us = started.elapsed().as_micros() as u64;
        exec
    }

    fn timeout_message(&self) -> String {
        format!("timed out after {} ms (limits.timeout_ms)", self.limits.timeout_ms)
    }

    async fn run(&self, alert: &Alert, deadline: Instant) -> Execution {
        // Counted busy until the alert ends, however it ends (a timed-out call drops this future).
        let _busy = Busy::enter(&self.pool);
        self.run_busy(alert, deadline).await
    }

    async fn run_busy(&self, alert: &Alert, deadline: Instant) -> Execution {
        let warm = self.pool.idle.lock().unwrap().pop();
        let (mut warm, instantiate_us) = match warm {
            Some(w) => {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                (w, 0)
            }
            None => {
                let t = Instant::now();
                match self.instantiate().await {
                    Ok(w) => (w, t.elapsed().as_micros() as u64),
                    Err(e) => return self.classify(e),
                }
            }
        };
        warm.uses += 1;
        warm.store.data_mut().call = CallState { deadline: Some(deadline), ..CallState::default() };
        warm.store.set_epoch_deadline(1);
        let result = warm.playbook.call_handle(&mut warm.store, &to_wit(alert)).await;
        let call = std::mem::take(&mut warm.store.data_mut().call);
        // This alert's output (and, on a fresh instance, its start code's): taken now, so the next alert starts empty.
        let output = warm.store.data().output.take(&self.ctx.secrets);
        let mut exec = match result {
            Ok(Ok(outcome)) => match call.denied.clone() {
                // The guest ignored a refusal: the function is misconfigured, say so rather than "ok".
                Some(why) => Execution::refused(Status::Denied, why),
                None => ok_execution(outcome),
            },
            Ok(Err(err)) => Execution::from_call_error(err),
            Err(e) => self.classify_with_output(e, &output.text),
        };
        exec.instantiate_us = instantiate_us;
        exec.retry_after_ms = call.retry_after.map(|d| d.as_millis() as u64);
        exec.logs.splice(0..0, call.logs);
        if call.dropped_logs > 0 {
            exec.logs.push(crate::model::execution::LogLine {
                level: "warn".into(),
                message: format!("{} more log lines dropped", call.dropped_logs),
            });
        }
        exec.logs.extend(self.output_lines(&output));
        if exec.is_ok() && warm.uses < self.limits.reuse {
            warm.idle_since = Instant::now();
            self.pool.idle.lock().unwrap().push(warm);
            self.warm.enforce();
        } else if !exec.is_ok() {
            self.stats.retired.fetch_add(1, Ordering::Relaxed);
        }
        exec
    }

    async fn instantiate(&self) -> wasmtime::Result<Warm> {
        // Loaded again first if it was unloaded, so the load does not count against the start code's deadline.
        let component = self.component().await?;
        // Kept beyond its bound by the longest secret, so the cut made after redaction splits none.
        let output = GuestOutput::new(self.ctx.secrets.longest());
        let wasi = wasmtime_wasi::WasiCtx::builder().stdout(output.clone()).stderr(output.clone()).build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { cap: self.limits.memory_bytes(), total: 0 },
            output,
            func: self.ctx.clone(),
            call: CallState::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| match ctx.data().call.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(wasmtime::Error::new(DeadlineExceeded)),
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        store.set_epoch_deadline(1);
        // Instantiation runs the guest's start code: give it the function's deadline too.
        store.data_mut().call.deadline = Some(Instant::now() + self.limits.timeout());
        let playbook = component.pre.instantiate_async(&mut store).await?;
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        Ok(Warm { store, playbook, uses: 0, idle_since: Instant::now() })
    }

    fn classify(&self, e: wasmtime::Error) -> Execution {
        let (status, message) = if e.downcast_ref::<DeadlineExceeded>().is_some() {
            (Status::Timeout, self.timeout_message())
        } else if let Some(mem) = e.downcast_ref::<MemoryExceeded>() {
            (Status::Memory, mem.to_string())
        } else if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
            (Status::Trap, format!("the playbook crashed: {trap}"))
        } else {
            (Status::Trap, format!("the playbook failed: {e:#}"))
        };
        Execution::refused(status, message)
    }

    /// `classify`, saying what to do when the guest reached for sockets (see [`no_sockets_hint`]): a refusal of
    /// the sandbox (`denied`, never retried), not a crash worth another try.
    fn classify_with_output(&self, e: wasmtime::Error, output: &str) -> Execution {
        let mut exec = self.classify(e);
        let hinted = no_sockets_hint(exec.message, output);
        if hinted.starts_with(NO_SOCKETS) {
            exec.status = Status::Denied;
        }
        exec.message = hinted;
        exec
    }

    /// What the guest printed during one alert (already redacted), as log lines of level `output` (the last
    /// `MAX_LOG_LINES` non-empty ones, each cut at `LOG_LINE_BYTES`), after a line saying how much of it was
    /// dropped, if any.
    fn output_lines(&self, output: &output::Captured) -> Vec<crate::model::execution::LogLine> {
        let line = |text: &str| crate::model::execution::LogLine {
            level: "output".into(),
            message: truncate(text, LOG_LINE_BYTES).into_owned(),
        };
        let mut lines: Vec<&str> = output.text.lines().filter(|l| !l.trim().is_empty()).collect();
        let skipped = lines.len().saturating_sub(MAX_LOG_LINES);
        lines.drain(..skipped);
        let mut out = Vec::with_capacity(lines.len() + 1);
        if output.dropped > 0 || skipped > 0 {
            out.push(crate::model::execution::LogLine {
                level: "warn".into(),
                message: format!(
                    "output: {} earlier bytes and {skipped} earlier lines dropped (the last {} bytes and {MAX_LOG_LINES} lines of an alert's output are kept)",
                    output.dropped,
                    limits::GUEST_OUTPUT_BYTES
                ),
            });
        }
        out.extend(lines.into_iter().map(line));
        out
    }
}

#[async_trait::async_trait]
impl crate::model::execution::Handler for WasmFunction {
    async fn react(&self, alert: &Alert) -> Execution {
        self.execute(alert).await
    }

    fn secrets(&self) -> &crate::secrets::redact::Secrets {
        &self.ctx.secrets
    }

    fn instances(&self) -> Option<crate::model::execution::InstanceCounts> {
        Some(crate::model::execution::InstanceCounts {
            created: self.stats.created.load(Ordering::Relaxed),
            reused: self.stats.reused.load(Ordering::Relaxed),
            retired: self.stats.retired.load(Ordering::Relaxed),
            released: self.pool.released.load(Ordering::Relaxed),
            idle: self.pool.idle.lock().unwrap().len() as u64,
            unloads: self.pool.unloads.load(Ordering::Relaxed),
        })
    }
}

fn ok_execution(outcome: Outcome) -> Execution {
    let detail = outcome.detail.map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d)));
    Execution { detail, ..Execution::ok(outcome.message) }
}

fn to_wit(alert: &Alert) -> WitAlert {
    WitAlert {
        uuid: alert.uuid.clone(),
        output: alert.output.clone(),
        priority: alert.priority.as_str().to_owned(),
        rule: alert.rule.clone(),
        time: alert.time.clone(),
        subject: alert.subject(),
        source: alert.source.clone(),
        hostname: alert.hostname.clone(),
        tags: alert.tags.clone(),
        output_fields: alert.fields_as_text(),
        raw: alert.raw.clone(),
    }
}

/// What a playbook that opened a socket itself is told (the Python helper library says the same).
const NO_SOCKETS: &str = "the sandbox has no sockets: send HTTP with post_json (the http capability) instead of \
                          opening a connection yourself (urllib, http.client, requests)";

/// A failure's message, led by what to do when the guest reached for sockets: Python's socket module reaches
/// WASI sockets, which the host does not give, and the trap says "unknown handle index" or names getaddrinfo (or
/// the guest printed "SSL module is not available"), which tells a playbook author nothing.
fn no_sockets_hint(message: String, output: &str) -> String {
    let needs_sockets = |t: &str| {
        ["getaddrinfo", "unknown handle index", "wasi:sockets", "SSL module", "unknown encoding: idna"]
            .iter()
            .any(|w| t.contains(w))
    };
    if needs_sockets(&message) || needs_sockets(output) {
        format!("{NO_SOCKETS} ({message})")
    } else {
        message
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("riposte-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{no_sockets_hint, NO_SOCKETS};

    #[test]
    fn a_guest_that_reached_for_sockets_is_told_to_use_post_json() {
        let trap = "the playbook failed: error while executing at wasm backtrace: getaddrinfo: unknown handle index 3";
        assert!(no_sockets_hint(trap.into(), "").starts_with("the sandbox has no sockets: send HTTP with post_json"));
        let printed = "ImportError: SSL module is not available";
        let hinted = no_sockets_hint("the playbook crashed: wasm trap: unreachable".into(), printed);
        assert_eq!(hinted, format!("{NO_SOCKETS} (the playbook crashed: wasm trap: unreachable)"));
        let other = "the playbook crashed: wasm trap: integer divide by zero";
        assert_eq!(no_sockets_hint(other.into(), "ZeroDivisionError"), other);
    }
}
