//! Churn benchmark (issue 10): a 3-origin cluster on loopback under a steady churn of
//! players joining and leaving (RTMP and HTTP-FLV, on any origin, following redirects),
//! HTTP-FLV hang-ups on names nobody publishes, and publishers republishing their streams.
//! Measures RSS, open fds and stream entries of every origin every few seconds, prints them
//! once a minute (short mode: every 5 s), and at the end
//! the slope of RSS and fds after the warm-up, in percent per 10 minutes. Target: flat
//! (< 1 % per 10 minutes). Prints numbers; asserts nothing.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin::client::{self, ClientError};
use origin_bench::publisher::Publisher;
use origin_bench::server::{ServerProc, start_origin_on};
use origin_bench::{Clip, free_port, origin_bin, status_kib, test_flv, wait_published};
use origin_cluster_tests::hostile::get_head;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Churn: players joining/leaving, HTTP hang-ups and republishes against a 3-origin cluster; RSS and fd slope"
)]
struct Args {
    /// Total run time in minutes.
    #[arg(long, env = "CHURN_MINUTES", default_value_t = 30.0)]
    minutes: f64,
    /// Short trial: 2 minutes, a sample every 5 s, 30 s warm-up (unless given explicitly).
    #[arg(long)]
    short: bool,
    /// Seconds between printed samples (default 60, short mode 5).
    #[arg(long)]
    sample: Option<f64>,
    /// Seconds between measurements; every measurement after the warm-up enters the slope.
    #[arg(long, default_value_t = 5.0)]
    probe: f64,
    /// Warm-up in minutes excluded from the slope (default 5, short mode 0.5).
    #[arg(long)]
    warmup: Option<f64>,
    /// Streams, published round-robin on the origins.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Concurrent player slots (half RTMP, half HTTP-FLV); each joins a random stream on a
    /// random origin, plays a few seconds, leaves and joins again.
    #[arg(long, default_value_t = 24)]
    players: usize,
    /// Shortest and longest play, seconds.
    #[arg(long, default_value_t = 2.0)]
    play_min: f64,
    #[arg(long, default_value_t = 12.0)]
    play_max: f64,
    /// HTTP-FLV hang-ups per second (GET an unpublished name, hang up while the origin waits).
    #[arg(long, default_value_t = 10.0)]
    hangups: f64,
    /// Each publisher stops and republishes after this many seconds (staggered).
    #[arg(long, default_value_t = 30.0)]
    republish_every: f64,
}

/// A small xorshift generator: the workload only needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo).max(0.0) * (self.next() % 10_000) as f64 / 10_000.0
    }
}

#[derive(Default)]
struct Counters {
    rtmp_joins: AtomicU64,
    flv_joins: AtomicU64,
    redirects: AtomicU64,
    join_errors: AtomicU64,
    hangups: AtomicU64,
    republishes: AtomicU64,
    publish_errors: AtomicU64,
    media_bytes: AtomicU64,
}

struct Node {
    proc: ServerProc,
    rtmp: u16,
    api: u16,
    flv: u16,
}

struct Sample {
    t: f64,
    rss_kib: Vec<u64>,
    fds: Vec<usize>,
    /// Open fds that are not ESTABLISHED TCP sockets (listeners, files, and anything left
    /// behind such as CLOSE_WAIT sockets): what a leak grows, without the players' churn.
    idle_fds: Vec<usize>,
    entries: Vec<usize>,
}

/// Inodes of ESTABLISHED TCP sockets on this host.
fn established_inodes() -> std::collections::HashSet<String> {
    let mut set = std::collections::HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in text.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() > 9 && c[3] == "01" {
                set.insert(c[9].to_string());
            }
        }
    }
    set
}

