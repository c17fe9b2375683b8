//! The tokio edges: the shared state of one origin process and its listeners.

pub mod connection;
pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::cluster::{Coworkers, Discovery, DiscoveryConfig, Found, Identity};
use crate::config::Config;
use crate::media::{Next, Registry, StreamKey, Subscriber};

/// State shared by every connection and API handler of one origin.
pub struct Origin {
    pub config: Config,
    pub registry: Registry,
    pub coworkers: Arc<Coworkers>,
    pub discovery: Arc<Discovery>,
    pub identity: Identity,
    pub auth: Arc<Auth>,
    draining: AtomicBool,
    listening: AtomicBool,
    next_id: AtomicU64,
    open_connections: AtomicUsize,
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
        let discovery = Discovery::new(DiscoveryConfig {
            timeout: config.discovery_timeout,
            cache_ttl: config.discovery_cache,
        });
        Arc::new(Self {
            registry: Registry::new(config.media),
            coworkers,
            discovery,
            identity,
            auth,
            config,
            draining: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            open_connections: AtomicUsize::new(0),
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

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Counts a connection for its lifetime; `None` (counted and logged) when over the limit.
    pub fn admit(self: &Arc<Self>, peer: &dyn std::fmt::Display) -> Option<ConnectionGuard> {
        let n = self.open_connections.fetch_add(1, Ordering::SeqCst);
        if n >= self.config.max_connections {
            self.open_connections.fetch_sub(1, Ordering::SeqCst);
            crate::metrics::global()
                .connections_rejected
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: "max_connections",
                })
                .inc();
            tracing::warn!(%peer, limit = self.config.max_connections, "connection limit reached; closing");
            return None;
        }
        crate::metrics::global().connections.inc();
        Some(ConnectionGuard(self.clone()))
    }

    /// Refreshes the stream/player gauges.
    pub fn update_gauges(&self) {
        let (streams, players) = self.registry.counts();
        let m = crate::metrics::global();
        m.streams.set(streams as i64);
        m.players.set(players as i64);
    }
}

/// Where a player's stream is.
pub enum Located {
    /// Published here (now or while we waited): play from `sub`.
    Local(Subscriber),
    /// Another origin owns it: redirect there.
    Remote(Found),
    /// Nowhere within `wait_for_publisher`.
    NotFound,
}

impl Origin {
    /// Finds a player's stream: here, on a coworker (all asked concurrently), or, while
    /// `wait_for_publisher` lasts, wherever it shows up first. `ip` is the host the client
    /// addressed (echoed in ownership queries).
    pub async fn locate(&self, key: &StreamKey, ip: &str) -> Located {
        // Subscribe first, so a publish that lands while we look elsewhere is not missed.
        let mut sub = self.registry.get_or_create(key).subscribe();
        self.update_gauges();
        let deadline = tokio::time::Instant::now() + self.config.wait_for_publisher;
        loop {
            if sub.publishing() {
                return Located::Local(sub);
            }
            let peers = self.coworkers.peers();
            if let Some(found) = self.discovery.find_owner(&peers, key, ip).await {
                self.release(key, sub);
                return Located::Remote(found);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                self.release(key, sub);
                return Located::NotFound;
            }
            let wake = (now + self.config.reask_interval).min(deadline);
            // Wait for a local publish or the next round of questions.
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                published = wait_published(&mut sub) => if !published {
                    self.release(key, sub);
                    return Located::NotFound;
                },
            }
        }
    }

    fn release(&self, key: &StreamKey, sub: Subscriber) {
        drop(sub);
        self.registry.reap(key);
        self.update_gauges();
    }
}

/// Resolves once the subscribed stream gets a publisher (false if the stream is gone).
async fn wait_published(sub: &mut Subscriber) -> bool {
    loop {
        match sub.next().await {
            Next::Published => return true,
            Next::Closed => return false,
            _ if sub.publishing() => return true,
            _ => {}
        }
    }
}

pub struct ConnectionGuard(Arc<Origin>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::global().connections.dec();
    }
}

/// Bound listeners of one origin.
pub struct Listeners {
    pub rtmp: TcpListener,
    pub api: TcpListener,
    pub flv: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            rtmp: listener::bind(config.rtmp_listen).await?,
            api: listener::bind(config.api_listen).await?,
            flv: listener::bind(config.flv_listen).await?,
        })
    }

    pub fn identity(&self, config: &Config) -> std::io::Result<Identity> {
        Ok(Identity {
            rtmp_port: self.rtmp.local_addr()?.port(),
            api_port: self.api.local_addr()?.port(),
            flv_port: self.flv.local_addr()?.port(),
            advertise_rtmp: config.advertise_rtmp.clone(),
            advertise_http: config.advertise_http.clone(),
        })
    }

    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr, SocketAddr)> {
        Ok((
            self.rtmp.local_addr()?,
            self.api.local_addr()?,
            self.flv.local_addr()?,
        ))
    }
}

/// Runs an origin until `stop` resolves, then drains for the shutdown grace.
pub async fn run(
    config: Config,
    listeners: Listeners,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let identity = listeners.identity(&config)?;
    let (rtmp_addr, api_addr, flv_addr) = listeners.addrs()?;
    let auth = Auth::new(
        &config.auth,
        config.admin_token.clone(),
        crate::auth::server_id(),
    )
    .map_err(std::io::Error::other)?;
    let origin = Origin::new(config, identity, auth);
    if let Some(path) = origin.config.coworker_file.clone() {
        tokio::spawn(crate::cluster::coworkers::watch_file(
            origin.coworkers.clone(),
            path,
            Duration::from_secs(1),
        ));
    }
    let rtmp = tokio::spawn(listener::serve_rtmp(origin.clone(), listeners.rtmp));
    let api = tokio::spawn(crate::http::serve_api(origin.clone(), listeners.api));
    let flv = tokio::spawn(crate::http::serve_flv(origin.clone(), listeners.flv));
    origin.listening.store(true, Ordering::SeqCst);
    tracing::info!(rtmp = %rtmp_addr, api = %api_addr, flv = %flv_addr, "origin listening");
    stop.await;
    tracing::info!(
        grace_seconds = origin.config.shutdown_grace.as_secs_f64(),
        "shutting down: no new connections"
    );
    origin.begin_shutdown();
    rtmp.abort();
    let deadline = tokio::time::Instant::now() + origin.config.shutdown_grace;
    while origin.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    origin.end_publishers.send_replace(true);
    api.abort();
    flv.abort();
    tracing::info!(remaining = origin.open_connections(), "origin stopped");
    Ok(())
}
