//! The operations the command line calls: deploying functions and triggers (`deploy`, `apply`), building and
//! testing playbooks (`builder`, `spec`, `scaffold`, with the `assets` riposte carries for authors), and
//! checking a machine (`doctor`).

pub mod apply;
pub mod assets;
pub mod builder;
pub mod deploy;
pub mod doctor;
pub mod scaffold;
pub mod spec;
