//! riposte: react to Falco alerts with sandboxed playbooks.
//!
//! The modules follow the data flow: an [`alert`] arrives, a [`function`] (a deployed playbook described by
//! its [`manifest`]) runs it in the [`runtime`] with the [`capability`] backends it was granted, and the
//! [`execution`] is recorded. [`spec`] runs playbooks against recorded capabilities; [`builder`] turns
//! Python playbooks into components.

pub mod alert;
pub mod builder;
pub mod capability;
pub mod container;
pub mod execution;
pub mod function;
pub mod manifest;
pub mod runtime;
pub mod spec;
pub mod state;
