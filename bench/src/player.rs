//! A lightweight RTMP player for load generation: handshake, connect, createStream, play,
//! then a streaming chunk parser that tracks chunk headers and the first bytes of each
//! video message (keyframe / sequence header) but never copies or reassembles media
//! payloads. Control and command messages (small) are reassembled and handled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use origin::client::RtmpUrl;
use origin::media::flv::inspect_video;
use origin::rtmp::amf0::Value;
use origin::rtmp::chunk::ChunkEncoder;
use origin::rtmp::command::{self, Command};
use origin::rtmp::handshake::{self, PACKET_SIZE};
use origin::rtmp::message::{Control, UserControl, csid, kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes read by every player of the process (loopback payload, incl. chunk headers).
pub static BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// Where a player failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Running = 0,
    Connect = 1,
    Handshake = 2,
    Setup = 3,
    Play = 4,
    Stream = 5,
    Closed = 6,
}

/// Counters of one player, readable while it runs.
#[derive(Debug, Default)]
pub struct PlayerStats {
    /// Microseconds from connect start to TCP established (0 = not yet).
    pub connect_us: AtomicU64,
    /// Microseconds from connect start to the first complete video keyframe that is not a
    /// sequence header (0 = not yet).
    pub ttfp_us: AtomicU64,
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    /// Gaps > 1 s between video frames after the first picture.
    pub stalls: AtomicU32,
    pub max_gap_us: AtomicU64,
    /// A [`Stage`] value: where it failed, 0 while fine.
    pub failed: AtomicU32,
}

/// Connects (30 s limit), records the connect time in `st` and sets TCP_NODELAY.
pub(crate) async fn connect_timed(
    host: &str,
    port: u16,
    start: Instant,
    st: &PlayerStats,
) -> Option<TcpStream> {
    let sock = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect((host, port)))
        .await
        .ok()?
        .ok()?;
    st.connect_us
        .store(start.elapsed().as_micros().max(1) as u64, Ordering::Relaxed);
    let _ = sock.set_nodelay(true);
    Some(sock)
}

impl PlayerStats {
    pub fn failed(&self) -> Option<Stage> {
        match self.failed.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(Stage::Connect),
            2 => Some(Stage::Handshake),
            3 => Some(Stage::Setup),
            4 => Some(Stage::Play),
            5 => Some(Stage::Stream),
            _ => Some(Stage::Closed),
        }
    }
    pub fn ttfp_ms(&self) -> Option<f64> {
        match self.ttfp_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(us as f64 / 1000.0),
        }
    }
}

/// A stall is a gap between video frames longer than this.
pub const STALL_GAP: Duration = Duration::from_secs(1);

/// Turns media arrivals into a player's counters: video frames, time to first picture
/// (the first keyframe that is not a sequence header), gaps between video frames after
/// it and stalls. Shared by the RTMP and HTTP-FLV players.
pub struct MediaTracker<'a> {
    st: &'a PlayerStats,
    start: Instant,
    last_video: Option<Instant>,
}

impl<'a> MediaTracker<'a> {
    /// `start` is when the player began connecting.
    pub fn new(st: &'a PlayerStats, start: Instant) -> Self {
        Self {
            st,
            start,
            last_video: None,
        }
    }

    /// A complete video message/tag arrived. `keyframe` means a picture keyframe (not a
    /// sequence header).
    pub fn video(&mut self, keyframe: bool, sequence_header: bool) {
        let st = self.st;
        let now = Instant::now();
        st.video_frames.fetch_add(1, Ordering::Relaxed);
        if let Some(prev) = self.last_video {
            let gap = now - prev;
            let us = gap.as_micros() as u64;
            if us > st.max_gap_us.load(Ordering::Relaxed) {
                st.max_gap_us.store(us, Ordering::Relaxed);
            }
            if gap > STALL_GAP {
                st.stalls.fetch_add(1, Ordering::Relaxed);
            }
            self.last_video = Some(now);
        } else if keyframe && !sequence_header {
            st.ttfp_us.store(
                (now - self.start).as_micros().max(1) as u64,
                Ordering::Relaxed,
            );
            self.last_video = Some(now);
        }
    }

