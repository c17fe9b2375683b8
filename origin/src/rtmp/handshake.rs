//! The RTMP handshake, sans-io: the simple handshake and the digest ("complex") handshake
//! Flash Player and FMS use, for both the server and the client side.
//!
//! Server: feed C0+C1 (1537 bytes) to [`server_response`] and send the returned S0+S1+S2;
//! then read and discard C2 (1536 bytes). Client: send [`client_c0c1`], read S0+S1+S2,
//! send [`client_c2`].

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const RTMP_VERSION: u8 = 3;
pub const PACKET_SIZE: usize = 1536;
const DIGEST_LEN: usize = 32;

/// "Genuine Adobe Flash Player 001" followed by the 32-byte constant.
const FP_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
/// "Genuine Adobe Flash Media Server 001" followed by the same constant.
const FMS_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const FP_KEY_SHORT: usize = 30;
const FMS_KEY_SHORT: usize = 36;
/// Version we announce in S1 (FMS 3.5.3.1, like nginx-rtmp): clients with a digest check it.
const SERVER_VERSION: [u8; 4] = [3, 5, 3, 1];
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("unsupported RTMP version {0} in C0 (only 3 is served)")]
    BadVersion(u8),
    #[error("handshake packet has {0} bytes, expected {1}")]
    BadLength(usize, usize),
}

/// Which handshake the peer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Simple,
    /// Digest handshake; the schema says where the digest block sits.
    Digest(Schema),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Key block first, digest block second (offset base 772).
    KeyFirst,
    /// Digest block first (offset base 8).
    DigestFirst,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn digest_offset(packet: &[u8], schema: Schema) -> usize {
    let base = match schema {
        Schema::DigestFirst => 8,
        Schema::KeyFirst => 772,
    };
    let sum: usize = packet[base..base + 4].iter().map(|b| usize::from(*b)).sum();
    base + 4 + sum % 728
}

/// Digest of a packet with the 32 digest bytes at `at` left out.
fn packet_digest(packet: &[u8], at: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac(key, &[&packet[..at], &packet[at + DIGEST_LEN..]])
}

/// Finds the schema whose embedded digest verifies under `key`.
fn find_digest(packet: &[u8], key: &[u8]) -> Option<(Schema, usize)> {
    [Schema::DigestFirst, Schema::KeyFirst]
        .into_iter()
        .find_map(|schema| {
            let at = digest_offset(packet, schema);
            (packet_digest(packet, at, key) == packet[at..at + DIGEST_LEN]).then_some((schema, at))
        })
}

/// Fills `packet` with a digest at the schema's position.
fn embed_digest(packet: &mut [u8], schema: Schema, key: &[u8]) {
    let at = digest_offset(packet, schema);
    let d = packet_digest(packet, at, key);
    packet[at..at + DIGEST_LEN].copy_from_slice(&d);
}

fn random_packet(time: u32, version: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; PACKET_SIZE];
    rand::rng().fill_bytes(&mut p[8..]);
    p[..4].copy_from_slice(&time.to_be_bytes());
    p[4..8].copy_from_slice(&version);
    p
}

/// Classifies C1: digest when a version is set and a digest verifies, else simple.
pub fn classify_c1(c1: &[u8]) -> Kind {
    if c1.len() != PACKET_SIZE || c1[4..8] == [0, 0, 0, 0] {
        return Kind::Simple;
    }
    match find_digest(c1, &FP_KEY[..FP_KEY_SHORT]) {
        Some((schema, _)) => Kind::Digest(schema),
        None => Kind::Simple,
    }
}

/// Server side: given C0+C1, returns which handshake the client used and S0+S1+S2.
pub fn server_response(c0c1: &[u8]) -> Result<(Kind, Vec<u8>), HandshakeError> {
    if c0c1.len() != 1 + PACKET_SIZE {
        return Err(HandshakeError::BadLength(c0c1.len(), 1 + PACKET_SIZE));
    }
    if c0c1[0] != RTMP_VERSION {
        return Err(HandshakeError::BadVersion(c0c1[0]));
    }
    let c1 = &c0c1[1..];
    let kind = classify_c1(c1);
    let mut out = Vec::with_capacity(1 + 2 * PACKET_SIZE);
    out.push(RTMP_VERSION);
    match kind {
        Kind::Simple => {
            // S1: our time and zero version; S2 echoes C1.
            let s1 = random_packet(0, [0; 4]);
            out.extend_from_slice(&s1);
            out.extend_from_slice(c1);
        }
        Kind::Digest(schema) => {
            let mut s1 = random_packet(0, SERVER_VERSION);
            embed_digest(&mut s1, schema, &FMS_KEY[..FMS_KEY_SHORT]);
            out.extend_from_slice(&s1);
            let c1_at = digest_offset(c1, schema);
            let c1_digest = &c1[c1_at..c1_at + DIGEST_LEN];
            let mut s2 = random_packet(0, [0; 4]);
            rand::rng().fill_bytes(&mut s2);
            let key = hmac(&FMS_KEY, &[c1_digest]);
            let sig = hmac(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]);
            s2[PACKET_SIZE - DIGEST_LEN..].copy_from_slice(&sig);
            out.extend_from_slice(&s2);
        }
    }
    Ok((kind, out))
}

