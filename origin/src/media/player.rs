//! The handle every kind of player holds: an RTMP player, an HTTP-FLV body, an HLS
//! packager and a relay's local players alike.
//!
//! A [`Player`] owns what all of them share: its place in the stream's fan-out, the
//! registry entry (released on `Drop`), the republish deadline (a player kept through an
//! unpublish is ended if nobody republishes in time), write merging (after a live write
//! the player rests so the next write carries everything that arrived meanwhile) and the
//! publish/unpublish notices. The caller only encodes and writes what it is handed.
//!
//! With no merging, an RTMP player can also be written through (see [`super::direct`]):
//! while it keeps up the publisher writes its frames and `next_batch` only returns when
//! the publisher hands it back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::direct::{DirectPlayer, DirectWrite};
use super::frame::Frame;
use super::registry::Hold;
use super::stream::{Join, Next, Stream, Subscriber};

/// How a player is paced and bounded.
#[derive(Debug, Clone, Copy)]
pub struct PlayConfig {
    /// How long a player kept through an unpublish waits for a republish.
    pub republish_timeout: Duration,
    /// After a live write, rest this long before the next (0 = write through).
    pub merge: Duration,
    /// Most frames and bytes handed out in one batch.
    pub max_batch_frames: usize,
    pub max_batch_bytes: usize,
}

impl Default for PlayConfig {
    fn default() -> Self {
        Self {
            republish_timeout: Duration::from_secs(30),
            merge: Duration::ZERO,
            max_batch_frames: 128,
            max_batch_bytes: 1 << 20,
        }
    }
}

/// The publisher came or went: tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Published,
    Unpublished,
}

/// Why a player ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It fell behind the fan-out ring too often.
    TooSlow,
    /// The stream went away.
    Closed,
    /// Unpublished, and nobody republished within the republish timeout.
    NotRepublished,
}

/// What goes with the frames of one batch, if anything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Written before the frames, in order: what the publisher did not write (the tail
    /// of a frame it wrote only in part, and queued frames; write-through only).
    pub rest: Vec<Bytes>,
    pub notice: Option<Notice>,
    pub end: Option<End>,
}

pub struct Player {
    sub: Subscriber,
    config: PlayConfig,
    unpublished_at: Option<Instant>,
    rest_until: Option<Instant>,
    peeked: Option<Next>,
    /// Set when the publisher may write this player's frames itself.
    direct: Option<Arc<DirectPlayer>>,
    _hold: Hold,
}

