//! HTTP edges: the API server (port 1985) and HTTP-FLV playback (port 8080).

pub mod api;
pub mod flv;
pub mod hls;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::server::Origin;

pub async fn serve_api(origin: Arc<Origin>, listener: TcpListener) {
    if let Err(e) = axum::serve(listener, api::router(origin)).await {
        tracing::error!(error = %e, "API server failed");
    }
}

pub async fn serve_flv(origin: Arc<Origin>, listener: TcpListener) {
    if let Err(e) = axum::serve(listener, flv::router(origin)).await {
        tracing::error!(error = %e, "HTTP-FLV server failed");
    }
}
