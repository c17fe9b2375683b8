//! A publisher on its own OS thread (own current-thread runtime), so its real-time pacing
//! does not queue behind thousands of player tasks: publishes a clip in a loop with
//! continuous timestamps until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use origin::client::Client;
use origin::media::flv::Tag;

use crate::Clip;

pub struct Publisher {
    stop: Arc<AtomicBool>,
    /// Tags sent so far.
    pub sent: Arc<AtomicU64>,
    /// Set once Publish.Start was received.
    pub started: Arc<AtomicBool>,
    /// How late the thread woke up for a tag at worst (it was not scheduled), µs.
    pub max_wake_late_us: Arc<AtomicU64>,
    /// The longest a tag's write took (the server did not read), µs.
    pub max_write_us: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Publisher {
    /// Starts publishing `clip` to `url` (rtmp://host:port/app/stream) in real time.
    pub fn start(url: &str, clip: Arc<Clip>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let started = Arc::new(AtomicBool::new(false));
        let max_wake_late_us = Arc::new(AtomicU64::new(0));
        let max_write_us = Arc::new(AtomicU64::new(0));
        let (s, n, st, url) = (stop.clone(), sent.clone(), started.clone(), url.to_string());
        let (late, wrote) = (max_wake_late_us.clone(), max_write_us.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let mut c = Client::connect(&url).await.map_err(|e| e.to_string())?;
                c.publish(None).await.map_err(|e| e.to_string())?;
                st.store(true, Ordering::Relaxed);
                let t0 = tokio::time::Instant::now();
                let mut offset: u64 = 0;
                while !s.load(Ordering::Relaxed) {
                    for t in &clip.tags {
                        if s.load(Ordering::Relaxed) {
                            break;
                        }
                        let ts = offset + u64::from(t.timestamp);
                        let due = t0 + Duration::from_millis(ts);
                        tokio::time::sleep_until(due).await;
                        let woke = tokio::time::Instant::now();
                        late.fetch_max(
                            woke.saturating_duration_since(due).as_micros() as u64,
                            Ordering::Relaxed,
                        );
                        let tag = Tag {
                            tag_type: t.tag_type,
                            timestamp: ts as u32,
                            payload: t.payload.clone(),
                        };
                        c.publish_tags(std::slice::from_ref(&tag), false)
                            .await
                            .map_err(|e| e.to_string())?;
                        wrote.fetch_max(woke.elapsed().as_micros() as u64, Ordering::Relaxed);
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    offset += u64::from(clip.duration_ms);
                }
                let _ = c.close().await;
                Ok(())
            })
        });
        Self {
            stop,
            sent,
            started,
            max_wake_late_us,
            max_write_us,
            thread: Some(thread),
        }
    }

    /// Starts publishing to `url` and returns once the server accepted the publish and a
    /// whole GOP (2 s) went by, so the server's cache holds a keyframe. The error is the
    /// publisher's.
    pub async fn start_primed(url: &str, clip: Arc<Clip>) -> Result<Self, String> {
        let p = Self::start(url, clip);
        if !p.wait_started(Duration::from_secs(10)) {
            return Err(p
                .stop()
                .err()
                .unwrap_or_else(|| "not started in 10 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(p)
    }

    /// Waits until the server accepted the publish (or the thread failed).
    pub fn wait_started(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.started.load(Ordering::Relaxed) {
                return true;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Whether the publishing thread ended early (error).
    pub fn failed(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| t.is_finished())
    }

    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("publisher panicked".into()))
            })
            .unwrap_or(Ok(()))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
