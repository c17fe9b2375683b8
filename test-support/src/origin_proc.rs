//! [`OriginProc`]: one real `origin serve` process on a loopback address, killed on drop.
//!
//! Ports cannot race: unless a test asks for fixed ports, the origin binds port 0 and the
//! harness reads the bound addresses from its startup line
//! `origin listening rtmp=<addr> api=<addr> flv=<addr>` (stdout). The rest of its output is
//! forwarded to this process's stderr by a reader thread (so the pipe never fills up), and
//! kept for [`OriginProc::wait_log`].

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Options of a test origin.
#[derive(Default, Clone)]
pub struct OriginOpts {
    pub coworkers: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub extra: Vec<String>,
    /// Runs the origin under `prlimit --nofile=N:N` (soft and hard RLIMIT_NOFILE).
    pub nofile: Option<u64>,
}

/// How long an origin may take to print its listening line.
const START_LIMIT: Duration = Duration::from_secs(15);

/// Log lines kept per origin for [`OriginProc::wait_log`] (later ones are only forwarded).
const KEPT_LINES: usize = 50_000;

/// The origin's log lines so far (all its runs).
type Log = Arc<Mutex<Vec<String>>>;

/// One origin process on loopback; killed on drop.
pub struct OriginProc {
    pub rtmp: u16,
    pub api: u16,
    pub flv: u16,
    ip: String,
    bin: PathBuf,
    opts: OriginOpts,
    child: Child,
    log: Log,
}

/// The three addresses of an `origin listening …` line (ANSI colour codes tolerated).
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr, SocketAddr)> {
    if !line.contains("origin listening") {
        return None;
    }
    let mut clean = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
            continue;
        }
        clean.push(c);
    }
    let field = |key: &str| -> Option<SocketAddr> {
        clean
            .split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|v| v.trim_matches('"').parse().ok())
    };
    Some((field("rtmp=")?, field("api=")?, field("flv=")?))
}

impl OriginProc {
    /// An origin on 127.0.0.1 with kernel-assigned ports.
    pub fn start(opts: &OriginOpts) -> Self {
        Self::start_on(0, 0, 0, opts)
    }

    /// An origin on 127.0.0.1 with the given ports (0: kernel-assigned).
    pub fn start_on(rtmp: u16, api: u16, flv: u16, opts: &OriginOpts) -> Self {
        Self::spawn(
            &crate::bin_path("origin"),
            "127.0.0.1",
            (rtmp, api, flv),
            opts,
        )
        .unwrap_or_else(|e| panic!("origin did not start: {e}"))
    }

    /// An origin on loopback address `ip` (e.g. `127.0.21.3`) with kernel-assigned ports.
    pub fn start_at(ip: &str, opts: &OriginOpts) -> Self {
        Self::spawn(&crate::bin_path("origin"), ip, (0, 0, 0), opts)
            .unwrap_or_else(|e| panic!("origin on {ip} did not start: {e}"))
    }

    /// Starts `bin serve` on `ip` with `(rtmp, api, flv)` ports (0: kernel-assigned) and
    /// returns once it listens.
    pub fn spawn(
        bin: &Path,
        ip: &str,
        ports: (u16, u16, u16),
        opts: &OriginOpts,
    ) -> std::io::Result<Self> {
        let log = Log::default();
        let (child, (r, a, f)) = launch(bin, ip, ports, opts, &log)?;
        Ok(Self {
            rtmp: r.port(),
            api: a.port(),
            flv: f.port(),
            ip: ip.to_string(),
            bin: bin.to_path_buf(),
            opts: opts.clone(),
            child,
            log,
        })
    }

