//! Relays (docs/architecture.md, "Relay"): a non-owner pulls a stream once from its
//! owner over RTMP and serves it to every local player itself, so every player works on
//! every origin.
//!
//! A relay is a publisher of the local stream (with `upstream` set): fan-out, the GOP
//! cache, slow-player handling and metrics are the local stream's. It is never an owner:
//! ownership answers and the publish guard ignore it, and a real publisher arriving here
//! takes its place. When the upstream ends (the encoder moved, the owner died), local
//! players get UnpublishNotify and stay; the relay finds the new owner and resumes them
//! with continuous timestamps, up to the republish timeout. An upstream also ends when
//! nothing (no media, no control message) arrived for the idle timeout, counted from the
//! last byte received (an owner frozen by SIGSTOP or cut off by a partition keeps its
//! TCP connection open), and on a TCP error; both are handled like an unpublish. A relay
//! closes a linger after its last player left. Relay requests are marked (flashVer and
//! the admin token), and an origin never relays or redirects one onward.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use origin_wire::DEFAULT_VHOST;
use tokio::time::Instant;

use crate::client::{Client, ClientError, ConnectOptions, Event, RtmpUrl};
use crate::cluster::{Coworkers, Discovery, Found};
use crate::media::{PublisherInfo, Registry, StreamKey};
use crate::metrics::{self, ReasonLabel};
use crate::rtmp::amf0::Value;
use crate::rtmp::message::kind;

/// `flashVer` a relay connects with; origins recognise relays by its prefix.
pub fn relay_flash_ver() -> String {
    format!("origin-cluster/{} relay", env!("CARGO_PKG_VERSION"))
}

/// Property of the relay's connect command that carries the admin token.
pub const TOKEN_PROPERTY: &str = "originClusterToken";
/// Most RTMP 302 hops a relay follows (an SRS owner may redirect it).
const MAX_HOPS: usize = 3;
/// How often a relay checks for players and pre-emption.
const TICK: Duration = Duration::from_millis(250);

/// What a relay needs from its origin.
#[derive(Clone)]
pub struct RelayContext {
    pub registry: Registry,
    pub discovery: Arc<Discovery>,
    pub coworkers: Arc<Coworkers>,
    /// The upstream stays this long after the last player left.
    pub linger: Duration,
    /// How long players are kept while the relay looks for a new owner.
    pub republish_timeout: Duration,
    /// How long the owner may take to start sending (it may wait for its publisher).
    pub first_media_timeout: Duration,
    /// Between two rounds of questions while the owner is unknown.
    pub reask_interval: Duration,
    /// Bound on TCP connect + handshake + connect, on `play`, and on each write.
    pub connect_timeout: Duration,
    /// An upstream that sent no byte for this long is given up on.
    pub idle_timeout: Duration,
    pub admin_token: Option<String>,
}

/// The relays of one origin: at most one per stream.
pub struct Relays {
    ctx: RelayContext,
    active: Arc<Mutex<HashSet<StreamKey>>>,
    next_id: AtomicU64,
}

/// Removes a relay from the active set when its task ends, however it ends.
struct Active {
    set: Arc<Mutex<HashSet<StreamKey>>>,
    key: StreamKey,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        metrics::global().relays.dec();
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("upstream: {0}")]
    Client(#[from] ClientError),
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream sent nothing for {0:?}")]
    Idle(Duration),
    /// The upstream failed while relaying (after it proved live).
    #[error("upstream lost: {0}")]
    Lost(ClientError),
    #[error("too many redirects")]
    Hops,
    #[error("upstream refused: {0}")]
    Refused(String),
}

impl RelayError {
    fn reason(&self) -> &'static str {
        match self {
            RelayError::Client(ClientError::Io(_)) => "connect",
            RelayError::Client(ClientError::Timeout) | RelayError::Timeout => "timeout",
            RelayError::Client(ClientError::Closed) => "closed",
            RelayError::Client(_) => "protocol",
            RelayError::Idle(_) => "idle",
            RelayError::Lost(ClientError::Io(_)) => "reset",
            RelayError::Lost(ClientError::Closed) => "closed",
            RelayError::Lost(ClientError::Timeout) => "timeout",
            RelayError::Lost(_) => "protocol",
            RelayError::Hops => "redirects",
            RelayError::Refused(_) => "refused",
        }
    }
}

