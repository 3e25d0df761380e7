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

/// Wraps a core module (WAT) into a component for the playbook world.
pub fn component(wat_text: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat_text).expect("test guest WAT is valid");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("wit")).expect("wit/ parses");
    let world = resolve.select_world(&[pkg], Some("playbook")).expect("world playbook exists");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module is accepted")
        .validate(true)
        .encode()
        .expect("component encodes")
}
