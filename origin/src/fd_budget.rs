//! The process's file descriptor budget. Every connection costs one descriptor (a
//! written-through player shares its socket with the publisher, see `server::write`), so
//! `--max-connections` and `--max-api-connections` must fit under RLIMIT_NOFILE with room
//! for the listeners, the runtime and outbound connections (relays, coworker queries).
//! Past the budget a connection is refused at once, never left in the accept queue.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// Descriptors kept for what no connection limit counts: standard streams, listeners,
/// the runtime's epoll and wake-up descriptors, relay upstreams and coworker queries.
pub const RESERVED: u64 = 64;

/// How long an accept loop rests after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often an accept loop out of descriptors says so.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Raises the soft RLIMIT_NOFILE to the hard limit; the soft limit in force after.
pub fn raise_nofile() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the call writes into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// `(max_connections, max_api_connections)` lowered, if needed, so both fit in `nofile`
/// descriptors with [`RESERVED`] left over. API connections keep at most a quarter of a
/// budget too small for both.
pub fn fit(max_connections: usize, max_api: usize, nofile: u64) -> (usize, usize) {
    let budget = usize::try_from(nofile.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
    if max_connections.saturating_add(max_api) <= budget {
        return (max_connections, max_api);
    }
    let api = max_api.min(budget / 4);
    (max_connections.min(budget - api), api)
}

/// Raises RLIMIT_NOFILE and lowers the connection limits of `config` to fit it, with one
/// warning line if they had to be lowered.
pub fn apply(config: &mut crate::config::Config) {
    let nofile = match raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "RLIMIT_NOFILE unknown; connection limits not checked");
            return;
        }
    };
    let want = (config.max_connections, config.max_api_connections);
    let (conns, api) = fit(want.0, want.1, nofile);
    if (conns, api) != want {
        tracing::warn!(
            nofile,
            max_connections = conns,
            max_api_connections = api,
            "RLIMIT_NOFILE is {nofile}: --max-connections lowered from {} to {conns} and \
             --max-api-connections from {} to {api}, so no accept fails for lack of descriptors \
             (raise the limit, e.g. `ulimit -n`, to allow more)",
            want.0,
            want.1,
        );
    }
    config.max_connections = conns;
    config.max_api_connections = api;
}

/// An accept loop's way out when the process has no descriptor left: a spare one, given
/// up to accept each waiting connection and close it at once, so the clients see a
/// refusal instead of hanging in the queue.
pub struct Acceptor {
    spare: Option<std::fs::File>,
    refused: u64,
    warned: Option<Instant>,
    kind: &'static str,
}

impl Acceptor {
    pub fn new(kind: &'static str) -> Self {
        Self {
            spare: std::fs::File::open("/dev/null").ok(),
            refused: 0,
            warned: None,
            kind,
        }
    }

    /// The next connection. On EMFILE/ENFILE the connections waiting are refused; after
    /// any failure the loop rests briefly instead of spinning. Cancel-safe.
    pub async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(a) => return a,
                Err(e) if out_of_descriptors(&e) => {
                    self.refuse_waiting(listener);
                    self.warn(&e);
                }
                Err(e) => tracing::warn!(error = %e, kind = self.kind, "accept failed"),
            }
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }

    /// Accepts and closes every connection waiting now, with the spare descriptor.
    fn refuse_waiting(&mut self, listener: &TcpListener) {
        use futures::FutureExt;
        if self.spare.take().is_none() {
            return;
        }
        while let Some(Ok((socket, _))) = listener.accept().now_or_never() {
            drop(socket);
            self.refused += 1;
            crate::metrics::global()
                .connections_rejected
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: "out_of_descriptors",
                })
                .inc();
        }
        self.spare = std::fs::File::open("/dev/null").ok();
    }

    fn warn(&mut self, e: &std::io::Error) {
        if self.warned.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        self.warned = Some(Instant::now());
        tracing::warn!(
            error = %e,
            kind = self.kind,
            refused = self.refused,
            "out of file descriptors: refusing connections (raise RLIMIT_NOFILE or lower --max-connections)"
        );
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_fit_are_kept() {
        assert_eq!(fit(10_000, 1024, 1 << 20), (10_000, 1024));
        assert_eq!(fit(10_000, 1024, 10_000 + 1024 + RESERVED), (10_000, 1024));
    }

    #[test]
    fn limits_that_do_not_fit_are_lowered_to_the_budget() {
        // The default limits against a 20,000 limit fit; against 512 they do not.
        let (c, a) = fit(10_000, 1024, 512);
        assert_eq!(c + a, 512 - RESERVED as usize);
        assert_eq!(a, (512 - RESERVED as usize) / 4);
        // A small API limit is kept whole.
        assert_eq!(fit(10_000, 8, 512), (512 - RESERVED as usize - 8, 8));
        // Less than the reserve: nothing is admitted rather than everything.
        assert_eq!(fit(10_000, 1024, 10), (0, 0));
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let n = raise_nofile().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit the call writes into.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!((n, lim.rlim_cur), (lim.rlim_max, lim.rlim_max));
    }
}
