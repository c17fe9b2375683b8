//! FLV: tag payload inspection (codecs, keyframes, sequence headers, Enhanced RTMP FourCC)
//! and the FLV file/stream format (header, tags), sans-io.

use bytes::{BufMut, Bytes, BytesMut};

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// What a video payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoInfo {
    pub keyframe: bool,
    pub sequence_header: bool,
    pub codec: VideoCodec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    #[default]
    Unknown,
    H263,
    Vp6,
    H264,
    Hevc,
    Av1,
    Vp9,
}

impl VideoCodec {
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Unknown => "unknown",
            VideoCodec::H263 => "H263",
            VideoCodec::Vp6 => "VP6",
            VideoCodec::H264 => "H264",
            VideoCodec::Hevc => "HEVC",
            VideoCodec::Av1 => "AV1",
            VideoCodec::Vp9 => "VP9",
        }
    }
}

/// Inspects a video tag payload, legacy or Enhanced RTMP (ExHeader bit set).
pub fn inspect_video(p: &[u8]) -> VideoInfo {
    let Some(&b0) = p.first() else {
        return VideoInfo::default();
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [1 bit ex][3 bits frame type][4 bits packet type][FourCC]
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        let codec = match p.get(1..5) {
            Some(b"hvc1") => VideoCodec::Hevc,
            Some(b"av01") => VideoCodec::Av1,
            Some(b"vp09") => VideoCodec::Vp9,
            Some(b"avc1") => VideoCodec::H264,
            _ => VideoCodec::Unknown,
        };
        return VideoInfo {
            // packet type 0 = SequenceStart, 5 = MPEG2TSSequenceStart
            sequence_header: packet_type == 0 || packet_type == 5,
            keyframe: frame_type == 1,
            codec,
        };
    }
    let frame_type = b0 >> 4;
    let codec = match b0 & 0x0f {
        2 => VideoCodec::H263,
        4 | 5 => VideoCodec::Vp6,
        7 => VideoCodec::H264,
        12 => VideoCodec::Hevc,
        13 => VideoCodec::Av1,
        _ => VideoCodec::Unknown,
    };
    let avc_like = matches!(codec, VideoCodec::H264 | VideoCodec::Hevc | VideoCodec::Av1);
    VideoInfo {
        keyframe: frame_type == 1,
        sequence_header: avc_like && p.get(1) == Some(&0),
        codec,
    }
}

/// What an audio payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AudioInfo {
    pub sequence_header: bool,
    pub codec: &'static str,
}

pub fn inspect_audio(p: &[u8]) -> AudioInfo {
    let Some(&b0) = p.first() else {
        return AudioInfo::default();
    };
    let format = b0 >> 4;
    if format == 9 {
        // Enhanced RTMP audio: packet type in the low nibble, FourCC follows.
        let codec = match p.get(1..5) {
            Some(b"Opus") => "Opus",
            Some(b"fLaC") => "FLAC",
            Some(b"ac-3") => "AC3",
            Some(b"ec-3") => "EAC3",
            Some(b"mp4a") => "AAC",
            Some(b".mp3") => "MP3",
            _ => "unknown",
        };
        return AudioInfo {
            sequence_header: b0 & 0x0f == 0,
            codec,
        };
    }
    let codec = match format {
        2 | 14 => "MP3",
        10 => "AAC",
        11 => "Speex",
        7 | 8 => "G711",
        0 | 3 => "PCM",
        4..=6 => "Nellymoser",
        _ => "unknown",
    };
    AudioInfo {
        sequence_header: format == 10 && p.get(1) == Some(&0),
        codec,
    }
}

/// The 9-byte FLV header plus PreviousTagSize0.
pub fn file_header(has_audio: bool, has_video: bool) -> Bytes {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    Bytes::copy_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One FLV tag: header, payload and the trailing PreviousTagSize.
pub fn encode_tag(tag_type: u8, timestamp: u32, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(11 + payload.len() + 4);
    b.put_u8(tag_type);
    b.put_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    b.put_slice(&(timestamp & 0x00ff_ffff).to_be_bytes()[1..]);
    b.put_u8((timestamp >> 24) as u8);
    b.put_slice(&[0, 0, 0]);
    b.put_slice(payload);
    b.put_u32(11 + payload.len() as u32);
    b.freeze()
}

/// A tag read from an FLV file or stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub tag_type: u8,
    pub timestamp: u32,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("not an FLV file (bad signature)")]
    BadSignature,
    #[error("FLV tag of {0} bytes exceeds the limit")]
    TagTooLarge(usize),
    #[error("FLV header claims {0} bytes (DataOffset), more than the limit")]
    HeaderTooLarge(usize),
}

/// Largest FLV tag accepted from a file or a peer.
pub const MAX_TAG_SIZE: usize = 16 << 20;
/// Largest FLV header (its DataOffset field) accepted. Version 1 headers are 9 bytes; a
/// peer's header claiming up to 4 GiB must not make the demuxer buffer everything it sends
/// while waiting for the first tag.
pub const MAX_HEADER_SIZE: usize = 4096;

/// Incremental FLV demuxer: push bytes, pull tags.
#[derive(Debug, Default)]
pub struct Demuxer {
    buf: BytesMut,
    header_done: bool,
}

