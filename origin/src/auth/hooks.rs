//! The SRS `http_hooks` client: each event POSTs SRS 5's JSON body to its URLs in order,
//! over pooled keep-alive connections, and every URL must allow.
//!
//! Answer rule (SRS `SrsHttpHooks::do_post`): HTTP 200 or 201 with a non-empty body that is
//! the JSON number `0` or an object with an integer `"code": 0`. What is not an allow is one
//! of two things:
//! - a **denial**, which always refuses: any 4xx status, or a 200/201 whose body is a
//!   well-formed answer with a non-zero code (number or `code` field);
//! - a **failure**, which refuses or admits by `--hook-failure deny|allow`: a timeout, a
//!   connection error, a 5xx, any other status (1xx, other 2xx, 3xx), a body that is empty,
//!   not JSON, too large, or has no integer `code`.
//!
//! `--hook-timeout` bounds one event's whole check, all of its URLs together.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::Event;
use crate::metrics::{self, HookLabel};

/// Largest hook answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Notifications being sent at once at most; the others wait for a slot.
pub const NOTIFY_CONCURRENCY: usize = 64;
/// Notifications waiting or being sent at most; beyond that they are dropped (counted as
/// outcome `dropped`), so a backend that is down cannot make memory grow without bound.
pub const NOTIFY_BACKLOG: usize = 10_000;

/// What `--hook-failure` does with a failed hook call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookFailure {
    /// Refuse (SRS behaviour, default).
    #[default]
    Deny,
    /// Admit: the backend being down does not stop streaming.
    Allow,
}

/// The hook URLs of every event.
#[derive(Debug, Clone, Default)]
pub struct HookUrls {
    pub on_connect: Vec<Uri>,
    pub on_publish: Vec<Uri>,
    pub on_unpublish: Vec<Uri>,
    pub on_play: Vec<Uri>,
    pub on_stop: Vec<Uri>,
    pub on_close: Vec<Uri>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("hook URL `{0}` is not a valid http:// URL")]
    Invalid(String),
}

/// Parses a hook URL: `http://host[:port]/path[?query]` (https is not supported; put a
/// sidecar or a plain-HTTP Service in front of a TLS-only backend).
pub fn parse_url(s: &str) -> Result<Uri, UrlError> {
    let uri: Uri = s.parse().map_err(|_| UrlError::Invalid(redact(s)))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::Invalid(redact(s)));
    }
    Ok(uri)
}

/// A URL safe for logs: no user info, no query (either may hold a secret).
pub fn redact(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://{rest}")
        }
        None => no_query.to_string(),
    }
}

impl HookUrls {
    pub fn of(&self, event: Event) -> &[Uri] {
        match event {
            Event::Connect => &self.on_connect,
            Event::Publish => &self.on_publish,
            Event::Unpublish => &self.on_unpublish,
            Event::Play => &self.on_play,
            Event::Stop => &self.on_stop,
            Event::Close => &self.on_close,
        }
    }

    pub fn is_empty(&self) -> bool {
        Event::ALL.iter().all(|e| self.of(*e).is_empty())
    }
}

/// How one hook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Deny(String),
    Failure(String),
}

impl Answer {
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Deny(_) => "deny",
            Answer::Failure(_) => "failure",
        }
    }
}

/// SRS's answer rule over a status and a body.
pub fn judge(status: u16, body: &[u8]) -> Answer {
    if (400..500).contains(&status) {
        return Answer::Deny(format!("HTTP {status}"));
    }
    if status != 200 && status != 201 {
        return Answer::Failure(format!("HTTP {status}"));
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) if !t.trim().is_empty() => t.trim(),
        Ok(_) => return Answer::Failure("empty body".into()),
        Err(_) => return Answer::Failure("body not UTF-8".into()),
    };
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return Answer::Failure("body not JSON".into()),
    };
    let code = match &value {
        serde_json::Value::Number(_) => value.as_i64(),
        serde_json::Value::Object(o) => match o.get("code") {
            Some(c) => c.as_i64(),
            None => return Answer::Failure("no code in answer".into()),
        },
        _ => None,
    };
    match code {
        Some(0) => Answer::Allow,
        Some(c) => Answer::Deny(format!("code {c}")),
        None => Answer::Failure("code is not an integer".into()),
    }
}

