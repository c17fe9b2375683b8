//! Listening sockets and the RTMP accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use super::Origin;
use super::connection::Connection;
use crate::metrics::{self, KindLabel};

/// Accept backlog: large enough that a burst of thousands of joins does not fail.
pub const BACKLOG: u32 = 8192;

/// Binds with SO_REUSEADDR and a large backlog.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts RTMP connections until shutdown.
pub async fn serve_rtmp(origin: Arc<Origin>, listener: TcpListener) {
    let mut shutdown = origin.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Per-address limits first: a flood from one address never takes global slots.
        let Some(ip_guard) = origin.auth.admit(peer.ip(), "rtmp") else {
            drop(socket);
            continue;
        };
        let Some(guard) = origin.admit(&peer) else {
            drop(socket);
            continue;
        };
        metrics::global()
            .connections_total
            .get_or_create(&KindLabel { kind: "rtmp" })
            .inc();
        let _ = socket.set_nodelay(true);
        let origin = origin.clone();
        tokio::spawn(async move {
            let conn = Connection::new(origin, socket, peer);
            conn.run().await;
            drop(guard);
            drop(ip_guard);
        });
    }
}
