//! Fan-out benchmark: one ~2 Mbit/s publisher fanned out to N players over loopback,
//! against our origin and nginx-rtmp, server pinned to one core and the players (tokio
//! tasks in this process) on the other. Prints tables; asserts nothing about speed.
//! `--proto flv` plays over HTTP-FLV instead (our origin only; nginx-rtmp has no HTTP-FLV).

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin_bench::cli::{ClipArgs, Cores};
use origin_bench::load::{Players, Point, Proto, measure, ratio, sorted};
use origin_bench::player::Stage;
use origin_bench::publisher::Publisher;
use origin_bench::server::{ServerProc, start_nginx, start_origin};
use origin_bench::{Clip, fmt_opt, origin_bin, percentile, status_kib};
use tokio::time::sleep;

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
    /// Read buffer per player, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    read_buf: usize,
    #[command(flatten)]
    cores: Cores,
    #[command(flatten)]
    clip: ClipArgs,
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
            Kind::Ours { merge: None } => "ours".into(),
            Kind::Ours { merge: Some(m) } => format!("ours merge={m}"),
            Kind::Nginx => "nginx-rtmp".into(),
        }
    }

    fn start(&self, a: &Args, extra: &[&str]) -> Result<ServerProc> {
        let cpu = a.cores.server();
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

async fn start_with_publisher(
    kind: &Kind,
    a: &Args,
    clip: &Arc<Clip>,
) -> Result<(ServerProc, Publisher)> {
    let server = kind.start(a, &[])?;
    let publisher =
        match Publisher::start_primed(&server.rtmp_url("live/bench"), clip.clone()).await {
            Ok(p) => p,
            Err(e) => bail!(
                "{}: publish failed: {e}\n{}",
                kind.label(),
                server.log_tail()
            ),
        };
    Ok((server, publisher))
}

async fn run_point(kind: &Kind, n: usize, a: &Args, clip: &Arc<Clip>) -> Result<Point> {
    let (mut server, publisher) = start_with_publisher(kind, a, clip).await?;
    let pid = server.pid();
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    let url = a.proto.url(&server, "live/bench")?;
    let mut players = Players::with_capacity(n);
    players
        .ramp(a.proto, &url, n, a.join_rate, a.read_buf)
        .await;
    players.wait_first_pictures(Duration::from_secs(15)).await;
    sleep(Duration::from_secs(2)).await;
    let rss1 = status_kib(pid, "VmRSS").unwrap_or(0);
    let window = measure(pid, &players, a.window).await;
    let hwm = status_kib(pid, "VmHWM").unwrap_or(0);
    if !server.alive() {
        bail!(
            "{} died during the run:\n{}",
            kind.label(),
            server.log_tail()
        );
    }
    let pub_failed = publisher.failed();
    let _ = publisher.stop();
    drop(server);
    players.stop().await;
    if pub_failed {
        eprintln!(
            "warning: {} N={n}: the publisher stopped early",
            kind.label()
        );
    }
    let row = Point {
        label: kind.label(),
        n,
        players: players.summary(),
        window,
        rss0_kib: rss0,
        rss1_kib: rss1,
        hwm_kib: hwm,
    };
    // Let the sockets close before the next point.
    sleep(Duration::from_millis(500)).await;
    Ok(row)
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
    let mut players = Players::with_capacity(n);
    players.spawn(a.proto, &url, n, 16 * 1024);
    players.wait_first_pictures(Duration::from_secs(40)).await;
    players.stop().await;
    let _ = publisher.stop();
    drop(server);
    let stats = &players.stats;
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
    let mut players = Players::with_capacity(n);
    players.ramp(a.proto, &url, n, a.join_rate, 4096).await;
    sleep(Duration::from_secs(3)).await;
    let rss1 = status_kib(pid, "VmRSS").unwrap_or(0);
    let alive = players
        .stats
        .iter()
        .filter(|s| s.connect_us.load(Ordering::Relaxed) > 0 && s.failed().is_none())
        .count();
    players.stop().await;
    drop(server);
    sleep(Duration::from_millis(500)).await;
    Ok((kind.label(), rss0, rss1, alive))
}

fn print_rows(rows: &[Point], proto: Proto) {
    println!();
    println!(
        "## {} fan-out: one ~2 Mbit/s stream to N players (server on one core, players on the other)",
        proto.name()
    );
    println!();
    println!("{}", Point::header());
    for r in rows {
        println!("{}", r.line());
    }
    println!();
    println!("{}", Point::legend());
}

fn print_ratios(rows: &[Point]) {
    let nginx: Vec<&Point> = rows.iter().filter(|r| r.label == "nginx-rtmp").collect();
    if nginx.is_empty() {
        return;
    }
    println!();
    println!(
        "## Ratio vs nginx-rtmp (same N; < 1 = better than nginx-rtmp; target cpu/Gbit <= 0.5)"
    );
    println!();
    println!(
        "{:<22} {:>5} {:>12} {:>12} {:>12} {:>12}",
        "server", "N", "cpu/Gbit", "ttfp p50", "ttfp p99", "KiB/player"
    );
    for r in rows.iter().filter(|r| r.label != "nginx-rtmp") {
        let Some(n) = nginx.iter().find(|x| x.n == r.n) else {
            continue;
        };
        println!(
            "{:<22} {:>5} {:>12} {:>12} {:>12} {:>12}",
            r.label,
            r.n,
            fmt_opt(ratio(r.cpu_per_gbit(), n.cpu_per_gbit()), 2),
            fmt_opt(ratio(r.ttfp_p(50.0), n.ttfp_p(50.0)), 2),
            fmt_opt(ratio(r.ttfp_p(99.0), n.ttfp_p(99.0)), 2),
            fmt_opt(ratio(Some(r.kib_per_player()), Some(n.kib_per_player())), 2),
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
    a.cores.pin_client();
    let flv = a.clip.path()?;
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
                        eprintln!("[fanout] {}", r.progress());
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
