//! The state one origin process shares between its RTMP connections, HTTP handlers and
//! relays: configuration, the stream registry, the coworker set, discovery, and the
//! drain/shutdown signals. The RTMP server (`server`) and the HTTP edges (`http`) both
//! depend on this module and not on each other. Where a play goes is `route`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use std::time::Duration;

use tokio::sync::watch;

use crate::auth::{Auth, WaitingNames};
use crate::cluster::directory::{Directory, DirectoryConfig};
use crate::cluster::{Coworkers, Discovery, DiscoveryConfig, Identity, QueryBudget};
use crate::config::{Config, DiscoveryMode};
use crate::media::{PlayConfig, Registry};
use crate::relay::{RelayContext, Relays};

/// State shared by every connection and API handler of one origin.
pub struct Origin {
    pub config: Config,
    pub registry: Registry,
    pub coworkers: Arc<Coworkers>,
    pub discovery: Arc<Discovery>,
    /// The ownership directory: this origin's claim table and its claims and lookups at
    /// other origins (docs/architecture.md, "Ownership directory").
    pub directory: Arc<Directory>,
    pub relays: Relays,
    pub identity: Identity,
    /// Publish/play authorization and per-address limits (docs/architecture.md, "Auth and hooks").
    pub auth: Arc<Auth>,
    /// Names plays wait for, per client address (`--max-waiting-names-per-ip`).
    pub waiting_names: WaitingNames,
    /// Re-ask rounds of waiting plays (`--owner-query-rate`).
    pub query_budget: QueryBudget,
    draining: AtomicBool,
    listening: AtomicBool,
    next_id: AtomicU64,
    connections: ConnectionLimit,
    api_connections: ConnectionLimit,
    /// Flips to true when publishers must end (drain grace over, or shutdown).
    end_publishers: watch::Sender<bool>,
    /// Flips to true when the process shuts down.
    shutdown: watch::Sender<bool>,
}

