//! An RTMP client: connect, publish (e.g. an FLV file), play and read media and status
//! messages, follow an RTMP 302. Used by relays, the tests and the benchmarks; built on
//! the same sans-io protocol modules as the server.
//!
//! Every call is cancel-safe: outgoing bytes stay in the client's buffer until the socket
//! took them, so a call dropped mid-write (a relay's `select!`, a caller's timeout) leaves
//! the rest for the next write instead of a truncated chunk on the wire, and a message is
//! only taken from the read buffer once it is complete. Connect, handshake and `connect`
//! are bounded by [`ConnectOptions::timeout`], and so is every later write.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::media::flv::Tag;
use crate::rtmp::amf0::Value;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use crate::rtmp::command::{self, Command};
use crate::rtmp::handshake::{self, PACKET_SIZE};
use crate::rtmp::message::{Control, UserControl, csid, kind, split_aggregate};
use crate::rtmp::url::TcUrl;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("chunk stream: {0}")]
    Chunk(#[from] crate::rtmp::chunk::ChunkError),
    #[error("bad url `{0}` (want rtmp://host[:port]/app/stream)")]
    Url(String),
    #[error("server answered {code}: {description}")]
    Status { code: String, description: String },
    #[error("server sent an RTMP 302 to {redirect2}")]
    Redirect { redirect: String, redirect2: String },
    #[error("connection closed by the server")]
    Closed,
    #[error("timed out")]
    Timeout,
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

/// What the server sent.
#[derive(Debug, Clone)]
pub enum Event {
    /// Audio (8) or video (9) message.
    Media(RawMessage),
    /// A data message (onMetaData, |RtmpSampleAccess, ...).
    Data(RawMessage),
    /// An onStatus command; `info` is its info object.
    Status { message: RawMessage, info: Value },
    /// Any other command.
    Command(RawMessage, Command),
}

/// The parts of `rtmp://host:port/app/stream?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    /// Stream name including its `?query`.
    pub stream: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let t = TcUrl::parse(url);
        if t.scheme != "rtmp" || t.host.is_empty() {
            return Err(ClientError::Url(url.into()));
        }
        let (app, stream) = t
            .app
            .split_once('/')
            .ok_or_else(|| ClientError::Url(url.into()))?;
        let stream = match &t.query {
            Some(q) => format!("{stream}?{q}"),
            None => stream.to_string(),
        };
        Ok(Self {
            host: t.host,
            port: t.port.unwrap_or(origin_wire::DEFAULT_RTMP_PORT),
            app: app.to_string(),
            stream,
        })
    }

    pub fn tc_url(&self) -> String {
        format!(
            "rtmp://{}:{}/{}",
            origin_wire::addr::url_host(&self.host),
            self.port,
            self.app
        )
    }
}

/// How a client introduces itself.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub flash_ver: String,
    /// Extra properties of the connect command object.
    pub properties: Vec<(String, Value)>,
    /// Bound on TCP connect + handshake + the connect command, and on each later write.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            flash_ver: "FMLE/3.0 (compatible; origin-client)".into(),
            properties: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct Client {
    socket: TcpStream,
    /// Sub-messages of an aggregate message not returned yet.
    pending: VecDeque<RawMessage>,
    rbuf: BytesMut,
    /// Bytes not taken by the socket yet; only advanced by what a write took.
    wbuf: BytesMut,
    /// Bound on one flush.
    write_timeout: Duration,
    /// When the last byte arrived from the server.
    last_received: Instant,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    txn: f64,
    stream_id: u32,
    pub url: RtmpUrl,
}

