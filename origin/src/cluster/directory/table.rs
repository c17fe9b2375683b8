//! What one origin holds as a directory origin: claims of stream keys, each an owner and a
//! lease. Pure state over values (the time is passed in); the API and the local owner call
//! it under one lock (docs/architecture.md, "Ownership directory").
//!
//! - The first claim wins: while a claim's lease runs, another owner's claim is refused
//!   with the holder's address and claim number, unless it is a takeover (the key's first
//!   directory origin granted it, and that one decides) or it replaces exactly the claim
//!   held (its owner was found gone; two claimers replacing the same stale claim cannot
//!   both win).
//! - The owner's own claim renews the lease (a renewal is a claim); the latest claim of
//!   an owner names the claim a release must carry.
//! - The table is bounded: past `max_entries` live claims a new key is refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use origin_wire::directory::OwnerAddr;

use crate::media::StreamKey;

/// Claims one origin holds by default (a few hundred bytes each).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// One key's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub owner: OwnerAddr,
    pub claim: u64,
    pub expires: Instant,
}

/// Why a claim was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("stream is claimed by the origin at {}", .0.api)]
    Conflict(OwnerAddr, u64),
    #[error("directory is full ({0} claims)")]
    Full(usize),
}

/// Whether a claim may replace another owner's live claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// No: the first claim wins.
    No,
    /// Yes: the key's first directory origin granted it.
    Always,
    /// Only the claim of this number (its owner was found gone).
    Replace(u64),
}

impl Takeover {
    /// From a claim request's fields.
    pub fn of(takeover: bool, replace: Option<u64>) -> Self {
        match (takeover, replace) {
            (true, _) => Takeover::Always,
            (false, Some(n)) => Takeover::Replace(n),
            (false, None) => Takeover::No,
        }
    }
}

/// The claims of one directory origin.
#[derive(Debug)]
pub struct ClaimTable {
    entries: HashMap<StreamKey, Claim>,
    lease: Duration,
    max_entries: usize,
}

