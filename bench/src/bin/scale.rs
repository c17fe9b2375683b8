//! Scale-out benchmark (issue 19, docs/architecture.md, "Ownership directory"): N origins,
//! each at its own loopback address like a pod, all reading one coworker file; S streams
//! published on random origins; cold RTMP plays (through relay) from random non-owners,
//! one at a time; publishes of new names. Both discovery modes (`directory` and
//! `broadcast`) in the same run, per N.
//!
//! Prints, per N and mode: decision time (the discovery latency histogram of the origins,
//! mean), first media p50/p99, requests per cold play and per publish (directory lookups,
//! claims and ownership queries the origins answered), ownership queries each origin
//! answered per second, established TCP connections and RSS per origin.
//! The membership change of the bench is not measured here.
//! Asserts nothing about speed.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin_bench::{origin_bin, percentile, status_kib};
use origin_cluster_tests::hostile::{Synth, SynthPublisher};
use origin_test_support::{OriginOpts, OriginProc, TempDir};

#[derive(Parser, Debug)]
#[command(about = "Owner discovery at N origins: directory vs broadcast")]
struct Args {
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "50,200,500")]
    origins: Vec<usize>,
    /// Streams published before the plays.
    #[arg(long, default_value_t = 5)]
    streams: usize,
    /// Cold plays per N and mode.
    #[arg(long, default_value_t = 30)]
    plays: usize,
    /// Publishes of new names per N and mode.
    #[arg(long, default_value_t = 10)]
    publishes: usize,
}

/// A tiny deterministic generator (the run is repeatable).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Origin `i`'s loopback address: 127.1.x.y, one per origin.
fn address(net: usize, i: usize) -> String {
    format!("127.{}.{}.{}", 100 + net, i / 250, i % 250 + 1)
}

