//! The handle a publisher (an encoder's connection or a relay's upstream) holds while it
//! publishes a stream. Dropping it unpublishes and releases the registry entry, whatever
//! way the task that owned it ended.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::direct::Flush;
use super::registry::Hold;
use super::stream::{AlreadyPublished, PublisherInfo, Stream};

pub struct Publisher {
    id: u64,
    hold: Hold,
}

impl Publisher {
    pub(super) fn new(hold: Hold, info: PublisherInfo) -> Result<Self, AlreadyPublished> {
        let id = info.id;
        hold.stream().publish(info)?;
        crate::metrics::global().streams.inc();
        Ok(Self { id, hold })
    }

    pub fn stream(&self) -> &Arc<Stream> {
        self.hold.stream()
    }

    /// False once a real publisher has replaced this one (a relay being pre-empted).
    pub fn is_current(&self) -> bool {
        self.stream().is_publisher(self.id)
    }

    /// Caches and fans out one media or data message (timestamps continue across
    /// republishes, see [`Stream::push_message`]), then writes it through to players
    /// with [`flush_stepped`]; the instant to flush again by if frames are held back.
    pub async fn push(&self, type_id: u8, timestamp: u32, payload: Bytes) -> Option<Instant> {
        self.push_batched(type_id, timestamp, payload);
        flush_stepped(self).await
    }

    /// Like [`Publisher::push`], but players written through get it at the next flush
    /// ([`flush_stepped`]): a publisher that reads several messages at once writes them
    /// to each player in one go. True when so much is queued that the publisher should
    /// flush before it goes on.
    pub fn push_batched(&self, type_id: u8, timestamp: u32, payload: Bytes) -> bool {
        self.stream()
            .push_message(self.id, type_id, timestamp, payload)
    }

    /// Writes what was pushed since the last flush to up to
    /// [`super::direct::FLUSH_STEP`] players written through (see
    /// [`Stream::flush_direct_or_hold`]); audio may wait for the next video frame: on
    /// [`Flush::Held`], call again by the instant given. [`flush_stepped`] does it all.
    pub fn flush_or_hold(&self) -> Flush {
        self.stream().flush_direct_or_hold()
    }
}

/// Waits until the instant a [`Publisher::flush_or_hold`] returned in [`Flush::Held`],
/// when the publisher must flush (never, for None). For a `select!` branch.
pub async fn held_until(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Flushes what the publisher pushed, in steps with a yield between them (and one after
/// anything written, so others run before the next read); the instant to flush again by
/// if frames are held back.
pub async fn flush_stepped(publisher: &Publisher) -> Option<Instant> {
    loop {
        match publisher.flush_or_hold() {
            Flush::Partial => tokio::task::yield_now().await,
            Flush::Held(until) => return Some(until),
            Flush::Written => {
                tokio::task::yield_now().await;
                return None;
            }
            Flush::Idle => return None,
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // What is still queued for players written through goes back to their tasks
        // with the unpublish notice (nothing is written from here).
        if self.stream().unpublish(self.id) {
            crate::metrics::global().streams.dec();
            tracing::info!(stream = %self.stream().key, "unpublished");
        }
    }
}