/// One client request as a hook sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Connection id, unique within this process.
    pub client_id: String,
    pub ip: Option<IpAddr>,
    pub vhost: String,
    pub app: String,
    pub stream: String,
    /// Query string of the stream name with its `?` (`?token=abc`), or empty. Never logged.
    pub param: String,
    pub tc_url: String,
    pub page_url: String,
    /// Id of the stream's source (its publishing connection) where known.
    pub stream_id: String,
    pub send_bytes: u64,
    pub recv_bytes: u64,
    /// An origin of this cluster (relay, ownership query) that presented the admin token.
    pub cluster_member: bool,
}

impl Request {
    /// `/app/stream`, or `vhost/app/stream` for a non-default vhost (SRS `get_stream_url`).
    pub fn stream_url(&self) -> String {
        if self.vhost.is_empty() || self.vhost == origin_wire::DEFAULT_VHOST {
            format!("/{}/{}", self.app, self.stream)
        } else {
            format!("{}/{}/{}", self.vhost, self.app, self.stream)
        }
    }
}

/// SRS 5's hook body; which fields each event carries follows SRS.
#[derive(Debug, Serialize)]
pub struct Body<'a> {
    pub server_id: &'a str,
    pub service_id: &'a str,
    pub action: &'static str,
    pub client_id: &'a str,
    pub ip: String,
    pub vhost: &'a str,
    pub app: &'a str,
    #[serde(rename = "tcUrl", skip_serializing_if = "Option::is_none")]
    pub tc_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<&'a str>,
    #[serde(rename = "pageUrl", skip_serializing_if = "Option::is_none")]
    pub page_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recv_bytes: Option<u64>,
}

impl<'a> Body<'a> {
    pub fn new(server_id: &'a str, service_id: &'a str, event: Event, r: &'a Request) -> Self {
        let streamy = matches!(
            event,
            Event::Publish | Event::Unpublish | Event::Play | Event::Stop
        );
        let mut b = Body {
            server_id,
            service_id,
            action: event.action(),
            client_id: &r.client_id,
            ip: r
                .ip
                .map(|ip| super::rules::canonical(ip).to_string())
                .unwrap_or_default(),
            vhost: &r.vhost,
            app: &r.app,
            tc_url: None,
            stream: None,
            param: None,
            page_url: None,
            stream_url: None,
            stream_id: None,
            send_bytes: None,
            recv_bytes: None,
        };
        match event {
            Event::Connect => {
                b.tc_url = Some(&r.tc_url);
                b.stream = Some(&r.stream);
                b.param = Some(&r.param);
                b.page_url = Some(&r.page_url);
            }
            Event::Close => {
                b.send_bytes = Some(r.send_bytes);
                b.recv_bytes = Some(r.recv_bytes);
            }
            _ => {}
        }
        if streamy {
            b.tc_url = Some(&r.tc_url);
            b.stream = Some(&r.stream);
            b.param = Some(&r.param);
            b.stream_url = Some(r.stream_url());
            b.stream_id = Some(&r.stream_id);
            if event == Event::Play {
                b.page_url = Some(&r.page_url);
            }
        }
        b
    }
}

#[derive(Debug, Clone)]
pub struct HooksConfig {
    pub urls: HookUrls,
    pub timeout: Duration,
    pub failure: HookFailure,
    /// SRS `server_id`: stable per server (here the pod or host name).
    pub server_id: String,
    /// SRS `service_id`: new on every start.
    pub service_id: String,
}

pub struct Hooks {
    client: Client<HttpConnector, Full<Bytes>>,
    config: HooksConfig,
    notify_slots: Arc<Semaphore>,
    notify_queued: Arc<AtomicUsize>,
}

/// One queued notification's place in the backlog; released on drop.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The result of one event's hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A hook refused (or failed under `--hook-failure deny`): reason label and detail.
    Refuse {
        reason: &'static str,
        detail: String,
    },
}

