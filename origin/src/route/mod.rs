//! Where a play goes. Every player (RTMP, HTTP-FLV, HLS) is routed here: served from
//! the stream on this origin, relayed from the coworker that owns it, sent there with a
//! 302, or told the stream is not found after waiting for its publisher. The front ends
//! (`server::play`, `http::flv`, `http::hls`) build a [`PlayRequest`], call [`route`]
//! and only translate the [`Decision`] into their wire answer.
//! See docs/architecture.md, "Play flow and routing".
//!
//! - `policy`: the pure decision (route mode and ownership facts in, a step out);
//! - `wait`: the wait for a publisher and the questions to coworkers;
//! - `redirect`: the owner's URL for each protocol.

mod policy;
mod redirect;
mod wait;

use std::net::IpAddr;
use std::time::Duration;

pub use policy::{ClientKind, Here, Policy, Step, decide};
pub use redirect::{Target, http_redirect, rtmp_redirect};
pub use wait::{Located, wait_for_publisher};

use crate::auth::{self, Event as AuthEvent, Refusal};
use crate::cluster::Found;
use crate::media::{Player, Registry, StreamKey};
use crate::metrics::{self, KindLabel};
use crate::state::Origin;

/// The protocol a player asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtmp,
    HttpFlv,
    Hls,
}

impl Protocol {
    /// The `kind` label of the redirect counter.
    fn label(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::HttpFlv => "http",
            Protocol::Hls => "hls",
        }
    }
}

/// What a front end knows of its client: what the auth rules and hooks see, and what
/// routing needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// Unique within this process (an RTMP connection's id).
    pub id: String,
    pub ip: Option<IpAddr>,
    /// The host the client addressed (echoed in ownership queries).
    pub host: String,
    /// Without a query (it may carry a token).
    pub tc_url: String,
    pub page_url: String,
    pub kind: ClientKind,
    /// Presented the admin token: an origin of this cluster (skips the rules and hooks).
    pub cluster_member: bool,
}

impl Client {
    /// The rules/hooks request of this client for a stream (`query`: the stream name's
    /// query, without `?`).
    pub fn auth_request(
        &self,
        key: &StreamKey,
        query: Option<&str>,
        registry: &Registry,
    ) -> auth::Request {
        auth::Request {
            stream: key.stream.clone(),
            param: query
                .filter(|q| !q.is_empty())
                .map(|q| format!("?{q}"))
                .unwrap_or_default(),
            stream_id: registry
                .get(key)
                .and_then(|s| s.publisher())
                .map(|p| p.id.to_string())
                .unwrap_or_default(),
            ..self.connect_request(&key.vhost, &key.app)
        }
    }

    /// The rules/hooks request of this client before it names a stream.
    pub fn connect_request(&self, vhost: &str, app: &str) -> auth::Request {
        auth::Request {
            client_id: self.id.clone(),
            ip: self.ip,
            vhost: vhost.to_string(),
            app: app.to_string(),
            tc_url: self.tc_url.clone(),
            page_url: self.page_url.clone(),
            cluster_member: self.cluster_member,
            ..auth::Request::default()
        }
    }
}

/// One play: which stream, how, and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayRequest {
    pub protocol: Protocol,
    pub key: StreamKey,
    /// The client's query (without `?`), kept for hooks and redirects.
    pub query: Option<String>,
    pub client: Client,
}

impl PlayRequest {
    /// How this play treats a stream this origin does not own, under `--route`.
    pub fn policy(&self, mode: crate::config::Route) -> Policy {
        Policy::new(mode, self.client.kind)
    }

    pub fn auth_request(&self, registry: &Registry) -> auth::Request {
        self.client
            .auth_request(&self.key, self.query.as_deref(), registry)
    }
}

/// Whether one of the client's queries asks for redirects (`redirect=302`).
pub fn opts_into_redirect<'a>(queries: impl IntoIterator<Item = Option<&'a str>>) -> bool {
    queries
        .into_iter()
        .flatten()
        .any(|q| crate::rtmp::url::query_param(q, "redirect") == Some("302"))
}

/// The `on_play` check (rules and hooks). Allowed, it returns the request for the
/// `on_stop` notice of the play.
pub async fn authorize(origin: &Origin, req: &PlayRequest) -> Result<auth::Request, Refusal> {
    let request = req.auth_request(&origin.registry);
    origin.auth.check(AuthEvent::Play, &request).await?;
    Ok(request)
}

/// Where a play goes.
pub enum Decision {
    /// Play from this origin (its own stream, or a relay it now runs).
    Play(Player),
    /// Send the client to the owner.
    Redirect(Target),
    /// No publisher anywhere within `--wait-for-publisher`.
    NotFound,
    /// The client's address waits for `--max-waiting-names-per-ip` other names already.
    TooManyWaiting,
}

impl Decision {
    /// The text a client is given when its play is refused for waiting too much.
    pub const TOO_MANY_WAITING: &'static str =
        "this address already waits for too many streams that are not published yet";
}

/// Routes one play; may wait up to `--wait-for-publisher` (and a relay's start).
/// Dropping the future at any point releases everything it held.
pub async fn route(origin: &Origin, req: &PlayRequest) -> Decision {
    let policy = req.policy(origin.config.route);
    let host = &req.client.host;
    let counted = (!req.client.cluster_member)
        .then_some(req.client.ip)
        .flatten();
    match wait_for_publisher(origin, &req.key, host, policy, counted).await {
        Located::Here(player) => Decision::Play(player),
        Located::Relay { found, player } => {
            match relay(origin, &req.key, found, player, host).await {
                Some(player) => Decision::Play(player),
                None => Decision::NotFound,
            }
        }
        Located::Redirect(found) => {
            let target = Target::new(
                req.protocol,
                &found.owner,
                origin.identity.flv_port,
                &req.key,
                req.query.as_deref(),
            );
            metrics::global()
                .redirects
                .get_or_create(&KindLabel {
                    kind: req.protocol.label(),
                })
                .inc();
            tracing::info!(stream = %req.key, protocol = req.protocol.label(), to = target.logged(), "302 redirect");
            Decision::Redirect(target)
        }
        Located::NotFound => {
            tracing::info!(stream = %req.key, protocol = req.protocol.label(), "no publisher anywhere; giving up");
            Decision::NotFound
        }
        Located::TooManyWaiting => {
            metrics::global()
                .auth_refusals
                .get_or_create(&metrics::AuthRefusalLabel {
                    event: "play",
                    reason: "max_waiting_names_per_ip",
                })
                .inc();
            tracing::info!(stream = %req.key, protocol = req.protocol.label(), ip = ?req.client.ip, "play refused: this address waits for too many unpublished names");
            Decision::TooManyWaiting
        }
    }
}

/// Serves `player` from a relay of the stream `found` owns: starts the relay (one per
/// stream) or joins the running one, and waits for it to publish here.
async fn relay(
    origin: &Origin,
    key: &StreamKey,
    found: Found,
    mut player: Player,
    host: &str,
) -> Option<Player> {
    origin.relays.ensure(key, found, host);
    let wait = origin.config.wait_for_publisher.max(Duration::from_secs(5));
    match tokio::time::timeout(wait, player.wait_published()).await {
        Ok(true) => Some(player),
        _ => None,
    }
}
