//! The RTMP command flow of one connection as a sans-io state machine: decoded commands
//! and the answers of the outside world (auth, the publish policy, routing) go in,
//! [`Action`]s come out (messages to send, checks to run, the role to end, close). No
//! I/O, no clock, no tokio: `connection` drives it and is the only async part.
//!
//! The flow: `connect` (checked by `on_connect`) → `createStream` → `publish` or `play`;
//! `deleteStream`/`closeStream` end the role; the bookkeeping commands (`FCPublish`,
//! `releaseStream`, ...) are answered. See docs/architecture.md, "Publish flow" and
//! "Play flow and routing".

use std::collections::VecDeque;

use bytes::Bytes;

use crate::media::StreamKey;
use crate::media::frame::OUT_CHUNK_SIZE;
use crate::route::{self, Client, PlayRequest, Protocol};
use crate::rtmp::amf0::Value;
use crate::rtmp::command::{self, Command, status};
use crate::rtmp::message::{Control, UserControl, csid, kind};
use crate::rtmp::url::{self, TcUrl};

/// Window acknowledgement size we announce (and assume for the peer until told).
pub const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// `flashVer` prefix our relays connect with (a relay identifies itself;
/// docs/architecture.md, "Relay").
pub const RELAY_FLASH_VER_PREFIX: &str = "origin-cluster/";
/// onStatus code of a refused play (librtmp and ffmpeg stop on it).
const PLAY_FAILED: &str = "NetStream.Play.Failed";
/// Highest message stream id handed out by `createStream`.
const MAX_STREAM_ID: u32 = 1024;

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// What the client said in `connect`, for the `on_connect` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    pub app: String,
    /// The vhost the tcUrl (or the app's query) names.
    pub vhost: String,
    pub tc: TcUrl,
    /// The tcUrl as sent.
    pub tc_url: String,
    pub page_url: String,
    /// The connect carries an SRS edge's fingerprint.
    pub srs_edge: bool,
    /// The flashVer of one of our relays (proven only with the token, when one is set).
    pub claims_relay: bool,
    /// The admin token the client presented, if any.
    pub token: String,
}

/// Why the publish policy refused a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRefusal {
    /// onStatus code sent to the client.
    pub code: &'static str,
    /// Metrics label.
    pub reason: &'static str,
    pub description: String,
}

/// Where routing sent a play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// The player is in place: deliver its batches.
    Playing,
    /// SRS's RTMP 302 to the owner.
    Redirect { tc_url: String, url: String },
    /// No publisher anywhere.
    NotFound,
    /// Refused by a routing limit (the text says which).
    Refused(String),
}

/// What goes into the machine.
#[derive(Debug)]
pub enum Input {
    /// A decoded command on message stream `stream_id`.
    Command { cmd: Command, stream_id: u32 },
    /// The answer to [`Action::AuthorizeConnect`]: the client, or the refusal's text.
    ConnectChecked(Result<Client, String>),
    /// The answer to [`Action::Publish`].
    PublishChecked(Result<(), PublishRefusal>),
    /// The answer to [`Action::AuthorizePlay`]: allowed, or the refusal's text.
    PlayAuthorized(Result<(), String>),
    /// The answer to [`Action::Route`].
    Routed(Routed),
}

/// What the machine asks the connection to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Message),
    /// Chunk what we send with this size from now on.
    SetChunkSize(usize),
    /// Run `on_connect`; answer with [`Input::ConnectChecked`].
    AuthorizeConnect(ConnectInfo),
    /// Run the publish policy and claim the stream; answer with [`Input::PublishChecked`].
    Publish {
        key: StreamKey,
        query: Option<String>,
        stream_id: u32,
    },
    /// A publish was refused (for the logs and metrics; the answer is in `Send`s).
    PublishRefused {
        reason: &'static str,
        description: String,
    },
    /// Run `on_play`; answer with [`Input::PlayAuthorized`].
    AuthorizePlay(PlayRequest),
    /// Route the play (write what is queued first: the client sees its play start);
    /// answer with [`Input::Routed`].
    Route {
        request: PlayRequest,
        stream_id: u32,
    },
    /// Drop the publisher or player (unpublish, or leave the stream).
    EndRole,
    /// Write what is queued and close.
    Close,
    /// Write what is queued, give the client a moment to leave on its own, and close.
    CloseAfterLinger,
}

