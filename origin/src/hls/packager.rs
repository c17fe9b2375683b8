//! The per-stream packager: frames in, a sliding window of segments (and parts) out.
//!
//! Sans-io: the caller pushes frames with the wall-clock time they arrived and reads the
//! window back; nothing here waits or spawns.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::HlsConfig;
use super::codec::{self, AudioConfig, AudioPacket, CodecError, VideoConfig, VideoPacket};
use super::fmp4::{self, Run, Sample};
use super::ts::TsWriter;
use crate::media::{Frame, FrameKind};

/// Segments kept past the playlist window, for clients that fetch a segment just after it
/// left the playlist.
const KEEP_EXTRA: usize = 2;
/// A timestamp jump larger than this (ms) starts a new segment with a discontinuity.
const MAX_JUMP_MS: i64 = 10_000;

/// A partial segment (low-latency mode).
#[derive(Debug, Clone)]
pub struct Part {
    pub duration_ms: u64,
    /// Starts with a keyframe (or carries only audio).
    pub independent: bool,
    pub data: Vec<Bytes>,
    pub bytes: usize,
}

/// A complete media segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    pub duration_ms: u64,
    /// Wall-clock time (Unix ms) of the first frame, for `EXT-X-PROGRAM-DATE-TIME`.
    pub wall_ms: u64,
    /// Starts after a timestamp jump or a new publisher.
    pub discontinuity: bool,
    /// Init segment generation (low-latency mode).
    pub init: u32,
    pub parts: Vec<Part>,
    pub data: Vec<Bytes>,
    pub bytes: usize,
}

/// Samples of the part being built (low latency).
#[derive(Default)]
struct PartBuild {
    start_ms: i64,
    video: Vec<(i64, Sample)>,
    audio: Vec<(i64, Sample)>,
    bytes: usize,
}

struct Building {
    msn: u64,
    start_ms: i64,
    discontinuity: bool,
    init: u32,
    /// MPEG-TS mode: the segment so far.
    ts: BytesMut,
    /// Low-latency mode: complete parts and the one building.
    parts: Vec<Part>,
    part: PartBuild,
    bytes: usize,
}

/// What one push changed, for waking blocked requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    pub part: bool,
    pub segment: bool,
}

pub struct Packager {
    config: HlsConfig,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    init: Option<Bytes>,
    init_gen: u32,
    /// Init segments of earlier generations still named by segments in memory.
    old_inits: VecDeque<(u32, Bytes)>,
    init_used: bool,
    ts: TsWriter,
    segments: VecDeque<Segment>,
    building: Option<Building>,
    next_msn: u64,
    window_bytes: usize,
    target_secs: u64,
    fragment_seq: u32,
    evicted_discontinuities: u64,
    pending_discontinuity: bool,
    last_video_ms: Option<i64>,
    video_interval: i64,
    last_audio_ms: Option<i64>,
    audio_interval: i64,
    /// Latest (media ms, wall ms) pair, mapping media time to wall-clock time.
    anchor: (i64, u64),
    dropped_segments: u64,
}

impl Packager {
    pub fn new(config: HlsConfig) -> Self {
        let config = config.sanitized();
        Self {
            target_secs: config.target_duration.as_secs_f64().ceil() as u64,
            config,
            video: None,
            audio: None,
            init: None,
            init_gen: 0,
            old_inits: VecDeque::new(),
            init_used: false,
            ts: TsWriter::new(None, false),
            segments: VecDeque::new(),
            building: None,
            next_msn: 0,
            window_bytes: 0,
            fragment_seq: 0,
            evicted_discontinuities: 0,
            pending_discontinuity: false,
            last_video_ms: None,
            video_interval: 33,
            last_audio_ms: None,
            audio_interval: 23,
            anchor: (0, 0),
            dropped_segments: 0,
        }
    }

    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    pub fn video_config(&self) -> Option<&VideoConfig> {
        self.video.as_ref()
    }

    pub fn audio_config(&self) -> Option<&AudioConfig> {
        self.audio.as_ref()
    }

    /// `EXT-X-TARGETDURATION`: at least every segment's rounded duration, never shrinking.
    pub fn target_secs(&self) -> u64 {
        self.target_secs
    }

