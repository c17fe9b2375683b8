//! Reconcile requests from the delivery tasks, coalesced per cluster.
//!
//! A delivery task asks for a reconcile whenever its progress changes. The requests wait in
//! a set, at most one per cluster, so the queue is bounded by the number of clusters however
//! often the tasks ask: a request for a cluster that already has one pending is covered by
//! that one (the pass it triggers reads the latest progress anyway).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

struct Pending<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
}

struct Shared<K> {
    pending: Mutex<Pending<K>>,
    wake: Notify,
}

/// The sending side; cheap to clone.
pub struct Triggers<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Triggers<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash> Default for Triggers<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> Triggers<K> {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending {
                    order: VecDeque::new(),
                    queued: HashSet::new(),
                }),
                wake: Notify::new(),
            }),
        }
    }

    /// Asks for a reconcile of `key`. Returns false when one was already pending (this
    /// request is covered by it).
    pub fn request(&self, key: K) -> bool {
        let added = {
            let mut p = self.lock();
            let added = p.queued.insert(key.clone());
            if added {
                p.order.push_back(key);
            }
            added
        };
        if added {
            // Stores a permit when the receiver is not waiting, so no wake-up is lost.
            self.shared.wake.notify_one();
        }
        added
    }

    /// Requests waiting to be taken.
    pub fn pending(&self) -> usize {
        self.lock().order.len()
    }

    fn take(&self) -> Option<K> {
        let mut p = self.lock();
        let key = p.order.pop_front()?;
        p.queued.remove(&key);
        Some(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending<K>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The requests as a stream, oldest first; a key is pending again as soon as it has
    /// been yielded. The stream never ends.
    pub fn stream(self) -> impl futures::Stream<Item = K> + Send + 'static
    where
        K: Send + 'static,
    {
        futures::stream::unfold(self, |t| async move {
            loop {
                if let Some(k) = t.take() {
                    return Some((k, t));
                }
                t.shared.wake.notified().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    async fn next<K: Clone + Eq + Hash + Send + 'static>(
        s: &mut (impl futures::Stream<Item = K> + Unpin),
    ) -> K {
        tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a request arrives")
            .expect("the stream does not end")
    }

    #[tokio::test]
    async fn repeated_requests_for_one_cluster_coalesce() {
        let t = Triggers::new();
        assert!(t.request("media/live"));
        for _ in 0..10_000 {
            assert!(!t.request("media/live"), "covered by the pending one");
        }
        assert!(t.request("media/other"));
        assert_eq!(t.pending(), 2, "bounded by the number of clusters");
        let mut s = Box::pin(t.clone().stream());
        assert_eq!(next(&mut s).await, "media/live");
        assert_eq!(next(&mut s).await, "media/other");
        assert_eq!(t.pending(), 0);
        // Once yielded, a cluster can be asked for again.
        assert!(t.request("media/live"));
        assert_eq!(next(&mut s).await, "media/live");
    }

    #[tokio::test]
    async fn a_waiting_stream_wakes_on_a_request() {
        let t = Triggers::new();
        let mut s = Box::pin(t.clone().stream());
        let waiter = tokio::spawn(async move { next(&mut s).await });
        tokio::task::yield_now().await;
        let sender = t.clone();
        std::thread::spawn(move || sender.request(7u32))
            .join()
            .expect("request from another thread");
        assert_eq!(waiter.await.expect("join"), 7);
    }
}
