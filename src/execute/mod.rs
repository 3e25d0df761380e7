//! Running one function on one alert. Layers inside, bottom first: `capability` (what a playbook may do: traits,
//! real and recording backends, grants), then `runtime` (a WASM component) and `container` (a container action),
//! then `handlers`, the one place that turns a deployed function into either.

pub mod capability;
pub mod container;
pub mod handlers;
pub mod runtime;
