//! [`FakeOrigin`]: a real HTTP server (axum on a loopback address, port 0 unless told
//! otherwise) implementing the origin's coworker API contract (PUT with bearer token →
//! 200/409/401/400, GET), for tests that need many cheap origins.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use origin_wire::coworkers::CoworkerDocument;
use serde_json::{Value, json};

use crate::lock;

#[derive(Default)]
struct OriginState {
    token: String,
    doc: CoworkerDocument,
    puts: u32,
    fail_next: u32,
    last_auth: Option<String>,
}

/// A real HTTP server with the origin's coworker API.
pub struct FakeOrigin {
    /// `127.0.0.1:port`.
    pub addr: String,
    state: Arc<Mutex<OriginState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn put_coworkers(
    State(st): State<Arc<Mutex<OriginState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut s = lock(&st);
    s.puts += 1;
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.last_auth = auth.clone();
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "try again".into());
    }
    if auth.as_deref() != Some(&format!("Bearer {}", s.token)) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized"}"#.into(),
        );
    }
    let doc = match CoworkerDocument::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string()}).to_string(),
            );
        }
    };
    if doc.revision <= s.doc.revision {
        return (
            StatusCode::CONFLICT,
            json!({"error": "revision not newer", "revision": s.doc.revision}).to_string(),
        );
    }
    s.doc = doc;
    (
        StatusCode::OK,
        json!({"revision": s.doc.revision}).to_string(),
    )
}

async fn get_coworkers(State(st): State<Arc<Mutex<OriginState>>>) -> String {
    let s = lock(&st);
    let mut v = serde_json::to_value(&s.doc).unwrap_or(Value::Null);
    v["source"] = json!("api");
    v.to_string()
}

impl FakeOrigin {
    /// Starts on a free loopback port.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", token).await
    }

    /// Starts on `addr` (e.g. the address of an origin that went down, to bring it back).
    pub async fn start_on(addr: &str, token: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new(Mutex::new(OriginState {
            token: token.to_string(),
            ..OriginState::default()
        }));
        let app = Router::new()
            .route(
                origin_wire::paths::COWORKERS,
                get(get_coworkers).put(put_coworkers),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Revision the origin holds.
    pub fn revision(&self) -> u64 {
        lock(&self.state).doc.revision
    }

    /// Document the origin holds.
    pub fn document(&self) -> CoworkerDocument {
        lock(&self.state).doc.clone()
    }

    /// PUT requests received.
    pub fn puts(&self) -> u32 {
        lock(&self.state).puts
    }

    /// Answer the next `n` PUTs with 503.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.state).last_auth.clone()
    }
}
