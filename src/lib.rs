//! riposte: react to Falco alerts with sandboxed playbooks.
//!
//! The folders are layers, each using only those below it, and read as the data flow
//! (alert → trigger → dispatch → runtime/container → capability → result):
//!
//! ```text
//! runner/    registry watch → one dispatcher per trigger → settle with JetStream; heartbeats, metrics, the
//!            health endpoint, stopping
//! ops/       what the CLI calls: deploy and apply functions and triggers, build, spec and scaffold playbooks,
//!            doctor; the assets riposte carries for authors
//! execute/   run one function on one alert: handlers (above) turn a deployed function into a WASM runtime or
//!            a container action (middle), both using capability (below: what a playbook may do)
//! nats/      connections and the local nats-server, streams and consumers, the registry, execution records,
//!            the fleet's heartbeats, the dedup memory
//! model/     alerts, functions, triggers, manifests, execution records, limits, timings, names, the WIT;
//! policy/    conditions, dedup keys, topic checks, Falco rules files;
//! secrets/   sealing, redaction, cutting untrusted text (these three are the bottom layer: no I/O)
//! ```
//!
//! Nothing below the runner knows how alerts are delivered; nothing below `execute::runtime` imports it.
//! `tests/it/layers.rs` checks the layers, folder by folder.
//!
//! The library's surface, used by the `riposte` binary (and by anyone embedding a runner): [`runner`], [`ops`],
//! [`nats`] and the bottom types. [`execute`] is public so the tests and benches can drive a single layer on its
//! own; its items that nothing outside needs are `pub(crate)`.

// Bottom: data types, decisions and text, no I/O of their own.
pub mod model;
pub mod policy;
pub mod secrets;

// NATS: where definitions, alerts and records live.
pub mod nats;

// What a playbook may do, and the two ways a function runs.
pub mod execute;

// Library operations.
pub mod ops;

// The trigger runner, and its metrics and probes endpoint.
pub mod runner;
