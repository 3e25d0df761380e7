//! What riposte reasons about, as plain data with no I/O of its own: alerts, functions, triggers, manifests,
//! execution records, limits and timings, names and digests, the WIT contract, and where files are kept.

pub mod alert;
pub mod digest;
pub mod execution;
pub mod function;
pub mod limits;
pub mod manifest;
pub mod name;
pub mod state_dir;
pub mod timings;
pub mod trigger;
pub mod wit;
