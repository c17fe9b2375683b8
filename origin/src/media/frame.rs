//! A media message parsed once and shared by every player.
//!
//! The publisher's connection builds a [`Frame`] per audio/video/data message; the RTMP
//! chunked form (for the usual play stream id) is encoded once at ingest and the FLV tag
//! form is encoded once, lazily, by the first HTTP-FLV player. Players only ever clone
//! `Arc<Frame>`/`Bytes` handles. The payload is kept once: when the message fits one
//! chunk, its chunked form is a small header plus the payload itself (written with one
//! more iovec), so ingest neither copies nor allocates a second buffer per frame.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use super::flv;
use crate::rtmp::chunk;
use crate::rtmp::message::{csid, kind};

/// The message stream id nearly every player gets from createStream; frames are
/// pre-encoded for it. Players on another id get a per-player encoding.
pub const PLAY_STREAM_ID: u32 = 1;
/// Chunk size we announce to every peer and encode media with.
pub const OUT_CHUNK_SIZE: usize = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Audio,
    Video,
    /// AMF0 data (onMetaData); AMF3 data is passed through with its own type id.
    Data,
}

#[derive(Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// RTMP message type id (8, 9, 18 or 15).
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
    pub keyframe: bool,
    pub sequence_header: bool,
    /// The chunked RTMP form for [`PLAY_STREAM_ID`]: the chunk header, followed on the
    /// wire by `payload` itself (not copied) when the message fits one chunk; the whole
    /// encoding for a larger one, whose payload chunk headers interleave.
    rtmp: Bytes,
    /// `rtmp` is only the header (the message fits one chunk).
    header_only: bool,
    flv: OnceLock<Bytes>,
}

impl Frame {
    pub fn new(type_id: u8, timestamp: u32, payload: Bytes) -> Arc<Self> {
        let (kind, keyframe, sequence_header) = match type_id {
            kind::VIDEO => {
                let v = flv::inspect_video(&payload);
                (
                    FrameKind::Video,
                    v.keyframe && !v.sequence_header,
                    v.sequence_header,
                )
            }
            kind::AUDIO => (
                FrameKind::Audio,
                false,
                flv::inspect_audio(&payload).sequence_header,
            ),
            _ => (FrameKind::Data, false, false),
        };
        let header_only = payload.len() <= OUT_CHUNK_SIZE;
        let rtmp = if header_only {
            let mut head = BytesMut::with_capacity(MAX_HEADER);
            chunk::encode_header(
                &mut head,
                csid_of(type_id),
                timestamp,
                type_id,
                PLAY_STREAM_ID,
                payload.len(),
            );
            head.freeze()
        } else {
            encode_rtmp(type_id, timestamp, PLAY_STREAM_ID, &payload)
        };
        Arc::new(Self {
            kind,
            type_id,
            timestamp,
            payload,
            keyframe,
            sequence_header,
            rtmp,
            header_only,
            flv: OnceLock::new(),
        })
    }

    /// Appends the chunked RTMP form for message stream `stream_id` to `out` (one or
    /// two shared buffers).
    pub fn push_rtmp(&self, stream_id: u32, out: &mut Vec<Bytes>) {
        if stream_id == PLAY_STREAM_ID {
            out.push(self.rtmp.clone());
            if self.header_only {
                out.push(self.payload.clone());
            }
        } else {
            out.push(encode_rtmp(
                self.type_id,
                self.timestamp,
                stream_id,
                &self.payload,
            ));
        }
    }

    /// The chunked RTMP form for [`PLAY_STREAM_ID`], borrowed, in its parts (the second
    /// may be empty).
    pub fn rtmp_parts(&self) -> [&Bytes; 2] {
        static NOTHING: Bytes = Bytes::new();
        [
            &self.rtmp,
            if self.header_only {
                &self.payload
            } else {
                &NOTHING
            },
        ]
    }

    /// Length of the chunked RTMP form for [`PLAY_STREAM_ID`].
    pub fn rtmp_len(&self) -> usize {
        self.rtmp.len()
            + if self.header_only {
                self.payload.len()
            } else {
                0
            }
    }

    /// The FLV tag form (encoded once, on first use).
    pub fn flv(&self) -> Bytes {
        self.flv
            .get_or_init(|| {
                let tag_type = match self.kind {
                    FrameKind::Audio => flv::TAG_AUDIO,
                    FrameKind::Video => flv::TAG_VIDEO,
                    FrameKind::Data => flv::TAG_SCRIPT,
                };
                flv::encode_tag(tag_type, self.timestamp, &self.payload)
            })
            .clone()
    }

    /// Bytes this frame occupies (for cache accounting): the payload, once, plus the
    /// chunked form where that is a copy.
    pub fn size(&self) -> usize {
        self.payload.len() + self.rtmp.len()
    }
}

/// Longest fmt 0 chunk header: 3-byte basic header, 11 bytes, extended timestamp.
const MAX_HEADER: usize = 18;

fn csid_of(type_id: u8) -> u32 {
    match type_id {
        kind::AUDIO => csid::AUDIO,
        kind::VIDEO => csid::VIDEO,
        _ => csid::DATA,
    }
}

fn encode_rtmp(type_id: u8, timestamp: u32, stream_id: u32, payload: &[u8]) -> Bytes {
    let cs = csid_of(type_id);
    let mut out = BytesMut::with_capacity(payload.len() + 16 + payload.len() / OUT_CHUNK_SIZE * 5);
    chunk::encode_standalone(
        &mut out,
        OUT_CHUNK_SIZE,
        cs,
        timestamp,
        type_id,
        stream_id,
        payload,
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(f: &Frame) -> Vec<u8> {
        f.rtmp_parts()
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect()
    }

    #[test]
    fn the_payload_is_shared_with_the_chunked_form_when_it_fits_one_chunk() {
        let mut dec = chunk::ChunkDecoder::default();
        dec.set_chunk_size(OUT_CHUNK_SIZE as u32).unwrap();
        for (len, ts) in [
            (9000, 40),
            (OUT_CHUNK_SIZE, 0x0100_0000),
            (OUT_CHUNK_SIZE + 10, 7),
        ] {
            let payload = Bytes::from(vec![0x27u8; len]);
            let f = Frame::new(kind::VIDEO, ts, payload.clone());
            assert_eq!(f.payload, payload);
            let fits = len <= OUT_CHUNK_SIZE;
            assert_eq!(
                f.rtmp_parts()[1].as_ptr() == payload.as_ptr(),
                fits,
                "shared, not copied, when it fits ({len})"
            );
            assert_eq!(f.size(), f.rtmp_len() + if fits { 0 } else { len });
            let mut out = Vec::new();
            f.push_rtmp(PLAY_STREAM_ID, &mut out);
            let pushed: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(pushed, wire(&f));
            assert_eq!(f.rtmp_len(), pushed.len());
            // The same bytes as the one-buffer encoding, and they decode back.
            let whole = encode_rtmp(kind::VIDEO, ts, PLAY_STREAM_ID, &payload);
            assert_eq!(&whole[..], &pushed[..]);
            let mut buf = BytesMut::from(&pushed[..]);
            let m = dec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(
                (m.timestamp, m.stream_id, m.payload),
                (ts, PLAY_STREAM_ID, payload)
            );
        }
    }
}
