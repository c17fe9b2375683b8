//! HTTP-FLV playback: `GET /<app>/<stream>.flv` streams FLV (header, metadata, sequence
//! headers, GOP, then live) through the same [`Player`] as RTMP. On an origin that does
//! not have the stream, the player is sent to the owner with HTTP 302.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::cors;
use crate::auth::{self, Event as AuthEvent};
use crate::cluster::ownership::flv_redirect;
use crate::media::flv::file_header;
use crate::media::name::parse_play_path;
use crate::media::{End, Frame, Player};
use crate::metrics::{self, KindLabel};
use crate::state::{Located, Origin};

pub fn router(origin: Arc<Origin>) -> Router {
    Router::new()
        .route("/{*path}", get(play).options(preflight))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::map_response(cors::add_headers))
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

async fn preflight() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The host the client addressed (echoed in ownership queries).
pub fn request_host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            origin_wire::addr::HostPort::parse(h)
                .map(|hp| hp.host)
                .unwrap_or_else(|_| h.to_string())
        })
        .unwrap_or_default()
}

async fn play(
    State(origin): State<Arc<Origin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    // The raw path: names are percent-decoded once, in `parse_play_path` (axum's `Path`
    // would decode them a first time).
    let play = match parse_play_path(uri.path(), raw.as_deref(), ".flv") {
        Ok(p) => p,
        Err(e) => return text(StatusCode::NOT_FOUND, format!("{e}\n")),
    };
    let key = play.key;
    let header = |name| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
    };
    let request = auth::Request {
        client_id: origin.next_id().to_string(),
        ip: Some(peer.ip()),
        vhost: key.vhost.clone(),
        app: key.app.clone(),
        stream: key.stream.clone(),
        param: play
            .query
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(|q| format!("?{q}"))
            .unwrap_or_default(),
        tc_url: format!("http://{}/{}", header(header::HOST), key.app),
        page_url: header(header::REFERER).to_string(),
        stream_id: origin
            .registry
            .get(&key)
            .and_then(|s| s.publisher())
            .map(|p| p.id.to_string())
            .unwrap_or_default(),
        ..auth::Request::default()
    };
    if let Err(refusal) = origin.auth.check(AuthEvent::Play, &request).await {
        tracing::info!(stream = %key, %peer, reason = refusal.reason, "HTTP-FLV play refused");
        return text(StatusCode::FORBIDDEN, format!("{refusal}\n"));
    }
    // on_stop goes out when this play ends, whichever way (the body holds it).
    let stop = origin.auth.notice(AuthEvent::Stop, request);
    let ip = request_host(&headers);
    let opted_in = play
        .query
        .as_deref()
        .is_some_and(|q| crate::rtmp::url::query_param(q, "redirect") == Some("302"));
    let redirect = origin.redirects(false, opted_in);
    let relayed = match origin.locate(&key, &ip, redirect).await {
        Located::Local(player) => Some(player),
        Located::Remote { found, player } => {
            if !redirect {
                origin.relay(&key, found, player, &ip).await
            } else {
                drop(player);
                let location = flv_redirect(
                    &found.owner,
                    origin.identity.flv_port,
                    &key,
                    play.query.as_deref(),
                );
                metrics::global()
                    .redirects
                    .get_or_create(&KindLabel { kind: "http" })
                    .inc();
                // The target's query is the client's (it may hold a token): not logged.
                let to = location.split('?').next().unwrap_or_default();
                tracing::info!(stream = %key, to, "HTTP-FLV 302 redirect");
                return (StatusCode::FOUND, [(header::LOCATION, location)], "").into_response();
            }
        }
        Located::NotFound => None,
    };
    let Some(player) = relayed else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "stream {}/{} is not published on any origin\n",
                key.app, key.stream
            ),
        );
    };
    tracing::info!(stream = %key, "HTTP-FLV playing");
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "video/x-flv"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(flv_body(player, stop)),
    )
        .into_response()
}

struct BodyState {
    player: Player,
    /// Sends on_stop when the player goes.
    _stop: Option<auth::Notice>,
    header_sent: bool,
    batch: Vec<Arc<Frame>>,
    /// Tags of the current batch not handed to hyper yet.
    ready: VecDeque<Bytes>,
    done: bool,
}

/// The FLV byte stream of one player: each item is a shared, pre-encoded tag. Dropping
/// the body (the client left) drops the player, which releases the stream.
fn flv_body(
    player: Player,
    stop: Option<auth::Notice>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let state = BodyState {
        player,
        _stop: stop,
        header_sent: false,
        batch: Vec::with_capacity(16),
        ready: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(tag) = st.ready.pop_front() {
                metrics::global().bytes_out.inc_by(tag.len() as u64);
                return Some((Ok(tag), st));
            }
            if st.done {
                return None;
            }
            let delivery = st.player.next_batch(&mut st.batch).await;
            if !st.header_sent && !st.batch.is_empty() {
                // By the first media the stream has shown which tracks it has.
                st.header_sent = true;
                let (audio, video) = st.player.stream().tracks();
                st.ready.push_back(file_header(audio, video));
            }
            st.ready.extend(st.batch.drain(..).map(|f| f.flv()));
            match delivery.end {
                None => {}
                Some(End::TooSlow) => {
                    tracing::warn!(stream = %st.player.stream().key, "HTTP-FLV player too slow; disconnecting");
                    st.done = true;
                }
                Some(End::Closed | End::NotRepublished) => st.done = true,
            }
        }
    })
}
