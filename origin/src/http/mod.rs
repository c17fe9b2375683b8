//! HTTP edges: the API server (port 1985) and HTTP-FLV playback (port 8080).

pub mod api;
pub mod flv;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::server::Origin;

pub async fn serve_api(origin: Arc<Origin>, listener: TcpListener) {
    if let Err(e) = axum::serve(listener, api::router(origin)).await {
        tracing::error!(error = %e, "API server failed");
    }
}

pub async fn serve_flv(origin: Arc<Origin>, listener: TcpListener) {
    let listener =
        crate::auth::accept::LimitedListener::new(listener, origin.auth.clone(), "http-flv");
    let app =
        flv::router(origin).into_make_service_with_connect_info::<crate::auth::accept::PeerAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP-FLV server failed");
    }
}
