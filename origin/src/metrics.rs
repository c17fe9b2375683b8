//! Prometheus metrics of the origin (one process-wide registry).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    pub event: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRefusalLabel {
    pub event: &'static str,
    pub reason: &'static str,
}

pub struct Metrics {
    pub connections: Gauge,
    pub connections_total: Family<KindLabel, Counter>,
    pub connections_rejected: Family<ReasonLabel, Counter>,
    pub streams: Gauge,
    pub players: Gauge,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub redirects: Family<KindLabel, Counter>,
    pub relays: Gauge,
    pub relay_upstream_bytes: Counter,
    pub relay_failures: Family<ReasonLabel, Counter>,
    pub relayed_players: Gauge,
    pub discovery_requests: Counter,
    pub discovery_answers: Family<OutcomeLabel, Counter>,
    pub discovery_latency: Histogram,
    pub coworker_revision: Gauge,
    pub coworkers: Gauge,
    pub slow_player_skips: Counter,
    pub slow_player_disconnects: Counter,
    pub publish_rejected: Family<ReasonLabel, Counter>,
    pub hook_calls: Family<HookLabel, Counter>,
    pub hook_latency: Histogram,
    pub auth_refusals: Family<AuthRefusalLabel, Counter>,
    pub hls_requests: Family<KindLabel, Counter>,
    pub hls_bytes: Counter,
    pub hls_packagers: Gauge,
    pub ownership_queries: Counter,
    pub directory_requests: Counter,
    pub directory_lookups: Counter,
    pub directory_claims: Family<OutcomeLabel, Counter>,
    pub directory_entries: Gauge,
    pub directory_lookup_outcomes: Family<OutcomeLabel, Counter>,
    pub waiting_names: Gauge,
    pub waiting_plays: Gauge,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("origin");
        let m = Self {
            connections: Gauge::default(),
            connections_total: Family::default(),
            connections_rejected: Family::default(),
            streams: Gauge::default(),
            players: Gauge::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            redirects: Family::default(),
            relays: Gauge::default(),
            relay_upstream_bytes: Counter::default(),
            relay_failures: Family::default(),
            relayed_players: Gauge::default(),
            discovery_requests: Counter::default(),
            discovery_answers: Family::default(),
            discovery_latency: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
            ]),
            coworker_revision: Gauge::default(),
            coworkers: Gauge::default(),
            slow_player_skips: Counter::default(),
            slow_player_disconnects: Counter::default(),
            publish_rejected: Family::default(),
            hook_calls: Family::default(),
            hook_latency: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
            auth_refusals: Family::default(),
            hls_requests: Family::default(),
            hls_bytes: Counter::default(),
            hls_packagers: Gauge::default(),
            ownership_queries: Counter::default(),
            directory_requests: Counter::default(),
            directory_lookups: Counter::default(),
            directory_claims: Family::default(),
            directory_entries: Gauge::default(),
            directory_lookup_outcomes: Family::default(),
            waiting_names: Gauge::default(),
            waiting_plays: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("connections", "Open connections", m.connections.clone());
        registry.register(
            "connections_accepted",
            "Accepted connections by protocol",
            m.connections_total.clone(),
        );
        registry.register(
            "connections_rejected",
            "Connections closed early by reason",
            m.connections_rejected.clone(),
        );
        registry.register("streams", "Published streams", m.streams.clone());
        registry.register("players", "Connected players", m.players.clone());
        registry.register(
            "received_bytes",
            "Bytes received from publishers",
            m.bytes_in.clone(),
        );
        registry.register("sent_bytes", "Bytes sent to players", m.bytes_out.clone());
        registry.register(
            "redirects",
            "Players redirected to the owner, by kind (rtmp, http)",
            m.redirects.clone(),
        );
        registry.register(
            "relays",
            "Relays open (one upstream per relayed stream)",
            m.relays.clone(),
        );
        registry.register(
            "relay_upstream_bytes",
            "Bytes relays received from owners",
            m.relay_upstream_bytes.clone(),
        );
        registry.register(
            "relay_failures",
            "Relay upstreams that failed or ended, by reason",
            m.relay_failures.clone(),
        );
        registry.register(
            "relayed_players",
            "Players served from a relay",
            m.relayed_players.clone(),
        );
        registry.register(
            "discovery_requests",
            "Ownership queries sent to coworkers",
            m.discovery_requests.clone(),
        );
        registry.register(
            "discovery_answers",
            "Ownership answers by outcome",
            m.discovery_answers.clone(),
        );
        registry.register(
            "discovery_latency_seconds",
            "Time to decide where a stream is (all coworkers asked concurrently)",
            m.discovery_latency.clone(),
        );
        registry.register(
            "coworker_revision",
            "Revision of the coworker list in use",
            m.coworker_revision.clone(),
        );
        registry.register(
            "coworkers",
            "Coworkers in the list in use (self excluded)",
            m.coworkers.clone(),
        );
        registry.register(
            "slow_player_skips",
            "Times a player fell behind and was cut back to a keyframe",
            m.slow_player_skips.clone(),
        );
        registry.register(
            "slow_player_disconnects",
            "Players disconnected for being too slow",
            m.slow_player_disconnects.clone(),
        );
        registry.register(
            "publish_rejected",
            "Publishes refused, by reason",
            m.publish_rejected.clone(),
        );
        registry.register(
            "hook_calls",
            "HTTP hook calls by event and outcome (allow, deny, failure)",
            m.hook_calls.clone(),
        );
        registry.register(
            "hook_latency_seconds",
            "Time of one HTTP hook call",
            m.hook_latency.clone(),
        );
        registry.register(
            "auth_refusals",
            "Connects, publishes and plays refused by authorization, by event and reason",
            m.auth_refusals.clone(),
        );
        registry.register(
            "hls_requests",
            "HLS requests by kind (playlist, segment, part, init, bad)",
            m.hls_requests.clone(),
        );
        registry.register(
            "hls_sent_bytes",
            "HLS playlist and media bytes sent",
            m.hls_bytes.clone(),
        );
        registry.register(
            "hls_packagers",
            "Streams being packaged for HLS",
            m.hls_packagers.clone(),
        );
        registry.register(
            "ownership_queries",
            "Ownership queries (/api/v1/clusters) this origin answered",
            m.ownership_queries.clone(),
        );
        registry.register(
            "directory_requests",
            "Requests this origin sent to directory origins (claims, renewals, releases, lookups)",
            m.directory_requests.clone(),
        );
        registry.register(
            "directory_lookups",
            "Directory lookups (/api/v1/directory/lookup) this origin answered",
            m.directory_lookups.clone(),
        );
        registry.register(
            "directory_claims",
            "Directory claims and renewals this origin answered, by outcome (granted, conflict, full)",
            m.directory_claims.clone(),
        );
        registry.register(
            "directory_entries",
            "Claims held in this origin's directory table",
            m.directory_entries.clone(),
        );
        registry.register(
            "directory_lookup_outcomes",
            "Lookups this origin made at the directory, by outcome (found, unknown, failed)",
            m.directory_lookup_outcomes.clone(),
        );
        registry.register(
            "waiting_names",
            "Stream names that plays here wait for (no publisher here yet)",
            m.waiting_names.clone(),
        );
        registry.register(
            "waiting_plays",
            "Plays here waiting for their stream's publisher",
            m.waiting_plays.clone(),
        );
        Self { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
