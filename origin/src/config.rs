//! Configuration: command-line flags, environment variables (`ORIGIN_*`) and an optional
//! TOML file, merged in that order of precedence over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use origin_wire::addr::HostPort;
use serde::Deserialize;

use crate::auth::{AuthConfig, HookFailure, LimitsConfig};
use crate::hls::HlsConfig;
use crate::media::MediaConfig;

/// A duration written like `500ms`, `5s` or `1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A bare number means seconds.
        if let Ok(n) = s.trim().parse::<u64>() {
            return Ok(Dur(Duration::from_secs(n)));
        }
        humantime::parse_duration(s.trim()).map(Dur)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Dur(Duration::from_secs(n))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PublishConflict {
    /// Refuse a publish another origin already has (default).
    #[default]
    Reject,
    /// Accept it anyway (SRS behaviour).
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Relay, except for clients known to follow the RTMP 302 (SRS edges, opt-ins).
    #[default]
    Auto,
    /// Always relay.
    Relay,
    /// Always redirect (SRS's behaviour).
    Redirect,
}

/// How a non-owner finds a stream's owner (docs/architecture.md, "Ownership directory").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryMode {
    /// Ask the stream's two directory origins first; ask every coworker when they do not
    /// know (default). Publishes claim their name at the directory.
    #[default]
    Directory,
    /// Always ask every coworker (SRS's way).
    Broadcast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn parse_host_port(s: &str) -> Result<HostPort, String> {
    HostPort::parse(s).map_err(|e| e.to_string())
}