    pub fn audio(&mut self) {
        self.st.audio_frames.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub enum Ev {
    Video {
        keyframe: bool,
        sequence_header: bool,
    },
    Audio,
    /// Any non-media message, reassembled.
    Other {
        type_id: u8,
        stream_id: u32,
        payload: Vec<u8>,
    },
}

#[derive(Default, Clone)]
struct Cs {
    timestamp: u32,
    delta: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
    ext: bool,
    /// Bytes of the current message still to come (0 = between messages).
    remaining: u32,
    head: [u8; 2],
    head_len: u8,
    body: Vec<u8>,
}

/// Streaming chunk parser that consumes whatever is available.
pub struct ChunkParser {
    chunk_size: u32,
    streams: Vec<(u32, Cs)>,
    /// Chunk stream whose chunk payload is in progress, and bytes left in that chunk.
    cur: Option<usize>,
    chunk_left: u32,
}

impl Default for ChunkParser {
    fn default() -> Self {
        Self {
            chunk_size: 128,
            streams: Vec::new(),
            cur: None,
            chunk_left: 0,
        }
    }
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

impl ChunkParser {
    fn slot(&mut self, id: u32) -> usize {
        if let Some(i) = self.streams.iter().position(|(c, _)| *c == id) {
            return i;
        }
        self.streams.push((id, Cs::default()));
        self.streams.len() - 1
    }

    /// Parses `data`, calling `ev` per message, and returns how many bytes were consumed;
    /// the rest (an incomplete chunk header) must be offered again with more data.
    pub fn parse(&mut self, data: &[u8], ev: &mut impl FnMut(Ev)) -> Result<usize, String> {
        let mut pos = 0;
        loop {
            if let Some(i) = self.cur {
                let avail = (data.len() - pos) as u32;
                if avail == 0 {
                    return Ok(pos);
                }
                let take = avail.min(self.chunk_left);
                let bytes = &data[pos..pos + take as usize];
                pos += take as usize;
                self.chunk_left -= take;
                let cs = &mut self.streams[i].1;
                cs.remaining -= take;
                let media = cs.type_id == kind::AUDIO || cs.type_id == kind::VIDEO;
                if media {
                    let mut k = 0;
                    while (cs.head_len as usize) < 2 && k < bytes.len() {
                        cs.head[cs.head_len as usize] = bytes[k];
                        cs.head_len += 1;
                        k += 1;
                    }
                } else {
                    if cs.body.len() + bytes.len() > 1 << 20 {
                        return Err("non-media message over 1 MiB".into());
                    }
                    cs.body.extend_from_slice(bytes);
                }
                if cs.remaining == 0 {
                    let e = match cs.type_id {
                        kind::VIDEO => {
                            let v = inspect_video(&cs.head[..cs.head_len as usize]);
                            Ev::Video {
                                keyframe: v.keyframe && !v.sequence_header,
                                sequence_header: v.sequence_header,
                            }
                        }
                        kind::AUDIO => Ev::Audio,
                        t => Ev::Other {
                            type_id: t,
                            stream_id: cs.stream_id,
                            payload: std::mem::take(&mut cs.body),
                        },
                    };
                    cs.head_len = 0;
                    if let Ev::Other {
                        type_id: kind::SET_CHUNK_SIZE,
                        payload,
                        ..
                    } = &e
                        && payload.len() >= 4
                    {
                        let n =
                            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                                & 0x7fff_ffff;
                        self.chunk_size = n.max(1);
                    }
                    ev(e);
                }
                if self.chunk_left == 0 {
                    self.cur = None;
                }
                continue;
            }
            // A chunk header.
            let d = &data[pos..];
            if d.is_empty() {
                return Ok(pos);
            }
            let fmt = d[0] >> 6;
            let (id, mut h) = match d[0] & 0x3f {
                0 => {
                    if d.len() < 2 {
                        return Ok(pos);
                    }
                    (64 + u32::from(d[1]), 2)
                }
                1 => {
                    if d.len() < 3 {
                        return Ok(pos);
                    }
                    (64 + u32::from(d[1]) + 256 * u32::from(d[2]), 3)
                }
                n => (u32::from(n), 1),
            };
            let mh = [11usize, 7, 3, 0][fmt as usize];
            if d.len() < h + mh {
                return Ok(pos);
            }
            let i = self.slot(id);
            let cs_prev_ext = self.streams[i].1.ext;
            let field = if fmt < 3 { u24(&d[h..h + 3]) } else { 0 };
            let ext = if fmt < 3 {
                field == 0xff_ffff
            } else {
                cs_prev_ext
            };
            let ext_len = if ext { 4 } else { 0 };
            if d.len() < h + mh + ext_len {
                return Ok(pos);
            }
            let ts_field = if ext {
                u32::from_be_bytes([d[h + mh], d[h + mh + 1], d[h + mh + 2], d[h + mh + 3]])
            } else {
                field
            };
            let cs = &mut self.streams[i].1;
            let starting = cs.remaining == 0;
            match fmt {
                0 => {
                    cs.timestamp = ts_field;
                    cs.delta = 0;
                    cs.len = u24(&d[h + 3..h + 6]);
                    cs.type_id = d[h + 6];
                    cs.stream_id = u32::from_le_bytes([d[h + 7], d[h + 8], d[h + 9], d[h + 10]]);
                }
                1 => {
                    cs.delta = ts_field;
                    cs.len = u24(&d[h + 3..h + 6]);
                    cs.type_id = d[h + 6];
                }
                2 => cs.delta = ts_field,
                _ => {}
            }
            cs.ext = ext;
            h += mh + ext_len;
            pos += h;
            if starting {
                if fmt != 0 {
                    cs.timestamp = cs.timestamp.wrapping_add(cs.delta);
                }
                cs.remaining = cs.len;
                cs.head_len = 0;
                cs.body.clear();
            }
            self.chunk_left = cs.remaining.min(self.chunk_size);
            if cs.remaining == 0 {
                // Empty message.
                let e = Ev::Other {
                    type_id: cs.type_id,
                    stream_id: cs.stream_id,
                    payload: Vec::new(),
                };
                ev(e);
                continue;
            }
            self.cur = Some(i);
        }
    }
}

struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    parser: ChunkParser,
    enc: ChunkEncoder,
    out: BytesMut,
    window: u64,
    total: u64,
    acked: u64,
}

impl Conn {
    fn send_cmd(&mut self, stream_id: u32, c: &Command) {
        let body = c.encode();
        self.enc.encode(
            &mut self.out,
            csid::COMMAND,
            0,
            kind::COMMAND_AMF0,
            stream_id,
            &body,
        );
    }

    fn send_control(&mut self, c: Control) {
        let (t, p) = c.encode();
        self.enc.encode(&mut self.out, csid::CONTROL, 0, t, 0, &p);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let b = self.out.split();
            self.sock.write_all(&b).await?;
        }
        Ok(())
    }

    /// Reads once and parses; media events go to `media`, the rest are returned.
    async fn read_some(
        &mut self,
        media: &mut impl FnMut(&Ev),
    ) -> Result<Vec<(u8, u32, Vec<u8>)>, String> {
        if self.filled == self.buf.len() {
            return Err("chunk header larger than the read buffer".into());
        }
        let n = self
            .sock
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
        self.total += n as u64;
        self.filled += n;
        let mut others = Vec::new();
        let consumed = self
            .parser
            .parse(&self.buf[..self.filled], &mut |e| match e {
                Ev::Other {
                    type_id,
                    stream_id,
                    payload,
                } => others.push((type_id, stream_id, payload)),
                e => media(&e),
            })?;
        self.buf.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        for (t, _, p) in &others {
            match Control::parse(*t, p) {
                Ok(Some(Control::WindowAckSize(w))) => self.window = u64::from(w.max(1)),
                Ok(Some(Control::UserControl(UserControl::PingRequest(ts)))) => {
                    self.send_control(Control::UserControl(UserControl::PingResponse(ts)))
                }
                _ => {}
            }
        }
        if self.window > 0 && self.total - self.acked >= self.window {
            self.acked = self.total;
            self.send_control(Control::Ack(self.total as u32));
        }
        self.flush().await.map_err(|e| e.to_string())?;
        Ok(others)
    }
}

fn cmd(name: &str, txn: f64, object: Value, args: Vec<Value>) -> Command {
    Command {
        name: name.into(),
        transaction: txn,
        object,
        args,
    }
}

fn status_info(payload: &[u8]) -> Option<Value> {
    let c = command::parse(kind::COMMAND_AMF0, payload).ok()?;
    (c.name == "onStatus").then(|| c.args.first().cloned().unwrap_or(Value::Null))
}

/// Plays `url` until the connection ends (or the task is aborted), updating `st`.
/// `read_buf` is the per-player read buffer size.
pub async fn run_player(url: &str, st: Arc<PlayerStats>, read_buf: usize) {
    let start = Instant::now();
    let stage = play_inner(url, &st, start, read_buf).await;
    st.failed.store(stage as u32, Ordering::Relaxed);
}

async fn play_inner(url: &str, st: &PlayerStats, start: Instant, read_buf: usize) -> Stage {
    let Ok(u) = RtmpUrl::parse(url) else {
        return Stage::Setup;
    };
    let Some(sock) = connect_timed(&u.host, u.port, start, st).await else {
        return Stage::Connect;
    };
    let mut c = Conn {
        sock,
        buf: vec![0; read_buf.max(4096)],
        filled: 0,
        parser: ChunkParser::default(),
        enc: ChunkEncoder::new(128),
        out: BytesMut::new(),
        window: 0,
        total: 0,
        acked: 0,
    };
    // Handshake (digest C1, as Flash players send it).
    let hs = async {
        c.sock.write_all(&handshake::client_c0c1(true)).await?;
        let mut s = vec![0u8; 1 + 2 * PACKET_SIZE];
        c.sock.read_exact(&mut s).await?;
        c.sock
            .write_all(&handshake::client_c2(&s[1..1 + PACKET_SIZE]))
            .await?;
        std::io::Result::Ok(())
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(30), hs).await,
        Ok(Ok(()))
    ) {
        return Stage::Handshake;
    }
    // connect, then createStream, each waiting for its _result.
    let connect = Value::object([
        ("app", Value::str(u.app.clone())),
        ("flashVer", Value::str("LNX 9,0,124,2")),
        ("tcUrl", Value::str(u.tc_url())),
        ("fpad", Value::Boolean(false)),
        ("capabilities", Value::Number(15.0)),
        ("audioCodecs", Value::Number(4071.0)),
        ("videoCodecs", Value::Number(252.0)),
        ("videoFunction", Value::Number(1.0)),
    ]);
    c.send_cmd(0, &cmd("connect", 1.0, connect, vec![]));
    if c.flush().await.is_err() {
        return Stage::Setup;
    }
    let mut stream_id = 0u32;
    let mut ignore = |_: &Ev| {};
    for txn in [1.0, 2.0] {
        loop {
            let Ok(Ok(others)) =
                tokio::time::timeout(Duration::from_secs(30), c.read_some(&mut ignore)).await
            else {
                return Stage::Setup;
            };
            let mut done = false;
            for (t, _, p) in others {
                if t != kind::COMMAND_AMF0 {
                    continue;
                }
                let Ok(r) = command::parse(t, &p) else {
                    continue;
                };
                if r.transaction == txn && r.name == "_result" {
                    if txn == 2.0 {
                        stream_id = r.arg_number(0).unwrap_or(1.0) as u32;
                    }
                    done = true;
                } else if r.transaction == txn && r.name == "_error" {
                    return Stage::Setup;
                }
            }
            if done {
                break;
            }
        }
        if txn == 1.0 {
            c.send_cmd(0, &cmd("createStream", 2.0, Value::Null, vec![]));
            if c.flush().await.is_err() {
                return Stage::Setup;
            }
        }
    }
    c.send_control(Control::UserControl(UserControl::SetBufferLength {
        stream_id,
        millis: 1000,
    }));
    c.send_cmd(
        stream_id,
        &cmd(
            "play",
            0.0,
            Value::Null,
            vec![Value::str(u.stream.clone()), Value::Number(-2.0)],
        ),
    );
    if c.flush().await.is_err() {
        return Stage::Setup;
    }
    // Media.
    let mut track = MediaTracker::new(st, start);
    let mut on_media = |e: &Ev| match e {
        Ev::Video {
            keyframe,
            sequence_header,
        } => track.video(*keyframe, *sequence_header),
        Ev::Audio => track.audio(),
        Ev::Other { .. } => {}
    };
    loop {
        match c.read_some(&mut on_media).await {
            Ok(others) => {
                for (t, _, p) in others {
                    if t == kind::COMMAND_AMF0
                        && let Some(info) = status_info(&p)
                        && info.get("level").and_then(Value::as_str) == Some("error")
                    {
                        return Stage::Play;
                    }
                }
            }
            Err(e) if e == "closed" => return Stage::Closed,
            Err(_) => return Stage::Stream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_matches_encoder_at_any_split() {
        // Messages encoded by our encoder at chunk size 128, then fed in odd pieces.
        let mut enc = ChunkEncoder::new(128);
        let mut out = BytesMut::new();
        let video_key = {
            let mut v = vec![0x17, 1];
            v.extend(std::iter::repeat_n(7u8, 1000));
            v
        };
        enc.encode(
            &mut out,
            csid::VIDEO,
            0,
            kind::VIDEO,
            1,
            &[0x17, 0, 1, 2, 3],
        );
        enc.encode(&mut out, csid::VIDEO, 40, kind::VIDEO, 1, &video_key);
        enc.encode(&mut out, csid::AUDIO, 41, kind::AUDIO, 1, &[0xaf, 1, 9, 9]);
        let (t, p) = Control::SetChunkSize(4096).encode();
        enc.encode(&mut out, csid::CONTROL, 0, t, 0, &p);
        enc.set_chunk_size(4096);
        enc.encode(
            &mut out,
            csid::VIDEO,
            0x0100_0000,
            kind::VIDEO,
            1,
            &video_key,
        );
        let all = out.to_vec();
        for step in [1usize, 3, 7, 100, 5000] {
            let mut p = ChunkParser::default();
            let mut evs = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            for piece in all.chunks(step) {
                pending.extend_from_slice(piece);
                let n = p.parse(&pending, &mut |e| evs.push(e)).unwrap();
                pending.drain(..n);
            }
            assert!(pending.is_empty());
            let kinds: Vec<String> = evs
                .iter()
                .map(|e| match e {
                    Ev::Video {
                        keyframe,
                        sequence_header,
                    } => format!("v{}{}", u8::from(*keyframe), u8::from(*sequence_header)),
                    Ev::Audio => "a".into(),
                    Ev::Other { type_id, .. } => format!("o{type_id}"),
                })
                .collect();
            assert_eq!(kinds, ["v01", "v10", "a", "o1", "v10"], "step {step}");
        }
    }
}
