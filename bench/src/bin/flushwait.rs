//! What waits on a big fan-out: while the publisher's frames are written to N players of
//! one stream (write-through, `--merge-writes 0`, and the defaults), an ownership query
//! (`GET /api/v1/clusters`) and a new subscriber (RTMP connect, play, first media
//! message) are timed, one after the other, from a thread of their own. Prints p50/p99/max
//! per server; asserts nothing about speed.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin_bench::cli::{ClipArgs, Cores};
use origin_bench::load::{Players, Proto, sorted};
use origin_bench::publisher::Publisher;
use origin_bench::server::start_origin;
use origin_bench::{Clip, fmt_opt, origin_bin, percentile};
use tokio::time::sleep;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Ownership query and new-subscriber latency while a publisher is written to N players"
)]
struct Args {
    /// Players of the one stream.
    #[arg(long, env = "FLUSHWAIT_PLAYERS", default_value_t = 2000)]
    players: usize,
    /// `--merge-writes` values to run with (`default`: the origin's own).
    #[arg(
        long,
        env = "FLUSHWAIT_MERGE",
        value_delimiter = ',',
        default_value = "0ms,default"
    )]
    merge: Vec<String>,
    /// Probes of each kind per run.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Pause between two probes, ms.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Players joining per second during the ramp.
    #[arg(long, default_value_t = 500)]
    join_rate: usize,
    #[command(flatten)]
    cores: Cores,
    #[command(flatten)]
    clip: ClipArgs,
}

/// Milliseconds of each probe kind.
#[derive(Default)]
struct Probes {
    query: Vec<f64>,
    subscribe: Vec<f64>,
    failed: usize,
}

/// `GET path` over a fresh connection, to the end of the response: milliseconds.
fn http_get(port: u16, path: &str) -> Result<f64> {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") && !body.starts_with(b"HTTP/1.0 200") {
        bail!("{}", String::from_utf8_lossy(&body[..body.len().min(80)]));
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// A new RTMP player: connect, play, until its first media message; milliseconds.
async fn subscribe(url: &str) -> Result<f64> {
    let t = Instant::now();
    let mut c = origin::client::Client::connect(url).await?;
    c.play(None).await?;
    tokio::time::timeout(Duration::from_secs(10), c.next_media())
        .await
        .context("no media in 10 s")??;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Runs the probes on a thread of their own (blocking HTTP, a small runtime for RTMP),
/// so the players' runtime does not delay them.
fn probe(a: &Args, api: u16, rtmp_url: String) -> std::thread::JoinHandle<Probes> {
    let (n, pause) = (a.probes, Duration::from_millis(a.interval_ms));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("probe runtime");
        let mut p = Probes::default();
        for _ in 0..n {
            match http_get(api, "/api/v1/clusters?app=live&stream=bench") {
                Ok(ms) => p.query.push(ms),
                Err(_) => p.failed += 1,
            }
            std::thread::sleep(pause);
            match rt.block_on(subscribe(&rtmp_url)) {
                Ok(ms) => p.subscribe.push(ms),
                Err(_) => p.failed += 1,
            }
            std::thread::sleep(pause);
        }
        p
    })
}

async fn run(merge: &str, a: &Args, clip: &Arc<Clip>) -> Result<(Probes, f64)> {
    let mut extra = Vec::new();
    if merge != "default" {
        extra = vec!["--merge-writes".to_string(), merge.to_string()];
    }
    let mut server = start_origin(&origin_bin()?, a.cores.server(), Some(1), &extra)?;
    let api = server.api_port.context("origin has an API port")?;
    let publisher = Publisher::start_primed(&server.rtmp_url("live/bench"), clip.clone())
        .await
        .map_err(|e| anyhow::anyhow!("publish failed: {e}\n{}", server.log_tail()))?;
    let mut players = Players::with_capacity(a.players);
    players
        .ramp(
            Proto::Rtmp,
            &server.rtmp_url("live/bench"),
            a.players,
            a.join_rate,
            64 * 1024,
        )
        .await;
    players.wait_first_pictures(Duration::from_secs(15)).await;
    sleep(Duration::from_secs(2)).await;
    let frames0 = players.video_frames();
    let started = Instant::now();
    let prober = probe(a, api, server.rtmp_url("live/bench"));
    while !prober.is_finished() {
        sleep(Duration::from_millis(50)).await;
    }
    let probes = prober
        .join()
        .map_err(|_| anyhow::anyhow!("probe panicked"))?;
    // Video frames per player per second while probed: the fan-out kept going.
    let fps = (players.video_frames() - frames0) as f64
        / a.players.max(1) as f64
        / started.elapsed().as_secs_f64();
    if !server.alive() {
        bail!("origin died:\n{}", server.log_tail());
    }
    let _ = publisher.stop();
    players.stop().await;
    drop(server);
    sleep(Duration::from_millis(500)).await;
    Ok((probes, fps))
}

fn row(label: &str, what: &str, v: &[f64]) {
    let s = sorted(v.iter().copied());
    println!(
        "{:<18} {:<12} {:>6} {:>8} {:>8} {:>8}",
        label,
        what,
        s.len(),
        fmt_opt(percentile(&s, 50.0), 2),
        fmt_opt(percentile(&s, 99.0), 2),
        fmt_opt(s.last().copied(), 2)
    );
}

fn main() -> Result<()> {
    let a = Args::parse();
    a.cores.pin_client();
    let flv = a.clip.path()?;
    let clip = Arc::new(Clip::load(&flv).context("loading the test clip")?);
    println!(
        "clip: {:.2} Mbit/s; {} RTMP players on one stream; probes {} x2, {} ms apart",
        clip.mbit_per_s(),
        a.players,
        a.probes,
        a.interval_ms
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut results = Vec::new();
        for m in &a.merge {
            eprintln!("[flushwait] merge={m} N={} ...", a.players);
            match run(m, &a, &clip).await {
                Ok(r) => results.push((m.clone(), r)),
                Err(e) => eprintln!("[flushwait] merge={m} failed: {e:#}"),
            }
        }
        println!();
        println!(
            "{:<18} {:<12} {:>6} {:>8} {:>8} {:>8}   (ms)",
            "server", "probe", "n", "p50", "p99", "max"
        );
        for (m, (p, fps)) in &results {
            let label = format!("ours merge={m}");
            row(&label, "clusters", &p.query);
            row(&label, "subscribe", &p.subscribe);
            println!(
                "{:<18} failed probes {}, player fps while probed {fps:.1}",
                "", p.failed
            );
        }
        println!("(subscribe = RTMP connect + play until the first media message)");
        Ok(())
    })
}
