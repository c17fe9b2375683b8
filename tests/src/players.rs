//! Real third-party players run against test origins, each with a deadline, returning what
//! they received: rtmpdump (librtmp), GStreamer's `rtmp2src`, and headless Chromium with
//! the web players mpegts.js and hls.js (`tests/browser/play.mjs`).
//!
//! The functions block (call them from `spawn_blocking` in async tests). Every spawned
//! process runs in its own process group and is killed with its group when its guard
//! drops, on success, failure, timeout or panic; the browser's own process group (named on
//! the runner's stderr) goes with it. Errors carry the tail of the tool's stderr.
//!
//! `require_*` panic with a clear message when a tool is missing: `./scripts/test` installs
//! them all, so a missing one is a broken setup, never a reason to skip.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// What went wrong running a real player.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    /// The tool could not be started at all.
    #[error("{tool} could not be started: {source}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The tool ran but did not get what it needed.
    #[error("{tool} on {url}: {what}\n--- {tool} output (tail) ---\n{tail}")]
    Failed {
        tool: &'static str,
        url: String,
        what: String,
        tail: String,
    },
    /// The browser did not play; `result` is what the page reported, if it got that far.
    #[error("headless Chromium with {player} did not play {url}: {}\n{}--- play.mjs stderr (tail) ---\n{stderr_tail}",
        result.as_ref().and_then(|r| r.error.as_deref()).unwrap_or("no result"),
        result.as_ref().map(|r| r.diagnostics()).unwrap_or_default())]
    Browser {
        player: &'static str,
        url: String,
        result: Option<Box<BrowserResult>>,
        stderr_tail: String,
    },
}

// ---------------------------------------------------------------------------------------
// Process guard

/// The last bytes a stream produced (carriage returns turned into newlines, for rtmpdump's
/// progress lines).
#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
    /// `browser-pid N` seen on play.mjs's stderr.
    browser_pid: Option<u32>,
}

const TAIL_BYTES: usize = 6 * 1024;

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        for &b in chunk {
            self.buf.push_back(if b == b'\r' { b'\n' } else { b });
        }
        while self.buf.len() > TAIL_BYTES {
            self.buf.pop_front();
        }
        if self.browser_pid.is_none() {
            self.browser_pid = browser_pid_in(&self.text());
        }
    }

    fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn browser_pid_in(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        l.strip_prefix("play.mjs: browser-pid ")
            .and_then(|p| p.trim().parse().ok())
    })
}

