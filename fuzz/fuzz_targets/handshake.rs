//! The handshake on arbitrary input.
//!
//! * `server_response` on the raw input (any length, any C0): never panics; on success it
//!   answers S0+S1+S2 of the right size, agrees with `classify_c1`, echoes C1 in S2 for the
//!   simple handshake and produces a verifiable S1/S2 for the digest handshake.
//! * `classify_c1`, `verify_s1` and `verify_s2` on arbitrary slices never panic.
//! * A C1 built from the input with a valid Flash Player digest embedded (either schema,
//!   arbitrary offsets and content) must be classified as digest and answered with an S1
//!   and S2 that a Flash client accepts. Random bytes never carry a valid HMAC, so without
//!   this the fuzzer could not reach the digest path at all.

#![forbid(unsafe_code)]

#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use origin::rtmp::handshake::{
    Kind, PACKET_SIZE, RTMP_VERSION, Schema, classify_c1, server_response, verify_s1, verify_s2,
};
use sha2::Sha256;

/// "Genuine Adobe Flash Player 001": the key a client signs C1 with.
const FP_KEY: &[u8] = b"Genuine Adobe Flash Player 001";

fn offset(p: &[u8], schema: Schema) -> usize {
    let base = match schema {
        Schema::DigestFirst => 8,
        Schema::KeyFirst => 772,
    };
    base + 4 + p[base..base + 4].iter().map(|b| usize::from(*b)).sum::<usize>() % 728
}

fn sign(c1: &mut [u8], schema: Schema) {
    let at = offset(c1, schema);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(FP_KEY).expect("any key length");
    mac.update(&c1[..at]);
    mac.update(&c1[at + 32..]);
    let d: [u8; 32] = mac.finalize().into_bytes().into();
    c1[at..at + 32].copy_from_slice(&d);
}

fn check_response(c0c1: &[u8]) {
    let Ok((kind, s)) = server_response(c0c1) else {
        assert!(c0c1.len() != 1 + PACKET_SIZE || c0c1[0] != RTMP_VERSION, "valid C0+C1 rejected");
        return;
    };
    let c1 = &c0c1[1..];
    assert_eq!(s.len(), 1 + 2 * PACKET_SIZE);
    assert_eq!(s[0], RTMP_VERSION);
    assert_eq!(kind, classify_c1(c1));
    let (s1, s2) = s[1..].split_at(PACKET_SIZE);
    match kind {
        Kind::Simple => assert_eq!(s2, c1, "simple S2 must echo C1"),
        Kind::Digest(_) => {
            assert!(verify_s1(s1), "S1 digest does not verify");
            assert!(verify_s2(c1, s2), "S2 does not answer C1's digest");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_response(data);
    let _ = classify_c1(data);
    let _ = verify_s1(data);
    let mid = data.len() / 2;
    let _ = verify_s2(&data[..mid], &data[mid..]);
    if data.len() >= 2 * PACKET_SIZE {
        let _ = verify_s2(&data[..PACKET_SIZE], &data[PACKET_SIZE..2 * PACKET_SIZE]);
    }

    // A signed C1 from the input (cycled to 1536 bytes).
    let Some((&sel, rest)) = data.split_first() else { return };
    if rest.is_empty() {
        return;
    }
    let mut c1: Vec<u8> = rest.iter().copied().cycle().take(PACKET_SIZE).collect();
    if c1[4..8] == [0, 0, 0, 0] {
        c1[4] = 9; // a digest client announces a version
    }
    let schema = if sel & 1 == 0 { Schema::DigestFirst } else { Schema::KeyFirst };
    sign(&mut c1, schema);
    // The server tries DigestFirst first; a KeyFirst-signed C1 whose DigestFirst slot also
    // verifies would need an HMAC collision.
    assert_eq!(classify_c1(&c1), Kind::Digest(schema));
    let mut c0c1 = vec![RTMP_VERSION];
    c0c1.extend_from_slice(&c1);
    check_response(&c0c1);
});
