//! Finding the owner of a stream: every coworker is asked concurrently over pooled
//! keep-alive connections, each request bounded by a short timeout; the first valid
//! "owned" answer wins and the other requests are dropped (cancelled).
//!
//! Concurrent callers looking for the same stream share one lookup (a burst of joins on
//! a non-owner costs one question per coworker, not one per join). A positive answer is
//! cached briefly; a cached owner older than half the cache time is re-checked in the
//! background, once per entry, and forgotten as soon as it says the stream is not there.
//! Expired entries are swept as the cache grows.

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

use crate::media::StreamKey;
use crate::metrics::{self, OutcomeLabel};

/// Largest answer body read from a coworker.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

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
}

pub struct Discovery {
    client: Client<HttpConnector, Empty<Bytes>>,
    config: DiscoveryConfig,
    state: Mutex<State>,
}

enum Answer {
    Owned(Found),
    NotOwned,
    Error,
    Timeout,
}

impl Discovery {
    pub fn new(config: DiscoveryConfig) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        // Idle pooled connections are dropped before a peer's HTTP idle timeout (10 s by
        // default) closes them, so a question never lands on a closing connection.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(8)
            .build(connector);
        Arc::new(Self {
            client,
            config,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> DiscoveryConfig {
        self.config
    }

    /// Asks every peer; returns the first owner found within the timeout. Callers asking
    /// for the same stream at the same time share one round of questions.
    /// `ip` is the host of the client's tcUrl (echoed by the owner).
    pub async fn find_owner(
        self: &Arc<Self>,
        peers: &[HostPort],
        key: &StreamKey,
        ip: &str,
    ) -> Option<Found> {
        if let Some(found) = self.cached(key, ip) {
            return Some(found);
        }
        if peers.is_empty() {
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
                    let lookup: Lookup = async move { this.ask_all(&peers, &k, &ip).await }
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
        if let Some(found) = &result {
            self.remember(key, found.clone());
        }
        result
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

    async fn ask(&self, peer: &HostPort, key: &StreamKey, ip: &str) -> Answer {
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
        match tokio::time::timeout(self.config.timeout, work).await {
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
