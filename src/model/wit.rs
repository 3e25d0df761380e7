//! The contract every WASM playbook implements: Rust bindings of `wit/playbook.wit` (world
//! `riposte:playbook@0.1.0`), generated at compile time, and short names for the types the rest of riposte
//! uses. Every import is async: host calls (HTTP, Kubernetes) run on tokio while the guest waits on its fiber.
//!
//! This is the bottom layer: it uses nothing else of riposte, and every other module may use it.

wasmtime::component::bindgen!({
    path: "wit",
    world: "playbook",
    imports: { default: async },
    exports: { default: async },
});

pub use self::riposte::playbook::http::{Request as HttpRequest, Response as HttpResponse};
pub use self::riposte::playbook::kubernetes::{CaptureJob, Taint};
pub use self::riposte::playbook::log::Level as LogLevel;
pub use self::riposte::playbook::types::{Alert as WitAlert, ApiError, Error as CallError};
