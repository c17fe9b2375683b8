//! Hook latency benchmark: how much an SRS-style `on_publish` / `on_play` hook adds to the
//! start of a publish and a play. Two origins run side by side, one without hooks and one
//! whose hooks point at a local HTTP backend (hyper on loopback) that answers `{"code":0}`
//! after `--backend-delay`. Each sample is one fresh RTMP connection; the time measured is
//! from sending `publish`/`play` to receiving `Publish.Start`/`Play.Start`. Prints a table;
//! asserts nothing about speed.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use origin::client::Client;
use origin_bench::server::start_origin;
use origin_bench::{fmt_opt, origin_bin, percentile};
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    about = "Added publish/play start latency of on_publish/on_play hooks against a local backend"
)]
struct Args {
    /// Samples per protocol action and origin.
    #[arg(long, env = "HOOKLAT_SAMPLES", default_value_t = 500)]
    samples: usize,
    /// Time the backend takes before answering.
    #[arg(long, default_value = "0ms", value_parser = humantime_ms)]
    backend_delay: Duration,
    /// Tokio worker threads of each origin.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn humantime_ms(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| format!("{e}"));
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|e| format!("{e}"));
    }
    s.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{e}"))
}

/// Starts the hook backend; returns its address and a call counter.
async fn backend(delay: Duration) -> Result<(std::net::SocketAddr, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        counter.fetch_add(1, Ordering::Relaxed);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            br#"{"code":0}"#,
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Ok((addr, calls))
}

async fn publish_sample(url: &str) -> Result<f64> {
    let mut c = Client::connect(url).await?;
    let t = Instant::now();
    c.publish(None).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let _ = c.close().await;
    Ok(ms)
}

async fn play_sample(url: &str) -> Result<f64> {
    let mut c = Client::connect(url).await?;
    let t = Instant::now();
    c.play(None).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let _ = c.close().await;
    Ok(ms)
}

fn row(name: &str, v: &mut [f64]) -> (Option<f64>, Option<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(v, 50.0), percentile(v, 99.0));
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9}",
        name,
        v.len(),
        fmt_opt(p50, 2),
        fmt_opt(p99, 2),
        fmt_opt(v.last().copied(), 2)
    );
    (p50, p99)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = origin_bin()?;
    let (hook, calls) = backend(args.backend_delay).await?;
    let hook_url = format!("http://{hook}/hook");
    let plain = start_origin(&bin, None, Some(args.workers), &[])?;
    let hooked = start_origin(
        &bin,
        None,
        Some(args.workers),
        &[
            "--on-publish".into(),
            hook_url.clone(),
            "--on-play".into(),
            hook_url.clone(),
            "--on-unpublish".into(),
            hook_url.clone(),
            "--on-stop".into(),
            hook_url,
        ],
    )?;
    println!(
        "hook latency: {} samples each, backend delay {:?}, {} worker thread(s) per origin",
        args.samples, args.backend_delay, args.workers
    );
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9}",
        "publish/play -> Start (ms)", "n", "p50", "p99", "max"
    );
    let mut results = Vec::new();
    for (label, server) in [("no hooks", &plain), ("hooks", &hooked)] {
        // A stream that stays published for the play samples.
        let mut held = Client::connect(&server.rtmp_url("live/held"))
            .await
            .context("connect publisher")?;
        held.publish(None).await.context("hold a publish")?;
        let mut pubs = Vec::with_capacity(args.samples);
        let mut plays = Vec::with_capacity(args.samples);
        // Warm up the pools and the code paths.
        for i in 0..20 {
            publish_sample(&server.rtmp_url(&format!("live/warm{i}"))).await?;
            play_sample(&server.rtmp_url("live/held")).await?;
        }
        for i in 0..args.samples {
            pubs.push(publish_sample(&server.rtmp_url(&format!("live/s{i}"))).await?);
            plays.push(play_sample(&server.rtmp_url("live/held")).await?);
        }
        let p = row(&format!("{label}: publish"), &mut pubs);
        let q = row(&format!("{label}: play"), &mut plays);
        results.push((p, q));
        let _ = held.close().await;
    }
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let (plain_r, hooked_r) = (results[0], results[1]);
    println!();
    println!(
        "added by the hook (hooks - no hooks): publish p50 {} ms, p99 {} ms; play p50 {} ms, p99 {} ms (backend delay {:?} included)",
        fmt_opt(diff(plain_r.0.0, hooked_r.0.0), 2),
        fmt_opt(diff(plain_r.0.1, hooked_r.0.1), 2),
        fmt_opt(diff(plain_r.1.0, hooked_r.1.0), 2),
        fmt_opt(diff(plain_r.1.1, hooked_r.1.1), 2),
        args.backend_delay
    );
    println!("backend calls: {}", calls.load(Ordering::Relaxed));
    Ok(())
}