impl Hooks {
    pub fn new(config: HooksConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(connector);
        Self {
            client,
            config,
            notify_slots: Arc::new(Semaphore::new(NOTIFY_CONCURRENCY)),
            notify_queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sends a notification in the background (bounded: see [`NOTIFY_BACKLOG`]).
    pub fn spawn_notify(self: &Arc<Self>, event: Event, req: Request) {
        if self.notify_queued.fetch_add(1, Ordering::Relaxed) >= NOTIFY_BACKLOG {
            self.notify_queued.fetch_sub(1, Ordering::Relaxed);
            metrics::global()
                .hook_calls
                .get_or_create(&HookLabel {
                    event: event.action(),
                    outcome: "dropped",
                })
                .inc();
            tracing::debug!(event = event.action(), "notification backlog full; dropped");
            return;
        }
        let queued = Queued(self.notify_queued.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let _queued = queued;
            let Ok(_slot) = this.notify_slots.clone().acquire_owned().await else {
                return;
            };
            this.notify(event, &req).await;
        });
    }

    pub fn config(&self) -> &HooksConfig {
        &self.config
    }

    pub fn has(&self, event: Event) -> bool {
        !self.config.urls.of(event).is_empty()
    }

    /// Calls every URL of `event` in order within one `--hook-timeout`; the first that does
    /// not allow decides.
    pub async fn check(&self, event: Event, req: &Request) -> Decision {
        let urls = self.config.urls.of(event);
        if urls.is_empty() {
            return Decision::Allow;
        }
        let body = match serde_json::to_vec(&Body::new(
            &self.config.server_id,
            &self.config.service_id,
            event,
            req,
        )) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return Decision::Refuse {
                    reason: "hook_failure",
                    detail: e.to_string(),
                };
            }
        };
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        for url in urls {
            let answer = match tokio::time::timeout_at(deadline, self.call(url, body.clone())).await
            {
                Ok(a) => a,
                Err(_) => Answer::Failure("timed out".into()),
            };
            self.observe(event, &answer);
            match answer {
                Answer::Allow => {}
                Answer::Deny(why) => {
                    tracing::info!(event = event.action(), url = %redact(&url.to_string()), client = %req.client_id, answer = %why, "hook denied");
                    return Decision::Refuse {
                        reason: "hook_denied",
                        detail: why,
                    };
                }
                Answer::Failure(why) => {
                    tracing::warn!(event = event.action(), url = %redact(&url.to_string()), client = %req.client_id, error = %why, failure_mode = ?self.config.failure, "hook failed");
                    if self.config.failure == HookFailure::Deny {
                        return Decision::Refuse {
                            reason: "hook_failure",
                            detail: why,
                        };
                    }
                }
            }
        }
        Decision::Allow
    }

    /// A notification (`on_unpublish`, `on_stop`, `on_close`): every URL is called, a
    /// failure retried once; the answers change nothing.
    pub async fn notify(&self, event: Event, req: &Request) {
        let urls = self.config.urls.of(event);
        if urls.is_empty() {
            return;
        }
        let Ok(body) = serde_json::to_vec(&Body::new(
            &self.config.server_id,
            &self.config.service_id,
            event,
            req,
        )) else {
            return;
        };
        let body = Bytes::from(body);
        for url in urls {
            for attempt in 0..2 {
                let answer =
                    match tokio::time::timeout(self.config.timeout, self.call(url, body.clone()))
                        .await
                    {
                        Ok(a) => a,
                        Err(_) => Answer::Failure("timed out".into()),
                    };
                self.observe(event, &answer);
                match answer {
                    Answer::Failure(why) if attempt == 0 => {
                        tracing::debug!(event = event.action(), url = %redact(&url.to_string()), error = %why, "notification failed; retrying once");
                    }
                    Answer::Failure(why) => {
                        tracing::warn!(event = event.action(), url = %redact(&url.to_string()), error = %why, "notification failed twice; dropped");
                    }
                    _ => break,
                }
            }
        }
    }

    fn observe(&self, event: Event, answer: &Answer) {
        let m = metrics::global();
        m.hook_calls
            .get_or_create(&HookLabel {
                event: event.action(),
                outcome: answer.outcome(),
            })
            .inc();
    }

    async fn call(&self, url: &Uri, body: Bytes) -> Answer {
        let started = Instant::now();
        let answer = self.call_inner(url, body).await;
        metrics::global()
            .hook_latency
            .observe(started.elapsed().as_secs_f64());
        answer
    }

    async fn call_inner(&self, url: &Uri, body: Bytes) -> Answer {
        let req = match hyper::Request::post(url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "origin-cluster")
            .body(Full::new(body))
        {
            Ok(r) => r,
            Err(e) => return Answer::Failure(e.to_string()),
        };
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => return Answer::Failure(format!("request failed: {e}")),
        };
        let status = resp.status().as_u16();
        match Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
        {
            Ok(b) => judge(status, &b.to_bytes()),
            Err(e) => Answer::Failure(format!("reading the answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn answer_rule() {
        assert_eq!(judge(200, b"0"), Answer::Allow);
        assert_eq!(judge(201, b" 0\n"), Answer::Allow);
        assert_eq!(judge(200, br#"{"code":0}"#), Answer::Allow);
        assert_eq!(judge(200, br#"{"code":0,"data":{"x":1}}"#), Answer::Allow);
        assert!(matches!(judge(200, b"1"), Answer::Deny(_)));
        assert!(matches!(judge(200, br#"{"code":403}"#), Answer::Deny(_)));
        assert!(matches!(judge(200, br#"{"code":-1}"#), Answer::Deny(_)));
        assert!(matches!(judge(403, b"0"), Answer::Deny(_)));
        assert!(matches!(judge(404, b""), Answer::Deny(_)));
        for (s, b) in [
            (200, &b""[..]),
            (200, b"   "),
            (200, b"ok"),
            (200, b"0.0"),
            (200, br#"{"code":"0"}"#),
            (200, br#"{"code":0.5}"#),
            (200, br#"{"msg":"ok"}"#),
            (200, b"[0]"),
            (200, b"null"),
            (200, b"\xff"),
            (202, b"0"),
            (204, b""),
            (302, b"0"),
            (500, b"0"),
            (503, br#"{"code":0}"#),
        ] {
            assert!(
                matches!(judge(s, b), Answer::Failure(_)),
                "{s} {:?} -> {:?}",
                String::from_utf8_lossy(b),
                judge(s, b)
            );
        }
    }

    #[test]
    fn urls() {
        assert!(parse_url("http://127.0.0.1:8085/api/v1/streams").is_ok());
        assert!(parse_url("http://auth/hook?x=1").is_ok());
        assert!(parse_url("https://auth/hook").is_err());
        assert!(parse_url("auth/hook").is_err());
        assert!(parse_url("").is_err());
        assert_eq!(
            redact("http://user:pw@auth:80/hook?secret=1#x"),
            "http://auth:80/hook"
        );
        let e = parse_url("ftp://u:pw@h/p?secret=zz").unwrap_err();
        assert!(!e.to_string().contains("zz") && !e.to_string().contains("pw"));
    }

    fn req() -> Request {
        Request {
            client_id: "7".into(),
            ip: Some("::ffff:127.0.0.1".parse().unwrap()),
            vhost: origin_wire::DEFAULT_VHOST.into(),
            app: "live".into(),
            stream: "cam".into(),
            param: "?token=abc".into(),
            tc_url: "rtmp://127.0.0.1:1935/live".into(),
            page_url: "".into(),
            stream_id: "3".into(),
            ..Request::default()
        }
    }

    #[test]
    fn bodies_carry_srs_fields() {
        let r = req();
        let v = serde_json::to_value(Body::new("s", "v", Event::Play, &r)).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        for k in [
            "server_id",
            "service_id",
            "action",
            "client_id",
            "ip",
            "vhost",
            "app",
            "tcUrl",
            "stream",
            "param",
            "pageUrl",
            "stream_url",
            "stream_id",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
        assert_eq!(v["action"], "on_play");
        assert_eq!(v["ip"], "127.0.0.1");
        assert_eq!(v["param"], "?token=abc");
        assert_eq!(v["stream_url"], "/live/cam");
        let p = serde_json::to_value(Body::new("s", "v", Event::Publish, &r)).unwrap();
        assert!(p.get("pageUrl").is_none());
        assert_eq!(p["action"], "on_publish");
        let c = serde_json::to_value(Body::new("s", "v", Event::Close, &r)).unwrap();
        assert!(c.get("stream").is_none() && c.get("send_bytes").is_some());
        let mut other = r.clone();
        other.vhost = "v1".into();
        assert_eq!(other.stream_url(), "v1/live/cam");
    }

    proptest! {
        #[test]
        fn judge_never_panics(status in 0u16..1000, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = judge(status, &body);
        }

        #[test]
        fn only_zero_allows(status in prop_oneof![Just(200u16), Just(201u16)], code in any::<i64>(), wrap in any::<bool>()) {
            let body = if wrap { format!("{{\"code\":{code}}}") } else { code.to_string() };
            let a = judge(status, body.as_bytes());
            prop_assert_eq!(a == Answer::Allow, code == 0);
            prop_assert!(!matches!(a, Answer::Failure(_)));
        }

        #[test]
        fn non_2xx_never_allows(status in 0u16..1000, code in -5i64..5) {
            prop_assume!(status != 200 && status != 201);
            let a = judge(status, format!("{{\"code\":{code}}}").as_bytes());
            prop_assert!(a != Answer::Allow);
        }
    }
}
