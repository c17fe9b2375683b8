//! Write-through fan-out, the nginx-rtmp model: a player that has caught up with the live
//! edge is written to straight from the publisher's task, one non-blocking write per
//! frame, so it costs no task wake-up, poll or re-arm per frame.
//!
//! A player is only ever written by one side at a time. It is either in its stream's
//! write-through set (the publisher writes to it) or served by its own task from its
//! place in the fan-out ring. The publisher hands a player back to its task when its
//! socket takes less than a whole frame (the unwritten tail goes with it, shared, not
//! copied), and before a publish or unpublish notice; the task takes it back itself
//! before it writes anything of its own. Every hand-back gives the task a ring position
//! right after the last frame written for it, created under the same lock the publisher
//! sends under, so nothing is lost or sent twice. The task rejoins the set once it has
//! caught up again, so a slow player never slows the publisher or the others: it costs
//! one failed write and then waits in its own task as before.
//!
//! The RTMP publisher flushes once per read of its socket rather than once per frame:
//! when the box keeps up each read holds one message and nothing waits, and when it does
//! not, the frames that queued meanwhile go out in one vectored write per player, so the
//! cost per frame falls as the load rises (adaptive merging, no added latency when idle).
//!
//! A player that merges writes (`--merge-writes`, 200 ms by default) is written through
//! too: the publisher holds what it queued for the merge interval, then writes it to
//! every member in one `writev` each, so a merged player costs no timer, wake-up or task
//! poll per interval either.
//!
//! Without merging, audio waits for the next video frame ([`AUDIO_HOLD`] at most) on a stream with video,
//! so a player costs one write per video frame instead of one per audio and video frame
//! (30 instead of 73 a second for 30 fps video and 44.1 kHz AAC). That is merging up to
//! the next frame: a player presents audio and video together, so the audio of time t is
//! of no use to it before the video of time t, which is what releases it. Video and data
//! are never held.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast};

use super::frame::{Frame, FrameKind};
use super::stream::Event;

/// Most buffers in one write-through `writev` (two per frame at most; a flush with more
/// is written in parts).
const MAX_IOV: usize = 128;
/// Frames queued for the write-through set before the publisher should flush (in steps)
/// without waiting for the end of its read.
const MAX_PENDING: usize = 64;
/// Longest audio waits for the next video frame before it is written through anyway
/// (a 20 fps stream still merges every frame; below that audio goes out on its own).
pub const AUDIO_HOLD: Duration = Duration::from_millis(50);

/// What a flush of the write-through set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing was queued.
    Idle,
    /// Queued frames were written (`bytes`, possibly 0 if every socket was full).
    Written,
    /// Only audio is queued: it waits for the next video frame, or until this instant,
    /// when the publisher must flush again.
    Held(Instant),
    /// Written to [`FLUSH_STEP`] members; the publisher lets other tasks run, then calls
    /// again for the rest.
    Partial,
}

/// Members written per call of [`DirectSet::flush_or_hold`], so a flush to thousands of
/// players (every merge interval) does not keep joins and other streams waiting.
pub const FLUSH_STEP: usize = 256;

/// A socket the publisher may write to without ever blocking.
pub trait DirectWrite: Send + Sync {
    /// Writes as much of `bufs` as the socket takes right now: `Ok(0)` (or
    /// `WouldBlock`) when it takes nothing; an error when the connection is broken.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// What a player's task gets back when the publisher stops writing to it.
pub(super) struct Handoff {
    /// What the publisher did not write: the tail of a frame the socket took only part
    /// of and the frames after it. Written first, in order.
    pub rest: Vec<Bytes>,
    /// The ring, positioned right after the last frame written for the player.
    pub rx: broadcast::Receiver<Event>,
}

/// One player's entry in a stream's write-through set.
pub struct DirectPlayer {
    pub(super) id: u64,
    /// The player's `--merge-writes`: how long the publisher may hold frames for it.
    merge: Duration,
    out: Box<dyn DirectWrite>,
    handoff: Mutex<Option<Handoff>>,
    notify: Notify,
}

impl DirectPlayer {
    pub(super) fn new(id: u64, out: Box<dyn DirectWrite>, merge: Duration) -> Arc<Self> {
        Arc::new(Self {
            id,
            merge,
            out,
            handoff: Mutex::new(None),
            notify: Notify::new(),
        })
    }

    /// Writes `bufs` now; the bytes the socket took (0 on any error: the task finds out).
    fn write(&self, bufs: &[IoSlice<'_>]) -> usize {
        loop {
            match self.out.try_write_vectored(bufs) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return 0,
            }
        }
    }

    /// Gives the player back to its task (called with the stream's write-through lock).
    fn hand_back(&self, rest: Vec<Bytes>, rx: broadcast::Receiver<Event>) {
        *self.slot() = Some(Handoff { rest, rx });
        self.notify.notify_one();
    }

