//! A media message parsed once and shared by every player.
//!
//! The publisher's connection builds a [`Frame`] per audio/video/data message; the RTMP
//! chunked form (for the usual play stream id) is encoded once at ingest and the FLV tag
//! form is encoded once, lazily, by the first HTTP-FLV player. Players only ever clone
//! `Arc<Frame>`/`Bytes` handles.

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
        self.payload.len() + self.rtmp.len()
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
