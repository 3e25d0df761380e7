//! riposte: react to Falco alerts with sandboxed playbooks.
//!
//! The modules are layers, each using only those below it, and read as the data flow
//! (alert → trigger → dispatch → runtime/container → capability → result):
//!
//! ```text
//! runner                       registry watch → one dispatcher per trigger → settle with JetStream
//! deploy, spec, builder,       library operations the CLI calls: write functions and triggers, run specs,
//!   handlers, scaffold         build playbooks, turn a deployed function into a handler, create playbooks
//! runtime | container          run one function on one alert (WASM component | container action)
//! capability                   what a playbook may do: traits, real and recording backends, grants
//! registry, results, streams,  NATS: definitions and artifacts, execution records, streams and consumers,
//!   dedup, nats, embedded      dedup keys shared by runners, connections, the local nats-server
//! bottom                       alert, condition, manifest, function, trigger, execution, limits, wit, digest,
//!                              name, state_dir, shutdown, truncate, assets (the WIT and helper library riposte
//!                              carries), redact (secret values out of text), seal (setting values at rest)
//! ```
//!
//! Nothing below the runner knows how alerts are delivered; nothing below `runtime` imports it.
//!
//! The library's surface, used by the `riposte` binary (and by anyone embedding a runner): [`runner`],
//! [`deploy`], [`spec`], [`builder`], [`registry`], [`results`], [`nats`], [`embedded`] and the bottom types.
//! [`runtime`], [`container`], [`capability`] and [`handlers`] are public so the tests and benches can drive a
//! single layer on its own; their items that nothing outside needs are `pub(crate)`.

// Bottom: data types and limits, no I/O of their own.
pub mod alert;
pub mod assets;
pub mod condition;
pub mod digest;
pub mod execution;
pub mod function;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod name;
pub mod redact;
pub mod rules;
pub mod seal;
pub mod shutdown;
pub mod state_dir;
pub mod timings;
pub mod topic_check;
pub mod trigger;
pub mod truncate;
pub mod wit;

// NATS: where definitions, alerts and records live.
pub mod dedup;
pub mod embedded;
pub mod fleet;
pub mod nats;
pub mod registry;
pub mod results;
pub mod streams;

// What a playbook may do, and the two ways a function runs.
pub mod capability;
pub mod container;
pub mod runtime;

// Library operations.
pub mod apply;
pub mod builder;
pub mod deploy;
pub mod doctor;
pub mod handlers;
pub mod scaffold;
pub mod spec;

// The trigger runner, and its metrics and probes endpoint.
pub mod health;
pub mod runner;
