//! All streams of one origin, keyed by `vhost/app/stream`.
//!
//! An entry lives exactly as long as something holds it: a [`Publisher`], a [`Player`]
//! (also one still waiting for its publisher) or a relay. Each of those owns a [`Hold`]
//! that releases the entry on `Drop` (mini-redis's `DbDropGuard`), so a task or a future
//! that is dropped half-way (an HTTP client hanging up) cannot leak a stream. Holds are
//! counted under the map lock, so a concurrent lookup (the streams API, an ownership
//! query) never keeps an idle entry alive.
//!
//! A play still looking for its publisher holds no stream: it holds a [`PublishWatch`],
//! one small entry per name that a publish of that name wakes, so waiting plays of
//! unknown names cost no fan-out ring (docs/architecture.md, "Limits and hostile input").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::name::StreamKey;
use super::player::{PlayConfig, Player};
use super::publisher::Publisher;
use super::stream::{AlreadyPublished, MediaConfig, PublisherInfo, Stream, StreamStats};

struct Entry {
    stream: Arc<Stream>,
    holds: usize,
}

struct Inner {
    config: MediaConfig,
    streams: Mutex<HashMap<StreamKey, Entry>>,
    /// Names plays wait for, with the number of plays waiting for each.
    waiting: Mutex<HashMap<StreamKey, Waiting>>,
}

struct Waiting {
    notify: Arc<Notify>,
    plays: usize,
}

/// A play's interest in a name: woken when anything (a publisher, a relay) publishes it
/// here. Dropping it releases the interest.
pub struct PublishWatch {
    registry: Registry,
    key: StreamKey,
    notify: Arc<Notify>,
}

