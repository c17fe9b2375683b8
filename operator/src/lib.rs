//! origin-operator: reconciles `OriginCluster` resources into StatefulSets of RTMP origins and
//! keeps every origin's coworker list current from the peer Service's EndpointSlices.
//!
//! Shape (after stackabletech/zookeeper-operator): `validate` → `build` (pure functions in
//! [`build`]) → `apply` (server-side apply in [`controller`]) → `status` (pure in [`status`]).

pub mod crd;
pub mod rbac;
pub mod build;
pub mod labels;
pub mod coworkers;
pub mod push;
pub mod testing;
pub mod status;
pub mod metrics;
pub mod controller;
pub mod error;

pub use error::Error;
pub mod http;
pub mod leader;
