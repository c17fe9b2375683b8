//! The tokio edge of a packager: one feeding task per stream while someone asks for HLS,
//! a `watch` that wakes blocked requests when a part or segment completes, and the set of
//! active packagers, each removed from it by a guard when its task ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::{HlsConfig, Packager};
use crate::media::{End, Player, StreamKey};

/// Unix time in ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One stream's live packager, shared by its feeding task and the HTTP handlers.
pub struct Live {
    pub key: StreamKey,
    /// Unix ms when packaging started: names resources, so a restarted packager's
    /// segment numbers never collide with cached ones.
    pub session: u64,
    packager: Mutex<Packager>,
    changes: watch::Sender<u64>,
    /// ms since `born` of the last HLS request.
    last_request: AtomicU64,
    /// Requests being answered (a waiting request keeps the packager alive).
    in_flight: AtomicU64,
    born: Instant,
    /// The last playlist rendered: (change count, URI style, body).
    rendered: Mutex<Option<(u64, String, bytes::Bytes)>>,
    /// Playlist requests per target-duration window: (window start, this window's
    /// count, the last full window's count). A player polls once per target duration,
    /// so the last full window's count is the number of viewers.
    polls: Mutex<(Instant, u64, u64)>,
    window: Duration,
}

/// One HLS request of a packager, from arrival to answer.
pub struct RequestGuard<'a>(&'a Live);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Live {
    fn new(key: StreamKey, config: HlsConfig) -> Self {
        Self {
            key,
            session: unix_ms(),
            packager: Mutex::new(Packager::new(config)),
            changes: watch::channel(0).0,
            last_request: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            rendered: Mutex::new(None),
            polls: Mutex::new((Instant::now(), 0, 0)),
            window: config.target_duration.max(Duration::from_millis(100)),
            born: Instant::now(),
        }
    }

    fn rotate(&self, polls: &mut (Instant, u64, u64)) {
        let elapsed = polls.0.elapsed();
        if elapsed >= self.window {
            // A whole window without polls in between means nobody watched in it.
            polls.2 = if elapsed >= 2 * self.window {
                0
            } else {
                polls.1
            };
            polls.1 = 0;
            polls.0 = Instant::now();
        }
    }

    /// Counts a playlist request (a viewer's poll).
    pub fn count_poll(&self) {
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        self.rotate(&mut polls);
        polls.1 += 1;
    }

    /// HLS viewers: playlist requests in the last full target-duration window.
    pub fn viewers(&self) -> u64 {
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        self.rotate(&mut polls);
        polls.2.max(polls.1)
    }

    fn lock(&self) -> MutexGuard<'_, Packager> {
        self.packager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the packager's state.
    pub fn with<R>(&self, f: impl FnOnce(&Packager) -> R) -> R {
        f(&self.lock())
    }

    /// Marks an HLS request: the packager lives on for another idle timeout.
    pub fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_request.fetch_max(ms, Ordering::Relaxed);
    }

    /// Counts a request until the guard drops; the idle clock restarts when it ends.
    pub fn request(&self) -> RequestGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        RequestGuard(self)
    }

    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_request.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// Waits until `f` answers `Some` (asked now and after each change), or `deadline`.
    pub async fn wait_for<R>(
        &self,
        deadline: Instant,
        mut f: impl FnMut(&Packager) -> Option<R>,
    ) -> Option<R> {
        let mut rx = self.changes.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(r) = self.with(&mut f) {
                return Some(r);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the feeding task is gone: one last look.
                Ok(Err(_)) | Err(_) => return self.with(&mut f),
            }
        }
    }

    /// A playlist rendering, shared by every request between two changes. Call it from
    /// inside [`Live::with`]/[`Live::wait_for`] (under the packager lock, so the change
    /// count matches the state `render` sees); `style` tells URI styles (query) apart.
    pub fn cached(
        &self,
        style: &str,
        render: impl FnOnce() -> Option<String>,
    ) -> Option<bytes::Bytes> {
        let version = *self.changes.borrow();
        let mut slot = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, st, body)) = &*slot
            && *v == version
            && st == style
        {
            return Some(body.clone());
        }
        let body = bytes::Bytes::from(render()?);
        *slot = Some((version, style.to_string(), body.clone()));
        Some(body)
    }

    /// Counts a change; called with the packager locked so renderings keyed by the count
    /// never mix states.
    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
}

/// The active packagers of one origin.
#[derive(Default)]
pub struct Packagers {
    map: Mutex<HashMap<StreamKey, Arc<Live>>>,
    active: AtomicU64,
}

