//! The RTMP chunk stream layer, sans-io: a decoder that turns bytes into messages and an
//! encoder that turns messages into chunks.
//!
//! The decoder understands all four header formats, 1/2/3-byte basic headers, extended
//! timestamps (also on continuation chunks), interleaved chunk streams, Set Chunk Size and
//! Abort. It never trusts a declared length to allocate and bounds everything a peer
//! controls (message size, chunk size, number of chunk streams).

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// RTMP's default chunk size before any Set Chunk Size.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// Timestamp field value that announces an extended timestamp.
const EXTENDED: u32 = 0x00ff_ffff;

/// A complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Default cap of command and data messages.
pub const MAX_COMMAND_SIZE: usize = 64 * 1024;

/// Whether a message type is a command, data or shared-object message (AMF-decoded).
pub fn is_command_type(type_id: u8) -> bool {
    (15..=20).contains(&type_id)
}

#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Largest command, data or shared-object message (types 15 to 20) accepted: they
    /// are decoded in full (AMF), so they get a much smaller cap than media.
    pub max_command_size: usize,
    /// Most distinct chunk stream ids one connection may use.
    pub max_chunk_streams: usize,
    /// Largest chunk size a peer may set.
    pub max_chunk_size: usize,
    /// Most bytes of partly received messages one connection may have in flight across
    /// all its chunk streams (each is also capped by `max_message_size`).
    pub max_in_flight: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            max_command_size: MAX_COMMAND_SIZE,
            max_chunk_streams: 64,
            max_chunk_size: 16 << 20,
            max_in_flight: 32 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    #[error("{size} bytes of partly received messages exceed the limit of {limit}")]
    TooMuchInFlight { size: usize, limit: usize },
    #[error("chunk stream {csid} continues (fmt {fmt}) without a previous header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("chunk size {0} is outside 1..={1}")]
    BadChunkSize(u32, usize),
}

#[derive(Debug, Default)]
struct InState {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header carried an extended timestamp.
    extended: bool,
    /// A header has been seen on this chunk stream.
    known: bool,
    /// Timestamp of the message being assembled.
    msg_timestamp: u32,
    partial: BytesMut,
    /// Bytes of the current message still missing (0 = between messages).
    remaining: usize,
}

/// Decodes chunks into messages. Feed it the bytes read from the socket.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: usize,
    limits: DecoderLimits,
    streams: HashMap<u32, InState>,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(DecoderLimits::default())
    }
}

