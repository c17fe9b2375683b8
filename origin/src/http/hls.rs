//! HLS on the HTTP-FLV port: `GET /<app>/<stream>.m3u8` and the segments, parts and init
//! segments it names (`/<app>/<stream>/<session>/<name>`), answered from the in-memory
//! packager of `hls::live`. Packaging starts on the first playlist request (routed by
//! `route`, like every play) and stops after `--hls-idle-timeout` without requests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next as MiddlewareNext;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::api::parse_query;
use super::cors;
use super::flv::request_host;
use crate::config::HlsOptions;
use crate::hls::live::{Live, Packagers};
use crate::hls::names::{self, Resource};
use crate::hls::playlist::{self, Uris};
use crate::hls::reload::{self, Lookup, ReloadRequest};
use crate::media::StreamKey;
use crate::media::name::{percent_decode, valid_name};
use crate::metrics::{self, KindLabel};
use crate::route::{self, Client, ClientKind, Decision, PlayRequest, Policy, Protocol};
use crate::state::Origin;

/// Longest request path and query accepted.
const MAX_PATH: usize = 1024;
const MAX_QUERY: usize = 1024;
/// Most HLS requests waiting at once (blocking reloads, first playlists, hinted parts).
const MAX_WAITING: usize = 20_000;
/// How long an authorized client is not asked again, and how many are remembered.
const AUTH_TTL: Duration = Duration::from_secs(30);
const MAX_ALLOWED: usize = 50_000;

#[derive(Clone)]
enum Outcome {
    Live(Arc<Live>),
    Redirect(String),
    NotFound,
    /// The address of the client whose request started it has too many plays waiting.
    TooManyWaiting(Option<std::net::IpAddr>),
}

type Starting = Shared<BoxFuture<'static, Outcome>>;

pub struct Hls {
    origin: Arc<Origin>,
    options: HlsOptions,
    packagers: Arc<Packagers>,
    /// One `locate` per stream however many first requests arrive together.
    starting: Mutex<HashMap<(StreamKey, Policy), Starting>>,
    waiting: AtomicUsize,
    /// Clients allowed to play recently: (address, stream, query) until when.
    allowed: Mutex<HashMap<AllowedSlot, Instant>>,
}

type AllowedSlot = (Option<IpAddr>, StreamKey, String);

impl Hls {
    pub fn new(origin: Arc<Origin>, options: HlsOptions) -> Arc<Self> {
        Arc::new(Self {
            origin,
            options: HlsOptions {
                packager: options.packager.sanitized(),
                ..options
            },
            packagers: Arc::default(),
            starting: Mutex::default(),
            waiting: AtomicUsize::new(0),
            allowed: Mutex::default(),
        })
    }

    pub fn active_packagers(&self) -> u64 {
        self.packagers.active()
    }
}

/// Wraps the HTTP-FLV router: HLS paths are answered here, everything else passes on.
pub fn layer(router: axum::Router, hls: Arc<Hls>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(hls, intercept))
}

/// What an HLS path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Playlist {
        app: String,
        stream: String,
    },
    Resource {
        app: String,
        stream: String,
        session: String,
        name: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum PathError {
    #[error("request path too long")]
    TooLong,
    #[error("bad percent-encoding in path")]
    Encoding,
    #[error("expected /<app>/<stream>.m3u8 or a name it lists")]
    Shape,
    #[error("invalid app or stream name")]
    Name,
}

fn is_hls_path(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    [".m3u8", ".ts", ".m4s", ".mp4"]
        .iter()
        .any(|ext| last.ends_with(ext))
}

fn parse_target(path: &str) -> Result<Target, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|seg| percent_decode(seg).ok_or(PathError::Encoding))
        .collect::<Result<_, _>>()?;
    let valid = |app: &str, stream: &str| valid_name(app) && valid_name(stream);
    if let Some(stream) = segs.last().and_then(|l| l.strip_suffix(".m3u8")) {
        if segs.len() < 2 {
            return Err(PathError::Shape);
        }
        let app = segs[..segs.len() - 1].join("/");
        if !valid(&app, stream) {
            return Err(PathError::Name);
        }
        return Ok(Target::Playlist {
            app,
            stream: stream.to_string(),
        });
    }
    let n = segs.len();
    if n < 4 {
        return Err(PathError::Shape);
    }
    let app = segs[..n - 3].join("/");
    if !valid(&app, &segs[n - 3]) {
        return Err(PathError::Name);
    }
    Ok(Target::Resource {
        app,
        stream: segs[n - 3].clone(),
        session: segs[n - 2].clone(),
        name: segs[n - 1].clone(),
    })
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        msg.into(),
    )
        .into_response()
}

