//! HTTP-FLV playback: `GET /<app>/<stream>.flv` streams FLV (header, metadata, sequence
//! headers, GOP, then live) with the same fan-out and slow-player rules as RTMP. On an
//! origin that does not have the stream, the player is sent to the owner with HTTP 302.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::time::Instant;

use super::api::parse_query;
use crate::auth::accept::PeerAddr;
use crate::auth::{Event as AuthEvent, Notice, Request as AuthRequest};
use crate::cluster::ownership::flv_redirect;
use crate::media::flv::file_header;
use crate::media::{Next, StreamKey, Subscriber};
use crate::metrics::{self, KindLabel};
use crate::rtmp::url;
use crate::server::{ConnectionGuard, Located, Origin};

pub fn router(origin: Arc<Origin>) -> Router {
    Router::new()
        .route("/{*path}", get(play))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(origin)
}

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn play(
    State(origin): State<Arc<Origin>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(path) = path.strip_suffix(".flv") else {
        return text(
            StatusCode::NOT_FOUND,
            "only /<app>/<stream>.flv is served here\n".into(),
        );
    };
    let Some((app, stream)) = path.rsplit_once('/') else {
        return text(
            StatusCode::NOT_FOUND,
            "expected /<app>/<stream>.flv\n".into(),
        );
    };
    let app = app.trim_matches('/');
    if !url::valid_name(app) || !url::valid_name(stream) {
        return text(
            StatusCode::BAD_REQUEST,
            "invalid app or stream name\n".into(),
        );
    }
    let params = parse_query(raw.as_deref().unwrap_or_default());
    let vhost = params
        .iter()
        .find(|(k, v)| k == "vhost" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| origin_wire::DEFAULT_VHOST.to_string());
    let key = StreamKey::new(vhost, app, stream);
    // HTTP-FLV players count against the same connection limit as RTMP connections.
    let Some(guard) = origin.admit(&format_args!("HTTP-FLV player of {key}")) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached\n".into(),
        );
    };
    metrics::global()
        .connections_total
        .get_or_create(&KindLabel { kind: "http-flv" })
        .inc();

    let host_header = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let ip = origin_wire::addr::HostPort::parse(host_header)
        .map(|hp| hp.host)
        .unwrap_or_else(|_| host_header.to_string());
    let request = AuthRequest {
        client_id: origin.next_id().to_string(),
        ip: Some(peer.ip()),
        vhost: key.vhost.clone(),
        app: key.app.clone(),
        stream: key.stream.clone(),
        param: raw
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(|q| format!("?{q}"))
            .unwrap_or_default(),
        tc_url: format!("http://{host_header}/{}", key.app),
        page_url: headers
            .get(header::REFERER)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        stream_id: origin
            .registry
            .get(&key)
            .and_then(|s| s.publisher())
            .map(|p| p.id.to_string())
            .unwrap_or_default(),
        ..AuthRequest::default()
    };
    if let Err(refusal) = origin.auth.check(AuthEvent::Play, &request).await {
        tracing::info!(stream = %key, %peer, reason = refusal.reason, "HTTP-FLV play refused");
        return (
            StatusCode::FORBIDDEN,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            format!("{refusal}\n"),
        )
            .into_response();
    }
    // on_stop goes out when this play ends, whichever way.
    let stop = origin.auth.notice(AuthEvent::Stop, request);
    let sub = match origin.locate(&key, &ip).await {
        Located::Local(sub) => sub,
        Located::Remote(found) => {
            let location =
                flv_redirect(&found.owner, origin.identity.flv_port, &key, raw.as_deref());
            metrics::global()
                .redirects
                .get_or_create(&KindLabel { kind: "http" })
                .inc();
            tracing::info!(stream = %key, to = %location, "HTTP-FLV 302 redirect");
            return (StatusCode::FOUND, [(header::LOCATION, location)], "").into_response();
        }
        Located::NotFound => {
            return text(
                StatusCode::NOT_FOUND,
                format!("stream {app}/{stream} is not published on any origin\n"),
            );
        }
    };
    origin.update_gauges();
    tracing::info!(stream = %key, "HTTP-FLV playing");
    let body = Body::from_stream(flv_body(origin.clone(), sub, guard, stop));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "video/x-flv"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

struct BodyState {
    origin: Arc<Origin>,
    sub: Subscriber,
    /// Counts this player as an open connection until the body ends.
    _guard: ConnectionGuard,
    /// Sends on_stop when the player goes.
    _stop: Option<Notice>,
    header_sent: bool,
    unpublished_at: Option<Instant>,
    /// Live media went out since the last rest: rest `merge_writes` before waiting again.
    rest_due: bool,
    done: bool,
}

impl Drop for BodyState {
    fn drop(&mut self) {
        let key = self.sub.stream().key.clone();
        // The subscriber is dropped after this; reap on the next tick.
        let origin = self.origin.clone();
        tokio::spawn(async move {
            origin.registry.reap(&key);
            origin.update_gauges();
        });
    }
}

/// The FLV byte stream of one player: each item is a shared, pre-encoded tag.
fn flv_body(
    origin: Arc<Origin>,
    sub: Subscriber,
    guard: ConnectionGuard,
    stop: Option<Notice>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let state = BodyState {
        origin,
        sub,
        _guard: guard,
        _stop: stop,
        header_sent: false,
        unpublished_at: None,
        rest_due: false,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.header_sent {
            st.header_sent = true;
            return Some((Ok(file_header(true, true)), st));
        }
        let merge = st.origin.config.merge_writes;
        loop {
            let republish = st.origin.config.republish_timeout;
            // What is ready goes out at once (hyper gathers consecutive chunks into one
            // write). When nothing is ready after live media went out, rest for the merge
            // interval first, so the next write carries everything that arrived meanwhile,
            // as RTMP players do. The join burst never waits.
            let next = match st.sub.try_next() {
                Some(n) => n,
                None if st.rest_due => {
                    st.rest_due = false;
                    tokio::time::sleep(merge).await;
                    continue;
                }
                None => match st.unpublished_at {
                    None => st.sub.next().await,
                    Some(at) => tokio::select! {
                        n = st.sub.next() => n,
                        _ = tokio::time::sleep_until(at + republish) => Next::Closed,
                    },
                },
            };
            match next {
                Next::Frame(f) => {
                    st.rest_due = !merge.is_zero() && !st.sub.catching_up();
                    let tag = f.flv();
                    metrics::global().bytes_out.inc_by(tag.len() as u64);
                    return Some((Ok(tag), st));
                }
                Next::Unpublished => st.unpublished_at = Some(Instant::now()),
                Next::Published => st.unpublished_at = None,
                Next::TooSlow => {
                    metrics::global().slow_player_disconnects.inc();
                    tracing::warn!(stream = %st.sub.stream().key, "HTTP-FLV player too slow; disconnecting");
                    return None;
                }
                Next::Closed => return None,
            }
        }
    })
}
