//! One live stream: its publisher, the cache a new player needs (metadata, sequence
//! headers, the GOP since the last keyframe) and the fan-out to players.
//!
//! Fan-out is a bounded broadcast ring of `Arc<Frame>`: memory per stream is fixed by the
//! ring size whatever the number of players, and a player that falls behind the ring is
//! cut back to the next keyframe (and disconnected if it keeps falling behind), without
//! ever slowing the publisher or the other players. Players that keep up are written to
//! straight from the publisher's task instead ([`super::direct`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use bytes::Bytes;

use super::direct::{DirectPlayer, DirectSet, Flush, Handoff};
use super::flv::{self, VideoCodec};
use super::frame::{Frame, FrameKind};
pub use super::name::StreamKey;

/// Tunables of the media path.
#[derive(Debug, Clone, Copy)]
pub struct MediaConfig {
    /// Frames the fan-out ring holds; a player further behind than this is lagging.
    pub queue_frames: usize,
    /// Largest GOP cached; a longer GOP is dropped and new players wait for a keyframe.
    pub max_gop_bytes: usize,
    /// Lag events a player may have in `lag_window` before it is disconnected.
    pub max_lags: u32,
    pub lag_window: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            queue_frames: 1024,
            max_gop_bytes: 32 << 20,
            max_lags: 3,
            lag_window: Duration::from_secs(30),
        }
    }
}

/// What travels through the fan-out ring.
#[derive(Debug, Clone)]
pub enum Event {
    Frame(Arc<Frame>),
    Published,
    Unpublished,
}

#[derive(Debug, Clone)]
pub struct PublisherInfo {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub since: Instant,
    /// Set for a relay: the owner it pulls from. A relay serves players here but never
    /// owns the stream: ownership answers and the publish guard ignore it, and a real
    /// publisher that arrives takes its place.
    pub upstream: Option<String>,
}

#[derive(Default)]
struct Cache {
    publisher: Option<PublisherInfo>,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    has_video: bool,
    video_codec: VideoCodec,
    audio_codec: &'static str,
}

/// A stream's counters and description for `/api/v1/streams`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStats {
    pub vhost: String,
    pub app: String,
    pub stream: String,
    pub publishing: bool,
    pub publisher: Option<String>,
    pub video_codec: Option<&'static str>,
    pub audio_codec: Option<&'static str>,
    pub players: usize,
    /// For a relay: the owner it pulls from.
    pub relay_from: Option<String>,
    /// HLS viewers: playlist polls in the last target duration (the packager itself
    /// counts once in `players`).
    pub hls_viewers: u64,
    pub bytes_in: u64,
    pub frames_in: u64,
    pub uptime_seconds: f64,
}

/// Keeps timestamps continuous across publishers: players kept through an unpublish
/// must never see time go backwards when the stream is republished.
#[derive(Default)]
struct Timeline {
    /// Highest timestamp handed to players so far (after the offset).
    last: Option<u32>,
    /// Added to every timestamp of the current publisher.
    offset: u32,
    /// Set on a republish: the next message fixes the new offset.
    rebase: bool,
}

/// Gap put between the last timestamp of one publisher and the first of the next.
const REPUBLISH_GAP_MS: u32 = 40;

