//! Publish and play authorization (docs/architecture.md, "Auth and hooks"): static rules from
//! `--auth-file`, SRS-compatible HTTP hooks, and per-client connection limits, behind one facade
//! the servers call.
//!
//! Order of a publish or play check: a cluster member (an origin of this cluster that
//! presented the admin token) is admitted without either; otherwise the rules (if any) and
//! then the event's hooks (if any) must both allow. `on_connect` runs the hooks only.
//! `on_unpublish`, `on_stop` and `on_close` are notifications: spawned, retried once, never
//! waited for.

pub mod hooks;
pub mod limits;
pub mod rules;
pub mod waiting;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use hooks::{HookFailure, HookUrls, Hooks, HooksConfig, Request};
pub use limits::{IpGuard, IpLimits, LimitExceeded, LimitsConfig};
pub use rules::{Rules, RulesFile, Verdict};
pub use waiting::{TooManyNames, WaitingGuard, WaitingNames};

use crate::metrics::{self, AuthRefusalLabel, ReasonLabel};

/// The action a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Play,
}

/// An SRS hook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Connect,
    Publish,
    Unpublish,
    Play,
    Stop,
    Close,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::Connect,
        Event::Publish,
        Event::Unpublish,
        Event::Play,
        Event::Stop,
        Event::Close,
    ];

    /// SRS's `action` value.
    pub fn action(self) -> &'static str {
        match self {
            Event::Connect => "on_connect",
            Event::Publish => "on_publish",
            Event::Unpublish => "on_unpublish",
            Event::Play => "on_play",
            Event::Stop => "on_stop",
            Event::Close => "on_close",
        }
    }

    fn rule_action(self) -> Option<Action> {
        match self {
            Event::Publish => Some(Action::Publish),
            Event::Play => Some(Action::Play),
            _ => None,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Metrics label: `auth_rules`, `hook_denied`, `hook_failure`.
    pub reason: &'static str,
    /// Safe to send to the client (no secret, no backend detail).
    pub description: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The authorization settings (the `--on-*`, `--hook-*`, `--auth-file` and per-IP flags).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub on_connect: Vec<String>,
    pub on_publish: Vec<String>,
    pub on_unpublish: Vec<String>,
    pub on_play: Vec<String>,
    pub on_stop: Vec<String>,
    pub on_close: Vec<String>,
    pub hook_timeout: Duration,
    pub hook_failure: HookFailure,
    pub auth_file: Option<PathBuf>,
    pub limits: LimitsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--{flag}: {source}")]
    Url {
        flag: &'static str,
        source: hooks::UrlError,
    },
    #[error("--auth-file: {0}")]
    Rules(#[from] rules::RulesError),
}

/// The authorization of one origin process.
pub struct Auth {
    rules: Option<RulesFile>,
    hooks: Arc<Hooks>,
    limits: IpLimits,
    admin_token: Option<String>,
}

impl Auth {
    /// Validates the hook URLs and loads the auth file (watching it from now on; needs a
    /// tokio runtime). `server_id` is SRS's stable server id (the pod or host name).
    pub fn new(
        config: &AuthConfig,
        admin_token: Option<String>,
        server_id: String,
    ) -> Result<Arc<Self>, AuthError> {
        let parse = |flag: &'static str, urls: &[String]| {
            urls.iter()
                .filter(|u| !u.trim().is_empty())
                .map(|u| {
                    hooks::parse_url(u.trim()).map_err(|source| AuthError::Url { flag, source })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let urls = HookUrls {
            on_connect: parse("on-connect", &config.on_connect)?,
            on_publish: parse("on-publish", &config.on_publish)?,
            on_unpublish: parse("on-unpublish", &config.on_unpublish)?,
            on_play: parse("on-play", &config.on_play)?,
            on_stop: parse("on-stop", &config.on_stop)?,
            on_close: parse("on-close", &config.on_close)?,
        };
        let rules = config
            .auth_file
            .clone()
            .map(|p| RulesFile::open(p, rules::POLL_INTERVAL))
            .transpose()?;
        let hooks = Arc::new(Hooks::new(HooksConfig {
            urls,
            timeout: config.hook_timeout,
            failure: config.hook_failure,
            server_id,
            service_id: random_id(),
        }));
        Ok(Arc::new(Self {
            rules,
            hooks,
            limits: IpLimits::new(config.limits),
            admin_token: admin_token.filter(|t| !t.is_empty()),
        }))
    }

    /// No rules, no hooks, no limits: everything is allowed.
    pub fn open() -> Arc<Self> {
        Arc::new(Self {
            rules: None,
            hooks: Arc::new(Hooks::new(HooksConfig {
                urls: HookUrls::default(),
                timeout: Duration::from_secs(3),
                failure: HookFailure::Deny,
                server_id: String::new(),
                service_id: random_id(),
            })),
            limits: IpLimits::new(LimitsConfig::default()),
            admin_token: None,
        })
    }

    /// Whether `token` is this cluster's admin token (compared in constant time).
    pub fn is_cluster_member(&self, token: Option<&str>) -> bool {
        match (&self.admin_token, token) {
            (Some(mine), Some(theirs)) => {
                rules::constant_time_eq(mine.as_bytes(), theirs.as_bytes())
            }
            _ => false,
        }
    }

    /// Decides a connect, publish or play. Cluster members are always admitted.
    pub async fn check(&self, event: Event, req: &Request) -> Result<(), Refusal> {
        if req.cluster_member {
            return Ok(());
        }
        let what = match event {
            Event::Publish => "publish",
            Event::Play => "play",
            _ => "connect",
        };
        if let (Some(rules), Some(action)) = (&self.rules, event.rule_action()) {
            let query = req.param.strip_prefix('?').unwrap_or(&req.param);
            let key = crate::rtmp::url::query_param(query, "key");
            let name = format!("{}/{}", req.app, req.stream);
            let ip = req.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            if rules.rules().check(action, &name, key, ip) == Verdict::Refused {
                tracing::info!(event = event.action(), client = %req.client_id, ip = %ip, app = %req.app, stream = %req.stream, "refused by the auth rules");
                return Err(refuse(
                    event,
                    "auth_rules",
                    format!("{what} not authorized"),
                ));
            }
        }
        match self.hooks.check(event, req).await {
            hooks::Decision::Allow => Ok(()),
            hooks::Decision::Refuse { reason, .. } => Err(refuse(
                event,
                reason,
                format!("{what} not authorized by the hook"),
            )),
        }
    }

    /// Sends a notification event (`on_unpublish`, `on_stop`, `on_close`) in the
    /// background; nothing waits for it.
    pub fn notify(&self, event: Event, req: Request) {
        if req.cluster_member || !self.hooks.has(event) {
            return;
        }
        self.hooks.spawn_notify(event, req);
    }

    /// A notification sent when the returned guard drops: `on_unpublish` held by a
    /// publisher, `on_stop` by a player, `on_close` by a connection. `None` when there is
    /// nothing to send.
    pub fn notice(self: &Arc<Self>, event: Event, req: Request) -> Option<Notice> {
        (self.hooks.has(event) && !req.cluster_member).then(|| {
            Notice(Box::new(Pending {
                auth: self.clone(),
                event,
                req,
            }))
        })
    }

    /// Admits a new connection from `ip` under the per-IP limits; a refusal is counted
    /// (`connections_rejected`) and logged here.
    pub fn admit(&self, ip: IpAddr, listener: &'static str) -> Option<IpGuard> {
        match self.limits.admit(ip) {
            Ok(g) => Some(g),
            Err(e) => {
                metrics::global()
                    .connections_rejected
                    .get_or_create(&ReasonLabel { reason: e.reason() })
                    .inc();
                tracing::warn!(%ip, listener, limit = e.reason(), "per-address limit exceeded; closing");
                None
            }
        }
    }
}

/// Sends its notification on drop (see [`Auth::notice`]). One pointer wide, so holding
/// one costs a connection little.
pub struct Notice(Box<Pending>);

struct Pending {
    auth: Arc<Auth>,
    event: Event,
    req: Request,
}

impl Notice {
    /// The request sent, to update before the drop (e.g. `on_close`'s byte counts).
    pub fn request_mut(&mut self) -> &mut Request {
        &mut self.0.req
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            let p = &mut *self.0;
            p.auth.notify(p.event, std::mem::take(&mut p.req));
        }
    }
}

/// SRS's `server_id`: the host name (a pod's name in Kubernetes), else a random id.
pub fn server_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(random_id)
}

fn refuse(event: Event, reason: &'static str, description: String) -> Refusal {
    metrics::global()
        .auth_refusals
        .get_or_create(&AuthRefusalLabel {
            event: event.action(),
            reason,
        })
        .inc();
    Refusal {
        reason,
        description,
    }
}

/// An 8-character id like SRS's context ids.
pub fn random_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests;
