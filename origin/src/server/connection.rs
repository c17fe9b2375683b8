//! One RTMP connection's I/O: the handshake, then a loop that reads and decodes chunks
//! and, for players, writes what their [`Player`](crate::media::Player) hands out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::write::{SharedWriter, write_all_vectored};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::timeout;

use crate::auth::{Event as AuthEvent, Notice as AuthNotice};
use crate::media::{Frame, Player, Publisher, Stream};
use crate::metrics::{self, ReasonLabel};
use crate::route;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage};
use crate::rtmp::command::{self, Command};
use crate::rtmp::handshake::{self, PACKET_SIZE};
use crate::rtmp::message::{Control, UserControl, csid, kind, split_aggregate};
use crate::state::Origin;

use super::session::{Action, Input, Session, SessionError, WINDOW_ACK_SIZE};

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] crate::rtmp::chunk::ChunkError),
    #[error("{0}")]
    Protocol(String),
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("timed out")]
    Timeout,
    /// Not an error: the connection is over (peer left, redirect sent, refusal sent).
    #[error("closed")]
    Closed,
}

pub(super) struct Playing {
    pub player: Player,
    pub stream_id: u32,
    /// The frames of the batch being written (reused between batches).
    pub batch: Vec<Arc<Frame>>,
    /// Sends on_stop when the play ends.
    pub _stop: Option<AuthNotice>,
}

// A connection has one role at a time; boxing the player would cost an allocation per
// play for no gain.
#[allow(clippy::large_enum_variant)]
pub(super) enum Role {
    Idle,
    /// The publish, and the on_unpublish sent when it ends.
    Publishing {
        publisher: Publisher,
        _unpublish: Option<AuthNotice>,
        /// The key's claim at the directory, released after the unpublish.
        _claim: Option<crate::cluster::directory::ClaimHandle>,
    },
    /// Boxed: a player's state is much larger than a publisher's.
    Playing(Box<Playing>),
}

pub struct Connection {
    pub(super) origin: Arc<Origin>,
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) reader: OwnedReadHalf,
    pub(super) writer: SharedWriter,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    decoder: ChunkDecoder,
    pub(super) encoder: ChunkEncoder,
    bytes_in: u64,
    pub(super) bytes_out: u64,
    /// Sends on_close when the connection ends.
    close: Option<AuthNotice>,
    acked: u64,
    peer_window: u32,
    /// The command flow (sans-io); this loop performs what it asks.
    session: Session,
    pub(super) role: Role,
    /// What the publisher did not write through to this player (the tail of a frame
    /// already partly on the wire, queued frames): the next write starts with it.
    rest: Vec<Bytes>,
    /// The last read emptied the socket (it did not fill the read buffer).
    drained: bool,
    /// Bytes read since the last paced wait.
    cycle_bytes: usize,
    /// The socket's SO_RCVLOWAT (see [`Connection::set_read_low_water`]).
    low_water: usize,
}

/// How long we wait for a redirected client to leave (SRS: 3 s).
const REDIRECT_LINGER: Duration = Duration::from_secs(3);

/// Highest receive low-water mark set on a paced publisher's socket.
const MAX_LOW_WATER: usize = 256 * 1024;

