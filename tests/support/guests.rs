//! Guests written in WAT for the `riposte:playbook@0.1.0` world, wrapped into components with
//! wit-component. `handle` takes the alert by pointer (it flattens to more than 16 values) and returns a
//! pointer to its `result<outcome, error>`, laid out per the canonical ABI: discriminant at 0, payload at 4.

use std::path::Path;

/// Static data every guest has: at 1024 `ok(outcome { message: "ok", detail: none })`, at 1100
/// `err(failed("boom"))`, strings at 2048.
const DATA: &str = r#"
  (data (i32.const 1024) "\00\00\00\00\00\08\00\00\02\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 1100) "\01\00\00\00\04\00\00\00\10\08\00\00\04\00\00\00")
  (data (i32.const 2048) "ok")
  (data (i32.const 2064) "boom")
  (data (i32.const 2080) "default")
  (data (i32.const 2096) "nginx")
"#;

/// A bump allocator above 64 KiB, enough for the alert the host passes in.
const ALLOC: &str = r#"
  (global $next (mut i32) (i32.const 65536))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $next (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (i32.sub (global.get $next) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)) (i32.const 1))))))
    (local.get $p))
"#;

fn module(imports: &str, handle_body: &str) -> String {
    format!(
        "(module {imports}\n (memory (export \"memory\") 2)\n{DATA}\n{ALLOC}\n (func (export \"handle\") (param i32) (result i32)\n{handle_body})\n)"
    )
}

/// Returns ok("ok").
pub fn ok() -> Vec<u8> {
    component(&module("", "(i32.const 1024)"))
}

/// Returns err(failed("boom")).
pub fn fails() -> Vec<u8> {
    component(&module("", "(i32.const 1100)"))
}

/// Loops forever.
pub fn spins() -> Vec<u8> {
    component(&module("", "(loop $l (br $l)) (i32.const 1024)"))
}

/// Grows memory by 1 MiB at a time until refused, then traps.
pub fn memory_bomb() -> Vec<u8> {
    component(&module("", "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable"))
}

/// Traps at once.
pub fn traps() -> Vec<u8> {
    component(&module("", "unreachable"))
}

/// Calls kubernetes.delete-pod("default", "nginx", none), ignores its answer, returns ok.
pub fn deletes_pod() -> Vec<u8> {
    component(&module(
        r#"(import "riposte:playbook/kubernetes@0.1.0" "delete-pod" (func $delete (param i32 i32 i32 i32 i32 i32 i32)))"#,
        "(call $delete (i32.const 2080) (i32.const 7) (i32.const 2096) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 4096)) (i32.const 1024)",
    ))
}

/// Returns ok(outcome { message: `bytes` × "x" }).
pub fn big_message(bytes: u32) -> Vec<u8> {
    let pages = bytes / 65536 + 1;
    component(&module(
        "",
        &format!(
            "(local $base i32)
             (local.set $base (i32.mul (memory.grow (i32.const {pages})) (i32.const 65536)))
             (memory.fill (local.get $base) (i32.const 120) (i32.const {bytes}))
             (i32.store (i32.const 1200) (i32.const 0))
             (i32.store (i32.const 1204) (local.get $base))
             (i32.store (i32.const 1208) (i32.const {bytes}))
             (i32.store (i32.const 1212) (i32.const 0))
             (i32.const 1200)"
        ),
    ))
}

/// Logs `lines` lines of `bytes` × "l" at level info, then returns err(failed("boom")).
pub fn logs_then_fails(lines: u32, bytes: u32) -> Vec<u8> {
    let pages = bytes / 65536 + 1;
    component(&module(
        r#"(import "riposte:playbook/log@0.1.0" "write" (func $log (param i32 i32 i32)))"#,
        &format!(
            "(local $base i32) (local $i i32)
             (local.set $base (i32.mul (memory.grow (i32.const {pages})) (i32.const 65536)))
             (memory.fill (local.get $base) (i32.const 108) (i32.const {bytes}))
             (block $done (loop $next
               (br_if $done (i32.ge_u (local.get $i) (i32.const {lines})))
               (call $log (i32.const 1) (local.get $base) (i32.const {bytes}))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $next)))
             (i32.const 1100)"
        ),
    ))
}

