//! The WASM host against guests that misbehave: each breach is contained and reported with its own status,
//! and the next alert on the same runtime still runs. Also: the compile cache.

use crate::support;

use riposte::execute::capability::recording::Recorder;
use riposte::execute::capability::Backends;
use riposte::execute::runtime::{Runtime, RuntimeConfig};
use riposte::model::alert::Alert;
use riposte::model::execution::{Handler, Status};
use riposte::model::function::{Function, Settings};
use riposte::model::manifest::Manifest;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::guests;

fn function(limits: &str, capabilities: &str) -> Function {
    let manifest = Manifest::parse(&format!(
        "name = \"t\"\nkind = \"wasm\"\ncapabilities = [{capabilities}]\n[limits]\n{limits}\n"
    ))
    .unwrap();
    Function {
        name: "t".into(),
        manifest,
        artifact: String::new(),
        settings: Settings::default(),
        runs_on: None,
        policy: Default::default(),
    }
}

fn alert() -> Alert {
    Alert::parse(support::alert_json("terminal-shell-k8s").as_bytes()).unwrap()
}

fn recorder() -> (Arc<Recorder>, Backends) {
    let r = Arc::new(Recorder::new());
    (r.clone(), Backends { http: r.clone(), kubernetes: r.clone(), object_store: r })
}

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::new(&RuntimeConfig { cache_dir: dir.to_owned(), pooling: true }).unwrap()
}

