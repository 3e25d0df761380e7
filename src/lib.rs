//! riposte: react to Falco alerts with sandboxed playbooks.
//!
//! The modules follow the data flow: an [`alert`] arrives, a [`function`] (a deployed playbook described by
//! its [`manifest`]) runs it in the [`runtime`] with the [`capability`] backends it was granted, and the
//! [`execution`] is recorded. [`spec`] runs playbooks against recorded capabilities; [`builder`] turns
//! Python playbooks into components.
//!
//! The trigger engine: a [`trigger`] binds a subject pattern to a function; the [`registry`] (NATS KV and
//! object store) holds both; the [`engine`] runner watches it and dispatches alerts from the JetStream
//! [`streams`], over a [`nats`] connection or the [`embedded`] local nats-server.

pub mod alert;
pub mod builder;
pub mod capability;
pub mod embedded;
pub mod engine;
pub mod container;
pub mod execution;
pub mod function;
pub mod manifest;
pub mod nats;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod streams;
pub mod trigger;
