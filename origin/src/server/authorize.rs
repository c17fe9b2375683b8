//! The `on_connect` check of an RTMP connection: who the client is (a relay of another
//! origin, a cluster member) and whether the rules and hooks let it in.

use crate::auth::{Event as AuthEvent, Notice as AuthNotice};
use crate::route::{Client, ClientKind};

use super::connection::Connection;
use super::session::ConnectInfo;

impl Connection {
    /// Runs `on_connect` for what the client said in `connect`. Admitted, the client's
    /// facts come back with the `on_close` notice the connection holds from now on;
    /// refused, the text to send.
    pub(super) async fn authorize_connect(
        &self,
        info: ConnectInfo,
    ) -> Result<(Client, Option<AuthNotice>), String> {
        let config_token = self.origin.config.admin_token.as_deref();
        // A relay of another origin: its flashVer, and the admin token when one is set.
        let relay = info.claims_relay
            && (config_token.is_none() || self.origin.is_admin_token(&info.token));
        let host = if info.tc.host.is_empty() {
            self.peer.ip().to_string()
        } else {
            info.tc.host.clone()
        };
        let client = Client {
            id: self.id.to_string(),
            ip: Some(self.peer.ip()),
            host,
            // Without its query (it may carry a token; `param` is the stream name's).
            tc_url: info
                .tc_url
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string(),
            page_url: info.page_url,
            kind: ClientKind {
                relay,
                srs_edge: info.srs_edge,
                opted_in: false,
            },
            // Only the admin token makes a cluster member (a flashVer alone is no proof):
            // it skips the rules and hooks (the relaying origin ran them for its player;
            // docs/architecture.md, "Auth and hooks").
            cluster_member: self.origin.auth.is_cluster_member(Some(&info.token)),
        };
        let req = client.connect_request(&info.vhost, &info.app);
        if let Err(refusal) = self.origin.auth.check(AuthEvent::Connect, &req).await {
            tracing::info!(conn = self.id, peer = %self.peer, app = %info.app, reason = refusal.reason, "connect refused");
            return Err(refusal.description);
        }
        let close = self.origin.auth.notice(AuthEvent::Close, req);
        tracing::debug!(conn = self.id, app = %info.app, srs_edge = client.kind.srs_edge, relay = client.kind.relay, cluster_member = client.cluster_member, "connected");
        Ok((client, close))
    }
}
