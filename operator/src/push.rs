//! Delivery of the coworker document to every origin: a concurrent `PUT /api/v1/coworkers`
//! with the admin token, short timeouts, and retries with backoff (docs/architecture.md,
//! "Coworker delivery").

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use origin_wire::coworkers::CoworkerDocument;
use origin_wire::paths;

use crate::build::secret::Token;

/// Timeouts and retries of one push round.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Connect + request + response timeout of one attempt.
    pub timeout: Duration,
    /// Attempts per pod (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub backoff: Duration,
    /// Pods pushed to at once.
    pub concurrency: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            attempts: 3,
            backoff: Duration::from_millis(50),
            concurrency: 128,
        }
    }
}

/// One pod to push to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// Pod name (status and metrics); the address when the slice has no pod reference.
    pub pod: String,
    /// `ip:apiport` of the pod.
    pub addr: String,
    /// Document for this pod (its `advertise` may be pod-specific).
    pub doc: CoworkerDocument,
}

/// What a pod answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// 200: the pod applied our revision.
    Applied,
    /// 409: the pod already has `current` ≥ our revision.
    AlreadyCurrent { current: u64 },
    /// 401: the pod does not accept our token.
    Unauthorized,
    /// 400 or another non-retryable answer.
    Rejected { status: u16, message: String },
    /// No usable answer after every attempt (connect error, timeout, 5xx).
    Failed { error: String },
}

impl PushOutcome {
    /// The pod has our revision (or a newer one).
    pub fn acknowledged(&self) -> bool {
        matches!(
            self,
            PushOutcome::Applied | PushOutcome::AlreadyCurrent { .. }
        )
    }

    /// Short label for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            PushOutcome::Applied => "applied",
            PushOutcome::AlreadyCurrent { .. } => "current",
            PushOutcome::Unauthorized => "unauthorized",
            PushOutcome::Rejected { .. } => "rejected",
            PushOutcome::Failed { .. } => "failed",
        }
    }
}

/// HTTP client that pushes coworker documents.
#[derive(Clone)]
pub struct Pusher {
    client: Client<HttpConnector, Full<Bytes>>,
    cfg: PushConfig,
}

enum Attempt {
    Done(PushOutcome),
    Retry(String),
}

