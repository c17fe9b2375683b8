//! Which origins hold a stream key's directory entry: rendezvous (highest-random-weight)
//! hashing of (key, member API address) over the cluster's members. Pure: every origin that
//! has the same member list computes the same answer, and removing a member moves only the
//! keys it held (docs/architecture.md, "Ownership directory").
//!
//! The weight is a fixed function of bytes (FNV-1a, finished with MurmurHash3's 64-bit
//! mixer), never the standard library's hasher, so origins of different builds agree.

use std::fmt::Write;

use origin_wire::addr::HostPort;

use crate::media::StreamKey;

/// Directory origins per key: one failure does not lose the entry.
pub const DIRECTORY_ORIGINS: usize = 2;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        state ^= u64::from(*b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// MurmurHash3's finaliser: every input bit affects every output bit.
fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The hash state of a key, `vhost/app/stream`, reused for every member.
fn key_state(key: &StreamKey) -> u64 {
    let mut s = fnv1a(FNV_OFFSET, key.vhost.as_bytes());
    s = fnv1a(s, b"/");
    s = fnv1a(s, key.app.as_bytes());
    s = fnv1a(s, b"/");
    s = fnv1a(s, key.stream.as_bytes());
    mix(s)
}

/// The weight of `member` (its `host:port` text) for a key's state.
fn weight(key_state: u64, member: &str) -> u64 {
    mix(fnv1a(fnv1a(key_state, b"\0"), member.as_bytes()))
}

/// The key's directory origins, best first: the [`DIRECTORY_ORIGINS`] members of highest
/// weight (ties broken by the address). Fewer when the cluster has fewer members;
/// duplicates in `members` count once.
pub fn directory_origins<'a>(key: &StreamKey, members: &'a [HostPort]) -> Vec<&'a HostPort> {
    let state = key_state(key);
    // (weight, text, member) of the best two so far, best first.
    let mut best: Vec<(u64, String, &HostPort)> = Vec::with_capacity(DIRECTORY_ORIGINS + 1);
    let mut text = String::with_capacity(64);
    for m in members {
        text.clear();
        let _ = write!(text, "{m}");
        let w = weight(state, &text);
        if best.iter().any(|(_, t, _)| *t == text) {
            continue;
        }
        let pos = best
            .iter()
            .position(|(bw, bt, _)| (w, bt.as_str()) > (*bw, text.as_str()))
            .unwrap_or(best.len());
        if pos < DIRECTORY_ORIGINS {
            best.insert(pos, (w, text.clone(), m));
            best.truncate(DIRECTORY_ORIGINS);
        }
    }
    best.into_iter().map(|(_, _, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn members(n: usize) -> Vec<HostPort> {
        (0..n)
            .map(|i| HostPort::new(format!("10.0.{}.{}", i / 250, i % 250 + 1), 1985))
            .collect()
    }

    fn key(i: usize) -> StreamKey {
        StreamKey::new(origin_wire::DEFAULT_VHOST, "live", format!("stream-{i}"))
    }

    fn owned(v: Vec<&HostPort>) -> Vec<HostPort> {
        v.into_iter().cloned().collect()
    }

    #[test]
    fn small_clusters_have_fewer_directory_origins() {
        let k = key(1);
        assert!(directory_origins(&k, &[]).is_empty());
        let one = members(1);
        assert_eq!(owned(directory_origins(&k, &one)), one);
        let two = members(2);
        let d = directory_origins(&k, &two);
        assert_eq!(d.len(), 2);
        assert_ne!(d[0], d[1]);
        let dup = vec![one[0].clone(), one[0].clone()];
        assert_eq!(
            directory_origins(&k, &dup).len(),
            1,
            "a duplicate counts once"
        );
    }

    #[test]
    fn the_answer_is_fixed_across_builds() {
        // Pinned: origins of different versions must agree on where a key lives.
        let m = members(10);
        let d = owned(directory_origins(&key(0), &m));
        let again = owned(directory_origins(&key(0), &m));
        assert_eq!(d, again);
        assert_eq!(weight(key_state(&key(0)), "10.0.0.1:1985"), {
            let s = key_state(&key(0));
            mix(fnv1a(fnv1a(s, b"\0"), b"10.0.0.1:1985"))
        });
        assert_eq!(mix(0), 0);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn keys_spread_evenly_over_members() {
        let m = members(20);
        let keys = 20_000;
        let mut first: HashMap<HostPort, usize> = HashMap::new();
        let mut any: HashMap<HostPort, usize> = HashMap::new();
        for i in 0..keys {
            let d = directory_origins(&key(i), &m);
            assert_eq!(d.len(), 2);
            *first.entry(d[0].clone()).or_default() += 1;
            for x in d {
                *any.entry(x.clone()).or_default() += 1;
            }
        }
        // Expected 1,000 first places and 2,000 entries per member; allow ±20 %.
        for member in &m {
            let f = first.get(member).copied().unwrap_or(0);
            let a = any.get(member).copied().unwrap_or(0);
            assert!((800..=1200).contains(&f), "{member}: first for {f} keys");
            assert!((1600..=2400).contains(&a), "{member}: holds {a} entries");
        }
    }

    proptest! {
        #[test]
        fn every_order_of_the_list_gives_the_same_answer(
            n in 1usize..40,
            k in 0usize..10_000,
            seed in any::<u64>(),
        ) {
            let m = members(n);
            let mut shuffled = m.clone();
            // A deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(
                owned(directory_origins(&key(k), &m)),
                owned(directory_origins(&key(k), &shuffled))
            );
        }

        #[test]
        fn removing_a_member_moves_only_the_keys_it_held(
            n in 3usize..40,
            gone in 0usize..40,
            keys in proptest::collection::vec(0usize..100_000, 1..50),
        ) {
            let m = members(n);
            let gone = &m[gone % n];
            let rest: Vec<HostPort> = m.iter().filter(|x| *x != gone).cloned().collect();
            for k in keys {
                let before = owned(directory_origins(&key(k), &m));
                let after = owned(directory_origins(&key(k), &rest));
                if before.contains(gone) {
                    // The survivor keeps its place; the next best member fills the gap.
                    let kept: Vec<&HostPort> = before.iter().filter(|x| *x != gone).collect();
                    prop_assert!(kept.iter().all(|x| after.contains(x)), "{before:?} -> {after:?}");
                    prop_assert_eq!(&after[0], kept[0]);
                } else {
                    prop_assert_eq!(before, after);
                }
            }
        }

        #[test]
        fn adding_a_member_moves_keys_only_to_it(
            n in 2usize..40,
            keys in proptest::collection::vec(0usize..100_000, 1..50),
        ) {
            let m = members(n + 1);
            let newcomer = &m[n];
            let before_list = &m[..n];
            for k in keys {
                let before = owned(directory_origins(&key(k), before_list));
                let after = owned(directory_origins(&key(k), &m));
                for x in &after {
                    prop_assert!(x == newcomer || before.contains(x), "{before:?} -> {after:?}");
                }
            }
        }
    }
}
