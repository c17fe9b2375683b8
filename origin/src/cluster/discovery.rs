//! Finding the owner of a stream: every coworker is asked concurrently over pooled
//! keep-alive connections, each request bounded by a short timeout; the first valid
//! "owned" answer wins and the other requests are dropped (cancelled).
//!
//! A positive answer is cached briefly; a cached owner is re-checked in the background on
//! use and forgotten as soon as it says the stream is not there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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

pub struct Discovery {
    client: Client<HttpConnector, Empty<Bytes>>,
    config: DiscoveryConfig,
    cache: Mutex<HashMap<StreamKey, (Found, Instant)>>,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .build(connector);
        Arc::new(Self {
            client,
            config,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> DiscoveryConfig {
        self.config
    }

    /// Asks every peer; returns the first owner found within the timeout.
    /// `ip` is the host of the client's tcUrl (echoed by the owner).
    pub async fn find_owner(
        self: &Arc<Self>,
        peers: &[HostPort],
        key: &StreamKey,
        ip: &str,
    ) -> Option<Found> {
        if let Some(found) = self.cached(key) {
            let this = self.clone();
            let key = key.clone();
            let ip = ip.to_string();
            let check = found.clone();
            tokio::spawn(async move {
                if !matches!(this.ask(&check.peer, &key, &ip).await, Answer::Owned(_)) {
                    this.forget(&key);
                }
            });
            return Some(found);
        }
        if peers.is_empty() {
            return None;
        }
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
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), (found.clone(), Instant::now()));
        }
        result
    }

    fn cached(&self, key: &StreamKey) -> Option<Found> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(key) {
            Some((found, at)) if at.elapsed() < self.config.cache_ttl => Some(found.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    /// Drops a cached owner (it said the stream is not there any more).
    pub fn forget(&self, key: &StreamKey) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
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