fn count(kind: &'static str) {
    metrics::global()
        .hls_requests
        .get_or_create(&KindLabel { kind })
        .inc();
}

async fn intercept(State(hls): State<Arc<Hls>>, req: Request, next: MiddlewareNext) -> Response {
    if !is_hls_path(req.uri().path()) {
        return next.run(req).await;
    }
    cors::add_headers(hls.answer(req).await).await
}

/// Counts a waiting request while it waits.
struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hls {
    fn wait_slot(&self) -> Option<WaitSlot<'_>> {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(WaitSlot(&self.waiting))
    }

    /// Three target durations: how long the spec lets a blocked request wait.
    fn block_limit(&self, live: &Live) -> Duration {
        Duration::from_secs(3 * live.with(|p| p.target_secs()).max(1))
    }

    async fn answer(self: &Arc<Self>, req: Request) -> Response {
        match *req.method() {
            Method::OPTIONS => return StatusCode::NO_CONTENT.into_response(),
            Method::GET | Method::HEAD => {}
            _ => return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n"),
        }
        let raw = req.uri().query().unwrap_or_default().to_string();
        if raw.len() > MAX_QUERY {
            count("bad");
            return text(StatusCode::BAD_REQUEST, "query too long\n");
        }
        let target = match parse_target(req.uri().path()) {
            Ok(t) => t,
            Err(e) => {
                count("bad");
                let status = if e == PathError::Shape {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::BAD_REQUEST
                };
                return text(status, format!("{e}\n"));
            }
        };
        let params = parse_query(&raw);
        let vhost = params
            .iter()
            .find(|(k, _)| k == "vhost")
            .map_or("", |(_, v)| v.as_str());
        let (app, stream) = match &target {
            Target::Playlist { app, stream } | Target::Resource { app, stream, .. } => {
                (app, stream)
            }
        };
        let key = match StreamKey::parse(vhost, app, stream) {
            Ok(k) => k,
            Err(e) => {
                count("bad");
                return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        // The client's own query (tokens, vhost) without the blocking-reload parameters:
        // authorized once per client and carried by every URI of its playlist.
        let client_query = raw
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("_HLS_"))
            .collect::<Vec<_>>()
            .join("&");
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (host_header, referer, host) = {
            let header = |name| {
                req.headers()
                    .get(name)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            (
                header(header::HOST),
                header(header::REFERER),
                request_host(req.headers()),
            )
        };
        drop(req);
        let play = PlayRequest {
            protocol: Protocol::Hls,
            client: Client {
                // Given when the client is checked (most requests are not).
                id: String::new(),
                ip: peer,
                host,
                tc_url: format!("http://{host_header}/{}", key.app),
                page_url: referer,
                kind: ClientKind {
                    opted_in: route::opts_into_redirect([Some(client_query.as_str())]),
                    ..ClientKind::default()
                },
                cluster_member: false,
            },
            key,
            query: Some(client_query),
        };
        if let Err(refused) = self.authorize(&play).await {
            return refused;
        }
        match target {
            Target::Playlist { .. } => {
                count("playlist");
                self.playlist(play, &params).await
            }
            Target::Resource { session, name, .. } => {
                self.resource(&play.key, &session, &name).await
            }
        }
    }

    /// Play authorization (docs/architecture.md, "Auth and hooks"), as for an HTTP-FLV player: rules and on_play hooks
    /// decide; an allowed (address, stream, query) is remembered for `AUTH_TTL`, so a
    /// polling client is not re-checked on every playlist and segment.
    async fn authorize(&self, play: &PlayRequest) -> Result<(), Response> {
        let (ip, key) = (play.client.ip, &play.key);
        let slot = (ip, key.clone(), play.query.clone().unwrap_or_default());
        let now = Instant::now();
        {
            let cache = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
            if cache.get(&slot).is_some_and(|until| *until > now) {
                return Ok(());
            }
        }
        let mut play = play.clone();
        play.client.id = self.origin.next_id().to_string();
        if let Err(refusal) = route::authorize(&self.origin, &play).await {
            count("refused");
            tracing::info!(stream = %key, ip = ?ip, reason = refusal.reason, "HLS play refused");
            return Err(text(StatusCode::FORBIDDEN, format!("{refusal}\n")));
        }
        let mut cache = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_ALLOWED {
            cache.retain(|_, until| *until > now);
            if cache.len() >= MAX_ALLOWED {
                cache.clear();
            }
        }
        cache.insert(slot, now + AUTH_TTL);
        Ok(())
    }

    async fn live(self: &Arc<Self>, play: &PlayRequest) -> Outcome {
        let key = &play.key;
        if let Some(l) = self.packagers.get(key) {
            return Outcome::Live(l);
        }
        let slot = (key.clone(), play.policy(self.origin.config.route));
        let fut = {
            let mut starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
            starting
                .entry(slot.clone())
                .or_insert_with(|| {
                    // A task, so the start completes (and leaves the map) even when every
                    // client that asked has gone.
                    let me = self.clone();
                    let play = play.clone();
                    let task = tokio::spawn(async move {
                        let out = me.clone().start(&play).await;
                        me.starting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&slot);
                        out
                    });
                    async move { task.await.unwrap_or(Outcome::NotFound) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        fut.await
    }

    /// The first playlist request of a stream: `route` decides, a local packager plays
    /// what is served here.
    async fn start(self: Arc<Self>, play: &PlayRequest) -> Outcome {
        if let Some(l) = self.packagers.get(&play.key) {
            return Outcome::Live(l);
        }
        match route::route(&self.origin, play).await {
            Decision::Play(player) => Outcome::Live(self.packagers.start(
                &play.key,
                player,
                self.options.packager,
                self.options.idle_timeout,
            )),
            Decision::Redirect(target) => Outcome::Redirect(target.location()),
            Decision::NotFound => Outcome::NotFound,
            Decision::TooManyWaiting => Outcome::TooManyWaiting(play.client.ip),
        }
    }

    async fn playlist(
        self: &Arc<Self>,
        play: PlayRequest,
        params: &[(String, String)],
    ) -> Response {
        let ll = self.options.packager.low_latency;
        let block = if ll {
            match ReloadRequest::parse(params) {
                Ok(b) => b,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        } else {
            None
        };
        let Some(_slot) = self.wait_slot() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many waiting HLS requests\n",
            );
        };
        let key = &play.key;
        let mut outcome = self.live(&play).await;
        if matches!(outcome, Outcome::TooManyWaiting(ip) if ip != play.client.ip) {
            // Another client's start was refused for that client's address, not ours.
            outcome = self.live(&play).await;
        }
        let live = match outcome {
            Outcome::Live(l) => l,
            Outcome::Redirect(location) => {
                return (StatusCode::FOUND, [(header::LOCATION, location)], "").into_response();
            }
            Outcome::NotFound => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "stream {}/{} is not published on any origin\n",
                        key.app, key.stream
                    ),
                );
            }
            Outcome::TooManyWaiting(_) => {
                return text(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{}\n", Decision::TOO_MANY_WAITING),
                );
            }
        };
        let _request = live.request();
        live.count_poll();
        // Resources carry the client's query (vhost, tokens) and the packager's session.
        let mut uris = Uris::for_stream(&key.stream, play.query.as_deref().unwrap_or_default());
        uris.prefix.push_str(&format!("{}/", live.session));
        let limit = self.block_limit(&live);
        let deadline = Instant::now()
            + match block {
                Some(_) => limit,
                // The first segment needs a keyframe past the target duration.
                None => (limit + Duration::from_secs(5)).min(Duration::from_secs(30)),
            };
        let rendered = live
            .wait_for(deadline, |p| {
                let ready = match block {
                    Some(b) => b.ready(p),
                    None => Ok(true),
                };
                match ready {
                    Ok(true) => live
                        .cached(&uris.query, || playlist::render(p, &uris))
                        .map(Ok),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .await;
        match rendered {
            Some(Ok(body)) => {
                metrics::global().hls_bytes.inc_by(body.len() as u64);
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }
            Some(Err(e)) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the playlist is not ready yet (no complete segment, or the requested part did not appear in time)\n",
            ),
        }
    }

    async fn resource(self: &Arc<Self>, key: &StreamKey, session: &str, name: &str) -> Response {
        let ll = self.options.packager.low_latency;
        let resource = match names::parse_resource(name, ll) {
            Ok(r) => r,
            Err(e) => {
                count("bad");
                return text(StatusCode::NOT_FOUND, format!("{e}\n"));
            }
        };
        let (kind, content_type) = match resource {
            Resource::Segment(_) if !ll => ("segment", "video/mp2t"),
            Resource::Segment(_) => ("segment", "video/mp4"),
            Resource::Part(..) => ("part", "video/mp4"),
            Resource::Init(_) => ("init", "video/mp4"),
        };
        count(kind);
        let live = match self.packagers.get(key) {
            Some(l) if names::number::<u64>(session).ok() == Some(l.session) => l,
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "no such HLS session (expired or never was)\n",
                );
            }
        };
        let _request = live.request();
        let lookup = |p: &crate::hls::Packager| match resource {
            Resource::Segment(msn) => reload::segment(p, msn),
            Resource::Part(msn, i) => reload::part(p, msn, u64::from(i)),
            Resource::Init(generation) => match p.init_of(generation) {
                Some(b) => Lookup::Found(vec![b.clone()]),
                None => Lookup::Gone,
            },
        };
        let found = match live.with(lookup) {
            Lookup::Found(b) => Some(b),
            Lookup::Gone => None,
            Lookup::Soon => {
                let Some(_slot) = self.wait_slot() else {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many waiting HLS requests\n",
                    );
                };
                let deadline = Instant::now() + self.block_limit(&live);
                live.wait_for(deadline, |p| match lookup(p) {
                    Lookup::Found(b) => Some(Some(b)),
                    Lookup::Gone => Some(None),
                    Lookup::Soon => None,
                })
                .await
                .flatten()
            }
        };
        let Some(chunks) = found else {
            return text(
                StatusCode::NOT_FOUND,
                "no such segment or part (expired, or never will be)\n",
            );
        };
        let len: usize = chunks.iter().map(Bytes::len).sum();
        metrics::global().hls_bytes.inc_by(len as u64);
        // Shared chunks, never copied; a client that stops reading is cut by the
        // connection's send deadline.
        let body = Body::from_stream(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_string(),
                ),
                (header::CONTENT_LENGTH, len.to_string()),
            ],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/live/s.m3u8"),
            Ok(Target::Playlist {
                app: "live".into(),
                stream: "s".into()
            })
        );
        assert_eq!(
            parse_target("/a/b/s%20t.m3u8"),
            Ok(Target::Playlist {
                app: "a/b".into(),
                stream: "s t".into()
            })
        );
        assert_eq!(
            parse_target("/live/s/17/seg3.ts"),
            Ok(Target::Resource {
                app: "live".into(),
                stream: "s".into(),
                session: "17".into(),
                name: "seg3.ts".into()
            })
        );
        assert_eq!(parse_target("/s.m3u8"), Err(PathError::Shape));
        assert_eq!(parse_target("/live/seg3.ts"), Err(PathError::Shape));
        assert_eq!(parse_target("/live/%zz.m3u8"), Err(PathError::Encoding));
        assert_eq!(parse_target("/../s.m3u8"), Err(PathError::Name));
        assert_eq!(
            parse_target(&format!("/live/{}.m3u8", "x".repeat(2000))),
            Err(PathError::TooLong)
        );
        assert!(is_hls_path("/live/s.m3u8") && is_hls_path("/l/s/1/part1.2.m4s"));
        assert!(!is_hls_path("/live/s.flv"));
    }

    proptest! {
        #[test]
        fn prop_paths_never_panic(s in "(/[a-z0-9%.]{0,6}){0,6}") {
            let _ = parse_target(&s);
        }
    }
}