/// Why a pull ended without an error.
enum PullEnd {
    /// No player for the linger time.
    Idle,
    /// A real publisher took the stream here.
    Preempted,
    /// The owner said the publisher left.
    Unpublished,
    /// The upstream went quiet or failed after it had been relaying.
    Lost(RelayError),
}

/// What the idle deadline of an upstream says at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Bytes arrived recently: look again at this instant.
    Until(Instant),
    /// Nothing arrived for the idle timeout.
    Expired,
}

/// The idle deadline of an upstream: `timeout` after the last byte received. Pure, so
/// the relay's loop only sleeps until [`Idle::Until`] and asks again when it passes.
fn idle_deadline(last_received: Instant, timeout: Duration, now: Instant) -> Idle {
    let deadline = last_received + timeout;
    if now >= deadline {
        Idle::Expired
    } else {
        Idle::Until(deadline)
    }
}

impl Relays {
    pub fn new(ctx: RelayContext) -> Self {
        Self {
            ctx,
            active: Arc::new(Mutex::new(HashSet::new())),
            next_id: AtomicU64::new(1),
        }
    }

    /// Makes sure a relay pulls `key` (from `found`, the owner just found); returns at
    /// once. `ip` is the host the player addressed (echoed in ownership queries).
    pub fn ensure(&self, key: &StreamKey, found: Found, ip: &str) {
        {
            let mut set = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if !set.insert(key.clone()) {
                return;
            }
        }
        metrics::global().relays.inc();
        let active = Active {
            set: self.active.clone(),
            key: key.clone(),
        };
        // Relay publisher ids live in their own range so they never meet connection ids.
        let id = (1 << 62) | self.next_id.fetch_add(1, Ordering::Relaxed);
        let ctx = self.ctx.clone();
        let (key, ip) = (key.clone(), ip.to_string());
        tokio::spawn(async move {
            run(ctx, key, Some(found), ip, id).await;
            drop(active);
        });
    }

