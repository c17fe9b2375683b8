//! An RTMP play's I/O: routing it (`route` decides), the wait after a redirect, and the
//! delivery of the player's batches.

use bytes::Bytes;
use tokio::time::timeout;

use crate::auth::Notice as AuthNotice;
use crate::media::frame::PLAY_STREAM_ID;
use crate::media::{Delivery, End, Notice};
use crate::metrics;
use crate::route::{self, Decision, PlayRequest, Target};
use crate::rtmp::command::{self, status};
use crate::rtmp::message::{Control, UserControl, csid, kind};

use super::connection::{ConnError, Connection, Playing, Role};
use super::session::Routed;
use super::write::write_all_vectored;

impl Connection {
    /// Routes an authorized play (`stop`: its on_stop notice) and, when it is served
    /// here, puts its player in place.
    pub(super) async fn route_play(
        &mut self,
        request: &PlayRequest,
        stream_id: u32,
        stop: Option<AuthNotice>,
    ) -> Routed {
        let mut player = match route::route(&self.origin, request).await {
            Decision::Play(player) => player,
            Decision::Redirect(Target::Rtmp { tc_url, url }) => {
                return Routed::Redirect { tc_url, url };
            }
            Decision::Redirect(Target::Http(_)) | Decision::NotFound => return Routed::NotFound,
            Decision::TooManyWaiting => {
                return Routed::Refused(Decision::TOO_MANY_WAITING.to_string());
            }
        };
        tracing::info!(conn = self.id, peer = %self.peer, stream = %request.key, "playing");
        if stream_id == PLAY_STREAM_ID {
            // The publisher writes to this player while it keeps up (merged or not).
            player.write_through(Box::new(self.writer.direct()));
        }
        self.role = Role::Playing(Box::new(Playing {
            player,
            stream_id,
            batch: Vec::with_capacity(16),
            _stop: stop,
        }));
        Routed::Playing
    }

    /// Writes one batch: control messages queued before it, the frames (shared,
    /// pre-encoded, in one vectored write), then the notice that follows them.
    pub(super) async fn deliver(&mut self, mut delivery: Delivery) -> Result<(), ConnError> {
        let Role::Playing(p) = &mut self.role else {
            return Ok(());
        };
        let stream_id = p.stream_id;
        let mut bufs: Vec<Bytes> = Vec::with_capacity(2 * p.batch.len() + 3);
        // The tail of a frame the publisher wrote in part is already half on the wire.
        bufs.append(&mut delivery.rest);
        // Control/status messages queued before these frames go first.
        // (Only split when there is something: splitting an empty buffer still allocates.)
        if !self.wbuf.is_empty() {
            bufs.push(self.wbuf.split().freeze());
        }
        for f in p.batch.drain(..) {
            f.push_rtmp(stream_id, &mut bufs);
        }
        if let Some(notice) = delivery.notice {
            let (control, code, verb) = match notice {
                Notice::Published => (
                    UserControl::StreamBegin(stream_id),
                    status::PLAY_PUBLISH_NOTIFY,
                    "published",
                ),
                Notice::Unpublished => (
                    UserControl::StreamEof(stream_id),
                    status::PLAY_UNPUBLISH_NOTIFY,
                    "unpublished",
                ),
            };
            let text = format!("{} is now {verb}.", p.player.stream().key.stream);
            let (t, c) = Control::UserControl(control).encode();
            self.encoder
                .encode(&mut self.wbuf, csid::CONTROL, 0, t, 0, &c);
            let body = command::on_status("status", code, &text, vec![]);
            self.encoder.encode(
                &mut self.wbuf,
                csid::STATUS,
                0,
                kind::COMMAND_AMF0,
                stream_id,
                &body,
            );
            bufs.push(self.wbuf.split().freeze());
        }
        if !bufs.is_empty() {
            let total: usize = bufs.iter().map(Bytes::len).sum();
            match timeout(
                self.origin.config.write_timeout,
                write_all_vectored(&mut self.writer, &bufs),
            )
            .await
            {
                Ok(r) => r?,
                Err(_) => {
                    metrics::global().slow_player_disconnects.inc();
                    tracing::warn!(conn = self.id, peer = %self.peer, "player stopped reading; disconnecting");
                    return Err(ConnError::Timeout);
                }
            }
            metrics::global().bytes_out.inc_by(total as u64);
            self.bytes_out += total as u64;
        }
        match delivery.end {
            None => Ok(()),
            Some(End::TooSlow) => {
                tracing::warn!(conn = self.id, peer = %self.peer, "player too slow; disconnecting");
                Err(ConnError::Closed)
            }
            Some(End::NotRepublished) => {
                tracing::info!(
                    conn = self.id,
                    "publisher did not come back in time; closing player"
                );
                Err(ConnError::Closed)
            }
            Some(End::Closed) => Err(ConnError::Closed),
        }
    }
}

/// The next batch of a playing connection (pending forever for others).
pub(super) async fn next_delivery(role: &mut Role) -> Delivery {
    let Role::Playing(p) = role else {
        return std::future::pending().await;
    };
    p.player.next_batch(&mut p.batch).await
}
