//! HTTP-FLV playback: `GET /<app>/<stream>.flv` streams FLV (header, metadata, sequence
//! headers, GOP, then live) through the same [`Player`] as RTMP. On an origin that does
//! not have the stream, `route` decides: relayed here, or sent to the owner with HTTP 302.

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
use crate::media::flv::file_header;
use crate::media::name::parse_play_path;
use crate::media::{End, Frame, Player};
use crate::metrics;
use crate::route::{self, Client, ClientKind, Decision, PlayRequest, Protocol};
use crate::state::Origin;

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
    let header = |name| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
    };
    let req = PlayRequest {
        protocol: Protocol::HttpFlv,
        client: Client {
            id: origin.next_id().to_string(),
            ip: Some(peer.ip()),
            host: request_host(&headers),
            tc_url: format!("http://{}/{}", header(header::HOST), play.key.app),
            page_url: header(header::REFERER).to_string(),
            kind: ClientKind {
                opted_in: route::opts_into_redirect([play.query.as_deref()]),
                ..ClientKind::default()
            },
            cluster_member: false,
        },
        key: play.key,
        query: play.query,
    };
    let key = &req.key;
    let request = match route::authorize(&origin, &req).await {
        Ok(r) => r,
        Err(refusal) => {
            tracing::info!(stream = %key, %peer, reason = refusal.reason, "HTTP-FLV play refused");
            return text(StatusCode::FORBIDDEN, format!("{refusal}\n"));
        }
    };
    // on_stop goes out when this play ends, whichever way (the body holds it).
    let stop = origin.auth.notice(AuthEvent::Stop, request);
    let player = match route::route(&origin, &req).await {
        Decision::Play(player) => player,
        Decision::Redirect(target) => {
            return (
                StatusCode::FOUND,
                [(header::LOCATION, target.location())],
                "",
            )
                .into_response();
        }
        Decision::TooManyWaiting => {
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{}\n", Decision::TOO_MANY_WAITING),
            );
        }
        Decision::NotFound => {
            return text(
                StatusCode::NOT_FOUND,
                format!(
                    "stream {}/{} is not published on any origin\n",
                    key.app, key.stream
                ),
            );
        }
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