impl ClaimTable {
    pub fn new(lease: Duration, max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            lease,
            max_entries,
        }
    }

    /// The lease a granted claim gets.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Claims or renews `key` for `owner`; the lease granted. `replace` names the claim
    /// (of another owner) this one may replace.
    pub fn claim(
        &mut self,
        key: &StreamKey,
        owner: &OwnerAddr,
        claim: u64,
        how: Takeover,
        now: Instant,
    ) -> Result<Duration, ClaimError> {
        let expires = now + self.lease;
        if let Some(held) = self.entries.get_mut(key) {
            let live = held.expires > now;
            let may = match how {
                Takeover::No => false,
                Takeover::Always => true,
                Takeover::Replace(n) => n == held.claim,
            };
            if live && held.owner.api != owner.api && !may {
                return Err(ClaimError::Conflict(held.owner.clone(), held.claim));
            }
            *held = Claim {
                owner: owner.clone(),
                claim,
                expires,
            };
            return Ok(self.lease);
        }
        if self.entries.len() >= self.max_entries {
            self.sweep(now);
            if self.entries.len() >= self.max_entries {
                return Err(ClaimError::Full(self.max_entries));
            }
        }
        self.entries.insert(
            key.clone(),
            Claim {
                owner: owner.clone(),
                claim,
                expires,
            },
        );
        Ok(self.lease)
    }

    /// Drops `owner`'s claim `claim` of `key`; false if that is not the claim held.
    pub fn release(&mut self, key: &StreamKey, owner: &str, claim: u64) -> bool {
        let held = self
            .entries
            .get(key)
            .is_some_and(|c| c.owner.api == owner && c.claim == claim);
        if held {
            self.entries.remove(key);
        }
        held
    }

    /// The owner of `key`, if its claim's lease runs.
    pub fn lookup(&self, key: &StreamKey, now: Instant) -> Option<&OwnerAddr> {
        self.entries
            .get(key)
            .filter(|c| c.expires > now)
            .map(|c| &c.owner)
    }

    /// Forgets the claims whose lease ran out.
    pub fn sweep(&mut self, now: Instant) {
        self.entries.retain(|_, c| c.expires > now);
    }

    /// Claims held (expired ones included until a sweep).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    fn owner(i: u8) -> OwnerAddr {
        OwnerAddr {
            api: format!("10.0.0.{i}:1985"),
            rtmp: format!("10.0.0.{i}:1935"),
            http: None,
        }
    }

    fn key(s: &str) -> StreamKey {
        StreamKey::new(origin_wire::DEFAULT_VHOST, "live", s)
    }

    #[test]
    fn the_first_claim_wins_until_its_lease_runs_out() {
        let mut t = ClaimTable::new(LEASE, 10);
        let t0 = Instant::now();
        assert_eq!(
            t.claim(&key("a"), &owner(1), 1, Takeover::No, t0),
            Ok(LEASE)
        );
        assert_eq!(
            t.claim(&key("a"), &owner(2), 2, Takeover::No, t0),
            Err(ClaimError::Conflict(owner(1), 1))
        );
        assert_eq!(t.lookup(&key("a"), t0), Some(&owner(1)));
        // Renewed by its owner at 8 s: still held at 15 s.
        let t8 = t0 + Duration::from_secs(8);
        assert_eq!(
            t.claim(&key("a"), &owner(1), 1, Takeover::No, t8),
            Ok(LEASE)
        );
        let t15 = t0 + Duration::from_secs(15);
        assert!(t.claim(&key("a"), &owner(2), 2, Takeover::No, t15).is_err());
        // Not renewed: at 18 s it is gone and another owner may claim.
        let t18 = t0 + Duration::from_secs(18);
        assert_eq!(t.lookup(&key("a"), t18), None);
        assert_eq!(
            t.claim(&key("a"), &owner(2), 2, Takeover::No, t18),
            Ok(LEASE)
        );
        assert_eq!(t.lookup(&key("a"), t18), Some(&owner(2)));
    }

    #[test]
    fn a_takeover_replaces_a_live_claim() {
        let mut t = ClaimTable::new(LEASE, 10);
        let now = Instant::now();
        t.claim(&key("a"), &owner(1), 1, Takeover::No, now).unwrap();
        assert_eq!(
            t.claim(&key("a"), &owner(2), 2, Takeover::Always, now),
            Ok(LEASE)
        );
        assert_eq!(t.lookup(&key("a"), now), Some(&owner(2)));
        // Replacing names the claim: of two replacing the same stale claim, one wins.
        assert_eq!(
            t.claim(&key("a"), &owner(3), 3, Takeover::Replace(2), now),
            Ok(LEASE)
        );
        assert_eq!(
            t.claim(&key("a"), &owner(4), 4, Takeover::Replace(2), now),
            Err(ClaimError::Conflict(owner(3), 3))
        );
        assert_eq!(t.lookup(&key("a"), now), Some(&owner(3)));
    }

    #[test]
    fn a_release_drops_only_the_claim_it_names() {
        let mut t = ClaimTable::new(LEASE, 10);
        let now = Instant::now();
        t.claim(&key("a"), &owner(1), 1, Takeover::No, now).unwrap();
        assert!(!t.release(&key("a"), &owner(2).api, 1), "not its owner");
        assert!(!t.release(&key("a"), &owner(1).api, 9), "an older publish");
        assert!(!t.release(&key("b"), &owner(1).api, 1), "not claimed");
        // A republish on the same origin renews under its own number.
        t.claim(&key("a"), &owner(1), 2, Takeover::No, now).unwrap();
        assert!(
            !t.release(&key("a"), &owner(1).api, 1),
            "the old publish's release"
        );
        assert_eq!(t.lookup(&key("a"), now), Some(&owner(1)));
        assert!(t.release(&key("a"), &owner(1).api, 2));
        assert_eq!(t.lookup(&key("a"), now), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_renews_and_reuses_expired_room() {
        let mut t = ClaimTable::new(LEASE, 2);
        let t0 = Instant::now();
        t.claim(&key("a"), &owner(1), 1, Takeover::No, t0).unwrap();
        t.claim(&key("b"), &owner(1), 1, Takeover::No, t0).unwrap();
        assert_eq!(
            t.claim(&key("c"), &owner(1), 1, Takeover::No, t0),
            Err(ClaimError::Full(2))
        );
        assert!(t.claim(&key("a"), &owner(1), 1, Takeover::No, t0).is_ok());
        let later = t0 + LEASE + Duration::from_millis(1);
        assert!(
            t.claim(&key("c"), &owner(1), 1, Takeover::No, later)
                .is_ok()
        );
        assert_eq!(t.len(), 1, "the expired claims were swept");
    }

    proptest! {
        /// Whatever the order of claims from several owners, a live key has exactly the
        /// owner whose claim was granted first (no takeovers), and the table never grows
        /// past its bound.
        #[test]
        fn one_owner_per_live_key_and_bounded(
            ops in proptest::collection::vec((0u8..4, 0u8..6, 0u64..4, any::<bool>()), 1..200),
        ) {
            let mut t = ClaimTable::new(LEASE, 4);
            let t0 = Instant::now();
            let mut holder: HashMap<u8, (u8, u64)> = HashMap::new();
            let mut at = 0;
            for (who, k, step, release) in ops {
                // Time only goes forward.
                at += step;
                let now = t0 + Duration::from_secs(at);
                let name = format!("k{k}");
                if release {
                    t.release(&key(&name), &owner(who).api, 1);
                    if holder.get(&k).is_some_and(|(h, _)| *h == who) {
                        holder.remove(&k);
                    }
                    continue;
                }
                let r = t.claim(&key(&name), &owner(who), 1, Takeover::No, now);
                let live = holder.get(&k).filter(|(_, exp)| *exp > at).map(|(h, _)| *h);
                match (live, r) {
                    (Some(h), Ok(_)) => {
                        prop_assert_eq!(h, who);
                        holder.insert(k, (who, at + 10));
                    }
                    (Some(h), Err(ClaimError::Conflict(o, _))) => {
                        prop_assert_ne!(h, who);
                        prop_assert_eq!(o, owner(h));
                    }
                    (None, Ok(_)) => {
                        holder.insert(k, (who, at + 10));
                    }
                    (None, Err(ClaimError::Full(_))) => {}
                    (l, r) => prop_assert!(false, "live {:?}, claim {:?}", l, r),
                }
                prop_assert!(t.len() <= 4);
            }
        }
    }
}
