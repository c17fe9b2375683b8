//! Ingest benchmark: N real-time publishers of the test clip on N distinct streams, no
//! players, against our origin and nginx-rtmp, server pinned to one core and the
//! publishers (tasks of one runtime in this process) on the other. Prints CPU-seconds per
//! ingested Gbit, RSS per stream and how far behind real time the publishers fell.
//! Asserts nothing about speed.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin::client::Client;
use origin::media::flv::Tag;
use origin_bench::cli::Cores;
use origin_bench::server::{ServerProc, start_nginx, start_origin};
use origin_bench::{Clip, cpu_seconds, fmt_opt, origin_bin, status_kib, test_flv};
use tokio::time::{Instant, sleep, sleep_until};

#[derive(Parser, Debug, Clone)]
#[command(
    about = "RTMP ingest: N publishers on N streams, our origin vs nginx-rtmp (CPU per ingested Gbit, RSS per stream)"
)]
struct Args {
    /// Publisher (= stream) counts to measure.
    #[arg(
        long,
        env = "INGEST_STREAMS",
        value_delimiter = ',',
        default_value = "100,300,500"
    )]
    streams: Vec<usize>,
    /// Servers: `ours` (origin defaults), `nginx`.
    #[arg(
        long,
        env = "INGEST_SERVERS",
        value_delimiter = ',',
        default_value = "ours,nginx"
    )]
    servers: Vec<String>,
    /// Measurement window per point, seconds.
    #[arg(long, env = "INGEST_WINDOW", default_value_t = 15)]
    window: u64,
    /// Publishers starting per second during the ramp.
    #[arg(long, default_value_t = 200)]
    join_rate: usize,
    #[command(flatten)]
    cores: Cores,
    /// Test clip length, seconds (20–30).
    #[arg(long, default_value_t = 24)]
    clip_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Nginx,
}

impl Kind {
    fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "ours" | "origin" => Ok(Kind::Ours),
            "nginx" | "nginx-rtmp" => Ok(Kind::Nginx),
            other => bail!("unknown server `{other}` (ours, nginx)"),
        }
    }
    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Nginx => "nginx-rtmp",
        }
    }
    fn start(self, a: &Args) -> Result<ServerProc> {
        let cpu = a.cores.server();
        match self {
            Kind::Ours => start_origin(&origin_bin()?, cpu, Some(1), &[]),
            Kind::Nginx => start_nginx(cpu),
        }
    }
}

/// One publisher's counters.
#[derive(Default)]
struct PubStats {
    started: AtomicBool,
    failed: AtomicBool,
    /// Payload bytes sent.
    bytes: AtomicU64,
    /// How late the last tag went out against its real-time schedule, µs.
    late_us: AtomicU64,
    max_late_us: AtomicU64,
}

/// Publishes `clip` to `url` in real time, looping with continuous timestamps, until `stop`.
async fn publish(url: String, clip: Arc<Clip>, st: Arc<PubStats>, stop: Arc<AtomicBool>) {
    let r: Result<(), origin::client::ClientError> = async {
        let mut c = Client::connect(&url).await?;
        c.publish(None).await?;
        st.started.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut offset: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            for t in &clip.tags {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ts = offset + u64::from(t.timestamp);
                let due = t0 + Duration::from_millis(ts);
                sleep_until(due).await;
                let tag = Tag {
                    tag_type: t.tag_type,
                    timestamp: ts as u32,
                    payload: t.payload.clone(),
                };
                c.publish_tags(std::slice::from_ref(&tag), false).await?;
                st.bytes
                    .fetch_add(t.payload.len() as u64, Ordering::Relaxed);
                let late = Instant::now().saturating_duration_since(due).as_micros() as u64;
                st.late_us.store(late, Ordering::Relaxed);
                st.max_late_us.fetch_max(late, Ordering::Relaxed);
            }
            offset += u64::from(clip.duration_ms);
        }
        let _ = c.close().await;
        Ok(())
    }
    .await;
    if r.is_err() {
        st.failed.store(true, Ordering::Relaxed);
    }
}

struct Row {
    server: &'static str,
    n: usize,
    ok: usize,
    gbit: f64,
    window_s: f64,
    cpu_s: f64,
    bench_pct: f64,
    rss0_kib: u64,
    rss_kib: u64,
    /// Publishers more than 1 s behind real time at the end of the window.
    behind: usize,
    max_late_ms: f64,
}

impl Row {
    fn cpu_per_gbit(&self) -> Option<f64> {
        (self.gbit > 0.0).then(|| self.cpu_s / self.gbit)
    }
    fn mib_per_stream(&self) -> f64 {
        (self.rss_kib as f64 - self.rss0_kib as f64) / 1024.0 / self.n.max(1) as f64
    }
}

