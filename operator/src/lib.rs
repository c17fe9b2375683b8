//! origin-operator: reconciles `OriginCluster` resources into StatefulSets of RTMP origins and
//! keeps every origin's coworker list current from the peer Service's EndpointSlices.
//!
//! Shape (after stackabletech/zookeeper-operator): `validate` → `build` (pure functions in
//! [`build`]) → `apply` (server-side apply in [`controller`]) → `status` (pure in [`status`]).
//! Coworker delivery runs beside the reconcile, one task per cluster ([`delivery`]).

#![forbid(unsafe_code)]

pub mod apiclient;
pub mod build;
pub mod controller;
pub mod coworkers;
pub mod crd;
pub mod delivery;
pub mod error;
pub mod http;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod push;
pub mod rbac;
pub mod render;
pub mod status;
pub mod trigger;

pub use error::Error;
