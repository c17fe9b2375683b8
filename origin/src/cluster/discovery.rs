//! Finding the owner of a stream. With the ownership directory on (`--discovery
//! directory`), the stream's directory origins are asked first (docs/architecture.md,
//! "Ownership directory"); when they do not know it, or do not answer in time, every
//! coworker is asked concurrently (the broadcast, which also reaches SRS peers) over pooled
//! keep-alive connections, each request bounded by a short timeout; the first valid
//! "owned" answer wins and the other requests are dropped (cancelled).
//!
//! Concurrent callers looking for the same stream share one lookup (a burst of joins on
//! a non-owner costs one question per coworker, not one per join). A positive answer is
//! cached briefly; a cached owner older than half the cache time is re-checked in the
//! background, once per entry, and forgotten as soon as it says the stream is not there.
//! Expired entries are swept as the cache grows.
//!
//! At most [`PER_PEER_IN_FLIGHT`] questions are in flight to one coworker at a time (the
//! others wait their turn within the same timeout): a burst of cold plays costs each
//! coworker a bounded number of connections, however many plays arrive together, and a
//! coworker that does not answer holds only its own turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use origin_wire::addr::HostPort;
use origin_wire::clusters::{ClustersQuery, Owner, parse_owner};
use origin_wire::paths;
use tokio::sync::Semaphore;

use super::directory::{Directory, Lookup as DirectoryLookup};
use crate::media::StreamKey;
use crate::metrics::{self, OutcomeLabel};

/// Largest answer body read from a coworker.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Questions in flight to one coworker at a time (and pooled connections kept to it).
pub const PER_PEER_IN_FLIGHT: usize = 16;

/// Where a stream lives and which coworker said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub owner: Owner,
    pub peer: HostPort,
}

#[derive(Debug, Clone, Copy)]
pub struct DiscoveryConfig {
    pub timeout: Duration,
    pub cache_ttl: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(2),
        }
    }
}

type LookupFuture = BoxFuture<'static, Option<Found>>;
type Lookup = Shared<LookupFuture>;

struct Cached {
    found: Found,
    at: Instant,
    rechecking: bool,
}

#[derive(Default)]
struct State {
    cache: HashMap<StreamKey, Cached>,
    /// Size of the cache after its last sweep: the next sweep runs when it doubles.
    swept_at: usize,
    /// Lookups under way, shared by every caller of the same key. Weak: when every
    /// caller has gone, the lookup (and its requests) is dropped.
    in_flight: HashMap<StreamKey, (u64, WeakShared<LookupFuture>)>,
    next_lookup: u64,
    /// Turns to ask each coworker.
    turns: HashMap<HostPort, Arc<Semaphore>>,
    /// When a lookup of a stream last found no owner (so that many plays waiting for one
    /// name re-ask once per interval between them, see [`Discovery::missed_within`]).
    missed: HashMap<StreamKey, Instant>,
    /// Size of `missed` after its last sweep.
    missed_swept_at: usize,
}

pub struct Discovery {
    client: Client<HttpConnector, Empty<Bytes>>,
    config: DiscoveryConfig,
    state: Mutex<State>,
    /// Asked before the broadcast (`None`: broadcast only).
    directory: Option<Arc<Directory>>,
}

enum Answer {
    Owned(Found),
    NotOwned,
    Error,
    Timeout,
}