/// Settings as given by flags, env or file: every field optional so the sources merge.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// RTMP listen address. [default: 0.0.0.0:1935]
    #[arg(long, env = "ORIGIN_RTMP_LISTEN")]
    pub rtmp_listen: Option<SocketAddr>,
    /// HTTP API listen address (clusters, coworkers, streams, health, metrics). [default: 0.0.0.0:1985]
    #[arg(long, env = "ORIGIN_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// HTTP-FLV listen address. [default: 0.0.0.0:8080]
    #[arg(long, env = "ORIGIN_FLV_LISTEN")]
    pub flv_listen: Option<SocketAddr>,
    /// A coworker's API address, host:port (repeatable; env: comma-separated).
    #[arg(long = "coworker", env = "ORIGIN_COWORKERS", value_delimiter = ',', value_parser = parse_host_port)]
    #[serde(skip)]
    pub coworkers: Vec<HostPort>,
    /// JSON coworker document re-read when it changes (docs/architecture.md, "Coworker delivery").
    #[arg(long, env = "ORIGIN_COWORKER_FILE")]
    pub coworker_file: Option<PathBuf>,
    /// This origin's API address as its peers list it (dropped from the coworker list).
    #[arg(long, env = "ORIGIN_SELF_API", value_parser = parse_host_port)]
    #[serde(skip)]
    pub self_api: Option<HostPort>,
    /// File holding the bearer token for PUT /api/v1/coworkers and POST /api/v1/drain.
    #[arg(long, env = "ORIGIN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// RTMP address put into redirects instead of our own.
    #[arg(long, env = "ORIGIN_ADVERTISE_RTMP", value_parser = parse_host_port)]
    #[serde(skip)]
    pub advertise_rtmp: Option<HostPort>,
    /// HTTP-FLV address put into redirects instead of our own.
    #[arg(long, env = "ORIGIN_ADVERTISE_HTTP", value_parser = parse_host_port)]
    #[serde(skip)]
    pub advertise_http: Option<HostPort>,
    /// How long a player waits for a publisher that is nowhere yet (0 = fail at once, as SRS). [default: 5s]
    #[arg(long, env = "ORIGIN_WAIT_FOR_PUBLISHER")]
    pub wait_for_publisher: Option<Dur>,
    /// Most distinct stream names one address (IPv6: one /64) may have plays waiting for
    /// at once (streams not here yet); a play of another name is refused (RTMP
    /// `NetStream.Play.Failed`, HTTP 429). More plays of a name it already waits for are
    /// not counted, and neither are the cluster's origins (admin token). 0 = no limit. [default: 64]
    #[arg(long, env = "ORIGIN_MAX_WAITING_NAMES_PER_IP")]
    pub max_waiting_names_per_ip: Option<usize>,
    /// Rounds of ownership queries per second that waiting plays may send (each round asks
    /// every coworker once); a play's first round always goes. 0 = no limit. [default: 100]
    #[arg(long, env = "ORIGIN_OWNER_QUERY_RATE")]
    pub owner_query_rate: Option<f64>,
    /// What to do with a publish another origin already has. [default: reject]
    #[arg(long, env = "ORIGIN_PUBLISH_CONFLICT", value_enum)]
    pub publish_conflict: Option<PublishConflict>,
    /// How a player asking for a stream a coworker owns is served: `auto`
    /// relays it, except SRS edges and `redirect=302` opt-ins, which get the RTMP 302;
    /// `relay` always relays; `redirect` always redirects (RTMP 302 / HTTP 302). [default: auto]
    #[arg(long, env = "ORIGIN_ROUTE", value_enum)]
    pub route: Option<Route>,
    /// How long a relay keeps its upstream after its last player left. [default: 5s]
    #[arg(long, env = "ORIGIN_RELAY_LINGER")]
    pub relay_linger: Option<Dur>,
    /// A relay gives up on an upstream that sent no byte (no media, no control message)
    /// for this long, and looks for the owner again; its players stay [default: 3s].
    #[arg(long, env = "ORIGIN_RELAY_IDLE_TIMEOUT")]
    pub relay_idle_timeout: Option<Dur>,
    /// This origin's pod name (the operator sets `POD_NAME`): its advertise addresses
    /// are the document's `pod_advertise` entry of that name.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// How long an HTTP client may take to send a request header; also closes idle
    /// keep-alive connections. [default: 10s]
    #[arg(long, env = "ORIGIN_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<Dur>,
    /// Most concurrent connections to the HTTP API port (counted apart from
    /// `--max-connections`, so players never lock out the control plane). [default: 1024]
    #[arg(long, env = "ORIGIN_MAX_API_CONNECTIONS")]
    pub max_api_connections: Option<usize>,
    /// Send deadline: a client that takes longer than this to accept a write is cut off
    /// (RTMP and HTTP bodies). [default: 15s]
    #[arg(long, env = "ORIGIN_WRITE_TIMEOUT")]
    pub write_timeout: Option<Dur>,
    /// Per-coworker timeout of an ownership query. [default: 500ms]
    #[arg(long, env = "ORIGIN_DISCOVERY_TIMEOUT")]
    pub discovery_timeout: Option<Dur>,
    /// How long a found owner is remembered. [default: 2s]
    #[arg(long, env = "ORIGIN_DISCOVERY_CACHE")]
    pub discovery_cache: Option<Dur>,
    /// How a non-owner finds a stream's owner: `directory` asks the stream's two directory
    /// origins first (publishes claim their name there) and asks every coworker only when
    /// they do not know; `broadcast` always asks every coworker, as SRS does. The directory
    /// needs the admin token; without it the origin broadcasts. [default: directory]
    #[arg(long, env = "ORIGIN_DISCOVERY", value_enum)]
    pub discovery: Option<DiscoveryMode>,
    /// The lease this origin grants a claim as a directory origin; owners renew every
    /// third of it, and a claim not renewed runs out after it. [default: 10s]
    #[arg(long, env = "ORIGIN_DIRECTORY_LEASE")]
    pub directory_lease: Option<Dur>,
    /// How long players stay connected waiting for a publisher to come back. [default: 30s]
    #[arg(long, env = "ORIGIN_REPUBLISH_TIMEOUT")]
    pub republish_timeout: Option<Dur>,
    /// After POST /api/v1/drain, how long publishers may stay before they are ended. [default: 60s]
    #[arg(long, env = "ORIGIN_DRAIN_GRACE")]
    pub drain_grace: Option<Dur>,
    /// On SIGTERM, how long players may drain before the process exits. [default: 10s]
    #[arg(long, env = "ORIGIN_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<Dur>,
    /// Most concurrent connections (RTMP + HTTP-FLV). [default: 10000]
    #[arg(long, env = "ORIGIN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest RTMP message accepted, bytes. [default: 16777216]
    #[arg(long, env = "ORIGIN_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Frames buffered per stream for players; a player further behind skips to a keyframe. [default: 1024]
    #[arg(long, env = "ORIGIN_PLAYER_QUEUE")]
    pub player_queue: Option<usize>,
    /// Coalesce live writes to a player for up to this long (0 = write as soon
    /// as data arrives). A player's join burst (GOP) is always written at once. [default: 200ms]
    #[arg(long, env = "ORIGIN_MERGE_WRITES")]
    pub merge_writes: Option<Dur>,
    /// A publisher whose stream nobody plays is read at most this often (0 = as data
    /// arrives), so an unwatched stream costs a read per interval instead of
    /// one per frame. A player's arrival ends the wait at once. [default: 100ms]
    #[arg(long, env = "ORIGIN_UNWATCHED_READ_INTERVAL")]
    pub unwatched_read_interval: Option<Dur>,
    /// Log format. [default: text]
    #[arg(long, env = "ORIGIN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    // ---- Authorization (docs/architecture.md, "Auth and hooks"; docs/auth.md) ----
    /// on_connect hook URL (repeatable, called in order; env: comma-separated).
    #[arg(long = "on-connect", env = "ORIGIN_ON_CONNECT", value_delimiter = ',')]
    pub on_connect: Vec<String>,
    /// on_publish hook URL (repeatable, called in order; env: comma-separated).
    #[arg(long = "on-publish", env = "ORIGIN_ON_PUBLISH", value_delimiter = ',')]
    pub on_publish: Vec<String>,
    /// on_unpublish notification URL (repeatable; env: comma-separated).
    #[arg(
        long = "on-unpublish",
        env = "ORIGIN_ON_UNPUBLISH",
        value_delimiter = ','
    )]
    pub on_unpublish: Vec<String>,
    /// on_play hook URL (repeatable, called in order; env: comma-separated).
    #[arg(long = "on-play", env = "ORIGIN_ON_PLAY", value_delimiter = ',')]
    pub on_play: Vec<String>,
    /// on_stop notification URL (repeatable; env: comma-separated).
    #[arg(long = "on-stop", env = "ORIGIN_ON_STOP", value_delimiter = ',')]
    pub on_stop: Vec<String>,
    /// on_close notification URL (repeatable; env: comma-separated).
    #[arg(long = "on-close", env = "ORIGIN_ON_CLOSE", value_delimiter = ',')]
    pub on_close: Vec<String>,
    /// Bound of one event's hook calls, all its URLs together. [default: 3s]
    #[arg(long, env = "ORIGIN_HOOK_TIMEOUT")]
    pub hook_timeout: Option<Dur>,
    /// What a failed hook (timeout, connection error, 5xx, garbage) does; a hook's explicit
    /// refusal always refuses. [default: deny]
    #[arg(long, env = "ORIGIN_HOOK_FAILURE", value_enum)]
    pub hook_failure: Option<HookFailure>,
    /// TOML file of publish/play rules (keys, networks), re-read when it changes.
    #[arg(long, env = "ORIGIN_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Most open connections from one address (IPv6: one /64); 0 = no limit. [default: 0]
    #[arg(long, env = "ORIGIN_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Most new connections per second from one address; 0 = no limit. [default: 0]
    #[arg(long, env = "ORIGIN_MAX_CONNECTION_RATE_PER_IP")]
    pub max_connection_rate_per_ip: Option<f64>,
    // ---- end of authorization ----
    /// HLS (TOML: an `[hls]` table).
    #[command(flatten)]
    pub hls: HlsSettings,
}

