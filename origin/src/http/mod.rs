//! HTTP edges: the API server (port 1985) and HTTP playback (port 8080), both served by
//! one connection loop with limits: connections are counted from accept against
//! `--max-connections`, a request header must arrive within `--http-header-timeout`
//! (which also closes idle keep-alive connections), and every response write has the
//! send deadline `--write-timeout`.

pub mod api;
pub mod cors;
pub mod deadline;
pub mod flv;
pub mod hls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::{self, KindLabel};
use crate::state::Origin;
use deadline::DeadlineStream;

/// Connections answered 503 at once over the connection limit, at most this many at a
/// time (beyond that they are just closed).
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// Which limit a listener's connections count against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// `--max-connections`, shared with RTMP.
    Media,
    /// `--max-api-connections`, so the control plane stays reachable when players fill
    /// the media limit.
    Api,
}

pub async fn serve_api(origin: Arc<Origin>, listener: TcpListener) {
    let router = api::router(origin.clone());
    serve(origin, listener, router, Pool::Api).await
}

pub async fn serve_play(origin: Arc<Origin>, listener: TcpListener) {
    let hls = hls::Hls::new(origin.clone(), origin.config.hls);
    let router = hls::layer(flv::router(origin.clone()), hls);
    serve(origin, listener, router, Pool::Media).await
}

async fn serve(origin: Arc<Origin>, listener: TcpListener, router: Router, pool: Pool) {
    let kind = match pool {
        Pool::Media => "http-flv",
        Pool::Api => "api",
    };
    let refusing = Arc::new(AtomicUsize::new(0));
    let mut acceptor = crate::fd_budget::Acceptor::new(kind);
    loop {
        let (socket, peer) = acceptor.accept(&listener).await;
        // Per-address limits on the playback port (not the API: coworkers share addresses):
        // a flood from one address is closed at once and never takes global slots.
        let ip_guard = match kind {
            "api" => None,
            _ => match origin.auth.admit(peer.ip(), kind) {
                Some(g) => Some(g),
                None => {
                    drop(socket);
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let guard = match pool {
            Pool::Media => origin.admit(&peer),
            Pool::Api => origin.admit_api(&peer),
        };
        if guard.is_some() {
            metrics::global()
                .connections_total
                .get_or_create(&KindLabel { kind })
                .inc();
        }
        let service = match &guard {
            Some(_) => router.clone(),
            None => {
                if refusing.load(Ordering::Relaxed) >= MAX_REFUSALS_IN_FLIGHT {
                    continue;
                }
                refusing.fetch_add(1, Ordering::Relaxed);
                over_limit()
            }
        };
        let origin = origin.clone();
        let refusing = refusing.clone();
        tokio::spawn(async move {
            let over = guard.is_none();
            serve_connection(&origin, socket, peer, service, over).await;
            if over {
                refusing.fetch_sub(1, Ordering::Relaxed);
            }
            drop(guard);
            drop(ip_guard);
        });
    }
}

async fn serve_connection(
    origin: &Origin,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    service: Router,
    over_limit: bool,
) {
    let io = TokioIo::new(DeadlineStream::new(socket, origin.config.write_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(origin.config.http_header_timeout)
        .keep_alive(!over_limit)
        .max_buf_size(64 * 1024);
    // Handlers see the client's address as axum's `ConnectInfo<SocketAddr>`.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tower_service::Service::call(&mut service.clone(), req)
    });
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut shutdown = origin.shutdown_signal();
    let stopping = async {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping => {
            // Finish the response under way (a player's body), close when idle.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// The answer on a connection over the limit.
fn over_limit() -> Router {
    Router::new()
        .fallback(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached\n",
            )
        })
        .layer(axum::middleware::map_response(cors::add_headers))
}
