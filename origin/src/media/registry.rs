//! All streams of one origin, keyed by `vhost/app/stream`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::stream::{MediaConfig, Stream, StreamKey, StreamStats};

/// Streams exist while they have a publisher or players; idle ones are reaped.
pub struct Registry {
    config: MediaConfig,
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
}

impl Registry {
    pub fn new(config: MediaConfig) -> Self {
        Self {
            config,
            streams: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<StreamKey, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream, created empty (no publisher) if needed.
    pub fn get_or_create(&self, key: &StreamKey) -> Arc<Stream> {
        self.map()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Stream::new(key.clone(), self.config)))
            .clone()
    }

    pub fn get(&self, key: &StreamKey) -> Option<Arc<Stream>> {
        self.map().get(key).cloned()
    }

    /// Whether `key` has an active publisher here ("owned" in cluster terms).
    pub fn is_published(&self, key: &StreamKey) -> bool {
        self.get(key).is_some_and(|s| s.is_published())
    }

    /// Drops `key` if nobody publishes or plays it. Call after a publisher or player leaves.
    pub fn reap(&self, key: &StreamKey) {
        let mut map = self.map();
        if let Some(s) = map.get(key) {
            // Strong count 1 = only the map holds it: no player or publisher handle left.
            if !s.is_published() && s.players() == 0 && Arc::strong_count(s) == 1 {
                map.remove(key);
            }
        }
    }

    pub fn stats(&self) -> Vec<StreamStats> {
        let streams: Vec<Arc<Stream>> = self.map().values().cloned().collect();
        let mut out: Vec<StreamStats> = streams.iter().map(|s| s.stats()).collect();
        out.sort_by(|a, b| (&a.vhost, &a.app, &a.stream).cmp(&(&b.vhost, &b.app, &b.stream)));
        out
    }

    /// Numbers of published streams and of players.
    pub fn counts(&self) -> (usize, usize) {
        let map = self.map();
        let published = map.values().filter(|s| s.is_published()).count();
        let players = map.values().map(|s| s.players()).sum();
        (published, players)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::stream::PublisherInfo;
    use std::time::Instant;

    #[test]
    fn reaps_only_idle_streams() {
        let r = Registry::new(MediaConfig::default());
        let key = StreamKey::new("v", "live", "s");
        let s = r.get_or_create(&key);
        let sub = s.subscribe();
        drop(s);
        r.reap(&key);
        assert!(r.get(&key).is_some(), "a player keeps it");
        drop(sub);
        r.reap(&key);
        assert!(r.get(&key).is_none());
        let s = r.get_or_create(&key);
        s.publish(PublisherInfo {
            id: 1,
            addr: None,
            since: Instant::now(),
        })
        .unwrap();
        drop(s);
        r.reap(&key);
        assert!(r.is_published(&key));
        assert_eq!(r.counts(), (1, 0));
    }
}