// --- HLS settings (flags --hls-*, env ORIGIN_HLS_*, TOML table [hls]) ---

/// HLS packaging settings, as given.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSettings {
    /// Serve Low-Latency HLS (fMP4 parts, blocking reload) instead of MPEG-TS segments. [default: false]
    #[arg(long = "hls-low-latency", env = "ORIGIN_HLS_LOW_LATENCY", num_args = 0..=1, default_missing_value = "true")]
    pub low_latency: Option<bool>,
    /// HLS target segment duration (segments are cut at the first keyframe past it). [default: 2s]
    #[arg(long = "hls-segment", env = "ORIGIN_HLS_SEGMENT")]
    pub segment: Option<Dur>,
    /// Segments listed in an HLS playlist. [default: 6]
    #[arg(long = "hls-window", env = "ORIGIN_HLS_WINDOW")]
    pub window: Option<usize>,
    /// LL-HLS part target duration. [default: 1s]
    #[arg(long = "hls-part", env = "ORIGIN_HLS_PART")]
    pub part: Option<Dur>,
    /// An HLS packager stops after this long without a request. [default: 30s]
    #[arg(long = "hls-idle-timeout", env = "ORIGIN_HLS_IDLE_TIMEOUT")]
    pub idle_timeout: Option<Dur>,
    /// Most media bytes one HLS packager holds. [default: 67108864]
    #[arg(long = "hls-max-bytes", env = "ORIGIN_HLS_MAX_BYTES")]
    pub max_bytes: Option<usize>,
}

