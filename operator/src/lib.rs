//! origin-operator: reconciles `OriginCluster` resources into StatefulSets of RTMP origins and
//! keeps every origin's coworker list current from the peer Service's EndpointSlices.
//!
//! Shape (after stackabletech/zookeeper-operator): `validate` → `build` (pure functions in
//! [`build`]) → `apply` (server-side apply in [`controller`]) → `status` (pure in [`status`]).

pub mod build;
pub mod controller;
pub mod coworkers;
pub mod crd;
pub mod error;
pub mod labels;
pub mod metrics;
pub mod push;
pub mod rbac;
pub mod status;
pub mod testing;

pub use error::Error;
pub mod http;
pub mod leader;
