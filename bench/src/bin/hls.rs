//! HLS delivery cost: N clients polling like hls.js (one playlist request per target
//! duration, then each new segment once) against N HTTP-FLV players of the same stream,
//! on the same origin build. Prints server CPU-seconds per delivered Gbit for both and
//! the playlist request latency under load. Numbers only; nothing passes or fails.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use origin_bench::cli::Cores;
use origin_bench::flv_player::run_flv_player;
use origin_bench::player::{BYTES_READ, PlayerStats};
use origin_bench::publisher::Publisher;
use origin_bench::server::{ServerProc, start_origin};
use origin_bench::{Clip, cpu_seconds, fmt_opt, origin_bin, percentile, test_flv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until};

#[derive(Parser, Debug)]
struct Args {
    /// Client counts to measure.
    #[arg(
        long,
        env = "HLS_BENCH_CLIENTS",
        value_delimiter = ',',
        default_value = "1000"
    )]
    clients: Vec<usize>,
    /// Target segment duration given to the origin (`--hls-segment`), seconds.
    #[arg(long, default_value_t = 2)]
    segment: u64,
    /// Measurement window per point, seconds.
    #[arg(long, env = "HLS_BENCH_WINDOW", default_value_t = 12)]
    window: u64,
    /// Also measure Low-Latency HLS (fMP4 parts; clients still poll per target duration).
    #[arg(long)]
    low_latency: bool,
    #[command(flatten)]
    cores: Cores,
    /// Test clip length, seconds (20–30).
    #[arg(long, default_value_t = 24)]
    clip_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flv,
    Hls,
    LlHls,
    LlBlocking,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Flv => "HTTP-FLV",
            Mode::Hls => "HLS (TS)",
            Mode::LlHls => "LL-HLS polled",
            Mode::LlBlocking => "LL-HLS blocking",
        }
    }
}

/// What all HLS clients share.
#[derive(Default)]
struct HlsStats {
    /// Playlist request latencies (ms) recorded while `recording` is set.
    latencies: Mutex<Vec<f64>>,
    recording: std::sync::atomic::AtomicBool,
    playlists: AtomicU64,
    segments: AtomicU64,
    errors: AtomicU64,
}

/// One keep-alive HTTP/1.1 connection; reads Content-Length bodies and discards them.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Conn {
    async fn open(host: &str, port: u16) -> Option<Self> {
        let sock = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect((host, port)))
            .await
            .ok()?
            .ok()?;
        let _ = sock.set_nodelay(true);
        Some(Self {
            sock,
            buf: Vec::with_capacity(64 << 10),
            host: format!("{host}:{port}"),
        })
    }

    /// GETs `path`; returns (status, body if `keep` else empty). Body bytes count in
    /// [`BYTES_READ`].
    async fn get(&mut self, path: &str, keep: bool) -> Option<(u16, Vec<u8>)> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.sock.write_all(req.as_bytes()).await.ok()?;
        let mut chunk = vec![0u8; 64 << 10];
        // Head.
        let (status, len, head_end) = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).ok()?;
                let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                break (status, len, end + 4);
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.sock.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
            self.buf.extend_from_slice(&chunk[..n]);
        };
        self.buf.drain(..head_end);
        let mut body = Vec::new();
        let mut left = len;
        let take = left.min(self.buf.len());
        if keep {
            body.extend_from_slice(&self.buf[..take]);
        }
        self.buf.drain(..take);
        left -= take;
        while left > 0 {
            let n = tokio::time::timeout(Duration::from_secs(30), self.sock.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
            let used = n.min(left);
            if keep {
                body.extend_from_slice(&chunk[..used]);
            }
            if n > used {
                self.buf.extend_from_slice(&chunk[used..n]);
            }
            left -= used;
        }
        Some((status, body))
    }
}

