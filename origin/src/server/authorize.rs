//! What the auth rules and hooks see of an RTMP connection, and the `on_connect` check.

use crate::auth::{Event as AuthEvent, Request as AuthRequest};
use crate::media::StreamKey;
use crate::rtmp::command;
use crate::rtmp::message::{csid, kind};
use crate::rtmp::url;

use super::connection::{ConnError, Connection};

impl Connection {
    /// The hook/rules request of this client; `stream` is the key and the stream name's
    /// query of a publish or play (none at connect).
    pub(super) fn auth_request(&self, stream: Option<(&StreamKey, Option<&str>)>) -> AuthRequest {
        let s = &self.session;
        match stream {
            Some((key, query)) => s.client.auth_request(key, query, &self.origin.registry),
            None => s
                .client
                .connect_request(&url::resolve_vhost(&[s.tc.query.as_deref()]), &s.app),
        }
    }

    /// Runs `on_connect`; a refusal answers `_error` `NetConnection.Connect.Rejected` and
    /// closes. An admitted connection holds its `on_close` notice from now on.
    pub(super) async fn authorize_connect(&mut self, txn: f64) -> Result<(), ConnError> {
        let req = self.auth_request(None);
        if let Err(refusal) = self.origin.auth.check(AuthEvent::Connect, &req).await {
            tracing::info!(conn = self.id, peer = %self.peer, app = %self.session.app, reason = refusal.reason, "connect refused");
            let body = command::error(txn, "NetConnection.Connect.Rejected", &refusal.description);
            self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
            self.flush().await?;
            return Err(ConnError::Closed);
        }
        self.close = self.origin.auth.notice(AuthEvent::Close, req);
        Ok(())
    }
}
