//! A lightweight HTTP-FLV player for load generation: one `GET /<app>/<stream>.flv` over
//! HTTP/1.1, then a streaming de-chunker (`Transfer-Encoding: chunked`, or a plain body
//! until close) feeding a streaming FLV tag parser that looks at the tag headers and the
//! first bytes of each video payload (keyframe / sequence header). Payloads are never
//! copied. Counters and timings go to the same [`PlayerStats`] as the RTMP player.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use origin::media::flv::inspect_video;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::player::{BYTES_READ, MediaTracker, PlayerStats, Stage};

/// What the FLV parser reports per complete tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Video {
        timestamp: u32,
        keyframe: bool,
        sequence_header: bool,
    },
    Audio,
    Other(u8),
}

/// Streaming `Transfer-Encoding: chunked` decoder. Hands out slices of its input, keeps
/// only a few bytes of state between calls.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// Chunk extension after `;`, up to CR.
    Ext,
    /// LF after the size line's CR.
    SizeLf,
    /// Chunk data, `size` bytes left.
    Data,
    /// CR LF after the data (`digits` counts them).
    DataEnd,
    /// Last chunk seen; trailers follow and are ignored.
    Done,
}

impl Dechunker {
    /// Decodes `data`, passing body slices to `out`. Errors on malformed framing.
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(&[u8])) -> Result<(), String> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                ChunkState::Size => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            if self.digits >= 15 {
                                return Err("chunk size too long".into());
                            }
                            self.size =
                                self.size * 16 + u64::from((b as char).to_digit(16).unwrap());
                            self.digits += 1;
                        }
                        b';' | b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::Ext,
                        b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                        _ => return Err(format!("bad chunk size byte {b:#04x}")),
                    }
                }
                ChunkState::Ext => {
                    if data[i] == b'\r' {
                        self.state = ChunkState::SizeLf;
                    }
                    i += 1;
                }
                ChunkState::SizeLf => {
                    if data[i] != b'\n' {
                        return Err("chunk size line without LF".into());
                    }
                    i += 1;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::Data => {
                    let take = (data.len() - i).min(self.size as usize);
                    out(&data[i..i + take]);
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    let want = if self.digits == 0 { b'\r' } else { b'\n' };
                    if data[i] != want {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    i += 1;
                    self.digits += 1;
                    if self.digits == 2 {
                        self.digits = 0;
                        self.state = ChunkState::Size;
                    }
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Whether the terminating zero-size chunk was seen.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Streaming FLV parser: file header, then tags (11-byte header, payload, 4-byte previous
/// tag size). Only the first two bytes of each video payload are kept.
#[derive(Debug)]
pub struct FlvParser {
    /// Bytes of the fixed-size part being collected (file header or tag header).
    hdr: [u8; 15],
    hdr_len: usize,
    /// How many bytes of `hdr` are wanted: 13 (file header + PreviousTagSize0) or 11.
    hdr_want: usize,
    /// Payload bytes of the current tag still to come, then its 4-byte previous size.
    body_left: u32,
    skip_left: u32,
    tag_type: u8,
    timestamp: u32,
    head: [u8; 2],
    head_len: u8,
}

impl Default for FlvParser {
    fn default() -> Self {
        Self {
            hdr: [0; 15],
            hdr_len: 0,
            hdr_want: 13,
            body_left: 0,
            skip_left: 0,
            tag_type: 0,
            timestamp: 0,
            head: [0; 2],
            head_len: 0,
        }
    }
}

impl FlvParser {
    /// Parses `data`, calling `ev` per complete tag.
    pub fn feed(&mut self, data: &[u8], ev: &mut impl FnMut(Tag)) -> Result<(), String> {
        let mut i = 0;
        while i < data.len() {
            if self.skip_left > 0 {
                let take = (data.len() - i).min(self.skip_left as usize);
                i += take;
                self.skip_left -= take as u32;
                continue;
            }
            if self.body_left > 0 {
                let take = (data.len() - i).min(self.body_left as usize);
                let mut k = 0;
                while (self.head_len as usize) < 2 && k < take {
                    self.head[self.head_len as usize] = data[i + k];
                    self.head_len += 1;
                    k += 1;
                }
                i += take;
                self.body_left -= take as u32;
                if self.body_left == 0 {
                    self.finish_tag(ev);
                }
                continue;
            }
            let take = (data.len() - i).min(self.hdr_want - self.hdr_len);
            self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[i..i + take]);
            self.hdr_len += take;
            i += take;
            if self.hdr_len < self.hdr_want {
                continue;
            }
            self.hdr_len = 0;
            if self.hdr_want == 13 {
                if &self.hdr[..3] != b"FLV" {
                    return Err("not an FLV stream".into());
                }
                let offset =
                    u32::from_be_bytes([self.hdr[5], self.hdr[6], self.hdr[7], self.hdr[8]]);
                // Anything between the 9-byte header and PreviousTagSize0.
                self.skip_left = offset.saturating_sub(9);
                self.hdr_want = 11;
                continue;
            }
            let h = &self.hdr;
            self.tag_type = h[0] & 0x1f;
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]);
            self.timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            self.head_len = 0;
            if size > 64 << 20 {
                return Err(format!("FLV tag of {size} bytes"));
            }
            self.body_left = size;
            if size == 0 {
                self.finish_tag(ev);
            }
        }
        Ok(())
    }

    fn finish_tag(&mut self, ev: &mut impl FnMut(Tag)) {
        let t = match self.tag_type {
            9 => {
                let v = inspect_video(&self.head[..self.head_len as usize]);
                Tag::Video {
                    timestamp: self.timestamp,
                    keyframe: v.keyframe && !v.sequence_header,
                    sequence_header: v.sequence_header,
                }
            }
            8 => Tag::Audio,
            t => Tag::Other(t),
        };
        // The PreviousTagSize after the payload.
        self.skip_left = 4;
        ev(t);
    }
}

/// Splits `http://host:port/path` into (host, port, path).
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 80),
    };
    Some((host.to_string(), port, path.to_string()))
}