impl Discovery {
    pub fn new(config: DiscoveryConfig, directory: Option<Arc<Directory>>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        // Idle pooled connections are dropped before a peer's HTTP idle timeout (10 s by
        // default) closes them, so a question never lands on a closing connection.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(PER_PEER_IN_FLIGHT)
            .build(connector);
        Arc::new(Self {
            client,
            config,
            state: Mutex::new(State::default()),
            directory,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> DiscoveryConfig {
        self.config
    }

    /// Asks the stream's directory origins, then (when they do not know it) every peer;
    /// returns the first owner found within the timeout. Callers asking for the same
    /// stream at the same time share one round of questions.
    /// `ip` is the host of the client's tcUrl (echoed by the owner).
    pub async fn find_owner(
        self: &Arc<Self>,
        peers: &[HostPort],
        key: &StreamKey,
        ip: &str,
    ) -> Option<Found> {
        if let Some(found) = self.cached(key, ip) {
            self.state().missed.remove(key);
            return Some(found);
        }
        if peers.is_empty() && self.directory.is_none() {
            return None;
        }
        let (id, lookup) = {
            let mut st = self.state();
            match st
                .in_flight
                .get(key)
                .and_then(|(id, weak)| Some((*id, weak.upgrade()?)))
            {
                Some(shared) => shared,
                None => {
                    let this = self.clone();
                    let (peers, k, ip) = (peers.to_vec(), key.clone(), ip.to_string());
                    let lookup: Lookup = async move { this.locate(&peers, &k, &ip).await }
                        .boxed()
                        .shared();
                    st.next_lookup += 1;
                    let id = st.next_lookup;
                    if let Some(weak) = lookup.downgrade() {
                        st.in_flight.insert(key.clone(), (id, weak));
                    }
                    // Lookups whose callers all left are forgotten.
                    if st.in_flight.len() > 1024 {
                        st.in_flight.retain(|_, (_, w)| w.upgrade().is_some());
                    }
                    (id, lookup)
                }
            }
        };
        let result = lookup.await;
        let mut st = self.state();
        if st.in_flight.get(key).is_some_and(|(i, _)| *i == id) {
            st.in_flight.remove(key);
        }
        result
    }

    /// The directory first, then the broadcast; a found owner is cached.
    async fn locate(&self, peers: &[HostPort], key: &StreamKey, ip: &str) -> Option<Found> {
        if let Some(directory) = &self.directory {
            let started = Instant::now();
            let looked = directory.lookup(key).await;
            if let DirectoryLookup::Found(found) = looked {
                metrics::global()
                    .discovery_latency
                    .observe(started.elapsed().as_secs_f64());
                self.remember(key, found.clone());
                return Some(found);
            }
            tracing::debug!(stream = %key, outcome = ?looked, "directory does not know the stream; asking every coworker");
        }
        if peers.is_empty() {
            return None;
        }
        self.ask_all(peers, key, ip).await
    }

    /// The broadcast alone, without the directory or the cache: every peer asked now
    /// (the publish guard when no directory origin answered).
    pub async fn ask_everyone(
        &self,
        peers: &[HostPort],
        key: &StreamKey,
        ip: &str,
    ) -> Option<Found> {
        if peers.is_empty() {
            return None;
        }
        self.ask_all(peers, key, ip).await
    }

    /// Asks every peer concurrently; the first "owned" answer wins and is cached.
    async fn ask_all(&self, peers: &[HostPort], key: &StreamKey, ip: &str) -> Option<Found> {
        let started = Instant::now();
        let m = metrics::global();
        let mut asks: FuturesUnordered<_> = peers.iter().map(|p| self.ask(p, key, ip)).collect();
        let mut result = None;
        let mut unanswered = 0usize;
        while let Some(answer) = asks.next().await {
            let outcome = match &answer {
                Answer::Owned(_) => "owned",
                Answer::NotOwned => "not_owned",
                Answer::Error => "error",
                Answer::Timeout => "timeout",
            };
            m.discovery_answers
                .get_or_create(&OutcomeLabel { outcome })
                .inc();
            if matches!(answer, Answer::Error | Answer::Timeout) {
                unanswered += 1;
            }
            if let Answer::Owned(found) = answer {
                result = Some(found);
                break;
            }
        }
        // Dropping `asks` cancels the requests still in flight.
        drop(asks);
        m.discovery_latency.observe(started.elapsed().as_secs_f64());
        if result.is_none() && unanswered > 0 {
            // Availability first: an unreachable coworker counts as "not there".
            tracing::warn!(stream = %key, unanswered, asked = peers.len(), "some coworkers did not answer; assuming they do not have the stream");
        }
        match &result {
            Some(found) => self.remember(key, found.clone()),
            None => self.missed(key),
        }
        result
    }

    fn missed(&self, key: &StreamKey) {
        let mut st = self.state();
        st.missed.insert(key.clone(), Instant::now());
        if st.missed.len() > (2 * st.missed_swept_at).max(256) {
            // A miss older than the answer cache is of no use to anyone.
            let ttl = self.config.cache_ttl;
            st.missed.retain(|_, at| at.elapsed() < ttl);
            st.missed_swept_at = st.missed.len();
        }
    }

    /// Whether a lookup of `key` found no owner less than `within` ago: a play that
    /// re-asks now would only repeat it.
    pub fn missed_within(&self, key: &StreamKey, within: Duration) -> bool {
        self.state()
            .missed
            .get(key)
            .is_some_and(|at| at.elapsed() < within)
    }

    fn remember(&self, key: &StreamKey, found: Found) {
        let ttl = self.config.cache_ttl;
        let mut st = self.state();
        st.cache.insert(
            key.clone(),
            Cached {
                found,
                at: Instant::now(),
                rechecking: false,
            },
        );
        if st.cache.len() > (2 * st.swept_at).max(256) {
            st.cache.retain(|_, c| c.at.elapsed() < ttl);
            st.swept_at = st.cache.len();
        }
    }

    /// A cached owner, if fresh; one that is getting old is re-checked in the
    /// background (once per entry) and forgotten if it no longer has the stream.
    fn cached(self: &Arc<Self>, key: &StreamKey, ip: &str) -> Option<Found> {
        let ttl = self.config.cache_ttl;
        let mut st = self.state();
        let c = st.cache.get_mut(key)?;
        let age = c.at.elapsed();
        if age >= ttl {
            st.cache.remove(key);
            return None;
        }
        let found = c.found.clone();
        if age >= ttl / 2 && !c.rechecking {
            c.rechecking = true;
            let this = self.clone();
            let (key, ip, check) = (key.clone(), ip.to_string(), found.clone());
            tokio::spawn(async move {
                match this.ask(&check.peer, &key, &ip).await {
                    Answer::Owned(found) => this.remember(&key, found),
                    _ => this.forget(&key),
                }
            });
        }
        Some(found)
    }

    /// Drops a cached owner (it said the stream is not there any more).
    pub fn forget(&self, key: &StreamKey) {
        self.state().cache.remove(key);
    }

    /// Number of cached owners (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.state().cache.len()
    }

    /// The turns to ask `peer`. Coworkers that left the list are forgotten as it grows.
    fn turns(&self, peer: &HostPort) -> Arc<Semaphore> {
        let mut st = self.state();
        if let Some(t) = st.turns.get(peer) {
            return t.clone();
        }
        if st.turns.len() >= 1024 {
            // Only turns in use are kept (a coworker list of more is asked in turns too).
            st.turns
                .retain(|_, t| t.available_permits() < PER_PEER_IN_FLIGHT);
        }
        let t = Arc::new(Semaphore::new(PER_PEER_IN_FLIGHT));
        st.turns.insert(peer.clone(), t.clone());
        t
    }

    async fn ask(&self, peer: &HostPort, key: &StreamKey, ip: &str) -> Answer {
        let turns = self.turns(peer);
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, turns.acquire_owned()).await else {
            tracing::debug!(%peer, stream = %key, "no turn to ask the coworker in time");
            return Answer::Timeout;
        };
        metrics::global().discovery_requests.inc();
        let query = ClustersQuery {
            vhost: key.vhost.clone(),
            ip: ip.to_string(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            coworker: peer.to_string(),
        };
        let uri = format!(
            "http://{peer}{}?{}",
            paths::CLUSTERS,
            query.to_query_string()
        );
        let req = match hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(_) => return Answer::Error,
        };
        let work = async {
            let resp = self.client.request(req).await.ok()?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .ok()?
                .to_bytes();
            Some((status, body))
        };
        match tokio::time::timeout_at(deadline, work).await {
            Err(_) => {
                tracing::debug!(%peer, stream = %key, "coworker did not answer in time");
                Answer::Timeout
            }
            Ok(None) => Answer::Error,
            Ok(Some((status, body))) => match parse_owner(status, &body) {
                Some(owner) => Answer::Owned(Found {
                    owner,
                    peer: peer.clone(),
                }),
                None => Answer::NotOwned,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::any;

    use super::*;

    /// A coworker that knows no stream and answers after 20 ms; it records the most
    /// questions it held at once.
    async fn slow_coworker() -> (HostPort, Arc<AtomicUsize>) {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let app = Router::new().route(
            paths::CLUSTERS,
            any(move || {
                let (n, m) = (n.clone(), m.clone());
                async move {
                    let held = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(held, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    n.fetch_sub(1, Ordering::SeqCst);
                    (axum::http::StatusCode::NOT_FOUND, "{\"code\":404}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (HostPort::new("127.0.0.1".to_string(), port), most)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_lookups_asks_each_coworker_in_bounded_turns() {
        let (peer, most) = slow_coworker().await;
        let d = Discovery::new(
            DiscoveryConfig {
                timeout: Duration::from_secs(10),
                cache_ttl: Duration::from_secs(2),
            },
            None,
        );
        let lookups: Vec<_> = (0..200)
            .map(|i| {
                let (d, peers) = (d.clone(), vec![peer.clone()]);
                tokio::spawn(async move {
                    let key = StreamKey::new("v", "live", format!("s{i}"));
                    d.find_owner(&peers, &key, "h").await
                })
            })
            .collect();
        for l in lookups {
            assert_eq!(l.await.unwrap(), None, "nobody owns it");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (2..=PER_PEER_IN_FLIGHT).contains(&most),
            "the coworker held {most} questions at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_not_had_within_the_timeout_is_a_timeout() {
        let d = Discovery::new(
            DiscoveryConfig {
                timeout: Duration::from_millis(500),
                cache_ttl: Duration::from_secs(2),
            },
            None,
        );
        let peer = HostPort::new("192.0.2.1".to_string(), 1985);
        let turns = d.turns(&peer);
        let _all = turns
            .clone()
            .acquire_many_owned(PER_PEER_IN_FLIGHT as u32)
            .await
            .unwrap();
        let key = StreamKey::new("v", "live", "s");
        assert!(matches!(d.ask(&peer, &key, "h").await, Answer::Timeout));
    }
}
