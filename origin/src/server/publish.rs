//! The publish policy: who may claim a stream name, here and cluster-wide.

use crate::auth::Event as AuthEvent;
use crate::cluster::directory::Verdict;
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
        let guard = self.origin.config.publish_conflict == PublishConflict::Reject;
        // The claim at the key's directory origins is the guard (first claim wins); it
        // stays with the publish, renewed, and is released when the publish ends
        // (docs/architecture.md, "Ownership directory").
        let claim = match self.origin.claim_owner() {
            Some(owner) => self.origin.directory.claim(key, owner).await,
            None => None,
        };
        let verdict = claim.as_ref().map(|c| c.verdict().clone());
        if let (true, Some(Verdict::Conflict(holder))) = (guard, &verdict) {
            let d = format!(
                "stream {key} is already published on origin {}",
                holder.rtmp
            );
            return Err(refusal(status::PUBLISH_BAD_NAME, "owned_elsewhere", d));
        }
        // Published anyway (`--publish-conflict allow`): another origin's claim stays.
        let claim = claim.filter(|c| !matches!(c.verdict(), Verdict::Conflict(_)));
        if guard && verdict != Some(Verdict::Granted) {
            let peers = self.origin.coworkers.peers();
            // Never trust a cached owner here: an encoder moving off a draining origin
            // must not be refused because of what that origin had a second ago.
            self.origin.discovery.forget(key);
            let found = match (peers.is_empty(), &verdict) {
                (true, _) => None,
                // No directory origin answered: ask everyone, as without a directory.
                (false, Some(_)) => self.origin.discovery.ask_everyone(&peers, key, host).await,
                (false, None) => self.origin.discovery.find_owner(&peers, key, host).await,
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
            _claim: claim,
        };
        Ok(())
    }
}