impl PublishWatch {
    /// Resolves at the next publish of the name. Call `enable()` on the pinned future
    /// before checking the registry, so a publish in between is not missed.
    pub fn published(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for PublishWatch {
    fn drop(&mut self) {
        let mut waiting = self.registry.waiting();
        if let Some(w) = waiting.get_mut(&self.key) {
            w.plays -= 1;
            if w.plays == 0 {
                waiting.remove(&self.key);
                crate::metrics::global().waiting_names.dec();
            }
        }
        crate::metrics::global().waiting_plays.dec();
    }
}

/// Cheap to clone: every clone is the same registry.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// Keeps a registry entry alive; the entry goes when its last hold is dropped.
pub struct Hold {
    registry: Registry,
    stream: Arc<Stream>,
}

impl Hold {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut map = self.registry.map();
        if let Some(e) = map.get_mut(&self.stream.key)
            && Arc::ptr_eq(&e.stream, &self.stream)
        {
            e.holds -= 1;
            if e.holds == 0 {
                map.remove(&self.stream.key);
            }
        }
    }
}

impl Registry {
    pub fn new(config: MediaConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                streams: Mutex::new(HashMap::new()),
                waiting: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<StreamKey, Entry>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<StreamKey, Waiting>> {
        self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches for a publish of `key` without creating its stream.
    pub fn watch_publish(&self, key: &StreamKey) -> PublishWatch {
        let mut waiting = self.waiting();
        let w = waiting.entry(key.clone()).or_insert_with(|| {
            crate::metrics::global().waiting_names.inc();
            Waiting {
                notify: Arc::new(Notify::new()),
                plays: 0,
            }
        });
        w.plays += 1;
        crate::metrics::global().waiting_plays.inc();
        PublishWatch {
            registry: self.clone(),
            key: key.clone(),
            notify: w.notify.clone(),
        }
    }

    /// Names plays wait for, and the plays waiting for them.
    pub fn waiting_counts(&self) -> (usize, usize) {
        let waiting = self.waiting();
        (waiting.len(), waiting.values().map(|w| w.plays).sum())
    }

    /// Holds `key`'s entry, creating it empty (no publisher) if needed.
    pub fn hold(&self, key: &StreamKey) -> Hold {
        let mut map = self.map();
        let e = map.entry(key.clone()).or_insert_with(|| Entry {
            stream: Arc::new(Stream::new(key.clone(), self.inner.config)),
            holds: 0,
        });
        e.holds += 1;
        Hold {
            registry: self.clone(),
            stream: e.stream.clone(),
        }
    }

    /// A player of `key`: it sees the stream's cache and live frames, or waits for a
    /// publisher. Dropping it releases the entry.
    pub fn play(&self, key: &StreamKey, config: PlayConfig) -> Player {
        Player::new(self.hold(key), config)
    }

    /// Claims `key` for a publisher; dropping the [`Publisher`] unpublishes and releases.
    pub fn publish(
        &self,
        key: &StreamKey,
        info: PublisherInfo,
    ) -> Result<Publisher, AlreadyPublished> {
        let publisher = Publisher::new(self.hold(key), info)?;
        if let Some(w) = self.waiting().get(key) {
            w.notify.notify_waiters();
        }
        Ok(publisher)
    }

    pub fn get(&self, key: &StreamKey) -> Option<Arc<Stream>> {
        self.map().get(key).map(|e| e.stream.clone())
    }

    /// Whether `key` has an active publisher here, relay or not.
    pub fn is_published(&self, key: &StreamKey) -> bool {
        self.get(key).is_some_and(|s| s.is_published())
    }

    /// Whether `key` has a real publisher here (not a relay): "owned" in cluster terms.
    pub fn is_owned(&self, key: &StreamKey) -> bool {
        self.get(key).is_some_and(|s| s.is_owned())
    }

    /// Number of entries (published or not).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> Vec<StreamStats> {
        let streams: Vec<Arc<Stream>> = self.map().values().map(|e| e.stream.clone()).collect();
        let mut out: Vec<StreamStats> = streams.iter().map(|s| s.stats()).collect();
        out.sort_by(|a, b| (&a.vhost, &a.app, &a.stream).cmp(&(&b.vhost, &b.app, &b.stream)));
        out
    }

    /// Numbers of published streams and of players.
    pub fn counts(&self) -> (usize, usize) {
        let streams: Vec<Arc<Stream>> = self.map().values().map(|e| e.stream.clone()).collect();
        let published = streams.iter().filter(|s| s.is_published()).count();
        let players = streams.iter().map(|s| s.players()).sum();
        (published, players)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn info(id: u64) -> PublisherInfo {
        PublisherInfo {
            id,
            addr: None,
            since: Instant::now(),
            upstream: None,
        }
    }

    #[test]
    fn entries_live_as_long_as_their_holds() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let player = r.play(&key, PlayConfig::default());
        // A concurrent lookup holding the stream does not keep the entry alive.
        let looked_up = r.get(&key).unwrap();
        assert_eq!(r.len(), 1, "a waiting player keeps it");
        drop(player);
        assert!(r.get(&key).is_none(), "released with the last hold");
        drop(looked_up);
        let p = r.publish(&key, info(1)).unwrap();
        assert!(r.is_published(&key));
        assert!(
            r.publish(&key, info(2)).is_err(),
            "one publisher per stream"
        );
        assert_eq!(r.counts(), (1, 0));
        drop(p);
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn a_publish_wakes_the_plays_watching_its_name_and_creates_no_stream_before() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let other = StreamKey::new("v", "live", "other");
        let a = r.watch_publish(&key);
        let b = r.watch_publish(&key);
        let c = r.watch_publish(&other);
        assert!(r.is_empty(), "watching creates no stream");
        assert_eq!(r.waiting_counts(), (2, 3));
        let p = {
            let (wa, wb, wc) = (a.published(), b.published(), c.published());
            tokio::pin!(wa, wb, wc);
            wa.as_mut().enable();
            wb.as_mut().enable();
            wc.as_mut().enable();
            let p = r.publish(&key, info(1)).unwrap();
            wa.await;
            wb.await;
            assert!(
                futures::poll!(wc).is_pending(),
                "another name's watch stays asleep"
            );
            p
        };
        drop((a, b));
        assert_eq!(r.waiting_counts(), (1, 1));
        drop(c);
        assert_eq!(r.waiting_counts(), (0, 0));
        drop(p);
    }

    #[test]
    fn a_refused_publish_leaves_nothing_behind() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let p = r.publish(&key, info(1)).unwrap();
        assert!(r.publish(&key, info(2)).is_err());
        drop(p);
        assert!(r.is_empty());
    }
}