impl Client {
    /// Connects (TCP, digest handshake, `connect` command) to `url`'s app.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(RtmpUrl::parse(url)?, &ConnectOptions::default()).await
    }

    /// Connects with the given identity, all within `options.timeout`.
    pub async fn connect_with(url: RtmpUrl, options: &ConnectOptions) -> Result<Self, ClientError> {
        tokio::time::timeout(options.timeout, Self::connect_inner(url, options))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn connect_inner(url: RtmpUrl, options: &ConnectOptions) -> Result<Self, ClientError> {
        let socket = TcpStream::connect((url.host.as_str(), url.port)).await?;
        socket.set_nodelay(true)?;
        let mut c = Self {
            socket,
            pending: VecDeque::new(),
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            write_timeout: options.timeout,
            last_received: Instant::now(),
            decoder: ChunkDecoder::default(),
            encoder: ChunkEncoder::new(crate::rtmp::chunk::DEFAULT_CHUNK_SIZE),
            txn: 1.0,
            stream_id: 0,
            url,
        };
        c.handshake().await?;
        c.send_control(Control::SetChunkSize(4096));
        c.encoder.set_chunk_size(4096);
        let mut props = vec![
            ("app".to_string(), Value::str(c.url.app.clone())),
            ("type".to_string(), Value::str("nonprivate")),
            (
                "flashVer".to_string(),
                Value::str(options.flash_ver.clone()),
            ),
            ("tcUrl".to_string(), Value::str(c.url.tc_url())),
        ];
        props.extend(options.properties.iter().cloned());
        let obj = Value::Object(props);
        c.call("connect", obj, vec![]).await?;
        Ok(c)
    }

    /// The client side of the handshake; runs inside `connect_with`'s timeout (a server
    /// that accepts TCP and never answers is given up on then).
    async fn handshake(&mut self) -> Result<(), ClientError> {
        let c0c1 = handshake::client_c0c1(true);
        self.socket.write_all(&c0c1).await?;
        let mut s = vec![0u8; 1 + 2 * PACKET_SIZE];
        self.socket.read_exact(&mut s).await?;
        self.last_received = Instant::now();
        if s[0] != handshake::RTMP_VERSION {
            return Err(ClientError::Protocol(format!("S0 version {}", s[0])));
        }
        let c2 = handshake::client_c2(&s[1..1 + PACKET_SIZE]);
        self.socket.write_all(&c2).await?;
        Ok(())
    }

    /// When the last byte arrived from the server (media, control or anything else).
    pub fn last_received(&self) -> Instant {
        self.last_received
    }

    fn send_control(&mut self, c: Control) {
        let (t, p) = c.encode();
        self.encoder
            .encode(&mut self.wbuf, csid::CONTROL, 0, t, 0, &p);
    }

    fn send_command(&mut self, stream_id: u32, cmd: &Command) {
        let body = cmd.encode();
        self.encoder.encode(
            &mut self.wbuf,
            csid::COMMAND,
            0,
            kind::COMMAND_AMF0,
            stream_id,
            &body,
        );
    }

    /// Sends what is buffered, within the write timeout. Cancel-safe: the buffer only
    /// loses what the socket took, so a cancelled flush is finished by the next one.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(
            self.write_timeout,
            Self::drain(&mut self.socket, &mut self.wbuf),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
    }

    async fn drain(socket: &mut TcpStream, wbuf: &mut BytesMut) -> Result<(), ClientError> {
        while !wbuf.is_empty() {
            // One `write` either takes bytes or, when cancelled, none.
            let n = socket.write(&wbuf[..]).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            wbuf.advance(n);
        }
        Ok(())
    }

    /// Sends a command with a transaction id and waits for its `_result` (or `_error`).
    async fn call(
        &mut self,
        name: &str,
        object: Value,
        args: Vec<Value>,
    ) -> Result<Command, ClientError> {
        let txn = self.txn;
        self.txn += 1.0;
        let cmd = Command {
            name: name.into(),
            transaction: txn,
            object,
            args,
        };
        self.send_command(0, &cmd);
        self.flush().await?;
        loop {
            if let Event::Command(_, c) = self.next_event().await?
                && c.transaction == txn
                && (c.name == "_result" || c.name == "_error")
            {
                {
                    if c.name == "_error" {
                        let info = c.args.first().cloned().unwrap_or(Value::Null);
                        return Err(status_error(&info));
                    }
                    return Ok(c);
                }
            }
        }
    }

    /// createStream; returns the message stream id.
    pub async fn create_stream(&mut self) -> Result<u32, ClientError> {
        let r = self.call("createStream", Value::Null, vec![]).await?;
        let id = r
            .arg_number(0)
            .ok_or_else(|| ClientError::Protocol("createStream without id".into()))?;
        self.stream_id = id as u32;
        Ok(self.stream_id)
    }

    /// Publishes `name` (defaults to the URL's stream) and waits for Publish.Start.
    pub async fn publish(&mut self, name: Option<&str>) -> Result<(), ClientError> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| self.url.stream.clone());
        for n in ["releaseStream", "FCPublish"] {
            let cmd = Command {
                name: n.into(),
                transaction: 0.0,
                object: Value::Null,
                args: vec![Value::str(name.clone())],
            };
            self.send_command(0, &cmd);
        }
        self.create_stream().await?;
        let cmd = Command {
            name: "publish".into(),
            transaction: 0.0,
            object: Value::Null,
            args: vec![Value::str(name), Value::str("live")],
        };
        self.send_command(self.stream_id, &cmd);
        self.flush().await?;
        self.wait_status("NetStream.Publish.Start").await
    }

    /// Plays `name` (defaults to the URL's stream) and waits for Play.Start.
    pub async fn play(&mut self, name: Option<&str>) -> Result<(), ClientError> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| self.url.stream.clone());
        self.create_stream().await?;
        self.send_control(Control::UserControl(UserControl::SetBufferLength {
            stream_id: self.stream_id,
            millis: 3000,
        }));
        let cmd = Command {
            name: "play".into(),
            transaction: 0.0,
            object: Value::Null,
            args: vec![Value::str(name), Value::Number(-2.0)],
        };
        self.send_command(self.stream_id, &cmd);
        self.flush().await?;
        self.wait_status("NetStream.Play.Start").await
    }

    async fn wait_status(&mut self, want: &str) -> Result<(), ClientError> {
        loop {
            if let Event::Status { info, .. } = self.next_event().await? {
                let code = info.get("code").and_then(Value::as_str).unwrap_or_default();
                if code == want {
                    return Ok(());
                }
                if info.get("level").and_then(Value::as_str) == Some("error") {
                    return Err(status_error(&info));
                }
            }
        }
    }

    /// Sends one media message on the publishing stream.
    pub async fn send_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let cs = if type_id == kind::AUDIO {
            csid::AUDIO
        } else {
            csid::VIDEO
        };
        self.encoder.encode(
            &mut self.wbuf,
            cs,
            timestamp,
            type_id,
            self.stream_id,
            payload,
        );
        if self.wbuf.len() > 32 * 1024 {
            self.flush().await?;
        }
        Ok(())
    }

    /// Publishes FLV tags; `pace` sends them in real time by their timestamps.
    pub async fn publish_tags(&mut self, tags: &[Tag], pace: bool) -> Result<(), ClientError> {
        let start = tokio::time::Instant::now();
        let base = tags.first().map(|t| t.timestamp).unwrap_or(0);
        for t in tags {
            if pace {
                let at = start + Duration::from_millis(u64::from(t.timestamp.saturating_sub(base)));
                self.flush().await?;
                tokio::time::sleep_until(at).await;
            }
            let type_id = match t.tag_type {
                crate::media::flv::TAG_AUDIO => kind::AUDIO,
                crate::media::flv::TAG_VIDEO => kind::VIDEO,
                _ => kind::DATA_AMF0,
            };
            let payload = if type_id == kind::DATA_AMF0 {
                // Metadata goes out as @setDataFrame like encoders send it.
                let mut b = BytesMut::from(&b"\x02\x00\x0d@setDataFrame"[..]);
                b.extend_from_slice(&t.payload);
                b.freeze()
            } else {
                t.payload.clone()
            };
            self.send_media(type_id, t.timestamp, &payload).await?;
        }
        self.flush().await
    }

    /// Reads until the next event. Answers pings and applies Set Chunk Size on the way.
    /// Cancel-safe: a dropped call loses no message (see the module comment).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Event::Media(m));
        }
        // A reply a cancelled call left half-sent goes first.
        self.flush().await?;
        loop {
            while let Some(m) = self.decoder.decode(&mut self.rbuf)? {
                if m.type_id == kind::AGGREGATE {
                    // An aggregate (SRS may send them) carries audio/video sub-messages.
                    for (type_id, timestamp, payload) in split_aggregate(m.timestamp, &m.payload) {
                        let sub = RawMessage {
                            csid: m.csid,
                            timestamp,
                            type_id,
                            stream_id: m.stream_id,
                            payload,
                        };
                        if type_id == kind::AUDIO || type_id == kind::VIDEO {
                            self.pending.push_back(sub);
                        }
                    }
                    if let Some(m) = self.pending.pop_front() {
                        return Ok(Event::Media(m));
                    }
                    continue;
                }
                if let Some(c) = Control::parse(m.type_id, &m.payload)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?
                {
                    match c {
                        Control::SetChunkSize(n) => self.decoder.set_chunk_size(n)?,
                        Control::UserControl(UserControl::PingRequest(t)) => {
                            self.send_control(Control::UserControl(UserControl::PingResponse(t)));
                            self.flush().await?;
                        }
                        _ => {}
                    }
                    continue;
                }
                match m.type_id {
                    kind::AUDIO | kind::VIDEO => return Ok(Event::Media(m)),
                    kind::DATA_AMF0 | kind::DATA_AMF3 => return Ok(Event::Data(m)),
                    kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => {
                        let cmd = command::parse(m.type_id, &m.payload)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        if cmd.name == "onStatus" {
                            let info = cmd.args.first().cloned().unwrap_or(Value::Null);
                            return Ok(Event::Status { message: m, info });
                        }
                        return Ok(Event::Command(m, cmd));
                    }
                    _ => continue,
                }
            }
            let n = self.socket.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.last_received = Instant::now();
        }
    }

    /// Reads the next media message, failing on an error status; a 302 becomes
    /// [`ClientError::Redirect`].
    pub async fn next_media(&mut self) -> Result<RawMessage, ClientError> {
        loop {
            match self.next_event().await? {
                Event::Media(m) => return Ok(m),
                Event::Status { info, .. } => {
                    if let Some((redirect, redirect2)) = redirect_of(&info) {
                        return Err(ClientError::Redirect {
                            redirect,
                            redirect2,
                        });
                    }
                    if info.get("level").and_then(Value::as_str) == Some("error") {
                        return Err(status_error(&info));
                    }
                }
                _ => {}
            }
        }
    }

    /// Closes the publishing/playing stream politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let cmd = Command {
            name: "deleteStream".into(),
            transaction: 0.0,
            object: Value::Null,
            args: vec![Value::Number(f64::from(self.stream_id))],
        };
        self.send_command(0, &cmd);
        self.flush().await?;
        let _ = self.socket.shutdown().await;
        Ok(())
    }
}

