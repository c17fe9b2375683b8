//! Redirect benchmark: 10 origins on loopback plus one black-holed coworker (accepts TCP,
//! never answers), so every non-owner has 10 coworkers, one of them black-holed. Measures
//! the redirect decision (HTTP-FLV GET -> 302; RTMP play -> 302 status) and the time to
//! first media through the redirect (RTMP client following the 302; HTTP-FLV GET following
//! Location until the first audio/video tag). Prints tables; asserts nothing about speed.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use origin::client::{Client, ClientError, play_following_redirects};
use origin_bench::publisher::Publisher;
use origin_bench::server::{ServerProc, start_origin_on};
use origin_bench::{
    Clip, black_hole, fmt_opt, free_port, origin_bin, percentile, test_flv, wait_published,
};
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    about = "Redirect decision latency and time to first media via redirect (10 coworkers, one black-holed)"
)]
struct Args {
    /// Origins started (one owns the stream; every origin lists all others plus the black hole).
    #[arg(long, default_value_t = 10)]
    origins: usize,
    /// Redirect decisions measured per protocol.
    #[arg(long, env = "REDIRECT_REQUESTS", default_value_t = 200)]
    requests: usize,
    /// Time-to-first-media samples per protocol.
    #[arg(long, env = "REDIRECT_TTFM", default_value_t = 50)]
    ttfm: usize,
    /// Per-coworker discovery timeout given to the origins.
    #[arg(long, default_value = "500ms")]
    discovery_timeout: String,
    /// Discovery cache settings to measure: `0s` = every request asks all coworkers.
    #[arg(long, value_delimiter = ',', default_value = "0s,2s")]
    cache: Vec<String>,
    /// Use this FLV instead of generating the test clip.
    #[arg(long)]
    flv: Option<PathBuf>,
}

struct Stats {
    name: String,
    ok: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

impl Stats {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ok: Vec::new(),
            errors: 0,
            first_error: None,
        }
    }
    fn record(&mut self, r: Result<f64>) {
        match r {
            Ok(ms) => self.ok.push(ms),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    fn print(&mut self, cache: &str) {
        self.ok.sort_by(|a, b| a.total_cmp(b));
        let p = |q| fmt_opt(percentile(&self.ok, q), 1);
        println!(
            "{:<7} {:<48} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
            cache,
            self.name,
            self.ok.len(),
            self.errors,
            p(50.0),
            p(90.0),
            p(99.0),
            fmt_opt(self.ok.last().copied(), 1),
            fmt_opt(self.ok.first().copied(), 1)
        );
        if let Some(e) = &self.first_error {
            println!("        first error: {e}");
        }
    }
}

fn http_client() -> HttpClient<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// GET `url` on a fresh connection; returns (status, Location, response) once headers arrive.
async fn get(url: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
    let req = hyper::Request::get(url).body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), http_client().request(req))
        .await
        .context("timed out")?
        .context("request")?;
    Ok(resp)
}

/// HTTP-FLV on a non-owner: ms until the 302 headers.
async fn http_302(url: &str) -> Result<f64> {
    let t0 = Instant::now();
    let resp = get(url).await?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if resp.status() != 302 {
        bail!("expected 302, got {}", resp.status());
    }
    Ok(ms)
}

/// RTMP play on a non-owner: ms from sending play to the 302 status (connect excluded),
/// and the total from TCP connect.
async fn rtmp_302(url: &str) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut c = Client::connect(url).await?;
    let t1 = Instant::now();
    c.play(None).await?;
    match tokio::time::timeout(Duration::from_secs(10), c.next_media())
        .await
        .context("timed out")?
    {
        Err(ClientError::Redirect { .. }) => {
            let now = Instant::now();
            Ok((
                (now - t1).as_secs_f64() * 1000.0,
                (now - t0).as_secs_f64() * 1000.0,
            ))
        }
        Ok(_) => bail!("got media, not a redirect (asked the owner?)"),
        Err(e) => Err(e.into()),
    }
}

/// RTMP via redirect: connect to a non-owner, follow the 302, first media message.
async fn rtmp_ttfm(url: &str) -> Result<f64> {
    let t0 = Instant::now();
    let (c, _first, hops) =
        tokio::time::timeout(Duration::from_secs(15), play_following_redirects(url, 3))
            .await
            .context("timed out")??;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    drop(c);
    if hops.len() != 1 {
        bail!("expected one redirect, took {}", hops.len());
    }
    Ok(ms)
}