impl HlsSettings {
    fn or(self, o: HlsSettings) -> HlsSettings {
        HlsSettings {
            low_latency: self.low_latency.or(o.low_latency),
            segment: self.segment.or(o.segment),
            window: self.window.or(o.window),
            part: self.part.or(o.part),
            idle_timeout: self.idle_timeout.or(o.idle_timeout),
            max_bytes: self.max_bytes.or(o.max_bytes),
        }
    }

    fn resolve(&self) -> HlsOptions {
        let d = HlsConfig::default();
        HlsOptions {
            packager: HlsConfig {
                low_latency: self.low_latency.unwrap_or(d.low_latency),
                target_duration: self.segment.map_or(d.target_duration, |x| x.0),
                window: self.window.unwrap_or(d.window),
                part_target: self.part.map_or(d.part_target, |x| x.0),
                max_window_bytes: self.max_bytes.unwrap_or(d.max_window_bytes),
            }
            .sanitized(),
            idle_timeout: self.idle_timeout.map_or(Duration::from_secs(30), |x| x.0),
        }
    }
}

/// Resolved HLS settings of one origin.
#[derive(Debug, Clone, Copy)]
pub struct HlsOptions {
    pub packager: HlsConfig,
    /// A packager stops after this long without an HLS request.
    pub idle_timeout: Duration,
}

#[cfg(test)]
mod hls_settings_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    #[test]
    fn flags_toml_and_defaults() {
        let d = Config::default().hls;
        assert!(!d.packager.low_latency);
        assert_eq!(d.packager.window, 6);
        let cli = Cli::try_parse_from([
            "origin",
            "--hls-low-latency",
            "--hls-part",
            "500ms",
            "--hls-window",
            "4",
        ])
        .unwrap()
        .s;
        let file =
            Settings::from_toml("[hls]\nsegment = \"4s\"\nwindow = 9\nidle_timeout = 5\n").unwrap();
        let c = Config::from_settings(cli.or(file), None).hls;
        assert!(c.packager.low_latency);
        assert_eq!(c.packager.part_target, Duration::from_millis(500));
        assert_eq!(c.packager.window, 4, "flags win over the file");
        assert_eq!(c.packager.target_duration, Duration::from_secs(4));
        assert_eq!(c.idle_timeout, Duration::from_secs(5));
        assert!(Settings::from_toml("[hls]\nbogus = 1\n").is_err());
        // Out-of-range values are clamped, not trusted.
        let wild = Cli::try_parse_from(["origin", "--hls-window", "100000", "--hls-part", "0"])
            .unwrap()
            .s;
        let c = Config::from_settings(wild, None).hls;
        assert_eq!(c.packager.window, 100);
        assert_eq!(c.packager.part_target, Duration::from_millis(100));
    }
}

