//! Per-client limits at accept: concurrent connections per address and a rate of new
//! connections per address (a token bucket). IPv6 clients are grouped by /64, the block one
//! subscriber normally gets; IPv4-mapped IPv6 addresses count as IPv4.
//!
//! Memory stays bounded: an entry exists only while its address has open connections or a
//! bucket that is not yet full again; entries are swept at most once a second, on admit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rules::canonical;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// `--max-connections-per-ip` connections are already open from this address.
    Connections,
    /// New connections from this address arrive faster than `--max-connection-rate-per-ip`.
    Rate,
}

impl LimitExceeded {
    pub fn reason(self) -> &'static str {
        match self {
            LimitExceeded::Connections => "max_connections_per_ip",
            LimitExceeded::Rate => "connection_rate_per_ip",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitsConfig {
    /// Most open connections per address (0 = no limit).
    pub max_per_ip: usize,
    /// New connections per second per address (0 = no limit); bursts up to
    /// `max(1, rate)` connections.
    pub rate_per_ip: f64,
}

#[derive(Debug)]
struct Entry {
    open: usize,
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    swept: Instant,
}

pub struct IpLimits {
    config: LimitsConfig,
    table: Arc<Mutex<Table>>,
}

/// Holds one admitted connection's place; releases it on drop.
#[derive(Debug)]
pub struct IpGuard {
    table: Option<(Arc<Mutex<Table>>, IpAddr)>,
    burst: f64,
}

/// The key an address is counted under.
pub(super) fn bucket_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

impl IpLimits {
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            config,
            table: Arc::new(Mutex::new(Table {
                entries: HashMap::new(),
                swept: Instant::now(),
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.max_per_ip > 0 || self.config.rate_per_ip > 0.0
    }

    fn burst(&self) -> f64 {
        self.config.rate_per_ip.max(1.0)
    }

    /// Admits a new connection from `ip`, or says which limit it exceeds.
    pub fn admit(&self, ip: IpAddr) -> Result<IpGuard, LimitExceeded> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, now: Instant) -> Result<IpGuard, LimitExceeded> {
        let burst = self.burst();
        if !self.enabled() {
            return Ok(IpGuard { table: None, burst });
        }
        let key = bucket_key(ip);
        let rate = self.config.rate_per_ip;
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(t.swept) >= Duration::from_secs(1) {
            t.swept = now;
            t.entries.retain(|_, e| {
                refill(e, rate, burst, now);
                e.open > 0 || e.tokens < burst
            });
        }
        let e = t.entries.entry(key).or_insert(Entry {
            open: 0,
            tokens: burst,
            refilled: now,
        });
        if self.config.max_per_ip > 0 && e.open >= self.config.max_per_ip {
            return Err(LimitExceeded::Connections);
        }
        if rate > 0.0 {
            refill(e, rate, burst, now);
            if e.tokens < 1.0 {
                return Err(LimitExceeded::Rate);
            }
            e.tokens -= 1.0;
        }
        e.open += 1;
        Ok(IpGuard {
            table: Some((self.table.clone(), key)),
            burst,
        })
    }

    /// Addresses tracked right now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }
}

fn refill(e: &mut Entry, rate: f64, burst: f64, now: Instant) {
    if rate <= 0.0 {
        e.tokens = burst;
        return;
    }
    let dt = now.saturating_duration_since(e.refilled).as_secs_f64();
    e.tokens = (e.tokens + dt * rate).min(burst);
    e.refilled = now;
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let Some((table, key)) = self.table.take() else {
            return;
        };
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = t.entries.get_mut(&key) {
            e.open = e.open.saturating_sub(1);
            // Without a rate limit nothing else is remembered: forget the address now.
            if e.open == 0 && e.tokens >= self.burst {
                t.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn off_by_default() {
        let l = IpLimits::new(LimitsConfig::default());
        let guards: Vec<_> = (0..1000).map(|_| l.admit(ip("1.2.3.4")).unwrap()).collect();
        assert_eq!(l.tracked(), 0);
        drop(guards);
    }

    #[test]
    fn concurrent_limit_per_address() {
        let l = IpLimits::new(LimitsConfig {
            max_per_ip: 2,
            rate_per_ip: 0.0,
        });
        let a = l.admit(ip("10.0.0.1")).unwrap();
        let b = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            l.admit(ip("10.0.0.1")).unwrap_err(),
            LimitExceeded::Connections
        );
        assert_eq!(
            l.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            LimitExceeded::Connections,
            "v4-mapped counts as the same address"
        );
        let other = l.admit(ip("10.0.0.2")).unwrap();
        drop(a);
        let c = l.admit(ip("10.0.0.1")).unwrap();
        drop((b, c, other));
        assert_eq!(l.tracked(), 0, "entries go away with their last connection");
    }

    #[test]
    fn ipv6_grouped_by_64() {
        let l = IpLimits::new(LimitsConfig {
            max_per_ip: 1,
            rate_per_ip: 0.0,
        });
        let _a = l.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(l.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(l.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn rate_limit_and_sweep() {
        let l = IpLimits::new(LimitsConfig {
            max_per_ip: 0,
            rate_per_ip: 2.0,
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        drop(l.admit_at(a, t0).unwrap());
        drop(l.admit_at(a, t0).unwrap());
        assert_eq!(l.admit_at(a, t0).unwrap_err(), LimitExceeded::Rate);
        assert!(l.admit_at(ip("192.0.2.2"), t0).is_ok(), "per address");
        // Half a second refills one token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        drop(l.admit_at(a, t1).unwrap());
        assert_eq!(l.admit_at(a, t1).unwrap_err(), LimitExceeded::Rate);
        // Many distinct addresses do not grow the table once their buckets are full again.
        for i in 0..1000u32 {
            drop(
                l.admit_at(IpAddr::V4((0x0a00_0000 + i).into()), t1)
                    .unwrap(),
            );
        }
        assert!(l.tracked() >= 1000);
        let later = t1 + Duration::from_secs(5);
        drop(l.admit_at(ip("198.51.100.1"), later).unwrap());
        assert!(l.tracked() <= 1, "swept: {}", l.tracked());
    }
}