    /// The hand-back, if the publisher made one.
    pub(super) fn take(&self) -> Option<Handoff> {
        self.slot().take()
    }

    /// Waits until the publisher may have handed the player back. Cancel-safe.
    pub(super) async fn handed_back(&self) -> Handoff {
        loop {
            if let Some(h) = self.take() {
                return h;
            }
            self.notify.notified().await;
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Handoff>> {
        self.handoff.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Member {
    player: Arc<DirectPlayer>,
    /// The first frame (by sequence number) the publisher writes to it.
    from: u64,
    /// With merging: not written again before this. Each player keeps the phase it
    /// joined with, so a stream's players are written spread over the interval rather
    /// than all at once (which made every player's receiver busy at the same instant).
    due: Instant,
}

/// A stream's write-through set and the frames sent to the ring but not yet written to
/// it. Lives under the lock everything sent to the ring is sent under.
#[derive(Default)]
pub(super) struct DirectSet {
    members: Vec<Member>,
    pending: Vec<(u64, Arc<Frame>)>,
    /// Sequence number of the last frame sent to the ring.
    seq: u64,
    /// The stream has sent video since the last notice (audio may wait for it).
    video: bool,
    /// When the oldest queued frame was queued, if everything queued is audio.
    audio_since: Option<Instant>,
    /// The members' merge interval: queued frames wait this long, then go out in one
    /// write per member (0: at once, bar audio waiting for video). Every member has the
    /// same; a player with another one is served by its own task.
    merge: Duration,
    /// The next member to write in a flush done in steps (0: none under way).
    cursor: usize,
}

impl DirectSet {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// `frame` was just sent to the ring. True when enough is queued that the publisher
    /// should flush now.
    pub fn sent(&mut self, frame: &Arc<Frame>) -> bool {
        self.seq += 1;
        let audio = frame.kind == FrameKind::Audio;
        self.video |= frame.kind == FrameKind::Video;
        if self.members.is_empty() {
            return false;
        }
        if self.pending.is_empty() {
            self.audio_since = audio.then(Instant::now);
        } else if !audio {
            self.audio_since = None;
        }
        self.pending.push((self.seq, frame.clone()));
        self.pending.len() >= MAX_PENDING
    }

    /// Flushes unless only audio is queued on a stream with video and it has waited
    /// less than [`AUDIO_HOLD`]; then it stays queued until the next video frame or the
    /// instant returned, when the caller flushes again.
    pub fn flush_or_hold(
        &mut self,
        now: Instant,
        rx: impl FnMut() -> broadcast::Receiver<Event>,
    ) -> (Flush, u64) {
        if self.pending.is_empty() {
            return (Flush::Idle, 0);
        }
        // A flush under way goes on; otherwise audio may wait for video.
        if self.cursor == 0
            && self.merge.is_zero()
            && let Some(since) = self.audio_since
            && self.video
            && now < since + AUDIO_HOLD
        {
            return (Flush::Held(since + AUDIO_HOLD), 0);
        }
        let (written, done) = self.write_members(FLUSH_STEP, Some(now), rx);
        if done {
            return (Flush::Written, written);
        }
        if self.cursor != 0 || self.merge.is_zero() {
            return (Flush::Partial, written);
        }
        // A pass is over and merged players are still owed frames: the first due.
        let next = self.seq + 1;
        let due = self
            .members
            .iter()
            .filter(|m| m.from < next)
            .map(|m| m.due)
            .min()
            .unwrap_or(now);
        (Flush::Held(due.max(now)), written)
    }

    /// Adds a player that has had every frame sent so far, if it merges writes as the
    /// members do (an empty set takes the player's).
    pub fn join(&mut self, player: &Arc<DirectPlayer>) -> bool {
        if self.members.is_empty() {
            self.merge = player.merge;
        } else if player.merge != self.merge {
            return false;
        }
        self.members.push(Member {
            player: player.clone(),
            from: self.seq + 1,
            due: Instant::now() + self.merge,
        });
        true
    }

    /// Takes player `id` out of the set: the frames queued for it, or None if it is not
    /// in the set (the publisher handed it back already).
    pub fn leave(&mut self, id: u64) -> Option<Vec<Bytes>> {
        let i = self.members.iter().position(|m| m.player.id == id)?;
        let m = self.members.swap_remove(i);
        Some(self.queued_for(m.from))
    }

    fn queued_for(&self, from: u64) -> Vec<Bytes> {
        self.pending
            .iter()
            .filter(|(seq, _)| *seq >= from)
            .flat_map(|(_, f)| f.rtmp_parts())
            .filter(|b| !b.is_empty())
            .cloned()
            .collect()
    }

    /// Writes what they are owed to up to `budget` members, from the cursor on (with
    /// `now`, only merged members that are due; None writes every member owed); true
    /// when no member is owed anything any more (the queue is then empty). A pass that
    /// ends with frames owed (queued while it ran, to members it had written already,
    /// or to merged members not yet due) leaves them queued.
    fn write_members(
        &mut self,
        budget: usize,
        now: Option<Instant>,
        mut rx: impl FnMut() -> broadcast::Receiver<Event>,
    ) -> (u64, bool) {
        let merge = self.merge;
        let mut written = 0u64;
        let mut steps = 0;
        while steps < budget && self.cursor < self.members.len() {
            let i = self.cursor;
            let from = self.members[i].from;
            let start = self.pending.partition_point(|(seq, _)| *seq < from);
            let frames = &self.pending[start..];
            let not_due = !merge.is_zero() && now.is_some_and(|t| self.members[i].due > t);
            if frames.is_empty() || not_due {
                self.cursor += 1;
                continue;
            }
            steps += 1;
            match write_frames(&self.members[i].player, frames) {
                Ok(n) => {
                    written += n;
                    let m = &mut self.members[i];
                    m.from = self.seq + 1;
                    m.due = now.unwrap_or_else(Instant::now) + merge;
                    self.cursor += 1;
                }
                Err((n, rest)) => {
                    written += n;
                    // The last member takes this place and is written next.
                    let m = self.members.swap_remove(i);
                    m.player.hand_back(rest, rx());
                }
            }
        }
        if self.cursor < self.members.len() {
            return (written, false);
        }
        self.cursor = 0;
        let next = self.seq + 1;
        let owed_from = self.members.iter().map(|m| m.from).min().unwrap_or(next);
        if owed_from >= next {
            self.pending.clear();
            self.audio_since = None;
            return (written, true);
        }
        let cut = self.pending.partition_point(|(seq, _)| *seq < owed_from);
        self.pending.drain(..cut);
        self.audio_since = None;
        (written, false)
    }

    /// Hands every member back before a notice, without writing anything: each gets
    /// what is queued for it (to write first) and a ring position `rx` makes, before the
    /// notice, so its own task writes the frames and then the notice, as it writes frames
    /// (docs/architecture.md, "Fan-out and write-through"). The next publisher may have no
    /// video: audio waits for nothing until video is seen again.
    pub fn hand_back_all(&mut self, mut rx: impl FnMut() -> broadcast::Receiver<Event>) {
        for m in std::mem::take(&mut self.members) {
            m.player.hand_back(self.queued_for(m.from), rx());
        }
        self.pending.clear();
        self.audio_since = None;
        self.cursor = 0;
        self.video = false;
    }
}

/// Writes `frames` to `p` in as few `writev`s as it takes; on a short write, the bytes
/// written and what is left (the partial frame's tail, then the frames after it).
fn write_frames(p: &DirectPlayer, frames: &[(u64, Arc<Frame>)]) -> Result<u64, (u64, Vec<Bytes>)> {
    let mut written = 0u64;
    // Each frame is one or two buffers (its chunk header and its shared payload).
    for (k, part) in frames.chunks(MAX_IOV / 2).enumerate() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut used = 0;
        let mut want = 0usize;
        for b in part.iter().flat_map(|(_, f)| f.rtmp_parts()) {
            if !b.is_empty() {
                slices[used] = IoSlice::new(b);
                used += 1;
                want += b.len();
            }
        }
        let mut n = p.write(&slices[..used]);
        written += n as u64;
        if n < want {
            let mut rest = Vec::new();
            for b in frames[k * (MAX_IOV / 2)..]
                .iter()
                .flat_map(|(_, f)| f.rtmp_parts())
                .filter(|b| !b.is_empty())
            {
                if n >= b.len() {
                    n -= b.len();
                } else {
                    rest.push(b.slice(n..));
                    n = 0;
                }
            }
            return Err((written, rest));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream as StdUnix;
    use std::time::Duration;

    use bytes::{BufMut, BytesMut};
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;

    use super::*;
    use crate::media::Flush;
    use crate::media::direct::FLUSH_STEP;
    use crate::media::frame::OUT_CHUNK_SIZE;
    use crate::media::{
        End, MediaConfig, PlayConfig, Player, Publisher, PublisherInfo, Registry, StreamKey,
    };
    use crate::rtmp::chunk::ChunkDecoder;
    use crate::rtmp::message::kind;

    /// The publisher's side of a player socket: a duplicate of its descriptor.
    struct Dup(StdUnix);

    impl DirectWrite for Dup {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            match (&self.0).write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                r => r,
            }
        }
    }

    fn dup(s: &UnixStream) -> Box<dyn DirectWrite> {
        let fd = s.as_fd().try_clone_to_owned().unwrap();
        Box::new(Dup(StdUnix::from(fd)))
    }

    /// A numbered video frame of `size` bytes (index in bytes 5..9).
    fn numbered(i: u32, key: bool, size: usize) -> Bytes {
        let mut b = BytesMut::with_capacity(size);
        b.put_u8(if key { 0x17 } else { 0x27 });
        b.put_u8(1);
        b.put_slice(&[0, 0, 0]);
        b.put_u32(i);
        b.resize(size, 0xab);
        b.freeze()
    }

    fn info() -> PublisherInfo {
        PublisherInfo {
            id: 1,
            addr: None,
            since: std::time::Instant::now(),
            upstream: None,
        }
    }

    /// A published stream with its first keyframe cached.
    fn live() -> (Registry, StreamKey, Publisher, Arc<crate::media::Stream>) {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let publisher = r.publish(&key, info()).unwrap();
        let stream = publisher.stream().clone();
        // Nobody plays yet: nothing to write through.
        publisher.push_batched(kind::VIDEO, 0, numbered(0, true, 100));
        (r, key, publisher, stream)
    }

    /// Plays like the RTMP connection does: writes what `next_batch` hands out, in order,
    /// the tail of a partly written frame first.
    async fn serve(mut player: Player, mut sock: UnixStream) -> End {
        let mut batch = Vec::new();
        loop {
            let d = player.next_batch(&mut batch).await;
            for rest in &d.rest {
                sock.write_all(rest).await.unwrap();
            }
            let mut bufs = Vec::new();
            for f in batch.drain(..) {
                f.push_rtmp(crate::media::frame::PLAY_STREAM_ID, &mut bufs);
            }
            for b in bufs {
                sock.write_all(&b).await.unwrap();
            }
            if let Some(end) = d.end {
                return end;
            }
        }
    }

    /// The frame indexes of every whole message in `bytes` (a torn or garbled chunk
    /// stream fails to decode).
    fn indexes(bytes: &[u8]) -> Vec<u32> {
        let mut dec = ChunkDecoder::default();
        dec.set_chunk_size(OUT_CHUNK_SIZE as u32).unwrap();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf).expect("a well-formed chunk stream") {
            assert_eq!(m.type_id, kind::VIDEO);
            out.push(u32::from_be_bytes(m.payload[5..9].try_into().unwrap()));
        }
        out
    }

    async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_socket_never_blocks_the_publisher_or_the_other_players() {
        const FRAMES: u32 = 400;
        const SIZE: usize = 16 * 1024;
        let r = Registry::new(MediaConfig {
            queue_frames: 64,
            ..MediaConfig::default()
        });
        let key = StreamKey::new("v", "live", "s");
        let publisher = r.publish(&key, info()).unwrap();
        let stream = publisher.stream().clone();
        publisher
            .push(kind::VIDEO, 0, numbered(0, true, SIZE))
            .await;

        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (server, client) = UnixStream::pair().unwrap();
            let mut player = r.play(&key, PlayConfig::default());
            assert!(player.write_through(dup(&server)));
            tasks.push(tokio::spawn(serve(player, server)));
            clients.push(client.into_std().unwrap());
        }
        let slow = clients.pop().unwrap();
        let fast = clients.pop().unwrap();
        // The fast player reads everything, on its own thread.
        fast.set_nonblocking(false).unwrap();
        let frame_bytes = SIZE + 12;
        let expected = (FRAMES as usize + 1) * frame_bytes;
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut fast = fast;
            let mut buf = vec![0u8; 256 * 1024];
            while got.len() < expected {
                let n = fast.read(&mut buf).unwrap();
                assert!(n > 0, "fast player closed");
                got.extend_from_slice(&buf[..n]);
                counter.store(got.len(), std::sync::atomic::Ordering::Relaxed);
            }
            got
        });
        wait_until("both players are written through", || {
            stream.written_through() == 2
        })
        .await;

