//! Encoder → decoder round trip for arbitrary message sequences, chunk sizes and split
//! points: what `ChunkEncoder` (compressed fmt 1/2/3 headers) or `encode_standalone`
//! (fmt 0 + fmt 3) writes, `ChunkDecoder` must give back exactly.
//!
//! Input: `[chunk size: 2][flags]` then 8-byte message descriptors
//! `[csid: 2][timestamp: 4][type][stream id + length selector]`.

#![forbid(unsafe_code)]

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use origin::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage, encode_standalone};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let chunk_size = usize::from(u16::from_be_bytes([data[0], data[1]])) + 1;
    let flags = data[2];
    let compress = flags & 1 != 0;
    let mut enc = ChunkEncoder::new(chunk_size);
    let mut wire = BytesMut::new();
    let mut expected = Vec::new();
    for (i, d) in data[3..].chunks_exact(8).take(32).enumerate() {
        if wire.len() > 8 * 1024 {
            break; // keeps one execution cheap; longer streams add nothing new
        }
        // Chunk stream ids a basic header can carry: 2..=65599.
        let csid = 2 + u32::from(u16::from_be_bytes([d[0], d[1]])) % 65_598;
        let mut timestamp = u32::from_be_bytes([d[2], d[3], d[4], d[5]]);
        if flags & 2 != 0 {
            // Small timestamps make fmt 2/3 (same delta) likely.
            timestamp &= 0xff;
        }
        let type_id = d[6];
        let stream_id = u32::from(d[7] & 3);
        let len = [0usize, 1, 2, 127, 128, 129, 300, 1500][usize::from(d[7] >> 5)];
        let payload: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
        if compress {
            enc.encode(&mut wire, csid, timestamp, type_id, stream_id, &payload);
        } else {
            encode_standalone(&mut wire, chunk_size, csid, timestamp, type_id, stream_id, &payload);
        }
        expected.push(RawMessage { csid, timestamp, type_id, stream_id, payload: payload.into() });
    }
    let limits = DecoderLimits { max_chunk_streams: 65_600, ..DecoderLimits::default() };
    let mut dec = ChunkDecoder::new(limits);
    dec.set_chunk_size(chunk_size as u32).expect("chunk size within limits");
    let mut got = Vec::new();
    // Feed in pieces of a size derived from the flags to exercise partial chunks too.
    let step = usize::from(flags >> 2) * 7 + 1;
    let mut buf = BytesMut::new();
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(m) = dec.decode(&mut buf).expect("encoder output must decode") {
            got.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    assert_eq!(got, expected);
});
