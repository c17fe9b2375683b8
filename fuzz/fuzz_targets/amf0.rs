//! AMF0: decode arbitrary bytes; whatever decodes must re-encode and decode to the same
//! values, and the re-encoding must be a fixed point (encode ∘ decode ∘ encode = encode).
//!
//! Equality is structural with numbers (and Date millis) compared by bit pattern: a NaN
//! decoded from the wire is re-encoded with the very same bits, but `NaN != NaN` under
//! `PartialEq`, so plain `assert_eq!` would report a false round-trip failure.
//!
//! AVM+ (0x11) needs no exclusion: the decoder keeps everything after the marker as raw
//! bytes and stops, and the encoder writes marker + those bytes back, so it round-trips as
//! long as it is the last thing in the input (anything else makes the decode fail, because
//! an enclosing object never sees its end marker).

#![forbid(unsafe_code)]

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use origin::rtmp::amf0::{self, Decoder, Limits, Value};

fn same(a: &Value, b: &Value) -> bool {
    fn props(a: &[(String, Value)], b: &[(String, Value)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.to_bits() == y.to_bits(),
        (Value::Date { millis: x, timezone: tx }, Value::Date { millis: y, timezone: ty }) => {
            x.to_bits() == y.to_bits() && tx == ty
        }
        (Value::Object(x), Value::Object(y)) | (Value::EcmaArray(x), Value::EcmaArray(y)) => props(x, y),
        (Value::StrictArray(x), Value::StrictArray(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (
            Value::TypedObject { class: ca, properties: pa },
            Value::TypedObject { class: cb, properties: pb },
        ) => ca == cb && props(pa, pb),
        _ => a == b,
    }
}

fn all_same(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

fuzz_target!(|data: &[u8]| {
    let decoded = amf0::decode_all(data);

    // Tight limits only ever add errors: a success under them is the same success by default.
    let tight = Limits { max_depth: 4, max_string: 64, max_entries: 8, max_values: 64 };
    if let Ok(small) = Decoder::with_limits(data, tight).decode_all() {
        let full = decoded.as_ref().expect("tight limits accepted what the defaults reject");
        assert!(all_same(&small, full));
    }

    // Value-at-a-time decoding never panics either (what command parsing does).
    let mut d = Decoder::new(data);
    while !d.is_empty() {
        if d.decode().is_err() {
            break;
        }
    }

    let Ok(values) = decoded else { return };
    let encoded = amf0::encode_all(&values);
    let again = match amf0::decode_all(&encoded) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded values do not decode: {e}\n{values:?}"),
    };
    assert!(all_same(&values, &again), "round trip changed the values:\n{values:?}\n{again:?}");
    let mut reencoded = BytesMut::new();
    for v in &again {
        v.encode(&mut reencoded);
    }
    assert_eq!(&encoded[..], &reencoded[..], "encoding is not a fixed point");
});
