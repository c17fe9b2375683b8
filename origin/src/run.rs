//! Running one origin: bind its listeners, serve RTMP, the API and HTTP playback, and
//! shut down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::cluster::Identity;
use crate::config::Config;
use crate::state::Origin;

/// Accept backlog: large enough that a burst of thousands of joins does not fail.
pub const BACKLOG: u32 = 8192;

/// Binds with SO_REUSEADDR and a large backlog.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
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
            rtmp: bind(config.rtmp_listen).await?,
            api: bind(config.api_listen).await?,
            flv: bind(config.flv_listen).await?,
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
    let mut config = config;
    crate::fd_budget::apply(&mut config);
    let identity = listeners.identity(&config)?;
    let (rtmp_addr, api_addr, flv_addr) = listeners.addrs()?;
    let auth = crate::auth::Auth::new(
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
    let rtmp = tokio::spawn(crate::server::serve_rtmp(origin.clone(), listeners.rtmp));
    let api = tokio::spawn(crate::http::serve_api(origin.clone(), listeners.api));
    let flv = tokio::spawn(crate::http::serve_play(origin.clone(), listeners.flv));
    origin.set_listening();
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
    origin.end_publishers();
    api.abort();
    flv.abort();
    tracing::info!(remaining = origin.open_connections(), "origin stopped");
    Ok(())
}
