//! The ownership directory, spread over the origins themselves (docs/architecture.md,
//! "Ownership directory").
//!
//! - `rendezvous`: which two origins hold a key's entry (pure);
//! - `table`: the claims one origin holds as a directory origin (pure);
//! - `remote`: calls to another origin's directory endpoints;
//! - `claim`: the owner's side, a claim that renews itself and is released on drop;
//! - this file: [`Directory`], which serves the endpoints from the table and looks keys
//!   up at their directory origins (this origin's own table when it is one of them).

mod claim;
pub mod remote;
pub mod rendezvous;
pub mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use origin_wire::addr::HostPort;
use origin_wire::clusters::Owner;
use origin_wire::directory::{
    ClaimAnswer, ClaimRequest, DirectoryKey, LookupAnswer, LookupRequest, OwnerAddr,
    OwnerAddrError, ReleaseRequest,
};
use origin_wire::paths;

pub use claim::{ClaimHandle, Verdict};
pub use rendezvous::{DIRECTORY_ORIGINS, directory_origins};
pub use table::{ClaimError, ClaimTable, DEFAULT_MAX_ENTRIES, Takeover};

use self::remote::Remote;
use super::Coworkers;
use super::discovery::Found;
use crate::media::StreamKey;
use crate::media::name::NameError;
use crate::metrics::{self, OutcomeLabel};

/// Why a directory request from a peer is refused (HTTP 400 or 507).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid stream key: {0}")]
    Key(#[from] NameError),
    #[error(transparent)]
    Owner(#[from] OwnerAddrError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

/// What a lookup at the directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A directory origin holds the key's claim.
    Found(Found),
    /// Every directory origin answered and none holds a claim.
    Unknown,
    /// Some directory origin did not answer (or the directory is off here).
    Failed,
}

/// Settings of the directory on one origin.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Whether this origin uses the directory to publish and find owners
    /// (`--discovery directory`); it serves its table either way.
    pub enabled: bool,
    /// The lease this origin grants as a directory origin (`--directory-lease`).
    pub lease: Duration,
    pub max_entries: usize,
    /// Bound of one call to another origin (`--discovery-timeout`).
    pub timeout: Duration,
    /// The admin token, which the endpoints require: without it the directory is off.
    pub token: Option<String>,
}

pub struct Directory {
    table: Mutex<ClaimTable>,
    /// Keys this origin itself claims (a publish here, from before its first claim request
    /// to the end of its release), with the claim's number.
    claiming: Mutex<HashMap<StreamKey, u64>>,
    coworkers: Arc<Coworkers>,
    /// `None`: no admin token, so no directory calls.
    remote: Option<Remote>,
    enabled: bool,
    lease: Duration,
}

/// The wire form of a key.
pub fn wire_key(key: &StreamKey) -> DirectoryKey {
    DirectoryKey {
        vhost: key.vhost.clone(),
        app: key.app.clone(),
        stream: key.stream.clone(),
    }
}

/// A key from the wire, normalised like every other name.
fn parse_key(key: &DirectoryKey) -> Result<StreamKey, NameError> {
    StreamKey::parse(&key.vhost, &key.app, &key.stream)
}

/// Where a claim says the stream is, as discovery reports an owner.
fn found(owner: &OwnerAddr) -> Result<Found, OwnerAddrError> {
    let (api, rtmp) = owner.validate()?;
    Ok(Found {
        owner: Owner {
            ip: rtmp.host,
            port: rtmp.port,
            http: owner.http.clone(),
            api: Some(owner.api.clone()),
        },
        peer: api,
    })
}