impl Packagers {
    fn map(&self) -> MutexGuard<'_, HashMap<StreamKey, Arc<Live>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &StreamKey) -> Option<Arc<Live>> {
        self.map().get(key).cloned()
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts packaging `key` from `player` unless a packager already runs (then the
    /// player is dropped and the running one returned). Runs until no HLS request came
    /// for `idle`, or the stream ends.
    pub fn start(
        self: &Arc<Self>,
        key: &StreamKey,
        player: Player,
        config: HlsConfig,
        idle: Duration,
    ) -> Arc<Live> {
        let mut map = self.map();
        if let Some(l) = map.get(key) {
            return l.clone();
        }
        let live = Arc::new(Live::new(key.clone(), config));
        live.touch();
        map.insert(key.clone(), live.clone());
        drop(map);
        self.active.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().hls_packagers.inc();
        let guard = ActiveGuard {
            packagers: self.clone(),
            live: live.clone(),
        };
        tokio::spawn(feed(guard, player, idle));
        live
    }
}

/// Removes a packager from the active set when its task ends, however it ends.
struct ActiveGuard {
    packagers: Arc<Packagers>,
    live: Arc<Live>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut map = self.packagers.map();
        if map
            .get(&self.live.key)
            .is_some_and(|l| Arc::ptr_eq(l, &self.live))
        {
            map.remove(&self.live.key);
        }
        drop(map);
        self.packagers.active.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::global().hls_packagers.dec();
        // Wake anyone still waiting so they answer now.
        self.live.changed();
    }
}

async fn feed(guard: ActiveGuard, mut player: Player, idle: Duration) {
    let live = guard.live.clone();
    tracing::info!(stream = %live.key, "HLS packaging started");
    let mut warned = false;
    let check = idle.clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut batch = Vec::with_capacity(64);
    loop {
        let delivery = tokio::select! {
            d = player.next_batch(&mut batch) => d,
            _ = tokio::time::sleep(check) => {
                if live.idle_for() >= idle {
                    break;
                }
                continue;
            }
        };
        player.stream().set_hls_viewers(live.viewers());
        let now = unix_ms();
        let mut changed = false;
        {
            let mut p = live.lock();
            for f in batch.drain(..) {
                match p.push(&f, now) {
                    Ok(c) => changed |= c.part || c.segment,
                    Err(e) => {
                        if !warned {
                            warned = true;
                            tracing::warn!(stream = %live.key, error = %e, "HLS packager skipped a frame");
                        }
                    }
                }
            }
            if delivery.notice.is_some() {
                // Unpublished or republished: the next segment starts afresh.
                let c = p.discontinuity();
                changed |= c.part || c.segment;
            }
            if changed {
                live.changed();
            }
        }
        match delivery.end {
            None => {}
            Some(End::TooSlow) => {
                tracing::warn!(stream = %live.key, "HLS packager fell behind the stream; stopping");
                break;
            }
            Some(End::Closed | End::NotRepublished) => break,
        }
        if live.idle_for() >= idle {
            break;
        }
    }
    tracing::info!(stream = %live.key, "HLS packaging stopped");
    player.stream().set_hls_viewers(0);
    // The player releases the stream, the guard the packager.
    drop(player);
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{MediaConfig, PlayConfig, PublisherInfo, Registry};
    use crate::rtmp::message::kind;
    use std::time::Duration;

    fn frames() -> Vec<(u8, u32, bytes::Bytes)> {
        let header = crate::hls::packager::tests::avc_header();
        let mut v = vec![(kind::VIDEO, 0, header.payload.clone())];
        for i in 0..200u32 {
            let f = crate::hls::packager::tests::video(i * 40, i % 25 == 0);
            v.push((kind::VIDEO, i * 40, f.payload.clone()));
        }
        v
    }

    #[tokio::test]
    async fn waits_resolve_on_change_and_the_packager_stops_when_idle() {
        let registry = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let publisher = registry
            .publish(
                &key,
                PublisherInfo {
                    id: 1,
                    addr: None,
                    since: std::time::Instant::now(),
                    upstream: None,
                },
            )
            .unwrap();
        let packagers = Arc::new(Packagers::default());
        let player = registry.play(&key, PlayConfig::default());
        let config = HlsConfig {
            target_duration: Duration::from_secs(1),
            ..HlsConfig::default()
        };
        let idle = Duration::from_millis(300);
        let live = packagers.start(&key, player, config, idle);
        assert!(Arc::ptr_eq(&live, &packagers.get(&key).unwrap()));
        assert_eq!(packagers.active(), 1);

        // Nothing yet: a wait for a segment times out at its deadline.
        let none = live
            .wait_for(Instant::now() + Duration::from_millis(50), |p| {
                p.segments().front().map(|s| s.msn)
            })
            .await;
        assert_eq!(none, None);

        // A waiter wakes when the feeding task completes a segment.
        let waiter = {
            let live = live.clone();
            tokio::spawn(async move {
                let _req = live.request();
                live.wait_for(Instant::now() + Duration::from_secs(10), |p| {
                    p.segments().front().map(|s| s.msn)
                })
                .await
            })
        };
        for (t, ts, p) in frames() {
            publisher.push(t, ts, p).await;
        }
        assert_eq!(waiter.await.unwrap(), Some(0));

        // No requests: the task ends, the guard removes the packager, the player lets go.
        let deadline = Instant::now() + Duration::from_secs(10);
        while packagers.active() > 0 {
            assert!(Instant::now() < deadline, "packager did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(packagers.get(&key).is_none());
        assert_eq!(registry.stats()[0].players, 0);
    }
}