impl Pusher {
    pub fn new(cfg: PushConfig) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(cfg.timeout));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .build(conn);
        Self { client, cfg }
    }

    pub fn config(&self) -> &PushConfig {
        &self.cfg
    }

    /// Pushes to every target concurrently; results in the order of `targets`.
    pub async fn push_all(
        &self,
        targets: Vec<PushTarget>,
        token: &Token,
    ) -> Vec<(PushTarget, PushOutcome)> {
        let mut results: Vec<(usize, PushTarget, PushOutcome)> =
            futures::stream::iter(targets.into_iter().enumerate())
                .map(|(i, t)| async move {
                    let outcome = self.push_one(&t, token).await;
                    (i, t, outcome)
                })
                .buffer_unordered(self.cfg.concurrency.max(1))
                .collect()
                .await;
        results.sort_by_key(|(i, _, _)| *i);
        results.into_iter().map(|(_, t, o)| (t, o)).collect()
    }

    /// Pushes to one pod, retrying connection errors, timeouts and 5xx with backoff.
    pub async fn push_one(&self, target: &PushTarget, token: &Token) -> PushOutcome {
        let body = Bytes::from(target.doc.to_json());
        let mut delay = self.cfg.backoff;
        let mut last = String::new();
        for attempt in 0..self.cfg.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            match self.attempt(target, token, body.clone()).await {
                Attempt::Done(o) => return o,
                Attempt::Retry(e) => {
                    tracing::debug!(pod = %target.pod, addr = %target.addr, attempt, error = %e, "coworker push attempt failed");
                    last = e;
                }
            }
        }
        PushOutcome::Failed { error: last }
    }

    fn uri(addr: &str) -> String {
        format!("http://{addr}{}", paths::COWORKERS)
    }

    async fn attempt(&self, target: &PushTarget, token: &Token, body: Bytes) -> Attempt {
        let req = Request::builder()
            .method(Method::PUT)
            .uri(Self::uri(&target.addr))
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Done(PushOutcome::Rejected {
                    status: 0,
                    message: format!("bad address {}: {e}", target.addr),
                });
            }
        };
        let (status, body) = match self.send(req).await {
            Ok(x) => x,
            Err(e) => return Attempt::Retry(e),
        };
        match status {
            s if s.is_success() => Attempt::Done(PushOutcome::Applied),
            StatusCode::CONFLICT => {
                let ours = target.doc.revision;
                let current = match revision_of(&body) {
                    Some(r) => Some(r),
                    None => self.current_revision(&target.addr).await,
                };
                match current {
                    // The origin refuses only revisions that are not newer than its own.
                    Some(c) if c >= ours => {
                        Attempt::Done(PushOutcome::AlreadyCurrent { current: c })
                    }
                    None => Attempt::Done(PushOutcome::AlreadyCurrent { current: ours }),
                    Some(c) => Attempt::Done(PushOutcome::Rejected {
                        status: 409,
                        message: format!("conflict although the pod is at revision {c} < {ours}"),
                    }),
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Attempt::Done(PushOutcome::Unauthorized)
            }
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::NOT_FOUND =>
            {
                // 404: an origin that is starting may not have its API routes yet.
                Attempt::Retry(format!("HTTP {}", s.as_u16()))
            }
            s => Attempt::Done(PushOutcome::Rejected {
                status: s.as_u16(),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        tokio::time::timeout(self.cfg.timeout, fut)
            .await
            .map_err(|_| format!("timed out after {:?}", self.cfg.timeout))?
    }

    /// `GET /api/v1/coworkers` → the pod's current revision.
    pub async fn current_revision(&self, addr: &str) -> Option<u64> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(Self::uri(addr))
            .body(Full::new(Bytes::new()))
            .ok()?;
        let (status, body) = self.send(req).await.ok()?;
        if !status.is_success() {
            return None;
        }
        revision_of(&body)
    }
}

fn revision_of(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("revision")
        .or_else(|| v.get("current_revision"))
        .or_else(|| v.get("currentRevision"))
        .and_then(serde_json::Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use origin_test_support::FakeOrigin;

    fn doc(rev: u64) -> CoworkerDocument {
        CoworkerDocument::new(rev, ["10.0.0.1:1985".to_string()], None)
    }

    fn target(o: &FakeOrigin, rev: u64) -> PushTarget {
        PushTarget {
            pod: o.addr.clone(),
            addr: o.addr.clone(),
            doc: doc(rev),
        }
    }

    fn fast() -> PushConfig {
        PushConfig {
            timeout: Duration::from_millis(300),
            attempts: 3,
            backoff: Duration::from_millis(20),
            concurrency: 16,
        }
    }

    #[tokio::test]
    async fn concurrent_put_reaches_every_origin() {
        let token = Token::new("tok");
        let mut origins = Vec::new();
        for _ in 0..8 {
            origins.push(FakeOrigin::start("tok").await.expect("origin"));
        }
        let pusher = Pusher::new(fast());
        let targets = origins.iter().map(|o| target(o, 3)).collect();
        let res = pusher.push_all(targets, &token).await;
        assert!(
            res.iter().all(|(_, o)| *o == PushOutcome::Applied),
            "{res:?}"
        );
        for o in &origins {
            assert_eq!(o.revision(), 3);
            assert_eq!(o.last_authorization().as_deref(), Some("Bearer tok"));
        }
    }

    #[tokio::test]
    async fn conflict_means_acknowledged_when_pod_is_newer() {
        let token = Token::new("tok");
        let o = FakeOrigin::start("tok").await.expect("origin");
        let pusher = Pusher::new(fast());
        assert_eq!(
            pusher.push_one(&target(&o, 5), &token).await,
            PushOutcome::Applied
        );
        // The same revision again and an older one: 409, the pod keeps 5.
        assert_eq!(
            pusher.push_one(&target(&o, 5), &token).await,
            PushOutcome::AlreadyCurrent { current: 5 }
        );
        let old = pusher.push_one(&target(&o, 2), &token).await;
        assert_eq!(old, PushOutcome::AlreadyCurrent { current: 5 });
        assert!(old.acknowledged());
        assert_eq!(o.revision(), 5);
        assert_eq!(pusher.current_revision(&o.addr).await, Some(5));
    }

    #[tokio::test]
    async fn failed_pod_is_retried() {
        let token = Token::new("tok");
        let o = FakeOrigin::start("tok").await.expect("origin");
        o.fail_next(2); // two 503s, then success
        let pusher = Pusher::new(fast());
        assert_eq!(
            pusher.push_one(&target(&o, 1), &token).await,
            PushOutcome::Applied
        );
        assert_eq!(o.puts(), 3);
        o.fail_next(10);
        let out = pusher.push_one(&target(&o, 2), &token).await;
        assert!(matches!(out, PushOutcome::Failed { .. }), "{out:?}");
        assert!(!out.acknowledged());
        assert_eq!(o.revision(), 1);
    }

    #[tokio::test]
    async fn unreachable_pod_fails_quickly_others_succeed() {
        let token = Token::new("tok");
        let o = FakeOrigin::start("tok").await.expect("origin");
        // A pod whose API hangs up on every connection (kept bound: no port race).
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dead = l.local_addr().expect("addr").to_string();
        let _hangup = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        let pusher = Pusher::new(fast());
        let started = std::time::Instant::now();
        let res = pusher
            .push_all(
                vec![
                    PushTarget {
                        pod: "dead".into(),
                        addr: dead,
                        doc: doc(4),
                    },
                    target(&o, 4),
                ],
                &token,
            )
            .await;
        // A hang-up fails each attempt at once; three attempts of the 300 ms timeout plus
        // backoff would be about 1 s. Generous, for a loaded machine: it must not hang.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(res[0].1, PushOutcome::Failed { .. }));
        assert_eq!(res[1].1, PushOutcome::Applied);
    }

    #[tokio::test]
    async fn wrong_token_is_unauthorized_and_not_applied() {
        let o = FakeOrigin::start("right").await.expect("origin");
        let pusher = Pusher::new(fast());
        let out = pusher.push_one(&target(&o, 1), &Token::new("wrong")).await;
        assert_eq!(out, PushOutcome::Unauthorized);
        assert_eq!(o.puts(), 1, "401 is not retried");
        assert_eq!(o.revision(), 0);
    }
}