        // The slow player never reads: its socket fills, and the publisher goes on.
        for i in 1..=FRAMES {
            publisher
                .push(kind::VIDEO, i * 33, numbered(i, i % 60 == 0, SIZE))
                .await;
            if i % 8 == 0 {
                // Keep the fast reader within a few frames (its socket never fills, however
                // busy the machine is), so only the slow player is ever handed back.
                let pushed = (i as usize + 1) * frame_bytes;
                wait_until("the fast player reads", || {
                    read.load(std::sync::atomic::Ordering::Relaxed) >= pushed
                })
                .await;
            }
        }
        assert_eq!(
            stream.written_through(),
            1,
            "the full socket was handed back to its task; the fast one is still written through"
        );
        let got = reader.join().unwrap();
        assert_eq!(
            indexes(&got),
            (0..=FRAMES).collect::<Vec<_>>(),
            "the fast player got every frame once, in order, whole"
        );
        // Stop the players' tasks before looking at what the slow socket holds: while it
        // is drained, its task would otherwise go on writing (and may catch up).
        for t in tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        // What the slow player's socket holds is whole frames in order, never one twice,
        // then possibly part of the next one.
        let mut held = Vec::new();
        let mut slow = slow;
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = slow.read(&mut buf) {
            if n == 0 {
                break;
            }
            held.extend_from_slice(&buf[..n]);
        }
        let seen = indexes(&held);
        assert!(seen.len() > 1 && seen[0] == 0, "it got the start: {seen:?}");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "no frame twice: {seen:?}"
        );
        assert!(
            (*seen.last().unwrap()) < FRAMES,
            "a full socket cannot have taken everything"
        );
        drop(publisher);
    }

    #[tokio::test]
    async fn notices_go_through_the_players_task_and_it_rejoins_after() {
        let (r, key, publisher, stream) = live();
        let (server, client) = UnixStream::pair().unwrap();
        let mut player = r.play(&key, PlayConfig::default());
        assert!(player.write_through(dup(&server)));
        let mut batch = Vec::new();
        // The join burst comes from the ring, then the player is written through.
        let d = player.next_batch(&mut batch).await;
        assert_eq!((batch.len(), d.rest.is_empty()), (1, true));
        batch.clear();
        let waiting = tokio::spawn(async move {
            let d = player.next_batch(&mut batch).await;
            (player, batch, d)
        });
        wait_until("written through", || stream.written_through() == 1).await;
        publisher
            .push(kind::VIDEO, 33, numbered(1, false, 100))
            .await;
        drop(publisher);
        let (mut player, mut batch, d) = waiting.await.unwrap();
        assert_eq!(stream.written_through(), 0);
        assert_eq!(d.notice, Some(crate::media::Notice::Unpublished));
        assert!(batch.is_empty(), "frame 1 went straight to the socket");
        let mut sent = vec![0u8; 4096];
        let n = client.try_read(&mut sent).unwrap();
        assert_eq!(indexes(&sent[..n]), vec![1]);

        // Republished: the notice, then write-through again.
        let publisher = r.publish(&key, info()).unwrap();
        let d = player.next_batch(&mut batch).await;
        assert_eq!(d.notice, Some(crate::media::Notice::Published));
        publisher.push(kind::VIDEO, 0, numbered(2, true, 100)).await;
        let d = player.next_batch(&mut batch).await;
        assert_eq!(batch.len(), 1, "caught up via the ring: {d:?}");
        batch.clear();
        let waiting = tokio::spawn(async move { player.next_batch(&mut batch).await });
        wait_until("written through again", || stream.written_through() == 1).await;
        publisher
            .push(kind::VIDEO, 33, numbered(3, false, 100))
            .await;
        wait_until("frame 3 written", || {
            client
                .try_read(&mut sent)
                .is_ok_and(|n| indexes(&sent[..n]) == vec![3])
        })
        .await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(
            stream.written_through(),
            0,
            "a dropped player leaves the set"
        );
    }

    #[tokio::test]
    async fn frames_queued_for_one_flush_reach_a_player_that_leaves_before_it() {
        let (r, key, publisher, stream) = live();
        let mut players = Vec::new();
        for _ in 0..2 {
            let (server, client) = UnixStream::pair().unwrap();
            let mut player = r.play(&key, PlayConfig::default());
            assert!(player.write_through(dup(&server)));
            let mut batch = Vec::new();
            player.next_batch(&mut batch).await;
            assert_eq!(batch.len(), 1, "the join burst");
            players.push((player, client.into_std().unwrap()));
        }
        // Both join the set (the futures wait for a hand-back; polling once joins).
        for (p, _) in &mut players {
            let mut batch = Vec::new();
            let fut = p.next_batch(&mut batch);
            assert!(
                tokio::time::timeout(Duration::from_millis(1), fut)
                    .await
                    .is_err()
            );
        }
        assert_eq!(stream.written_through(), 2);
        // Two frames read at once: written through on the flush, in one go.
        publisher.push_batched(kind::VIDEO, 33, numbered(1, false, 100));
        publisher.push_batched(kind::VIDEO, 66, numbered(2, false, 100));
        let mut buf = vec![0u8; 4096];
        assert!(
            (&players[0].1).read(&mut buf).is_err(),
            "nothing before the flush"
        );
        // One player takes itself back first (it has a control message to send): the
        // queued frames come back to it to write, and the flush skips it.
        let rest = players[1].0.take_over();
        assert_eq!(rest.len(), 4, "two frames: a header and a payload each");
        let rest: Vec<u8> = rest.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(indexes(&rest), vec![1, 2]);
        assert_eq!(publisher.flush_or_hold(), Flush::Written);
        let n = (&players[0].1).read(&mut buf).unwrap();
        assert_eq!(indexes(&buf[..n]), vec![1, 2]);
        assert!((&players[1].1).read(&mut buf).is_err(), "nothing twice");
        assert_eq!(stream.written_through(), 1);
        // The one taken back goes on from the ring after frame 2.
        publisher
            .push(kind::VIDEO, 99, numbered(3, false, 100))
            .await;
        let mut batch = Vec::new();
        let d = players[1].0.next_batch(&mut batch).await;
        assert!(d.rest.is_empty());
        let got: Vec<u8> = batch
            .iter()
            .flat_map(|f| f.rtmp_parts())
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(indexes(&got), vec![3]);
    }

    #[tokio::test]
    async fn audio_waits_for_the_next_video_frame_and_no_longer_than_the_hold() {
        let (r, key, publisher, stream) = live();
        let (server, client) = UnixStream::pair().unwrap();
        let client = client.into_std().unwrap();
        let mut player = r.play(&key, PlayConfig::default());
        assert!(player.write_through(dup(&server)));
        let mut batch = Vec::new();
        player.next_batch(&mut batch).await;
        let fut = player.next_batch(&mut batch);
        assert!(
            tokio::time::timeout(Duration::from_millis(1), fut)
                .await
                .is_err()
        );
        assert_eq!(stream.written_through(), 1);
        let audio = Bytes::from_static(&[0xaf, 1, 0x21, 0x10]);
        let mut buf = vec![0u8; 4096];

        // Audio on a stream with video waits for the video frame, then both go in one write.
        publisher.push_batched(kind::AUDIO, 10, audio.clone());
        publisher.push_batched(kind::AUDIO, 20, audio.clone());
        let held = publisher.flush_or_hold();
        assert!(matches!(held, Flush::Held(_)), "{held:?}");
        assert!((&client).read(&mut buf).is_err(), "nothing written yet");
        publisher.push_batched(kind::VIDEO, 33, numbered(1, false, 100));
        assert_eq!(publisher.flush_or_hold(), Flush::Written);
        let n = (&client).read(&mut buf).unwrap();
        let mut dec = ChunkDecoder::default();
        dec.set_chunk_size(OUT_CHUNK_SIZE as u32).unwrap();
        let mut wire = BytesMut::from(&buf[..n]);
        let mut kinds = Vec::new();
        while let Some(m) = dec.decode(&mut wire).unwrap() {
            kinds.push((m.type_id, m.timestamp));
        }
        assert_eq!(
            kinds,
            vec![(kind::AUDIO, 10), (kind::AUDIO, 20), (kind::VIDEO, 33)],
            "in order, in one write"
        );

        // No video within the hold: the audio goes out on its own after it.
        publisher.push_batched(kind::AUDIO, 40, audio.clone());
        let Flush::Held(until) = publisher.flush_or_hold() else {
            panic!("audio is held");
        };
        let wait = until.saturating_duration_since(std::time::Instant::now());
        assert!(wait <= AUDIO_HOLD);
        tokio::time::sleep(wait).await;
        assert_eq!(publisher.flush_or_hold(), Flush::Written);
        assert!((&client).read(&mut buf).unwrap() > 0);
        assert_eq!(publisher.flush_or_hold(), Flush::Idle);

        // A new publisher without video: its audio is never held.
        drop(publisher);
        let d = player.next_batch(&mut batch).await;
        assert_eq!(d.notice, Some(crate::media::Notice::Unpublished));
        let publisher = r.publish(&key, info()).unwrap();
        let d = player.next_batch(&mut batch).await;
        assert_eq!(d.notice, Some(crate::media::Notice::Published));
        batch.clear();
        publisher.push(kind::AUDIO, 0, audio.clone()).await;
        let d = player.next_batch(&mut batch).await;
        assert!(
            d.rest.is_empty() && !batch.is_empty(),
            "caught up via the ring"
        );
        batch.clear();
        let waiting = tokio::spawn(async move { player.next_batch(&mut batch).await });
        wait_until("written through again", || stream.written_through() == 1).await;
        while (&client).read(&mut buf).is_ok() {}
        publisher.push_batched(kind::AUDIO, 23, audio);
        assert_eq!(publisher.flush_or_hold(), Flush::Written);
        assert!((&client).read(&mut buf).unwrap() > 0);
        waiting.abort();
        let _ = waiting.await;
    }

    #[tokio::test]
    async fn merged_players_are_written_through_once_per_merge_interval() {
        const MERGE: Duration = Duration::from_millis(150);
        let (r, key, publisher, stream) = live();
        let merged = PlayConfig {
            merge: MERGE,
            ..PlayConfig::default()
        };
        let mut players = Vec::new();
        for config in [merged, merged, PlayConfig::default()] {
            let (server, client) = UnixStream::pair().unwrap();
            let mut player = r.play(&key, config);
            assert!(player.write_through(dup(&server)));
            let mut batch = Vec::new();
            player.next_batch(&mut batch).await;
            assert_eq!(batch.len(), 1, "the join burst");
            players.push((player, client.into_std().unwrap(), server));
        }
        // Polling joins (a merged player rests for its interval after the burst first).
        for (p, _, _) in &mut players {
            let mut batch = Vec::new();
            let fut = p.next_batch(&mut batch);
            let _ = tokio::time::timeout(MERGE * 2, fut).await;
        }
        assert_eq!(
            stream.written_through(),
            2,
            "the unmerged player is not in a set of merged ones"
        );
        // Both are due (they joined more than an interval ago): written at once.
        tokio::time::sleep(MERGE).await;
        publisher.push_batched(kind::VIDEO, 33, numbered(1, false, 100));
        assert_eq!(publisher.flush_or_hold(), Flush::Written);
        let mut buf = vec![0u8; 4096];
        for (_, client, _) in &players[..2] {
            let n = (&*client).read(&mut buf).unwrap();
            assert_eq!(indexes(&buf[..n]), vec![1]);
        }
        // Now they rest for the interval: what comes meanwhile waits, then goes in one write.
        let written = std::time::Instant::now();
        publisher.push_batched(kind::VIDEO, 66, numbered(2, false, 100));
        let Flush::Held(until) = publisher.flush_or_hold() else {
            panic!("held for the merge interval");
        };
        assert!(until >= written && until <= std::time::Instant::now() + MERGE);
        publisher.push_batched(kind::VIDEO, 99, numbered(3, false, 100));
        assert!(matches!(publisher.flush_or_hold(), Flush::Held(u) if u == until));
        assert!((&players[0].1).read(&mut buf).is_err(), "nothing yet");
        tokio::time::sleep(until.saturating_duration_since(std::time::Instant::now())).await;
        assert_eq!(publisher.flush_or_hold(), Flush::Written);
        for (_, client, _) in &players[..2] {
            let n = (&*client).read(&mut buf).unwrap();
            assert_eq!(indexes(&buf[..n]), vec![2, 3], "both frames in one write");
        }
    }

    #[tokio::test]
    async fn a_flush_to_many_players_goes_in_steps_and_misses_nothing_queued_meanwhile() {
        let (r, key, publisher, stream) = live();
        let mut players = Vec::new();
        for _ in 0..FLUSH_STEP + 2 {
            let (server, client) = UnixStream::pair().unwrap();
            let mut player = r.play(&key, PlayConfig::default());
            assert!(player.write_through(dup(&server)));
            let mut batch = Vec::new();
            player.next_batch(&mut batch).await;
            let fut = player.next_batch(&mut batch);
            let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
            players.push((player, client.into_std().unwrap(), server));
        }
        assert_eq!(stream.written_through(), FLUSH_STEP + 2);
        publisher.push_batched(kind::VIDEO, 33, numbered(1, false, 100));
        assert_eq!(publisher.flush_or_hold(), Flush::Partial, "the first step");
        // A frame arrives before the rest is written: the rest get both, the first ones
        // get it on the next pass.
        publisher.push_batched(kind::VIDEO, 66, numbered(2, false, 100));
        let mut steps = 1;
        while publisher.flush_or_hold() != Flush::Written {
            steps += 1;
            assert!(steps < 10, "the flush ends");
        }
        assert_eq!(publisher.flush_or_hold(), Flush::Idle);
        let mut buf = vec![0u8; 4096];
        for (_, client, _) in &players {
            let mut got = Vec::new();
            while let Ok(n) = (&*client).read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(indexes(&got), vec![1, 2], "every frame once, in order");
        }
        assert_eq!(stream.written_through(), FLUSH_STEP + 2);
    }

    /// A player socket that counts the publisher's writes to it, and those made while
    /// the stream's cache lock was held (what subscribe and the ownership query wait on).
    struct Probe {
        sock: StdUnix,
        stream: std::sync::Weak<crate::media::Stream>,
        writes: Arc<std::sync::atomic::AtomicUsize>,
        locked: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl DirectWrite for Probe {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            use std::sync::atomic::Ordering::SeqCst;
            self.writes.fetch_add(1, SeqCst);
            if !self.stream.upgrade().is_some_and(|s| s.cache_is_free()) {
                self.locked.fetch_add(1, SeqCst);
            }
            match (&self.sock).write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                r => r,
            }
        }
    }

    /// Frame indexes of what a hand-back left for the player's task to write.
    fn rest_indexes(rest: &[Bytes]) -> Vec<u32> {
        indexes(&rest.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>())
    }

    #[tokio::test]
    async fn no_socket_is_written_under_the_cache_lock_whatever_triggers_the_flush() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let relay = r
            .publish(
                &key,
                PublisherInfo {
                    id: 7,
                    upstream: Some("rtmp://owner".into()),
                    ..info()
                },
            )
            .unwrap();
        let stream = relay.stream().clone();
        relay.push_batched(kind::VIDEO, 0, numbered(0, true, 100));
        let writes = Arc::new(AtomicUsize::new(0));
        let locked = Arc::new(AtomicUsize::new(0));
        let mut players = Vec::new();
        for _ in 0..2 {
            let (server, client) = StdUnix::pair().unwrap();
            server.set_nonblocking(true).unwrap();
            client.set_nonblocking(true).unwrap();
            let mut player = r.play(&key, PlayConfig::default());
            assert!(player.write_through(Box::new(Probe {
                sock: server,
                stream: Arc::downgrade(&stream),
                writes: writes.clone(),
                locked: locked.clone(),
            })));
            let mut batch = Vec::new();
            player.next_batch(&mut batch).await;
            assert_eq!(batch.len(), 1, "the join burst");
            players.push((player, client));
        }
        // Both join the set (polling once joins; the futures wait for a hand-back).
        let join = |players: &mut Vec<(Player, StdUnix)>| {
            let players = std::mem::take(players);
            async move {
                let mut back = Vec::new();
                for (mut p, c) in players {
                    let mut batch = Vec::new();
                    let fut = p.next_batch(&mut batch);
                    assert!(
                        tokio::time::timeout(Duration::from_millis(1), fut)
                            .await
                            .is_err()
                    );
                    back.push((p, c));
                }
                back
            }
        };
        players = join(&mut players).await;
        assert_eq!(stream.written_through(), 2);
        let mut buf = vec![0u8; 64 * 1024];

        // A relay's frame: written through by the stepped flush.
        relay.push(kind::VIDEO, 33, numbered(1, false, 100)).await;
        assert_eq!(writes.load(SeqCst), 2);
        for (_, c) in &players {
            let n = (&*c).read(&mut buf).unwrap();
            assert_eq!(indexes(&buf[..n]), vec![1]);
        }
        // One read of many messages: the queue fills, and pushing never writes.
        let mut full = false;
        for i in 2..2 + MAX_PENDING as u32 {
            full = relay.push_batched(kind::VIDEO, i * 33, numbered(i, false, 100));
        }
        assert!(full, "the publisher is told to flush");
        assert_eq!(writes.load(SeqCst), 2, "nothing written from push");

        // A real publisher replaces the relay with those frames still queued: the
        // players are handed back with them, nothing is written under the lock.
        let publisher = r.publish(&key, info()).unwrap();
        assert_eq!(writes.load(SeqCst), 2, "nothing written from publish");
        assert_eq!(stream.written_through(), 0);
        let queued: Vec<u32> = (2..2 + MAX_PENDING as u32).collect();
        for (p, _) in &mut players {
            let mut batch = Vec::new();
            let d = p.next_batch(&mut batch).await;
            assert_eq!(
                rest_indexes(&d.rest),
                queued,
                "the queued frames, once, in order"
            );
            assert_eq!(d.notice, Some(crate::media::Notice::Unpublished));
            let d = p.next_batch(&mut batch).await;
            assert_eq!(d.notice, Some(crate::media::Notice::Published));
        }
        drop(relay);

        // The new publisher's keyframe reaches them from the ring; then they rejoin.
        publisher
            .push(kind::VIDEO, 0, numbered(100, true, 100))
            .await;
        for (p, _) in &mut players {
            let mut batch = Vec::new();
            p.next_batch(&mut batch).await;
            assert_eq!(batch.len(), 1);
        }
        players = join(&mut players).await;
        assert_eq!(stream.written_through(), 2);
        // Unpublished with a frame queued: the drop writes nothing either.
        publisher.push_batched(kind::VIDEO, 33, numbered(101, false, 100));
        let before = writes.load(SeqCst);
        drop(publisher);
        assert_eq!(writes.load(SeqCst), before, "nothing written from the drop");
        for (p, c) in &mut players {
            let mut batch = Vec::new();
            let d = p.next_batch(&mut batch).await;
            assert_eq!(rest_indexes(&d.rest), vec![101]);
            assert_eq!(d.notice, Some(crate::media::Notice::Unpublished));
            assert!((&*c).read(&mut buf).is_err(), "nothing written meanwhile");
        }
        assert!(writes.load(SeqCst) > 0);
        assert_eq!(
            locked.load(SeqCst),
            0,
            "a socket was written under the cache lock"
        );
    }
}
