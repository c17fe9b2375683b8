//! Relay benchmark (issue 9, docs/architecture.md, "Relay"): what a relayed stream costs a
//! non-owner compared with the same stream published to it, and how fast players start on a relay.
//!
//! - Fan-out: N players on the owner itself ("local") against N players on a relaying
//!   origin that pulls the stream from the owner ("relay"). The server under test (the
//!   owner in "local", the relaying origin in "relay") is pinned to one core with one tokio
//!   worker; the players, the publisher and (in "relay") the owner share the other core.
//!   CPU-seconds of the server under test per delivered Gbit, and the ratio relay / local.
//! - Time to first picture: cold relay (no relay open; one player joins the relaying
//!   origin), warm relay (one player holds the relay; a new player joins), and the owner.
//!
//! Prints tables; asserts nothing about speed.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin_bench::cli::{ClipArgs, Cores};
use origin_bench::load::{Players, Point, Proto, Summary, measure, ratio, sorted};
use origin_bench::publisher::Publisher;
use origin_bench::server::{ServerProc, start_origin};
use origin_bench::{Clip, cpu_seconds, fmt_opt, http, origin_bin, percentile, status_kib};
use tokio::time::{Instant, sleep};

const STREAM: &str = "bench";
const PATH: &str = "live/bench";

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Relay vs local fan-out (CPU per Gbit of the server under test) and cold / warm relay time to first picture"
)]
struct Args {
    /// Player protocol (RTMP or HTTP-FLV `GET /live/bench.flv`).
    #[arg(long, env = "RELAY_PROTO", value_enum, default_value_t = Proto::Rtmp)]
    proto: Proto,
    /// Player counts of the fan-out comparison (empty = skip it).
    #[arg(
        long,
        env = "RELAY_PLAYERS",
        value_delimiter = ',',
        default_value = "500,2000"
    )]
    players: Vec<usize>,
    /// How many times each fan-out point (local and relay) is measured.
    #[arg(long, env = "RELAY_REPEAT", default_value_t = 2)]
    repeat: usize,
    /// Measurement window per point, seconds.
    #[arg(long, env = "RELAY_WINDOW", default_value_t = 12)]
    window: u64,
    /// Players joining per second during the ramp.
    #[arg(long, env = "RELAY_JOIN_RATE", default_value_t = 500)]
    join_rate: usize,
    /// Samples of each time-to-first-picture case (0 = skip them).
    #[arg(long, env = "RELAY_TTFP_SAMPLES", default_value_t = 30)]
    ttfp_samples: usize,
    /// `--relay-linger` of the relaying origin in the time-to-first-picture runs, ms.
    #[arg(long, default_value_t = 300)]
    linger_ms: u64,
    /// `--discovery-cache` of the relaying origin in the time-to-first-picture runs, ms.
    /// The "cold, owner not cached" case waits this long after each join.
    #[arg(long, default_value_t = 2000)]
    discovery_cache_ms: u64,
    /// `--merge-writes` for both origins (default: the origin's own default).
    #[arg(long)]
    merge_writes: Option<String>,
    /// Read buffer per player, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    read_buf: usize,
    #[command(flatten)]
    cores: Cores,
    #[command(flatten)]
    clip: ClipArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Players on the owner.
    Local,
    /// Players on a relaying origin; the owner is elsewhere.
    Relay,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Relay => "relay",
        }
    }
}

/// The origins of one run: the server under test and, in relay mode, the owner.
struct Setup {
    /// Where the players go (pinned to the server core, one worker).
    sut: ServerProc,
    /// The owner when it is not `sut` (pinned to the client core).
    owner: Option<ServerProc>,
    publisher: Publisher,
}

impl Setup {
    fn owner(&self) -> &ServerProc {
        self.owner.as_ref().unwrap_or(&self.sut)
    }