pub struct Stream {
    pub key: StreamKey,
    config: MediaConfig,
    cache: Mutex<Cache>,
    timeline: Mutex<Timeline>,
    tx: broadcast::Sender<Event>,
    /// Players the publisher writes to directly. Everything sent to `tx` is sent under
    /// this lock, so joining or leaving the set is atomic with the ring.
    direct: Mutex<DirectSet>,
    next_direct_id: AtomicU64,
    players: AtomicUsize,
    /// Woken when a player arrives (a publisher of an unwatched stream waits on it).
    watched: tokio::sync::Notify,
    hls_viewers: AtomicU64,
    bytes_in: AtomicU64,
    frames_in: AtomicU64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stream {0} is already being published")]
pub struct AlreadyPublished(pub String);

impl Stream {
    pub fn new(key: StreamKey, config: MediaConfig) -> Self {
        let (tx, _) = broadcast::channel(config.queue_frames.max(16));
        Self {
            key,
            config,
            cache: Mutex::new(Cache::default()),
            timeline: Mutex::new(Timeline::default()),
            tx,
            direct: Mutex::new(DirectSet::default()),
            next_direct_id: AtomicU64::new(0),
            players: AtomicUsize::new(0),
            watched: tokio::sync::Notify::new(),
            hls_viewers: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters more than dropping the stream; recover the data.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nobody holds the cache lock right now (for tests that check no socket is
    /// written under it).
    #[cfg(test)]
    pub(super) fn cache_is_free(&self) -> bool {
        self.cache.try_lock().is_ok()
    }

    /// The write-through set (lock order: `cache` before `direct`).
    fn direct(&self) -> MutexGuard<'_, DirectSet> {
        self.direct.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn next_direct_id(&self) -> u64 {
        self.next_direct_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a publish/unpublish event (with the cache locked). Players written through
    /// are handed back first, without a write: each gets what was queued for it and a ring
    /// position before the event, so its own task writes both, as it writes frames.
    fn send_event(&self, event: Event) {
        let mut d = self.direct();
        d.hand_back_all(|| self.tx.subscribe());
        let _ = self.tx.send(event);
    }

    /// Writes the frames pushed since the last flush to the players in the write-through
    /// set (see [`super::direct`]), to [`super::direct::FLUSH_STEP`] of them per call and
    /// never under the cache lock; audio may wait for the next video frame (see
    /// [`super::direct::AUDIO_HOLD`]). On [`Flush::Partial`] the caller yields and calls
    /// again; on [`Flush::Held`] it flushes again at the instant given, unless another
    /// frame comes first.
    pub fn flush_direct_or_hold(&self) -> Flush {
        let mut d = self.direct();
        let (flush, written) = d.flush_or_hold(Instant::now(), || self.tx.subscribe());
        crate::metrics::global().bytes_out.inc_by(written);
        flush
    }

    /// Leaves the write-through set: a ring position after the last frame sent and what
    /// was queued for the player but not written; or the hand-back if the publisher made
    /// one already.
    pub(super) fn leave_direct(&self, p: &DirectPlayer) -> Handoff {
        let mut d = self.direct();
        match d.leave(p.id) {
            Some(rest) => Handoff {
                rest,
                rx: self.tx.subscribe(),
            },
            None => p.take().unwrap_or_else(|| Handoff {
                // Neither in the set nor handed back cannot happen while the player
                // believes it is in the set; resume at the live edge.
                rest: Vec::new(),
                rx: self.tx.subscribe(),
            }),
        }
    }

    /// Joins `p` to the write-through set if `rx` has nothing left (under the lock the
    /// ring is sent under, so no frame falls between).
    fn join_direct(&self, p: &Arc<DirectPlayer>, rx: &broadcast::Receiver<Event>) -> bool {
        let mut d = self.direct();
        rx.is_empty() && d.join(p)
    }

    pub fn is_published(&self) -> bool {
        self.cache().publisher.is_some()
    }

    /// Whether a real publisher (not a relay) publishes the stream here.
    pub fn is_owned(&self) -> bool {
        self.cache()
            .publisher
            .as_ref()
            .is_some_and(|p| p.upstream.is_none())
    }

    pub fn publisher(&self) -> Option<PublisherInfo> {
        self.cache().publisher.clone()
    }

    pub fn players(&self) -> usize {
        self.players.load(Ordering::Relaxed)
    }

    /// Waits until `until`, or less if the stream has or gets a player: how the publisher
    /// of an unwatched stream paces its reads (`--unwatched-read-interval`).
    pub async fn unwatched_until(&self, until: std::time::Instant) {
        let notified = self.watched.notified();
        tokio::pin!(notified);
        // Registered before the check, so a player arriving in between still wakes us.
        notified.as_mut().enable();
        if self.players() > 0 {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }

    /// Set by the stream's HLS packager: playlist polls in the last target duration.
    pub fn set_hls_viewers(&self, n: u64) {
        self.hls_viewers.store(n, Ordering::Relaxed);
    }

    /// Players the publisher currently writes to directly (write-through).
    pub fn written_through(&self) -> usize {
        self.direct().len()
    }

    /// Claims the stream for a publisher.
    pub fn publish(&self, info: PublisherInfo) -> Result<(), AlreadyPublished> {
        let mut c = self.cache();
        match &c.publisher {
            None => {}
            // A real publisher takes over from a relay; players see an unpublish and a
            // publish, with timestamps carried on.
            Some(old) if old.upstream.is_some() && info.upstream.is_none() => {
                tracing::info!(stream = %self.key, "a publisher replaces the relay");
                self.send_event(Event::Unpublished);
            }
            Some(_) => return Err(AlreadyPublished(self.key.to_string())),
        }
        // A new publisher starts with a clean cache: old headers may not match its codecs.
        *c = Cache {
            publisher: Some(info),
            ..Cache::default()
        };
        self.bytes_in.store(0, Ordering::Relaxed);
        self.frames_in.store(0, Ordering::Relaxed);
        {
            let mut t = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
            t.rebase = t.last.is_some();
        }
        self.send_event(Event::Published);
        Ok(())
    }

    /// Whether `id` is the current publisher.
    pub fn is_publisher(&self, id: u64) -> bool {
        self.cache().publisher.as_ref().map(|p| p.id) == Some(id)
    }

    /// Builds the frame of one message of publisher `id`, with its timestamp moved past
    /// everything sent before a republish, then caches and fans it out (see
    /// [`Stream::push`]). Messages of a publisher that was replaced are dropped.
    pub fn push_message(&self, id: u64, type_id: u8, timestamp: u32, payload: Bytes) -> bool {
        self.frame_of(id, type_id, timestamp, payload)
            .is_some_and(|frame| self.push(frame))
    }

    fn frame_of(&self, id: u64, type_id: u8, timestamp: u32, payload: Bytes) -> Option<Arc<Frame>> {
        if !self.is_publisher(id) {
            return None;
        }
        let ts = {
            let mut t = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
            if t.rebase {
                t.rebase = false;
                let after = t.last.unwrap_or(0).wrapping_add(REPUBLISH_GAP_MS);
                t.offset = after.wrapping_sub(timestamp);
            }
            let ts = timestamp.wrapping_add(t.offset);
            // Timestamps are 32-bit and wrap; compare within a half-range window.
            if t.last.is_none_or(|l| ts.wrapping_sub(l) < 1 << 31) {
                t.last = Some(ts);
            }
            ts
        };
        Some(Frame::new(type_id, ts, payload))
    }

    /// Releases the stream if `id` is its publisher.
    pub fn unpublish(&self, id: u64) -> bool {
        let mut c = self.cache();
        if c.publisher.as_ref().map(|p| p.id) != Some(id) {
            return false;
        }
        c.publisher = None;
        c.gop.clear();
        c.gop_bytes = 0;
        self.send_event(Event::Unpublished);
        true
    }

    /// Caches and fans out one frame from the publisher. Players written through get it
    /// at the publisher's next [`Stream::flush_direct_or_hold`], never from here (so never
    /// under the cache lock); true when so much is queued for them that the publisher
    /// should flush before it goes on.
    pub fn push(&self, frame: Arc<Frame>) -> bool {
        self.bytes_in
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        {
            let mut c = self.cache();
            match frame.kind {
                FrameKind::Data => {
                    if is_metadata(&frame.payload) {
                        c.metadata = Some(frame.clone());
                    }
                }
                FrameKind::Video if frame.sequence_header => {
                    c.has_video = true;
                    c.video_codec = flv::inspect_video(&frame.payload).codec;
                    c.video_header = Some(frame.clone());
                }
                FrameKind::Audio if frame.sequence_header => {
                    c.audio_codec = flv::inspect_audio(&frame.payload).codec;
                    c.audio_header = Some(frame.clone());
                }
                FrameKind::Video => {
                    c.has_video = true;
                    if c.video_codec == VideoCodec::Unknown {
                        c.video_codec = flv::inspect_video(&frame.payload).codec;
                    }
                    if frame.keyframe {
                        c.gop.clear();
                        c.gop_bytes = 0;
                        c.gop.push(frame.clone());
                        c.gop_bytes = frame.size();
                    } else if !c.gop.is_empty() {
                        self.append_gop(&mut c, &frame);
                    }
                }
                FrameKind::Audio => {
                    if c.audio_codec.is_empty() {
                        c.audio_codec = flv::inspect_audio(&frame.payload).codec;
                    }
                    if !c.has_video {
                        // Audio only: keep a short tail so a player starts at once.
                        c.gop.push(frame.clone());
                        if c.gop.len() > 64 {
                            c.gop.remove(0);
                        }
                    } else if !c.gop.is_empty() {
                        self.append_gop(&mut c, &frame);
                    }
                }
            }
            // Send under the lock so a subscriber's snapshot and its ring position agree,
            // and under the write-through lock so the set and the ring agree.
            let mut d = self.direct();
            let _ = self.tx.send(Event::Frame(frame.clone()));
            d.sent(&frame)
        }
    }

    fn append_gop(&self, c: &mut Cache, frame: &Arc<Frame>) {
        c.gop_bytes += frame.size();
        if c.gop_bytes > self.config.max_gop_bytes {
            c.gop.clear();
            c.gop_bytes = 0;
        } else {
            c.gop.push(frame.clone());
        }
    }

    /// Starts a player: the snapshot a new player needs, then the live ring.
    pub fn subscribe(self: &Arc<Self>) -> Subscriber {
        let c = self.cache();
        let rx = self.tx.subscribe();
        let mut pending = VecDeque::new();
        pending.extend(c.metadata.iter().cloned());
        pending.extend(c.video_header.iter().cloned());
        pending.extend(c.audio_header.iter().cloned());
        pending.extend(c.gop.iter().cloned());
        let publishing = c.publisher.is_some();
        drop(c);
        self.players.fetch_add(1, Ordering::Relaxed);
        self.watched.notify_waiters();
        Subscriber {
            stream: self.clone(),
            rx: Some(rx),
            pending,
            waiting_key: false,
            publishing,
            lags: VecDeque::new(),
        }
    }

    fn headers(&self) -> Vec<Arc<Frame>> {
        let c = self.cache();
        c.metadata
            .iter()
            .chain(c.video_header.iter())
            .chain(c.audio_header.iter())
            .cloned()
            .collect()
    }

    fn has_video(&self) -> bool {
        self.cache().has_video
    }

    /// `(audio, video)` as far as the stream has shown them; both while nothing is
    /// known yet (for the FLV header flags).
    pub fn tracks(&self) -> (bool, bool) {
        let c = self.cache();
        let video = c.has_video || c.video_header.is_some();
        let audio = c.audio_header.is_some() || !c.audio_codec.is_empty();
        if !video && !audio {
            (true, true)
        } else {
            (audio, video)
        }
    }

    pub fn stats(&self) -> StreamStats {
        let c = self.cache();
        StreamStats {
            vhost: self.key.vhost.clone(),
            app: self.key.app.clone(),
            stream: self.key.stream.clone(),
            publishing: c.publisher.is_some(),
            publisher: c
                .publisher
                .as_ref()
                .and_then(|p| p.addr)
                .map(|a| a.to_string()),
            video_codec: (c.video_codec != VideoCodec::Unknown).then_some(c.video_codec.name()),
            audio_codec: (!c.audio_codec.is_empty()).then_some(c.audio_codec),
            players: self.players(),
            relay_from: c.publisher.as_ref().and_then(|p| p.upstream.clone()),
            hls_viewers: self.hls_viewers.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            uptime_seconds: c
                .publisher
                .as_ref()
                .map(|p| p.since.elapsed().as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

/// `@setDataFrame`/`onMetaData` data messages are cached for new players.
fn is_metadata(payload: &[u8]) -> bool {
    payload.len() > 3 && payload[0] == 2 && {
        let n = u16::from_be_bytes([payload[1], payload[2]]) as usize;
        payload.get(3..3 + n) == Some(b"onMetaData")
    }
}

/// What [`Subscriber::join_direct`] did.
pub(super) enum Join {
    /// The publisher writes to the player from now on.
    Joined,
    /// Not caught up: this comes first.
    Next(Next),
    /// Not now (catching up, or waiting for a keyframe), and nothing is ready.
    NotNow,
}

/// What a player gets next.
#[derive(Debug, Clone)]
pub enum Next {
    Frame(Arc<Frame>),
    Published,
    Unpublished,
    /// The player fell behind too often and must be disconnected.
    TooSlow,
    /// The stream is gone (no sender left).
    Closed,
}

/// A player's view of a stream.
pub struct Subscriber {
    stream: Arc<Stream>,
    /// None while the publisher writes to this player directly.
    rx: Option<broadcast::Receiver<Event>>,
    pending: VecDeque<Arc<Frame>>,
    waiting_key: bool,
    publishing: bool,
    lags: VecDeque<Instant>,
}

impl Subscriber {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Whether the stream had a publisher when this player joined (or since).
    pub fn publishing(&self) -> bool {
        self.publishing
    }

    /// Waits for the next item.
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(n) = self.take_pending() {
                return n;
            }
            let Some(rx) = self.rx.as_mut() else {
                // Written through: the player's task waits for the hand-back instead.
                return std::future::pending().await;
            };
            let r = rx.recv().await;
            if let Some(n) = self.handle(r.map_err(|e| match e {
                broadcast::error::RecvError::Closed => broadcast::error::TryRecvError::Closed,
                broadcast::error::RecvError::Lagged(n) => broadcast::error::TryRecvError::Lagged(n),
            })) {
                return n;
            }
        }
    }

    /// The next item if one is ready now (for batching writes).
    pub fn try_next(&mut self) -> Option<Next> {
        loop {
            if let Some(n) = self.take_pending() {
                return Some(n);
            }
            let rx = self.rx.as_mut()?;
            match rx.try_recv() {
                Err(broadcast::error::TryRecvError::Empty) => return None,
                r => {
                    if let Some(n) = self.handle(r) {
                        return Some(n);
                    }
                }
            }
        }
    }

    /// Whether join (or re-prime) frames are still queued: the player is catching up
    /// and its writes should not wait to be merged.
    pub fn catching_up(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Joins the stream's write-through set if this player has caught up: nothing
    /// queued, not waiting for a keyframe, and nothing new in the ring (checked under the
    /// lock the publisher sends under). Otherwise the next item, if there is one.
    pub(super) fn join_direct(&mut self, p: &Arc<DirectPlayer>) -> Join {
        // Drain first, outside the lock (a lag takes the cache lock; the lock order is
        // cache before write-through).
        if let Some(n) = self.try_next() {
            return Join::Next(n);
        }
        if !self.pending.is_empty() || self.waiting_key || !self.publishing {
            return Join::NotNow;
        }
        let Some(rx) = self.rx.as_ref() else {
            return Join::Joined;
        };
        if self.stream.join_direct(p, rx) {
            self.rx = None;
            return Join::Joined;
        }
        self.try_next().map_or(Join::NotNow, Join::Next)
    }

    /// Takes the player back from the publisher: `rx` is the ring positioned where the
    /// publisher stopped writing for it.
    pub(super) fn resume(&mut self, rx: broadcast::Receiver<Event>) {
        self.rx = Some(rx);
    }

    /// Whether the publisher writes to this player directly.
    pub(super) fn is_direct(&self) -> bool {
        self.rx.is_none()
    }

    fn take_pending(&mut self) -> Option<Next> {
        self.pending.pop_front().map(Next::Frame)
    }

    fn handle(&mut self, r: Result<Event, broadcast::error::TryRecvError>) -> Option<Next> {
        match r {
            Ok(Event::Frame(f)) => {
                if self.waiting_key {
                    if f.sequence_header || f.kind == FrameKind::Data {
                        return Some(Next::Frame(f));
                    }
                    if !(f.kind == FrameKind::Video && f.keyframe) {
                        return None;
                    }
                    self.waiting_key = false;
                }
                Some(Next::Frame(f))
            }
            Ok(Event::Published) => {
                self.publishing = true;
                Some(Next::Published)
            }
            Ok(Event::Unpublished) => {
                self.publishing = false;
                Some(Next::Unpublished)
            }
            Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                let now = Instant::now();
                self.lags.push_back(now);
                while self
                    .lags
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.stream.config.lag_window)
                {
                    self.lags.pop_front();
                }
                tracing::debug!(stream = %self.stream.key, skipped, "player fell behind; skipping to the next keyframe");
                crate::metrics::global().slow_player_skips.inc();
                if self.lags.len() as u32 > self.stream.config.max_lags {
                    return Some(Next::TooSlow);
                }
                // Re-prime the decoder and resume at the next keyframe (audio-only: at once).
                self.waiting_key = self.stream.has_video();
                self.pending.extend(self.stream.headers());
                None
            }
            Err(broadcast::error::TryRecvError::Closed) => Some(Next::Closed),
            Err(broadcast::error::TryRecvError::Empty) => None,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stream.players.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::message::kind;
    use bytes::Bytes;

    fn video(key: bool, seq: bool, ts: u32) -> Arc<Frame> {
        let b0 = if key { 0x17 } else { 0x27 };
        Frame::new(
            kind::VIDEO,
            ts,
            Bytes::from(vec![b0, u8::from(!seq), 0, 0, 0, 1, 2, 3]),
        )
    }

    fn published(config: MediaConfig) -> Arc<Stream> {
        let s = Arc::new(Stream::new(StreamKey::new("v", "live", "s"), config));
        s.publish(PublisherInfo {
            id: 1,
            addr: None,
            since: Instant::now(),
            upstream: None,
        })
        .unwrap();
        s
    }

    fn frame(n: Option<Next>) -> Arc<Frame> {
        match n {
            Some(Next::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn late_player_starts_with_headers_then_keyframe() {
        let s = published(MediaConfig::default());
        s.push(video(true, true, 0));
        s.push(Frame::new(
            kind::AUDIO,
            0,
            Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        ));
        s.push(video(true, false, 0));
        s.push(video(false, false, 40));
        s.push(video(true, false, 80));
        s.push(video(false, false, 120));
        let mut p = s.subscribe();
        assert!(frame(p.try_next()).sequence_header);
        assert!(frame(p.try_next()).sequence_header);
        let first = frame(p.try_next());
        assert!(
            first.keyframe && first.timestamp == 80,
            "GOP starts at the last keyframe"
        );
        assert_eq!(frame(p.try_next()).timestamp, 120);
        assert!(p.try_next().is_none());
        s.push(video(false, false, 160));
        assert_eq!(frame(p.try_next()).timestamp, 160);
    }

    #[test]
    fn a_real_publisher_replaces_a_relay() {
        let s = Arc::new(Stream::new(
            StreamKey::new("v", "live", "s"),
            MediaConfig::default(),
        ));
        s.publish(PublisherInfo {
            id: 1,
            addr: None,
            since: Instant::now(),
            upstream: Some("rtmp://owner".into()),
        })
        .unwrap();
        assert!(s.is_published() && !s.is_owned(), "a relay never owns");
        let mut p = s.subscribe();
        s.publish(PublisherInfo {
            id: 2,
            addr: None,
            since: Instant::now(),
            upstream: None,
        })
        .unwrap();
        assert!(s.is_owned());
        assert!(matches!(p.try_next(), Some(Next::Unpublished)));
        assert!(matches!(p.try_next(), Some(Next::Published)));
        // The relay's late messages are dropped.
        s.push_message(1, kind::VIDEO, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0]));
        assert!(p.try_next().is_none());
        // A relay cannot replace a real publisher.
        assert!(
            s.publish(PublisherInfo {
                id: 3,
                addr: None,
                since: Instant::now(),
                upstream: Some("rtmp://other".into()),
            })
            .is_err()
        );
    }

    #[test]
    fn second_publisher_is_refused() {
        let s = published(MediaConfig::default());
        assert!(
            s.publish(PublisherInfo {
                id: 2,
                addr: None,
                since: Instant::now(),
                upstream: None,
            })
            .is_err()
        );
        assert!(!s.unpublish(2));
        assert!(s.unpublish(1));
        assert!(
            s.publish(PublisherInfo {
                id: 2,
                addr: None,
                since: Instant::now(),
                upstream: None,
            })
            .is_ok()
        );
    }

    #[test]
    fn lagging_player_skips_to_keyframe_then_is_cut() {
        let config = MediaConfig {
            queue_frames: 16,
            max_lags: 1,
            ..MediaConfig::default()
        };
        let s = published(config);
        s.push(video(true, true, 0));
        let mut slow = s.subscribe();
        let mut fast = s.subscribe();
        assert!(frame(slow.try_next()).sequence_header);
        assert!(frame(fast.try_next()).sequence_header);
        for i in 0..40 {
            s.push(video(i % 10 == 0, false, i * 40));
            // The fast player keeps up and sees every frame.
            assert_eq!(frame(fast.try_next()).timestamp, i * 40);
        }
        // The slow one lagged: it gets the header again, then resumes at a keyframe.
        assert!(frame(slow.try_next()).sequence_header);
        let f = frame(slow.try_next());
        assert!(f.keyframe, "resumes at a keyframe, got ts {}", f.timestamp);
        for i in 40..80 {
            s.push(video(i % 10 == 0, false, i * 40));
        }
        assert!(matches!(slow.try_next(), Some(Next::TooSlow)));
    }

    #[test]
    fn unpublish_and_republish_reach_players() {
        let s = published(MediaConfig::default());
        let mut p = s.subscribe();
        assert!(s.unpublish(1));
        assert!(matches!(p.try_next(), Some(Next::Unpublished)));
        s.publish(PublisherInfo {
            id: 3,
            addr: None,
            since: Instant::now(),
            upstream: None,
        })
        .unwrap();
        assert!(matches!(p.try_next(), Some(Next::Published)));
        assert!(p.publishing());
    }

    #[test]
    fn metadata_detection() {
        let meta = crate::rtmp::amf0::encode_all(&[
            crate::rtmp::amf0::Value::str("onMetaData"),
            crate::rtmp::amf0::Value::Null,
        ]);
        assert!(is_metadata(&meta));
        assert!(!is_metadata(b"\x02\x00\x03abc"));
    }
}