    /// Number of relays open.
    pub fn len(&self) -> usize {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn run(ctx: RelayContext, key: StreamKey, mut found: Option<Found>, ip: String, id: u64) {
    // Keep the entry (and its players' place) while the relay works.
    let hold = ctx.registry.hold(&key);
    let stream = hold.stream().clone();
    let mut idle_since: Option<Instant> = None;
    let mut lost_at: Option<Instant> = None;
    tracing::info!(stream = %key, "relay started");
    loop {
        if stream.is_owned() {
            tracing::info!(stream = %key, "relay ends: the stream is published here now");
            return;
        }
        if stream.players() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= ctx.linger {
                tracing::info!(stream = %key, "relay ends: no players");
                return;
            }
        } else {
            idle_since = None;
        }
        let Some(owner) = found.take() else {
            // Look for the owner again (the encoder usually reconnects elsewhere).
            if lost_at.is_some_and(|t| t.elapsed() >= ctx.republish_timeout) {
                tracing::info!(stream = %key, "relay ends: the stream did not come back in time");
                return;
            }
            ctx.discovery.forget(&key);
            let peers = ctx.coworkers.peers();
            match ctx.discovery.find_owner(&peers, &key, &ip).await {
                Some(f) => found = Some(f),
                None => tokio::time::sleep(ctx.reask_interval).await,
            }
            continue;
        };
        match pull(&ctx, &key, &owner, id, &mut idle_since).await {
            Ok(PullEnd::Idle) => {
                tracing::info!(stream = %key, "relay ends: no players");
                return;
            }
            Ok(PullEnd::Preempted) => {
                tracing::info!(stream = %key, "relay ends: the stream is published here now");
                return;
            }
            Ok(PullEnd::Unpublished) => {
                tracing::info!(stream = %key, "relay upstream unpublished; looking for the new owner");
                lost_at = Some(Instant::now());
                count_failure("unpublished");
            }
            Ok(PullEnd::Lost(e)) => {
                // Players were relayed until now: they got UnpublishNotify when the
                // publisher dropped, and wait for the new owner as after an unpublish.
                tracing::warn!(stream = %key, owner = %owner.peer, error = %e, "relay upstream lost; looking for the owner again");
                lost_at = Some(Instant::now());
                count_failure(e.reason());
            }
            Err(e) => {
                tracing::warn!(stream = %key, owner = %owner.peer, error = %e, "relay upstream failed");
                lost_at.get_or_insert_with(Instant::now);
                count_failure(e.reason());
                tokio::time::sleep(ctx.reask_interval).await;
            }
        }
    }
}

fn count_failure(reason: &'static str) {
    metrics::global()
        .relay_failures
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// The upstream URL of `key` on `owner`.
fn upstream_url(found: &Found, key: &StreamKey) -> RtmpUrl {
    let stream = if key.vhost == DEFAULT_VHOST {
        key.stream.clone()
    } else {
        format!("{}?vhost={}", key.stream, key.vhost)
    };
    RtmpUrl {
        host: found.owner.ip.clone(),
        port: found.owner.port,
        app: key.app.clone(),
        stream,
    }
}

/// Data messages a player should get (metadata, cue points), not the play replies.
fn forwardable(payload: &[u8]) -> bool {
    let name = crate::rtmp::amf0::Decoder::new(payload).decode().ok();
    !matches!(
        name.as_ref().and_then(Value::as_str),
        Some("|RtmpSampleAccess" | "onStatus")
    )
}

/// Connects to the owner (following its 302s), then publishes what it sends into the
/// local stream until the upstream ends, the players leave, or a real publisher arrives.
async fn pull(
    ctx: &RelayContext,
    key: &StreamKey,
    owner: &Found,
    id: u64,
    idle_since: &mut Option<Instant>,
) -> Result<PullEnd, RelayError> {
    let mut options = ConnectOptions {
        flash_ver: relay_flash_ver(),
        timeout: ctx.connect_timeout,
        ..ConnectOptions::default()
    };
    if let Some(t) = &ctx.admin_token {
        options
            .properties
            .push((TOKEN_PROPERTY.to_string(), Value::str(t.clone())));
    }
    let mut url = upstream_url(owner, key);
    let mut hops = 0;
    // Messages that arrived before the stream proved live (metadata, headers).
    let mut early: Vec<(u8, u32, Bytes)> = Vec::new();
    let mut client = 'connect: loop {
        let mut c = Client::connect_with(url.clone(), &options).await?;
        tokio::time::timeout(ctx.connect_timeout, c.play(None))
            .await
            .map_err(|_| RelayError::Timeout)??;
        let deadline = Instant::now() + ctx.first_media_timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, c.next_event())
                .await
                .map_err(|_| RelayError::Timeout)??;
            match ev {
                Event::Media(m) => {
                    early.push((m.type_id, m.timestamp, m.payload));
                    break 'connect c;
                }
                Event::Data(m) if forwardable(&m.payload) => {
                    early.push((m.type_id, m.timestamp, m.payload))
                }
                Event::Status { info, .. } => {
                    if let Some((_, redirect2)) = crate::client::redirect_of(&info) {
                        hops += 1;
                        if hops > MAX_HOPS {
                            return Err(RelayError::Hops);
                        }
                        tracing::info!(stream = %key, to = %redirect2, "relay follows the owner's RTMP 302");
                        url = RtmpUrl::parse(&redirect2)?;
                        continue 'connect;
                    }
                    if info.get("level").and_then(Value::as_str) == Some("error") {
                        let code = info.get("code").and_then(Value::as_str).unwrap_or_default();
                        return Err(RelayError::Refused(code.to_string()));
                    }
                }
                _ => {}
            }
        }
    };
    let upstream = format!("rtmp://{}:{}", url.host, url.port);
    let publisher = match ctx.registry.publish(
        key,
        PublisherInfo {
            id,
            addr: None,
            since: std::time::Instant::now(),
            upstream: Some(upstream.clone()),
        },
    ) {
        Ok(p) => p,
        Err(_) => return Ok(PullEnd::Preempted),
    };
    tracing::info!(stream = %key, %upstream, "relaying");
    let m = metrics::global();
    for (t, ts, payload) in early {
        m.relay_upstream_bytes.inc_by(payload.len() as u64);
        publisher.push_batched(t, ts, payload);
    }
    Ok(relay_until_end(ctx, &mut client, &publisher, idle_since).await)
}