impl Origin {
    pub fn new(config: Config, identity: Identity, auth: Arc<Auth>) -> Arc<Self> {
        let mut myself: Vec<_> = config.self_api.iter().cloned().collect();
        // A concrete API listen address is also "me" (local clusters list every origin).
        if !config.api_listen.ip().is_unspecified() {
            myself.push(origin_wire::addr::HostPort::new(
                config.api_listen.ip().to_string(),
                identity.api_port,
            ));
        }
        let coworkers = Arc::new(Coworkers::new(config.coworkers.clone(), myself));
        let directory = Directory::new(
            coworkers.clone(),
            DirectoryConfig {
                enabled: config.discovery == DiscoveryMode::Directory,
                lease: config.directory_lease,
                max_entries: config.directory_max_entries,
                timeout: config.discovery_timeout,
                token: config.admin_token.clone(),
            },
        );
        let discovery = Discovery::new(
            DiscoveryConfig {
                timeout: config.discovery_timeout,
                cache_ttl: config.discovery_cache,
            },
            directory.enabled().then(|| directory.clone()),
        );
        let registry = Registry::new(config.media);
        let relays = Relays::new(RelayContext {
            registry: registry.clone(),
            discovery: discovery.clone(),
            coworkers: coworkers.clone(),
            linger: config.relay_linger,
            republish_timeout: config.republish_timeout,
            first_media_timeout: config.wait_for_publisher + Duration::from_secs(5),
            reask_interval: config.reask_interval,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: config.relay_idle_timeout,
            admin_token: config.admin_token.clone(),
        });
        Arc::new(Self {
            registry,
            coworkers,
            discovery,
            directory,
            relays,
            identity,
            auth,
            waiting_names: WaitingNames::new(config.max_waiting_names_per_ip),
            query_budget: QueryBudget::new(config.owner_query_rate),
            connections: ConnectionLimit::new(config.max_connections, "max_connections", true),
            api_connections: ConnectionLimit::new(
                config.max_api_connections,
                "max_api_connections",
                false,
            ),
            config,
            draining: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            end_publishers: watch::channel(false).0,
            shutdown: watch::channel(false).0,
        })
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ready = listeners up and not draining or shutting down.
    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::SeqCst) && !self.is_draining() && !*self.shutdown.borrow()
    }

    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// Starts draining: not ready, no new publishes, publishers ended after the grace.
    /// Returns false if a drain was already under way.
    pub fn start_drain(self: &Arc<Self>) -> bool {
        if self.draining.swap(true, Ordering::SeqCst) {
            return false;
        }
        let grace = self.config.drain_grace;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "draining: refusing new publishes"
        );
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::info!("drain grace over: ending publishers");
            this.end_publishers.send_replace(true);
        });
        true
    }

    pub fn end_publishers_signal(&self) -> watch::Receiver<bool> {
        self.end_publishers.subscribe()
    }

    pub fn end_publishers(&self) {
        self.end_publishers.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Open RTMP and playback connections.
    pub fn open_connections(&self) -> usize {
        self.connections.open.load(Ordering::Relaxed)
    }

    /// Counts a connection for its lifetime; `None` (counted and logged) when over the
    /// limit. RTMP and HTTP playback connections are counted alike, from accept.
    pub fn admit(&self, peer: &dyn std::fmt::Display) -> Option<ConnectionGuard> {
        self.connections.admit(peer)
    }

    /// Counts an API connection (port 1985) against its own limit, so that players
    /// filling `--max-connections` never lock out ownership queries, the operator or
    /// health checks.
    pub fn admit_api(&self, peer: &dyn std::fmt::Display) -> Option<ConnectionGuard> {
        self.api_connections.admit(peer)
    }

    /// How players of this origin are paced.
    pub fn play_config(&self) -> PlayConfig {
        PlayConfig {
            republish_timeout: self.config.republish_timeout,
            merge: self.config.merge_writes,
            ..PlayConfig::default()
        }
    }

    /// This origin as its directory claims name it; `None` when it does not know its own
    /// API address (then it claims nothing).
    pub fn claim_owner(&self) -> Option<origin_wire::directory::OwnerAddr> {
        if !self.directory.enabled() {
            return None;
        }
        let me = self.coworkers.members().1?;
        let pushed = self
            .coworkers
            .advertise_for(self.config.pod_name.as_deref());
        Some(crate::cluster::ownership::owner_addr(
            &self.identity,
            pushed.as_ref(),
            &me,
        ))
    }

    /// Whether `given` is the admin token (constant time); false when none is set.
    pub fn is_admin_token(&self, given: &str) -> bool {
        let Some(expected) = self.config.admin_token.as_deref() else {
            return false;
        };
        given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Open connections of one kind against their limit.
struct ConnectionLimit {
    open: Arc<AtomicUsize>,
    max: usize,
    reason: &'static str,
    /// Whether these connections show in the `connections` gauge.
    gauged: bool,
}

impl ConnectionLimit {
    fn new(max: usize, reason: &'static str, gauged: bool) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            reason,
            gauged,
        }
    }

    fn admit(&self, peer: &dyn std::fmt::Display) -> Option<ConnectionGuard> {
        let n = self.open.fetch_add(1, Ordering::SeqCst);
        if n >= self.max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            crate::metrics::global()
                .connections_rejected
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: self.reason,
                })
                .inc();
            tracing::warn!(%peer, limit = self.max, reason = self.reason, "connection limit reached; closing");
            return None;
        }
        if self.gauged {
            crate::metrics::global().connections.inc();
        }
        Some(ConnectionGuard {
            open: self.open.clone(),
            gauged: self.gauged,
        })
    }
}

/// One open connection, counted until dropped.
pub struct ConnectionGuard {
    open: Arc<AtomicUsize>,
    gauged: bool,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        if self.gauged {
            crate::metrics::global().connections.dec();
        }
    }
}
