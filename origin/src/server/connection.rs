//! One RTMP connection: handshake, then a loop that reads chunks and, for players, writes
//! media from the stream's fan-out ring in batches (vectored writes).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, timeout};

use super::{Located, Origin};
use crate::auth::{self, Event as AuthEvent, Notice, Request as AuthRequest};
use crate::cluster::ownership::rtmp_redirect;
use crate::config::PublishConflict;
use crate::media::{Frame, Next, PublisherInfo, Stream, StreamKey, Subscriber};
use crate::metrics::{self, KindLabel, ReasonLabel};
use crate::rtmp::amf0::Value;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage};
use crate::rtmp::command::{self, Command, status};
use crate::rtmp::handshake::{self, PACKET_SIZE};
use crate::rtmp::message::{Control, UserControl, csid, kind, split_aggregate};
use crate::rtmp::url::{self, TcUrl};

const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// onStatus code of a refused play (librtmp and ffmpeg stop on it).
const PLAY_FAILED: &str = "NetStream.Play.Failed";
/// Most frames or bytes written to a player in one vectored write.
const BATCH_FRAMES: usize = 128;
const BATCH_BYTES: usize = 1 << 20;
/// How long we wait for a redirected client to leave (SRS: 3 s).
const REDIRECT_LINGER: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] crate::rtmp::chunk::ChunkError),
    #[error("{0}")]
    Protocol(String),
    #[error("timed out")]
    Timeout,
    /// Not an error: the connection is over (peer left, redirect sent, refusal sent).
    #[error("closed")]
    Closed,
}

struct Publishing {
    stream: Arc<Stream>,
    id: u64,
    /// Sends on_unpublish when the publish ends.
    _unpublish: Option<Notice>,
}

struct Playing {
    sub: Subscriber,
    stream_id: u32,
    unpublished_at: Option<Instant>,
    /// Set after the first write: the join burst (metadata, headers, GOP) is never merged.
    started: bool,
    /// Sends on_stop when the play ends.
    _stop: Option<Notice>,
}

enum Role {
    Idle,
    Publishing(Publishing),
    Playing(Playing),
}

pub struct Connection {
    origin: Arc<Origin>,
    id: u64,
    peer: SocketAddr,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    bytes_in: u64,
    acked: u64,
    peer_window: u32,
    connected: bool,
    app: String,
    tc_url: String,
    tc: TcUrl,
    page_url: String,
    /// Presented the admin token at connect (another origin of this cluster).
    cluster_member: bool,
    /// Sends on_close when the connection ends.
    close: Option<Notice>,
    bytes_out: u64,
    next_stream_id: u32,
    role: Role,
}

impl Connection {
    pub fn new(origin: Arc<Origin>, socket: TcpStream, peer: SocketAddr) -> Self {
        let (reader, writer) = socket.into_split();
        let limits = DecoderLimits {
            max_message_size: origin.config.max_message_size,
            max_chunk_streams: origin.config.max_chunk_streams,
            max_in_flight: 2 * origin.config.max_message_size,
            ..DecoderLimits::default()
        };
        Self {
            id: origin.next_id(),
            origin,
            peer,
            reader,
            writer,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(4 * 1024),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(crate::rtmp::chunk::DEFAULT_CHUNK_SIZE),
            bytes_in: 0,
            acked: 0,
            peer_window: WINDOW_ACK_SIZE,
            connected: false,
            app: String::new(),
            tc_url: String::new(),
            tc: TcUrl::default(),
            page_url: String::new(),
            cluster_member: false,
            close: None,
            bytes_out: 0,
            next_stream_id: 1,
            role: Role::Idle,
        }
    }

    pub async fn run(mut self) {
        let result = self.serve().await;
        match &result {
            Ok(()) | Err(ConnError::Closed) => {
                tracing::debug!(conn = self.id, peer = %self.peer, "connection closed")
            }
            Err(ConnError::Handshake(e)) => {
                metrics::global()
                    .connections_rejected
                    .get_or_create(&ReasonLabel {
                        reason: "handshake",
                    })
                    .inc();
                tracing::info!(conn = self.id, peer = %self.peer, error = %e, "closing connection: not an RTMP handshake");
            }
            Err(e) => {
                tracing::info!(conn = self.id, peer = %self.peer, error = %e, "connection ended")
            }
        }
        self.stop_role();
        let _ = self.writer.shutdown().await;
        if let Some(mut close) = self.close.take() {
            let r = close.request_mut();
            r.send_bytes = self.bytes_out;
            r.recv_bytes = self.bytes_in;
        }
    }