/// A spawned tool: own process group, stderr drained into a tail, stdout handed to a
/// reader thread. Drop kills the group (and a browser group it reported) and reaps it.
struct Spawned<T: Send + 'static> {
    child: Child,
    /// The child has been waited for: its pid (and so its group id) may be reused now.
    reaped: bool,
    browser_killed: bool,
    stderr: Arc<Mutex<Tail>>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Spawned<T> {
    fn spawn(
        tool: &'static str,
        mut cmd: Command,
        read_stdout: impl FnOnce(std::process::ChildStdout) -> T + Send + 'static,
    ) -> Result<Self, PlayerError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|source| PlayerError::Spawn { tool, source })?;
        let stderr = Arc::new(Mutex::new(Tail::default()));
        let stderr_reader = child.stderr.take().map(|mut err| {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push(&buf[..n]);
                    }
                }
            })
        });
        let stdout_reader = child
            .stdout
            .take()
            .map(|out| std::thread::spawn(move || read_stdout(out)));
        Ok(Self {
            child,
            reaped: false,
            browser_killed: false,
            stderr,
            stderr_reader,
            stdout_reader,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit until `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.reaped = true;
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the tool to stop with `signal` (it flushes its output), then waits up to
    /// `grace`; past that the group is killed.
    fn stop(&mut self, signal: &str, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.wait_until(Instant::now()) {
            return Some(s);
        }
        signal_process(self.pid(), signal);
        match self.wait_until(Instant::now() + grace) {
            Some(s) => Some(s),
            None => self.kill_all(),
        }
    }

    /// Kills the browser's group (once) and, unless the child is already reaped, the
    /// child's group; then reaps the child.
    fn kill_all(&mut self) -> Option<ExitStatus> {
        let browser = self.stderr.lock().ok().and_then(|t| t.browser_pid);
        if let (false, Some(b)) = (self.browser_killed, browser) {
            // Once our child is gone the browser normally is too (playwright closes it);
            // kill its group only while that pid still leads a Chromium group, never a
            // process that got the pid since.
            if !self.reaped || is_chromium_group_leader(b) {
                signal_group(b, "KILL");
            }
            self.browser_killed = true;
        }
        if self.reaped {
            return None;
        }
        signal_group(self.pid(), "KILL");
        let _ = self.child.kill();
        self.reaped = true;
        self.child.wait().ok()
    }

    /// Ends the tool (if still running) and returns its stdout reader's result, its exit
    /// status and the tail of its stderr.
    fn finish(mut self, signal: &str, grace: Duration) -> (Option<T>, Option<ExitStatus>, String) {
        let status = self.stop(signal, grace);
        // Group members (a browser) may still hold the pipes: make sure they are gone too.
        self.kill_all();
        let out = self.stdout_reader.take().and_then(|h| h.join().ok());
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let tail = self.stderr_tail();
        (out, status, tail)
    }

    fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }
}

impl<T: Send + 'static> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// `pid` is alive, leads its own process group, and is Chromium.
fn is_chromium_group_leader(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // pid (comm) state ppid pgrp ...
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next();
    let pgrp = rest.nth(1).and_then(|g| g.parse::<u32>().ok());
    comm.contains("chrom") && state != Some("Z") && pgrp == Some(pid)
}

fn signal_process(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Reads a whole stream, keeping at most `cap` bytes (the rest is counted, not kept).
fn read_capped(mut r: impl Read, cap: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    (kept, total)
}

// ---------------------------------------------------------------------------------------
// Tool checks

fn tool_runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Panics unless rtmpdump is installed.
pub fn require_rtmpdump() {
    assert!(
        tool_runs("rtmpdump", "--help"),
        "rtmpdump is not installed: run ./scripts/test (it installs Debian's rtmpdump)"
    );
}

/// Panics unless gst-launch-1.0 and every element the rtmp2src pipeline uses are there.
pub fn require_gstreamer() {
    assert!(
        tool_runs("gst-launch-1.0", "--version"),
        "gst-launch-1.0 is not installed: run ./scripts/test (it installs gstreamer1.0-tools)"
    );
    for (element, package) in [
        ("rtmp2src", "gstreamer1.0-plugins-bad"),
        ("flvdemux", "gstreamer1.0-plugins-good"),
        ("h264parse", "gstreamer1.0-plugins-bad"),
        ("avdec_h264", "gstreamer1.0-libav"),
        ("fakesink", "gstreamer1.0-tools"),
    ] {
        let ok = Command::new("gst-inspect-1.0")
            .args(["--exists", element])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "GStreamer element {element} is missing: run ./scripts/test (it installs {package})"
        );
    }
}

/// The browser test runner directory (`tests/browser`).
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Panics unless Node >= 20, Debian's Chromium and the npm packages are installed.
pub fn require_browser() {
    let out = Command::new("node")
        .args(["-p", "process.versions.node"])
        .output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!("node is not installed: the browser tests need Node >= 20 and npm"),
    };
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(major >= 20, "node {version} is too old: need >= 20");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run ./scripts/test (it installs Debian's chromium)"
    );
    let dir = browser_dir();
    for f in [
        "play.mjs",
        "page.html",
        "node_modules/playwright-core/package.json",
        "node_modules/mpegts.js/dist/mpegts.js",
        "node_modules/hls.js/dist/hls.min.js",
    ] {
        assert!(
            dir.join(f).exists(),
            "{} is missing: run ./scripts/test (it runs npm ci in tests/browser)",
            dir.join(f).display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// FLV as received by a player

/// The kind of an FLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
    Script,
    Other(u8),
}

/// What a video tag's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoHeader {
    /// FLV frame type: 1 keyframe, 2 inter frame, 5 info/command frame.
    pub frame_type: u8,
    /// Decoder configuration (AVC/HEVC sequence header, enhanced-RTMP SequenceStart).
    pub config: bool,
    /// Carries coded pictures.
    pub picture: bool,
    /// Enhanced RTMP (FourCC) header.
    pub enhanced: bool,
}

impl VideoHeader {
    pub fn keyframe(&self) -> bool {
        self.frame_type == 1
    }

    /// Parses the first bytes of an FLV video tag body (legacy and enhanced RTMP).
    pub fn parse(body: &[u8]) -> Option<Self> {
        let b0 = *body.first()?;
        if b0 & 0x80 != 0 {
            // Enhanced RTMP: [1 IsExHeader][3 FrameType][4 PacketType][FourCC]...
            let frame_type = (b0 >> 4) & 0x07;
            let packet_type = b0 & 0x0f;
            Some(Self {
                frame_type,
                config: packet_type == 0 || packet_type == 5,
                picture: frame_type != 5 && (packet_type == 1 || packet_type == 3),
                enhanced: true,
            })
        } else {
            let frame_type = b0 >> 4;
            let codec = b0 & 0x0f;
            let (config, picture) = match codec {
                // AVC (7) and the common legacy HEVC id (12): AVCPacketType follows.
                7 | 12 => match body.get(1) {
                    Some(0) => (true, false),
                    Some(1) => (false, frame_type != 5),
                    _ => (false, false),
                },
                _ => (false, frame_type != 5),
            };
            Some(Self {
                frame_type,
                config,
                picture,
                enhanced: false,
            })
        }
    }
}

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub kind: TagKind,
    /// Timestamp in milliseconds (with the extension byte).
    pub timestamp: u32,
    pub size: usize,
    pub video: Option<VideoHeader>,
}

/// An FLV byte stream as a player wrote it, split into tags. A truncated last tag (the
/// player was stopped mid-tag) is ignored; anything after a malformed tag is not parsed.
#[derive(Debug, Clone, Default)]
pub struct FlvCapture {
    /// The bytes kept (at most [`MAX_KEPT`]); `total_bytes` counts all.
    pub data: Vec<u8>,
    pub total_bytes: u64,
    /// The FLV header's audio/video flags.
    pub has_audio_flag: bool,
    pub has_video_flag: bool,
    pub tags: Vec<FlvTag>,
}

/// Most bytes of a player's output kept in memory.
pub const MAX_KEPT: usize = 64 * 1024 * 1024;

impl FlvCapture {
    /// Parses `data`; `None` if it does not start with an FLV header.
    pub fn parse(data: Vec<u8>, total_bytes: u64) -> Option<Self> {
        if data.len() < 9 || &data[..3] != b"FLV" {
            return None;
        }
        let flags = data[4];
        let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
        let mut tags = Vec::new();
        // header, then PreviousTagSize0
        let mut pos = header_len.checked_add(4)?;
        while let Some(h) = data.get(pos..pos + 11) {
            let kind = match h[0] & 0x1f {
                8 => TagKind::Audio,
                9 => TagKind::Video,
                18 => TagKind::Script,
                k => TagKind::Other(k),
            };
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let body_start = pos + 11;
            let Some(body) = data.get(body_start..body_start + size) else {
                break; // truncated
            };
            if data.get(body_start + size..body_start + size + 4).is_none() {
                break; // truncated before PreviousTagSize
            }
            let video = if kind == TagKind::Video {
                VideoHeader::parse(body)
            } else {
                None
            };
            tags.push(FlvTag {
                kind,
                timestamp,
                size,
                video,
            });
            if matches!(kind, TagKind::Other(_)) {
                break; // not FLV any more
            }
            pos = body_start + size + 4;
        }
        Some(Self {
            data,
            total_bytes,
            has_audio_flag: flags & 0x04 != 0,
            has_video_flag: flags & 0x01 != 0,
            tags,
        })
    }

    pub fn count(&self, kind: TagKind) -> usize {
        self.tags.iter().filter(|t| t.kind == kind).count()
    }

    pub fn video_tags(&self) -> usize {
        self.count(TagKind::Video)
    }

    pub fn audio_tags(&self) -> usize {
        self.count(TagKind::Audio)
    }

    /// Video tags that carry pictures (not configuration).
    pub fn pictures(&self) -> impl Iterator<Item = (&FlvTag, VideoHeader)> {
        self.tags
            .iter()
            .filter_map(|t| t.video.filter(|v| v.picture).map(|v| (t, v)))
    }

    /// The first video tag is marked as a keyframe.
    pub fn first_video_is_keyframe(&self) -> bool {
        self.tags
            .iter()
            .find_map(|t| t.video)
            .is_some_and(|v| v.keyframe())
    }

    /// The first video tag is decoder configuration (what a decoder needs first).
    pub fn first_video_is_config(&self) -> bool {
        self.tags
            .iter()
            .find_map(|t| t.video)
            .is_some_and(|v| v.config)
    }

    /// The first picture is a keyframe (a player can start decoding at once).
    pub fn first_picture_is_keyframe(&self) -> bool {
        self.pictures().next().is_some_and(|(_, v)| v.keyframe())
    }

    /// Timestamps of `kind` never go backwards.
    pub fn timestamps_non_decreasing(&self, kind: TagKind) -> bool {
        let ts: Vec<u32> = self
            .tags
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.timestamp)
            .collect();
        ts.windows(2).all(|w| w[0] <= w[1])
    }

    /// Milliseconds from the first to the last picture.
    pub fn video_span_ms(&self) -> u32 {
        let mut p = self.pictures().map(|(t, _)| t.timestamp);
        match p.next() {
            Some(first) => p.last().unwrap_or(first).saturating_sub(first),
            None => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// rtmpdump

/// What rtmpdump wrote.
#[derive(Debug)]
pub struct RtmpdumpCapture {
    pub flv: FlvCapture,
    pub exit: Option<ExitStatus>,
    pub stderr_tail: String,
}

/// Plays `url` with rtmpdump (`--live`, `--stop seconds`) for about `seconds` of wall
/// time and parses what it wrote as FLV. Errors when rtmpdump wrote no FLV (it could not
/// connect, was refused, or got no media), with rtmpdump's stderr.
pub fn rtmpdump_receive(url: &str, seconds: u32) -> Result<RtmpdumpCapture, PlayerError> {
    require_rtmpdump();
    let mut cmd = Command::new("rtmpdump");
    cmd.args(["--live", "-r", url])
        .args(["--stop", &seconds.to_string()])
        .args(["--timeout", "10"])
        .args(["-o", "-"]);
    let mut p = Spawned::spawn("rtmpdump", cmd, |out| read_capped(out, MAX_KEPT))?;
    // --stop counts stream time, which servers need not honour for live streams; the
    // wall clock stops it too. SIGTERM makes rtmpdump flush and exit.
    let _ = p.wait_until(Instant::now() + Duration::from_secs(u64::from(seconds)));
    let (out, exit, stderr_tail) = p.finish("TERM", Duration::from_secs(3));
    let (data, total) = out.unwrap_or_default();
    match FlvCapture::parse(data, total) {
        Some(flv) => Ok(RtmpdumpCapture {
            flv,
            exit,
            stderr_tail,
        }),
        None => Err(PlayerError::Failed {
            tool: "rtmpdump",
            url: url.into(),
            what: format!("no FLV received ({total} bytes, exit {exit:?})"),
            tail: stderr_tail,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// GStreamer rtmp2src

/// What GStreamer's `rtmp2src ! flvdemux ! h264parse ! avdec_h264` pipeline decoded.
#[derive(Debug, Clone)]
pub struct GstVideo {
    /// Decoded pictures that reached the sink.
    pub frames: u64,
    /// Size of the decoded pictures (from the decoder's output caps).
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub exit: Option<ExitStatus>,
    /// The tail of gst-launch's stderr.
    pub stderr_tail: String,
}

#[derive(Default)]
struct GstStdout {
    frames: u64,
    width: Option<u32>,
    height: Option<u32>,
    tail: Tail,
}

fn caps_int(line: &str, field: &str) -> Option<u32> {
    let start = line.find(&format!("{field}=(int)"))? + field.len() + 6;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn read_gst_stdout(out: std::process::ChildStdout) -> GstStdout {
    use std::io::BufRead;
    let mut s = GstStdout::default();
    let mut r = std::io::BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Lines of -v are short; a runaway line is cut, not buffered without end.
        match (&mut r).take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let l = String::from_utf8_lossy(&line);
        if l.contains("(vsink:sink)") && l.contains("chain") {
            s.frames += 1;
        } else if l.contains("avdec_h264") && l.contains("GstPad:src: caps = video/x-raw") {
            s.width = caps_int(&l, "width");
            s.height = caps_int(&l, "height");
        }
        if !l.contains("last-message = chain") {
            s.tail.push(&line);
        }
    }
    s
}

/// Plays `url` with GStreamer (`rtmp2src ! flvdemux ! h264parse ! avdec_h264 ! fakesink`)
/// for `seconds` of wall time and counts the decoded H.264 pictures. Errors when none were
/// decoded, with gst-launch's messages.
pub fn gst_rtmp2src_video_frames(url: &str, seconds: u32) -> Result<GstVideo, PlayerError> {
    require_gstreamer();
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["-e", "-v"])
        .arg("rtmp2src")
        .arg(format!("location={url}"))
        .arg("timeout=10")
        .args(["!", "flvdemux", "name=d", "d.video", "!", "queue"])
        .args(["!", "h264parse", "!", "avdec_h264"])
        .args(["!", "fakesink", "name=vsink", "silent=false", "sync=false"]);
    let mut p = Spawned::spawn("gst-launch-1.0", cmd, read_gst_stdout)?;
    let _ = p.wait_until(Instant::now() + Duration::from_secs(u64::from(seconds)));
    // SIGINT with -e: end of stream, flushed output, clean exit.
    let (out, exit, stderr_tail) = p.finish("INT", Duration::from_secs(3));
    let out = out.unwrap_or_default();
    if out.frames == 0 {
        return Err(PlayerError::Failed {
            tool: "gst-launch-1.0",
            url: url.into(),
            what: format!("no video frames decoded in {seconds} s (exit {exit:?})"),
            tail: format!("{}\n--- stdout ---\n{}", stderr_tail, out.tail.text()),
        });
    }
    Ok(GstVideo {
        frames: out.frames,
        width: out.width,
        height: out.height,
        exit,
        stderr_tail,
    })
}

// ---------------------------------------------------------------------------------------
// Headless Chromium

/// A web player in the test page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebPlayer {
    /// mpegts.js: HTTP-FLV (or MPEG-TS for URLs ending in `.ts`).
    Mpegts,
    /// hls.js: HLS playlists.
    Hls,
}

impl WebPlayer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mpegts => "mpegts",
            Self::Hls => "hls",
        }
    }
}

/// Options of one browser play.
#[derive(Debug, Clone)]
pub struct BrowserOpts {
    pub player: WebPlayer,
    pub url: String,
    /// hls.js `lowLatencyMode`.
    pub low_latency: bool,
    /// Success once `video.currentTime` advanced this many seconds from where playback
    /// started (and pictures are shown).
    pub min_time: f64,
    /// Deadline for that, inside the browser runner.
    pub timeout: Duration,
}

impl BrowserOpts {
    pub fn new(player: WebPlayer, url: &str) -> Self {
        Self {
            player,
            url: url.into(),
            low_latency: false,
            min_time: 1.0,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the test page reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrowserResult {
    pub ok: bool,
    pub current_time: f64,
    /// Where playback started (a live HLS player starts behind the edge, not at 0) and how
    /// far it advanced from there.
    pub start_time: f64,
    pub advanced: f64,
    pub video_width: u32,
    pub video_height: u32,
    pub error: Option<String>,
    /// Live-edge latency (hls.js only), and how it was measured: `program-date-time`
    /// (wall clock vs the picture's program date-time) or `hls.js-latency`.
    pub latency_ms: Option<f64>,
    pub latency_source: Option<String>,
    pub elapsed_ms: u64,
    /// Media element and player events, and the page's console, requests that failed and
    /// non-2xx answers (CORS refusals show here).
    pub events: Vec<String>,
    pub console: Vec<String>,
}

impl BrowserResult {
    /// Parses play.mjs's JSON line.
    pub fn from_json(v: &serde_json::Value) -> Self {
        let strings = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            ok: v["ok"].as_bool().unwrap_or(false),
            current_time: v["currentTime"].as_f64().unwrap_or(0.0),
            start_time: v["startTime"].as_f64().unwrap_or(0.0),
            advanced: v["advanced"].as_f64().unwrap_or(0.0),
            video_width: v["videoWidth"].as_u64().unwrap_or(0) as u32,
            video_height: v["videoHeight"].as_u64().unwrap_or(0) as u32,
            error: v["error"].as_str().map(str::to_string),
            latency_ms: v["latencyMs"].as_f64(),
            latency_source: v["latencySource"].as_str().map(str::to_string),
            elapsed_ms: v["elapsedMs"].as_u64().unwrap_or(0),
            events: strings("events"),
            console: strings("console"),
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "currentTime {:.2}, video {}x{}\n--- page events ---\n{}\n--- page console ---\n{}\n",
            self.current_time,
            self.video_width,
            self.video_height,
            self.events.join("\n"),
            self.console.join("\n")
        )
    }
}

/// Plays `url` in headless Chromium with `player` until `currentTime` advanced 1 s from
/// where playback started (30 s deadline).
pub fn browser_play(player: WebPlayer, url: &str) -> Result<BrowserResult, PlayerError> {
    browser_play_with(&BrowserOpts::new(player, url))
}

/// Plays with the given options; see `tests/browser/play.mjs`.
pub fn browser_play_with(o: &BrowserOpts) -> Result<BrowserResult, PlayerError> {
    require_browser();
    let dir = browser_dir();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("play.mjs"))
        .args(["--player", o.player.as_str()])
        .args(["--min-time", &o.min_time.to_string()])
        .args(["--timeout", &o.timeout.as_secs_f64().to_string()])
        .current_dir(&dir);
    if o.low_latency {
        cmd.arg("--low-latency");
    }
    cmd.arg(&o.url);
    let mut p = Spawned::spawn("node", cmd, |out| read_capped(out, 1024 * 1024))?;
    // play.mjs keeps its own deadline (and a hard one 10 s later); ours is the last resort.
    let exited = p
        .wait_until(Instant::now() + o.timeout + Duration::from_secs(20))
        .is_some();
    let (out, _exit, stderr_tail) = p.finish("TERM", Duration::from_secs(3));
    let (stdout, _) = out.unwrap_or_default();
    let text = String::from_utf8_lossy(&stdout);
    let result = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| BrowserResult::from_json(&v));
    match result {
        Some(r) if r.ok => Ok(r),
        Some(mut r) => {
            if r.error.is_none() {
                r.error = Some("play.mjs reported failure without an error".into());
            }
            Err(PlayerError::Browser {
                player: o.player.as_str(),
                url: o.url.clone(),
                result: Some(Box::new(r)),
                stderr_tail,
            })
        }
        None => Err(PlayerError::Browser {
            player: o.player.as_str(),
            url: o.url.clone(),
            result: None,
            stderr_tail: if exited {
                stderr_tail
            } else {
                format!("(killed after the deadline)\n{stderr_tail}")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        v
    }

    fn header() -> Vec<u8> {
        vec![b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
    }

    #[test]
    fn parses_avc_stream_and_judges_the_first_picture() {
        let mut d = header();
        d.extend(tag(18, 0, b"\x02\x00\x0aonMetaData"));
        d.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2]));
        d.extend(tag(8, 0, &[0xaf, 0, 0x12, 0x10]));
        d.extend(tag(9, 40, &[0x17, 1, 0, 0, 0, 9]));
        d.extend(tag(9, 80, &[0x27, 1, 0, 0, 0, 9]));
        d.extend(tag(9, 0x0100_0000, &[0x27, 1, 0, 0, 0, 9]));
        let mut truncated = tag(9, 120, &[0x27, 1, 0, 0, 0, 9]);
        truncated.truncate(8);
        d.extend(truncated);
        let n = d.len() as u64;
        let c = FlvCapture::parse(d, n).unwrap();
        assert!(c.has_audio_flag && c.has_video_flag);
        assert_eq!((c.video_tags(), c.audio_tags()), (4, 1));
        assert_eq!(c.count(TagKind::Script), 1);
        assert!(c.first_video_is_config() && c.first_video_is_keyframe());
        assert!(c.first_picture_is_keyframe());
        assert_eq!(c.pictures().count(), 3);
        assert_eq!(c.tags.last().unwrap().timestamp, 0x0100_0000);
        assert!(c.timestamps_non_decreasing(TagKind::Video));
        assert_eq!(c.video_span_ms(), 0x0100_0000 - 40);
    }

    #[test]
    fn a_stream_starting_on_an_inter_frame_is_caught() {
        let mut d = header();
        d.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, 1]));
        d.extend(tag(9, 40, &[0x27, 1, 0, 0, 0, 9]));
        d.extend(tag(9, 20, &[0x17, 1, 0, 0, 0, 9]));
        let c = FlvCapture::parse(d, 0).unwrap();
        assert!(c.first_video_is_keyframe(), "the config tag is a keyframe");
        assert!(!c.first_picture_is_keyframe());
        assert!(!c.timestamps_non_decreasing(TagKind::Video));
    }

    #[test]
    fn enhanced_rtmp_video_headers() {
        // HEVC SequenceStart keyframe, CodedFramesX keyframe, CodedFrames inter frame.
        let seq = VideoHeader::parse(b"\x90hvc1").unwrap();
        assert!(seq.enhanced && seq.config && seq.keyframe() && !seq.picture);
        let key = VideoHeader::parse(b"\x93hvc1").unwrap();
        assert!(key.picture && key.keyframe());
        let inter = VideoHeader::parse(b"\xa1hvc1\0\0\0").unwrap();
        assert!(inter.picture && !inter.keyframe());
        assert_eq!(VideoHeader::parse(b""), None);
    }

    #[test]
    fn not_flv_is_none() {
        assert!(FlvCapture::parse(b"HTTP/1.1 404".to_vec(), 12).is_none());
        assert!(FlvCapture::parse(Vec::new(), 0).is_none());
    }

    #[test]
    fn gst_caps_and_browser_pid_lines() {
        let l = "/GstPipeline:pipeline0/avdec_h264:avdec_h264-0.GstPad:src: caps = video/x-raw, format=(string)I420, width=(int)320, height=(int)240, framerate=(fraction)25/1";
        assert_eq!(
            (caps_int(l, "width"), caps_int(l, "height")),
            (Some(320), Some(240))
        );
        assert_eq!(caps_int("width=(int)", "width"), None);
        assert_eq!(
            browser_pid_in("x\nplay.mjs: browser-pid 4242\n"),
            Some(4242)
        );
        assert_eq!(browser_pid_in("play.mjs: browser-pid \n"), None);
    }

    #[test]
    fn browser_result_from_json() {
        let v = serde_json::json!({"ok": true, "currentTime": 1.5, "videoWidth": 640,
            "videoHeight": 360, "error": null, "latencyMs": 1234.0,
            "latencySource": "program-date-time", "events": ["playing t=0.00"]});
        let r = BrowserResult::from_json(&v);
        assert!(r.ok && r.error.is_none());
        assert_eq!((r.video_width, r.video_height), (640, 360));
        assert_eq!(r.latency_ms, Some(1234.0));
        assert_eq!(r.events, vec!["playing t=0.00".to_string()]);
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.starts_with(" Z"))
        })
    }

    #[test]
    fn dropping_a_tool_kills_its_whole_process_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]);
        let p = Spawned::spawn("sh", cmd, |out| {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
            line.trim().parse::<u32>().ok()
        })
        .unwrap();
        let (sh, mut p) = (p.pid(), p);
        let grandchild = p.stdout_reader.take().unwrap().join().unwrap().unwrap();
        assert!(alive(sh) && alive(grandchild));
        drop(p);
        assert!(!alive(sh), "the tool survived its guard");
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !alive(grandchild)
        });
        assert!(gone, "the tool's child survived its guard");
    }

    #[test]
    fn only_a_live_chromium_group_leader_is_taken_for_the_browser() {
        assert!(!is_chromium_group_leader(std::process::id()));
        assert!(!is_chromium_group_leader(u32::MAX));
    }

    proptest! {
        /// Whatever a player wrote, parsing never panics and every tag it reports lies
        /// inside the data.
        #[test]
        fn parse_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut d = header();
            d.extend_from_slice(&tail);
            let n = d.len();
            let c = FlvCapture::parse(d, n as u64).unwrap();
            let sum: usize = c.tags.iter().map(|t| t.size + 15).sum();
            prop_assert!(13 + sum <= n);
        }

        /// Well-formed tags come back exactly.
        #[test]
        fn tags_round_trip(tags in proptest::collection::vec(
            (prop_oneof![Just(8u8), Just(9u8), Just(18u8)], any::<u32>(),
             proptest::collection::vec(any::<u8>(), 0..64)), 0..20)) {
            let mut d = header();
            for (k, ts, body) in &tags {
                d.extend(tag(*k, *ts, body));
            }
            let c = FlvCapture::parse(d, 0).unwrap();
            prop_assert_eq!(c.tags.len(), tags.len());
            for (got, (k, ts, body)) in c.tags.iter().zip(&tags) {
                prop_assert_eq!(got.timestamp, *ts);
                prop_assert_eq!(got.size, body.len());
                let want = match k { 8 => TagKind::Audio, 9 => TagKind::Video, _ => TagKind::Script };
                prop_assert_eq!(got.kind, want);
            }
        }
    }
}
