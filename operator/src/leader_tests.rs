//! Leader election against the in-memory API server, which honours resourceVersion on
//! replace (409 on a stale PUT) like the real one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};

use origin_test_support::FakeApiServer;
use serde_json::json;
use tower::Service;

use super::*;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn timing(ms: u64) -> LeaderTiming {
    LeaderTiming {
        lease_duration: Duration::from_millis(ms),
        renew_deadline: Duration::from_millis(ms / 2),
        retry_period: Duration::from_millis(ms / 8),
    }
}

#[tokio::test]
async fn one_holder_and_takeover_after_it_stops_renewing() {
    let fake = FakeApiServer::new();
    let (client, _t) = fake.client();
    let api: Api<Lease> = Api::namespaced(client, "ops");
    let t = timing(1000);
    let a = LeaderElector::with_timing(api.clone(), "origin-operator", "a", t);
    let b = LeaderElector::with_timing(api.clone(), "origin-operator", "b", t);
    assert!(a.try_acquire_or_renew().await.expect("a"));
    assert!(
        !b.try_acquire_or_renew().await.expect("b"),
        "a holds a fresh lease"
    );
    // a keeps renewing: b never gets it, however slowly the rounds go. `seen` is taken just
    // before b's last look at a's last renewal: b's lease clock starts after it.
    let mut seen = Instant::now();
    for _ in 0..12 {
        assert!(a.try_acquire_or_renew().await.expect("a renews"));
        seen = Instant::now();
        assert!(!b.try_acquire_or_renew().await.expect("b"));
        tokio::time::sleep(Duration::from_millis(75)).await;
    }
    // a stops: b takes over only after a full lease duration (1 s) without a change.
    while !b.try_acquire_or_renew().await.expect("b") {
        assert!(
            seen.elapsed() < Duration::from_secs(20),
            "b never took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.elapsed() >= Duration::from_secs(1),
        "took over after {:?}, before the lease expired",
        seen.elapsed()
    );
    let spec = api
        .get("origin-operator")
        .await
        .expect("lease")
        .spec
        .expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(!a.try_acquire_or_renew().await.expect("a"), "a lost it");
    // b releases on shutdown: a gets it at once.
    b.release().await.expect("release");
    assert!(a.try_acquire_or_renew().await.expect("a after release"));
    for r in fake.requests() {
        let (g, res, verb) =
            crate::rbac::request_attributes(&r.method, &r.path, &r.query).expect("attrs");
        assert!(crate::rbac::allows(&g, &res, &verb), "{verb} {g}/{res}");
    }
}

#[tokio::test]
async fn a_holders_wall_clock_does_not_matter() {
    // The holder's clock is years behind: its renewTime looks ancient, but the record keeps
    // changing, so the lease is live.
    let fake = FakeApiServer::new();
    let (client, _t) = fake.client();
    let api: Api<Lease> = Api::namespaced(client, "ops");
    let b = LeaderElector::with_timing(api, "origin-operator", "b", timing(400));
    let skewed = |n: i64| {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "origin-operator", "namespace": "ops"},
            "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 1,
                     "renewTime": format!("2001-01-01T00:00:{:02}.000000Z", n % 60)}
        })
    };
    // `seen` is taken just before b's last look at the last record: b's clock starts after.
    let mut seen = Instant::now();
    for n in 0..20 {
        fake.put(LEASES, skewed(n));
        seen = Instant::now();
        assert!(
            !b.try_acquire_or_renew().await.expect("b"),
            "took a live lease at step {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The holder stops (its last record stays): b waits a lease duration (1 s, from the
    // record), then takes it.
    while !b.try_acquire_or_renew().await.expect("b") {
        assert!(
            seen.elapsed() < Duration::from_secs(20),
            "b never took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.elapsed() >= Duration::from_secs(1),
        "{:?}",
        seen.elapsed()
    );
}

/// A transport that can be cut: requests then hang (and time out in the client).
#[derive(Clone)]
struct Cut<S> {
    inner: S,
    cut: Arc<AtomicBool>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, Req> Service<Req> for Cut<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if self.cut.load(Ordering::SeqCst) {
            return Box::pin(futures::future::pending());
        }
        let f = self.inner.call(req);
        Box::pin(async move { f.await.map_err(Into::into) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_candidates_never_both_lead() {
    let fake = FakeApiServer::new();
    // Lease 4 s, renew deadline 2 s, retry 500 ms: a leader keeps renewing on a loaded
    // machine; a cut one is replaced within a lease duration.
    let t = timing(4000);
    let mut tasks = Vec::new();
    let mut flags = Vec::new();
    let mut cuts = Vec::new();
    let terms = Arc::new(AtomicU32::new(0));
    for id in ["a", "b"] {
        let cut = Arc::new(AtomicBool::new(false));
        let c2 = cut.clone();
        let (client, _task) = fake.client_with(move |svc| {
            crate::apiclient::client_over(
                Cut {
                    inner: svc,
                    cut: c2,
                },
                "default",
                Duration::from_millis(1000),
            )
        });
        let e = Arc::new(LeaderElector::with_timing(
            Api::namespaced(client, "ops"),
            "origin-operator",
            id,
            t,
        ));
        let flag = Arc::new(AtomicBool::new(false));
        let (f2, terms) = (flag.clone(), terms.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                e.acquire().await;
                f2.store(true, Ordering::SeqCst);
                terms.fetch_add(1, Ordering::SeqCst);
                e.keep().await;
                f2.store(false, Ordering::SeqCst);
            }
        }));
        flags.push(flag);
        cuts.push(cut);
    }
    let both = Arc::new(AtomicU32::new(0));
    let monitor = {
        let (flags, both) = (flags.clone(), both.clone());
        tokio::spawn(async move {
            loop {
                if flags.iter().all(|f| f.load(Ordering::SeqCst)) {
                    both.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
    };
    let leader = |flags: &[Arc<AtomicBool>]| flags.iter().position(|f| f.load(Ordering::SeqCst));
    let wait_leader = |not: Option<usize>| {
        let flags = flags.clone();
        async move {
            let t0 = Instant::now();
            loop {
                if let Some(l) = leader(&flags)
                    && Some(l) != not
                {
                    return l;
                }
                assert!(t0.elapsed() < Duration::from_secs(30), "no new leader");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // Three rounds: cut the leader off the API server, the other one takes over.
    let mut current = wait_leader(None).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            leader(&flags),
            Some(current),
            "the leader stays while it renews"
        );
        cuts[current].store(true, Ordering::SeqCst);
        let next = wait_leader(Some(current)).await;
        cuts[current].store(false, Ordering::SeqCst);
        current = next;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        leader(&flags),
        Some(current),
        "the reconnected one does not take it back"
    );
    monitor.abort();
    for t in tasks {
        t.abort();
    }
    assert_eq!(both.load(Ordering::SeqCst), 0, "two leaders at once");
    assert!(
        terms.load(Ordering::SeqCst) >= 4,
        "{} terms",
        terms.load(Ordering::SeqCst)
    );
    // Only one write can win each round: the fake refused stale replaces with 409.
    let stale = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/leases/"))
        .count();
    assert!(stale > 0);
}