    /// Starts the origins and publishes the clip to the owner; returns once a GOP is
    /// in the owner's cache. `relay_args` go to the relaying origin only.
    async fn start(mode: Mode, a: &Args, clip: &Arc<Clip>, relay_args: &[String]) -> Result<Self> {
        let bin = origin_bin()?;
        let pin = |cpu| a.cores.pin(cpu);
        let mut common: Vec<String> = Vec::new();
        if let Some(m) = &a.merge_writes {
            common.extend(["--merge-writes".into(), m.clone()]);
        }
        let (sut, owner) = match mode {
            Mode::Local => (
                start_origin(&bin, pin(a.cores.server_cpu), Some(1), &common)?,
                None,
            ),
            Mode::Relay => {
                let owner = start_origin(&bin, pin(a.cores.client_cpu), Some(1), &common)?;
                let api = owner.api_port.context("owner API port")?;
                let mut x = common.clone();
                x.extend(["--coworker".into(), format!("127.0.0.1:{api}")]);
                x.extend(relay_args.iter().cloned());
                let sut = start_origin(&bin, pin(a.cores.server_cpu), Some(1), &x)?;
                (sut, Some(owner))
            }
        };
        let publisher_url = owner.as_ref().unwrap_or(&sut).rtmp_url(PATH);
        let publisher = match Publisher::start_primed(&publisher_url, clip.clone()).await {
            Ok(p) => p,
            Err(e) => bail!(
                "publish failed: {e}\n{}",
                owner.as_ref().unwrap_or(&sut).log_tail()
            ),
        };
        let s = Self {
            sut,
            owner,
            publisher,
        };
        Ok(s)
    }

    fn stop(self) -> Result<()> {
        let failed = self.publisher.failed();
        let _ = self.publisher.stop();
        if failed {
            bail!("the publisher stopped early");
        }
        Ok(())
    }
}

/// Players and publishing state of the bench stream on `server`, from its streams API:
/// `None` when the stream is not listed.
async fn stream_state(server: &ServerProc) -> Option<(u64, bool)> {
    let url = format!(
        "http://127.0.0.1:{}/api/v1/streams",
        server.api_port.unwrap_or(0)
    );
    let v = http("GET", &url, &[], "").await.json();
    let s = v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["app"] == "live" && s["stream"] == STREAM)?
        .clone();
    Some((
        s["players"].as_u64().unwrap_or(0),
        s["publishing"].as_bool().unwrap_or(false),
    ))
}