/// A client that behaves like hls.js on a live playlist: reload every target duration,
/// fetch each segment it has not fetched yet (starting at the live edge).
async fn run_hls_client(port: u16, start_in: Duration, every: Duration, st: Arc<HlsStats>) {
    sleep(start_in).await;
    let Some(mut conn) = Conn::open("127.0.0.1", port).await else {
        st.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut last_uri: Option<String> = None;
    let mut next = Instant::now();
    loop {
        let t0 = Instant::now();
        let Some((status, body)) = conn.get("/live/bench.m3u8", true).await else {
            st.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        st.playlists.fetch_add(1, Ordering::Relaxed);
        if st.recording.load(Ordering::Relaxed) {
            st.latencies.lock().unwrap().push(ms);
        }
        if status != 200 {
            st.errors.fetch_add(1, Ordering::Relaxed);
        } else {
            let text = String::from_utf8_lossy(&body);
            let uris: Vec<&str> = text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            let start = match &last_uri {
                Some(u) => uris.iter().position(|x| x == u).map_or(0, |i| i + 1),
                None => uris.len().saturating_sub(1),
            };
            for u in &uris[start..] {
                match conn.get(&format!("/live/{u}"), false).await {
                    Some((200, _)) => {
                        st.segments.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(_) => {
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        st.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                last_uri = Some(u.to_string());
            }
        }
        next += every;
        sleep_until(next).await;
    }
}

/// A client that behaves like hls.js in low-latency mode: a blocking playlist reload for
/// the part the last playlist hinted, then every part it has not fetched yet.
async fn run_ll_client(port: u16, start_in: Duration, st: Arc<HlsStats>) {
    sleep(start_in).await;
    let Some(mut conn) = Conn::open("127.0.0.1", port).await else {
        st.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut query = String::new();
    let mut last_part: Option<String> = None;
    loop {
        let t0 = Instant::now();
        let Some((status, body)) = conn.get(&format!("/live/bench.m3u8{query}"), true).await else {
            st.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        st.playlists.fetch_add(1, Ordering::Relaxed);
        if st.recording.load(Ordering::Relaxed) {
            st.latencies.lock().unwrap().push(ms);
        }
        if status != 200 {
            st.errors.fetch_add(1, Ordering::Relaxed);
            sleep(Duration::from_millis(500)).await;
            query.clear();
            continue;
        }
        let text = String::from_utf8_lossy(&body);
        let uri = |l: &str| {
            l.split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        let parts: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .filter_map(uri)
            .collect();
        let start = match &last_part {
            Some(u) => parts.iter().position(|x| x == u).map_or(0, |i| i + 1),
            None => parts.len().saturating_sub(1),
        };
        for u in &parts[start..] {
            match conn.get(&format!("/live/{u}"), false).await {
                Some((200, _)) => {
                    st.segments.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {
                    st.errors.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    st.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            last_part = Some(u.clone());
        }
        // Next: block until the hinted part exists.
        let hint = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
            .and_then(uri);
        query = hint
            .as_deref()
            .and_then(|h| h.rsplit('/').next())
            .and_then(|n| {
                n.strip_prefix("part")?
                    .strip_suffix(".m4s")?
                    .split_once('.')
            })
            .map(|(m, p)| format!("?_HLS_msn={m}&_HLS_part={p}"))
            .unwrap_or_default();
    }
}

struct Row {
    mode: Mode,
    n: usize,
    gbit: f64,
    cpu_s: f64,
    bench_cpu_pct: f64,
    playlists: u64,
    segments: u64,
    errors: u64,
    lat_p50: Option<f64>,
    lat_p99: Option<f64>,
    lat_max: Option<f64>,
}

async fn run_point(mode: Mode, n: usize, a: &Args, clip: &Arc<Clip>) -> Result<Row> {
    let bin = origin_bin()?;
    let mut extra = vec!["--hls-segment".to_string(), a.segment.to_string()];
    if matches!(mode, Mode::LlHls | Mode::LlBlocking) {
        extra.extend(["--hls-low-latency".into(), "--hls-part".into(), "1s".into()]);
    }
    let cpu = a.cores.server();
    let mut server: ServerProc = start_origin(&bin, cpu, Some(1), &extra)?;
    let publisher = Publisher::start(&server.rtmp_url("live/bench"), clip.clone());
    if !publisher.wait_started(Duration::from_secs(10)) {
        let e = publisher.stop().err().unwrap_or_default();
        bail!("publish failed: {e}\n{}", server.log_tail());
    }
    sleep(Duration::from_millis(2500)).await;
    let port = server.flv_port.context("flv port")?;
    let every = Duration::from_secs(a.segment);
    let hls = Arc::new(HlsStats::default());
    let mut handles = Vec::with_capacity(n);
    match mode {
        Mode::Flv => {
            let url = server.flv_url("live/bench").context("flv url")?;
            for i in 0..n {
                let url = url.clone();
                let st = Arc::new(PlayerStats::default());
                // Join over 2 s, like the HLS clients.
                let start_in = Duration::from_millis((i as u64 * 2000) / n as u64);
                handles.push(tokio::spawn(async move {
                    sleep(start_in).await;
                    run_flv_player(&url, st, 64 << 10).await
                }));
            }
        }
        Mode::Hls | Mode::LlHls | Mode::LlBlocking => {
            // The first request starts the packager; let it make a segment first.
            let mut probe = Conn::open("127.0.0.1", port).await.context("connect")?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some((200, _)) = probe.get("/live/bench.m3u8", false).await {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("no HLS playlist:\n{}", server.log_tail());
                }
                sleep(Duration::from_millis(200)).await;
            }
            for i in 0..n {
                // Spread over one target duration, as independent players would be.
                let start_in = every.mul_f64(i as f64 / n as f64);
                if mode == Mode::LlBlocking {
                    handles.push(tokio::spawn(run_ll_client(port, start_in, hls.clone())));
                } else {
                    handles.push(tokio::spawn(run_hls_client(
                        port,
                        start_in,
                        every,
                        hls.clone(),
                    )));
                }
            }
        }
    }
    // Ramp, then settle.
    sleep(every.max(Duration::from_secs(2)) + Duration::from_secs(3)).await;
    let pid = server.pid();
    let me = std::process::id();
    let (c0, b0, m0) = (
        cpu_seconds(pid),
        BYTES_READ.load(Ordering::Relaxed),
        cpu_seconds(me),
    );
    let (p0, s0, e0) = (
        hls.playlists.load(Ordering::Relaxed),
        hls.segments.load(Ordering::Relaxed),
        hls.errors.load(Ordering::Relaxed),
    );
    hls.recording.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    sleep(Duration::from_secs(a.window)).await;
    hls.recording.store(false, Ordering::Relaxed);
    let (c1, b1, m1) = (
        cpu_seconds(pid),
        BYTES_READ.load(Ordering::Relaxed),
        cpu_seconds(me),
    );
    let secs = t0.elapsed().as_secs_f64();
    if !server.alive() {
        bail!("origin died:\n{}", server.log_tail());
    }
    for h in &handles {
        h.abort();
    }
    let _ = publisher.stop();
    drop(server);
    for h in handles {
        let _ = h.await;
    }
    let mut lat = std::mem::take(&mut *hls.latencies.lock().unwrap());
    lat.sort_by(|x, y| x.total_cmp(y));
    Ok(Row {
        mode,
        n,
        gbit: (b1 - b0) as f64 * 8.0 / 1e9,
        cpu_s: c1.unwrap_or(0.0) - c0.unwrap_or(0.0),
        bench_cpu_pct: (m1.unwrap_or(0.0) - m0.unwrap_or(0.0)) / secs * 100.0,
        playlists: hls.playlists.load(Ordering::Relaxed) - p0,
        segments: hls.segments.load(Ordering::Relaxed) - s0,
        errors: hls.errors.load(Ordering::Relaxed) - e0,
        lat_p50: percentile(&lat, 50.0),
        lat_p99: percentile(&lat, 99.0),
        lat_max: lat.last().copied(),
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    a.cores.pin_client();
    let flv = test_flv(a.clip_seconds)?;
    let clip = Arc::new(Clip::load(&flv).context("loading the test clip")?);
    println!(
        "clip: {} ({:.2} Mbit/s); clients {:?}; segment {} s; window {} s",
        flv.display(),
        clip.mbit_per_s(),
        a.clients,
        a.segment,
        a.window
    );
    let mut modes = vec![Mode::Flv, Mode::Hls];
    if a.low_latency {
        modes.extend([Mode::LlHls, Mode::LlBlocking]);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rows = Vec::new();
        for &n in &a.clients {
            for &m in &modes {
                eprintln!("[hls] {} N={n} ...", m.name());
                match run_point(m, n, &a, &clip).await {
                    Ok(r) => rows.push(r),
                    Err(e) => eprintln!("[hls] {} N={n} failed: {e:#}", m.name()),
                }
            }
        }
        println!();
        println!(
            "{:<15} {:>6} {:>8} {:>8} {:>10} {:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7}",
            "mode", "N", "Gbit", "cpu s", "cpu/Gbit", "playlists", "segments", "errors", "pl p50", "pl p99", "pl max", "bench%"
        );
        for r in &rows {
            println!(
                "{:<15} {:>6} {:>8.2} {:>8.2} {:>10} {:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7.0}",
                r.mode.name(),
                r.n,
                r.gbit,
                r.cpu_s,
                fmt_opt((r.gbit > 0.0).then(|| r.cpu_s / r.gbit), 3),
                r.playlists,
                r.segments,
                r.errors,
                fmt_opt(r.lat_p50, 1),
                fmt_opt(r.lat_p99, 1),
                fmt_opt(r.lat_max, 1),
                r.bench_cpu_pct
            );
        }
        println!("(cpu = origin utime+stime over the window, one tokio worker, pinned; pl = playlist request latency in ms, HLS only (for LL-HLS blocking it includes the wait for the next part); segments = segments or parts fetched; bench% near 100 means the client side was the limit)");
        Ok(())
    })
}