impl ChunkDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: HashMap::new(),
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Applies a peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        // The top bit must be zero; sizes beyond our limit would let a peer make us buffer a lot.
        if size == 0 || size > 0x7fff_ffff || size as usize > self.limits.max_chunk_size {
            return Err(ChunkError::BadChunkSize(size, self.limits.max_chunk_size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Applies an Abort message: drops the partly received message of `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            s.partial.clear();
            s.remaining = 0;
        }
    }

    /// Decodes as many chunks as are complete in `buf` until one message is whole.
    /// Returns `Ok(None)` when more input is needed; consumed bytes are removed from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.decode_chunk(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Message(m) => return Ok(Some(m)),
                Step::Partial => continue,
            }
        }
    }

    fn decode_chunk(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        let data: &[u8] = buf;
        if data.is_empty() {
            return Ok(Step::NeedMore);
        }
        let fmt = data[0] >> 6;
        let (csid, mut pos) = match data[0] & 0x3f {
            0 => {
                if data.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                (64 + u32::from(data[1]), 2)
            }
            1 => {
                if data.len() < 3 {
                    return Ok(Step::NeedMore);
                }
                (64 + u32::from(data[1]) + (u32::from(data[2]) << 8), 3)
            }
            c => (u32::from(c), 1),
        };
        let header_len = [11usize, 7, 3, 0][fmt as usize];
        if data.len() < pos + header_len {
            return Ok(Step::NeedMore);
        }
        if !self.streams.contains_key(&csid) && self.streams.len() >= self.limits.max_chunk_streams
        {
            return Err(ChunkError::TooManyChunkStreams(
                self.limits.max_chunk_streams,
            ));
        }
        let chunk_size = self.chunk_size;
        let max_message = self.limits.max_message_size;
        let max_in_flight = self.limits.max_in_flight;
        // Declared bytes still owed on the other chunk streams (what a new message adds to).
        let in_flight: usize = self
            .streams
            .iter()
            .filter(|(c, st)| **c != csid && st.remaining > 0)
            .map(|(_, st)| st.partial.len() + st.remaining)
            .sum();
        let state = self.streams.entry(csid).or_default();
        if !state.known && fmt >= 2 {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        let h = &data[pos..pos + header_len];
        let ts_field = if fmt <= 2 {
            u32::from_be_bytes([0, h[0], h[1], h[2]])
        } else {
            0
        };
        let (length, type_id) = if fmt <= 1 {
            (u32::from_be_bytes([0, h[3], h[4], h[5]]), h[6])
        } else {
            (state.length, state.type_id)
        };
        let stream_id = if fmt == 0 {
            u32::from_le_bytes([h[7], h[8], h[9], h[10]])
        } else {
            state.stream_id
        };
        pos += header_len;
        let extended = if fmt <= 2 {
            ts_field == EXTENDED
        } else {
            state.extended
        };
        let mut ext_value = 0;
        if extended {
            if data.len() < pos + 4 {
                return Ok(Step::NeedMore);
            }
            ext_value =
                u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
            pos += 4;
        }
        let continuation = fmt == 3 && state.remaining > 0;
        let limit = if is_command_type(type_id) {
            self.limits.max_command_size.min(max_message)
        } else {
            max_message
        };
        if !continuation && length as usize > limit {
            return Err(ChunkError::MessageTooLarge {
                size: length as usize,
                limit,
            });
        }
        if !continuation && in_flight + length as usize > max_in_flight {
            return Err(ChunkError::TooMuchInFlight {
                size: in_flight + length as usize,
                limit: max_in_flight,
            });
        }
        let msg_remaining = if continuation {
            state.remaining
        } else {
            length as usize
        };
        let take = msg_remaining.min(chunk_size);
        if data.len() < pos + take {
            return Ok(Step::NeedMore);
        }

        // The chunk is complete: commit the header to the state.
        if !continuation {
            let field = if extended { ext_value } else { ts_field };
            match fmt {
                0 => {
                    state.timestamp = field;
                    // As ffmpeg does: a later fmt 3 reuses the fmt 0 value as its delta.
                    state.delta = field;
                }
                1 | 2 => {
                    state.delta = field;
                    state.timestamp = state.timestamp.wrapping_add(field);
                }
                _ => {
                    if extended {
                        state.delta = ext_value;
                    }
                    state.timestamp = state.timestamp.wrapping_add(state.delta);
                }
            }
            state.extended = extended;
            state.length = length;
            state.type_id = type_id;
            state.stream_id = stream_id;
            state.known = true;
            state.msg_timestamp = state.timestamp;
            state.remaining = length as usize;
            // A fresh buffer per message, handed over whole when it completes (no split:
            // that would make the buffer shared and cost an allocation per message).
            state.partial = BytesMut::with_capacity(state.remaining.min(64 * 1024));
        }
        buf.advance(pos);
        state.partial.extend_from_slice(&buf[..take]);
        buf.advance(take);
        state.remaining -= take;
        if state.remaining == 0 {
            let whole = std::mem::take(&mut state.partial);
            // A message of more than the first reservation grew by doubling: keep it in
            // an exact buffer (it may be cached for a whole GOP).
            let payload = if whole.capacity() - whole.len() > SLACK {
                Bytes::copy_from_slice(&whole)
            } else {
                whole.freeze()
            };
            return Ok(Step::Message(RawMessage {
                csid,
                timestamp: state.msg_timestamp,
                type_id: state.type_id,
                stream_id: state.stream_id,
                payload,
            }));
        }
        Ok(Step::Partial)
    }
}

/// Spare capacity a completed message may keep in its buffer.
const SLACK: usize = 4096;

enum Step {
    NeedMore,
    Partial,
    Message(RawMessage),
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let v = csid.clamp(320, 65_599) - 64;
            out.put_u8((fmt << 6) | 1);
            out.put_u8((v & 0xff) as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

/// Encodes one message with a full (fmt 0) header and fmt 3 continuations. Needs no state,
/// so a media message can be encoded once and the bytes shared by every player.
pub fn encode_standalone(
    out: &mut BytesMut,
    chunk_size: usize,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
) {
    let extended = timestamp >= EXTENDED;
    encode_header(out, csid, timestamp, type_id, stream_id, payload.len());
    put_payload(
        out,
        chunk_size,
        csid,
        extended.then_some(timestamp),
        payload,
    );
}

/// The full (fmt 0) header of a message of `len` bytes: what [`encode_standalone`] puts
/// before a payload that fits one chunk.
pub fn encode_header(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    len: usize,
) {
    put_basic_header(out, 0, csid);
    put_u24(out, timestamp.min(EXTENDED));
    put_u24(out, len as u32);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if timestamp >= EXTENDED {
        out.put_u32(timestamp);
    }
}

fn put_payload(out: &mut BytesMut, chunk_size: usize, csid: u32, ext: Option<u32>, payload: &[u8]) {
    let chunk_size = chunk_size.max(1);
    let mut chunks = payload.chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for c in chunks {
        put_basic_header(out, 3, csid);
        if let Some(e) = ext {
            out.put_u32(e);
        }
        out.put_slice(c);
    }
}

#[derive(Debug, Clone, Copy)]
struct OutState {
    timestamp: u32,
    delta: Option<u32>,
    length: usize,
    type_id: u8,
    stream_id: u32,
}

/// A stateful encoder that compresses headers (fmt 1/2/3) like real servers do.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: usize,
    prev: HashMap<u32, OutState>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new(DEFAULT_CHUNK_SIZE)
    }
}

impl ChunkEncoder {
    pub fn new(chunk_size: usize) -> Self {
        Self {
            chunk_size: chunk_size.max(1),
            prev: HashMap::new(),
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Changes the outgoing chunk size; send a Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, size: usize) {
        self.chunk_size = size.max(1);
    }

    /// Encodes a message, choosing the smallest header the previous one on `csid` allows.
    pub fn encode(
        &mut self,
        out: &mut BytesMut,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        let prev = self.prev.get(&csid).copied();
        let (fmt, field) = match prev {
            Some(p) if p.stream_id == stream_id && timestamp >= p.timestamp => {
                let delta = timestamp - p.timestamp;
                if p.type_id == type_id && p.length == payload.len() {
                    if p.delta == Some(delta) {
                        (3, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            }
            _ => (0, timestamp),
        };
        let extended = field >= EXTENDED;
        put_basic_header(out, fmt, csid);
        if fmt <= 2 {
            put_u24(out, field.min(EXTENDED));
        }
        if fmt <= 1 {
            put_u24(out, payload.len() as u32);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        // fmt 3 repeats the extended field of the previous header (same delta).
        if extended {
            out.put_u32(field);
        }
        put_payload(
            out,
            self.chunk_size,
            csid,
            extended.then_some(field),
            payload,
        );
        self.prev.insert(
            csid,
            OutState {
                timestamp,
                // After a fmt 0 we do not emit fmt 3 for a new message (the delta is ambiguous).
                delta: if fmt == 0 { None } else { Some(field) },
                length: payload.len(),
                type_id,
                stream_id,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut ChunkDecoder, input: &[u8], splits: &[usize]) -> Vec<RawMessage> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut last = 0;
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        for cut in cuts {
            buf.extend_from_slice(&input[last..cut]);
            last = cut;
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn spec_example_audio_headers() {
        // Three audio messages, 32 bytes each, timestamps 1000, 1020, 1040: fmt 0, 2, 3.
        let mut enc = ChunkEncoder::new(128);
        let mut out = BytesMut::new();
        for ts in [1000, 1020, 1040, 1060] {
            enc.encode(&mut out, 3, ts, 8, 1, &[7u8; 32]);
        }
        assert_eq!(out[0] >> 6, 0);
        assert_eq!(out[44] >> 6, 2, "first delta after fmt 0 is explicit");
        assert_eq!(out[44 + 36] >> 6, 3);
        assert_eq!(out[44 + 36 + 33] >> 6, 3);
        let msgs = decode_all(&mut ChunkDecoder::default(), &out, &[]);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![1000, 1020, 1040, 1060]);
    }

    #[test]
    fn extended_timestamp_on_continuation_chunks() {
        let mut out = BytesMut::new();
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        encode_standalone(&mut out, 128, 6, 0x0100_0000, 9, 1, &payload);
        // fmt0 header + ext + 128, then fmt3 + ext + 128, then fmt3 + ext + 44
        assert_eq!(out.len(), 12 + 4 + 128 + (1 + 4 + 128) + (1 + 4 + 44));
        let msgs = decode_all(&mut ChunkDecoder::default(), &out, &[13, 200]);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, 0x0100_0000);
        assert_eq!(&msgs[0].payload[..], &payload[..]);
    }

    #[test]
    fn interleaved_chunk_streams_and_abort() {
        let mut dec = ChunkDecoder::default();
        let mut a = BytesMut::new();
        encode_standalone(&mut a, 128, 4, 10, 8, 1, &[1u8; 200]);
        let mut v = BytesMut::new();
        encode_standalone(&mut v, 128, 6, 10, 9, 1, &[2u8; 200]);
        // chunk 1 of audio, chunk 1 of video, chunk 2 of audio, chunk 2 of video
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&a[..12 + 128]);
        wire.extend_from_slice(&v[..12 + 128]);
        wire.extend_from_slice(&a[12 + 128..]);
        wire.extend_from_slice(&v[12 + 128..]);
        let msgs = decode_all(&mut dec, &wire, &[5, 77, 300]);
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].csid, msgs[0].payload.len()), (4, 200));
        assert_eq!((msgs[1].csid, msgs[1].payload.len()), (6, 200));

        // Abort drops the partial message; the next fmt 0 starts fresh.
        let mut buf = BytesMut::from(&a[..12 + 128]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        dec.abort(4);
        let mut buf = BytesMut::from(&a[..]);
        let m = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(m.payload.len(), 200);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = DecoderLimits {
            max_message_size: 100,
            max_command_size: 50,
            max_chunk_streams: 2,
            max_chunk_size: 1000,
            max_in_flight: 1000,
        };
        let mut dec = ChunkDecoder::new(limits);
        let mut out = BytesMut::new();
        // Commands get the smaller cap, media the larger one.
        encode_standalone(&mut out, 128, 3, 0, 20, 0, &[0u8; 51]);
        assert_eq!(
            dec.decode(&mut out),
            Err(ChunkError::MessageTooLarge {
                size: 51,
                limit: 50
            })
        );
        let mut dec = ChunkDecoder::new(limits);
        let mut out = BytesMut::new();
        encode_standalone(&mut out, 128, 4, 0, 8, 1, &[0u8; 60]);
        assert_eq!(dec.decode(&mut out).unwrap().unwrap().payload.len(), 60);
        let mut out = BytesMut::new();
        encode_standalone(&mut out, 128, 4, 0, 8, 1, &[0u8; 101]);
        assert_eq!(
            dec.decode(&mut out),
            Err(ChunkError::MessageTooLarge {
                size: 101,
                limit: 100
            })
        );
        let mut dec = ChunkDecoder::new(limits);
        let mut out = BytesMut::new();
        for csid in [3, 4, 5] {
            encode_standalone(&mut out, 128, csid, 0, 8, 1, &[0u8; 1]);
        }
        assert!(dec.decode(&mut out).unwrap().is_some());
        assert!(dec.decode(&mut out).unwrap().is_some());
        assert_eq!(
            dec.decode(&mut out),
            Err(ChunkError::TooManyChunkStreams(2))
        );
        assert!(dec.set_chunk_size(0).is_err());
        assert!(dec.set_chunk_size(1001).is_err());
        assert!(dec.set_chunk_size(0x8000_0000).is_err());
        // fmt 3 on an unknown chunk stream is a protocol error, not a panic.
        let mut dec = ChunkDecoder::default();
        let mut bad = BytesMut::from(&[0xc9u8, 1, 2, 3][..]);
        assert!(matches!(
            dec.decode(&mut bad),
            Err(ChunkError::NoPreviousHeader { .. })
        ));
    }

    #[test]
    fn partial_messages_in_flight_are_bounded_across_chunk_streams() {
        let limits = DecoderLimits {
            max_message_size: 1000,
            max_in_flight: 1500,
            ..DecoderLimits::default()
        };
        let mut dec = ChunkDecoder::new(limits);
        // Two 800-byte messages started on two chunk streams: the second exceeds 1500.
        let mut wire = BytesMut::new();
        for cs in [4, 6] {
            let mut m = BytesMut::new();
            encode_standalone(&mut m, 128, cs, 0, 9, 1, &[0u8; 800]);
            wire.extend_from_slice(&m[..12 + 128]);
        }
        assert_eq!(
            dec.decode(&mut wire),
            Err(ChunkError::TooMuchInFlight {
                size: 1600,
                limit: 1500
            })
        );
        // Completed messages do not count.
        let mut dec = ChunkDecoder::new(limits);
        let mut wire = BytesMut::new();
        for cs in [4, 6, 7] {
            encode_standalone(&mut wire, 128, cs, 0, 9, 1, &[0u8; 800]);
        }
        for _ in 0..3 {
            assert!(dec.decode(&mut wire).unwrap().is_some());
        }
    }

    #[test]
    fn basic_header_sizes() {
        for csid in [2u32, 63, 64, 319, 320, 65_599] {
            let mut out = BytesMut::new();
            encode_standalone(&mut out, 128, csid, 1, 8, 1, b"x");
            let m = ChunkDecoder::default().decode(&mut out).unwrap().unwrap();
            assert_eq!(m.csid, csid);
        }
    }

    #[derive(Debug, Clone)]
    struct Msg {
        csid: u32,
        ts: u32,
        type_id: u8,
        msid: u32,
        len: usize,
    }

    fn arb_msg() -> impl Strategy<Value = Msg> {
        (
            prop_oneof![2u32..10, 60u32..70, 315u32..325, Just(65_599u32)],
            prop_oneof![0u32..5000, 0x00ff_fff0u32..0x0100_0010, any::<u32>()],
            prop_oneof![Just(8u8), Just(9u8), Just(18u8), Just(20u8)],
            0u32..3,
            prop_oneof![0usize..10, 100usize..400, 3000usize..5000],
        )
            .prop_map(|(csid, ts, type_id, msid, len)| Msg {
                csid,
                ts,
                type_id,
                msid,
                len,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn prop_round_trip(
            msgs in prop::collection::vec(arb_msg(), 1..20),
            chunk_size in prop_oneof![1usize..8, 100usize..200, Just(4096usize), Just(60000usize)],
            splits in prop::collection::vec(any::<usize>(), 0..12),
            compress in any::<bool>(),
        ) {
            let mut enc = ChunkEncoder::new(chunk_size);
            let mut wire = BytesMut::new();
            // Monotonic timestamps per chunk stream let the encoder use fmt 1/2/3.
            let mut expected = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                let payload: Vec<u8> = (0..m.len).map(|j| (i + j) as u8).collect();
                if compress {
                    enc.encode(&mut wire, m.csid, m.ts, m.type_id, m.msid, &payload);
                } else {
                    encode_standalone(&mut wire, chunk_size, m.csid, m.ts, m.type_id, m.msid, &payload);
                }
                expected.push(RawMessage { csid: m.csid, timestamp: m.ts, type_id: m.type_id, stream_id: m.msid, payload: payload.into() });
            }
            let mut dec = ChunkDecoder::default();
            dec.set_chunk_size(chunk_size as u32).unwrap();
            let got = decode_all(&mut dec, &wire, &splits);
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn prop_garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048), cs in 1u32..300) {
            let mut dec = ChunkDecoder::default();
            let _ = dec.set_chunk_size(cs);
            let mut buf = BytesMut::from(&data[..]);
            for _ in 0..64 {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
