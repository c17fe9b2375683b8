//! Support for the cross-component tests: locating and starting the workspace binaries,
//! free ports, real ffmpeg/ffprobe, and a small HTTP client.

#![forbid(unsafe_code)]

pub mod hostile;
pub mod players;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

// One origin-process harness for every test crate: origin_test_support. Ports are
// kernel-assigned unless a test asks for fixed ones (no bind-then-release race).
pub use origin_test_support::{OriginOpts, Thaw, bin_path, free_port, signal, workspace_root};

/// One origin process on loopback; killed on drop. A thin handle over
/// [`origin_test_support::OriginProc`] (which it derefs to: `restart`, `pid`, ...).
pub struct OriginProc {
    pub rtmp: u16,
    pub api: u16,
    pub flv: u16,
    inner: origin_test_support::OriginProc,
    /// The coworker file of [`start_cluster`], removed with the last origin.
    _cluster_dir: Option<std::sync::Arc<origin_test_support::TempDir>>,
}

impl OriginProc {
    fn wrap(
        inner: origin_test_support::OriginProc,
        dir: Option<std::sync::Arc<origin_test_support::TempDir>>,
    ) -> Self {
        Self {
            rtmp: inner.rtmp,
            api: inner.api,
            flv: inner.flv,
            inner,
            _cluster_dir: dir,
        }
    }

    /// An origin on 127.0.0.1 with kernel-assigned ports.
    pub fn start(opts: &OriginOpts) -> Self {
        Self::wrap(origin_test_support::OriginProc::start(opts), None)
    }

    /// An origin on 127.0.0.1 with the given ports (0: kernel-assigned).
    pub fn start_on(rtmp: u16, api: u16, flv: u16, opts: &OriginOpts) -> Self {
        Self::wrap(
            origin_test_support::OriginProc::start_on(rtmp, api, flv, opts),
            None,
        )
    }

    pub fn api_addr(&self) -> String {
        self.inner.api_addr()
    }

    pub fn rtmp_url(&self, path: &str) -> String {
        self.inner.rtmp_url(path)
    }

    pub fn flv_url(&self, path: &str) -> String {
        self.inner.flv_url(path)
    }

    pub fn api_url(&self, path: &str) -> String {
        self.inner.api_url(path)
    }

    /// Publishes an ffmpeg test pattern to `app/stream` and waits until this origin has it
    /// (video codec known).
    pub async fn publish_test_pattern(
        &self,
        path: &str,
        size: &str,
        rate: u32,
        seconds: u32,
    ) -> Ffmpeg {
        let ff = ffmpeg_publish(&self.rtmp_url(path), size, rate, seconds);
        let (app, stream) = path.split_once('/').expect("app/stream");
        let published = wait_published(
            &self.api_url("/api/v1/streams"),
            app,
            stream,
            Duration::from_secs(30),
        )
        .await;
        assert!(
            published,
            "{path} was not published on origin :{}",
            self.rtmp
        );
        ff
    }

    /// Stops the process with SIGKILL.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.inner.terminate();
    }
}

impl std::ops::Deref for OriginProc {
    type Target = origin_test_support::OriginProc;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for OriginProc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

/// Starts `n` origins that list each other (and themselves) as coworkers.
pub fn start_cluster(n: usize, opts: &OriginOpts) -> Vec<OriginProc> {
    start_cluster_spread(&vec!["127.0.0.1".to_string(); n], opts)
}

/// Starts one origin per address of `ips` (each on its own loopback address, like pods),
/// all listing each other (and themselves) as coworkers.
pub fn start_cluster_spread(ips: &[String], opts: &OriginOpts) -> Vec<OriginProc> {
    let (procs, dir) = origin_test_support::start_cluster_on(ips, opts)
        .unwrap_or_else(|e| panic!("origin cluster did not start: {e}"));
    let dir = std::sync::Arc::new(dir);
    procs
        .into_iter()
        .map(|p| OriginProc::wrap(p, Some(dir.clone())))
        .collect()
}

/// Writes an admin token to a fresh temp file.
pub fn token_file(token: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "origin-test-token-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&p, token).expect("write token");
    p
}

/// Fails clearly when ffmpeg is not installed (the test command installs it).
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            ok,
            "{tool} is not installed: run ./scripts/test (it installs ffmpeg from Debian)"
        );
    }
}

/// A running ffmpeg publisher; killed on drop.
pub struct Ffmpeg(pub Child);

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Ffmpeg {
    /// Exit status if it has finished.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Publishes an H.264 + AAC test pattern in real time for `seconds`.
pub fn ffmpeg_publish(url: &str, size: &str, rate: u32, seconds: u32) -> Ffmpeg {
    let child = ffmpeg_publish_command(url, size, rate, seconds, &[])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    Ffmpeg(child)
}

/// The ffmpeg command [`ffmpeg_publish`] runs (GOP of 2 s), with `video` added to the
/// encoder's options (a constant bitrate, say), for a caller that spawns it its own way.
pub fn ffmpeg_publish_command(
    url: &str,
    size: &str,
    rate: u32,
    seconds: u32,
    video: &[&str],
) -> Command {
    require_ffmpeg();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate={rate}"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(video)
        .args(["-g", &(rate * 2).to_string(), "-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// One stream as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub frame_rate: Option<String>,
}

/// Runs ffprobe on `url` and returns its audio and video streams.
pub fn ffprobe(url: &str) -> Result<Vec<Probed>, String> {
    require_ffmpeg();
    let out = Command::new("timeout")
        .args([
            "20",
            "ffprobe",
            "-hide_banner",
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
        ])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,width,height,r_frame_rate",
            "-of",
            "json",
            url,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    Ok(streams
        .iter()
        .filter(|s| matches!(s["codec_type"].as_str(), Some("audio" | "video")))
        .map(|s| Probed {
            codec_type: s["codec_type"].as_str().unwrap_or_default().to_string(),
            codec_name: s["codec_name"].as_str().unwrap_or_default().to_string(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
            frame_rate: s["r_frame_rate"].as_str().map(str::to_string),
        })
        .collect())
}

/// Waits until `f` returns `Some`, polling every 50 ms.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP request (no redirects followed).
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("HTTP request timed out")
        .expect("HTTP request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Waits until `origin` reports `stream` in `app` as published.
pub async fn wait_published(api_url: &str, app: &str, stream: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let r = http("GET", api_url, &[], "").await;
        if r.status == 200 {
            let v = r.json();
            if v["streams"].as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["app"] == app
                        && s["stream"] == stream
                        && s["publishing"] == true
                        && s["video_codec"].is_string()
                })
            }) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Local address helper for black-holed coworkers: a listener that accepts and never answers.
pub fn black_hole() -> (std::thread::JoinHandle<()>, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s); // keep them open, never answer
            if held.len() > 10_000 {
                break;
            }
        }
    });
    (h, addr)
}
