//! Everything riposte keeps in NATS, and how it gets there: connections and the local nats-server, the streams
//! and consumers, the registry of functions and triggers, execution records, the fleet's heartbeats and the
//! dedup memory runners share.

pub mod connect;
pub mod dedup;
pub mod embedded;
pub mod fleet;
pub mod registry;
pub mod results;
pub mod streams;
