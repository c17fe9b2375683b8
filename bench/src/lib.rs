//! Shared pieces of the benchmark binaries: process accounting from /proc, server
//! processes (our origin, nginx-rtmp) pinned to a core, the cached test FLV, a paced
//! publisher on its own thread, and lightweight RTMP and HTTP-FLV players that parse chunk
//! headers / FLV tag headers and count bytes and frames without copying media payloads.
//!
//! Benchmarks print numbers; nothing here asserts on speed.

#![forbid(unsafe_code)]

pub mod cli;
pub mod flv_player;
pub mod load;
pub mod player;
pub mod publisher;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub use origin_cluster_tests::{black_hole, free_port, http, wait_published, workspace_root};

/// Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every Linux we target).
const CLK_TCK: f64 = 100.0;

/// utime + stime of a process (all threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Pins the current process (and every thread it creates afterwards) to `cpu`.
pub fn pin_self(cpu: usize) {
    let pid = std::process::id().to_string();
    let ok = Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &pid])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("warning: could not pin the bench process to CPU {cpu} (taskset missing?)");
    }
}

/// Percentile (nearest rank) of an already sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Formats an optional number with `prec` decimals, `-` when missing.
pub fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

/// The target directory the bench binaries were built into (…/target-bench/release → …/target-bench).
pub fn target_dir() -> PathBuf {
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The release `origin` binary next to this bench binary (or `$ORIGIN_BIN`).
pub fn origin_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ORIGIN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("exe dir")?.join("origin");
    if !p.exists() {
        bail!(
            "{} not found: build with `cargo build --release -p origin -p origin-bench` or set ORIGIN_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// The benchmark's test stream: testsrc2 1280x720 30 fps, libx264 ~2 Mbit/s CBR, AAC,
/// GOP 2 s, `seconds` long. Generated once with ffmpeg and cached under the target dir.
pub fn test_flv(seconds: u32) -> Result<PathBuf> {
    let dir = target_dir().join("bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("testsrc2-720p30-2mbps-gop2s-{seconds}s.flv"));
    if path.exists() && std::fs::metadata(&path)?.len() > 0 {
        return Ok(path);
    }
    let tmp = dir.join(format!(".tmp-{}.flv", std::process::id()));
    eprintln!("generating {} with ffmpeg (once)...", path.display());
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-profile:v",
            "high",
        ])
        .args([
            "-b:v", "1900k", "-minrate", "1900k", "-maxrate", "1900k", "-bufsize", "1900k",
        ])
        .args(["-x264-params", "nal-hrd=cbr:force-cfr=1"])
        .args([
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-ar", "44100"])
        .args(["-f", "flv"])
        .arg(&tmp)
        .status()
        .context("running ffmpeg (install it: apt-get install -y ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg failed to generate the test FLV");
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Tags of an FLV file plus its duration and bitrate.
pub struct Clip {
    pub tags: Vec<origin::media::flv::Tag>,
    pub duration_ms: u32,
    pub bytes: usize,
}

impl Clip {
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path)?;
        let tags = origin::media::flv::parse_file(&data)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let last = tags.iter().map(|t| t.timestamp).max().unwrap_or(0);
        // One frame interval past the last tag, so loops keep a steady cadence.
        let duration_ms = last + 33;
        let bytes = tags.iter().map(|t| t.payload.len()).sum();
        Ok(Self {
            tags,
            duration_ms,
            bytes,
        })
    }

    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / (f64::from(self.duration_ms) / 1000.0) / 1e6
    }
}
