//! The publish policy: who may claim a stream name, here and cluster-wide.

use crate::auth::Event as AuthEvent;
use crate::config::PublishConflict;
use crate::media::PublisherInfo;
use crate::metrics::{self, ReasonLabel};
use crate::rtmp::command::{Command, status};
use crate::rtmp::message::{Control, UserControl};

use super::connection::{ConnError, Connection, Role};

impl Connection {
    pub(super) async fn on_publish(
        &mut self,
        cmd: &Command,
        stream_id: u32,
    ) -> Result<(), ConnError> {
        let name = cmd.arg_str(0).unwrap_or_default().to_string();
        let (key, query) = match self.stream_key(&name) {
            Ok(k) => k,
            Err(e) => {
                return self
                    .refuse_publish(stream_id, status::PUBLISH_BAD_NAME, "bad_name", &e)
                    .await;
            }
        };
        if !matches!(self.role, Role::Idle) {
            return self
                .refuse_publish(
                    stream_id,
                    status::PUBLISH_BAD_NAME,
                    "busy",
                    "connection already publishes or plays",
                )
                .await;
        }
        // Authorization first: an unauthorized client learns nothing about the stream.
        let mut req = self.auth_request(Some((&key, query.as_deref())));
        if let Err(refusal) = self.origin.auth.check(AuthEvent::Publish, &req).await {
            return self
                .refuse_publish(
                    stream_id,
                    status::PUBLISH_DENIED,
                    refusal.reason,
                    &refusal.description,
                )
                .await;
        }
        if self.origin.is_draining() {
            return self
                .refuse_publish(
                    stream_id,
                    status::PUBLISH_DENIED,
                    "draining",
                    "origin is draining; reconnect to another origin",
                )
                .await;
        }
        if self.origin.registry.is_owned(&key) {
            let d = format!("stream {key} is already being published");
            return self
                .refuse_publish(stream_id, status::PUBLISH_BAD_NAME, "already_published", &d)
                .await;
        }
        if self.origin.config.publish_conflict == PublishConflict::Reject {
            let peers = self.origin.coworkers.peers();
            // Never trust a cached owner here: an encoder moving off a draining origin
            // must not be refused because of what that origin had a second ago.
            self.origin.discovery.forget(&key);
            let found = match peers.is_empty() {
                true => None,
                false => {
                    self.origin
                        .discovery
                        .find_owner(&peers, &key, &self.session.client.host)
                        .await
                }
            };
            if let Some(found) = found {
                self.origin.discovery.forget(&key);
                let owner = origin_wire::addr::HostPort::new(found.owner.ip, found.owner.port);
                let d = format!("stream {key} is already published on origin {owner}");
                return self
                    .refuse_publish(stream_id, status::PUBLISH_BAD_NAME, "owned_elsewhere", &d)
                    .await;
            }
        }
        let publisher = match self.origin.registry.publish(
            &key,
            PublisherInfo {
                id: self.id,
                addr: Some(self.peer),
                since: std::time::Instant::now(),
                upstream: None,
            },
        ) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .refuse_publish(
                        stream_id,
                        status::PUBLISH_BAD_NAME,
                        "already_published",
                        &e.to_string(),
                    )
                    .await;
            }
        };
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, "publishing");
        req.stream_id = self.id.to_string();
        let unpublish = self.origin.auth.notice(AuthEvent::Unpublish, req);
        self.role = Role::Publishing {
            publisher,
            _unpublish: unpublish,
        };
        self.send_control(Control::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_status(
            stream_id,
            "status",
            status::PUBLISH_START,
            &format!("Started publishing stream {}.", key.stream),
        );
        Ok(())
    }

    async fn refuse_publish(
        &mut self,
        stream_id: u32,
        code: &str,
        reason: &'static str,
        description: &str,
    ) -> Result<(), ConnError> {
        metrics::global()
            .publish_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::info!(conn = self.id, peer = %self.peer, reason, description, "publish refused");
        self.send_status(stream_id, "error", code, description);
        self.flush().await?;
        Err(ConnError::Closed)
    }
}