    fn stop_role(&mut self) {
        match std::mem::replace(&mut self.role, Role::Idle) {
            Role::Publishing(p) => {
                if p.stream.unpublish(p.id) {
                    tracing::info!(conn = self.id, stream = %p.stream.key, "unpublished");
                }
                let key = p.stream.key.clone();
                drop(p);
                self.origin.registry.reap(&key);
            }
            Role::Playing(p) => {
                let key = p.sub.stream().key.clone();
                drop(p);
                self.origin.registry.reap(&key);
            }
            Role::Idle => {}
        }
        self.origin.update_gauges();
    }

    async fn serve(&mut self) -> Result<(), ConnError> {
        self.handshake().await?;
        let mut end_publishers = self.origin.end_publishers_signal();
        loop {
            while let Some(msg) = self.decoder.decode(&mut self.rbuf)? {
                self.on_message(msg).await?;
            }
            self.flush().await?;
            let playing = matches!(self.role, Role::Playing(_));
            let publishing = matches!(self.role, Role::Publishing(_));
            // Players may legitimately send nothing for a long time (and a timer per read
            // would cost every player a timer-wheel insert per frame); others may not idle.
            let read_limit = (!playing).then_some(self.origin.config.idle_timeout);
            tokio::select! {
                n = read_some(&mut self.reader, &mut self.rbuf, read_limit) => {
                    self.on_read(n?)?;
                }
                next = next_frame(&mut self.role, self.origin.config.republish_timeout), if playing => {
                    self.deliver(next).await?;
                }
                _ = end_publishers.changed(), if publishing => {
                    if *end_publishers.borrow() {
                        tracing::info!(conn = self.id, "ending publisher (drain or shutdown) so the encoder reconnects elsewhere");
                        return Ok(());
                    }
                }
            }
        }
    }

    fn on_read(&mut self, n: usize) -> Result<(), ConnError> {
        if n == 0 {
            return Err(ConnError::Closed);
        }
        self.bytes_in += n as u64;
        metrics::global().bytes_in.inc_by(n as u64);
        if self.bytes_in - self.acked >= u64::from(self.peer_window.max(1)) {
            self.acked = self.bytes_in;
            self.send_control(Control::Ack(self.bytes_in as u32));
        }
        Ok(())
    }

    async fn handshake(&mut self) -> Result<(), ConnError> {
        let limit = self.origin.config.handshake_timeout;
        let mut c0c1 = vec![0u8; 1 + PACKET_SIZE];
        // Reject garbage as soon as the first byte shows it is not RTMP.
        timeout(limit, self.reader.read_exact(&mut c0c1[..1]))
            .await
            .map_err(|_| ConnError::Timeout)??;
        if c0c1[0] != handshake::RTMP_VERSION {
            return Err(handshake::HandshakeError::BadVersion(c0c1[0]).into());
        }
        timeout(limit, self.reader.read_exact(&mut c0c1[1..]))
            .await
            .map_err(|_| ConnError::Timeout)??;
        let (kind, s0s1s2) = handshake::server_response(&c0c1)?;
        self.writer.write_all(&s0s1s2).await?;
        let mut c2 = vec![0u8; PACKET_SIZE];
        timeout(limit, self.reader.read_exact(&mut c2))
            .await
            .map_err(|_| ConnError::Timeout)??;
        tracing::debug!(conn = self.id, peer = %self.peer, ?kind, "handshake done");
        Ok(())
    }

    fn send(&mut self, cs: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.encoder
            .encode(&mut self.wbuf, cs, 0, type_id, stream_id, payload);
    }

    fn send_control(&mut self, c: Control) {
        let (t, p) = c.encode();
        self.send(csid::CONTROL, t, 0, &p);
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let body = command::on_status(level, code, description, vec![]);
        self.send(csid::STATUS, kind::COMMAND_AMF0, stream_id, &body);
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = self.wbuf.split();
        match timeout(
            self.origin.config.write_timeout,
            self.writer.write_all(&buf),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Err(ConnError::Timeout),
        }
        metrics::global().bytes_out.inc_by(buf.len() as u64);
        self.bytes_out += buf.len() as u64;
        Ok(())
    }

