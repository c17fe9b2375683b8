//! origin: an RTMP origin server for Kubernetes origin clusters.
//!
//! Layout (dependencies point down the list, never back up):
//! - `rtmp`: the sans-io protocol (chunks, AMF0, handshake, commands, URLs).
//! - `media`: the stream model: names, frames, GOP cache, fan-out, the registry, and the
//!   `Publisher`/`Player` handles that release their stream on drop.
//! - `cluster`: coworkers, concurrent owner discovery, ownership answers.
//! - `relay`: pulling a coworker's stream once and publishing it locally.
//! - `state`: the `Origin` state shared by every edge.
//! - `route`: where a play goes (serve here, relay, redirect, not found), for every
//!   protocol.
//! - `server` (RTMP) and `http` (API, HTTP-FLV): the tokio edges; both depend on `state`,
//!   neither on the other.
//! - `run`: binds the listeners and runs the edges; `client`: the RTMP client used by
//!   relays, tests and benchmarks.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod fd_budget;
pub mod hls;
pub mod http;
pub mod media;
pub mod metrics;
pub mod relay;
pub mod route;
pub mod rtmp;
pub mod run;
pub mod server;
pub mod state;
