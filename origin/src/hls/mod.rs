//! HLS and Low-Latency HLS from memory, sans-io.
//!
//! A [`Packager`] per stream is fed the publisher's frames (`Arc<Frame>`, as every player
//! gets them) and keeps a sliding window of segments in memory: MPEG-TS by default, or
//! fMP4/CMAF segments made of parts for Low-Latency HLS. [`playlist`] renders the media
//! playlist, [`reload`] decides when a blocking playlist reload (`_HLS_msn`/`_HLS_part`)
//! or a part request can be answered, and [`names`] parses the URLs the playlist names.
//! The tokio edge (subscription, `watch` notifications, HTTP) lives in `http::hls`.

pub mod codec;
pub mod fmp4;
pub mod live;
pub mod names;
pub mod packager;
pub mod playlist;
pub mod reload;
pub mod ts;

#[cfg(test)]
mod probe_tests;

use std::time::Duration;

pub use names::{Resource, parse_resource};
pub use packager::{Packager, Part, Segment};
pub use reload::{Lookup, ReloadRequest};

/// Tunables of one packager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    /// fMP4 segments with parts, blocking reload and preload hints.
    pub low_latency: bool,
    /// Target segment duration; segments are cut at the first keyframe past it.
    pub target_duration: Duration,
    /// Segments listed in the playlist.
    pub window: usize,
    /// Target part duration (low-latency mode).
    pub part_target: Duration,
    /// Most bytes of media held by one packager (complete segments plus the one building).
    pub max_window_bytes: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            low_latency: false,
            target_duration: Duration::from_secs(2),
            window: 6,
            part_target: Duration::from_secs(1),
            max_window_bytes: 64 << 20,
        }
    }
}

impl HlsConfig {
    /// Clamps values into the ranges the packager supports.
    pub fn sanitized(mut self) -> Self {
        self.target_duration = self
            .target_duration
            .clamp(Duration::from_millis(500), Duration::from_secs(60));
        self.part_target = self
            .part_target
            .clamp(Duration::from_millis(100), self.target_duration);
        self.window = self.window.clamp(2, 100);
        self.max_window_bytes = self.max_window_bytes.max(1 << 20);
        self
    }
}
