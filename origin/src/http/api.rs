//! The origin HTTP API (docs/architecture.md, "HTTP API"): ownership query, the ownership
//! directory's internal endpoints, coworkers, streams, drain, health, metrics.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use origin_wire::clusters::ClustersQuery;
use origin_wire::coworkers::{CoworkerDocument, MAX_DOCUMENT_BYTES};
use origin_wire::directory::{
    self, ClaimAnswer, ClaimRequest, LookupRequest, ReleaseAnswer, ReleaseRequest,
};
use origin_wire::paths;
use serde_json::json;

use crate::cluster::coworkers::{Applied, ApplyError};
use crate::cluster::directory::{ClaimError, ServeError};
use crate::cluster::ownership;
use crate::state::Origin;

pub fn router(origin: Arc<Origin>) -> Router {
    Router::new()
        .route(paths::CLUSTERS, any(clusters))
        .route(
            paths::DIRECTORY_CLAIM,
            post(directory_claim).layer(small_body()),
        )
        .route(
            paths::DIRECTORY_RELEASE,
            post(directory_release).layer(small_body()),
        )
        .route(
            paths::DIRECTORY_LOOKUP,
            post(directory_lookup).layer(small_body()),
        )
        .route(paths::COWORKERS, get(get_coworkers).put(put_coworkers))
        .route(paths::STREAMS, get(streams))
        .route(paths::DRAIN, post(drain).get(drain_status))
        .route(paths::HEALTHZ, get(|| async { "ok\n" }))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_DOCUMENT_BYTES))
        .with_state(origin)
}

/// The body limit of the directory endpoints (their messages are a few hundred bytes).
fn small_body() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(directory::MAX_BODY_BYTES)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Lenient query-string decoding: `+` is a space, bad `%` escapes are kept as they are,
/// invalid UTF-8 is replaced. SRS does not encode at all, so plain text must pass.
pub fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `k=v&...` into (key, value) pairs, leniently.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn valid_callback(cb: &str) -> bool {
    !cb.is_empty()
        && cb.len() <= 128
        && cb
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'))
}

