//! The chunk decoder on arbitrary bytes, as a connection drives it.
//!
//! Input layout: `[max_message][max_streams][max_chunk][initial chunk size: 4][split seed: 2]`
//! then the chunk stream. The same stream is decoded three ways — all at once, split at
//! pseudo-random points, and one byte at a time — and the three must agree exactly
//! (messages, error, unconsumed bytes). Set Chunk Size and Abort messages are applied the
//! way `server::connection` applies them, so the fuzzer reaches every chunk size.
//!
//! Asserted: no panic; every message fits the configured `max_message_size` (and a
//! command or data message `max_command_size`); the csid is
//! one a basic header can carry; the chunk size stays within `1..=max_chunk_size`.

#![forbid(unsafe_code)]

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use origin::rtmp::chunk::{ChunkDecoder, ChunkError, DecoderLimits, RawMessage};
use origin::rtmp::message::Control;

const HEADER: usize = 9;

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<RawMessage>,
    error: Option<ChunkError>,
    /// Unconsumed input at the end (only compared when no error stopped the run).
    left: Vec<u8>,
}

fn run(limits: DecoderLimits, initial: u32, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut dec = ChunkDecoder::new(limits);
    // An out-of-range initial size is rejected and the default (128) stays.
    let _ = dec.set_chunk_size(initial);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        buf.extend_from_slice(&input[last..cut]);
        last = cut;
        loop {
            match dec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(m)) => {
                    assert!(
                        m.payload.len() <= limits.max_message_size,
                        "message of {} bytes exceeds max_message_size {}",
                        m.payload.len(),
                        limits.max_message_size
                    );
                    assert!(
                        !origin::rtmp::chunk::is_command_type(m.type_id)
                            || m.payload.len() <= limits.max_command_size,
                        "command message of {} bytes exceeds max_command_size {}",
                        m.payload.len(),
                        limits.max_command_size
                    );
                    assert!(m.csid >= 2 && m.csid <= 65_599, "csid {} out of range", m.csid);
                    // What server::connection does with protocol control messages.
                    match Control::parse(m.type_id, &m.payload) {
                        Ok(Some(Control::SetChunkSize(n))) => {
                            if let Err(e) = dec.set_chunk_size(n) {
                                messages.push(m);
                                return Outcome { messages, error: Some(e), left: Vec::new() };
                            }
                        }
                        Ok(Some(Control::Abort(cs))) => dec.abort(cs),
                        _ => {}
                    }
                    let cs = dec.chunk_size();
                    assert!(cs >= 1 && cs <= limits.max_chunk_size.max(128), "chunk size {cs}");
                    messages.push(m);
                }
                Err(e) => return Outcome { messages, error: Some(e), left: Vec::new() },
            }
        }
    }
    Outcome { messages, error: None, left: buf.to_vec() }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let (h, input) = data.split_at(HEADER);
    let limits = DecoderLimits {
        max_message_size: [0, 1, 7, 128, 129, 1000, 65_536, 16 << 20][usize::from(h[0] & 7)],
        max_command_size: [0, 129, 1000, 65_536][usize::from(h[0] >> 6)],
        max_chunk_streams: usize::from(h[1] % 66),
        max_chunk_size: [1, 2, 127, 128, 4096, 65_536, 1 << 20, 16 << 20][usize::from(h[2] & 7)],
        max_in_flight: [0, 1, 128, 1000, 65_536, 1 << 20, 16 << 20, 32 << 20][usize::from(h[2] >> 5)],
    };
    let raw = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
    // Mostly small sizes (where chunking is interesting), sometimes any value at all.
    let initial = if raw & 0x8000_0000 != 0 { raw & 0x7fff_ffff } else { raw % 1024 };

    // Pseudo-random split points from a 16-bit seed (xorshift).
    let mut seed = u32::from(u16::from_be_bytes([h[7], h[8]])) | 0x1_0000;
    let mut cuts: Vec<usize> = (0..(h[7] & 15))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize % (input.len() + 1)
        })
        .collect();
    cuts.sort_unstable();

    let whole = run(limits, initial, input, &[]);
    let split = run(limits, initial, input, &cuts);
    assert_eq!(whole, split, "split feeding changed the result (cuts {cuts:?})");
    if input.len() <= 2048 {
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let one = run(limits, initial, input, &bytewise);
        assert_eq!(whole, one, "byte-at-a-time feeding changed the result");
    }
});
