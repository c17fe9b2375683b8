//! Load generation shared by the benchmark binaries: the player protocol, a set of player
//! tasks (spawned at once or ramped), waiting for their first pictures, before/after
//! samples of a server process and the players for a measurement window, and the summary
//! of a set of players (failures, stalls, time to first picture).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use crate::flv_player::run_flv_player;
use crate::player::{BYTES_READ, PlayerStats, Stage, run_player};
use crate::server::ServerProc;
use crate::{cpu_seconds, fmt_opt, percentile};

/// Player protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    Rtmp,
    /// HTTP-FLV `GET /live/<stream>.flv`.
    Flv,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Rtmp => "RTMP",
            Proto::Flv => "HTTP-FLV",
        }
    }

    /// The URL players of this protocol use for `path` (`live/bench`) on `server`.
    pub fn url(self, server: &ServerProc, path: &str) -> Result<String> {
        match self {
            Proto::Rtmp => Ok(server.rtmp_url(path)),
            Proto::Flv => server
                .flv_url(path)
                .with_context(|| format!("{} serves no HTTP-FLV", server.name)),
        }
    }
}

/// Player tasks and their counters. Dropping it aborts the tasks.
#[derive(Default)]
pub struct Players {
    pub stats: Vec<Arc<PlayerStats>>,
    handles: Vec<JoinHandle<()>>,
}

impl Players {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            stats: Vec::with_capacity(n),
            handles: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.stats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// Starts `n` players of `url` at once.
    pub fn spawn(&mut self, proto: Proto, url: &str, n: usize, read_buf: usize) {
        for _ in 0..n {
            let st = Arc::new(PlayerStats::default());
            self.stats.push(st.clone());
            let url = url.to_string();
            self.handles.push(tokio::spawn(async move {
                match proto {
                    Proto::Rtmp => run_player(&url, st, read_buf).await,
                    Proto::Flv => run_flv_player(&url, st, read_buf).await,
                }
            }));
        }
    }

    /// Starts players until there are `n`, `join_rate` a second in 10 waves a second.
    pub async fn ramp(
        &mut self,
        proto: Proto,
        url: &str,
        n: usize,
        join_rate: usize,
        read_buf: usize,
    ) {
        let per_wave = (join_rate / 10).max(1);
        while self.len() < n {
            let k = per_wave.min(n - self.len());
            self.spawn(proto, url, k, read_buf);
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every player has its first picture or failed (or `limit` passes).
    pub async fn wait_first_pictures(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .stats
                .iter()
                .all(|s| s.ttfp_us.load(Ordering::Relaxed) > 0 || s.failed().is_some())
            {
                return;
            }
            sleep(Duration::from_millis(if self.len() > 1 { 100 } else { 5 })).await;
        }
    }

    pub fn video_frames(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.video_frames.load(Ordering::Relaxed))
            .sum()
    }

    /// Aborts every player and waits for the tasks to end (their sockets closed).
    pub async fn stop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
        for h in self.handles.drain(..) {
            let _ = h.await;
        }
    }

    /// Failures, stalls and times to first picture of these players.
    pub fn summary(&self) -> Summary {
        let s = &self.stats;
        Summary {
            n: s.len(),
            ok: s
                .iter()
                .filter(|s| s.ttfp_us.load(Ordering::Relaxed) > 0)
                .count(),
            failed: s
                .iter()
                .filter(|s| s.failed().is_some() && s.failed() != Some(Stage::Running))
                .count(),
            stalled_players: s
                .iter()
                .filter(|s| s.stalls.load(Ordering::Relaxed) > 0)
                .count(),
            stall_events: s
                .iter()
                .map(|s| u64::from(s.stalls.load(Ordering::Relaxed)))
                .sum(),
            max_gap_ms: s
                .iter()
                .map(|s| s.max_gap_us.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0) as f64
                / 1000.0,
            ttfp: sorted(s.iter().filter_map(|s| s.ttfp_ms())),
        }
    }
}

impl Drop for Players {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// What a set of players saw.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub n: usize,
    /// Players with a first picture.
    pub ok: usize,
    /// Players that ended with an error.
    pub failed: usize,
    pub stalled_players: usize,
    pub stall_events: u64,
    pub max_gap_ms: f64,
    /// Times to first picture, ms, sorted.
    pub ttfp: Vec<f64>,
}

impl Summary {
    pub fn ttfp_p(&self, p: f64) -> Option<f64> {
        percentile(&self.ttfp, p)
    }
}

/// Counters read at one instant: a server's CPU time, the bytes all players read, this
/// process's CPU time and the video frames the players received.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    server_cpu: Option<f64>,
    bytes: u64,
    own_cpu: Option<f64>,
    video_frames: u64,
}

impl Sample {
    pub fn take(server_pid: u32, players: &Players) -> Self {
        Self {
            at: Instant::now(),
            server_cpu: cpu_seconds(server_pid),
            bytes: BYTES_READ.load(Ordering::Relaxed),
            own_cpu: cpu_seconds(std::process::id()),
            video_frames: players.video_frames(),
        }
    }