fn status_error(info: &Value) -> ClientError {
    ClientError::Status {
        code: info
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        description: info
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}

/// `(redirect, redirect2)` of an SRS-style 302 info object, as an SRS edge reads it:
/// level "error" and an `ex` object with `redirect2` (else `redirect`).
pub fn redirect_of(info: &Value) -> Option<(String, String)> {
    if info.get("level").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let ex = info.get("ex")?;
    let redirect = ex
        .get("redirect")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let redirect2 = ex
        .get("redirect2")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| redirect.clone());
    (!redirect2.is_empty()).then_some((redirect, redirect2))
}

/// Plays `url`, following up to `max_hops` RTMP 302s; returns the client positioned
/// after Play.Start on the origin that serves the stream, the first media message, and
/// the hops taken.
pub async fn play_following_redirects(
    url: &str,
    max_hops: usize,
) -> Result<(Client, RawMessage, Vec<String>), ClientError> {
    let mut target = url.to_string();
    let mut hops = Vec::new();
    loop {
        let mut c = Client::connect(&target).await?;
        c.play(None).await?;
        match c.next_media().await {
            Ok(first) => return Ok((c, first, hops)),
            Err(ClientError::Redirect { redirect2, .. }) if hops.len() < max_hops => {
                hops.push(redirect2.clone());
                target = redirect2;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancelled_flush_leaves_the_rest_for_the_next_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut socket = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        // More than the socket buffers of both ends hold.
        let sent: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut wbuf = BytesMut::from(&sent[..]);
        // Nobody reads: the write stalls once the buffers are full, and is cancelled.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(300),
            Client::drain(&mut socket, &mut wbuf),
        )
        .await;
        assert!(cancelled.is_err(), "the peer took 32 MiB without reading");
        assert!(!wbuf.is_empty() && wbuf.len() < sent.len());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        Client::drain(&mut socket, &mut wbuf).await.unwrap();
        drop(socket);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), sent.len(), "bytes lost or repeated");
        assert!(got == sent, "the stream was corrupted");
    }
}