    /// Complete segments held (the playlist shows the last `window` of them).
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// The segments the playlist lists.
    pub fn window(&self) -> impl Iterator<Item = &Segment> {
        let skip = self.segments.len().saturating_sub(self.config.window);
        self.segments.iter().skip(skip)
    }

    /// Media sequence number of the segment being built (the next to complete).
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// Parts of the segment being built, when one is.
    pub fn building_parts(&self) -> Option<&[Part]> {
        self.building.as_ref().map(|b| &b.parts[..])
    }

    /// Msn of the segment being built, if media is flowing.
    pub fn building_msn(&self) -> Option<u64> {
        self.building.as_ref().map(|b| b.msn)
    }

    pub fn building_wall_ms(&self) -> Option<u64> {
        self.building.as_ref().map(|b| self.wall_of(b.start_ms))
    }

    pub fn building_discontinuity(&self) -> bool {
        self.building.as_ref().is_some_and(|b| b.discontinuity)
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities before the first listed segment.
    pub fn discontinuity_sequence(&self) -> u64 {
        let hidden = self.segments.len().saturating_sub(self.config.window);
        self.evicted_discontinuities
            + self
                .segments
                .iter()
                .take(hidden)
                .filter(|s| s.discontinuity)
                .count() as u64
    }

    /// The current init segment and its generation (low-latency mode).
    pub fn init(&self) -> Option<(u32, &Bytes)> {
        self.init.as_ref().map(|b| (self.init_gen, b))
    }

    /// The init segment of `generation`, current or one still named by a held segment.
    pub fn init_of(&self, generation: u32) -> Option<&Bytes> {
        if generation == self.init_gen {
            return self.init.as_ref();
        }
        let oldest = self.segments.front()?.init;
        self.old_inits
            .iter()
            .find(|(g, _)| *g == generation && *g >= oldest)
            .map(|(_, b)| b)
    }

    /// Bytes of media held (complete segments and the one building).
    pub fn bytes(&self) -> usize {
        self.window_bytes + self.building.as_ref().map_or(0, |b| b.bytes)
    }

    /// Segments dropped because they grew past the memory cap.
    pub fn dropped_segments(&self) -> u64 {
        self.dropped_segments
    }

    fn wall_of(&self, media_ms: i64) -> u64 {
        let (a_ms, a_wall) = self.anchor;
        (a_wall as i64 - (a_ms - media_ms)).max(0) as u64
    }

    /// The publisher stopped or a new one started: the next segment starts afresh.
    pub fn discontinuity(&mut self) -> Changed {
        let changed = self.close_building(None);
        self.pending_discontinuity = !self.segments.is_empty();
        self.video = None;
        self.audio = None;
        self.last_video_ms = None;
        self.last_audio_ms = None;
        changed
    }

    /// Feeds one frame that arrived at wall-clock `now_ms` (Unix ms).
    pub fn push(&mut self, frame: &Frame, now_ms: u64) -> Result<Changed, CodecError> {
        match frame.kind {
            FrameKind::Data => Ok(Changed::default()),
            FrameKind::Video => match codec::video_packet(&frame.payload)? {
                VideoPacket::Config { codec, record } => {
                    let cfg = VideoConfig::parse(codec, record)?;
                    self.set_video(cfg);
                    Ok(Changed::default())
                }
                VideoPacket::Frames {
                    codec,
                    cts,
                    keyframe,
                    data,
                } => {
                    if self.video.as_ref().map(|v| v.codec) != Some(codec) {
                        return Ok(Changed::default());
                    }
                    Ok(self.push_video(i64::from(frame.timestamp), cts, keyframe, data, now_ms))
                }
                VideoPacket::Other => Ok(Changed::default()),
            },
            FrameKind::Audio => match codec::audio_packet(&frame.payload)? {
                AudioPacket::Config(asc) => {
                    let cfg = AudioConfig::parse(asc)?;
                    if self.audio.as_ref() != Some(&cfg) {
                        let changed = self.audio.is_some() || self.building.is_some();
                        self.audio = Some(cfg);
                        if changed {
                            self.restart();
                        }
                        self.rebuild_writers();
                    }
                    Ok(Changed::default())
                }
                AudioPacket::Frame(raw) => {
                    if self.audio.is_none() {
                        return Ok(Changed::default());
                    }
                    Ok(self.push_audio(i64::from(frame.timestamp), raw, now_ms))
                }
            },
        }
    }

    fn set_video(&mut self, cfg: VideoConfig) {
        if self.video.as_ref().map(|v| &v.record) == Some(&cfg.record) {
            return;
        }
        let had = self.video.is_some() || self.building.is_some();
        self.video = Some(cfg);
        if had {
            self.restart();
        }
        self.rebuild_writers();
    }

    /// Codec configuration changed mid-stream: close what is building, discontinuity next.
    fn restart(&mut self) {
        self.close_building(None);
        self.pending_discontinuity = !self.segments.is_empty();
    }

    fn rebuild_writers(&mut self) {
        self.ts = TsWriter::new(self.video.as_ref().map(|v| v.codec), self.audio.is_some());
        if self.config.low_latency {
            let init = fmp4::init_segment(self.video.as_ref(), self.audio.as_ref());
            // A new generation only once media used the previous one.
            if self.init_gen == 0 || std::mem::take(&mut self.init_used) {
                if let Some(old) = self.init.take() {
                    self.old_inits.push_back((self.init_gen, old));
                    // Codec changes are rare; a publisher flapping codecs keeps a few.
                    while self.old_inits.len() > 4 {
                        self.old_inits.pop_front();
                    }
                }
                self.init_gen += 1;
            }
            self.init = Some(init);
        }
    }

    fn push_video(&mut self, dts: i64, cts: i32, key: bool, data: Bytes, now_ms: u64) -> Changed {
        let mut changed = Changed::default();
        if let Some(last) = self.last_video_ms {
            if dts < last || dts - last > MAX_JUMP_MS {
                changed = self.close_building(Some(last + self.video_interval));
                self.pending_discontinuity = true;
            } else if dts > last {
                self.video_interval = (dts - last).min(1000);
            }
        }
        self.last_video_ms = Some(dts);
        self.anchor = (dts, now_ms);
        let target = self.config.target_duration.as_millis() as i64;
        match &self.building {
            None => {
                if !key {
                    return changed;
                }
                self.begin(dts);
            }
            Some(b) if key && dts - b.start_ms >= target => {
                let c = self.close_building(Some(dts));
                changed.segment |= c.segment;
                changed.part |= c.part;
                self.begin(dts);
            }
            Some(b) if self.config.low_latency => {
                if self.part_due(b, dts, self.video_interval) {
                    self.close_part(dts);
                    changed.part = true;
                }
            }
            Some(_) => {}
        }
        let Some(video) = &self.video else {
            return changed;
        };
        let Some(b) = &mut self.building else {
            return changed;
        };
        if self.config.low_latency {
            let bytes = data.len();
            b.part.video.push((
                dts,
                Sample {
                    duration: 0,
                    cts: cts.saturating_mul(90),
                    keyframe: key,
                    data,
                },
            ));
            b.part.bytes += bytes;
            b.bytes += bytes;
        } else {
            let mut es = BytesMut::with_capacity(data.len() + 64);
            es.extend_from_slice(codec::access_unit_delimiter(video.codec));
            if key {
                for ps in &video.parameter_sets {
                    es.extend_from_slice(&[0, 0, 0, 1]);
                    es.extend_from_slice(ps);
                }
            }
            if codec::to_annex_b(&mut es, video.codec, &data, video.nal_length_size).is_err() {
                tracing::debug!("malformed NAL units in a video frame; frame skipped");
                return changed;
            }
            let before = b.ts.len();
            let pts = (dts + i64::from(cts)).max(0) as u64 * 90;
            self.ts
                .write_video(&mut b.ts, pts, dts.max(0) as u64 * 90, key, &es);
            b.bytes += b.ts.len() - before;
        }
        self.enforce_cap();
        changed
    }

    fn push_audio(&mut self, dts: i64, raw: Bytes, now_ms: u64) -> Changed {
        let mut changed = Changed::default();
        let audio_drives = self.video.is_none();
        if let Some(last) = self.last_audio_ms {
            if audio_drives && (dts < last || dts - last > MAX_JUMP_MS) {
                changed = self.close_building(Some(last + self.audio_interval));
                self.pending_discontinuity = true;
            } else if dts > last {
                self.audio_interval = (dts - last).min(1000);
            }
        }
        self.last_audio_ms = Some(dts);
        if audio_drives {
            self.anchor = (dts, now_ms);
            let target = self.config.target_duration.as_millis() as i64;
            match &self.building {
                None => self.begin(dts),
                Some(b) if dts - b.start_ms >= target => {
                    let c = self.close_building(Some(dts));
                    changed.segment |= c.segment;
                    changed.part |= c.part;
                    self.begin(dts);
                }
                Some(b) if self.config.low_latency => {
                    if self.part_due(b, dts, self.audio_interval) {
                        self.close_part(dts);
                        changed.part = true;
                    }
                }
                Some(_) => {}
            }
        }
        let Some(audio) = &self.audio else {
            return changed;
        };
        let Some(b) = &mut self.building else {
            return changed;
        };
        if self.config.low_latency {
            let bytes = raw.len();
            b.part.audio.push((
                dts,
                Sample {
                    duration: 0,
                    cts: 0,
                    keyframe: true,
                    data: raw,
                },
            ));
            b.part.bytes += bytes;
            b.bytes += bytes;
        } else {
            let mut es = Vec::with_capacity(raw.len() + 7);
            es.extend_from_slice(&audio.adts_header(raw.len()));
            es.extend_from_slice(&raw);
            let before = b.ts.len();
            self.ts.write_audio(&mut b.ts, dts.max(0) as u64 * 90, &es);
            b.bytes += b.ts.len() - before;
        }
        self.enforce_cap();
        changed
    }

    /// Whether the part building should end before a frame at `at` (cut so that parts stay
    /// within the part target, assuming the frame interval holds).
    fn part_due(&self, b: &Building, at: i64, interval: i64) -> bool {
        let elapsed = at - b.part.start_ms;
        let target = self.config.part_target.as_millis() as i64;
        elapsed > 0
            && (elapsed + interval > target)
            && !(b.part.video.is_empty() && b.part.audio.is_empty())
    }

    fn begin(&mut self, start_ms: i64) {
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        self.init_used = true;
        let mut ts = BytesMut::new();
        if !self.config.low_latency {
            self.ts.write_tables(&mut ts);
        }
        let bytes = ts.len();
        self.building = Some(Building {
            msn: self.next_msn,
            start_ms,
            discontinuity,
            init: self.init_gen,
            ts,
            parts: Vec::new(),
            part: PartBuild {
                start_ms,
                ..PartBuild::default()
            },
            bytes,
        });
    }

    /// Ends the part building at media time `end_ms`.
    fn close_part(&mut self, end_ms: i64) {
        let audio_rate = self.audio.as_ref().map_or(48_000, |a| a.sample_rate);
        let Some(b) = &mut self.building else {
            return;
        };
        let pb = std::mem::replace(
            &mut b.part,
            PartBuild {
                start_ms: end_ms,
                ..PartBuild::default()
            },
        );
        if pb.video.is_empty() && pb.audio.is_empty() {
            return;
        }
        let independent = pb.video.first().is_none_or(|(_, s)| s.keyframe);
        let mut runs = Vec::with_capacity(2);
        if let Some(&(first, _)) = pb.video.first() {
            let n = pb.video.len();
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let this = pb.video[i].0;
                let next = pb.video.get(i + 1).map_or(end_ms, |(t, _)| *t);
                let d = if next > this {
                    next - this
                } else {
                    self.video_interval
                };
                let mut s = pb.video[i].1.clone();
                s.duration = (d * 90) as u32;
                samples.push(s);
            }
            runs.push(Run {
                track: fmp4::VIDEO_TRACK,
                base_time: first.max(0) as u64 * 90,
                samples,
            });
        }
        if let Some(&(first, _)) = pb.audio.first() {
            let to_rate = |ms: i64| (ms.max(0) as u64 * u64::from(audio_rate)) / 1000;
            let n = pb.audio.len();
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let this = to_rate(pb.audio[i].0);
                let d = match pb.audio.get(i + 1) {
                    Some((t, _)) if to_rate(*t) > this => to_rate(*t) - this,
                    _ => 1024,
                };
                let mut s = pb.audio[i].1.clone();
                s.duration = d as u32;
                samples.push(s);
            }
            runs.push(Run {
                track: fmp4::AUDIO_TRACK,
                base_time: to_rate(first),
                samples,
            });
        }
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        let data = fmp4::fragment(self.fragment_seq, &runs);
        let bytes = data.iter().map(Bytes::len).sum::<usize>();
        b.bytes = b.bytes - pb.bytes + bytes;
        b.parts.push(Part {
            duration_ms: (end_ms - pb.start_ms).max(0) as u64,
            independent,
            data,
            bytes,
        });
    }

    /// Completes the segment building, ending at media time `end_ms` (or at the last frame
    /// when unknown).
    fn close_building(&mut self, end_ms: Option<i64>) -> Changed {
        let Some(b) = &self.building else {
            return Changed::default();
        };
        let end = end_ms.unwrap_or_else(|| {
            let last = if self.video.is_some() {
                self.last_video_ms.map(|t| t + self.video_interval)
            } else {
                self.last_audio_ms.map(|t| t + self.audio_interval)
            };
            last.unwrap_or(b.start_ms).max(b.start_ms)
        });
        let mut changed = Changed::default();
        if self.config.low_latency {
            let had = b.parts.len();
            self.close_part(end);
            changed.part = self.building.as_ref().is_some_and(|b| b.parts.len() > had);
        }
        let Some(b) = self.building.take() else {
            return changed;
        };
        let duration_ms = (end - b.start_ms).max(0) as u64;
        let (data, bytes) = if self.config.low_latency {
            let data: Vec<Bytes> = b
                .parts
                .iter()
                .flat_map(|p| p.data.iter().cloned())
                .collect();
            let bytes = b.parts.iter().map(|p| p.bytes).sum();
            (data, bytes)
        } else {
            let bytes = b.ts.len();
            (vec![b.ts.freeze()], bytes)
        };
        if duration_ms == 0 && bytes == 0 {
            return changed;
        }
        let seg = Segment {
            msn: b.msn,
            duration_ms,
            wall_ms: self.wall_of(b.start_ms),
            discontinuity: b.discontinuity,
            init: b.init,
            parts: b.parts,
            data,
            bytes,
        };
        self.target_secs = self
            .target_secs
            .max((duration_ms as f64 / 1000.0).round() as u64);
        self.next_msn = b.msn + 1;
        self.window_bytes += seg.bytes;
        self.segments.push_back(seg);
        self.evict();
        changed.segment = true;
        changed
    }

    fn evict(&mut self) {
        while self.segments.len() > self.config.window + KEEP_EXTRA
            || (self.window_bytes > self.config.max_window_bytes && self.segments.len() > 1)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.segments.pop_front() {
            self.window_bytes -= old.bytes;
            if old.discontinuity {
                self.evicted_discontinuities += 1;
            }
        }
    }

    /// A segment that grows past the cap (no keyframes) is dropped, never buffered.
    fn enforce_cap(&mut self) {
        let limit = self.config.max_window_bytes / 2;
        if self.building.as_ref().is_some_and(|b| b.bytes > limit) {
            tracing::warn!(
                limit,
                "HLS segment grew past the memory cap (no keyframe?); dropped"
            );
            self.building = None;
            self.pending_discontinuity = !self.segments.is_empty();
            self.dropped_segments += 1;
        }
        while self.window_bytes + self.building.as_ref().map_or(0, |b| b.bytes)
            > self.config.max_window_bytes
            && !self.segments.is_empty()
        {
            self.pop_oldest();
        }
    }

    /// A complete segment by media sequence number.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        let s = self
            .segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)?;
        (s.msn == msn).then_some(s)
    }

    /// A part by segment msn and index (complete segments and the one building).
    pub fn part(&self, msn: u64, index: usize) -> Option<&Part> {
        if let Some(b) = &self.building
            && b.msn == msn
        {
            return b.parts.get(index);
        }
        self.segment(msn)?.parts.get(index)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rtmp::message::kind;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;

    pub(crate) fn avc_header() -> Arc<Frame> {
        let sps = super::super::codec::test_data::SPS;
        let mut p = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff, 0xe1];
        p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        p.extend_from_slice(sps);
        p.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        Frame::new(kind::VIDEO, 0, Bytes::from(p))
    }

    pub(crate) fn video(ts: u32, key: bool) -> Arc<Frame> {
        let b0 = if key { 0x17 } else { 0x27 };
        let nal = if key { 0x65 } else { 0x41 };
        Frame::new(
            kind::VIDEO,
            ts,
            Bytes::from(vec![b0, 1, 0, 0, 0, 0, 0, 0, 4, nal, 1, 2, 3]),
        )
    }

    pub(crate) fn aac_header() -> Arc<Frame> {
        Frame::new(kind::AUDIO, 0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10]))
    }

    pub(crate) fn audio(ts: u32) -> Arc<Frame> {
        Frame::new(
            kind::AUDIO,
            ts,
            Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 4]),
        )
    }

    fn config(low_latency: bool) -> HlsConfig {
        HlsConfig {
            low_latency,
            target_duration: Duration::from_secs(2),
            window: 3,
            part_target: Duration::from_millis(500),
            max_window_bytes: 8 << 20,
        }
    }

    /// Feeds `seconds` of 25 fps video with a keyframe every `gop` frames, plus audio.
    pub(crate) fn feed(p: &mut Packager, from: u32, frames: u32, gop: u32) {
        for i in from..from + frames {
            let ts = i * 40;
            p.push(&video(ts, i % gop == 0), 1_000_000 + u64::from(ts))
                .unwrap();
            p.push(&audio(ts + 10), 1_000_000 + u64::from(ts)).unwrap();
        }
    }

    fn started(low_latency: bool) -> Packager {
        let mut p = Packager::new(config(low_latency));
        p.push(&avc_header(), 0).unwrap();
        p.push(&aac_header(), 0).unwrap();
        p
    }

    #[test]
    fn segments_cut_at_keyframes_past_target() {
        let mut p = started(false);
        // Keyframe every 30 frames (1.2 s): target 2 s means a cut every 2.4 s.
        feed(&mut p, 0, 400, 30);
        let durations: Vec<u64> = p.segments().iter().map(|s| s.duration_ms).collect();
        assert!(!durations.is_empty());
        assert!(durations.iter().all(|d| *d == 2400), "{durations:?}");
        assert_eq!(p.target_secs(), 2);
        // The window slid: msns are consecutive and the oldest ones are gone.
        let msns: Vec<u64> = p.segments().iter().map(|s| s.msn).collect();
        assert_eq!(msns.len(), 3 + KEEP_EXTRA);
        assert!(msns.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(*msns.last().unwrap() + 1, p.next_msn());
        assert_eq!(p.window().count(), 3);
        // Every TS segment is whole packets starting with the PAT.
        for s in p.segments() {
            assert_eq!(s.data[0].len() % 188, 0);
            assert_eq!(&s.data[0][..4], &[0x47, 0x40, 0, s.data[0][3]]);
        }
    }

    #[test]
    fn long_gop_raises_target_duration() {
        let mut p = started(false);
        feed(&mut p, 0, 400, 100); // keyframe every 4 s
        assert!(p.segments().iter().all(|s| s.duration_ms == 4000));
        assert_eq!(p.target_secs(), 4);
    }

    #[test]
    fn parts_stay_within_part_target() {
        let mut p = started(true);
        feed(&mut p, 0, 300, 50);
        assert!(p.init().is_some());
        let target = 500;
        for s in p.segments() {
            assert!(!s.parts.is_empty());
            assert!(
                s.parts[0].independent,
                "a segment starts with an independent part"
            );
            assert!(
                s.parts.iter().all(|x| x.duration_ms <= target),
                "{:?}",
                s.parts.iter().map(|x| x.duration_ms).collect::<Vec<_>>()
            );
            assert_eq!(
                s.parts.iter().map(|x| x.duration_ms).sum::<u64>(),
                s.duration_ms
            );
            assert_eq!(s.data.iter().map(Bytes::len).sum::<usize>(), s.bytes);
        }
        // The segment being built exposes its finished parts.
        assert!(p.building_msn().is_some());
        let n = p.building_parts().unwrap().len();
        if n > 0 {
            assert!(p.part(p.next_msn(), n - 1).is_some());
        }
        assert!(p.part(p.next_msn(), n).is_none());
    }

    #[test]
    fn waits_for_keyframe_and_configs() {
        let mut p = Packager::new(config(false));
        p.push(&video(0, true), 0).unwrap();
        assert!(p.building_msn().is_none(), "no config yet");
        p.push(&avc_header(), 0).unwrap();
        p.push(&video(40, false), 0).unwrap();
        assert!(p.building_msn().is_none(), "starts at a keyframe");
        p.push(&video(80, true), 0).unwrap();
        assert_eq!(p.building_msn(), Some(0));
    }

    #[test]
    fn timestamp_jump_is_a_discontinuity() {
        let mut p = started(false);
        feed(&mut p, 0, 120, 25);
        let before = p.segments().len();
        feed(&mut p, 10_000, 120, 25);
        let segs: Vec<_> = p.segments().iter().collect();
        assert!(segs.len() > before);
        assert!(segs.iter().any(|s| s.discontinuity));
    }

    #[test]
    fn memory_is_capped_without_keyframes() {
        let mut p = Packager::new(HlsConfig {
            max_window_bytes: 1 << 20,
            ..config(false)
        });
        p.push(&avc_header(), 0).unwrap();
        let big = Frame::new(kind::VIDEO, 0, {
            let mut v = vec![0x17, 1, 0, 0, 0, 0, 0x01, 0, 0, 0x65];
            v.resize(10 + 0x100 - 1, 7);
            v[6..10].copy_from_slice(&((0x100 - 1) as u32).to_be_bytes());
            Bytes::from(v)
        });
        p.push(&big, 0).unwrap();
        for i in 1..20_000u32 {
            p.push(&video(i * 40, false), 0).unwrap();
            assert!(p.bytes() <= 1 << 20);
        }
        assert!(p.dropped_segments() >= 1);
    }

    #[test]
    fn a_codec_change_starts_a_new_init_generation_and_keeps_the_old_one() {
        let mut p = started(true);
        feed(&mut p, 0, 150, 25);
        assert_eq!(p.init().map(|(g, _)| g), Some(1));
        // Same SPS, different PPS: a new configuration record.
        let mut rec = avc_header().payload.to_vec();
        let n = rec.len();
        rec[n - 1] ^= 0x01;
        p.push(&Frame::new(kind::VIDEO, 6000, Bytes::from(rec)), 0)
            .unwrap();
        feed(&mut p, 150, 150, 25);
        assert_eq!(p.init().map(|(g, _)| g), Some(2));
        let gens: Vec<u32> = p.segments().iter().map(|s| s.init).collect();
        assert!(gens.contains(&1) && gens.contains(&2), "{gens:?}");
        assert!(p.init_of(1).is_some() && p.init_of(2).is_some());
        assert!(p.init_of(3).is_none());
        let first_new = p.segments().iter().find(|s| s.init == 2).unwrap();
        assert!(first_new.discontinuity);
    }

    #[test]
    fn program_date_time_follows_arrival() {
        let mut p = started(false);
        feed(&mut p, 0, 200, 25);
        let s: Vec<_> = p.segments().iter().collect();
        for w in s.windows(2) {
            assert_eq!(w[1].wall_ms - w[0].wall_ms, w[0].duration_ms);
        }
    }

    proptest! {
        #[test]
        fn prop_any_frames_keep_invariants(
            frames in prop::collection::vec((any::<bool>(), 0u32..200, any::<bool>(), any::<bool>()), 1..300),
            ll in any::<bool>(),
        ) {
            let mut p = started(ll);
            let mut ts = 0u32;
            for (is_video, step, key, garbage) in frames {
                ts = ts.wrapping_add(step);
                let f = if garbage {
                    Frame::new(if is_video { kind::VIDEO } else { kind::AUDIO }, ts, Bytes::from(vec![0x17, 1, 0, 0, 0, 0, 0, 0, 9, 1]))
                } else if is_video { video(ts, key) } else { audio(ts) };
                let _ = p.push(&f, u64::from(ts));
                prop_assert!(p.bytes() <= p.config().max_window_bytes);
            }
            let msns: Vec<u64> = p.segments().iter().map(|s| s.msn).collect();
            prop_assert!(msns.windows(2).all(|w| w[1] == w[0] + 1));
            for s in p.segments() {
                prop_assert!((s.duration_ms as f64 / 1000.0).round() as u64 <= p.target_secs());
            }
        }
    }
}
