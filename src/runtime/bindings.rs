//! Rust bindings of `wit/playbook.wit`, generated at compile time. Every import is async: host calls
//! (HTTP, Kubernetes) run on tokio while the guest waits on its fiber.

wasmtime::component::bindgen!({
    path: "wit",
    world: "playbook",
    imports: { default: async },
    exports: { default: async },
});