    async fn on_message(&mut self, msg: RawMessage) -> Result<(), ConnError> {
        if let Some(c) = Control::parse(msg.type_id, &msg.payload)
            .map_err(|e| ConnError::Protocol(e.to_string()))?
        {
            return self.on_control(c);
        }
        match msg.type_id {
            kind::AUDIO | kind::VIDEO | kind::DATA_AMF0 | kind::DATA_AMF3 => self.on_media(msg),
            kind::AGGREGATE => {
                for (t, ts, payload) in split_aggregate(msg.timestamp, &msg.payload) {
                    self.on_media(RawMessage {
                        csid: msg.csid,
                        timestamp: ts,
                        type_id: t,
                        stream_id: msg.stream_id,
                        payload,
                    })?;
                }
                Ok(())
            }
            kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => {
                match command::parse(msg.type_id, &msg.payload) {
                    Ok(cmd) => self.on_command(cmd, msg.stream_id).await,
                    Err(e) => {
                        tracing::debug!(conn = self.id, error = %e, "undecodable command ignored");
                        Ok(())
                    }
                }
            }
            _ => Ok(()),
        }
    }

    fn on_control(&mut self, c: Control) -> Result<(), ConnError> {
        match c {
            Control::SetChunkSize(n) => self.decoder.set_chunk_size(n)?,
            Control::Abort(cs) => self.decoder.abort(cs),
            Control::WindowAckSize(n) => self.peer_window = n,
            Control::UserControl(UserControl::PingRequest(t)) => {
                self.send_control(Control::UserControl(UserControl::PingResponse(t)));
            }
            _ => {}
        }
        Ok(())
    }

    fn on_media(&mut self, msg: RawMessage) -> Result<(), ConnError> {
        let Role::Publishing(p) = &self.role else {
            return Ok(());
        };
        let mut payload = msg.payload;
        if msg.type_id == kind::DATA_AMF0 {
            // "@setDataFrame", "onMetaData", {...} is stored as "onMetaData", {...}.
            const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
            if payload.starts_with(SET_DATA_FRAME) {
                payload = payload.slice(SET_DATA_FRAME.len()..);
            }
        }
        p.stream
            .push(Frame::new(msg.type_id, msg.timestamp, payload));
        Ok(())
    }