/// Calls object-store.put("default", "nginx", none) and returns what it returned: ok(outcome { message: the
/// location }), or its error.
pub fn puts_object() -> Vec<u8> {
    component(&module(
        r#"(import "riposte:playbook/object-store@0.1.0" "put" (func $put (param i32 i32 i32 i32 i32 i32 i32 i32)))"#,
        // The answer's layout at 1200 is the outcome's: ok's string where the message goes, detail none (zero).
        "(call $put (i32.const 2080) (i32.const 7) (i32.const 2096) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1200))
         (i32.const 1200)",
    ))
}

/// Prints `lines` lines of 999 × "p" to stdout through `wasi:cli/stdout` (as Python's `print` does), trapping
/// if a write is refused, then returns ok.
pub fn prints(lines: u32) -> Vec<u8> {
    let wat = module(
        r#"(import "wasi:cli/stdout@0.2.0" "get-stdout" (func $stdout (result i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop (param i32)))"#,
        &format!(
            "(local $out i32) (local $i i32)
             (local.set $out (call $stdout))
             (memory.fill (i32.const 8192) (i32.const 112) (i32.const 999))
             (i32.store8 (i32.const 9191) (i32.const 10))
             (block $done (loop $next
               (br_if $done (i32.ge_u (local.get $i) (i32.const {lines})))
               (call $write (local.get $out) (i32.const 8192) (i32.const 1000) (i32.const 1300))
               (if (i32.load8_u (i32.const 1300)) (then unreachable))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $next)))
             (call $drop (local.get $out))
             (i32.const 1024)"
        ),
    );
    encode(&wat, WASI_STDOUT_WORLD, "printing-playbook")
}

/// Just enough of `wasi:io` and `wasi:cli` for a guest that prints, and a world with the playbook's imports
/// and exports plus stdout (the host provides the real, larger interfaces; a component may import less).
const WASI_STDOUT_WORLD: &[&str] = &[
    "package wasi:io@0.2.0;
     interface error { resource error; }
     interface streams {
       use error.{error};
       variant stream-error { last-operation-failed(error), closed }
       resource output-stream {
         blocking-write-and-flush: func(contents: list<u8>) -> result<_, stream-error>;
       }
     }",
    "package wasi:cli@0.2.0;
     interface stdout {
       use wasi:io/streams@0.2.0.{output-stream};
       get-stdout: func() -> output-stream;
     }",
    "package riposte:test-guests;
     world printing-playbook {
       include riposte:playbook/playbook@0.1.0;
       import wasi:cli/stdout@0.2.0;
     }",
];

/// Calls settings.require(`name`) and returns its answer as the outcome: `err(missing-setting(…))` when the
/// host refuses (the two results share a layout: discriminant at 0, payload at 4).
pub fn requires_setting(name: &str) -> Vec<u8> {
    let module = module(
        r#"(import "riposte:playbook/settings@0.1.0" "require" (func $require (param i32 i32 i32)))"#,
        &format!("(call $require (i32.const 3072) (i32.const {}) (i32.const 4096)) (i32.const 4096)", name.len()),
    );
    // The name goes at 3072, inside the data every guest has.
    let module = module.replacen(
        "(data (i32.const 2048)",
        &format!("(data (i32.const 3072) \"{name}\")\n  (data (i32.const 2048)"),
        1,
    );
    component(&module)
}

/// Wraps a core module (WAT) into a component for the playbook world.
pub fn component(wat_text: &str) -> Vec<u8> {
    encode(wat_text, &[], "playbook")
}

/// Wraps a core module (WAT) into a component for `world`, defined in `wit/` or in the last of `packages` (WIT
/// texts, in dependency order, pushed after `wit/`).
fn encode(wat_text: &str, packages: &[&str], world: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat_text).expect("test guest WAT is valid");
    let mut resolve = wit_parser::Resolve::default();
    let (mut pkg, _) = resolve.push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("wit")).expect("wit/ parses");
    for (i, text) in packages.iter().enumerate() {
        pkg = resolve.push_str(format!("test-guest-{i}.wit"), text).expect("test WIT parses");
    }
    let world = resolve.select_world(&[pkg], Some(world)).expect("the world exists");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module is accepted")
        .validate(true)
        .encode()
        .expect("component encodes")
}
