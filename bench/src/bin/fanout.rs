//! Fan-out benchmark: one ~2 Mbit/s publisher fanned out to N players over loopback,
//! against our origin and nginx-rtmp, server pinned to one core and the players (tokio
//! tasks in this process) on the other. Prints tables; asserts nothing about speed.
//! `--proto flv` plays over HTTP-FLV instead (our origin only; nginx-rtmp has no HTTP-FLV).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use origin_bench::flv_player::run_flv_player;
use origin_bench::player::{BYTES_READ, PlayerStats, Stage, run_player};
use origin_bench::publisher::Publisher;
use origin_bench::server::{ServerProc, start_nginx, start_origin};
use origin_bench::{
    Clip, cpu_seconds, fmt_opt, origin_bin, percentile, pin_self, status_kib, test_flv,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

#[derive(Parser, Debug, Clone)]
#[command(
    about = "RTMP / HTTP-FLV fan-out: our origin vs nginx-rtmp (CPU per Gbit, RSS, stalls, time to first picture)"
)]
struct Args {
    /// Player protocol. `flv` = HTTP-FLV `GET /live/<stream>.flv` (our origin only; nginx is skipped).
    #[arg(long, env = "FANOUT_PROTO", value_enum, default_value_t = Proto::Rtmp)]
    proto: Proto,
    /// Player counts to measure.
    #[arg(
        long,
        env = "FANOUT_PLAYERS",
        value_delimiter = ',',
        default_value = "1000,2000,5000"
    )]
    players: Vec<usize>,
    /// Servers: `ours` (origin defaults: 200 ms merged writes), `ours:<merge>` (e.g. `ours:0ms` = --merge-writes 0, write-through), `nginx`.
    #[arg(
        long,
        env = "FANOUT_SERVERS",
        value_delimiter = ',',
        default_value = "ours:0ms,ours,nginx"
    )]
    servers: Vec<String>,
    /// Measurement window per point, seconds.
    #[arg(long, env = "FANOUT_WINDOW", default_value_t = 12)]
    window: u64,
    /// Players joining per second during the ramp.
    #[arg(long, env = "FANOUT_JOIN_RATE", default_value_t = 500)]
    join_rate: usize,
    /// Simultaneous joins of the burst check (0 = skip).
    #[arg(long, env = "FANOUT_BURST", default_value_t = 3000)]
    burst: usize,
    /// Idle players for the memory-per-idle-player check (0 = skip).
    #[arg(long, env = "FANOUT_IDLE", default_value_t = 2000)]
    idle: usize,
    /// Core for the server under test.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Core for this process (players and publisher).
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Do not pin anything (for machines with one core).
    #[arg(long)]
    no_pin: bool,
    /// Test clip length, seconds (20–30).
    #[arg(long, default_value_t = 24)]
    clip_seconds: u32,
    /// Use this FLV instead of generating the test clip.
    #[arg(long)]
    flv: Option<PathBuf>,
    /// Read buffer per player, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    read_buf: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Rtmp,
    Flv,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Rtmp => "RTMP",
            Proto::Flv => "HTTP-FLV",
        }
    }

    /// The URL players of this protocol use for `path` (`live/bench`) on `server`.
    fn url(self, server: &ServerProc, path: &str) -> Result<String> {
        match self {
            Proto::Rtmp => Ok(server.rtmp_url(path)),
            Proto::Flv => server
                .flv_url(path)
                .with_context(|| format!("{} serves no HTTP-FLV", server.name)),
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Ours { merge: Option<String> },
    Nginx,
}

impl Kind {
    fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "ours" | "origin" => Ok(Kind::Ours { merge: None }),
            "nginx" | "nginx-rtmp" => Ok(Kind::Nginx),
            s if s.starts_with("ours:") => Ok(Kind::Ours {
                merge: Some(s["ours:".len()..].to_string()),
            }),
            other => bail!("unknown server `{other}` (ours, ours:<merge-writes>, nginx)"),
        }
    }

    fn label(&self) -> String {
        match self {
            Kind::Ours { merge: None } => "ours default (200ms)".into(),
            Kind::Ours { merge: Some(m) } => format!("ours merge={m}"),
            Kind::Nginx => "nginx-rtmp".into(),
        }
    }

    fn start(&self, a: &Args, extra: &[&str]) -> Result<ServerProc> {
        let cpu = (!a.no_pin).then_some(a.server_cpu);
        match self {
            Kind::Ours { merge } => {
                let mut x: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
                if let Some(m) = merge {
                    x.extend(["--merge-writes".into(), m.clone()]);
                }
                start_origin(&origin_bin()?, cpu, Some(1), &x)
            }
            Kind::Nginx => start_nginx(cpu),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Row {
    server: String,
    n: usize,
    ok: usize,
    failed: usize,
    window_s: f64,
    gbit: f64,
    cpu_s: f64,
    bench_cpu_pct: f64,
    rss0_kib: u64,
    rss1_kib: u64,
    hwm_kib: u64,
    stalled_players: usize,
    stall_events: u64,
    max_gap_ms: f64,
    ttfp_p50: Option<f64>,
    ttfp_p99: Option<f64>,
    fps: f64,
    /// 1/5/15-minute load average of the machine right after the window.
    load: String,
}

impl Row {
    fn cpu_per_gbit(&self) -> Option<f64> {
        (self.gbit > 0.0).then(|| self.cpu_s / self.gbit)
    }
    fn kib_per_player(&self) -> f64 {
        (self.rss1_kib as f64 - self.rss0_kib as f64) / self.n.max(1) as f64
    }
}

fn spawn_players(
    proto: Proto,
    url: &str,
    n: usize,
    read_buf: usize,
    stats: &mut Vec<Arc<PlayerStats>>,
    handles: &mut Vec<JoinHandle<()>>,
) {
    for _ in 0..n {
        let st = Arc::new(PlayerStats::default());
        stats.push(st.clone());
        let url = url.to_string();
        handles.push(tokio::spawn(async move {
            match proto {
                Proto::Rtmp => run_player(&url, st, read_buf).await,
                Proto::Flv => run_flv_player(&url, st, read_buf).await,
            }
        }));
    }
}

/// Waits until every player has its first picture or failed (or `limit` passes).
async fn wait_first_pictures(stats: &[Arc<PlayerStats>], limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if stats
            .iter()
            .all(|s| s.ttfp_us.load(Ordering::Relaxed) > 0 || s.failed().is_some())
        {
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

async fn start_with_publisher(
    kind: &Kind,
    a: &Args,
    clip: &Arc<Clip>,
) -> Result<(ServerProc, Publisher)> {
    let server = kind.start(a, &[])?;
    let publisher = Publisher::start(&server.rtmp_url("live/bench"), clip.clone());
    if !publisher.wait_started(Duration::from_secs(10)) {
        let e = publisher.stop().err().unwrap_or_default();
        bail!(
            "{}: publish failed: {e}\n{}",
            kind.label(),
            server.log_tail()
        );
    }
    // Let a whole GOP (2 s) go by so the cache holds a keyframe.
    sleep(Duration::from_millis(2500)).await;
    Ok((server, publisher))
}

async fn run_point(kind: &Kind, n: usize, a: &Args, clip: &Arc<Clip>) -> Result<Row> {
    let (mut server, publisher) = start_with_publisher(kind, a, clip).await?;
    let pid = server.pid();
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    let url = a.proto.url(&server, "live/bench")?;
    let mut stats = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    // Ramp: join_rate players per second in 10 waves a second.
    let per_wave = (a.join_rate / 10).max(1);
    while stats.len() < n {
        let k = per_wave.min(n - stats.len());
        spawn_players(a.proto, &url, k, a.read_buf, &mut stats, &mut handles);
        sleep(Duration::from_millis(100)).await;
    }
    wait_first_pictures(&stats, Duration::from_secs(15)).await;
    sleep(Duration::from_secs(2)).await;
    let rss1 = status_kib(pid, "VmRSS").unwrap_or(0);
    let me = std::process::id();
    let (c0, b0, m0, v0) = (
        cpu_seconds(pid),
        BYTES_READ.load(Ordering::Relaxed),
        cpu_seconds(me),
        video_frames(&stats),
    );
    let t0 = Instant::now();
    sleep(Duration::from_secs(a.window)).await;
    let (c1, b1, m1, v1) = (
        cpu_seconds(pid),
        BYTES_READ.load(Ordering::Relaxed),
        cpu_seconds(me),
        video_frames(&stats),
    );
    let secs = t0.elapsed().as_secs_f64();
    let hwm = status_kib(pid, "VmHWM").unwrap_or(0);
    if !server.alive() {
        bail!(
            "{} died during the run:\n{}",
            kind.label(),
            server.log_tail()
        );
    }
    for h in &handles {
        h.abort();
    }
    let pub_failed = publisher.failed();
    let _ = publisher.stop();
    drop(server);
    for h in handles {
        let _ = h.await;
    }
    if pub_failed {
        eprintln!(
            "warning: {} N={n}: the publisher stopped early",
            kind.label()
        );
    }
    let failed: Vec<_> = stats
        .iter()
        .filter(|s| s.failed().is_some() && s.failed() != Some(Stage::Running))
        .collect();
    let ok = stats
        .iter()
        .filter(|s| s.ttfp_us.load(Ordering::Relaxed) > 0)
        .count();
    let ttfp = sorted(stats.iter().filter_map(|s| s.ttfp_ms()));
    let row = Row {
        server: kind.label(),
        n,
        ok,
        failed: failed.len(),
        window_s: secs,
        gbit: (b1 - b0) as f64 * 8.0 / 1e9,
        cpu_s: match (c0, c1) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        },
        bench_cpu_pct: match (m0, m1) {
            (Some(a), Some(b)) => (b - a) / secs * 100.0,
            _ => f64::NAN,
        },
        rss0_kib: rss0,
        rss1_kib: rss1,
        hwm_kib: hwm,
        stalled_players: stats
            .iter()
            .filter(|s| s.stalls.load(Ordering::Relaxed) > 0)
            .count(),
        stall_events: stats
            .iter()
            .map(|s| u64::from(s.stalls.load(Ordering::Relaxed)))
            .sum(),
        max_gap_ms: stats
            .iter()
            .map(|s| s.max_gap_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0) as f64
            / 1000.0,
        ttfp_p50: percentile(&ttfp, 50.0),
        ttfp_p99: percentile(&ttfp, 99.0),
        fps: (v1 - v0) as f64 / secs / ok.max(1) as f64,
        load: load_average(),
    };
    // Let the sockets close before the next point.
    sleep(Duration::from_millis(500)).await;
    Ok(row)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn video_frames(stats: &[Arc<PlayerStats>]) -> u64 {
    stats
        .iter()
        .map(|s| s.video_frames.load(Ordering::Relaxed))
        .sum()
}

#[derive(Debug)]
struct BurstRow {
    server: String,
    n: usize,
    connected: usize,
    pictures: usize,
    failed_by_stage: Vec<(Stage, usize)>,
    connect_p50: Option<f64>,
    connect_p99: Option<f64>,
    connect_max: Option<f64>,
    ttfp_p50: Option<f64>,
    ttfp_p99: Option<f64>,
    ttfp_max: Option<f64>,
}

async fn run_burst(kind: &Kind, n: usize, a: &Args, clip: &Arc<Clip>) -> Result<BurstRow> {
    let (server, publisher) = start_with_publisher(kind, a, clip).await?;
    let url = a.proto.url(&server, "live/bench")?;
    let mut stats = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    spawn_players(a.proto, &url, n, 16 * 1024, &mut stats, &mut handles);
    wait_first_pictures(&stats, Duration::from_secs(40)).await;
    for h in &handles {
        h.abort();
    }
    let _ = publisher.stop();
    drop(server);
    for h in handles {
        let _ = h.await;
    }
    let connect = sorted(
        stats
            .iter()
            .map(|s| s.connect_us.load(Ordering::Relaxed))
            .filter(|&u| u > 0)
            .map(|u| u as f64 / 1000.0),
    );
    let ttfp = sorted(stats.iter().filter_map(|s| s.ttfp_ms()));
    let mut failed_by_stage = Vec::new();
    for st in [
        Stage::Connect,
        Stage::Handshake,
        Stage::Setup,
        Stage::Play,
        Stage::Stream,
        Stage::Closed,
    ] {
        let c = stats
            .iter()
            .filter(|s| s.failed() == Some(st) && s.ttfp_us.load(Ordering::Relaxed) == 0)
            .count();
        if c > 0 {
            failed_by_stage.push((st, c));
        }
    }
    sleep(Duration::from_millis(500)).await;
    Ok(BurstRow {
        server: kind.label(),
        n,
        connected: connect.len(),
        pictures: ttfp.len(),
        failed_by_stage,
        connect_p50: percentile(&connect, 50.0),
        connect_p99: percentile(&connect, 99.0),
        connect_max: connect.last().copied(),
        ttfp_p50: percentile(&ttfp, 50.0),
        ttfp_p99: percentile(&ttfp, 99.0),
        ttfp_max: ttfp.last().copied(),
    })
}

/// Memory per idle player: players waiting on a stream that has no publisher.
async fn run_idle(kind: &Kind, n: usize, a: &Args) -> Result<(String, u64, u64, usize)> {
    let server = kind.start(a, &["--wait-for-publisher", "10m"])?;
    let pid = server.pid();
    sleep(Duration::from_millis(300)).await;
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    let url = a.proto.url(&server, "live/idle")?;
    let mut stats = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let per_wave = (a.join_rate / 10).max(1);
    while stats.len() < n {
        let k = per_wave.min(n - stats.len());
        spawn_players(a.proto, &url, k, 4096, &mut stats, &mut handles);
        sleep(Duration::from_millis(100)).await;
    }
    sleep(Duration::from_secs(3)).await;
    let rss1 = status_kib(pid, "VmRSS").unwrap_or(0);
    let alive = stats
        .iter()
        .filter(|s| s.connect_us.load(Ordering::Relaxed) > 0 && s.failed().is_none())
        .count();
    for h in &handles {
        h.abort();
    }
    drop(server);
    for h in handles {
        let _ = h.await;
    }
    sleep(Duration::from_millis(500)).await;
    Ok((kind.label(), rss0, rss1, alive))
}

fn print_rows(rows: &[Row], proto: Proto) {
    println!();
    println!(
        "## {} fan-out: one ~2 Mbit/s stream to N players (server on one core, players on the other)",
        proto.name()
    );
    println!();
    println!(
        "{:<22} {:>5} {:>5} {:>4} {:>7} {:>6} {:>6} {:>8} {:>6} {:>7} {:>7} {:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>5} {:>6}",
        "server",
        "N",
        "ok",
        "fail",
        "Gbit",
        "Gb/s",
        "cpu_s",
        "cpu/Gbit",
        "cpu%",
        "rss0MiB",
        "rssMiB",
        "hwm MiB",
        "KiB/pl",
        "stalled",
        "maxgapms",
        "ttfp50",
        "ttfp99",
        "fps",
        "bench%"
    );
    for r in rows {
        println!(
            "{:<22} {:>5} {:>5} {:>4} {:>7.2} {:>6.2} {:>6.2} {:>8} {:>6.1} {:>7.1} {:>7.1} {:>8.1} {:>7.1} {:>9} {:>8.0} {:>8} {:>8} {:>5.1} {:>6.0}",
            r.server,
            r.n,
            r.ok,
            r.failed,
            r.gbit,
            r.gbit / r.window_s,
            r.cpu_s,
            fmt_opt(r.cpu_per_gbit(), 3),
            r.cpu_s / r.window_s * 100.0,
            r.rss0_kib as f64 / 1024.0,
            r.rss1_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
            r.kib_per_player(),
            format!("{}/{}", r.stalled_players, r.stall_events),
            r.max_gap_ms,
            fmt_opt(r.ttfp_p50, 0),
            fmt_opt(r.ttfp_p99, 0),
            r.fps,
            r.bench_cpu_pct,
        );
    }
    println!();
    println!("load average (1/5/15 min) after each point, the machine being shared:");
    for r in rows {
        println!("  {:<22} {:>5}  {}", r.server, r.n, r.load);
    }
    println!();
    println!(
        "Gbit = bytes read by all players in the window (incl. RTMP chunk headers / HTTP chunk framing and FLV tag headers); cpu_s = server utime+stime in the window;"
    );
    println!(
        "cpu% = server CPU of its core; KiB/pl = (RSS with players - RSS before) / N; stalled = players/events with"
    );
    println!(
        "a gap > 1 s between video frames after the first picture; maxgapms = largest such gap; ttfp = connect ->"
    );
    println!(
        "first complete non-header video keyframe, ms; fps = video frames/s per player in the window; bench% = CPU of the player process (its core; ~100 = saturated)."
    );
}

fn print_ratios(rows: &[Row]) {
    let nginx: Vec<&Row> = rows.iter().filter(|r| r.server == "nginx-rtmp").collect();
    if nginx.is_empty() {
        return;
    }
    println!();
    println!(
        "## Ratio vs nginx-rtmp (same N; < 1 = better than nginx-rtmp; DESIGN §7 targets cpu/Gbit: merge=0ms <= 0.7, default <= 0.25)"
    );
    println!();
    println!(
        "{:<22} {:>5} {:>12} {:>12} {:>12} {:>12} {:>8} {:>8}",
        "server", "N", "cpu/Gbit", "ttfp p50", "ttfp p99", "KiB/player", "bench%", "nginx b%"
    );
    for r in rows.iter().filter(|r| r.server != "nginx-rtmp") {
        let Some(n) = nginx.iter().find(|x| x.n == r.n) else {
            continue;
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        println!(
            "{:<22} {:>5} {:>12} {:>12} {:>12} {:>12} {:>8.0} {:>8.0}",
            r.server,
            r.n,
            fmt_opt(ratio(r.cpu_per_gbit(), n.cpu_per_gbit()), 2),
            fmt_opt(ratio(r.ttfp_p50, n.ttfp_p50), 2),
            fmt_opt(ratio(r.ttfp_p99, n.ttfp_p99), 2),
            fmt_opt(ratio(Some(r.kib_per_player()), Some(n.kib_per_player())), 2),
            r.bench_cpu_pct,
            n.bench_cpu_pct,
        );
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut kinds: Vec<Kind> = a
        .servers
        .iter()
        .map(|s| Kind::parse(s))
        .collect::<Result<_>>()?;
    if a.proto == Proto::Flv {
        if kinds.iter().any(|k| matches!(k, Kind::Nginx)) {
            eprintln!("note: --proto flv skips nginx-rtmp (it has no HTTP-FLV)");
        }
        kinds.retain(|k| !matches!(k, Kind::Nginx));
        if kinds.is_empty() {
            bail!("--proto flv needs at least one `ours` server");
        }
    }
    if !a.no_pin {
        pin_self(a.client_cpu);
    }
    let flv = match &a.flv {
        Some(p) => p.clone(),
        None => test_flv(a.clip_seconds)?,
    };
    let clip = Arc::new(Clip::load(&flv).context("loading the test clip")?);
    println!(
        "clip: {} ({} tags, {:.1} s, {:.2} Mbit/s); {} players {:?}; servers {:?}; window {} s; join rate {}/s",
        flv.display(),
        clip.tags.len(),
        f64::from(clip.duration_ms) / 1000.0,
        clip.mbit_per_s(),
        a.proto.name(),
        a.players,
        kinds.iter().map(Kind::label).collect::<Vec<_>>(),
        a.window,
        a.join_rate
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rows = Vec::new();
        for &n in &a.players {
            for k in &kinds {
                eprintln!("[fanout] {} N={n} ...", k.label());
                match run_point(k, n, &a, &clip).await {
                    Ok(r) => {
                        eprintln!(
                            "[fanout] {} N={n}: {:.2} Gbit, cpu {:.2} s -> {} s/Gbit, ttfp p50 {} ms, stalled {}, bench cpu {:.0}%",
                            r.server,
                            r.gbit,
                            r.cpu_s,
                            fmt_opt(r.cpu_per_gbit(), 3),
                            fmt_opt(r.ttfp_p50, 0),
                            r.stalled_players,
                            r.bench_cpu_pct
                        );
                        rows.push(r);
                    }
                    Err(e) => eprintln!("[fanout] {} N={n} failed: {e:#}", k.label()),
                }
            }
        }
        print_rows(&rows, a.proto);
        print_ratios(&rows);

        if a.idle > 0 {
            println!();
            println!("## Memory per idle player ({} players waiting on an unpublished stream)", a.idle);
            println!();
            println!("{:<22} {:>8} {:>10} {:>10} {:>12}", "server", "players", "rss0 MiB", "rss MiB", "KiB/player");
            for k in &kinds {
                match run_idle(k, a.idle, &a).await {
                    Ok((label, r0, r1, alive)) => println!(
                        "{:<22} {:>8} {:>10.1} {:>10.1} {:>12.1}",
                        label,
                        alive,
                        r0 as f64 / 1024.0,
                        r1 as f64 / 1024.0,
                        (r1 as f64 - r0 as f64) / alive.max(1) as f64
                    ),
                    Err(e) => println!("{:<22} failed: {e:#}", k.label()),
                }
            }
        }

        if a.burst > 0 {
            println!();
            println!("## Burst join: {} players connect at once (a failure is any player without a picture)", a.burst);
            println!();
            println!(
                "{:<22} {:>6} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  failures",
                "server", "N", "connected", "picture", "failed", "conn p50", "conn p99", "conn max", "ttfp p50", "ttfp p99", "ttfp max"
            );
            for k in &kinds {
                eprintln!("[fanout] burst {} x{} ...", k.label(), a.burst);
                match run_burst(k, a.burst, &a, &clip).await {
                    Ok(b) => println!(
                        "{:<22} {:>6} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
                        b.server,
                        b.n,
                        b.connected,
                        b.pictures,
                        b.n - b.pictures,
                        fmt_opt(b.connect_p50, 0),
                        fmt_opt(b.connect_p99, 0),
                        fmt_opt(b.connect_max, 0),
                        fmt_opt(b.ttfp_p50, 0),
                        fmt_opt(b.ttfp_p99, 0),
                        fmt_opt(b.ttfp_max, 0),
                        if b.failed_by_stage.is_empty() {
                            "none".to_string()
                        } else {
                            b.failed_by_stage.iter().map(|(s, c)| format!("{s:?}={c}")).collect::<Vec<_>>().join(" ")
                        }
                    ),
                    Err(e) => println!("{:<22} failed: {e:#}", k.label()),
                }
            }
            println!("(times in ms; conn = TCP connect)");
        }
        Ok(())
    })
}