    /// Kills the process and starts it again on the same addresses (an origin that comes
    /// back after a crash).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let (child, _) = launch(
            &self.bin,
            &self.ip,
            (self.rtmp, self.api, self.flv),
            &self.opts,
            &self.log,
        )?;
        self.child = child;
        Ok(())
    }

    /// Loopback address the origin listens on.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    pub fn api_addr(&self) -> String {
        format!("{}:{}", self.ip, self.api)
    }

    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://{}:{}/{path}", self.ip, self.rtmp)
    }

    pub fn flv_url(&self, path: &str) -> String {
        format!("http://{}:{}/{path}", self.ip, self.flv)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.api)
    }

    /// Stops the process with SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many of the origin's log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        crate::lock(&self.log)
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until more than `seen` log lines contain `needle` (`seen` from
    /// [`Self::log_count`] before the action under test); false after `limit`. Only what the
    /// log level prints shows (`warn` and up unless `ORIGIN_TEST_LOG` says otherwise).
    pub fn wait_log(&self, needle: &str, seen: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.log_count(needle) > seen {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OriginProc {
    fn drop(&mut self) {
        self.kill();
    }
}

type Addrs = (SocketAddr, SocketAddr, SocketAddr);

fn launch(
    bin: &Path,
    ip: &str,
    (rtmp, api, flv): (u16, u16, u16),
    opts: &OriginOpts,
    log: &Log,
) -> std::io::Result<(Child, Addrs)> {
    let level = std::env::var("ORIGIN_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let mut cmd = match opts.nofile {
        // prlimit execs the origin, so the child's pid is the origin's.
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("serve")
        .args(["--rtmp-listen", &format!("{ip}:{rtmp}")])
        .args(["--api-listen", &format!("{ip}:{api}")])
        .args(["--flv-listen", &format!("{ip}:{flv}")])
        // The listening line (info, module origin::run) carries the bound ports.
        .env("RUST_LOG", format!("{level},origin::run=info"))
        .env("NO_COLOR", "1")
        .env_remove("ORIGIN_LOG_FORMAT")
        .env_remove("ORIGIN_COWORKER_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for c in &opts.coworkers {
        cmd.args(["--coworker", c]);
    }
    if let Some(t) = &opts.token_file {
        cmd.arg("--admin-token-file").arg(t);
    }
    cmd.args(&opts.extra);
    let mut child = cmd.spawn()?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(std::io::Error::other("no stdout pipe"));
    };
    let (tx, rx) = mpsc::channel::<Addrs>();
    let log = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addrs) = tx.as_ref().and_then(|_| parse_listening(&line)) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addrs);
                }
                continue;
            }
            eprintln!("[origin] {line}");
            let mut kept = crate::lock(&log);
            if kept.len() < KEPT_LINES {
                kept.push(line);
            }
        }
    });
    let deadline = Instant::now() + START_LIMIT;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(addrs) => return Ok((child, addrs)),
            Err(mpsc::RecvTimeoutError::Disconnected) | Err(mpsc::RecvTimeoutError::Timeout)
                if child.try_wait().ok().flatten().is_some() =>
            {
                let status = child.try_wait().ok().flatten();
                return Err(std::io::Error::other(format!(
                    "origin exited at start ({status:?}) on {ip}:{rtmp}/{api}/{flv}"
                )));
            }
            Err(_) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "origin on {ip} printed no listening line within {START_LIMIT:?}"
                )));
            }
            Err(_) => {}
        }
    }
}

/// `GET http://addr{path}` with HTTP/1.0 on a blocking socket: (status, body).
pub fn get_blocking(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Starts `n` origins on `ip` (kernel-assigned ports) that list each other (and themselves)
/// as coworkers. The ports are only known once they listen, so the list reaches them through
/// a coworker file (revision 0, like `--coworker` flags) written afterwards; this returns once
/// every origin serves it. The file lives in the returned directory: keep it as long as the
/// origins.
pub fn start_cluster_at(
    ip: &str,
    n: usize,
    opts: &OriginOpts,
) -> std::io::Result<(Vec<OriginProc>, crate::TempDir)> {
    start_cluster_on(&vec![ip.to_string(); n], opts)
}

/// Like [`start_cluster_at`], one origin per address of `ips` (each on its own loopback
/// address, like pods).
pub fn start_cluster_on(
    ips: &[String],
    opts: &OriginOpts,
) -> std::io::Result<(Vec<OriginProc>, crate::TempDir)> {
    let dir = crate::TempDir::new("origin-cluster")?;
    let file = dir.path().join("coworkers.json");
    let mut o = opts.clone();
    o.extra
        .extend(["--coworker-file".to_string(), file.display().to_string()]);
    let bin = crate::bin_path("origin");
    let procs = ips
        .iter()
        .map(|ip| OriginProc::spawn(&bin, ip, (0, 0, 0), &o))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut all: Vec<String> = procs.iter().map(OriginProc::api_addr).collect();
    all.extend(opts.coworkers.iter().cloned());
    let doc = origin_wire::coworkers::CoworkerDocument::new(0, all, None);
    let tmp = dir.path().join("coworkers.json.tmp");
    std::fs::write(&tmp, doc.to_json())?;
    std::fs::rename(&tmp, &file)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in &procs {
        loop {
            let loaded = get_blocking(&p.api_addr(), origin_wire::paths::COWORKERS)
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .is_some_and(|v| {
                    v["source"].as_str().is_some_and(|s| s.starts_with("file:"))
                        && v["coworkers"].as_array().map(Vec::len) == Some(doc.coworkers.len())
                });
            if loaded {
                break;
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "origin {} did not load the coworker file",
                    p.api_addr()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok((procs, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_is_parsed() {
        let line = "2026-12-01T21:00:00.000Z  INFO origin listening rtmp=127.0.0.1:40001 api=127.0.0.1:40002 flv=127.0.0.1:40003";
        let (r, a, f) = parse_listening(line).expect("parsed");
        assert_eq!((r.port(), a.port(), f.port()), (40001, 40002, 40003));
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m origin listening \u{1b}[3mrtmp\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:1 api=127.0.0.1:2 flv=[::1]:3";
        // Colour codes between key and value: stripped first.
        let parsed = parse_listening(coloured).expect("coloured");
        assert_eq!(parsed.0.port(), 1);
        assert_eq!(parsed.2.to_string(), "[::1]:3");
        assert!(parse_listening("origin stopped").is_none());
        assert!(parse_listening("origin listening rtmp=x api=y flv=z").is_none());
    }
}