// --- end of HLS settings ---

impl Settings {
    /// Fills every unset field from `other` (lower precedence).
    pub fn or(mut self, other: Settings) -> Settings {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            rtmp_listen,
            api_listen,
            flv_listen,
            coworker_file,
            self_api,
            admin_token_file,
            advertise_rtmp,
            advertise_http,
            wait_for_publisher,
            max_waiting_names_per_ip,
            owner_query_rate,
            publish_conflict,
            route,
            relay_linger,
            relay_idle_timeout,
            http_header_timeout,
            pod_name,
            max_api_connections,
            write_timeout,
            discovery_timeout,
            discovery_cache,
            discovery,
            directory_lease,
            republish_timeout,
            drain_grace,
            shutdown_grace,
            max_connections,
            max_message_size,
            player_queue,
            merge_writes,
            unwatched_read_interval,
            log_format,
            hook_timeout,
            hook_failure,
            auth_file,
            max_connections_per_ip,
            max_connection_rate_per_ip
        );
        for (mine, theirs) in [
            (&mut self.on_connect, other.on_connect),
            (&mut self.on_publish, other.on_publish),
            (&mut self.on_unpublish, other.on_unpublish),
            (&mut self.on_play, other.on_play),
            (&mut self.on_stop, other.on_stop),
            (&mut self.on_close, other.on_close),
        ] {
            if mine.is_empty() {
                *mine = theirs;
            }
        }
        if self.coworkers.is_empty() {
            self.coworkers = other.coworkers;
        }
        self.hls = self.hls.or(other.hls);
        self
    }

    /// Reads a TOML file whose keys are the flag names with `_` (e.g. `rtmp_listen`).
    /// Address-typed keys are given as strings and parsed here.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Addrs {
            coworkers: Vec<String>,
            self_api: Option<String>,
            advertise_rtmp: Option<String>,
            advertise_http: Option<String>,
        }
        let value: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut rest = value.clone();
        let mut addrs_table = toml::Table::new();
        for k in ["coworkers", "self_api", "advertise_rtmp", "advertise_http"] {
            if let Some(v) = rest.remove(k) {
                addrs_table.insert(k.to_string(), v);
            }
        }
        let mut s: Settings = rest
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        let a: Addrs = addrs_table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        s.coworkers = a
            .coworkers
            .iter()
            .map(|c| parse_host_port(c))
            .collect::<Result<_, _>>()?;
        s.self_api = a.self_api.as_deref().map(parse_host_port).transpose()?;
        s.advertise_rtmp = a
            .advertise_rtmp
            .as_deref()
            .map(parse_host_port)
            .transpose()?;
        s.advertise_http = a
            .advertise_http
            .as_deref()
            .map(parse_host_port)
            .transpose()?;
        Ok(s)
    }
}

