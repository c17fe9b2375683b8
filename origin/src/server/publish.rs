//! The publish policy: who may claim a stream name, here and cluster-wide.

use crate::auth::Event as AuthEvent;
use crate::config::PublishConflict;
use crate::media::{PublisherInfo, StreamKey};
use crate::route::Client;
use crate::rtmp::command::status;

use super::connection::{Connection, Role};
use super::session::PublishRefusal;

fn refusal(code: &'static str, reason: &'static str, description: String) -> PublishRefusal {
    PublishRefusal {
        code,
        reason,
        description,
    }
}

impl Connection {
    /// Claims `key` for this connection's publisher, or says why not.
    pub(super) async fn publish(
        &mut self,
        client: &Client,
        key: &StreamKey,
        query: Option<&str>,
    ) -> Result<(), PublishRefusal> {
        let host = &client.host;
        // Authorization first: an unauthorized client learns nothing about the stream.
        let mut req = client.auth_request(key, query, &self.origin.registry);
        if let Err(r) = self.origin.auth.check(AuthEvent::Publish, &req).await {
            return Err(refusal(status::PUBLISH_DENIED, r.reason, r.description));
        }
        if self.origin.is_draining() {
            let d = "origin is draining; reconnect to another origin".to_string();
            return Err(refusal(status::PUBLISH_DENIED, "draining", d));
        }
        if self.origin.registry.is_owned(key) {
            let d = format!("stream {key} is already being published");
            return Err(refusal(status::PUBLISH_BAD_NAME, "already_published", d));
        }
        if self.origin.config.publish_conflict == PublishConflict::Reject {
            let peers = self.origin.coworkers.peers();
            // Never trust a cached owner here: an encoder moving off a draining origin
            // must not be refused because of what that origin had a second ago.
            self.origin.discovery.forget(key);
            let found = match peers.is_empty() {
                true => None,
                false => self.origin.discovery.find_owner(&peers, key, host).await,
            };
            if let Some(found) = found {
                self.origin.discovery.forget(key);
                let owner = origin_wire::addr::HostPort::new(found.owner.ip, found.owner.port);
                let d = format!("stream {key} is already published on origin {owner}");
                return Err(refusal(status::PUBLISH_BAD_NAME, "owned_elsewhere", d));
            }
        }
        let info = PublisherInfo {
            id: self.id,
            addr: Some(self.peer),
            since: std::time::Instant::now(),
            upstream: None,
        };
        let publisher = match self.origin.registry.publish(key, info) {
            Ok(p) => p,
            Err(e) => {
                let d = e.to_string();
                return Err(refusal(status::PUBLISH_BAD_NAME, "already_published", d));
            }
        };
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, "publishing");
        req.stream_id = self.id.to_string();
        let unpublish = self.origin.auth.notice(AuthEvent::Unpublish, req);
        self.role = Role::Publishing {
            publisher,
            _unpublish: unpublish,
        };
        Ok(())
    }
}
