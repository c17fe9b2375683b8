//! Readiness and liveness probes from a container's spec, performed for real against the
//! pod's address (httpGet and tcpSocket), with the spec's period, timeout and thresholds.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One probe's schedule and counters.
pub struct ProbeState {
    probe: Probe,
    next: Instant,
    successes: i32,
    failures: i32,
    /// The current verdict: ready (readiness) or alive (liveness).
    pub ok: bool,
}

fn port(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .and_then(|cp| u16::try_from(cp.container_port).ok()),
    }
}

async fn http_get(ip: &str, port: u16, path: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect((ip, port)).await else {
        return false;
    };
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.37\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (200..400).contains(&code)
}

impl ProbeState {
    /// `ok_before_first` is the verdict before any result: false for readiness, true for liveness.
    pub fn new(probe: Probe, ok_before_first: bool) -> Self {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Self {
            probe,
            next: Instant::now() + delay,
            successes: 0,
            failures: 0,
            ok: ok_before_first,
        }
    }

    /// Runs the probe if it is due; returns whether the verdict changed.
    pub async fn tick(&mut self, c: &Container, ip: &str) -> bool {
        if Instant::now() < self.next {
            return false;
        }
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.next = Instant::now() + period;
        let timeout = Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let attempt = async {
            if let Some(h) = &self.probe.http_get {
                let Some(p) = port(c, &h.port) else {
                    return false;
                };
                http_get(ip, p, h.path.as_deref().unwrap_or("/")).await
            } else if let Some(t) = &self.probe.tcp_socket {
                let Some(p) = port(c, &t.port) else {
                    return false;
                };
                tokio::net::TcpStream::connect((ip, p)).await.is_ok()
            } else {
                true
            }
        };
        let passed = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(false);
        let before = self.ok;
        if passed {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.probe.success_threshold.unwrap_or(1) {
                self.ok = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3) {
                self.ok = false;
            }
        }
        before != self.ok
    }
}