/// (open fds, fds that are not ESTABLISHED TCP sockets) of `pid`.
fn fd_breakdown(pid: u32, established: &std::collections::HashSet<String>) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let (mut all, mut idle) = (0, 0);
    for e in dir.flatten() {
        all += 1;
        let link = std::fs::read_link(e.path())
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let est = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|inode| established.contains(inode));
        if !est {
            idle += 1;
        }
    }
    (all, idle)
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.short {
        if args.minutes == 30.0 {
            args.minutes = 2.0;
        }
        args.sample.get_or_insert(5.0);
        args.warmup.get_or_insert(0.5);
    }
    let sample = Duration::from_secs_f64(args.sample.unwrap_or(60.0).max(1.0));
    let warmup = args.warmup.unwrap_or(5.0).max(0.0) * 60.0;
    if args.minutes * 60.0 <= warmup + 2.0 * sample.as_secs_f64() {
        bail!("--minutes must leave at least two samples after the warm-up");
    }
    let bin = origin_bin()?;
    let clip = Arc::new(Clip::load(&test_flv(24)?)?);
    // Three origins that list each other as coworkers.
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let mut nodes = Vec::new();
    for &(r, a, f) in &ports {
        let mut extra: Vec<String> = vec!["--self-api".into(), format!("127.0.0.1:{a}")];
        for &(_, pa, _) in &ports {
            extra.extend(["--coworker".to_string(), format!("127.0.0.1:{pa}")]);
        }
        let proc =
            start_origin_on(&bin, (r, a, f), None, None, &extra).context("starting an origin")?;
        nodes.push(Node {
            proc,
            rtmp: r,
            api: a,
            flv: f,
        });
    }
    println!(
        "churn: 3 origins ({}), {} streams ({:.2} Mbit/s clip), {} player slots, {:.0} hang-ups/s, republish every {:.0}s; {:.1} min, sample {:.0}s, warm-up {:.1} min",
        bin.display(),
        args.streams,
        clip.mbit_per_s(),
        args.players,
        args.hangups,
        args.republish_every,
        args.minutes,
        sample.as_secs_f64(),
        warmup / 60.0
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let probe = Duration::from_secs_f64(args.probe.clamp(1.0, sample.as_secs_f64()));
    let samples = rt.block_on(run(&args, &nodes, clip, sample, probe))?;
    report(&samples, warmup);
    for n in &mut nodes {
        if !n.proc.alive() {
            println!("an origin exited during the run:\n{}", n.proc.log_tail());
        }
    }
    Ok(())
}

async fn run(
    args: &Args,
    nodes: &[Node],
    clip: Arc<Clip>,
    sample: Duration,
    probe: Duration,
) -> Result<Vec<Sample>> {
    let c = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rtmp: Arc<Vec<u16>> = Arc::new(nodes.iter().map(|n| n.rtmp).collect());
    let flv: Arc<Vec<u16>> = Arc::new(nodes.iter().map(|n| n.flv).collect());
    let names: Arc<Vec<String>> =
        Arc::new((0..args.streams).map(|i| format!("churn{i}")).collect());

    // Publishers: stream i on origin i % 3, each on its own thread, republishing.
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node = &nodes[i % nodes.len()];
        let url = format!("rtmp://127.0.0.1:{}/live/{name}", node.rtmp);
        let api = format!("http://127.0.0.1:{}/api/v1/streams", node.api);
        let first = Publisher::start(&url, clip.clone());
        if !wait_published(&api, "live", name, Duration::from_secs(15)).await {
            bail!("{url} was not published");
        }
        let (c, stop, clip, name) = (c.clone(), stop.clone(), clip.clone(), name.clone());
        let every = args.republish_every.max(1.0);
        // Stagger the republishes over the interval.
        let offset = every * i as f64 / args.streams.max(1) as f64;
        tasks.push(tokio::spawn(async move {
            let mut current = Some(first);
            let mut next = Instant::now() + Duration::from_secs_f64(every + offset);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.min(Instant::now() + Duration::from_millis(500)))
                    .await;
                if Instant::now() < next {
                    continue;
                }
                next += Duration::from_secs_f64(every);
                if let Some(p) = current.take() {
                    let _ = tokio::task::spawn_blocking(move || p.stop()).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let p = Publisher::start(&url, clip.clone());
                if wait_published(&api, "live", &name, Duration::from_secs(10)).await {
                    c.republishes.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.publish_errors.fetch_add(1, Ordering::Relaxed);
                }
                current = Some(p);
            }
            if let Some(p) = current.take() {
                let _ = tokio::task::spawn_blocking(move || p.stop()).await;
            }
        }));
    }

    // Player slots.
    for slot in 0..args.players {
        let (c, stop, rtmp, flv, names) = (
            c.clone(),
            stop.clone(),
            rtmp.clone(),
            flv.clone(),
            names.clone(),
        );
        let (lo, hi) = (args.play_min, args.play_max);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(slot as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                let name = &names[rng.below(names.len())];
                let o = rng.below(rtmp.len());
                let play = Duration::from_secs_f64(rng.between(lo, hi));
                let ok = if slot % 2 == 0 {
                    c.rtmp_joins.fetch_add(1, Ordering::Relaxed);
                    rtmp_play(rtmp[o], name, play, &c)
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    c.flv_joins.fetch_add(1, Ordering::Relaxed);
                    flv_play(flv[o], name, play, &c).await
                };
                if ok.is_err() {
                    c.join_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }

    // Hang-ups: GET a name nobody publishes, hang up while the origin waits for it.
    if args.hangups > 0.0 {
        let (c, stop, flv) = (c.clone(), stop.clone(), flv.clone());
        let every = Duration::from_secs_f64(1.0 / args.hangups);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let port = flv[(n % flv.len() as u64) as usize];
                let c = c.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let req = format!(
                            "GET /live/ghost-{n}.flv HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                        );
                        if s.write_all(req.as_bytes()).await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            c.hangups.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }));
    }

    // Samples.
    let pids: Vec<u32> = nodes.iter().map(|n| n.proc.pid()).collect();
    let apis: Vec<u16> = nodes.iter().map(|n| n.api).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.minutes * 60.0);
    let mut samples = Vec::new();
    let mut next = start;
    let mut printed_at = 0.0;
    print_header(nodes.len());
    while next <= end {
        tokio::time::sleep_until(next).await;
        let mut s = Sample {
            t: start.elapsed().as_secs_f64(),
            rss_kib: Vec::new(),
            fds: Vec::new(),
            idle_fds: Vec::new(),
            entries: Vec::new(),
        };
        let established = established_inodes();
        for (pid, api) in pids.iter().zip(&apis) {
            s.rss_kib.push(status_kib(*pid, "VmRSS").unwrap_or(0));
            let (all, idle) = fd_breakdown(*pid, &established);
            s.fds.push(all);
            s.idle_fds.push(idle);
            s.entries
                .push(stream_entries(*api).await.unwrap_or(usize::MAX));
        }
        if s.t + 0.5 >= printed_at {
            print_sample(&s, &c);
            printed_at += sample.as_secs_f64();
        }
        samples.push(s);
        next += probe;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    Ok(samples)
}