/// Sets SO_RCVLOWAT: the kernel signals readability once this many bytes are queued (a
/// non-blocking read still returns whatever is there).
fn set_rcvlowat(reader: &OwnedReadHalf, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = reader.as_ref().as_raw_fd();
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is the open socket `reader` borrows; the option value is a c_int that
    // lives across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Room made in the read buffer before each read: a paced publisher's socket holds up
/// to `--unwatched-read-interval` of media (25 KB per 100 ms at 2 Mbit/s).
const READ_SIZE: usize = 32 * 1024;

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
            writer: SharedWriter::new(writer),
            // Small to start: players read next to nothing; a publisher grows it. The
            // write buffer is allocated by the first message (most connections of a burst
            // of refused plays write one or two).
            rbuf: BytesMut::with_capacity(4 * 1024),
            wbuf: BytesMut::new(),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(crate::rtmp::chunk::DEFAULT_CHUNK_SIZE),
            bytes_in: 0,
            bytes_out: 0,
            close: None,
            acked: 0,
            peer_window: WINDOW_ACK_SIZE,
            session: Session::new(),
            role: Role::Idle,
            drained: false,
            cycle_bytes: 0,
            low_water: 1,
            rest: Vec::new(),
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
        // Dropping the role unpublishes or leaves the stream.
        self.role = Role::Idle;
        let _ = self.writer.shutdown().await;
        if let Some(mut close) = self.close.take() {
            let r = close.request_mut();
            r.send_bytes = self.bytes_out;
            r.recv_bytes = self.bytes_in;
        }
    }

    async fn serve(&mut self) -> Result<(), ConnError> {
        self.handshake().await?;
        let mut end_publishers = self.origin.end_publishers_signal();
        loop {
            while let Some(msg) = self.decoder.decode(&mut self.rbuf)? {
                self.on_message(msg).await?;
            }
            // Audio may wait for the next video frame (or until `hold`).
            let mut hold = None;
            // Nobody plays the stream and the socket was drained: read again later.
            let mut pause = None;
            let mut nobody_plays = false;
            if let Role::Publishing { publisher: p, .. } = &self.role {
                // Written through to players (in steps, yielding, so others run).
                hold = crate::media::flush_stepped(p).await;
                let interval = self.origin.config.unwatched_read_interval;
                nobody_plays = !interval.is_zero() && p.stream().players() == 0;
                if self.drained && nobody_plays {
                    pause = Some((p.stream().clone(), next_tick(interval)));
                }
            }
            self.set_read_low_water(nobody_plays, pause.is_some());
            let raised = match &self.role {
                Role::Publishing { publisher: p, .. } if pause.is_none() && self.low_water > 1 => {
                    Some((
                        p.stream().clone(),
                        Instant::now() + Duration::from_secs(3600),
                    ))
                }
                _ => None,
            };
            self.flush().await?;
            let playing = matches!(self.role, Role::Playing(_));
            let publishing = matches!(self.role, Role::Publishing { .. });
            // Players may legitimately send nothing for a long time (and a timer per read
            // would cost every player a timer-wheel insert per frame); others may not idle.
            let read_limit = (!playing).then_some(self.origin.config.idle_timeout);
            if publishing && pause.is_none() && self.rbuf.capacity() - self.rbuf.len() < READ_SIZE {
                self.rbuf.reserve(READ_SIZE);
            }
            tokio::select! {
                n = read_some(&mut self.reader, &mut self.rbuf, read_limit), if pause.is_none() => {
                    self.on_read(n?)?;
                }
                _ = unwatched(pause.as_ref()), if pause.is_some() => {
                    self.drained = false;
                }
                // Waiting to read with the low-water mark raised: a player's arrival
                // lowers it (next turn), so the player gets data as it arrives.
                _ = unwatched(raised.as_ref()), if raised.is_some() => {}
                delivery = super::play::next_delivery(&mut self.role), if playing => {
                    self.deliver(delivery).await?;
                }
                // The next turn flushes (or goes on with a flush in steps).
                _ = crate::media::held_until(hold), if hold.is_some() => {}
                _ = end_publishers.changed(), if publishing => {
                    if *end_publishers.borrow() {
                        tracing::info!(conn = self.id, "ending publisher (drain or shutdown) so the encoder reconnects elsewhere");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// While reads are paced, the kernel need not wake the server for every packet: the
    /// socket's receive low-water mark is set to twice what one interval brought, so it
    /// signals only a stream that sends far more than usual (and the tick reads the rest).
    /// Back to 1 byte as soon as the stream is watched.
    fn set_read_low_water(&mut self, unwatched: bool, pausing: bool) {
        let want = match (unwatched, pausing) {
            (false, _) => 1,
            // Between two waits: what the interval brought is being read.
            (true, false) => return,
            (true, true) => {
                let want = (2 * std::mem::take(&mut self.cycle_bytes)).clamp(1, MAX_LOW_WATER);
                // Raised at once (a keyframe interval), lowered only when far too high, so
                // a steady stream sets it a few times, not every interval.
                if want <= self.low_water && want > self.low_water / 4 {
                    return;
                }
                want
            }
        };
        if want == self.low_water {
            return;
        }
        if let Err(e) = set_rcvlowat(&self.reader, want) {
            tracing::debug!(conn = self.id, error = %e, "SO_RCVLOWAT not set");
        }
        // Recorded even if it failed: nothing waits on a mark that may not be there.
        self.low_water = want;
    }

    fn on_read(&mut self, n: usize) -> Result<(), ConnError> {
        if n == 0 {
            return Err(ConnError::Closed);
        }
        self.cycle_bytes += n;
        // A read that did not fill the buffer emptied the socket.
        self.drained = self.rbuf.capacity() > self.rbuf.len();
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
        timeout(
            self.origin.config.write_timeout,
            self.writer.write_all(&s0s1s2),
        )
        .await
        .map_err(|_| ConnError::Timeout)??;
        let mut c2 = vec![0u8; PACKET_SIZE];
        timeout(limit, self.reader.read_exact(&mut c2))
            .await
            .map_err(|_| ConnError::Timeout)??;
        tracing::debug!(conn = self.id, peer = %self.peer, ?kind, "handshake done");
        Ok(())
    }

    /// Ends the current role (unpublishes or leaves the stream), keeping the tail of a
    /// frame the publisher wrote through in part for the next write.
    pub(super) fn end_role(&mut self) {
        if let Role::Playing(p) = &mut self.role {
            self.rest.extend(p.player.take_over());
        }
        self.role = Role::Idle;
    }

    pub(super) fn send(&mut self, cs: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.encoder
            .encode(&mut self.wbuf, cs, 0, type_id, stream_id, payload);
    }

    pub(super) fn send_control(&mut self, c: Control) {
        let (t, p) = c.encode();
        self.send(csid::CONTROL, t, 0, &p);
    }

    /// Runs a command through the session and performs what it asks, in order: the
    /// only place the command flow meets the socket, auth, publishing and routing.
    async fn on_command(&mut self, cmd: Command, stream_id: u32) -> Result<(), ConnError> {
        self.session.handle(Input::Command { cmd, stream_id })?;
        // The on_stop notice of a play, from its authorization until its player.
        let mut stop = None;
        while let Some(action) = self.session.poll_action() {
            let answer = match action {
                Action::Send(m) => {
                    self.send(m.csid, m.type_id, m.stream_id, &m.payload);
                    None
                }
                Action::SetChunkSize(n) => {
                    self.encoder.set_chunk_size(n);
                    None
                }
                Action::AuthorizeConnect(info) => {
                    let checked = self.authorize_connect(info).await.map(|(client, close)| {
                        self.close = close;
                        client
                    });
                    Some(Input::ConnectChecked(checked))
                }
                Action::Publish { key, query, .. } => {
                    let client = self.session.client().cloned().unwrap_or_default();
                    let published = self.publish(&client, &key, query.as_deref()).await;
                    Some(Input::PublishChecked(published))
                }
                Action::PublishRefused {
                    reason,
                    description,
                } => {
                    metrics::global()
                        .publish_rejected
                        .get_or_create(&ReasonLabel { reason })
                        .inc();
                    tracing::info!(conn = self.id, peer = %self.peer, reason, description, "publish refused");
                    None
                }
                Action::AuthorizePlay(request) => {
                    let checked = match route::authorize(&self.origin, &request).await {
                        Ok(r) => {
                            stop = self.origin.auth.notice(AuthEvent::Stop, r);
                            Ok(())
                        }
                        Err(refusal) => {
                            tracing::info!(conn = self.id, peer = %self.peer, stream = %request.key, reason = refusal.reason, "play refused");
                            Err(refusal.description)
                        }
                    };
                    Some(Input::PlayAuthorized(checked))
                }
                Action::Route { request, stream_id } => {
                    // The client sees its play start before the wait for a publisher.
                    self.flush().await?;
                    let routed = self.route_play(&request, stream_id, stop.take()).await;
                    Some(Input::Routed(routed))
                }
                Action::EndRole => {
                    self.end_role();
                    None
                }
                Action::Close => {
                    self.flush().await?;
                    return Err(ConnError::Closed);
                }
                Action::CloseAfterLinger => {
                    self.flush().await?;
                    self.linger().await;
                    return Err(ConnError::Closed);
                }
            };
            if let Some(input) = answer {
                self.session.handle(input)?;
            }
        }
        Ok(())
    }

    /// After a redirect: gives the client up to 3 s to read it and leave (or send a
    /// command).
    async fn linger(&mut self) {
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
    }

    /// Writes what is queued, bounded by the write timeout.
    pub(super) async fn flush(&mut self) -> Result<(), ConnError> {
        if self.wbuf.is_empty() && self.rest.is_empty() {
            return Ok(());
        }
        // A player the publisher writes to is taken back first, and the tail of a frame
        // it wrote in part goes out before anything else.
        if let Role::Playing(p) = &mut self.role {
            self.rest.extend(p.player.take_over());
        }
        let mut bufs = std::mem::take(&mut self.rest);
        // (An empty buffer would make the vectored write report a zero-length write.)
        if !self.wbuf.is_empty() {
            bufs.push(self.wbuf.split().freeze());
        }
        let total: usize = bufs.iter().map(Bytes::len).sum();
        let write = write_all_vectored(&mut self.writer, &bufs);
        timeout(self.origin.config.write_timeout, write)
            .await
            .map_err(|_| ConnError::Timeout)??;
        metrics::global().bytes_out.inc_by(total as u64);
        self.bytes_out += total as u64;
        Ok(())
    }

    async fn on_message(&mut self, msg: RawMessage) -> Result<(), ConnError> {
        if let Some(c) = Control::parse(msg.type_id, &msg.payload)
            .map_err(|e| ConnError::Protocol(e.to_string()))?
        {
            return self.on_control(c);
        }
        match msg.type_id {
            kind::AUDIO | kind::VIDEO | kind::DATA_AMF0 | kind::DATA_AMF3 => {
                self.on_media(msg).await;
                Ok(())
            }
            kind::AGGREGATE => {
                for (t, ts, payload) in split_aggregate(msg.timestamp, &msg.payload) {
                    self.on_media(RawMessage {
                        csid: msg.csid,
                        timestamp: ts,
                        type_id: t,
                        stream_id: msg.stream_id,
                        payload,
                    })
                    .await;
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

    /// A publisher's media or data message: cached and fanned out once.
    async fn on_media(&mut self, msg: RawMessage) {
        let Role::Publishing { publisher: p, .. } = &self.role else {
            return;
        };
        let mut payload = msg.payload;
        if msg.type_id == kind::DATA_AMF0 {
            // "@setDataFrame", "onMetaData", {...} is stored as "onMetaData", {...}.
            const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
            if payload.starts_with(SET_DATA_FRAME) {
                payload = payload.slice(SET_DATA_FRAME.len()..);
            }
        }
        // Written through to players once per read of the socket (`serve`), or now, in
        // steps, if one read brought many messages.
        if p.push_batched(msg.type_id, msg.timestamp, payload) {
            crate::media::flush_stepped(p).await;
        }
    }
}

/// The next multiple of `interval` since the process started: every paced publisher
/// wakes on the same tick, so the server wakes once per interval for all of them.
fn next_tick(interval: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let step = interval.as_nanos().max(1);
    let ticks = epoch.elapsed().as_nanos() / step + 1;
    epoch + Duration::from_nanos(u64::try_from(ticks * step).unwrap_or(u64::MAX))
}

/// Returns at the instant given, or when the stream has a player (never, for None): a
/// paced read of an unwatched stream, or a wait to read with the low-water mark raised.
async fn unwatched(pause: Option<&(Arc<Stream>, Instant)>) {
    match pause {
        Some((stream, until)) => stream.unwatched_until(*until).await,
        None => std::future::pending().await,
    }
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
