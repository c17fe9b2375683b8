//! Coworker delivery: one task per cluster that PUTs the current document to every listed pod.
//!
//! The reconcile hands it a [`Plan`] (revision, one target per pod, token) and later reads its
//! [`Progress`]; it never waits for a push. Inside the task every pod is independent: pushes
//! run concurrently, a pod that fails is retried with its own exponential backoff while the
//! others are done, a newer revision cancels whatever is still in flight for an older one,
//! and every `resync` every pod gets the document again (heals restarted pods). A result that
//! changes the progress (a new acknowledgement, a pod's first failure, a pod ahead of us)
//! calls `notify` so the controller records status soon after; repeated failures do not.
//!
//! The task lives as long as its [`Delivery`] handle: dropping the handle aborts it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::build::secret::Token;
use crate::metrics::Metrics;
use crate::push::{PushOutcome, PushTarget, Pusher};

/// What to deliver.
#[derive(Debug, Clone)]
pub struct Plan {
    pub revision: u64,
    pub targets: Vec<PushTarget>,
    pub token: Token,
}

impl Plan {
    fn same_as(&self, other: &Plan) -> bool {
        self.revision == other.revision
            && self.token.expose() == other.token.expose()
            && self.targets == other.targets
    }
}

/// What the task has achieved so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// pod → (address, revision it acknowledged).
    pub acked: BTreeMap<String, (String, u64)>,
    /// pod → outcome of its last failed attempt at the current revision.
    pub failed: BTreeMap<String, PushOutcome>,
    /// Highest revision a pod reported above ours (the operator lost its state).
    pub seen_newer: u64,
}

/// Retry and resync timing.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// First retry delay of a pod that did not acknowledge; doubled per failure.
    pub retry_base: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// Every pod gets the document again this often.
    pub resync: Duration,
    /// Who pushes (the operator's pod name), on every push's log line, so that two
    /// replicas' pushes can be told apart.
    pub identity: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_millis(250),
            retry_max: Duration::from_secs(10),
            resync: Duration::from_secs(60),
            identity: String::new(),
        }
    }
}

/// Handle of one cluster's delivery task; dropping it stops the task.
pub struct Delivery {
    plan: watch::Sender<Option<Arc<Plan>>>,
    progress: Arc<Mutex<Progress>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Delivery {
    /// Starts the task (idle until the first plan).
    pub fn spawn(
        pusher: Pusher,
        metrics: Arc<Metrics>,
        cfg: DeliveryConfig,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = watch::channel(None);
        let progress = Arc::new(Mutex::new(Progress::default()));
        let task = tokio::spawn(run(
            rx,
            progress.clone(),
            pusher,
            metrics,
            cfg,
            Box::new(notify),
        ));
        Self {
            plan: tx,
            progress,
            task,
        }
    }

    /// Replaces the plan (a no-op when nothing changed).
    pub fn submit(&self, plan: Plan) {
        self.plan.send_if_modified(|cur| match cur {
            Some(c) if c.same_as(&plan) => false,
            _ => {
                *cur = Some(Arc::new(plan));
                true
            }
        });
    }

    pub fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }
}

type PushFuture = Pin<Box<dyn Future<Output = (PushTarget, PushOutcome)> + Send>>;

#[derive(Debug, Default)]
struct PodState {
    due: Option<Instant>,
    failures: u32,
    in_flight: bool,
}

fn backoff(cfg: &DeliveryConfig, failures: u32) -> Duration {
    crate::controller::backoff(cfg.retry_base, cfg.retry_max, failures)
}