/// Entries in an origin's `/api/v1/streams` (None if it does not answer in 5 s).
async fn stream_entries(api: u16) -> Option<usize> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", api))
            .await
            .ok()?;
        let req = format!(
            "GET /api/v1/streams HTTP/1.1\r\nHost: 127.0.0.1:{api}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.ok()?;
        let at = all.windows(4).position(|w| w == b"\r\n\r\n")?;
        let v: serde_json::Value = serde_json::from_slice(&all[at + 4..]).ok()?;
        Some(v["streams"].as_array()?.len())
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .ok()?
}

/// Plays over RTMP from `port` (following a 302) for `play`, counting media bytes.
async fn rtmp_play(port: u16, name: &str, play: Duration, c: &Counters) -> Result<(), ClientError> {
    let url = format!("rtmp://127.0.0.1:{port}/live/{name}");
    let deadline = Instant::now() + play;
    let joined = tokio::time::timeout(
        Duration::from_secs(15),
        client::play_following_redirects(&url, 3),
    )
    .await
    .map_err(|_| ClientError::Closed)?;
    let (mut p, first, hops) = joined?;
    if !hops.is_empty() {
        c.redirects.fetch_add(1, Ordering::Relaxed);
    }
    c.media_bytes
        .fetch_add(first.payload.len() as u64, Ordering::Relaxed);
    while let Ok(m) = tokio::time::timeout_at(deadline, p.next_media()).await {
        match m {
            Ok(m) => {
                c.media_bytes
                    .fetch_add(m.payload.len() as u64, Ordering::Relaxed);
            }
            // Republish under way: players stay (republish timeout); an error ends it.
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Plays over HTTP-FLV from `port` (following one 302) for `play`, counting body bytes.
async fn flv_play(port: u16, name: &str, play: Duration, c: &Counters) -> Result<(), String> {
    let deadline = Instant::now() + play;
    let path = format!("/live/{name}.flv");
    let (mut head, mut sock) = get_head(port, &path, Duration::from_secs(15)).await?;
    if head.status == 302 {
        let loc = head.header("location").unwrap_or_default().to_string();
        let rest = loc
            .strip_prefix("http://")
            .ok_or(format!("Location {loc}"))?;
        let (authority, p) = rest.split_once('/').ok_or(format!("Location {loc}"))?;
        let owner: u16 = authority
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or(format!("Location {loc}"))?;
        c.redirects.fetch_add(1, Ordering::Relaxed);
        (head, sock) = get_head(owner, &format!("/{p}"), Duration::from_secs(15)).await?;
    }
    if head.status != 200 {
        return Err(format!("HTTP {}", head.status));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => return Err("closed".into()),
            Ok(Ok(n)) => {
                c.media_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
}

fn print_header(n: usize) {
    let mut h = format!("{:>7}", "t s");
    for i in 0..n {
        h.push_str(&format!(
            "  {:>9} {:>7} {:>7}",
            format!("o{i} RSSMiB"),
            "fds/idl",
            "entries"
        ));
    }
    h.push_str("   joins(rtmp/flv) redirects errors hangups republishes MB-out");
    println!("{h}");
}

fn print_sample(s: &Sample, c: &Counters) {
    let mut l = format!("{:>7.0}", s.t);
    for i in 0..s.rss_kib.len() {
        let entries = match s.entries[i] {
            usize::MAX => "-".to_string(),
            e => e.to_string(),
        };
        l.push_str(&format!(
            "  {:>9.1} {:>7} {:>7}",
            s.rss_kib[i] as f64 / 1024.0,
            format!("{}/{}", s.fds[i], s.idle_fds[i]),
            entries
        ));
    }
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    l.push_str(&format!(
        "   {:>7}/{:<7} {:>9} {:>6} {:>7} {:>11} {:>6}",
        g(&c.rtmp_joins),
        g(&c.flv_joins),
        g(&c.redirects),
        g(&c.join_errors) + g(&c.publish_errors),
        g(&c.hangups),
        g(&c.republishes),
        g(&c.media_bytes) / 1_000_000
    ));
    println!("{l}");
}

/// Least-squares slope of `y` over `t` (per second) and its standard error.
fn slope(t: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = t.len() as f64;
    if t.len() < 3 {
        return None;
    }
    let mt = t.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let num: f64 = t.iter().zip(y).map(|(a, b)| (a - mt) * (b - my)).sum();
    let den: f64 = t.iter().map(|a| (a - mt).powi(2)).sum();
    if den <= 0.0 {
        return None;
    }
    let b = num / den;
    let a = my - b * mt;
    let rss: f64 = t.iter().zip(y).map(|(x, v)| (v - a - b * x).powi(2)).sum();
    let se = (rss / (n - 2.0) / den).sqrt();
    Some((b, se))
}

/// Slope and its standard error as percent of the mean per 10 minutes.
fn pct_per_10min(t: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let k = 600.0 / mean * 100.0;
    slope(t, y)
        .filter(|_| mean > 0.0)
        .map(|(b, se)| (b * k, se * k))
}

/// flat: under 1 %/10 min; growing: over it by more than two standard errors; otherwise
/// the run was too short or too noisy to tell.
fn verdict(s: Option<(f64, f64)>) -> &'static str {
    match s {
        Some((b, _)) if b < 1.0 => "flat",
        Some((b, se)) if b - 2.0 * se > 1.0 => "GROWING",
        Some(_) => "noisy",
        None => "-",
    }
}

fn fmt_slope(s: Option<(f64, f64)>) -> String {
    s.map(|(b, se)| format!("{b:+.2}±{se:.2}"))
        .unwrap_or_else(|| "-".into())
}

fn report(samples: &[Sample], warmup: f64) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup).collect();
    let Some(first) = after.first() else {
        println!("no samples after the warm-up");
        return;
    };
    let last = after.last().expect("non-empty");
    println!();
    println!(
        "slope after the warm-up ({:.0}s .. {:.0}s, {} measurements); target: flat, < 1 % per 10 minutes",
        first.t,
        last.t,
        after.len()
    );
    println!(
        "{:<9} {:>9} {:>9} {:>14} {:>8} {:>6} {:>6} {:>14} {:>8} {:>8}",
        "origin",
        "RSS0 MiB",
        "RSS1 MiB",
        "RSS %/10min",
        "RSS",
        "idle0",
        "idle1",
        "idle fds %/10m",
        "fds",
        "entries"
    );
    let t: Vec<f64> = after.iter().map(|s| s.t).collect();
    for i in 0..first.rss_kib.len() {
        let rss: Vec<f64> = after.iter().map(|s| s.rss_kib[i] as f64).collect();
        let fds: Vec<f64> = after.iter().map(|s| s.idle_fds[i] as f64).collect();
        let rs = pct_per_10min(&t, &rss);
        let fs = pct_per_10min(&t, &fds);
        println!(
            "{:<9} {:>9.1} {:>9.1} {:>14} {:>8} {:>6} {:>6} {:>14} {:>8} {:>8}",
            format!("origin-{i}"),
            first.rss_kib[i] as f64 / 1024.0,
            last.rss_kib[i] as f64 / 1024.0,
            fmt_slope(rs),
            verdict(rs),
            first.idle_fds[i],
            last.idle_fds[i],
            fmt_slope(fs),
            verdict(fs),
            last.entries[i]
        );
    }
    println!(
        "(slope ± standard error over the {} measurements after the warm-up; idle fds = open fds that are not ESTABLISHED TCP sockets, so the players of the moment do not count)",
        t.len()
    );
}