fn start(
    n: usize,
    net: usize,
    mode: &str,
    token: &std::path::Path,
) -> Result<(Vec<OriginProc>, TempDir)> {
    let dir = TempDir::new("scale")?;
    let file = dir.path().join("coworkers.json");
    let opts = OriginOpts {
        token_file: Some(token.to_path_buf()),
        extra: [
            "--route",
            "relay",
            "--discovery",
            mode,
            "--coworker-file",
            &file.display().to_string(),
            "--log-format",
            "text",
        ]
        .map(String::from)
        .to_vec(),
        ..OriginOpts::default()
    };
    let bin = origin_bin()?;
    let mut procs = Vec::with_capacity(n);
    for i in 0..n {
        procs.push(OriginProc::spawn(&bin, &address(net, i), (0, 0, 0), &opts)?);
    }
    let all: Vec<String> = procs.iter().map(OriginProc::api_addr).collect();
    let doc = origin_wire::coworkers::CoworkerDocument::new(0, all, None);
    let tmp = dir.path().join("coworkers.json.tmp");
    std::fs::write(&tmp, doc.to_json())?;
    std::fs::rename(&tmp, &file)?;
    // Every origin re-reads the file within a second or so.
    let deadline = Instant::now() + Duration::from_secs(30 + n as u64 / 10);
    for p in &procs {
        loop {
            let loaded = origin_test_support::get_blocking(&p.api_addr(), "/api/v1/coworkers")
                .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["coworkers"].as_array().map(Vec::len) == Some(n));
            if loaded {
                break;
            }
            if Instant::now() > deadline {
                bail!("origin {} did not load the coworker file", p.api_addr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok((procs, dir))
}

/// The sum over `procs` of the samples of `name`, all label sets.
fn metric_sum(procs: &[OriginProc], name: &str) -> f64 {
    procs
        .iter()
        .filter_map(|p| origin_test_support::get_blocking(&p.api_addr(), "/metrics"))
        .map(|(_, text)| {
            text.lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(name)?;
                    let v = match rest.strip_prefix('{') {
                        Some(labelled) => labelled.split_once("} ")?.1,
                        None => rest.strip_prefix(' ')?,
                    };
                    v.trim().parse::<f64>().ok()
                })
                .sum::<f64>()
        })
        .sum()
}

const COUNTERS: [&str; 5] = [
    "origin_directory_lookups_total",
    "origin_ownership_queries_total",
    "origin_directory_claims_total",
    "origin_discovery_latency_seconds_sum",
    "origin_discovery_latency_seconds_count",
];

fn counters(procs: &[OriginProc]) -> [f64; 5] {
    COUNTERS.map(|c| metric_sum(procs, c))
}

async fn published(p: &OriginProc, stream: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some((_, body)) = origin_test_support::get_blocking(&p.api_addr(), "/api/v1/streams")
            && body.contains(&format!("\"stream\":\"{stream}\""))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn first_media(url: &str) -> Result<Duration> {
    let started = Instant::now();
    let work = async {
        let mut p = origin::client::Client::connect(url).await?;
        p.play(None).await?;
        p.next_media().await?;
        Ok::<_, origin::client::ClientError>(started.elapsed())
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .context("no media within 15 s")?
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Established TCP connections whose local address is one of `procs`' (loopback, so
/// each connection counts at both ends).
fn established(procs: &[OriginProc]) -> usize {
    let ips: std::collections::HashSet<String> = procs.iter().map(|p| p.ip().to_string()).collect();
    let out = std::process::Command::new("ss")
        .args(["-Htn", "state", "established"])
        .output();
    let Ok(out) = out else { return 0 };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|a| a.rsplit_once(':'))
                .is_some_and(|(ip, _)| ips.contains(ip))
        })
        .count()
}

async fn run(n: usize, net: usize, mode: &str, args: &Args, token: &std::path::Path) -> Result<()> {
    let started = Instant::now();
    let (procs, _dir) = start(n, net, mode, token)?;
    let up = started.elapsed();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let mut owners = Vec::new();
    let mut publishers = Vec::new();
    for s in 0..args.streams {
        let o = rng.below(n);
        let name = format!("s{s}");
        let p = SynthPublisher::start(
            &procs[o].rtmp_url(&format!("live/{name}")),
            Synth::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
        if !published(&procs[o], &name).await {
            bail!("{name} not published on {}", procs[o].api_addr());
        }
        owners.push(o);
        publishers.push(p);
    }
    let before = counters(&procs);
    let t0 = Instant::now();
    let mut times = Vec::new();
    let mut tried = std::collections::HashSet::new();
    while times.len() < args.plays && tried.len() < n * args.streams {
        let (o, s) = (rng.below(n), rng.below(args.streams));
        if o == owners[s] || !tried.insert((o, s)) {
            continue;
        }
        let t = first_media(&procs[o].rtmp_url(&format!("live/s{s}"))).await?;
        times.push(t.as_secs_f64() * 1e3);
    }
    let play_secs = t0.elapsed().as_secs_f64();
    let after = counters(&procs);
    let conns = established(&procs);
    // Publishes of new names (each a claim, or a broadcast guard).
    let mut new = Vec::new();
    for i in 0..args.publishes {
        let o = rng.below(n);
        let name = format!("new{i}");
        new.push(
            SynthPublisher::start(
                &procs[o].rtmp_url(&format!("live/{name}")),
                Synth::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
        );
    }
    let published_after = counters(&procs);
    let rss: Vec<f64> = procs
        .iter()
        .filter_map(|p| status_kib(p.pid(), "VmRSS"))
        .map(|k| k as f64 / 1024.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let plays = times.len() as f64;
    let d = |i: usize| after[i] - before[i];
    let decision = if d(4) > 0.0 { d(3) / d(4) * 1e3 } else { 0.0 };
    let per_publish = (published_after[0] - after[0])
        + (published_after[1] - after[1])
        + (published_after[2] - after[2]);
    let mut rss_sorted = rss.clone();
    rss_sorted.sort_by(f64::total_cmp);
    println!(
        "{n:>4} origins {mode:>9}: up in {:.1} s | decision mean {decision:.2} ms | first media p50 {:.1} p99 {:.1} ms \
         | per cold play {:.2} requests ({:.2} lookups, {:.2} ownership queries) | per publish {:.2} \
         | ownership queries per origin {:.2}/s | TCP established {} ({:.1} per origin) | RSS per origin p50 {:.1} MiB",
        up.as_secs_f64(),
        percentile(&times, 50.0).unwrap_or(0.0),
        percentile(&times, 99.0).unwrap_or(0.0),
        (d(0) + d(1)) / plays,
        d(0) / plays,
        d(1) / plays,
        per_publish / args.publishes.max(1) as f64,
        d(1) / n as f64 / play_secs,
        conns,
        conns as f64 / n as f64,
        percentile(&rss_sorted, 50.0).unwrap_or(0.0),
    );
    drop(new);
    drop(publishers);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = TempDir::new("scale-token")?;
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-bench-token")?;
    for (k, &n) in args.origins.iter().enumerate() {
        for (m, mode) in ["directory", "broadcast"].into_iter().enumerate() {
            if let Err(e) = run(n, 2 * k + m, mode, &args, &token).await {
                println!("{n:>4} origins {mode:>9}: failed: {e:#}");
            }
        }
    }
    Ok(())
}