async fn clusters(
    State(origin): State<Arc<Origin>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    crate::metrics::global().ownership_queries.inc();
    let params = parse_query(raw.as_deref().unwrap_or_default());
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let q = ClustersQuery {
        vhost: get("vhost"),
        ip: get("ip"),
        app: get("app"),
        stream: get("stream"),
        coworker: get("coworker"),
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let pushed = origin
        .coworkers
        .advertise_for(origin.config.pod_name.as_deref());
    let answer = ownership::answer(
        &q,
        &origin.registry,
        &origin.identity,
        pushed.as_ref(),
        host,
    );
    let body = answer.to_json();
    let callback = get("callback");
    if !callback.is_empty() {
        if !valid_callback(&callback) {
            return json_error(StatusCode::BAD_REQUEST, "invalid JSONP callback name");
        }
        return (
            [(header::CONTENT_TYPE, "text/javascript")],
            format!("{callback}({body})"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn get_coworkers(State(origin): State<Arc<Origin>>) -> Response {
    let s = origin.coworkers.snapshot();
    let updated = s
        .updated
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    axum::Json(json!({
        "revision": s.document.revision,
        "coworkers": s.document.coworkers,
        "advertise": s.document.advertise,
        "source": s.source,
        "peers": s.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "updated": updated,
    }))
    .into_response()
}

/// Checks `Authorization: Bearer <token>` in constant time; the refusal if it fails.
fn unauthorized(origin: &Origin, headers: &HeaderMap) -> Option<Response> {
    if origin.config.admin_token.is_none() {
        return Some(json_error(
            StatusCode::FORBIDDEN,
            "admin API disabled: start the origin with --admin-token-file",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    (!origin.is_admin_token(given))
        .then(|| json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

async fn put_coworkers(
    State(origin): State<Arc<Origin>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unauthorized(&origin, &headers) {
        return refusal;
    }
    let doc = match CoworkerDocument::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let revision = doc.revision;
    match origin.coworkers.apply(doc, "api") {
        Ok(applied) => {
            if applied == Applied::Updated {
                tracing::info!(revision, peers = origin.coworkers.peers().len(), "coworker list updated via API");
            }
            axum::Json(json!({ "revision": revision, "applied": applied == Applied::Updated })).into_response()
        }
        Err(ApplyError::Stale { offered, current }) => (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": format!("revision {offered} is not newer than the current revision {current}"),
                "revision": current,
            })),
        )
            .into_response(),
        Err(ApplyError::Invalid(e)) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// A directory request's JSON body, or why it is refused (400).
/// A directory request: the admin token checked, then the JSON body parsed; the refusal
/// to send otherwise.
fn directory_request<T: serde::de::DeserializeOwned>(
    origin: &Origin,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Box<Response>> {
    if let Some(refusal) = unauthorized(origin, headers) {
        return Err(Box::new(refusal));
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(json_error(StatusCode::BAD_REQUEST, &e.to_string())))
}

/// The refusal of a directory request the table could not take.
fn directory_refusal(e: &ServeError) -> Response {
    match e {
        ServeError::Claim(ClaimError::Full(_)) => {
            json_error(StatusCode::INSUFFICIENT_STORAGE, &e.to_string())
        }
        _ => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `POST /api/v1/directory/claim` (docs/architecture.md, "Ownership directory"): 200
/// granted, 409 held by another owner, 507 when the table is full.
async fn directory_claim(
    State(origin): State<Arc<Origin>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: ClaimRequest = match directory_request(&origin, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    match origin.directory.answer_claim(&req) {
        Ok(answer @ ClaimAnswer::Granted { .. }) => axum::Json(answer).into_response(),
        Ok(answer @ ClaimAnswer::Conflict { .. }) => {
            (StatusCode::CONFLICT, axum::Json(answer)).into_response()
        }
        Err(e) => directory_refusal(&e),
    }
}

/// `POST /api/v1/directory/release`.
async fn directory_release(
    State(origin): State<Arc<Origin>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: ReleaseRequest = match directory_request(&origin, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    match origin.directory.serve_release(&req) {
        Ok(released) => axum::Json(ReleaseAnswer { released }).into_response(),
        Err(e) => directory_refusal(&e),
    }
}

/// `POST /api/v1/directory/lookup`.
async fn directory_lookup(
    State(origin): State<Arc<Origin>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: LookupRequest = match directory_request(&origin, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    match origin.directory.serve_lookup(&req) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => directory_refusal(&e),
    }
}

async fn streams(State(origin): State<Arc<Origin>>) -> Response {
    axum::Json(json!({
        "streams": origin.registry.stats(),
        "draining": origin.is_draining(),
    }))
    .into_response()
}

fn drain_report(origin: &Origin) -> serde_json::Value {
    let (publishers, players) = origin.registry.counts();
    json!({ "draining": origin.is_draining(), "publishers": publishers, "players": players })
}

async fn drain(State(origin): State<Arc<Origin>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&origin, &headers) {
        return refusal;
    }
    origin.start_drain();
    (StatusCode::ACCEPTED, axum::Json(drain_report(&origin))).into_response()
}

async fn drain_status(State(origin): State<Arc<Origin>>) -> Response {
    axum::Json(drain_report(&origin)).into_response()
}

async fn readyz(State(origin): State<Arc<Origin>>) -> Response {
    if origin.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if origin.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::global().encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_decoding() {
        assert_eq!(decode_component("a%20b+c"), "a b c");
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(decode_component("%zz"), "%zz");
        assert_eq!(decode_component("127.0.0.1:1985"), "127.0.0.1:1985");
        assert_eq!(decode_component("%3A"), ":");
        let q = parse_query("vhost=__defaultVhost__&ip=1.2.3.4&app=live&stream=a%26b&flag");
        assert_eq!(q[3], ("stream".to_string(), "a&b".to_string()));
        assert_eq!(q[4], ("flag".to_string(), String::new()));
        assert!(valid_callback("jQuery_123.cb"));
        assert!(!valid_callback("alert(1)"));
    }
}