/// Runs the good guest on the same runtime: it must still work after a bad one.
async fn still_works(rt: &Runtime) {
    let ok = rt.load(&guests::ok(), "ok guest").unwrap();
    let exec = rt.function(ok, &function("", ""), recorder().1).handle(&alert()).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    assert_eq!(exec.message, "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_hits_the_deadline_and_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let spin = rt.load(&guests::spins(), "spin").unwrap();
    let f = rt.function(spin, &function("timeout_ms = 300", ""), recorder().1);
    let started = Instant::now();
    let exec = f.handle(&alert()).await;
    assert_eq!(exec.status, Status::Timeout, "{exec:?}");
    assert!(exec.message.contains("timed out after 300 ms"), "{}", exec.message);
    // Generous bound: the point is that the call returns (deadline + slack), not how fast.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(f.stats.retired.load(std::sync::atomic::Ordering::Relaxed), 1);
    still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_the_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bomb = rt.load(&guests::memory_bomb(), "bomb").unwrap();
    let exec = rt.function(bomb, &function("memory_mb = 32", ""), recorder().1).handle(&alert()).await;
    assert_eq!(exec.status, Status::Memory, "{exec:?}");
    assert!(exec.message.contains("limit is 32 MiB"), "{}", exec.message);
    still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_reported_and_contained() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let trap = rt.load(&guests::traps(), "trap").unwrap();
    let exec = rt.function(trap, &function("", ""), recorder().1).handle(&alert()).await;
    assert_eq!(exec.status, Status::Trap, "{exec:?}");
    assert!(exec.message.contains("crashed"), "{}", exec.message);
    still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ungranted_import_is_refused_and_never_called() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let guest = rt.load(&guests::deletes_pod(), "deleter").unwrap();
    let (rec, backends) = recorder();
    let exec = rt.function(guest.clone(), &function("", "\"http\""), backends).handle(&alert()).await;
    assert_eq!(exec.status, Status::Denied, "{exec:?}");
    assert!(exec.message.contains("kubernetes.delete-pod is not granted"), "{}", exec.message);
    assert!(rec.calls().is_empty(), "the backend must not be called: {:?}", rec.calls());

    // Granted, the same guest reaches the backend with the arguments it passed.
    let (rec, backends) = recorder();
    let exec = rt.function(guest, &function("", "\"kubernetes.delete-pod\""), backends).handle(&alert()).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let calls = rec.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call"], "kubernetes.delete-pod");
    assert_eq!(calls[0]["namespace"], "default");
    assert_eq!(calls[0]["name"], "nginx");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_error_is_its_status_and_warm_instances_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let fails = rt.load(&guests::fails(), "fails").unwrap();
    let exec = rt.function(fails, &function("", ""), recorder().1).handle(&alert()).await;
    assert_eq!((exec.status, exec.message.as_str()), (Status::Failed, "boom"));
    assert!(exec.status.retryable());

    let ok = rt.load(&guests::ok(), "ok").unwrap();
    let f = rt.function(ok, &function("reuse = 3", ""), recorder().1);
    for _ in 0..7 {
        assert!(f.handle(&alert()).await.is_ok());
    }
    use std::sync::atomic::Ordering::Relaxed;
    // 7 alerts, 3 per instance: 3 instances, 4 warm reuses.
    assert_eq!(f.stats.created.load(Relaxed), 3);
    assert_eq!(f.stats.reused.load(Relaxed), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_load_comes_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guests::ok();
    let first = runtime(dir.path());
    let loaded = first.load(&bytes, "ok").unwrap();
    assert!(loaded.compiled);
    assert_eq!(first.cache().compiles(), 1);
    assert!(first.cache().path_for(&loaded.digest).is_file());
    drop(first);

    let second = runtime(dir.path());
    let loaded = second.load(&bytes, "ok").unwrap();
    assert!(!loaded.compiled, "a second start must not compile");
    assert_eq!(second.cache().compiles(), 0);
    still_works(&second).await;
}

#[test]
fn a_component_for_another_world_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let core_only = wat::parse_str("(module)").unwrap();
    let err = rt.load(&core_only, "plain.wasm").err().expect("a core module is not a playbook");
    assert!(err.to_string().contains("plain.wasm is not a usable playbook component"), "{err}");
}

/// The `output` log lines of an execution.
fn printed(exec: &riposte::model::execution::Execution) -> Vec<&str> {
    exec.logs.iter().filter(|l| l.level == "output").map(|l| l.message.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_instance_prints_10_kb_for_each_of_100_alerts_without_trapping() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let printer = rt.load(&guests::prints(10), "printer").unwrap();
    let f = rt.function(printer, &function("", ""), recorder().1);
    let line = "p".repeat(999);
    for i in 0..100 {
        let exec = f.handle(&alert()).await;
        assert_eq!(exec.status, Status::Ok, "alert {i}: {exec:?}");
        assert_eq!(printed(&exec), vec![line.as_str(); 10], "alert {i} has its own output, whole");
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(f.stats.created.load(Relaxed), 1, "one warm instance served them all");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_printing_past_the_bound_keeps_the_end_and_says_how_much_was_dropped() {
    use riposte::model::limits::GUEST_OUTPUT_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let printer = rt.load(&guests::prints(100), "printer").unwrap();
    let exec = rt.function(printer, &function("", ""), recorder().1).handle(&alert()).await;
    assert_eq!(exec.status, Status::Ok, "{exec:?}");
    let kept: usize = printed(&exec).iter().map(|l| l.len() + 1).sum();
    assert!(kept <= GUEST_OUTPUT_BYTES && kept > GUEST_OUTPUT_BYTES - 1000, "{kept} bytes kept");
    let note = exec.logs.iter().find(|l| l.level == "warn").expect("a note says what was dropped");
    assert!(note.message.contains(&format!("{} earlier bytes", 100_000 - GUEST_OUTPUT_BYTES)), "{}", note.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_function_stores_objects_in_its_own_namespace_and_gets_back_only_the_key() {
    use riposte::execute::capability::object_store::DirStore;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let objects = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(objects.path().to_owned()));
    let guest = rt.load(&guests::puts_object(), "putter").unwrap();
    for name in ["fa", "fb"] {
        let (_, mut backends) = recorder();
        backends.object_store = store.clone();
        let func = Function { name: name.into(), ..function("", "\"object-store\"") };
        let exec = rt.function(guest.clone(), &func, backends).handle(&alert()).await;
        assert_eq!((exec.status, exec.message.as_str()), (Status::Ok, "default"), "only the key comes back: {exec:?}");
        assert_eq!(std::fs::read(objects.path().join(name).join("default")).unwrap(), b"nginx");
    }
    // The recording backend of specs sees the namespace too.
    let (rec, backends) = recorder();
    let exec = rt.function(guest, &function("", "\"object-store\""), backends).handle(&alert()).await;
    assert_eq!(exec.message, "default");
    assert_eq!((rec.calls()[0]["function"].as_str(), rec.calls()[0]["key"].as_str()), (Some("t"), Some("default")));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_instance_exists_before_an_alert_and_idle_ones_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let ok = rt.load(&guests::ok(), "ok guest").unwrap();
    let f = rt.function(ok, &function("", ""), recorder().1);
    let counts = || f.instances().unwrap();
    assert_eq!((counts().created, counts().idle), (0, 0), "deployed, no alert yet: no instance");
    assert_eq!(f.handle(&alert()).await.status, Status::Ok);
    assert_eq!((counts().created, counts().idle), (1, 1), "kept warm after its alert");
    // Not idle long enough: kept; then released, and the next alert instantiates again.
    assert_eq!(rt.warm().release_idle(Duration::from_secs(3600)), 0);
    assert_eq!(rt.warm().release_idle(Duration::ZERO), 1);
    assert_eq!((counts().idle, counts().released), (0, 1));
    assert_eq!(f.handle(&alert()).await.status, Status::Ok);
    assert_eq!((counts().created, counts().reused), (2, 0), "a released instance is not reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warm_budget_across_functions_releases_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    rt.set_max_warm(2);
    let ok = rt.load(&guests::ok(), "ok guest").unwrap();
    let functions: Vec<_> = (0..3).map(|_| rt.function(ok.clone(), &function("", ""), recorder().1)).collect();
    for f in &functions {
        assert_eq!(f.handle(&alert()).await.status, Status::Ok);
    }
    let idle: Vec<u64> = functions.iter().map(|f| f.instances().unwrap().idle).collect();
    assert_eq!(idle, [0, 1, 1], "the first function's instance, used least recently, was released");
    assert_eq!(functions[0].instances().unwrap().released, 1);
    assert_eq!(rt.warm().idle(), 2);
    // Using the first again makes the second the least recently used.
    assert_eq!(functions[0].handle(&alert()).await.status, Status::Ok);
    let idle: Vec<u64> = functions.iter().map(|f| f.instances().unwrap().idle).collect();
    assert_eq!(idle, [1, 0, 1]);
    // A budget of none: every alert instantiates, nothing stays.
    rt.set_max_warm(0);
    assert_eq!(rt.warm().idle(), 0);
    assert_eq!(functions[1].handle(&alert()).await.status, Status::Ok);
    assert_eq!(rt.warm().idle(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_idle_past_the_timeout_is_unloaded_and_the_next_alert_loads_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bytes = guests::ok();
    let artifact = dir.path().join("ok.wasm");
    std::fs::write(&artifact, &bytes).unwrap();
    let f =
        rt.function(rt.load(&bytes, "ok guest").unwrap(), &function("", ""), recorder().1).unload_when_idle(artifact);
    // Another component (one function holding the same one would keep it loaded for both).
    let kept = rt.function(rt.load(&guests::fails(), "failing guest").unwrap(), &function("", ""), recorder().1);
    assert_eq!(f.handle(&alert()).await.status, Status::Ok);
    assert_eq!(rt.warm().release_idle(Duration::from_secs(3600)), 0);
    assert!(f.loaded(), "not idle long enough");
    rt.warm().release_idle(Duration::ZERO);
    assert!(!f.loaded(), "unloaded once idle");
    assert!(kept.loaded(), "a function that cannot reload keeps its component");
    assert_eq!(f.instances().unwrap().unloads, 1);
    // Alerts arriving at once load it once.
    let hits = rt.cache().hits();
    let alert = alert();
    let execs = futures::future::join_all((0..8).map(|_| f.handle(&alert))).await;
    assert!(execs.iter().all(|e| e.status == Status::Ok && e.message == "ok"), "{execs:?}");
    assert!(f.loaded(), "loaded again by the alerts");
    assert_eq!(rt.cache().hits(), hits + 1, "one load from the compile cache for the 8 alerts");
}