/// A counter of `server`'s Prometheus metrics.
async fn metric(server: &ServerProc, name: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{}/metrics", server.api_port?);
    let text = http("GET", &url, &[], "").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Waits (up to `limit`) until no relay of the bench stream is open: the owner shows 0
/// players for it and the relaying origin neither lists it as published nor has players.
async fn wait_relay_closed(s: &Setup, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let owner = stream_state(s.owner()).await;
        let relay = stream_state(&s.sut).await;
        if owner.is_some_and(|(p, _)| p == 0) && relay.is_none_or(|(p, publ)| p == 0 && !publ) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// A fan-out point plus what the owner did meanwhile (relay mode).
struct Measured {
    mode: Mode,
    rep: usize,
    point: Point,
    owner_cpu_s: Option<f64>,
    /// Players of the stream on the owner during the window (1 = the relay).
    owner_players: Option<u64>,
    /// The publisher's worst wake-up lateness and worst write time over the point, ms.
    pub_late_ms: f64,
    pub_write_ms: f64,
    /// Players of the server under test cut back to a keyframe because they fell behind
    /// (`origin_slow_player_skips_total`), over the point.
    skips: Option<u64>,
}

async fn run_point(
    mode: Mode,
    n: usize,
    rep: usize,
    a: &Args,
    clip: &Arc<Clip>,
) -> Result<Measured> {
    let mut s = Setup::start(mode, a, clip, &[]).await?;
    let pid = s.sut.pid();
    let url = a.proto.url(&s.sut, PATH)?;
    let mut players = Players::with_capacity(n);
    // One player first, so the relay is open (and its GOP cached) before RSS is read:
    // KiB/pl then counts players only, in both modes.
    players.spawn(a.proto, &url, 1, a.read_buf);
    players.wait_first_pictures(Duration::from_secs(10)).await;
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    players
        .ramp(a.proto, &url, n, a.join_rate, a.read_buf)
        .await;
    players.wait_first_pictures(Duration::from_secs(20)).await;
    sleep(Duration::from_secs(2)).await;
    let rss1 = status_kib(pid, "VmRSS").unwrap_or(0);
    let owner_pid = s.owner.as_ref().map(ServerProc::pid);
    let owner_cpu0 = owner_pid.and_then(cpu_seconds);
    let window = measure(pid, &players, a.window).await;
    let owner_cpu_s = match (owner_cpu0, owner_pid.and_then(cpu_seconds)) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let owner_players = match &s.owner {
        Some(o) => stream_state(o).await.map(|(p, _)| p),
        None => None,
    };
    let hwm = status_kib(pid, "VmHWM").unwrap_or(0);
    if !s.sut.alive() || s.owner.as_mut().is_some_and(|o| !o.alive()) {
        bail!("an origin died during the run:\n{}", s.sut.log_tail());
    }
    let skips = metric(&s.sut, "origin_slow_player_skips_total").await;
    let pub_late_ms = s.publisher.max_wake_late_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let pub_write_ms = s.publisher.max_write_us.load(Ordering::Relaxed) as f64 / 1000.0;
    players.stop().await;
    s.stop()?;
    // Let the sockets close before the next point.
    sleep(Duration::from_millis(500)).await;
    Ok(Measured {
        mode,
        rep,
        point: Point {
            label: format!("{} #{}", mode.name(), rep + 1),
            n,
            players: players.summary(),
            window,
            rss0_kib: rss0,
            rss1_kib: rss1,
            hwm_kib: hwm,
        },
        owner_cpu_s,
        owner_players,
        pub_late_ms,
        pub_write_ms,
        skips,
    })
}

/// One player joins `url` and plays until its first picture (or `limit`); returns what
/// it saw.
async fn one_join(proto: Proto, url: &str, read_buf: usize, limit: Duration) -> Summary {
    let mut p = Players::with_capacity(1);
    p.spawn(proto, url, 1, read_buf);
    p.wait_first_pictures(limit).await;
    p.stop().await;
    p.summary()
}

/// A join on the relaying origin with no relay open; counted as a failure unless the
/// owner shows the relay (one player) once the player has its picture.
async fn cold_join(s: &Setup, a: &Args, url: &str, limit: Duration) -> Summary {
    let mut p = Players::with_capacity(1);
    p.spawn(a.proto, url, 1, a.read_buf);
    p.wait_first_pictures(limit).await;
    let relayed = stream_state(s.owner()).await.is_some_and(|(n, _)| n == 1);
    p.stop().await;
    let mut summary = p.summary();
    if !relayed {
        eprintln!("[relay] a cold join did not show one player (the relay) on the owner");
        summary.ttfp.clear();
    }
    summary
}

/// Time-to-first-picture samples of one case.
#[derive(Default)]
struct TtfpCase {
    name: String,
    samples: Vec<f64>,
    failures: usize,
    /// Joins for which the relay did not close in time before (cold cases).
    not_cold: usize,
}

impl TtfpCase {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    fn add(&mut self, s: Summary) {
        match s.ttfp.first() {
            Some(&t) => self.samples.push(t),
            None => self.failures += 1,
        }
    }

    fn line(&self) -> String {
        let v = sorted(self.samples.iter().copied());
        format!(
            "{:<44} {:>4} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            self.name,
            v.len(),
            self.failures,
            fmt_opt(v.first().copied(), 1),
            fmt_opt(percentile(&v, 50.0), 1),
            fmt_opt(percentile(&v, 90.0), 1),
            fmt_opt(percentile(&v, 99.0), 1),
            fmt_opt(v.last().copied(), 1),
            if self.not_cold > 0 {
                format!("({} joins found the relay still open)", self.not_cold)
            } else {
                String::new()
            }
        )
    }
}

async fn run_ttfp(a: &Args, clip: &Arc<Clip>) -> Result<Vec<TtfpCase>> {
    let k = a.ttfp_samples;
    let relay_args = [
        "--relay-linger".to_string(),
        format!("{}ms", a.linger_ms),
        "--discovery-cache".to_string(),
        format!("{}ms", a.discovery_cache_ms),
    ];
    let s = Setup::start(Mode::Relay, a, clip, &relay_args).await?;
    let relay_url = a.proto.url(&s.sut, PATH)?;
    let owner_url = a.proto.url(s.owner(), PATH)?;
    let limit = Duration::from_secs(10);
    let close_limit = Duration::from_millis(a.linger_ms) + Duration::from_secs(10);
    let mut cases = Vec::new();

    // Cold, the owner still in the relaying origin's discovery cache: join as soon as the
    // previous relay has closed.
    let mut c = TtfpCase::new("cold relay (owner cached)");
    for _ in 0..k {
        if !wait_relay_closed(&s, close_limit).await {
            c.not_cold += 1;
        }
        c.add(cold_join(&s, a, &relay_url, limit).await);
    }
    cases.push(c);

    // Cold, and the discovery cache expired: the join asks the owner first.
    let mut c = TtfpCase::new("cold relay (owner not cached: asks the owner)");
    let cache = Duration::from_millis(a.discovery_cache_ms + 100);
    for _ in 0..k {
        let t = Instant::now();
        if !wait_relay_closed(&s, close_limit).await {
            c.not_cold += 1;
        }
        // The previous join looked the owner up right at its start.
        sleep(cache.saturating_sub(t.elapsed())).await;
        let joined = Instant::now();
        c.add(cold_join(&s, a, &relay_url, limit).await);
        // Wait out the cache from this join's lookup before the next one.
        sleep(cache.saturating_sub(joined.elapsed())).await;
    }
    cases.push(c);

    // Warm: one player holds the relay; new players join one at a time.
    let mut holder = Players::with_capacity(1);
    holder.spawn(a.proto, &relay_url, 1, a.read_buf);
    holder.wait_first_pictures(limit).await;
    let mut c = TtfpCase::new("warm relay (one player holds it)");
    for _ in 0..k {
        c.add(one_join(a.proto, &relay_url, a.read_buf, limit).await);
    }
    cases.push(c);
    holder.stop().await;

    // The owner, for comparison.
    let mut c = TtfpCase::new("owner (local stream)");
    for _ in 0..k {
        c.add(one_join(a.proto, &owner_url, a.read_buf, limit).await);
    }
    cases.push(c);
    s.stop()?;
    Ok(cases)
}

fn print_fanout(rows: &[Measured], a: &Args) {
    println!();
    println!(
        "## {} fan-out, local vs relay: one ~2 Mbit/s stream to N players on the server under test",
        a.proto.name()
    );
    println!(
        "(local: players on the owner; relay: players on a relaying origin, publisher and owner on the client core)"
    );
    println!();
    println!(
        "{} {:>9} {:>9} {:>8} {:>8} {:>6}",
        Point::header(),
        "owner_cpu",
        "owner_pl",
        "publate",
        "pubwrite",
        "skips"
    );
    for r in rows {
        println!(
            "{} {:>9} {:>9} {:>8.0} {:>8.0} {:>6}",
            r.point.line(),
            fmt_opt(r.owner_cpu_s, 2),
            r.owner_players
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            r.pub_late_ms,
            r.pub_write_ms,
            r.skips.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    println!();
    println!("{}", Point::legend());
    println!(
        "owner_cpu = the owner's utime+stime in the window (relay mode; it serves one player, the relay); owner_pl = players of the stream on the owner;"
    );
    println!(
        "publate / pubwrite = the publisher thread's worst wake-up lateness (not scheduled) / worst single write (the owner did not read), ms, over the point;"
    );
    println!(
        "skips = players of the server under test that fell behind and were cut back to the next keyframe (origin_slow_player_skips_total)."
    );
    println!();
    println!("## Ratio relay / local (same N; target cpu/Gbit <= 1.1)");
    println!();
    println!(
        "{:<6} {:>4} {:>14} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "N",
        "rep",
        "local cpu/Gbit",
        "relay cpu/Gbit",
        "cpu/Gbit",
        "KiB/pl",
        "ttfp p50",
        "ttfp p99"
    );
    let mut ns: Vec<usize> = rows.iter().map(|r| r.point.n).collect();
    ns.dedup();
    for n in ns {
        let of = |m: Mode| -> Vec<&Measured> {
            rows.iter()
                .filter(|r| r.point.n == n && r.mode == m)
                .collect()
        };
        let (local, relay) = (of(Mode::Local), of(Mode::Relay));
        for (l, r) in local.iter().zip(&relay) {
            let rep = r.rep + 1;
            let (l, r) = (&l.point, &r.point);
            println!(
                "{:<6} {:>4} {:>14} {:>14} {:>10} {:>10} {:>10} {:>10}",
                n,
                rep,
                fmt_opt(l.cpu_per_gbit(), 3),
                fmt_opt(r.cpu_per_gbit(), 3),
                fmt_opt(ratio(r.cpu_per_gbit(), l.cpu_per_gbit()), 2),
                fmt_opt(ratio(Some(r.kib_per_player()), Some(l.kib_per_player())), 2),
                fmt_opt(ratio(r.ttfp_p(50.0), l.ttfp_p(50.0)), 2),
                fmt_opt(ratio(r.ttfp_p(99.0), l.ttfp_p(99.0)), 2),
            );
        }
        let total = |v: &[&Measured]| -> Option<f64> {
            let cpu: f64 = v.iter().map(|r| r.point.window.server_cpu_s).sum();
            let gbit: f64 = v.iter().map(|r| r.point.window.gbit).sum();
            (gbit > 0.0).then(|| cpu / gbit)
        };
        if local.len() > 1 || relay.len() > 1 {
            println!(
                "{:<6} {:>4} {:>14} {:>14} {:>10}",
                n,
                "all",
                fmt_opt(total(&local), 3),
                fmt_opt(total(&relay), 3),
                fmt_opt(ratio(total(&relay), total(&local)), 2),
            );
        }
    }
    println!("(all = total CPU-seconds / total Gbit over the repetitions)");
}

fn print_ttfp(cases: &[TtfpCase], a: &Args) {
    println!();
    println!(
        "## {} time to first picture, one player joining at a time ({} samples each; ms)",
        a.proto.name(),
        a.ttfp_samples
    );
    println!(
        "(relaying origin: --relay-linger {}ms --discovery-cache {}ms; cold = no relay open: the owner shows 0 players for the stream; target cold p99 < 300 ms)",
        a.linger_ms, a.discovery_cache_ms
    );
    println!();
    println!(
        "{:<44} {:>4} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "case", "ok", "fail", "min", "p50", "p90", "p99", "max"
    );
    for c in cases {
        println!("{}", c.line());
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> Result<()> {
    let a = Args::parse();
    a.cores.pin_client();
    let flv = a.clip.path()?;
    let clip = Arc::new(Clip::load(&flv).context("loading the test clip")?);
    println!(
        "clip: {} ({} tags, {:.1} s, {:.2} Mbit/s); {} players {:?} x{}; window {} s; join rate {}/s; load average {}",
        flv.display(),
        clip.tags.len(),
        f64::from(clip.duration_ms) / 1000.0,
        clip.mbit_per_s(),
        a.proto.name(),
        a.players,
        a.repeat,
        a.window,
        a.join_rate,
        load_average()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rows = Vec::new();
        for &n in &a.players {
            for rep in 0..a.repeat {
                for mode in [Mode::Local, Mode::Relay] {
                    eprintln!(
                        "[relay] {} N={n} #{} (load {}) ...",
                        mode.name(),
                        rep + 1,
                        load_average()
                    );
                    match run_point(mode, n, rep, &a, &clip).await {
                        Ok(r) => {
                            eprintln!("[relay] {}", r.point.progress());
                            rows.push(r);
                        }
                        Err(e) => eprintln!("[relay] {} N={n} failed: {e:#}", mode.name()),
                    }
                }
            }
        }
        if !rows.is_empty() {
            print_fanout(&rows, &a);
        }
        if a.ttfp_samples > 0 {
            eprintln!(
                "[relay] time to first picture (load {}) ...",
                load_average()
            );
            match run_ttfp(&a, &clip).await {
                Ok(cases) => print_ttfp(&cases, &a),
                Err(e) => println!("time to first picture failed: {e:#}"),
            }
        }
        println!();
        println!("load average at the end: {}", load_average());
        Ok(())
    })
}
