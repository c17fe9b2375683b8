//! RTMP message types and the protocol control messages (types 1–6), sans-io.

use bytes::{BufMut, Bytes, BytesMut};

/// Message type ids.
pub mod kind {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream ids we send on.
pub mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    /// SRS sends onStatus (and the 302) on chunk stream 5.
    pub const STATUS: u32 = 5;
    pub const AUDIO: u32 = 4;
    pub const VIDEO: u32 = 6;
    pub const DATA: u32 = 5;
}

/// User Control events (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength { stream_id: u32, millis: u32 },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    Other { event: u16, data: Bytes },
}

/// Protocol control messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    SetChunkSize(u32),
    Abort(u32),
    Ack(u32),
    UserControl(UserControl),
    WindowAckSize(u32),
    SetPeerBandwidth { size: u32, limit: u8 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("control message type {type_id} has {len} bytes, too short")]
pub struct ControlError {
    pub type_id: u8,
    pub len: usize,
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    p.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Control {
    /// Parses a control message; `Ok(None)` when the type is not a control type.
    pub fn parse(type_id: u8, p: &[u8]) -> Result<Option<Control>, ControlError> {
        let err = || ControlError {
            type_id,
            len: p.len(),
        };
        Ok(Some(match type_id {
            kind::SET_CHUNK_SIZE => {
                Control::SetChunkSize(be32(p, 0).ok_or_else(err)? & 0x7fff_ffff)
            }
            kind::ABORT => Control::Abort(be32(p, 0).ok_or_else(err)?),
            kind::ACK => Control::Ack(be32(p, 0).ok_or_else(err)?),
            kind::WINDOW_ACK_SIZE => Control::WindowAckSize(be32(p, 0).ok_or_else(err)?),
            kind::SET_PEER_BANDWIDTH => Control::SetPeerBandwidth {
                size: be32(p, 0).ok_or_else(err)?,
                limit: *p.get(4).unwrap_or(&2),
            },
            kind::USER_CONTROL => {
                let event = p
                    .get(0..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or_else(err)?;
                let arg = be32(p, 2);
                Control::UserControl(match (event, arg) {
                    (0, Some(a)) => UserControl::StreamBegin(a),
                    (1, Some(a)) => UserControl::StreamEof(a),
                    (2, Some(a)) => UserControl::StreamDry(a),
                    (3, Some(a)) => UserControl::SetBufferLength {
                        stream_id: a,
                        millis: be32(p, 6).ok_or_else(err)?,
                    },
                    (4, Some(a)) => UserControl::StreamIsRecorded(a),
                    (6, Some(a)) => UserControl::PingRequest(a),
                    (7, Some(a)) => UserControl::PingResponse(a),
                    _ => UserControl::Other {
                        event,
                        data: Bytes::copy_from_slice(&p[2..]),
                    },
                })
            }
            _ => return Ok(None),
        }))
    }

    /// Type id and payload.
    pub fn encode(&self) -> (u8, Bytes) {
        let mut b = BytesMut::with_capacity(10);
        let t = match self {
            Control::SetChunkSize(n) => {
                b.put_u32(*n & 0x7fff_ffff);
                kind::SET_CHUNK_SIZE
            }
            Control::Abort(c) => {
                b.put_u32(*c);
                kind::ABORT
            }
            Control::Ack(n) => {
                b.put_u32(*n);
                kind::ACK
            }
            Control::WindowAckSize(n) => {
                b.put_u32(*n);
                kind::WINDOW_ACK_SIZE
            }
            Control::SetPeerBandwidth { size, limit } => {
                b.put_u32(*size);
                b.put_u8(*limit);
                kind::SET_PEER_BANDWIDTH
            }
            Control::UserControl(uc) => {
                match uc {
                    UserControl::StreamBegin(s) => put_event(&mut b, 0, *s),
                    UserControl::StreamEof(s) => put_event(&mut b, 1, *s),
                    UserControl::StreamDry(s) => put_event(&mut b, 2, *s),
                    UserControl::SetBufferLength { stream_id, millis } => {
                        put_event(&mut b, 3, *stream_id);
                        b.put_u32(*millis);
                    }
                    UserControl::StreamIsRecorded(s) => put_event(&mut b, 4, *s),
                    UserControl::PingRequest(t) => put_event(&mut b, 6, *t),
                    UserControl::PingResponse(t) => put_event(&mut b, 7, *t),
                    UserControl::Other { event, data } => {
                        b.put_u16(*event);
                        b.put_slice(data);
                    }
                }
                kind::USER_CONTROL
            }
        };
        (t, b.freeze())
    }
}

fn put_event(b: &mut BytesMut, event: u16, arg: u32) {
    b.put_u16(event);
    b.put_u32(arg);
}

/// Splits an aggregate message (type 22) into its sub-messages: `(type, timestamp, payload)`.
/// Sub-message timestamps are rebased onto the aggregate's own timestamp.
///
/// Only media sub-messages (audio, video, AMF0/AMF3 data) are returned; any other type is
/// skipped. The caller hands every sub-message to the stream as media, so a control or
/// command type smuggled into an aggregate would otherwise be fanned out to every player
/// (a Set Chunk Size there desynchronises all of them).
pub fn split_aggregate(timestamp: u32, payload: &Bytes) -> Vec<(u8, u32, Bytes)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first_ts = None;
    while pos + 11 <= payload.len() {
        let h = &payload[pos..pos + 11];
        let t = h[0];
        let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        let end = start + len;
        if end + 4 > payload.len() {
            break;
        }
        let base = *first_ts.get_or_insert(ts);
        let media = matches!(
            t,
            kind::AUDIO | kind::VIDEO | kind::DATA_AMF0 | kind::DATA_AMF3
        );
        if media {
            out.push((
                t,
                timestamp.wrapping_add(ts.wrapping_sub(base)),
                payload.slice(start..end),
            ));
        }
        pos = end + 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_round_trip() {
        for c in [
            Control::SetChunkSize(60000),
            Control::Abort(4),
            Control::Ack(123),
            Control::WindowAckSize(2_500_000),
            Control::SetPeerBandwidth {
                size: 2_500_000,
                limit: 2,
            },
            Control::UserControl(UserControl::StreamBegin(1)),
            Control::UserControl(UserControl::StreamEof(1)),
            Control::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            }),
            Control::UserControl(UserControl::PingRequest(99)),
            Control::UserControl(UserControl::PingResponse(99)),
        ] {
            let (t, p) = c.encode();
            assert_eq!(Control::parse(t, &p).unwrap(), Some(c));
        }
        assert!(Control::parse(kind::SET_CHUNK_SIZE, &[0, 1]).is_err());
        assert!(Control::parse(kind::USER_CONTROL, &[0]).is_err());
        assert_eq!(Control::parse(kind::VIDEO, &[]).unwrap(), None);
    }

