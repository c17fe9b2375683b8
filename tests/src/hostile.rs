//! Support for the hostile-input tests (issue 10): process accounting from /proc (VmRSS/VmHWM,
//! open fds, accepted connections), raw HTTP and RTMP clients that
//! misbehave on purpose, a synthetic publisher, a recording coworker stub that answers
//! ownership queries in SRS format, and `origin cluster` as a child process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{OriginProc, bin_path};

// ---------------------------------------------------------------------------------------
// /proc accounting

/// How many TCP connections to local `port` process `pid` has accepted (holds as fds);
/// connections the kernel completed but the process has not accepted yet do not count.
pub fn accepted_on(pid: u32, port: u16) -> usize {
    let want = format!(":{port:04X}");
    let mut inodes = std::collections::HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in text.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() > 9 && c[1].ends_with(&want) && c[3] != "0A" {
                inodes.insert(format!("socket:[{}]", c[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| inodes.contains(l.to_string_lossy().as_ref()))
        })
        .count()
}

/// The origin process behind an [`OriginProc`].
pub fn pid(o: &OriginProc) -> u32 {
    o.pid()
}

/// A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS").unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

pub fn hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM").unwrap_or_else(|| panic!("no VmHWM for pid {pid}"))
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Whether `origin serve` knows `flag` (e.g. `--http-header-timeout`).
pub fn origin_supports(flag: &str) -> bool {
    let out = Command::new(bin_path("origin"))
        .args(["serve", "--help"])
        .output()
        .expect("run origin serve --help");
    String::from_utf8_lossy(&out.stdout).contains(flag)
}

/// `[flag, value]` if the origin knows the flag, else nothing (the test then reports the
/// missing flag among its failures).
pub fn flag_if_supported(flag: &str, value: &str, missing: &mut Vec<String>) -> Vec<String> {
    if origin_supports(flag) {
        vec![flag.to_string(), value.to_string()]
    } else {
        missing.push(format!("`origin serve` has no {flag} flag"));
        Vec::new()
    }
}

/// `[flag, value]` if the origin knows the flag, else nothing, silently (for flags that
/// select what older builds did anyway, like `--route redirect`).
pub fn flag_if_known(flag: &str, value: &str) -> Vec<String> {
    if origin_supports(flag) {
        vec![flag.to_string(), value.to_string()]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP

/// A parsed response head read from a raw socket; `rest` holds body bytes already read.
#[derive(Debug)]
pub struct RawHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub rest: Vec<u8>,
}

impl RawHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a response head (up to 64 KiB) from `sock`, within `limit`.
pub async fn read_head(sock: &mut TcpStream, limit: Duration) -> Result<RawHead, String> {
    let mut buf = Vec::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line `{status_line}`"))?;
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            return Ok(RawHead {
                status,
                headers,
                rest: buf[end + 4..].to_vec(),
            });
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, sock.read(&mut chunk))
            .await
            .map_err(|_| "timed out reading the response head".to_string())?
            .map_err(|e| format!("reading the response head: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `GET <path>` (path as given, already encoded) and reads the response head.
pub async fn get_head(
    port: u16,
    path: &str,
    limit: Duration,
) -> Result<(RawHead, TcpStream), String> {
    let mut sock = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect :{port}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://player.example\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let head = read_head(&mut sock, limit).await?;
    Ok((head, sock))
}

/// Whether the peer closed `sock` (EOF or reset) within `limit`, discarding what it reads.
pub async fn closed_within(sock: &mut TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Percent-decodes a URL path segment (strictly: a bad escape is an error).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// The `/api/v1/streams` entries of an origin.
pub async fn stream_list(o: &OriginProc) -> Vec<serde_json::Value> {
    let v = crate::http("GET", &o.api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    v["streams"].as_array().cloned().unwrap_or_default()
}

/// Players of `live/<stream>` as `/api/v1/streams` lists them (None if not listed).
pub async fn players_of(o: &OriginProc, stream: &str) -> Option<u64> {
    let v = crate::http("GET", &o.api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["app"] == "live" && s["stream"] == stream)
        .and_then(|s| s["players"].as_u64())
}

// ---------------------------------------------------------------------------------------
// A continuous HTTP-FLV reader

/// Reads an HTTP-FLV body as fast as it comes and counts the bytes; aborted on drop.
pub struct FlvReader {
    pub bytes: Arc<AtomicU64>,
    pub head: Option<RawHead>,
    task: tokio::task::JoinHandle<()>,
}

impl FlvReader {
    pub async fn start(port: u16, path: &str) -> Result<Self, String> {
        let (head, mut sock) = get_head(port, path, Duration::from_secs(10)).await?;
        if head.status != 200 {
            return Err(format!("GET {path}: HTTP {}", head.status));
        }
        let bytes = Arc::new(AtomicU64::new(head.rest.len() as u64));
        let b = bytes.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                b.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Ok(Self {
            bytes,
            head: Some(head),
            task,
        })
    }

    pub fn received(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for FlvReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// RTMP: raw handshake, synthetic publisher

/// TCP connect and the RTMP handshake (as a client), nothing more.
pub async fn rtmp_handshake(port: u16) -> std::io::Result<TcpStream> {
    use origin::rtmp::handshake::{self, PACKET_SIZE};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    s.write_all(&handshake::client_c0c1(true)).await?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * PACKET_SIZE];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut s0s1s2))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    s.write_all(&handshake::client_c2(&s0s1s2[1..1 + PACKET_SIZE]))
        .await?;
    Ok(s)
}

/// The chunked bytes of one AMF0 command message of `total` payload bytes sent before
/// `connect`: `releaseStream`, transaction 0, null, then one AMF0 long string filling the
/// rest. Preceded by a Set Chunk Size of 64 KiB.
pub fn oversize_command(total: usize) -> BytesMut {
    use origin::rtmp::chunk::ChunkEncoder;
    use origin::rtmp::message::{Control, csid, kind};
    let mut payload = Vec::with_capacity(total);
    payload.push(0x02);
    payload.extend_from_slice(&13u16.to_be_bytes());
    payload.extend_from_slice(b"releaseStream");
    payload.push(0x00);
    payload.extend_from_slice(&0f64.to_be_bytes());
    payload.push(0x05);
    let fill = total - payload.len() - 5;
    payload.push(0x0c);
    payload.extend_from_slice(&(fill as u32).to_be_bytes());
    payload.resize(total, b'A');
    let mut enc = ChunkEncoder::new(origin::rtmp::chunk::DEFAULT_CHUNK_SIZE);
    let mut out = BytesMut::with_capacity(total + total / 1000 + 64);
    let (t, p) = Control::SetChunkSize(65_536).encode();
    enc.encode(&mut out, csid::CONTROL, 0, t, 0, &p);
    enc.set_chunk_size(65_536);
    enc.encode(&mut out, csid::COMMAND, 0, kind::COMMAND_AMF0, 0, &payload);
    out
}

/// What a [`SynthPublisher`] sends.
#[derive(Debug, Clone, Copy)]
pub struct Synth {
    pub video: bool,
    pub audio: bool,
    /// Bytes per video frame.
    pub video_bytes: usize,
    pub fps: u32,
}

impl Default for Synth {
    fn default() -> Self {
        Self {
            video: true,
            audio: true,
            video_bytes: 2_000,
            fps: 25,
        }
    }
}

/// Publishes synthetic H.264/AAC messages (sequence headers, then every video frame a
/// keyframe) with real-time timestamps through `origin::client`; stops on drop.
pub struct SynthPublisher {
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl SynthPublisher {
    /// Connects and publishes; returns once Publish.Start arrived.
    pub async fn start(url: &str, synth: Synth) -> Result<Self, String> {
        use origin::rtmp::message::kind;
        let mut c = origin::client::Client::connect(url)
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        c.publish(None)
            .await
            .map_err(|e| format!("publish {url}: {e}"))?;
        let task = tokio::spawn(async move {
            let err = |e: origin::client::ClientError| e.to_string();
            if synth.video {
                // AVCDecoderConfigurationRecord (baseline, level 3.0, 4-byte NALU lengths).
                let seq = [
                    0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x04, 0x67,
                    0x42, 0xc0, 0x1e, 0x01, 0x00, 0x04, 0x68, 0xce, 0x3c, 0x80,
                ];
                c.send_media(kind::VIDEO, 0, &seq).await.map_err(err)?;
            }
            if synth.audio {
                c.send_media(kind::AUDIO, 0, &[0xaf, 0x00, 0x12, 0x10])
                    .await
                    .map_err(err)?;
            }
            let mut frame = vec![0u8; synth.video_bytes.max(9)];
            frame[..5].copy_from_slice(&[0x17, 0x01, 0, 0, 0]);
            let n = (frame.len() - 9) as u32;
            frame[5..9].copy_from_slice(&n.to_be_bytes());
            frame[9] = 0x65;
            let step = Duration::from_millis(1000 / u64::from(synth.fps.max(1)));
            let start = tokio::time::Instant::now();
            for i in 0u64.. {
                let ts = (step.as_millis() as u64 * i) as u32;
                tokio::time::sleep_until(start + step * i as u32).await;
                if synth.video {
                    c.send_media(kind::VIDEO, ts, &frame).await.map_err(err)?;
                }
                if synth.audio {
                    c.send_media(kind::AUDIO, ts, &[0xaf, 0x01, 0x21, 0x10, 0x04, 0x60])
                        .await
                        .map_err(err)?;
                }
                c.flush().await.map_err(err)?;
            }
            Ok(())
        });
        Ok(Self { task })
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for SynthPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// A coworker stub that records ownership queries

/// A real HTTP server on loopback that answers `/api/v1/clusters` in SRS format, after a
/// delay, either "owned by `owner`" or "not owned", and counts the queries it got.
pub struct CoworkerStub {
    pub addr: std::net::SocketAddr,
    pub queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Who the stub says owns every stream.
#[derive(Debug, Clone)]
pub struct StubOwner {
    pub rtmp_port: u16,
    pub api_port: u16,
    pub flv_port: u16,
}

impl CoworkerStub {
    pub async fn start(owner: Option<StubOwner>, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        let queries = Arc::new(AtomicU64::new(0));
        let q = queries.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let q = q.clone();
                let owner = owner.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let q = q.clone();
                        let owner = owner.clone();
                        async move {
                            let is_query = req.uri().path() == origin_wire::paths::CLUSTERS;
                            if is_query {
                                q.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::time::sleep(delay).await;
                            let params: HashMap<String, String> = req
                                .uri()
                                .query()
                                .unwrap_or_default()
                                .split('&')
                                .filter_map(|kv| kv.split_once('='))
                                .map(|(k, v)| {
                                    (k.to_string(), percent_decode(v).unwrap_or_default())
                                })
                                .collect();
                            let p = |k: &str| params.get(k).cloned().unwrap_or_default();
                            let query = serde_json::json!({
                                "ip": p("ip"), "vhost": p("vhost"), "app": p("app"), "stream": p("stream"),
                            });
                            let origin = match &owner {
                                Some(o) => serde_json::json!({
                                    "ip": "127.0.0.1",
                                    "port": o.rtmp_port,
                                    "vhost": "__defaultVhost__",
                                    "api": format!("127.0.0.1:{}", o.api_port),
                                    "routers": [format!("127.0.0.1:{}", o.api_port)],
                                    "http": format!("127.0.0.1:{}", o.flv_port),
                                }),
                                None => serde_json::Value::Null,
                            };
                            let body = serde_json::json!({"code": 0, "data": {"query": query, "origin": origin}});
                            let resp = hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .expect("response");
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            queries,
            task,
        }
    }

    pub fn count(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for CoworkerStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// Starts `n` origins that list each other as coworkers (like [`crate::start_cluster`]),
/// origin `i` with the extra flags `extra(i)`.
pub fn cluster_with(n: usize, extra: impl Fn(usize) -> Vec<String>) -> Vec<OriginProc> {
    let ports: Vec<(u16, u16, u16)> = (0..n)
        .map(|_| (crate::free_port(), crate::free_port(), crate::free_port()))
        .collect();
    let all: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{}", p.1)).collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, &(r, a, f))| {
            let mut o = crate::OriginOpts {
                coworkers: all.clone(),
                ..crate::OriginOpts::default()
            };
            o.extra = extra(i);
            o.extra
                .extend(["--self-api".to_string(), format!("127.0.0.1:{a}")]);
            OriginProc::start_on(r, a, f, &o)
        })
        .collect()
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.get(s.rfind(')')? + 2..)?.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `origin cluster ...` as a child process with its stdout/stderr captured to a file;
/// on drop SIGTERM, then SIGKILL of it and of the origins it started.
pub struct ClusterProc {
    child: Child,
    log: std::path::PathBuf,
}

impl ClusterProc {
    pub fn start(args: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "origin-cluster-test-{}-{}.log",
            std::process::id(),
            crate::free_port()
        ));
        let f = std::fs::File::create(&log).expect("cluster log");
        let child = Command::new(bin_path("origin"))
            .arg("cluster")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log fd"))
            .stderr(f)
            .spawn()
            .expect("spawn origin cluster");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM; waits up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        signal(self.child.id(), "TERM");
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

impl Drop for ClusterProc {
    fn drop(&mut self) {
        let kids = children_of(self.child.id());
        if self.try_wait().is_none() {
            let _ = self.terminate(Duration::from_secs(5));
        }
        // Only origins this cluster started (a pid is checked again before the signal).
        for k in kids {
            let cmdline = std::fs::read(format!("/proc/{k}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("origin") && cmdline.contains("serve") {
                signal(k, "KILL");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `origin serve` with stdout and stderr going to a pipe (as under a log collector);
/// killed on drop. Collects what it writes.
pub struct PipedOrigin {
    child: Child,
    out: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl PipedOrigin {
    pub fn start(args: &[String]) -> Self {
        let mut child = Command::new(bin_path("origin"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn origin");
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        for mut r in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        Self { child, out }
    }

    pub fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for PipedOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `f` resolves to `Some`, polling every 50 ms, for at most `limit`.
pub async fn wait_async<T, Fut: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut f: impl FnMut() -> Fut,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