impl Demuxer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Next complete tag, `Ok(None)` when more input is needed.
    pub fn next_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        if !self.header_done {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvError::BadSignature);
            }
            let offset =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if offset > MAX_HEADER_SIZE {
                return Err(FlvError::HeaderTooLarge(offset));
            }
            let skip = offset.max(9) + 4;
            if self.buf.len() < skip {
                return Ok(None);
            }
            let _ = self.buf.split_to(skip);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let h = &self.buf[..11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        if size > MAX_TAG_SIZE {
            return Err(FlvError::TagTooLarge(size));
        }
        if self.buf.len() < 11 + size + 4 {
            return Ok(None);
        }
        let tag_type = h[0] & 0x1f;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let mut whole = self.buf.split_to(11 + size + 4);
        let _ = whole.split_to(11);
        whole.truncate(size);
        Ok(Some(Tag {
            tag_type,
            timestamp,
            payload: whole.freeze(),
        }))
    }
}

/// Parses a whole FLV file in memory.
pub fn parse_file(data: &[u8]) -> Result<Vec<Tag>, FlvError> {
    let mut d = Demuxer::new();
    d.push(data);
    let mut tags = Vec::new();
    while let Some(t) = d.next_tag()? {
        tags.push(t);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_demuxer_round_trips_at_any_split(
            tags in prop::collection::vec(
                (prop_oneof![Just(TAG_AUDIO), Just(TAG_VIDEO), Just(TAG_SCRIPT)], any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)),
                0..12,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut file = BytesMut::new();
            file.extend_from_slice(&file_header(true, true));
            for (t, ts, p) in &tags {
                file.extend_from_slice(&encode_tag(*t, *ts, p));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(file.len() + 1)).collect();
            points.push(file.len());
            points.sort_unstable();
            let mut d = Demuxer::new();
            let mut got = Vec::new();
            let mut last = 0;
            for p in points {
                d.push(&file[last..p]);
                last = p;
                while let Some(t) = d.next_tag().unwrap() {
                    got.push((t.tag_type, t.timestamp, t.payload.to_vec()));
                }
            }
            prop_assert_eq!(got, tags);
        }

        #[test]
        fn prop_garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut d = Demuxer::new();
            d.push(&data);
            while let Ok(Some(_)) = d.next_tag() {}
        }
    }

    #[test]
    fn legacy_and_enhanced_video() {
        let key_seq = inspect_video(&[0x17, 0x00, 0, 0, 0]);
        assert_eq!(
            (key_seq.keyframe, key_seq.sequence_header, key_seq.codec),
            (true, true, VideoCodec::H264)
        );
        let inter = inspect_video(&[0x27, 0x01]);
        assert_eq!((inter.keyframe, inter.sequence_header), (false, false));
        // Enhanced RTMP: ex bit, keyframe, CodedFramesX (3), hvc1
        let hevc = inspect_video(&[0x80 | 0x10 | 3, b'h', b'v', b'c', b'1']);
        assert_eq!(
            (hevc.keyframe, hevc.sequence_header, hevc.codec),
            (true, false, VideoCodec::Hevc)
        );
        let av1_seq = inspect_video(&[0x80 | 0x10, b'a', b'v', b'0', b'1']);
        assert_eq!(
            (av1_seq.sequence_header, av1_seq.codec),
            (true, VideoCodec::Av1)
        );
        assert_eq!(inspect_video(&[]), VideoInfo::default());
    }

    #[test]
    fn audio() {
        assert_eq!(
            inspect_audio(&[0xaf, 0x00]),
            AudioInfo {
                sequence_header: true,
                codec: "AAC"
            }
        );
        assert!(!inspect_audio(&[0xaf, 0x01]).sequence_header);
        assert_eq!(inspect_audio(&[0x2f]).codec, "MP3");
    }

    #[test]
    fn tags_round_trip_through_demuxer() {
        let mut file = BytesMut::new();
        file.extend_from_slice(&file_header(true, true));
        file.extend_from_slice(&encode_tag(TAG_VIDEO, 0x0102_0304, b"abc"));
        file.extend_from_slice(&encode_tag(TAG_AUDIO, 5, b""));
        let mut d = Demuxer::new();
        let mut tags = Vec::new();
        for b in file.chunks(4) {
            d.push(b);
            while let Some(t) = d.next_tag().unwrap() {
                tags.push(t);
            }
        }
        assert_eq!(tags.len(), 2);
        assert_eq!(
            (tags[0].tag_type, tags[0].timestamp, &tags[0].payload[..]),
            (TAG_VIDEO, 0x0102_0304, &b"abc"[..])
        );
        assert_eq!(parse_file(b"NOPE00000000"), Err(FlvError::BadSignature));
    }

    #[test]
    fn huge_header_offset_is_rejected_not_buffered() {
        // DataOffset 0xffffffff: before, the demuxer waited (and buffered) for 4 GiB.
        let mut d = Demuxer::new();
        d.push(b"FLV\x01\x05\xff\xff\xff\xff");
        assert_eq!(d.next_tag(), Err(FlvError::HeaderTooLarge(0xffff_ffff)));
        // A larger-than-9 header within the limit is still skipped.
        let mut file = b"FLV\x01\x01\x00\x00\x00\x0d\xaa\xbb\xcc\xdd\x00\x00\x00\x00".to_vec();
        file.extend_from_slice(&encode_tag(TAG_VIDEO, 1, b"x"));
        assert_eq!(parse_file(&file).unwrap().len(), 1);
    }
}
