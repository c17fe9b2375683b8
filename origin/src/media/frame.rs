//! A media message parsed once and shared by every player.
//!
//! The publisher's connection builds a [`Frame`] per audio/video/data message; the RTMP
//! chunked form (for the usual play stream id) is encoded once at ingest and the FLV tag
//! form is encoded once, lazily, by the first HTTP-FLV player. Players only ever clone
//! `Arc<Frame>`/`Bytes` handles. The payload is kept once: it is a slice of the chunked
//! form whenever the message fits in one chunk.

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
    rtmp: Bytes,
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
        let rtmp = encode_rtmp(type_id, timestamp, PLAY_STREAM_ID, &payload);
        // One copy of the media: a message that fits one chunk is the tail of its chunked
        // form. Only a larger one (a big keyframe) keeps the payload apart, since chunk
        // headers interleave it on the wire.
        let payload = if payload.len() <= OUT_CHUNK_SIZE {
            rtmp.slice(rtmp.len() - payload.len()..)
        } else {
            payload
        };
        Arc::new(Self {
            kind,
            type_id,
            timestamp,
            payload,
            keyframe,
            sequence_header,
            rtmp,
            flv: OnceLock::new(),
        })
    }

    /// The chunked RTMP form for message stream `stream_id`.
    pub fn rtmp(&self, stream_id: u32) -> Bytes {
        if stream_id == PLAY_STREAM_ID {
            self.rtmp.clone()
        } else {
            encode_rtmp(self.type_id, self.timestamp, stream_id, &self.payload)
        }
    }

    /// The chunked RTMP form for [`PLAY_STREAM_ID`], borrowed.
    pub fn rtmp_ref(&self) -> &Bytes {
        &self.rtmp
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

    /// Bytes this frame occupies (for cache accounting).
    pub fn size(&self) -> usize {
        if self.payload.len() <= OUT_CHUNK_SIZE {
            self.rtmp.len()
        } else {
            self.payload.len() + self.rtmp.len()
        }
    }
}

fn encode_rtmp(type_id: u8, timestamp: u32, stream_id: u32, payload: &[u8]) -> Bytes {
    let cs = match type_id {
        kind::AUDIO => csid::AUDIO,
        kind::VIDEO => csid::VIDEO,
        _ => csid::DATA,
    };
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

    #[test]
    fn the_payload_is_the_tail_of_the_chunked_form_when_it_fits_one_chunk() {
        let small = Bytes::from(vec![0x27u8; 9000]);
        let f = Frame::new(kind::VIDEO, 40, small.clone());
        assert_eq!(f.payload, small);
        assert_eq!(
            f.rtmp_ref().as_ptr_range().end,
            f.payload.as_ptr_range().end,
            "one buffer"
        );
        assert_eq!(f.size(), f.rtmp_ref().len());

        let big = Bytes::from(vec![0x17u8; OUT_CHUNK_SIZE + 10]);
        let f = Frame::new(kind::VIDEO, 0x0100_0000, big.clone());
        assert_eq!(f.payload, big, "kept apart: chunk headers interleave it");
        assert_eq!(f.size(), big.len() + f.rtmp_ref().len());
        let mut dec = chunk::ChunkDecoder::default();
        dec.set_chunk_size(OUT_CHUNK_SIZE as u32).unwrap();
        let mut wire = BytesMut::from(&f.rtmp_ref()[..]);
        let m = dec.decode(&mut wire).unwrap().unwrap();
        assert_eq!((m.timestamp, m.payload), (0x0100_0000, big));
    }
}