/// The resolved configuration of one origin.
#[derive(Debug, Clone)]
pub struct Config {
    pub rtmp_listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub flv_listen: SocketAddr,
    pub coworkers: Vec<HostPort>,
    pub coworker_file: Option<PathBuf>,
    pub self_api: Option<HostPort>,
    pub admin_token: Option<String>,
    pub advertise_rtmp: Option<HostPort>,
    pub advertise_http: Option<HostPort>,
    pub wait_for_publisher: Duration,
    pub reask_interval: Duration,
    pub max_waiting_names_per_ip: usize,
    pub owner_query_rate: f64,
    pub publish_conflict: PublishConflict,
    pub route: Route,
    pub relay_linger: Duration,
    pub relay_idle_timeout: Duration,
    pub http_header_timeout: Duration,
    pub pod_name: Option<String>,
    pub max_api_connections: usize,
    pub discovery_timeout: Duration,
    pub discovery_cache: Duration,
    pub discovery: DiscoveryMode,
    pub directory_lease: Duration,
    /// Most claims this origin holds as a directory origin.
    pub directory_max_entries: usize,
    pub republish_timeout: Duration,
    pub drain_grace: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_message_size: usize,
    pub max_chunk_streams: usize,
    pub merge_writes: Duration,
    pub unwatched_read_interval: Duration,
    pub media: MediaConfig,
    pub log_format: LogFormat,
    pub auth: AuthConfig,
    pub hls: HlsOptions,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_settings(Settings::default(), None)
    }
}