/// Checks that S2 answers a digest C1 (what a Flash client verifies).
pub fn verify_s2(c1: &[u8], s2: &[u8]) -> bool {
    if c1.len() != PACKET_SIZE || s2.len() != PACKET_SIZE {
        return false;
    }
    let Some((_, at)) = find_digest(c1, &FP_KEY[..FP_KEY_SHORT]) else {
        return false;
    };
    let key = hmac(&FMS_KEY, &[&c1[at..at + DIGEST_LEN]]);
    hmac(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]) == s2[PACKET_SIZE - DIGEST_LEN..]
}

/// Checks that S1 carries a valid server digest.
pub fn verify_s1(s1: &[u8]) -> bool {
    s1.len() == PACKET_SIZE && find_digest(s1, &FMS_KEY[..FMS_KEY_SHORT]).is_some()
}

/// Client side: C0+C1. `digest` selects the Flash-style digest handshake.
pub fn client_c0c1(digest: bool) -> Vec<u8> {
    let mut c1 = if digest {
        random_packet(0, CLIENT_VERSION)
    } else {
        random_packet(0, [0; 4])
    };
    if digest {
        embed_digest(&mut c1, Schema::DigestFirst, &FP_KEY[..FP_KEY_SHORT]);
    }
    let mut out = Vec::with_capacity(1 + PACKET_SIZE);
    out.push(RTMP_VERSION);
    out.extend_from_slice(&c1);
    out
}

/// Client side: C2 for a given S1 (echo; servers accept it for both handshakes).
pub fn client_c2(s1: &[u8]) -> Vec<u8> {
    s1.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_handshake_echoes_c1() {
        let c0c1 = client_c0c1(false);
        let (kind, s) = server_response(&c0c1).unwrap();
        assert_eq!(kind, Kind::Simple);
        assert_eq!(s.len(), 1 + 2 * PACKET_SIZE);
        assert_eq!(s[0], 3);
        assert_eq!(&s[1 + PACKET_SIZE..], &c0c1[1..]);
    }

    #[test]
    fn digest_handshake_both_schemas() {
        for schema in [Schema::DigestFirst, Schema::KeyFirst] {
            let mut c1 = random_packet(0, CLIENT_VERSION);
            embed_digest(&mut c1, schema, &FP_KEY[..FP_KEY_SHORT]);
            assert_eq!(classify_c1(&c1), Kind::Digest(schema));
            let mut c0c1 = vec![3];
            c0c1.extend_from_slice(&c1);
            let (kind, s) = server_response(&c0c1).unwrap();
            assert_eq!(kind, Kind::Digest(schema));
            let s1 = &s[1..1 + PACKET_SIZE];
            let s2 = &s[1 + PACKET_SIZE..];
            assert!(verify_s1(s1));
            assert!(verify_s2(&c1, s2));
            assert_eq!(&s1[4..8], &SERVER_VERSION);
        }
    }

    #[test]
    fn version_set_but_no_digest_falls_back_to_simple() {
        let c1 = random_packet(0, CLIENT_VERSION);
        let mut c0c1 = vec![3];
        c0c1.extend_from_slice(&c1);
        let (kind, s) = server_response(&c0c1).unwrap();
        assert_eq!(kind, Kind::Simple);
        assert_eq!(&s[1 + PACKET_SIZE..], &c1[..]);
    }

    #[test]
    fn rejects_bad_c0_and_sizes() {
        let mut c0c1 = client_c0c1(true);
        c0c1[0] = 6;
        assert_eq!(server_response(&c0c1), Err(HandshakeError::BadVersion(6)));
        assert_eq!(
            server_response(&[3; 10]),
            Err(HandshakeError::BadLength(10, 1537))
        );
        let mut garbage = b"GET / HTTP/1.1\r\n".to_vec();
        garbage.resize(1537, b'x');
        assert_eq!(
            server_response(&garbage),
            Err(HandshakeError::BadVersion(b'G'))
        );
    }
}