    async fn on_command(&mut self, cmd: Command, stream_id: u32) -> Result<(), ConnError> {
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
                    self.stop_role();
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
        let (app, _) = url::split_stream(app_raw);
        let app = app.trim_matches('/').to_string();
        if !url::valid_name(&app) {
            let body = command::error(
                cmd.transaction,
                "NetConnection.Connect.Rejected",
                "invalid app name",
            );
            self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
            return Err(ConnError::Protocol(format!("invalid app `{app_raw}`")));
        }
        self.tc = TcUrl::parse(tc_url);
        if self.tc.query.is_none() {
            self.tc.query = url::split_stream(app_raw).1.map(str::to_string);
        }
        self.tc_url = tc_url.to_string();
        self.app = app;
        self.page_url = cmd
            .object
            .get("pageUrl")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.cluster_member = self.origin.auth.is_cluster_member(
            cmd.object
                .get(auth::CLUSTER_TOKEN_FIELD)
                .and_then(Value::as_str),
        );
        let req = self.auth_request(None);
        if let Err(refusal) = self.origin.auth.check(AuthEvent::Connect, &req).await {
            tracing::info!(conn = self.id, peer = %self.peer, app = %self.app, reason = refusal.reason, "connect refused");
            let body = command::error(
                cmd.transaction,
                "NetConnection.Connect.Rejected",
                &refusal.description,
            );
            self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, &body);
            self.flush().await?;
            return Err(ConnError::Closed);
        }
        self.close = self.origin.auth.notice(AuthEvent::Close, req);
        self.connected = true;
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
        // The tcUrl's query may carry a client's token: never logged.
        let tc_url = self.tc_url.split('?').next().unwrap_or_default();
        tracing::debug!(conn = self.id, app = %self.app, tc_url, cluster_member = self.cluster_member, "connected");
        Ok(())
    }

    /// Stream key and query of a publish/play name.
    fn stream_key(&self, name: &str) -> Result<(StreamKey, Option<String>), String> {
        if !self.connected {
            return Err("connect first".into());
        }
        let (stream, query) = url::split_stream(name);
        if !url::valid_name(stream) {
            return Err(format!("invalid stream name `{name}`"));
        }
        let vhost = url::resolve_vhost(&[self.tc.query.as_deref(), query]);
        Ok((
            StreamKey::new(vhost, self.app.clone(), stream),
            query.map(str::to_string),
        ))
    }

    /// What the auth rules and hooks see of this client; `stream` is a stream key and the
    /// stream name's query.
    fn auth_request(&self, stream: Option<(&StreamKey, Option<&str>)>) -> AuthRequest {
        let (vhost, name, param, stream_id) = match stream {
            Some((key, query)) => (
                key.vhost.clone(),
                key.stream.clone(),
                query.map(|q| format!("?{q}")).unwrap_or_default(),
                self.origin
                    .registry
                    .get(key)
                    .and_then(|s| s.publisher())
                    .map(|p| p.id.to_string())
                    .unwrap_or_default(),
            ),
            None => (
                url::resolve_vhost(&[self.tc.query.as_deref()]),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        AuthRequest {
            client_id: self.id.to_string(),
            ip: Some(self.peer.ip()),
            vhost,
            app: self.app.clone(),
            stream: name,
            param,
            tc_url: self
                .tc_url
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string(),
            page_url: self.page_url.clone(),
            stream_id,
            send_bytes: 0,
            recv_bytes: 0,
            cluster_member: self.cluster_member,
        }
    }

    /// Host of the client's tcUrl, echoed in ownership queries.
    fn tc_host(&self) -> String {
        if self.tc.host.is_empty() {
            self.peer.ip().to_string()
        } else {
            self.tc.host.clone()
        }
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

    async fn on_publish(&mut self, cmd: &Command, stream_id: u32) -> Result<(), ConnError> {
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
        if self.origin.registry.is_published(&key) {
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
                        .find_owner(&peers, &key, &self.tc_host())
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
        let stream = self.origin.registry.get_or_create(&key);
        let id = self.id;
        if let Err(e) = stream.publish(PublisherInfo {
            id,
            addr: Some(self.peer),
            since: std::time::Instant::now(),
        }) {
            drop(stream);
            return self
                .refuse_publish(
                    stream_id,
                    status::PUBLISH_BAD_NAME,
                    "already_published",
                    &e.to_string(),
                )
                .await;
        }
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, "publishing");
        req.stream_id = id.to_string();
        let unpublish = self.origin.auth.notice(AuthEvent::Unpublish, req);
        self.role = Role::Publishing(Publishing {
            stream,
            id,
            _unpublish: unpublish,
        });
        self.origin.update_gauges();
        self.send_control(Control::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_status(
            stream_id,
            "status",
            status::PUBLISH_START,
            &format!("Started publishing stream {name}."),
        );
        Ok(())
    }

    async fn on_play(&mut self, cmd: &Command, stream_id: u32) -> Result<(), ConnError> {
        let name = cmd.arg_str(0).unwrap_or_default().to_string();
        let (key, query) = match self.stream_key(&name) {
            Ok(k) => k,
            Err(e) => {
                self.send_status(stream_id, "error", status::PLAY_STREAM_NOT_FOUND, &e);
                self.flush().await?;
                return Err(ConnError::Closed);
            }
        };
        if !matches!(self.role, Role::Idle) {
            self.stop_role();
        }
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
        self.send_control(Control::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_status(
            stream_id,
            "status",
            status::PLAY_RESET,
            &format!("Playing and resetting {name}."),
        );
        self.send_status(
            stream_id,
            "status",
            status::PLAY_START,
            &format!("Started playing {name}."),
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

        let sub = match self.origin.locate(&key, &self.tc_host()).await {
            Located::Local(sub) => sub,
            Located::Remote(found) => {
                return self.redirect(&found.owner, &key, query.as_deref()).await;
            }
            Located::NotFound => {
                tracing::info!(conn = self.id, stream = %key, "no publisher anywhere; giving up");
                self.send_status(
                    stream_id,
                    "error",
                    status::PLAY_STREAM_NOT_FOUND,
                    &format!("stream {name} is not published on any origin"),
                );
                self.flush().await?;
                return Err(ConnError::Closed);
            }
        };
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, "playing");
        self.role = Role::Playing(Playing {
            sub,
            stream_id,
            unpublished_at: None,
            started: false,
            _stop: stop,
        });
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
        tracing::info!(conn = self.id, peer = %self.peer, stream = %key, to = %full, "RTMP 302 redirect");
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

    async fn deliver(&mut self, first: Next) -> Result<(), ConnError> {
        let merge = self.origin.config.merge_writes;
        let Role::Playing(p) = &mut self.role else {
            return Ok(());
        };
        let stream_id = p.stream_id;
        // The join burst (and a re-prime after a lag) goes out at once: merging only ever
        // delays live frames, never a new player's first picture.
        let catching_up = !p.started || p.sub.catching_up();
        p.started = true;
        let mut frames: Vec<Bytes> = Vec::with_capacity(if catching_up { 64 } else { 16 });
        let mut bytes = 0usize;
        let mut media = 0usize;
        let mut next = Some(first);
        let mut end = false;
        loop {
            let Some(n) = next.take() else {
                break;
            };
            match n {
                Next::Frame(f) => {
                    let b = f.rtmp(stream_id);
                    bytes += b.len();
                    media += 1;
                    frames.push(b);
                }
                n @ (Next::Unpublished | Next::Published) => {
                    let published = matches!(n, Next::Published);
                    p.unpublished_at = (!published).then(Instant::now);
                    let (control, code, verb) = if published {
                        (
                            UserControl::StreamBegin(stream_id),
                            status::PLAY_PUBLISH_NOTIFY,
                            "published",
                        )
                    } else {
                        (
                            UserControl::StreamEof(stream_id),
                            status::PLAY_UNPUBLISH_NOTIFY,
                            "unpublished",
                        )
                    };
                    let text = format!("{} is now {verb}.", p.sub.stream().key.stream);
                    queue_notify(
                        &mut self.encoder,
                        &mut self.wbuf,
                        stream_id,
                        control,
                        code,
                        &text,
                    );
                    break;
                }
                Next::TooSlow => {
                    metrics::global().slow_player_disconnects.inc();
                    tracing::warn!(conn = self.id, peer = %self.peer, stream = %p.sub.stream().key, "player too slow; disconnecting");
                    end = true;
                    break;
                }
                Next::Closed => {
                    end = true;
                    break;
                }
            }
            if frames.len() >= BATCH_FRAMES || bytes >= BATCH_BYTES {
                break;
            }
            next = p.sub.try_next();
        }
        // Merged writes: after a live write the player rests for `merge`; what the stream
        // sends meanwhile waits in the ring and goes out in one write when it comes back (no
        // frame waits longer than `merge`), with one wake-up per interval instead of one per
        // frame. The join burst (and a re-prime after a lag) is written whole first, and the
        // first frame after a quiet spell is never held back.
        let rest = !merge.is_zero() && media > 0 && !end && !p.sub.catching_up();
        // Control/status messages queued before these frames go first.
        // (Only split when there is something: splitting an empty buffer still allocates.)
        if !self.wbuf.is_empty() {
            frames.insert(0, self.wbuf.split().freeze());
        }
        if !frames.is_empty() {
            let total: usize = frames.iter().map(Bytes::len).sum();
            match timeout(
                self.origin.config.write_timeout,
                write_all_vectored(&mut self.writer, &frames),
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
        if end {
            return Err(ConnError::Closed);
        }
        if rest {
            tokio::time::sleep(merge).await;
        }
        Ok(())
    }
}

/// The next item for a player; ends a player whose publisher did not come back in time.
async fn next_frame(role: &mut Role, republish_timeout: Duration) -> Next {
    let Role::Playing(p) = role else {
        return std::future::pending().await;
    };
    match p.unpublished_at {
        None => p.sub.next().await,
        Some(at) => tokio::select! {
            n = p.sub.next() => n,
            _ = tokio::time::sleep_until(at + republish_timeout) => Next::Closed,
        },
    }
}

/// Queues a User Control event and an onStatus for a player (publisher left or came back).
fn queue_notify(
    encoder: &mut ChunkEncoder,
    wbuf: &mut BytesMut,
    stream_id: u32,
    control: UserControl,
    code: &str,
    description: &str,
) {
    let (t, c) = Control::UserControl(control).encode();
    encoder.encode(wbuf, csid::CONTROL, 0, t, 0, &c);
    let body = command::on_status("status", code, description, vec![]);
    encoder.encode(wbuf, csid::STATUS, 0, kind::COMMAND_AMF0, stream_id, &body);
}

/// Reads into `buf`, failing with [`ConnError::Timeout`] after `limit` without data.
async fn read_some(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> Result<usize, ConnError> {
    match limit {
        Some(d) => Ok(timeout(d, reader.read_buf(buf))
            .await
            .map_err(|_| ConnError::Timeout)??),
        None => Ok(reader.read_buf(buf).await?),
    }
}

/// Writes every buffer with as few syscalls as the kernel allows.
async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &[Bytes]) -> std::io::Result<()> {
    // IOV_MAX is 1024; a batch is at most BATCH_FRAMES + 1 buffers, so one array covers
    // it (longer lists go out in several calls).
    const MAX_IOV: usize = BATCH_FRAMES + 8;
    let mut idx = 0;
    let mut offset = 0;
    while idx < bufs.len() {
        // The slices live on the stack of one poll only, so they do not grow every
        // player's task.
        let mut n = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for (i, b) in bufs[idx..].iter().take(MAX_IOV).enumerate() {
                slices[k] = IoSlice::new(if i == 0 { &b[offset..] } else { b });
                k += 1;
            }
            tokio::io::AsyncWrite::poll_write_vectored(
                std::pin::Pin::new(&mut *w),
                cx,
                &slices[..k],
            )
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - offset;
            if n >= left {
                n -= left;
                idx += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}