/// Publishes what the upstream sends until it ends (unpublished, quiet for the idle
/// timeout, failed), the players leave, or a real publisher arrives. The upstream is
/// dropped by the caller, the publisher with it (players get UnpublishNotify).
async fn relay_until_end(
    ctx: &RelayContext,
    client: &mut Client,
    publisher: &crate::media::Publisher,
    idle_since: &mut Option<Instant>,
) -> PullEnd {
    let m = metrics::global();
    let mut tick = tokio::time::interval(TICK);
    // Pinned outside the loop and moved only when bytes arrived: other arms never
    // restart it.
    let idle = tokio::time::sleep_until(client.last_received() + ctx.idle_timeout);
    tokio::pin!(idle);
    // Frames held for the players' merge interval (or audio waiting for video) go out by then.
    let mut hold = crate::media::flush_stepped(publisher).await;
    loop {
        tokio::select! {
            // `next_event` is cancel-safe: losing the race to another arm loses nothing.
            ev = client.next_event() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return PullEnd::Lost(RelayError::Lost(e)),
                };
                match ev {
                    Event::Media(msg) => {
                        m.relay_upstream_bytes.inc_by(msg.payload.len() as u64);
                        publisher.push_batched(msg.type_id, msg.timestamp, msg.payload);
                        hold = crate::media::flush_stepped(publisher).await;
                    }
                    Event::Data(msg) if msg.type_id == kind::DATA_AMF0 && forwardable(&msg.payload) => {
                        publisher.push_batched(msg.type_id, msg.timestamp, msg.payload);
                        hold = crate::media::flush_stepped(publisher).await;
                    }
                    Event::Status { info, .. } => {
                        let code = info.get("code").and_then(Value::as_str).unwrap_or_default();
                        if code == crate::rtmp::command::status::PLAY_UNPUBLISH_NOTIFY {
                            return PullEnd::Unpublished;
                        }
                        if info.get("level").and_then(Value::as_str) == Some("error") {
                            return PullEnd::Lost(RelayError::Refused(code.to_string()));
                        }
                    }
                    _ => {}
                }
            }
            () = &mut idle => {
                match idle_deadline(client.last_received(), ctx.idle_timeout, Instant::now()) {
                    Idle::Expired => return PullEnd::Lost(RelayError::Idle(ctx.idle_timeout)),
                    Idle::Until(at) => idle.as_mut().reset(at),
                }
            }
            _ = crate::media::held_until(hold), if hold.is_some() => {
                hold = crate::media::flush_stepped(publisher).await;
            }
            _ = tick.tick() => {
                if !publisher.is_current() {
                    return PullEnd::Preempted;
                }
                if publisher.stream().players() == 0 {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= ctx.linger {
                        return PullEnd::Idle;
                    }
                } else {
                    *idle_since = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_deadline_counts_from_the_last_byte_received() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        assert_eq!(idle_deadline(t0, timeout, t0), Idle::Until(t0 + timeout));
        // Loop turns (ticks, flushes) between bytes do not move the deadline.
        for ms in [250, 500, 2_999] {
            assert_eq!(
                idle_deadline(t0, timeout, t0 + Duration::from_millis(ms)),
                Idle::Until(t0 + timeout)
            );
        }
        assert_eq!(idle_deadline(t0, timeout, t0 + timeout), Idle::Expired);
        assert_eq!(
            idle_deadline(t0, timeout, t0 + Duration::from_secs(60)),
            Idle::Expired
        );
        // A byte received later moves it.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            idle_deadline(later, timeout, t0 + timeout),
            Idle::Until(later + timeout)
        );
    }

    #[test]
    fn failures_while_relaying_are_counted_by_their_own_reason() {
        assert_eq!(RelayError::Idle(Duration::from_secs(3)).reason(), "idle");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(RelayError::Lost(ClientError::Io(reset)).reason(), "reset");
        assert_eq!(RelayError::Lost(ClientError::Closed).reason(), "closed");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            RelayError::Client(ClientError::Io(refused)).reason(),
            "connect"
        );
        assert_eq!(RelayError::Client(ClientError::Timeout).reason(), "timeout");
    }
}