/// An input that does not fit the state: a bug in the driver, never the client's doing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("{0} while nothing waits for it")]
    Unexpected(&'static str),
    #[error("a command while {0} is pending")]
    Pending(&'static str),
    #[error("the session is closed")]
    Closed,
}

/// What the connection is doing with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Idle,
    Publishing { stream_id: u32 },
    Playing { stream_id: u32 },
}

/// After `connect` was accepted.
#[derive(Debug)]
struct Connected {
    app: String,
    tc: TcUrl,
    client: Client,
}

/// A question to the outside world awaiting its answer.
#[derive(Debug)]
enum Pending {
    Connect {
        txn: f64,
        encoding: f64,
        app: String,
        tc: TcUrl,
    },
    Publish {
        stream_id: u32,
        stream: String,
    },
    PlayAuth {
        request: PlayRequest,
        stream_id: u32,
    },
    Route {
        stream_id: u32,
        stream: String,
    },
}

impl Pending {
    fn name(&self) -> &'static str {
        match self {
            Pending::Connect { .. } => "connect",
            Pending::Publish { .. } => "publish",
            Pending::PlayAuth { .. } => "play authorization",
            Pending::Route { .. } => "routing",
        }
    }
}

/// The command state of one RTMP connection.
#[derive(Debug)]
pub struct Session {
    connected: Option<Connected>,
    pending: Option<Pending>,
    role: Role,
    next_stream_id: u32,
    closed: bool,
    actions: VecDeque<Action>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Self {
            connected: None,
            pending: None,
            role: Role::Idle,
            next_stream_id: 1,
            closed: false,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The client, once `connect` was accepted.
    pub fn client(&self) -> Option<&Client> {
        self.connected.as_ref().map(|c| &c.client)
    }

    pub fn handle(&mut self, input: Input) -> Result<(), SessionError> {
        if self.closed {
            return Err(SessionError::Closed);
        }
        match input {
            Input::Command { cmd, stream_id } => {
                if let Some(p) = &self.pending {
                    return Err(SessionError::Pending(p.name()));
                }
                self.on_command(cmd, stream_id);
                Ok(())
            }
            Input::ConnectChecked(r) => match self.pending.take() {
                Some(Pending::Connect {
                    txn,
                    encoding,
                    app,
                    tc,
                }) => {
                    self.on_connect_checked(r, txn, encoding, app, tc);
                    Ok(())
                }
                other => self.unexpected(other, "a connect answer"),
            },
            Input::PublishChecked(r) => match self.pending.take() {
                Some(Pending::Publish { stream_id, stream }) => {
                    self.on_publish_checked(r, stream_id, &stream);
                    Ok(())
                }
                other => self.unexpected(other, "a publish answer"),
            },
            Input::PlayAuthorized(r) => match self.pending.take() {
                Some(Pending::PlayAuth { request, stream_id }) => {
                    self.on_play_authorized(r, request, stream_id);
                    Ok(())
                }
                other => self.unexpected(other, "a play authorization"),
            },
            Input::Routed(r) => match self.pending.take() {
                Some(Pending::Route { stream_id, stream }) => {
                    self.on_routed(r, stream_id, &stream);
                    Ok(())
                }
                other => self.unexpected(other, "a routing answer"),
            },
        }
    }

    fn unexpected(
        &mut self,
        pending: Option<Pending>,
        what: &'static str,
    ) -> Result<(), SessionError> {
        self.pending = pending;
        Err(SessionError::Unexpected(what))
    }

    fn send(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: Bytes) {
        self.actions.push_back(Action::Send(Message {
            csid,
            type_id,
            stream_id,
            payload,
        }));
    }

    fn send_command(&mut self, body: Bytes) {
        self.send(csid::COMMAND, kind::COMMAND_AMF0, 0, body);
    }

    fn send_control(&mut self, c: Control) {
        let (t, p) = c.encode();
        self.send(csid::CONTROL, t, 0, p);
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let body = command::on_status(level, code, description, vec![]);
        self.send(csid::STATUS, kind::COMMAND_AMF0, stream_id, body);
    }

    fn close(&mut self) {
        self.closed = true;
        self.actions.push_back(Action::Close);
    }

    fn end_role(&mut self) {
        self.role = Role::Idle;
        self.actions.push_back(Action::EndRole);
    }

    fn on_command(&mut self, cmd: Command, stream_id: u32) {
        let txn = cmd.transaction;
        match cmd.name.as_str() {
            "connect" => self.on_connect(&cmd),
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1).min(MAX_STREAM_ID);
                let body = command::result(txn, vec![Value::Null, Value::Number(f64::from(id))]);
                self.send_command(body);
            }
            "publish" => self.on_publish(&cmd, stream_id),
            "play" => self.on_play(&cmd, stream_id),
            "deleteStream" | "closeStream" => self.end_role(),
            "FCUnpublish" | "releaseStream" | "FCPublish" | "FCSubscribe" | "_checkbw"
            | "getStreamLength" => {
                if txn != 0.0 {
                    self.send_command(command::result(txn, vec![Value::Null, Value::Undefined]));
                }
            }
            "receiveAudio" | "receiveVideo" | "pause" | "seek" => {}
            other => {
                if txn != 0.0 {
                    let d = format!("unknown command {other}");
                    self.send_command(command::error(txn, status::CALL_FAILED, &d));
                }
            }
        }
    }

    fn on_connect(&mut self, cmd: &Command) {
        let txn = cmd.transaction;
        if self.connected.is_some() {
            let body = command::error(txn, status::CONNECT_REJECTED, "already connected");
            self.send_command(body);
            return self.close();
        }
        let prop = |k: &str| {
            cmd.object
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let (app, app_query) = url::split_stream(prop("app"));
        let app = app.trim_matches('/').to_string();
        if !crate::media::name::valid_name(&app) {
            let body = command::error(txn, status::CONNECT_REJECTED, "invalid app name");
            self.send_command(body);
            return self.close();
        }
        let tc_url = prop("tcUrl");
        let mut tc = TcUrl::parse(tc_url);
        if tc.query.is_none() {
            tc.query = app_query.map(str::to_string);
        }
        let info = ConnectInfo {
            vhost: url::resolve_vhost(&[tc.query.as_deref()]),
            app: app.clone(),
            tc: tc.clone(),
            tc_url: tc_url.to_string(),
            page_url: prop("pageUrl").to_string(),
            srs_edge: is_srs_edge(&cmd.object),
            claims_relay: prop("flashVer").starts_with(RELAY_FLASH_VER_PREFIX),
            token: prop(crate::relay::TOKEN_PROPERTY).to_string(),
        };
        let encoding = cmd
            .object
            .get("objectEncoding")
            .and_then(Value::as_number)
            .unwrap_or(0.0);
        self.pending = Some(Pending::Connect {
            txn,
            encoding,
            app,
            tc,
        });
        self.actions.push_back(Action::AuthorizeConnect(info));
    }

    fn on_connect_checked(
        &mut self,
        checked: Result<Client, String>,
        txn: f64,
        encoding: f64,
        app: String,
        tc: TcUrl,
    ) {
        let client = match checked {
            Ok(c) => c,
            Err(description) => {
                let body = command::error(txn, status::CONNECT_REJECTED, &description);
                self.send_command(body);
                return self.close();
            }
        };
        self.connected = Some(Connected { app, tc, client });
        self.send_control(Control::WindowAckSize(WINDOW_ACK_SIZE));
        self.send_control(Control::SetPeerBandwidth {
            size: WINDOW_ACK_SIZE,
            limit: 2,
        });
        self.send_control(Control::SetChunkSize(OUT_CHUNK_SIZE as u32));
        self.actions.push_back(Action::SetChunkSize(OUT_CHUNK_SIZE));
        self.send_command(command::connect_result(txn, encoding));
    }

    /// Stream key and query of a publish/play name (normalised in `media::name`).
    fn stream_key(&self, name: &str) -> Result<(StreamKey, Option<String>), String> {
        let Some(c) = &self.connected else {
            return Err("connect first".into());
        };
        let (stream, query) = url::split_stream(name);
        let vhost = url::resolve_vhost(&[c.tc.query.as_deref(), query]);
        let key = StreamKey::parse(&vhost, &c.app, stream)
            .map_err(|e| format!("{e}: `{}`", stream.escape_default()))?;
        Ok((key, query.map(str::to_string)))
    }

    fn on_publish(&mut self, cmd: &Command, stream_id: u32) {
        let (key, query) = match self.stream_key(cmd.arg_str(0).unwrap_or_default()) {
            Ok(k) => k,
            Err(e) => {
                return self.refuse_publish(stream_id, status::PUBLISH_BAD_NAME, "bad_name", e);
            }
        };
        if self.role != Role::Idle {
            let d = "connection already publishes or plays".to_string();
            return self.refuse_publish(stream_id, status::PUBLISH_BAD_NAME, "busy", d);
        }
        self.pending = Some(Pending::Publish {
            stream_id,
            stream: key.stream.clone(),
        });
        self.actions.push_back(Action::Publish {
            key,
            query,
            stream_id,
        });
    }

    fn refuse_publish(
        &mut self,
        stream_id: u32,
        code: &str,
        reason: &'static str,
        description: String,
    ) {
        self.send_status(stream_id, "error", code, &description);
        self.actions.push_back(Action::PublishRefused {
            reason,
            description,
        });
        self.close();
    }

    fn on_publish_checked(&mut self, r: Result<(), PublishRefusal>, stream_id: u32, stream: &str) {
        if let Err(refusal) = r {
            let PublishRefusal {
                code,
                reason,
                description,
            } = refusal;
            return self.refuse_publish(stream_id, code, reason, description);
        }
        self.role = Role::Publishing { stream_id };
        self.send_control(Control::UserControl(UserControl::StreamBegin(stream_id)));
        let d = format!("Started publishing stream {stream}.");
        self.send_status(stream_id, "status", status::PUBLISH_START, &d);
    }

    fn on_play(&mut self, cmd: &Command, stream_id: u32) {
        let (key, query) = match self.stream_key(cmd.arg_str(0).unwrap_or_default()) {
            Ok(k) => k,
            Err(e) => {
                self.send_status(stream_id, "error", status::PLAY_STREAM_NOT_FOUND, &e);
                return self.close();
            }
        };
        let Some(c) = &self.connected else {
            return self.close();
        };
        let mut client = c.client.clone();
        client.kind.opted_in = route::opts_into_redirect([c.tc.query.as_deref(), query.as_deref()]);
        // A new play replaces whatever this connection did before.
        self.end_role();
        let request = PlayRequest {
            protocol: Protocol::Rtmp,
            key,
            query,
            client,
        };
        self.pending = Some(Pending::PlayAuth {
            request: request.clone(),
            stream_id,
        });
        self.actions.push_back(Action::AuthorizePlay(request));
    }

    fn on_play_authorized(&mut self, r: Result<(), String>, request: PlayRequest, stream_id: u32) {
        if let Err(description) = r {
            self.send_status(stream_id, "error", PLAY_FAILED, &description);
            return self.close();
        }
        // The normal play reply comes first, as SRS sends it even before a redirect.
        let shown = request.key.stream.clone();
        self.send_control(Control::UserControl(UserControl::StreamBegin(stream_id)));
        let reset = format!("Playing and resetting {shown}.");
        self.send_status(stream_id, "status", status::PLAY_RESET, &reset);
        let start = format!("Started playing {shown}.");
        self.send_status(stream_id, "status", status::PLAY_START, &start);
        let access = command::data(&[
            Value::str("|RtmpSampleAccess"),
            Value::Boolean(true),
            Value::Boolean(true),
        ]);
        self.send(csid::STATUS, kind::DATA_AMF0, stream_id, access);
        let data_start = command::data(&[
            Value::str("onStatus"),
            Value::object([("code", Value::str(status::DATA_START))]),
        ]);
        self.send(csid::STATUS, kind::DATA_AMF0, stream_id, data_start);
        self.pending = Some(Pending::Route {
            stream_id,
            stream: shown,
        });
        self.actions.push_back(Action::Route { request, stream_id });
    }

    fn on_routed(&mut self, routed: Routed, stream_id: u32, stream: &str) {
        match routed {
            Routed::Playing => self.role = Role::Playing { stream_id },
            Routed::Redirect { tc_url, url } => {
                // SRS sends it on chunk stream 5 with message stream id 0.
                let body = command::redirect_302(&tc_url, &url);
                self.send(csid::STATUS, kind::COMMAND_AMF0, 0, body);
                self.closed = true;
                self.actions.push_back(Action::CloseAfterLinger);
            }
            Routed::NotFound => {
                let d = format!("stream {stream} is not published on any origin");
                self.send_status(stream_id, "error", status::PLAY_STREAM_NOT_FOUND, &d);
                self.close();
            }
            Routed::Refused(description) => {
                self.send_status(stream_id, "error", PLAY_FAILED, &description);
                self.close();
            }
        }
    }
}

/// An SRS edge's RTMP client connects with exactly these properties
/// (docs/architecture.md, "Relay").
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
mod tests;
