//! origin: an RTMP origin server for Kubernetes origin clusters.
//!
//! Layout: `rtmp` is the sans-io protocol, `media` the stream model (GOP cache, fan-out),
//! `server` the tokio edges (listener, connections), `http` the API and HTTP-FLV, `cluster`
//! coworkers and discovery, `client` an RTMP client used by tests, benchmarks and relays.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod media;
pub mod metrics;
pub mod rtmp;
pub mod server;
