//! The RTMP server: the accept loop and one task per connection. A connection is split
//! by concept: the command flow as a sans-io state machine (`session`), the socket loop
//! that drives it (`connection`, the only async part), the `on_connect` check
//! (`authorize`), the publish policy (`publish`), a play's routing and delivery
//! (`play`), and vectored writes (`write`).

mod authorize;
mod connection;
mod play;
mod publish;
mod session;
mod write;

use std::sync::Arc;
use tokio::net::TcpListener;

use crate::metrics::{self, KindLabel};
use crate::state::Origin;
use connection::Connection;

/// Accepts RTMP connections until shutdown.
pub async fn serve_rtmp(origin: Arc<Origin>, listener: TcpListener) {
    let mut shutdown = origin.shutdown_signal();
    let mut acceptor = crate::fd_budget::Acceptor::new("rtmp");
    loop {
        let (socket, peer) = tokio::select! {
            a = acceptor.accept(&listener) => a,
            _ = shutdown.changed() => return,
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
            Connection::new(origin, socket, peer).run().await;
            drop(guard);
            drop(ip_guard);
        });
    }
}