impl Player {
    pub(super) fn new(hold: Hold, config: PlayConfig) -> Self {
        let sub = hold.stream().subscribe();
        crate::metrics::global().players.inc();
        Self {
            sub,
            config,
            unpublished_at: None,
            rest_until: None,
            peeked: None,
            direct: None,
            _hold: hold,
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        self.sub.stream()
    }

    /// Whether the stream had a publisher when this player joined (or since).
    pub fn publishing(&self) -> bool {
        self.sub.publishing()
    }

    /// Lets the publisher write this player's frames straight to `out` whenever the
    /// player has caught up (write-through: no task wake-up per frame or per merge
    /// interval; the publisher holds frames for the player's merge interval). Only for a
    /// player whose frames are the pre-encoded ones ([`super::frame::PLAY_STREAM_ID`]). From then on the caller
    /// writes to that socket only what `next_batch` hands out, and calls
    /// [`Player::take_over`] before writing anything else. False if not enabled.
    pub fn write_through(&mut self, out: Box<dyn DirectWrite>) -> bool {
        if self.direct.is_some() {
            return false;
        }
        let id = self.sub.stream().next_direct_id();
        self.direct = Some(DirectPlayer::new(id, out, self.config.merge));
        true
    }

    /// Takes the player back from the publisher before the caller writes something of
    /// its own. Returns what the publisher did not write (the tail of a frame it wrote
    /// only in part, queued frames): it must be written first, in order.
    pub fn take_over(&mut self) -> Vec<Bytes> {
        let Some(d) = self.direct.as_ref() else {
            return Vec::new();
        };
        if !self.sub.is_direct() {
            return Vec::new();
        }
        let stream = self.sub.stream().clone();
        let h = stream.leave_direct(d);
        self.sub.resume(h.rx);
        h.rest
    }

    /// Waits until the stream has a publisher; false if the stream closed. Cancel-safe.
    pub async fn wait_published(&mut self) -> bool {
        loop {
            if self.sub.publishing() {
                return true;
            }
            match self.sub.next().await {
                Next::Published => return true,
                Next::Closed => return false,
                _ => {}
            }
        }
    }

    /// Appends the next frames to `out` (at least one item, at most the batch limits)
    /// and says what follows them. Waits for the merge rest and for the stream as
    /// needed. Cancel-safe: nothing is lost if the future is dropped while it waits.
    pub async fn next_batch(&mut self, out: &mut Vec<Arc<Frame>>) -> Delivery {
        let mut delivery = Delivery::default();
        if let Some(at) = self.rest_until.take() {
            // A player the publisher may write to tries to join before it rests: resting
            // would only build up the backlog that keeps it out of the set.
            let joined = match &self.direct {
                Some(d)
                    if self.peeked.is_none()
                        && !self.sub.is_direct()
                        && self.unpublished_at.is_none() =>
                {
                    match self.sub.join_direct(d) {
                        Join::Joined => true,
                        Join::NotNow => false,
                        Join::Next(n) => {
                            self.peeked = Some(n);
                            false
                        }
                    }
                }
                _ => false,
            };
            if !joined {
                tokio::time::sleep_until(at).await;
            }
        }
        if self.peeked.is_none()
            && let Some(d) = &self.direct
        {
            // Caught up: let the publisher write until it hands the player back.
            if !self.sub.is_direct() && self.unpublished_at.is_none() {
                match self.sub.join_direct(d) {
                    Join::Joined | Join::NotNow => {}
                    Join::Next(n) => self.peeked = Some(n),
                }
            }
            if self.sub.is_direct() {
                let h = d.handed_back().await;
                self.sub.resume(h.rx);
                delivery.rest = h.rest;
            }
        }
        if self.peeked.is_none() {
            self.peeked = self.sub.try_next();
        }
        if self.peeked.is_none() && delivery.rest.is_empty() {
            let next = match self.unpublished_at {
                None => self.sub.next().await,
                Some(at) => tokio::select! {
                    n = self.sub.next() => n,
                    _ = tokio::time::sleep_until(at + self.config.republish_timeout) => {
                        return Delivery { end: Some(End::NotRepublished), ..Delivery::default() };
                    }
                },
            };
            self.peeked = Some(next);
        }
        let mut bytes = 0usize;
        let mut media = 0usize;
        let mut next = self.peeked.take();
        while let Some(n) = next {
            match n {
                Next::Frame(f) => {
                    bytes += f.payload.len();
                    media += 1;
                    out.push(f);
                }
                Next::Published => {
                    self.unpublished_at = None;
                    delivery.notice = Some(Notice::Published);
                    break;
                }
                Next::Unpublished => {
                    self.unpublished_at = Some(Instant::now());
                    delivery.notice = Some(Notice::Unpublished);
                    break;
                }
                Next::TooSlow => {
                    crate::metrics::global().slow_player_disconnects.inc();
                    delivery.end = Some(End::TooSlow);
                    break;
                }
                Next::Closed => {
                    delivery.end = Some(End::Closed);
                    break;
                }
            }
            if media >= self.config.max_batch_frames || bytes >= self.config.max_batch_bytes {
                break;
            }
            next = self.sub.try_next();
        }
        // The join burst (and a re-prime after a lag) is never merged; after live media
        // the player rests, so what arrives meanwhile goes out in one write.
        if media > 0
            && !self.config.merge.is_zero()
            && delivery.end.is_none()
            && !self.sub.catching_up()
        {
            self.rest_until = Some(Instant::now() + self.config.merge);
        }
        delivery
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        if let Some(d) = &self.direct
            && self.sub.is_direct()
        {
            let _ = self.sub.stream().leave_direct(d);
        }
        crate::metrics::global().players.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{MediaConfig, PublisherInfo, Registry, StreamKey};
    use crate::rtmp::message::kind;
    use bytes::Bytes;

    fn info(id: u64) -> PublisherInfo {
        PublisherInfo {
            id,
            addr: None,
            since: std::time::Instant::now(),
            upstream: None,
        }
    }

    fn key_video(ts: u32) -> Bytes {
        let _ = ts;
        Bytes::from_static(&[0x17, 1, 0, 0, 0, 1, 2, 3])
    }

    #[tokio::test(start_paused = true)]
    async fn republish_continues_timestamps_and_times_out() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let config = PlayConfig {
            republish_timeout: Duration::from_secs(5),
            ..PlayConfig::default()
        };
        let p1 = r.publish(&key, info(1)).unwrap();
        let mut player = r.play(&key, config);
        p1.push(kind::VIDEO, 1000, key_video(1000)).await;
        let mut out = Vec::new();
        assert_eq!(player.next_batch(&mut out).await, Delivery::default());
        assert_eq!(out.pop().unwrap().timestamp, 1000);
        drop(p1);
        let d = player.next_batch(&mut out).await;
        assert_eq!(d.notice, Some(Notice::Unpublished));
        let p2 = r.publish(&key, info(2)).unwrap();
        p2.push(kind::VIDEO, 0, key_video(0)).await;
        assert_eq!(
            player.next_batch(&mut out).await.notice,
            Some(Notice::Published)
        );
        player.next_batch(&mut out).await;
        let ts = out.pop().unwrap().timestamp;
        assert!(
            ts > 1000,
            "timestamps never go backwards on republish: {ts}"
        );
        drop(p2);
        assert_eq!(
            player.next_batch(&mut out).await.notice,
            Some(Notice::Unpublished)
        );
        let d = player.next_batch(&mut out).await;
        assert_eq!(d.end, Some(End::NotRepublished));
    }

    #[tokio::test(start_paused = true)]
    async fn live_writes_rest_for_the_merge_interval() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let p = r.publish(&key, info(1)).unwrap();
        let mut player = r.play(
            &key,
            PlayConfig {
                merge: Duration::from_millis(200),
                ..PlayConfig::default()
            },
        );
        let mut out = Vec::new();
        p.push(kind::VIDEO, 0, key_video(0)).await;
        player.next_batch(&mut out).await;
        assert_eq!(out.len(), 1);
        let started = Instant::now();
        p.push(kind::VIDEO, 40, key_video(40)).await;
        p.push(kind::VIDEO, 80, key_video(80)).await;
        out.clear();
        player.next_batch(&mut out).await;
        assert_eq!(out.len(), 2, "both frames in one write");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn dropping_a_waiting_player_releases_the_stream() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let fut = {
            let r = r.clone();
            let key = key.clone();
            async move {
                let mut p = r.play(&key, PlayConfig::default());
                p.wait_published().await
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // The future is dropped while it waits, as hyper drops a handler.
            let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
        });
        assert!(r.is_empty());
    }
}