async fn run_point(kind: Kind, n: usize, a: &Args, clip: &Arc<Clip>) -> Result<Row> {
    let mut server = kind.start(a)?;
    let pid = server.pid();
    sleep(Duration::from_millis(300)).await;
    let rss0 = status_kib(pid, "VmRSS").unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut stats = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    let per_wave = (a.join_rate / 10).max(1);
    for i in 0..n {
        let st = Arc::new(PubStats::default());
        stats.push(st.clone());
        let url = server.rtmp_url(&format!("live/s{i}"));
        tasks.push(tokio::spawn(publish(url, clip.clone(), st, stop.clone())));
        if (i + 1) % per_wave == 0 {
            sleep(Duration::from_millis(100)).await;
        }
    }
    // Every publisher up and a whole GOP (2 s) cached on each stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !stats
            .iter()
            .all(|s| s.started.load(Ordering::Relaxed) || s.failed.load(Ordering::Relaxed))
    {
        sleep(Duration::from_millis(100)).await;
    }
    sleep(Duration::from_secs(3)).await;
    let me = std::process::id();
    let bytes = |stats: &[Arc<PubStats>]| -> u64 {
        stats.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum()
    };
    let (c0, b0, m0) = (cpu_seconds(pid), bytes(&stats), cpu_seconds(me));
    let t0 = Instant::now();
    sleep(Duration::from_secs(a.window)).await;
    let (c1, b1, m1) = (cpu_seconds(pid), bytes(&stats), cpu_seconds(me));
    let secs = t0.elapsed().as_secs_f64();
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    if !server.alive() {
        bail!(
            "{} died during the run:\n{}",
            kind.label(),
            server.log_tail()
        );
    }
    let ok = stats
        .iter()
        .filter(|s| s.started.load(Ordering::Relaxed) && !s.failed.load(Ordering::Relaxed))
        .count();
    let behind = stats
        .iter()
        .filter(|s| s.late_us.load(Ordering::Relaxed) > 1_000_000)
        .count();
    let max_late_ms = stats
        .iter()
        .map(|s| s.max_late_us.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    stop.store(true, Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }
    drop(server);
    for t in tasks {
        let _ = t.await;
    }
    sleep(Duration::from_millis(500)).await;
    Ok(Row {
        server: kind.label(),
        n,
        ok,
        gbit: (b1 - b0) as f64 * 8.0 / 1e9,
        window_s: secs,
        cpu_s: match (c0, c1) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        },
        bench_pct: match (m0, m1) {
            (Some(a), Some(b)) => (b - a) / secs * 100.0,
            _ => f64::NAN,
        },
        rss0_kib: rss0,
        rss_kib: rss,
        behind,
        max_late_ms,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let a = Args::parse();
    let kinds: Vec<Kind> = a
        .servers
        .iter()
        .map(|s| Kind::parse(s))
        .collect::<Result<_>>()?;
    a.cores.pin_client();
    let flv = test_flv(a.clip_seconds)?;
    let clip = Arc::new(Clip::load(&flv).context("loading the test clip")?);
    println!(
        "clip: {} ({:.2} Mbit/s); streams {:?}; servers {:?}; window {} s",
        flv.display(),
        clip.mbit_per_s(),
        a.streams,
        kinds.iter().map(|k| k.label()).collect::<Vec<_>>(),
        a.window
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rows = Vec::new();
        for &n in &a.streams {
            for &k in &kinds {
                eprintln!("[ingest] {} N={n} (load {}) ...", k.label(), load_average());
                match run_point(k, n, &a, &clip).await {
                    Ok(r) => {
                        eprintln!(
                            "[ingest] {} N={n}: {:.2} Gbit, cpu {:.2} s -> {} s/Gbit, {:.2} MiB/stream, behind {}",
                            r.server,
                            r.gbit,
                            r.cpu_s,
                            fmt_opt(r.cpu_per_gbit(), 3),
                            r.mib_per_stream(),
                            r.behind
                        );
                        rows.push((r, load_average()));
                    }
                    Err(e) => eprintln!("[ingest] {} N={n} failed: {e:#}", k.label()),
                }
            }
        }
        println!();
        println!("## RTMP ingest: N publishers of the clip on N streams, no players (server on one core)");
        println!();
        println!(
            "{:<12} {:>5} {:>5} {:>7} {:>6} {:>8} {:>6} {:>8} {:>8} {:>9} {:>7} {:>9} {:>6}  load",
            "server", "N", "ok", "Gbit", "cpu_s", "cpu/Gbit", "cpu%", "rss0MiB", "rssMiB", "MiB/strm", "behind", "maxlatems", "bench%"
        );
        for (r, load) in &rows {
            println!(
                "{:<12} {:>5} {:>5} {:>7.3} {:>6.2} {:>8} {:>6.1} {:>8.1} {:>8.1} {:>9.3} {:>7} {:>9.0} {:>6.0}  {}",
                r.server,
                r.n,
                r.ok,
                r.gbit,
                r.cpu_s,
                fmt_opt(r.cpu_per_gbit(), 3),
                r.cpu_s / r.window_s * 100.0,
                r.rss0_kib as f64 / 1024.0,
                r.rss_kib as f64 / 1024.0,
                r.mib_per_stream(),
                r.behind,
                r.max_late_ms,
                r.bench_pct,
                load
            );
        }
        println!();
        println!("Gbit = media payload bytes the publishers sent in the window; MiB/strm = (RSS - RSS before) / N;");
        println!("behind = publishers more than 1 s late on their real-time schedule at the end; bench% = CPU of the publisher process; load = 1/5/15-min load average after the point.");
        println!();
        println!("## Ratio ours / nginx-rtmp (same N; target cpu/Gbit <= 0.8)");
        println!();
        println!("{:<12} {:>5} {:>10} {:>10}", "server", "N", "cpu/Gbit", "MiB/strm");
        for (r, _) in rows.iter().filter(|(r, _)| r.server != "nginx-rtmp") {
            let Some((n, _)) = rows.iter().find(|(x, _)| x.server == "nginx-rtmp" && x.n == r.n) else {
                continue;
            };
            let ratio = match (r.cpu_per_gbit(), n.cpu_per_gbit()) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let mem = (n.mib_per_stream() > 0.0).then(|| r.mib_per_stream() / n.mib_per_stream());
            println!("{:<12} {:>5} {:>10} {:>10}", r.server, r.n, fmt_opt(ratio, 2), fmt_opt(mem, 2));
        }
        Ok(())
    })
}