/// How long a lookup waits for the first directory origin before it also asks the second.
fn hedge_delay(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

impl Directory {
    pub fn new(coworkers: Arc<Coworkers>, config: DirectoryConfig) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(ClaimTable::new(config.lease, config.max_entries)),
            claiming: Mutex::new(HashMap::new()),
            coworkers,
            remote: config.token.map(|t| Remote::new(t, config.timeout)),
            enabled: config.enabled,
            lease: config.lease,
        })
    }

    fn table(&self) -> MutexGuard<'_, ClaimTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether publishes claim and plays look up here (directory mode with a token).
    pub fn enabled(&self) -> bool {
        self.enabled && self.remote.is_some()
    }

    /// Claims held in this origin's table.
    pub fn entries(&self) -> usize {
        self.table().len()
    }

    /// A claim or renewal from an owner (the endpoint, or this origin itself).
    pub fn serve_claim(&self, req: &ClaimRequest) -> Result<Duration, ServeError> {
        let key = parse_key(&req.key)?;
        req.owner.validate()?;
        let mut table = self.table();
        let how = Takeover::of(req.takeover, req.replace);
        let r = table.claim(&key, &req.owner, req.claim, how, Instant::now());
        metrics::global().directory_entries.set(table.len() as i64);
        let outcome = match &r {
            Ok(_) => "granted",
            Err(ClaimError::Conflict(..)) => "conflict",
            Err(ClaimError::Full(_)) => "full",
        };
        metrics::global()
            .directory_claims
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        Ok(r?)
    }

    /// A claim's answer as the endpoint gives it; `Err` only for a full table or bad input.
    pub fn answer_claim(&self, req: &ClaimRequest) -> Result<ClaimAnswer, ServeError> {
        match self.serve_claim(req) {
            Ok(lease) => Ok(ClaimAnswer::Granted {
                lease_ms: lease.as_millis().try_into().unwrap_or(u64::MAX),
            }),
            Err(ServeError::Claim(ClaimError::Conflict(owner, claim))) => {
                Ok(ClaimAnswer::Conflict { owner, claim })
            }
            Err(e) => Err(e),
        }
    }

    /// A release from an owner: whether its claim was dropped.
    pub fn serve_release(&self, req: &ReleaseRequest) -> Result<bool, ServeError> {
        let key = parse_key(&req.key)?;
        let mut table = self.table();
        let released = table.release(&key, &req.owner, req.claim);
        metrics::global().directory_entries.set(table.len() as i64);
        Ok(released)
    }

    /// A lookup from a non-owner.
    pub fn serve_lookup(&self, req: &LookupRequest) -> Result<LookupAnswer, ServeError> {
        metrics::global().directory_lookups.inc();
        let key = parse_key(&req.key)?;
        Ok(LookupAnswer {
            owner: self.table().lookup(&key, Instant::now()).cloned(),
            claiming: self.is_claiming(&key),
        })
    }

    fn claims_here(&self) -> MutexGuard<'_, HashMap<StreamKey, u64>> {
        self.claiming.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this origin itself claims `key` now.
    pub fn is_claiming(&self, key: &StreamKey) -> bool {
        self.claims_here().contains_key(key)
    }

    /// The key's directory origins under the current list, and this origin's address.
    fn directory_for(&self, key: &StreamKey) -> (Vec<HostPort>, Option<HostPort>) {
        let s = self.coworkers.snapshot();
        let dirs = directory_origins(key, &s.members)
            .into_iter()
            .cloned()
            .collect();
        (dirs, s.me.clone())
    }

    /// Who owns `key`, from its directory origins: this origin's own table when it is one
    /// of them, else the first one asked, the second as well when the first does not
    /// know, fails, or takes longer than a hedge delay. At most one request per
    /// directory origin; the first owner found wins.
    pub async fn lookup(&self, key: &StreamKey) -> Lookup {
        let outcome = self.lookup_inner(key).await;
        let label = match &outcome {
            Lookup::Found(_) => "found",
            Lookup::Unknown => "unknown",
            Lookup::Failed => "failed",
        };
        metrics::global()
            .directory_lookup_outcomes
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc();
        outcome
    }

    async fn lookup_inner(&self, key: &StreamKey) -> Lookup {
        let Some(remote) = self.remote.as_ref().filter(|_| self.enabled) else {
            return Lookup::Failed;
        };
        let (dirs, me) = self.directory_for(key);
        if dirs.is_empty() {
            return Lookup::Unknown;
        }
        // A claim naming this origin is stale (its publisher would be here).
        let usable = |o: &OwnerAddr| me.as_ref().is_none_or(|m| o.api != m.to_string());
        let mut others = Vec::with_capacity(dirs.len());
        for d in dirs {
            if Some(&d) == me.as_ref() {
                let held = self.table().lookup(key, Instant::now()).cloned();
                if let Some(f) = held.filter(|o| usable(o)).and_then(|o| found(&o).ok()) {
                    return Lookup::Found(f);
                }
            } else {
                others.push(d);
            }
        }
        let req = LookupRequest { key: wire_key(key) };
        let ask = |peer: HostPort| {
            let req = &req;
            async move {
                let r = remote
                    .call::<_, LookupAnswer>(&peer, paths::DIRECTORY_LOOKUP, req, &[])
                    .await;
                (peer, r)
            }
        };
        let mut waiting = others.into_iter();
        let mut asks = FuturesUnordered::new();
        if let Some(p) = waiting.next() {
            asks.push(ask(p));
        }
        let hedge = tokio::time::sleep(hedge_delay(remote.timeout()));
        tokio::pin!(hedge);
        let mut failed = false;
        while !asks.is_empty() {
            tokio::select! {
                Some((peer, r)) = asks.next() => {
                    match r {
                        Ok(LookupAnswer { owner: Some(o), .. }) if usable(&o) => match found(&o) {
                            Ok(f) => return Lookup::Found(f),
                            Err(e) => {
                                tracing::debug!(%peer, stream = %key, error = %e, "directory origin named an unusable owner");
                                failed = true;
                            }
                        },
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(%peer, stream = %key, error = %e, "directory lookup failed");
                            failed = true;
                        }
                    }
                    if let Some(p) = waiting.next() {
                        asks.push(ask(p));
                    }
                }
                _ = &mut hedge, if !waiting.as_slice().is_empty() => {
                    if let Some(p) = waiting.next() {
                        asks.push(ask(p));
                    }
                }
            }
        }
        if failed {
            Lookup::Failed
        } else {
            Lookup::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> HostPort {
        HostPort::parse(s).unwrap()
    }

    fn directory(me: &str, others: &[&str]) -> Arc<Directory> {
        let mut list: Vec<HostPort> = others.iter().map(|s| hp(s)).collect();
        list.push(hp(me));
        let coworkers = Arc::new(Coworkers::new(list, vec![hp(me)]));
        Directory::new(
            coworkers,
            DirectoryConfig {
                enabled: true,
                lease: Duration::from_secs(10),
                max_entries: 8,
                timeout: Duration::from_millis(200),
                token: Some("t".into()),
            },
        )
    }

    fn owner(api: &str) -> OwnerAddr {
        OwnerAddr {
            api: api.into(),
            rtmp: api.replace(":1985", ":1935"),
            http: None,
        }
    }

    fn key(s: &str) -> StreamKey {
        StreamKey::new(origin_wire::DEFAULT_VHOST, "live", s)
    }

    #[test]
    fn endpoints_refuse_bad_input_with_typed_errors() {
        let d = directory("127.0.0.1:1985", &[]);
        let mut req = ClaimRequest {
            key: wire_key(&key("a")),
            owner: owner("10.0.0.2:1985"),
            claim: 1,
            takeover: false,
            replace: None,
        };
        assert!(matches!(
            d.answer_claim(&req),
            Ok(ClaimAnswer::Granted { lease_ms: 10_000 })
        ));
        let other = ClaimRequest {
            owner: owner("10.0.0.3:1985"),
            ..req.clone()
        };
        assert!(matches!(
            d.answer_claim(&other),
            Ok(ClaimAnswer::Conflict { owner: o, claim: 1 }) if o.api == "10.0.0.2:1985"
        ));
        req.key.app = "../x".into();
        assert!(matches!(d.answer_claim(&req), Err(ServeError::Key(_))));
        let bad_owner = ClaimRequest {
            owner: owner("nowhere"),
            ..other
        };
        assert!(matches!(
            d.answer_claim(&bad_owner),
            Err(ServeError::Owner(_))
        ));
        for i in 0..7 {
            let r = ClaimRequest {
                key: wire_key(&key(&format!("k{i}"))),
                owner: owner("10.0.0.2:1985"),
                claim: 1,
                takeover: false,
                replace: None,
            };
            d.answer_claim(&r).unwrap();
        }
        let full = ClaimRequest {
            key: wire_key(&key("one-too-many")),
            owner: owner("10.0.0.2:1985"),
            claim: 1,
            takeover: false,
            replace: None,
        };
        assert!(matches!(
            d.answer_claim(&full),
            Err(ServeError::Claim(ClaimError::Full(8)))
        ));
        assert_eq!(d.entries(), 8);
    }

    #[tokio::test]
    async fn a_lone_origin_answers_lookups_from_its_own_table() {
        let d = directory("127.0.0.1:1985", &[]);
        assert_eq!(d.lookup(&key("a")).await, Lookup::Unknown);
        let req = ClaimRequest {
            key: wire_key(&key("a")),
            owner: owner("10.0.0.2:1985"),
            claim: 1,
            takeover: false,
            replace: None,
        };
        d.serve_claim(&req).unwrap();
        match d.lookup(&key("a")).await {
            Lookup::Found(f) => {
                assert_eq!((f.owner.ip.as_str(), f.owner.port), ("10.0.0.2", 1935));
                assert_eq!(f.peer, hp("10.0.0.2:1985"));
            }
            other => panic!("{other:?}"),
        }
        // A claim that names this origin itself is stale: not an owner to go to.
        let mine = ClaimRequest {
            key: wire_key(&key("b")),
            owner: owner("127.0.0.1:1985"),
            claim: 1,
            takeover: false,
            replace: None,
        };
        d.serve_claim(&mine).unwrap();
        assert_eq!(d.lookup(&key("b")).await, Lookup::Unknown);
        assert!(
            d.serve_release(&ReleaseRequest {
                key: wire_key(&key("a")),
                owner: "10.0.0.2:1985".into(),
                claim: 1,
            })
            .unwrap()
        );
        assert_eq!(d.lookup(&key("a")).await, Lookup::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_directory_origins_fail_within_the_timeout() {
        // 192.0.2.0/24 is TEST-NET: nothing answers there.
        let d = directory("127.0.0.1:1985", &["192.0.2.1:1985", "192.0.2.2:1985"]);
        let k = (0..100)
            .map(|i| key(&format!("s{i}")))
            .find(|k| {
                d.directory_for(k)
                    .0
                    .iter()
                    .all(|x| x.host.starts_with("192.0.2."))
            })
            .expect("a key whose directory origins are both elsewhere");
        let started = tokio::time::Instant::now();
        assert_eq!(d.lookup(&k).await, Lookup::Failed);
        assert!(
            started.elapsed()
                <= Duration::from_millis(200) + hedge_delay(Duration::from_millis(200))
        );
    }

    #[test]
    fn hedge_delay_is_a_fraction_of_the_timeout() {
        assert_eq!(
            hedge_delay(Duration::from_millis(500)),
            Duration::from_millis(50)
        );
        assert_eq!(
            hedge_delay(Duration::from_millis(20)),
            Duration::from_millis(5)
        );
        assert_eq!(
            hedge_delay(Duration::from_secs(5)),
            Duration::from_millis(50)
        );
    }
}
