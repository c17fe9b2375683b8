//! The RTMP command state machine: connect, createStream and the bookkeeping commands;
//! publish and play are handed to their own modules.

use crate::media::StreamKey;
use crate::rtmp::amf0::Value;
use crate::rtmp::command::{self, Command, status};
use crate::rtmp::message::{Control, csid, kind};
use crate::rtmp::url::{self, TcUrl};

use super::connection::{ConnError, Connection, WINDOW_ACK_SIZE};

/// `flashVer` prefix our relays connect with (docs/architecture.md, "Relay": a relay identifies
/// itself).
pub const RELAY_FLASH_VER_PREFIX: &str = "origin-cluster/";

impl Connection {
    pub(super) async fn on_command(
        &mut self,
        cmd: Command,
        stream_id: u32,
    ) -> Result<(), ConnError> {
        let txn = cmd.transaction;
        match cmd.name.as_str() {
            "connect" => self.on_connect(&cmd).await,
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1).min(1024);
                let body = command::result(txn, vec![Value::Null, Value::Number(f64::from(id))]);
                self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
                Ok(())
            }
            "publish" => self.on_publish(&cmd, stream_id).await,
            "play" => self.on_play(&cmd, stream_id).await,
            "deleteStream" | "closeStream" | "FCUnpublish" => {
                if cmd.name == "FCUnpublish" && txn != 0.0 {
                    let body = command::result(txn, vec![Value::Null, Value::Undefined]);
                    self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
                }
                if cmd.name != "FCUnpublish" {
                    // Dropping the role's handle unpublishes or leaves the stream.
                    self.end_role();
                }
                Ok(())
            }
            "releaseStream" | "FCPublish" | "FCSubscribe" | "_checkbw" | "getStreamLength" => {
                if txn != 0.0 {
                    let body = command::result(txn, vec![Value::Null, Value::Undefined]);
                    self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
                }
                Ok(())
            }
            "receiveAudio" | "receiveVideo" | "pause" | "seek" => Ok(()),
            other => {
                if txn != 0.0 {
                    let body = command::error(
                        txn,
                        status::CALL_FAILED,
                        &format!("unknown command {other}"),
                    );
                    self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
                }
                Ok(())
            }
        }
    }

    async fn on_connect(&mut self, cmd: &Command) -> Result<(), ConnError> {
        let app_raw = cmd
            .object
            .get("app")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let tc_url = cmd
            .object
            .get("tcUrl")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (app, app_query) = url::split_stream(app_raw);
        let app = app.trim_matches('/').to_string();
        if !crate::media::name::valid_name(&app) {
            let body = command::error(
                cmd.transaction,
                "NetConnection.Connect.Rejected",
                "invalid app name",
            );
            self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
            return Err(ConnError::Protocol("invalid app name".into()));
        }
        let s = &mut self.session;
        s.tc = TcUrl::parse(tc_url);
        if s.tc.query.is_none() {
            s.tc.query = app_query.map(str::to_string);
        }
        s.tc_url = tc_url.to_string();
        s.app = app;
        s.srs_edge = is_srs_edge(&cmd.object);
        // A relay of another origin: its flashVer, and the admin token when one is set.
        let claims_relay = cmd
            .object
            .get("flashVer")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with(RELAY_FLASH_VER_PREFIX));
        let token = cmd
            .object
            .get(crate::relay::TOKEN_PROPERTY)
            .and_then(Value::as_str)
            .unwrap_or_default();
        s.relay = claims_relay
            && (self.origin.config.admin_token.is_none() || self.origin.is_admin_token(token));
        s.page_url = cmd
            .object
            .get("pageUrl")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Only the admin token makes a cluster member (a flashVer alone is no proof): it skips the
        // rules and hooks (docs/architecture.md, "Auth and hooks": the relaying origin ran them for
        // its player).
        s.cluster_member = self.origin.auth.is_cluster_member(Some(token));
        self.authorize_connect(cmd.transaction).await?;
        self.session.connected = true;
        let encoding = cmd
            .object
            .get("objectEncoding")
            .and_then(Value::as_number)
            .unwrap_or(0.0);
        self.send_control(Control::WindowAckSize(WINDOW_ACK_SIZE));
        self.send_control(Control::SetPeerBandwidth {
            size: WINDOW_ACK_SIZE,
            limit: 2,
        });
        self.send_control(Control::SetChunkSize(
            crate::media::frame::OUT_CHUNK_SIZE as u32,
        ));
        self.encoder
            .set_chunk_size(crate::media::frame::OUT_CHUNK_SIZE);
        let body = command::connect_result(cmd.transaction, encoding);
        self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
        tracing::debug!(conn = self.id, app = %self.session.app, srs_edge = self.session.srs_edge, relay = self.session.relay, cluster_member = self.session.cluster_member, "connected");
        Ok(())
    }

    /// Stream key and query of a publish/play name (normalised in `media::name`).
    pub(super) fn stream_key(&self, name: &str) -> Result<(StreamKey, Option<String>), String> {
        if !self.session.connected {
            return Err("connect first".into());
        }
        let (stream, query) = url::split_stream(name);
        let vhost = url::resolve_vhost(&[self.session.tc.query.as_deref(), query]);
        let key = StreamKey::parse(&vhost, &self.session.app, stream)
            .map_err(|e| format!("{e}: `{}`", stream.escape_default()))?;
        Ok((key, query.map(str::to_string)))
    }

    /// Host of the client's tcUrl, echoed in ownership queries.
    pub(super) fn tc_host(&self) -> String {
        if self.session.tc.host.is_empty() {
            self.peer.ip().to_string()
        } else {
            self.session.tc.host.clone()
        }
    }
}

/// An SRS edge's RTMP client connects with exactly these properties (docs/architecture.md,
/// "Relay").
pub fn is_srs_edge(object: &Value) -> bool {
    let str_is = |k: &str, v: &str| object.get(k).and_then(Value::as_str) == Some(v);
    let num_is = |k: &str, v: f64| object.get(k).and_then(Value::as_number) == Some(v);
    str_is("flashVer", "WIN 15,0,0,239")
        && num_is("capabilities", 239.0)
        && num_is("videoFunction", 1.0)
        && matches!(object.get("fpad"), Some(Value::Boolean(false)))
        && object
            .get("objectEncoding")
            .and_then(Value::as_number)
            .unwrap_or(0.0)
            == 0.0
        && object.get("fourCcList").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_edge_fingerprint() {
        let edge = Value::object([
            ("app", Value::str("live")),
            ("flashVer", Value::str("WIN 15,0,0,239")),
            ("tcUrl", Value::str("rtmp://127.0.0.1:1935/live")),
            ("fpad", Value::Boolean(false)),
            ("capabilities", Value::Number(239.0)),
            ("audioCodecs", Value::Number(3575.0)),
            ("videoCodecs", Value::Number(252.0)),
            ("videoFunction", Value::Number(1.0)),
            ("objectEncoding", Value::Number(0.0)),
        ]);
        assert!(is_srs_edge(&edge));
        // ffmpeg's connect has another flashVer (and fourCcList in new versions).
        let ffmpeg = Value::object([
            ("flashVer", Value::str("LNX 9,0,124,2")),
            ("capabilities", Value::Number(15.0)),
        ]);
        assert!(!is_srs_edge(&ffmpeg));
    }
}
