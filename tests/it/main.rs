//! riposte's integration tests, in one binary so the dependency graph is linked once (17 binaries linked it 17
//! times). Each module is one former test file; the tests run in parallel threads and keep apart by using their
//! own nats-server, names and temp dirs. The tests under [`serial`] must run alone (a 3-node cluster failover,
//! the Debian package and container image, a container sweep that removes any overdue riposte container):
//! `scripts/test` runs them after the others, one at a time (`it serial:: --test-threads 1`).

#[path = "../support/mod.rs"]
mod support;

mod apply;
mod authoring;
mod bounds;
mod call;
mod container;
mod engine;
mod fleet;
mod helm;
mod http;
mod http_input;
mod kubernetes;
mod layers;
mod metrics;
mod nats_auth;
mod observe;
mod policy;
mod runtime;
mod secrets;
mod trust;
mod trust2;
mod trust3;
mod trust_redact;

/// Tests that must run alone: `scripts/test` runs them with one test thread, after the others.
mod serial {
    mod cluster;
    mod ship;
}
