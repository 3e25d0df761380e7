//! The WASM host against guests that misbehave: each breach is contained and reported with its own status,
//! and the next alert on the same runtime still runs. Also: the compile cache.

mod support;

use riposte::alert::Alert;
use riposte::capability::recording::Recorder;
use riposte::capability::Backends;
use riposte::execution::Status;
use riposte::function::{Function, Settings};
use riposte::manifest::Manifest;
use riposte::runtime::{Runtime, RuntimeConfig};
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
    assert_eq!(f.stats.instantiated.load(Relaxed), 3);
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