impl Config {
    pub fn from_settings(s: Settings, admin_token: Option<String>) -> Self {
        let d = |v: Option<Dur>, def: Duration| v.map(|d| d.0).unwrap_or(def);
        let media = MediaConfig {
            queue_frames: s.player_queue.unwrap_or(1024).clamp(16, 1 << 16),
            ..MediaConfig::default()
        };
        Self {
            rtmp_listen: s
                .rtmp_listen
                .unwrap_or_else(|| ([0, 0, 0, 0], origin_wire::DEFAULT_RTMP_PORT).into()),
            api_listen: s
                .api_listen
                .unwrap_or_else(|| ([0, 0, 0, 0], origin_wire::DEFAULT_API_PORT).into()),
            flv_listen: s
                .flv_listen
                .unwrap_or_else(|| ([0, 0, 0, 0], origin_wire::DEFAULT_FLV_PORT).into()),
            coworkers: s.coworkers,
            coworker_file: s.coworker_file,
            self_api: s.self_api,
            admin_token,
            advertise_rtmp: s.advertise_rtmp,
            advertise_http: s.advertise_http,
            wait_for_publisher: d(s.wait_for_publisher, Duration::from_secs(5)),
            reask_interval: Duration::from_millis(500),
            max_waiting_names_per_ip: s.max_waiting_names_per_ip.unwrap_or(64),
            owner_query_rate: s
                .owner_query_rate
                .filter(|r| r.is_finite() && *r >= 0.0)
                .unwrap_or(100.0),
            publish_conflict: s.publish_conflict.unwrap_or_default(),
            route: s.route.unwrap_or_default(),
            relay_linger: d(s.relay_linger, Duration::from_secs(5)),
            relay_idle_timeout: d(s.relay_idle_timeout, Duration::from_secs(3)),
            http_header_timeout: d(s.http_header_timeout, Duration::from_secs(10)),
            max_api_connections: s.max_api_connections.unwrap_or(1024),
            pod_name: s.pod_name.filter(|p| !p.is_empty()),
            discovery_timeout: d(s.discovery_timeout, Duration::from_millis(500)),
            discovery_cache: d(s.discovery_cache, Duration::from_secs(2)),
            discovery: s.discovery.unwrap_or_default(),
            directory_lease: d(s.directory_lease, Duration::from_secs(10))
                .max(Duration::from_millis(300)),
            directory_max_entries: crate::cluster::directory::DEFAULT_MAX_ENTRIES,
            republish_timeout: d(s.republish_timeout, Duration::from_secs(30)),
            drain_grace: d(s.drain_grace, Duration::from_secs(60)),
            shutdown_grace: d(s.shutdown_grace, Duration::from_secs(10)),
            max_connections: s.max_connections.unwrap_or(10_000),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: d(s.write_timeout, Duration::from_secs(15)),
            max_message_size: s.max_message_size.unwrap_or(16 << 20),
            max_chunk_streams: 64,
            // Live writes to a player are coalesced for up to 200 ms (SRS uses 350 ms); a
            // player's join burst is never held back. 0 = write as soon as data arrives.
            merge_writes: d(s.merge_writes, Duration::from_millis(200)),
            // SRS's merged read (`mr`) for streams nobody watches: the GOP cache is all a
            // player needs to start, and a player's arrival wakes the publisher at once.
            unwatched_read_interval: d(s.unwatched_read_interval, Duration::from_millis(100)),
            media,
            log_format: s.log_format.unwrap_or_default(),
            auth: AuthConfig {
                on_connect: s.on_connect,
                on_publish: s.on_publish,
                on_unpublish: s.on_unpublish,
                on_play: s.on_play,
                on_stop: s.on_stop,
                on_close: s.on_close,
                hook_timeout: d(s.hook_timeout, Duration::from_secs(3)),
                hook_failure: s.hook_failure.unwrap_or_default(),
                auth_file: s.auth_file,
                limits: LimitsConfig {
                    max_per_ip: s.max_connections_per_ip.unwrap_or(0),
                    rate_per_ip: s
                        .max_connection_rate_per_ip
                        .filter(|r| r.is_finite() && *r > 0.0)
                        .unwrap_or(0.0),
                },
            },
            hls: s.hls.resolve(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "500ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!("5".parse::<Dur>().unwrap().0, Duration::from_secs(5));
        assert!("soon".parse::<Dur>().is_err());
    }

    #[test]
    fn toml_and_precedence() {
        let file = Settings::from_toml(
            r#"
            rtmp_listen = "127.0.0.1:1936"
            wait_for_publisher = "2s"
            publish_conflict = "allow"
            coworkers = ["127.0.0.1:1986", "[::1]:1987"]
            "#,
        )
        .unwrap();
        let cli = Settings {
            wait_for_publisher: Some(Dur(Duration::from_secs(9))),
            ..Settings::default()
        };
        let c = Config::from_settings(cli.or(file), None);
        assert_eq!(c.rtmp_listen, "127.0.0.1:1936".parse().unwrap());
        assert_eq!(
            c.wait_for_publisher,
            Duration::from_secs(9),
            "flags win over the file"
        );
        assert_eq!(c.publish_conflict, PublishConflict::Allow);
        assert_eq!(c.coworkers.len(), 2);
        assert!(Settings::from_toml("bogus_key = 1").is_err());
        let auth = Settings::from_toml(
            r#"
            on_publish = ["http://a/1", "http://b/2"]
            hook_timeout = "500ms"
            hook_failure = "allow"
            max_connections_per_ip = 3
            max_connection_rate_per_ip = 5
            auth_file = "/etc/origin/auth/auth.toml"
            "#,
        )
        .unwrap();
        let cli = Settings {
            on_play: vec!["http://c/3".into()],
            ..Settings::default()
        };
        let a = Config::from_settings(cli.or(auth), None).auth;
        assert_eq!(a.on_publish, ["http://a/1", "http://b/2"]);
        assert_eq!(a.on_play, ["http://c/3"]);
        assert_eq!(a.hook_timeout, Duration::from_millis(500));
        assert_eq!(a.hook_failure, HookFailure::Allow);
        assert_eq!(a.limits.max_per_ip, 3);
        assert_eq!(a.limits.rate_per_ip, 5.0);
        assert_eq!(
            a.auth_file.as_deref(),
            Some(std::path::Path::new("/etc/origin/auth/auth.toml"))
        );
        assert_eq!(Config::default().auth.hook_timeout, Duration::from_secs(3));
        assert_eq!(Config::default().auth.hook_failure, HookFailure::Deny);
        assert!(Settings::from_toml("coworkers = [\"nope\"]").is_err());
    }
}
