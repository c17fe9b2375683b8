//! Calls to another origin's directory endpoints: JSON over pooled keep-alive
//! connections, with the admin token, each call bounded by the discovery timeout (turn,
//! connect, request and answer together) and at most [`PER_PEER_IN_FLIGHT`] calls in
//! flight to one origin at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use origin_wire::addr::HostPort;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::cluster::discovery::PER_PEER_IN_FLIGHT;

/// Largest answer read from a directory origin.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why a call to a directory origin gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(String),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("answer is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub struct Remote {
    client: Client<HttpConnector, Full<Bytes>>,
    token: String,
    timeout: Duration,
    turns: Mutex<HashMap<HostPort, Arc<Semaphore>>>,
}

impl Remote {
    pub fn new(token: String, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        // Idle connections are dropped before a peer's HTTP idle timeout closes them.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(PER_PEER_IN_FLIGHT)
            .build(connector);
        Self {
            client,
            token,
            timeout,
            turns: Mutex::new(HashMap::new()),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn turns(&self, peer: &HostPort) -> Arc<Semaphore> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = turns.get(peer) {
            return t.clone();
        }
        if turns.len() >= 4096 {
            // Only turns in use are kept: origins that left the list are forgotten.
            turns.retain(|_, t| t.available_permits() < PER_PEER_IN_FLIGHT);
        }
        let t = Arc::new(Semaphore::new(PER_PEER_IN_FLIGHT));
        turns.insert(peer.clone(), t.clone());
        t
    }

    /// `POST http://peer{path}` with `body` as JSON; the answer of HTTP status `accepted`
    /// (200, or one of `also`) parsed as `A`.
    pub async fn call<B: Serialize, A: DeserializeOwned>(
        &self,
        peer: &HostPort,
        path: &str,
        body: &B,
        also: &[u16],
    ) -> Result<A, RemoteError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let turns = self.turns(peer);
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, turns.acquire_owned()).await else {
            return Err(RemoteError::Timeout(self.timeout));
        };
        crate::metrics::global().directory_requests.inc();
        let body = Bytes::from(serde_json::to_vec(body)?);
        let req = hyper::Request::post(format!("http://{peer}{path}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(body))
            .map_err(|e| RemoteError::Http(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| RemoteError::Http(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| RemoteError::Http(e.to_string()))?
                .to_bytes();
            Ok::<_, RemoteError>((status, body))
        };
        let (status, body) = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| RemoteError::Timeout(self.timeout))??;
        if status != 200 && !also.contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(RemoteError::Status { status, body: text });
        }
        Ok(serde_json::from_slice(&body)?)
    }
}