/// The parsed response head: status, whether the body is chunked, and where the body
/// starts in the buffer.
fn parse_head(buf: &[u8]) -> Option<Result<(u16, bool, usize), String>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = match std::str::from_utf8(&buf[..end]) {
        Ok(h) => h,
        Err(_) => return Some(Err("response head is not UTF-8".into())),
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok());
    let Some(status) = status else {
        return Some(Err("bad status line".into()));
    };
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    Some(Ok((status, chunked, end)))
}

/// Plays `url` (`http://host:port/app/stream.flv`) until the connection ends (or the task
/// is aborted), updating `st`. `read_buf` is the per-player read buffer size.
pub async fn run_flv_player(url: &str, st: Arc<PlayerStats>, read_buf: usize) {
    let start = Instant::now();
    let stage = play_inner(url, &st, start, read_buf).await;
    st.failed.store(stage as u32, Ordering::Relaxed);
}

async fn play_inner(url: &str, st: &PlayerStats, start: Instant, read_buf: usize) -> Stage {
    let Some((host, port, path)) = split_url(url) else {
        return Stage::Setup;
    };
    let Some(mut sock) = crate::player::connect_timed(&host, port, start, st).await else {
        return Stage::Connect;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    if sock.write_all(req.as_bytes()).await.is_err() {
        return Stage::Setup;
    }
    let mut buf = vec![0u8; read_buf.max(4096)];
    // Response head.
    let mut filled = 0;
    let (chunked, body_start) = loop {
        if filled == buf.len() {
            return Stage::Setup;
        }
        let n = match tokio::time::timeout(Duration::from_secs(30), sock.read(&mut buf[filled..]))
            .await
        {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Stage::Setup,
        };
        BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
        filled += n;
        match parse_head(&buf[..filled]) {
            None => continue,
            Some(Err(_)) => return Stage::Setup,
            Some(Ok((200, chunked, end))) => break (chunked, end),
            Some(Ok(_)) => return Stage::Play,
        }
    };
    // Body.
    let mut track = MediaTracker::new(st, start);
    let mut dechunk = Dechunker::default();
    let mut flv = FlvParser::default();
    let mut err: Option<String> = None;
    let mut on_tag = |t: Tag| match t {
        Tag::Video {
            keyframe,
            sequence_header,
            ..
        } => track.video(keyframe, sequence_header),
        Tag::Audio => track.audio(),
        Tag::Other(_) => {}
    };
    let (mut lo, mut hi) = (body_start, filled);
    loop {
        let data = &buf[lo..hi];
        let r = if chunked {
            dechunk.feed(data, &mut |b| {
                if err.is_none()
                    && let Err(e) = flv.feed(b, &mut on_tag)
                {
                    err = Some(e);
                }
            })
        } else {
            flv.feed(data, &mut on_tag)
        };
        if r.is_err() || err.is_some() {
            return Stage::Stream;
        }
        if dechunk.done() {
            return Stage::Closed;
        }
        match sock.read(&mut buf).await {
            Ok(0) => return Stage::Closed,
            Ok(n) => {
                BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
                (lo, hi) = (0, n);
            }
            Err(_) => return Stage::Stream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(t: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(payload);
        v.extend_from_slice(&(11 + payload.len() as u32).to_be_bytes());
        v
    }

    fn chunk(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].min(rest.len());
            k += 1;
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn dechunk_and_parse_at_any_split() {
        let mut body = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        body.extend(tag(18, 0, b"\x02\x00\x0aonMetaData"));
        body.extend(tag(9, 0, &[0x17, 0, 1, 2, 3]));
        body.extend(tag(8, 0, &[0xaf, 0, 0x12, 0x10]));
        let key: Vec<u8> = [0x17, 1].into_iter().chain([7u8; 3000]).collect();
        body.extend(tag(9, 40, &key));
        body.extend(tag(8, 41, &[0xaf, 1, 9]));
        body.extend(tag(9, 73, &[0x27, 1, 5, 5]));
        body.extend(tag(9, 0x0100_0010, &[0x27, 1, 6]));
        body.extend(tag(9, 0x0100_0020, &[]));
        let want = [
            "o18",
            "v0:01",
            "a",
            "v40:10",
            "a",
            "v73:00",
            "v16777232:00",
            "v16777248:00",
        ];
        for sizes in [&[1usize][..], &[7, 300], &[4096], &[100_000]] {
            let wire = chunk(&body, sizes);
            for step in [1usize, 2, 5, 13, 1000, 1 << 20] {
                let mut d = Dechunker::default();
                let mut p = FlvParser::default();
                let mut got = Vec::new();
                for piece in wire.chunks(step) {
                    d.feed(piece, &mut |b| {
                        p.feed(b, &mut |t| {
                            got.push(match t {
                                Tag::Video {
                                    timestamp,
                                    keyframe,
                                    sequence_header,
                                } => format!(
                                    "v{timestamp}:{}{}",
                                    u8::from(keyframe),
                                    u8::from(sequence_header)
                                ),
                                Tag::Audio => "a".into(),
                                Tag::Other(t) => format!("o{t}"),
                            })
                        })
                        .unwrap()
                    })
                    .unwrap();
                }
                assert!(d.done());
                assert_eq!(got, want, "sizes {sizes:?} step {step}");
            }
        }
    }

    #[test]
    fn bad_chunk_framing_is_an_error() {
        let mut d = Dechunker::default();
        assert!(d.feed(b"zz\r\n", &mut |_| {}).is_err());
        let mut d = Dechunker::default();
        assert!(d.feed(b"2\r\nabXY", &mut |_| {}).is_err());
    }

    #[test]
    fn response_head() {
        let r =
            b"HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\ntransfer-encoding: chunked\r\n\r\nxx";
        assert_eq!(parse_head(r), Some(Ok((200, true, r.len() - 2))));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), None);
        let r = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_head(r), Some(Ok((404, false, r.len()))));
        assert_eq!(
            split_url("http://127.0.0.1:8080/live/s.flv"),
            Some(("127.0.0.1".into(), 8080, "/live/s.flv".into()))
        );
    }
}
