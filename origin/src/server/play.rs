//! The play policy (serve here, or send the client to the owner with SRS's RTMP 302) and
//! the delivery of a player's batches.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use crate::auth::Event as AuthEvent;
use crate::cluster::ownership::rtmp_redirect;
use crate::media::frame::PLAY_STREAM_ID;
use crate::media::{Delivery, End, Notice, StreamKey};
use crate::metrics::{self, KindLabel};
use crate::rtmp::amf0::Value;
use crate::rtmp::command::{self, Command, status};
use crate::rtmp::message::{Control, UserControl, csid, kind};
use crate::rtmp::url;
use crate::state::Located;

use super::connection::{ConnError, Connection, Playing, Role};
use super::write::write_all_vectored;

/// How long we wait for a redirected client to leave (SRS: 3 s).
const REDIRECT_LINGER: Duration = Duration::from_secs(3);
/// onStatus code of a refused play (librtmp and ffmpeg stop on it).
const PLAY_FAILED: &str = "NetStream.Play.Failed";

impl Connection {
    pub(super) async fn on_play(&mut self, cmd: &Command, stream_id: u32) -> Result<(), ConnError> {
        let name = cmd.arg_str(0).unwrap_or_default().to_string();
        let (key, query) = match self.stream_key(&name) {
            Ok(k) => k,
            Err(e) => {
                self.send_status(stream_id, "error", status::PLAY_STREAM_NOT_FOUND, &e);
                self.flush().await?;
                return Err(ConnError::Closed);
            }
        };
        // A new play replaces whatever this connection did before.
        self.end_role();
        let req = self.auth_request(Some((&key, query.as_deref())));
        if let Err(refusal) = self.origin.auth.check(AuthEvent::Play, &req).await {
            tracing::info!(conn = self.id, peer = %self.peer, stream = %key, reason = refusal.reason, "play refused");
            self.send_status(stream_id, "error", PLAY_FAILED, &refusal.description);
            self.flush().await?;
            return Err(ConnError::Closed);
        }
        // on_stop goes out when this play ends, whichever way (redirect included).
        let stop = self.origin.auth.notice(AuthEvent::Stop, req);
        // The normal play reply comes first, as SRS sends it even before a redirect.
        let shown = &key.stream;
        self.send_control(Control::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_status(
            stream_id,
            "status",
            status::PLAY_RESET,
            &format!("Playing and resetting {shown}."),
        );
        self.send_status(
            stream_id,
            "status",
            status::PLAY_START,
            &format!("Started playing {shown}."),
        );
        let access = command::data(&[
            Value::str("|RtmpSampleAccess"),
            Value::Boolean(true),
            Value::Boolean(true),
        ]);
        self.send(csid::STATUS, kind::DATA_AMF0, stream_id, &access);
        let data_start = command::data(&[
            Value::str("onStatus"),
            Value::object([("code", Value::str(status::DATA_START))]),
        ]);
        self.send(csid::STATUS, kind::DATA_AMF0, stream_id, &data_start);
        self.flush().await?;

        let ip = self.tc_host();
        let opted_in = [self.session.tc.query.as_deref(), query.as_deref()]
            .into_iter()
            .flatten()
            .any(|q| url::query_param(q, "redirect") == Some("302"));
        let redirect = self.origin.redirects(self.session.srs_edge, opted_in);
        let located = if self.session.relay {
            self.origin.locate_owned(&key).await
        } else {
            self.origin.locate(&key, &ip, redirect).await
        };
        let relayed = match located {
            Located::Local(player) => Some(player),
            Located::Remote { found, player } => {
                if redirect {
                    drop(player);
                    return self.redirect(&found.owner, &key, query.as_deref()).await;
                }
                self.origin.relay(&key, found, player, &ip).await
            }
            Located::NotFound => None,
        };
        let player = match relayed {
            Some(player) => player,
            None => {
                tracing::info!(conn = self.id, stream = %key, "no publisher anywhere; giving up");
                self.send_status(
                    stream_id,
                    "error",
                    status::PLAY_STREAM_NOT_FOUND,
                    &format!("stream {shown} is not published on any origin"),
                );
                self.flush().await?;
                return Err(ConnError::Closed);
            }
        };
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, "playing");
        let mut player = player;
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
        Ok(())
    }

    async fn redirect(
        &mut self,
        owner: &origin_wire::clusters::Owner,
        key: &StreamKey,
        query: Option<&str>,
    ) -> Result<(), ConnError> {
        let (tc_url, full) = rtmp_redirect(owner, key, query);
        metrics::global()
            .redirects
            .get_or_create(&KindLabel { kind: "rtmp" })
            .inc();
        // The target's query is the client's (it may hold a token): not logged.
        let to = full.split('?').next().unwrap_or_default();
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, to, "RTMP 302 redirect");
        let body = command::redirect_302(&tc_url, &full);
        // SRS sends it on chunk stream 5 with message stream id 0.
        self.send(csid::STATUS, kind::COMMAND_AMF0, 0, &body);
        self.flush().await?;
        // Give the client up to 3 s to read it and leave (or send a command), then close.
        let _ = timeout(REDIRECT_LINGER, async {
            loop {
                match self.reader.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        while let Ok(Some(m)) = self.decoder.decode(&mut self.rbuf) {
                            if m.type_id == kind::COMMAND_AMF0 || m.type_id == kind::COMMAND_AMF3 {
                                return;
                            }
                        }
                    }
                }
            }
        })
        .await;
        Err(ConnError::Closed)
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