async fn run(
    mut rx: watch::Receiver<Option<Arc<Plan>>>,
    progress: Arc<Mutex<Progress>>,
    pusher: Pusher,
    metrics: Arc<Metrics>,
    cfg: DeliveryConfig,
    notify: Box<dyn Fn() + Send + Sync>,
) {
    let mut plan: Option<Arc<Plan>> = None;
    // When the current revision arrived (for the delivery latency metric).
    let mut revision_since = Instant::now();
    let mut in_flight: FuturesUnordered<PushFuture> = FuturesUnordered::new();
    let mut pods: HashMap<String, PodState> = HashMap::new();
    let mut resync_at = Instant::now() + cfg.resync;
    loop {
        let next_due = pods
            .values()
            .filter(|p| !p.in_flight)
            .filter_map(|p| p.due)
            .min();
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return; // the handle is gone
                }
                let Some(new) = rx.borrow_and_update().clone() else { continue };
                let new_revision = plan.as_ref().is_none_or(|p| p.revision != new.revision);
                if new_revision {
                    revision_since = Instant::now();
                }
                // Whatever is in flight pushes an older plan: cancel it.
                in_flight = FuturesUnordered::new();
                let now = Instant::now();
                let acked = lock(&progress).acked.clone();
                let mut next: HashMap<String, PodState> = HashMap::new();
                for t in &new.targets {
                    let current = acked.get(&t.pod) == Some(&(t.addr.clone(), new.revision));
                    let failures = if new_revision {
                        0
                    } else {
                        pods.get(&t.pod).map_or(0, |p| p.failures)
                    };
                    next.insert(
                        t.pod.clone(),
                        PodState { due: (!current).then_some(now), failures, in_flight: false },
                    );
                }
                pods = next;
                {
                    let mut p = lock(&progress);
                    p.acked.retain(|pod, _| pods.contains_key(pod));
                    if new_revision {
                        p.failed.clear();
                    } else {
                        p.failed.retain(|pod, _| pods.contains_key(pod));
                    }
                }
                plan = Some(new);
            }
            Some((t, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                metrics.push(outcome.label());
                let Some(st) = pods.get_mut(&t.pod) else { continue };
                st.in_flight = false;
                // Only news asks for a reconcile (a pod that fails again is not news).
                let mut changed = false;
                let mut p = lock(&progress);
                match &outcome {
                    PushOutcome::AlreadyCurrent { current } if *current > t.doc.revision => {
                        // The pod is ahead of us: the reconcile goes above it.
                        changed |= *current > p.seen_newer;
                        p.seen_newer = p.seen_newer.max(*current);
                        st.failures = st.failures.saturating_add(1);
                        st.due = Some(Instant::now() + backoff(&cfg, st.failures));
                        changed |= p.failed.insert(t.pod.clone(), outcome.clone()).is_none();
                    }
                    o if o.acknowledged() => {
                        tracing::info!(identity = %cfg.identity, pod = %t.pod, addr = %t.addr, revision = t.doc.revision, "coworker list pushed");
                        st.failures = 0;
                        st.due = None;
                        p.failed.remove(&t.pod);
                        let ack = (t.addr.clone(), t.doc.revision);
                        let news = p.acked.insert(t.pod.clone(), ack.clone()) != Some(ack);
                        if news {
                            metrics.delivery_latency.observe(revision_since.elapsed().as_secs_f64());
                        }
                        changed |= news;
                    }
                    _ => {
                        st.failures = st.failures.saturating_add(1);
                        let delay = backoff(&cfg, st.failures);
                        st.due = Some(Instant::now() + delay);
                        tracing::debug!(pod = %t.pod, addr = %t.addr, revision = t.doc.revision, outcome = outcome.label(), retry_in_ms = delay.as_millis() as u64, "coworker push not acknowledged");
                        let prev = p.failed.insert(t.pod.clone(), outcome.clone());
                        changed |= prev.is_none_or(|o| o.label() != outcome.label());
                    }
                }
                drop(p);
                if changed {
                    notify();
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let Some(plan) = plan.as_ref() else { continue };
                let now = Instant::now();
                for t in &plan.targets {
                    let Some(st) = pods.get_mut(&t.pod) else { continue };
                    if st.in_flight || st.due.is_none_or(|d| d > now) {
                        continue;
                    }
                    st.in_flight = true;
                    st.due = None;
                    let pusher = pusher.clone();
                    let token = plan.token.clone();
                    let t = t.clone();
                    in_flight.push(Box::pin(async move {
                        let o = pusher.push_one(&t, &token).await;
                        (t, o)
                    }));
                }
            }
            _ = tokio::time::sleep_until(resync_at) => {
                resync_at = Instant::now() + cfg.resync;
                let now = Instant::now();
                for st in pods.values_mut().filter(|s| !s.in_flight) {
                    st.due = Some(st.due.map_or(now, |d| d.min(now)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::PushConfig;
    use origin_test_support::FakeOrigin;
    use origin_wire::coworkers::CoworkerDocument;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn target(pod: &str, addr: &str, rev: u64) -> PushTarget {
        PushTarget {
            pod: pod.into(),
            addr: addr.into(),
            doc: CoworkerDocument::new(rev, vec![addr.to_string()], None),
        }
    }

    async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = std::time::Instant::now();
        while !f() {
            assert!(t0.elapsed() < limit, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A pod that accepts and never answers, counting connections.
    async fn hole() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = hole.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hole.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        (addr, accepted, task)
    }

    fn delivery(timeout: Duration, notified: Arc<AtomicUsize>) -> Delivery {
        Delivery::spawn(
            Pusher::new(PushConfig {
                timeout,
                attempts: 2,
                backoff: Duration::from_millis(50),
                concurrency: 8,
            }),
            Arc::new(Metrics::new()),
            DeliveryConfig {
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_secs(1),
                resync: Duration::from_secs(60),
                ..DeliveryConfig::default()
            },
            move || {
                notified.fetch_add(1, Ordering::SeqCst);
            },
        )
    }

    fn plan(rev: u64, targets: &[(&str, &str)]) -> Plan {
        Plan {
            revision: rev,
            targets: targets
                .iter()
                .map(|(pod, addr)| target(pod, addr, rev))
                .collect(),
            token: Token::new("tok"),
        }
    }

    #[tokio::test]
    async fn newer_revision_cancels_the_older_round_and_holes_do_not_block() {
        let (hole_addr, accepted, _hole) = hole().await;
        let good = FakeOrigin::start("tok").await.expect("origin");
        // Each attempt on the hole lasts 10 s: revision 1's round cannot end, nor its second
        // attempt connect, before `submitted + 10 s`.
        let d = delivery(Duration::from_secs(10), Arc::new(AtomicUsize::new(0)));
        let targets = [("hole", hole_addr.as_str()), ("good", good.addr.as_str())];
        let submitted = std::time::Instant::now();
        d.submit(plan(1, &targets));
        until(Duration::from_secs(9), "good pod at 1", || {
            good.revision() == 1
        })
        .await;
        until(Duration::from_secs(9), "hole connected", || {
            accepted.load(Ordering::SeqCst) == 1
        })
        .await;
        // Revision 2 while the hole still holds revision 1's first attempt: the old push is
        // dropped and revision 2 goes out to both before the old round could have ended.
        d.submit(plan(2, &targets));
        let left = Duration::from_secs(9).saturating_sub(submitted.elapsed());
        until(left, "good pod at 2 before the old round ended", || {
            good.revision() == 2
        })
        .await;
        let left = Duration::from_secs(9).saturating_sub(submitted.elapsed());
        until(
            left,
            "the hole gets revision 2 before the old round ended",
            || accepted.load(Ordering::SeqCst) >= 2,
        )
        .await;
        until(Duration::from_secs(15), "ack recorded", || {
            d.progress().acked.get("good") == Some(&(good.addr.clone(), 2))
        })
        .await;
        // The same plan again is not news: nothing is re-pushed.
        let puts = good.puts();
        d.submit(plan(2, &targets));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(good.puts(), puts);
    }

    #[tokio::test]
    async fn holes_are_retried_in_the_background_until_the_handle_drops() {
        let (hole_addr, accepted, _hole) = hole().await;
        let notified = Arc::new(AtomicUsize::new(0));
        let d = delivery(Duration::from_secs(1), notified.clone());
        d.submit(plan(1, &[("hole", hole_addr.as_str())]));
        // The hole fails after its attempts and is retried in the background; its repeated
        // failures do not ask for reconciles each time.
        until(Duration::from_secs(20), "hole failure recorded", || {
            d.progress().failed.contains_key("hole")
        })
        .await;
        let after_first_failure = notified.load(Ordering::SeqCst);
        let conns = accepted.load(Ordering::SeqCst);
        until(Duration::from_secs(30), "hole retried", || {
            accepted.load(Ordering::SeqCst) > conns + 2
        })
        .await;
        assert_eq!(notified.load(Ordering::SeqCst), after_first_failure);
        assert!(!d.progress().acked.contains_key("hole"));
        // Dropping the handle stops the task: no more connections.
        drop(d);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped = accepted.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), stopped);
    }
}
