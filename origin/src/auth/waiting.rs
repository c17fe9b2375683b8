//! How many distinct stream names one client address may wait for at once
//! (`--max-waiting-names-per-ip`). A name nobody publishes costs the origin a publish
//! watch and ownership queries to every coworker; more plays of a name the address already
//! waits for share both, so they are not counted (a burst of joins of one stream from
//! behind one NAT is normal). IPv6 addresses are grouped by /64, as in [`super::limits`].
//!
//! Memory stays bounded by what is admitted: an address's entry lives while it has a
//! waiting play, and holds at most the cap's number of names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::limits::bucket_key;

type Table = HashMap<IpAddr, HashMap<String, usize>>;

/// The names each address waits for.
pub struct WaitingNames {
    /// 0 = no limit.
    max: usize,
    table: Arc<Mutex<Table>>,
}

/// One waiting play's place; released on drop.
#[derive(Debug)]
pub struct WaitingGuard {
    held: Option<(Arc<Mutex<Table>>, IpAddr, String)>,
}

/// The address already waits for as many other names as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this address already waits for {0} other stream names")]
pub struct TooManyNames(pub usize);

impl WaitingNames {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            table: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts a play from `ip` waiting for `name`.
    pub fn admit(&self, ip: IpAddr, name: &str) -> Result<WaitingGuard, TooManyNames> {
        if self.max == 0 {
            return Ok(WaitingGuard { held: None });
        }
        let key = bucket_key(ip);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let names = t.entry(key).or_default();
        if let Some(plays) = names.get_mut(name) {
            *plays += 1;
        } else if names.len() >= self.max {
            return Err(TooManyNames(names.len()));
        } else {
            names.insert(name.to_string(), 1);
        }
        Ok(WaitingGuard {
            held: Some((self.table.clone(), key, name.to_string())),
        })
    }

    /// Addresses with a waiting play right now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        let Some((table, key, name)) = self.held.take() else {
            return;
        };
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(names) = t.get_mut(&key) else {
            return;
        };
        if let Some(plays) = names.get_mut(&name) {
            *plays -= 1;
            if *plays == 0 {
                names.remove(&name);
            }
        }
        if names.is_empty() {
            t.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn distinct_names_are_capped_and_more_plays_of_one_name_are_free() {
        let w = WaitingNames::new(2);
        let a = w.admit(ip("10.0.0.1"), "live/a").unwrap();
        let burst: Vec<_> = (0..1000)
            .map(|_| w.admit(ip("10.0.0.1"), "live/b").unwrap())
            .collect();
        assert_eq!(
            w.admit(ip("10.0.0.1"), "live/c").unwrap_err(),
            TooManyNames(2)
        );
        // Another address is not affected; IPv6 addresses of one /64 count together.
        let _o = w.admit(ip("10.0.0.2"), "live/c").unwrap();
        let _v6 = w.admit(ip("2001:db8:0:1::1"), "live/c").unwrap();
        let _v6b = w.admit(ip("2001:db8:0:1::2"), "live/d").unwrap();
        assert!(w.admit(ip("2001:db8:0:1::3"), "live/e").is_err());
        drop(burst);
        let _c = w.admit(ip("10.0.0.1"), "live/c").unwrap();
        drop(a);
        drop(_c);
        assert_eq!(w.tracked(), 2, "10.0.0.1 is forgotten once nothing waits");
    }

    #[test]
    fn zero_is_no_limit() {
        let w = WaitingNames::new(0);
        let g: Vec<_> = (0..100)
            .map(|i| w.admit(ip("10.0.0.1"), &format!("n{i}")).unwrap())
            .collect();
        assert_eq!(w.tracked(), 0);
        drop(g);
    }

    proptest! {
        /// Whatever the order of admits and drops, an address never waits for more than
        /// the cap's names, and nothing is left once every guard is gone.
        #[test]
        fn bounded_and_released(ops in proptest::collection::vec((0u8..4, 0u8..6, any::<bool>()), 1..200)) {
            let w = WaitingNames::new(3);
            let mut held: Vec<(u8, u8, WaitingGuard)> = Vec::new();
            for (addr, name, drop_one) in ops {
                if drop_one && !held.is_empty() {
                    held.remove(usize::from(name) % held.len());
                    continue;
                }
                let ip = IpAddr::from([10, 0, 0, addr]);
                if let Ok(g) = w.admit(ip, &format!("n{name}")) {
                    held.push((addr, name, g));
                }
                let mut names: Vec<_> = held.iter().filter(|h| h.0 == addr).map(|h| h.1).collect();
                names.sort();
                names.dedup();
                prop_assert!(names.len() <= 3);
            }
            held.clear();
            prop_assert_eq!(w.tracked(), 0);
        }
    }
}