    #[test]
    fn aggregate_split() {
        let mut agg = BytesMut::new();
        for (i, body) in [&b"abc"[..], &b"de"[..]].iter().enumerate() {
            agg.put_u8(9);
            agg.put_slice(&(body.len() as u32).to_be_bytes()[1..]);
            let ts = 1000 + i as u32 * 40;
            agg.put_slice(&ts.to_be_bytes()[1..]);
            agg.put_u8((ts >> 24) as u8);
            agg.put_slice(&[0, 0, 0]);
            agg.put_slice(body);
            agg.put_u32(11 + body.len() as u32);
        }
        let parts = split_aggregate(5000, &agg.freeze());
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].1, &parts[0].2[..]), (5000, &b"abc"[..]));
        assert_eq!((parts[1].1, &parts[1].2[..]), (5040, &b"de"[..]));
        // Truncated input yields what is complete and never panics.
        assert!(split_aggregate(0, &Bytes::from_static(&[9, 0, 0])).is_empty());
    }

    #[test]
    fn aggregate_never_yields_control_or_command_messages() {
        // A publisher's aggregate carrying Set Chunk Size, a command, a nested aggregate and
        // audio: only the audio may reach the stream (and so the players).
        let mut agg = BytesMut::new();
        let parts: [(u8, &[u8]); 5] = [
            (kind::SET_CHUNK_SIZE, &[0, 0, 0, 1]),
            (kind::COMMAND_AMF0, b"\x02\x00\x08onStatus"),
            (kind::AGGREGATE, b""),
            (kind::AUDIO, b"\xaf\x01a"),
            (kind::USER_CONTROL, &[0, 1, 0, 0, 0, 1]),
        ];
        for (i, (t, body)) in parts.iter().enumerate() {
            agg.put_u8(*t);
            agg.put_slice(&(body.len() as u32).to_be_bytes()[1..]);
            agg.put_slice(&(10 * i as u32).to_be_bytes()[1..]);
            agg.put_u8(0);
            agg.put_slice(&[0, 0, 0]);
            agg.put_slice(body);
            agg.put_u32(11 + body.len() as u32);
        }
        let got = split_aggregate(100, &agg.freeze());
        assert_eq!(
            got,
            vec![(kind::AUDIO, 130, Bytes::from_static(b"\xaf\x01a"))]
        );
    }
}