    /// What happened between `self` and the later sample `end`.
    pub fn until(&self, end: &Sample, players_ok: usize) -> Window {
        let secs = (end.at - self.at).as_secs_f64();
        let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        Window {
            secs,
            gbit: (end.bytes - self.bytes) as f64 * 8.0 / 1e9,
            server_cpu_s: delta(self.server_cpu, end.server_cpu),
            bench_cpu_pct: delta(self.own_cpu, end.own_cpu) / secs * 100.0,
            fps: (end.video_frames - self.video_frames) as f64 / secs / players_ok.max(1) as f64,
        }
    }
}

/// A measurement window.
#[derive(Debug, Default, Clone, Copy)]
pub struct Window {
    pub secs: f64,
    /// Bytes all players read, Gbit.
    pub gbit: f64,
    /// utime+stime of the server under test.
    pub server_cpu_s: f64,
    /// CPU use of this (player) process, % of one core.
    pub bench_cpu_pct: f64,
    /// Video frames per second per player.
    pub fps: f64,
}

impl Window {
    /// Server CPU-seconds per delivered Gbit.
    pub fn cpu_per_gbit(&self) -> Option<f64> {
        (self.gbit > 0.0).then(|| self.server_cpu_s / self.gbit)
    }
}

/// Measures a window of `secs` on `server_pid` with `players` playing.
pub async fn measure(server_pid: u32, players: &Players, secs: u64) -> Window {
    let ok = players.summary().ok;
    let s0 = Sample::take(server_pid, players);
    sleep(Duration::from_secs(secs)).await;
    s0.until(&Sample::take(server_pid, players), ok)
}

/// Sorts numbers (total order; NaN last).
pub fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// One measured fan-out point: `n` players of one server under test.
#[derive(Debug, Default, Clone)]
pub struct Point {
    pub label: String,
    pub n: usize,
    pub players: Summary,
    pub window: Window,
    /// RSS of the server before the players joined, with them, and its high-water mark.
    pub rss0_kib: u64,
    pub rss1_kib: u64,
    pub hwm_kib: u64,
}

impl Point {
    pub fn cpu_per_gbit(&self) -> Option<f64> {
        self.window.cpu_per_gbit()
    }

    pub fn kib_per_player(&self) -> f64 {
        (self.rss1_kib as f64 - self.rss0_kib as f64) / self.n.max(1) as f64
    }

    pub fn ttfp_p(&self, p: f64) -> Option<f64> {
        self.players.ttfp_p(p)
    }

    /// The column names of [`Point::line`].
    pub fn header() -> String {
        format!(
            "{:<22} {:>5} {:>5} {:>4} {:>7} {:>6} {:>6} {:>8} {:>6} {:>7} {:>7} {:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>5} {:>6}",
            "server",
            "N",
            "ok",
            "fail",
            "Gbit",
            "Gb/s",
            "cpu_s",
            "cpu/Gbit",
            "cpu%",
            "rss0MiB",
            "rssMiB",
            "hwm MiB",
            "KiB/pl",
            "stalled",
            "maxgapms",
            "ttfp50",
            "ttfp99",
            "fps",
            "bench%"
        )
    }

    /// One table line.
    pub fn line(&self) -> String {
        let (w, p) = (&self.window, &self.players);
        format!(
            "{:<22} {:>5} {:>5} {:>4} {:>7.2} {:>6.2} {:>6.2} {:>8} {:>6.1} {:>7.1} {:>7.1} {:>8.1} {:>7.1} {:>9} {:>8.0} {:>8} {:>8} {:>5.1} {:>6.0}",
            self.label,
            self.n,
            p.ok,
            p.failed,
            w.gbit,
            w.gbit / w.secs,
            w.server_cpu_s,
            fmt_opt(self.cpu_per_gbit(), 3),
            w.server_cpu_s / w.secs * 100.0,
            self.rss0_kib as f64 / 1024.0,
            self.rss1_kib as f64 / 1024.0,
            self.hwm_kib as f64 / 1024.0,
            self.kib_per_player(),
            format!("{}/{}", p.stalled_players, p.stall_events),
            p.max_gap_ms,
            fmt_opt(self.ttfp_p(50.0), 0),
            fmt_opt(self.ttfp_p(99.0), 0),
            w.fps,
            w.bench_cpu_pct,
        )
    }

    /// What the columns of [`Point::line`] mean.
    pub fn legend() -> &'static str {
        "Gbit = bytes read by all players in the window (incl. RTMP chunk headers / HTTP chunk framing and FLV tag headers); cpu_s = server utime+stime in the window;
cpu% = server CPU of its core; KiB/pl = (RSS with players - RSS before) / N; stalled = players/events with
a gap > 1 s between video frames after the first picture; maxgapms = largest such gap; ttfp = connect ->
first complete non-header video keyframe, ms; fps = video frames/s per player in the window; bench% = CPU of the player process (its core; ~100 = saturated)."
    }

    /// A short progress line for stderr.
    pub fn progress(&self) -> String {
        format!(
            "{} N={}: {:.2} Gbit, cpu {:.2} s -> {} s/Gbit, ttfp p50 {} ms, stalled {}, bench cpu {:.0}%",
            self.label,
            self.n,
            self.window.gbit,
            self.window.server_cpu_s,
            fmt_opt(self.cpu_per_gbit(), 3),
            fmt_opt(self.ttfp_p(50.0), 0),
            self.players.stalled_players,
            self.window.bench_cpu_pct
        )
    }
}

/// `a / b` when both are known and `b > 0`.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}