/// HTTP-FLV via redirect: GET the non-owner, follow Location, read until the first
/// complete audio/video tag.
async fn http_ttfm(url: &str) -> Result<f64> {
    let t0 = Instant::now();
    let r = get(url).await?;
    if r.status() != 302 {
        bail!("expected 302, got {}", r.status());
    }
    let loc = r
        .headers()
        .get("location")
        .context("302 without Location")?
        .to_str()?
        .to_string();
    let resp = get(&loc).await?;
    if resp.status() != 200 {
        bail!("owner answered {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // FLV header (9) + PreviousTagSize0 (4), then tags: 11-byte header, data, 4-byte size.
        let mut pos = 13;
        while buf.len() >= pos + 11 {
            let size = u32::from_be_bytes([0, buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
            if buf.len() < pos + 11 + size {
                break;
            }
            if matches!(buf[pos] & 0x1f, 8 | 9) {
                return Ok(t0.elapsed().as_secs_f64() * 1000.0);
            }
            pos += 11 + size + 4;
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .context("timed out")?;
        match frame {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Some(Err(e)) => bail!("body: {e}"),
            None => bail!("body ended before a media tag"),
        }
    }
}

async fn run_pass(a: &Args, cache: &str, clip: &Arc<Clip>, hole: &str) -> Result<()> {
    let bin = origin_bin()?;
    let ports: Vec<(u16, u16, u16)> = (0..a.origins)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let mut coworkers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{}", p.1)).collect();
    coworkers.push(hole.to_string());
    let mut origins: Vec<ServerProc> = Vec::new();
    for &p in &ports {
        let mut extra = vec![
            "--self-api".to_string(),
            format!("127.0.0.1:{}", p.1),
            "--discovery-timeout".into(),
            a.discovery_timeout.clone(),
            "--discovery-cache".into(),
            cache.to_string(),
            // Fail fast (no waiting for a publisher) if discovery finds nothing.
            "--wait-for-publisher".into(),
            "0s".into(),
            // This bench measures redirects; the default (`auto`) relays most players.
            "--route".into(),
            "redirect".into(),
        ];
        for c in &coworkers {
            extra.extend(["--coworker".to_string(), c.clone()]);
        }
        origins.push(start_origin_on(&bin, p, None, None, &extra)?);
    }
    let owner = &origins[0];
    let publisher = Publisher::start(&owner.rtmp_url("live/bench"), clip.clone());
    if !publisher.wait_started(Duration::from_secs(10)) {
        bail!("publish to the owner failed:\n{}", owner.log_tail());
    }
    let api = format!(
        "http://127.0.0.1:{}/api/v1/streams",
        owner.api_port.unwrap_or_default()
    );
    if !wait_published(&api, "live", "bench", Duration::from_secs(10)).await {
        bail!("owner does not report the stream as published");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await; // a GOP in the cache
    let others = &origins[1..];
    let flv_url = |o: &ServerProc| {
        format!(
            "http://127.0.0.1:{}/live/bench.flv",
            o.flv_port.unwrap_or_default()
        )
    };

    let mut h302 = Stats::new("HTTP-FLV GET -> 302 (incl. TCP connect)");
    let mut r302 = Stats::new("RTMP play -> 302 status");
    let mut r302_total = Stats::new("RTMP connect+handshake+play -> 302");
    for i in 0..a.requests {
        let o = &others[i % others.len()];
        h302.record(http_302(&flv_url(o)).await);
        match rtmp_302(&o.rtmp_url("live/bench")).await {
            Ok((play, total)) => {
                r302.record(Ok(play));
                r302_total.record(Ok(total));
            }
            Err(e) => {
                r302.record(Err(anyhow::anyhow!("{e:#}")));
                r302_total.record(Err(e));
            }
        }
    }
    let mut rt = Stats::new("RTMP: connect -> 302 -> owner -> first media");
    let mut ht = Stats::new("HTTP-FLV: GET -> 302 -> owner -> first A/V tag");
    for i in 0..a.ttfm {
        let o = &others[i % others.len()];
        rt.record(rtmp_ttfm(&o.rtmp_url("live/bench")).await);
        ht.record(http_ttfm(&flv_url(o)).await);
    }
    for s in [&mut h302, &mut r302, &mut r302_total, &mut rt, &mut ht] {
        s.print(cache);
    }
    let _ = publisher.stop();
    drop(origins);
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    let flv = match &a.flv {
        Some(p) => p.clone(),
        None => test_flv(24)?,
    };
    let clip = Arc::new(Clip::load(&flv)?);
    let (_hole_thread, hole) = black_hole();
    let hole = hole.to_string();
    println!(
        "{} origins on loopback, each with {} coworkers (one black-holed at {hole}); discovery timeout {}; {} decisions and {} first-media samples per protocol",
        a.origins, a.origins, a.discovery_timeout, a.requests, a.ttfm
    );
    println!(
        "cache 0s = every decision asks all coworkers; 2s = the default positive-answer cache (mostly hits)"
    );
    println!();
    println!(
        "{:<7} {:<48} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "cache", "measurement (ms)", "ok", "errors", "p50", "p90", "p99", "max", "min"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        for c in &a.cache {
            if let Err(e) = run_pass(&a, c, &clip, &hole).await {
                println!("{c:<7} pass failed: {e:#}");
            }
        }
    });
    Ok(())
}
