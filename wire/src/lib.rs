//! Wire contracts shared by the origin server and the operator.
//!
//! Everything that crosses a process boundary between the two lives here, once: the coworker
//! document the operator pushes to origins (docs/architecture.md, "Coworker delivery") and
//! the SRS-compatible ownership query/answer origins exchange (docs/architecture.md,
//! "Ownership query"), and the ownership directory's messages (docs/architecture.md,
//! "Ownership directory").

#![forbid(unsafe_code)]

pub mod addr;
pub mod clusters;
pub mod coworkers;
pub mod directory;

/// Default RTMP port (the same as SRS).
pub const DEFAULT_RTMP_PORT: u16 = 1935;
/// Default HTTP API port (the same as SRS).
pub const DEFAULT_API_PORT: u16 = 1985;
/// Default HTTP-FLV port (the same as SRS).
pub const DEFAULT_FLV_PORT: u16 = 8080;
/// SRS's name for the default virtual host.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// HTTP paths of the origin API that other components call.
pub mod paths {
    pub const CLUSTERS: &str = "/api/v1/clusters";
    /// The ownership directory (internal, admin token): claim or renew a key.
    pub const DIRECTORY_CLAIM: &str = "/api/v1/directory/claim";
    /// The ownership directory: release a claim.
    pub const DIRECTORY_RELEASE: &str = "/api/v1/directory/release";
    /// The ownership directory: who owns a key.
    pub const DIRECTORY_LOOKUP: &str = "/api/v1/directory/lookup";
    pub const COWORKERS: &str = "/api/v1/coworkers";
    pub const DRAIN: &str = "/api/v1/drain";
    pub const STREAMS: &str = "/api/v1/streams";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    pub const METRICS: &str = "/metrics";
}
