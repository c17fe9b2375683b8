//! The operator's coworker delivery against REAL origin processes on loopback: the operator's
//! controller loop runs against the in-memory API server (tower-test mock service) and the
//! EndpointSlice changes are scripted watch events.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use origin_operator::build::secret::{self, Token};
use origin_operator::controller::{self, Context, Settings};
use origin_operator::crd::{OriginCluster, OriginClusterSpec};
use origin_operator::metrics::Metrics;
use origin_operator::push::{PushConfig, PushOutcome, PushTarget, Pusher};
use origin_test_support::{
    FakeApiServer, OriginOpts, OriginProc, TempDir, endpoint_slice, fetch_coworkers,
};
use origin_wire::coworkers::CoworkerDocument;

const NS: &str = "media";
const NAME: &str = "live";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/media/endpointslices";

/// An OriginCluster as the tests drive the controller with (ports are per origin here: each
/// origin's slice carries its own kernel-assigned port).
fn loopback_cluster(replicas: usize) -> OriginCluster {
    let mut oc = OriginCluster::new(
        NAME,
        OriginClusterSpec {
            replicas: replicas as i32,
            image: "origin:test".into(),
            ..OriginClusterSpec::default()
        },
    );
    oc.metadata.namespace = Some(NS.into());
    oc.metadata.uid = Some("uid-live".into());
    oc
}

/// A listed address that accepts connections and never answers; counts the connections.
struct BlackHole {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start(ip: &str) -> BlackHole {
        let l = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s); // never answered
            }
        });
        BlackHole {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The push timeout when black holes are listed.
const HOLE_PUSH_TIMEOUT: Duration = Duration::from_secs(5);

struct Harness {
    fake: FakeApiServer,
    ctx: Arc<Context>,
    origins: Vec<OriginProc>,
    /// Extra listed endpoints that never answer.
    holes: Vec<BlackHole>,
    token: Token,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runner: Option<tokio::task::JoinHandle<()>>,
    _dir: TempDir,
}

impl Harness {
    async fn start(n: usize, subnet: u8) -> Harness {
        Self::start_with_holes(n, 0, subnet).await
    }

    async fn start_with_holes(n: usize, holes: usize, subnet: u8) -> Harness {
        let dir = TempDir::new("operator-push").expect("temp dir");
        let oc = loopback_cluster(n + holes);

        let fake = FakeApiServer::new();
        let (client, _task) = fake.client();
        let token = Token::generate();
        fake.put(
            "/api/v1/namespaces/media/secrets",
            serde_json::to_value(secret::build(&oc, &token)).expect("secret json"),
        );
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token.expose()).expect("token file");

        let opts = OriginOpts {
            token_file: Some(token_file),
            ..OriginOpts::default()
        };
        let origins: Vec<OriginProc> = tokio::task::block_in_place(|| {
            (0..n)
                .map(|i| OriginProc::start_at(&format!("127.0.{subnet}.{}", i + 1), &opts))
                .collect()
        });
        let mut hs = Vec::new();
        for i in 0..holes {
            hs.push(BlackHole::start(&format!("127.0.{subnet}.{}", 200 + i)).await);
        }
        fake.put(
            "/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters",
            serde_json::to_value(&oc).expect("cluster json"),
        );
        let settings = Settings {
            resync: Duration::from_secs(60),
            debounce: Duration::from_millis(50),
            push_backoff: Duration::from_millis(200),
            ..Settings::default()
        };
        let pusher = Pusher::new(PushConfig {
            // With black holes listed, a push attempt lasts long enough that a round which
            // waited for them would show, also on a loaded machine.
            timeout: if holes > 0 {
                HOLE_PUSH_TIMEOUT
            } else {
                Duration::from_millis(300)
            },
            attempts: 2,
            backoff: Duration::from_millis(30),
            concurrency: 64,
        });
        let ctx = Arc::new(Context::new(
            client,
            pusher,
            Arc::new(Metrics::new()),
            settings,
            None,
        ));
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn(controller::run(ctx.clone(), async move {
            let _ = stop_rx.await;
        }));
        Harness {
            fake,
            ctx,
            origins,
            holes: hs,
            token,
            stop: Some(stop),
            runner: Some(runner),
            _dir: dir,
        }
    }

    /// One slice per origin (its own port), ready as flagged; black holes always listed.
    fn set_slice(&self, ready: &[bool]) {
        for (i, (o, r)) in self.origins.iter().zip(ready).enumerate() {
            let pod = format!("{NAME}-{i}");
            self.fake.put(
                SLICES,
                endpoint_slice(
                    NAME,
                    NS,
                    &format!("live-peers-{i}"),
                    o.api,
                    &[(&pod, o.ip(), *r)],
                ),
            );
        }
        for (j, h) in self.holes.iter().enumerate() {
            let i = self.origins.len() + j;
            let pod = format!("{NAME}-{i}");
            let ip = h.addr.ip().to_string();
            self.fake.put(
                SLICES,
                endpoint_slice(
                    NAME,
                    NS,
                    &format!("live-peers-{i}"),
                    h.addr.port(),
                    &[(&pod, &ip, true)],
                ),
            );
        }
    }

    fn addr(&self, i: usize) -> String {
        self.origins[i].api_addr()
    }

    async fn revision(&self, i: usize) -> u64 {
        fetch_coworkers(&self.addr(i))
            .await
            .and_then(|v| v["revision"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until origin `i` serves revision ≥ `rev`; returns its document.
    async fn wait_for(&self, i: usize, rev: u64, limit: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(v) = fetch_coworkers(&self.addr(i)).await
                && v["revision"].as_u64().unwrap_or(0) >= rev
            {
                return v;
            }
            assert!(
                t0.elapsed() < limit,
                "origin {i} did not reach revision {rev} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn operator_revision(&self, at_least: u64) -> u64 {
        let t0 = Instant::now();
        loop {
            let r = self.ctx.revision(NS, NAME).unwrap_or(0);
            if r >= at_least {
                return r;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "operator never reached revision {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the controller loop: it must still be running, end on shutdown, and not have
    /// panicked.
    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            s.send(())
                .expect("the controller loop was still running before shutdown");
        }
        if let Some(r) = self.runner.take() {
            tokio::time::timeout(Duration::from_secs(10), r)
                .await
                .expect("the controller loop stops on shutdown")
                .expect("the controller loop did not panic");
        }
        self.origins.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_change_reaches_every_origin() {
    let h = Harness::start(4, 21).await;
    h.set_slice(&[true, true, true, true]);
    let rev = h.operator_revision(1).await;
    for i in 0..4 {
        let doc = h.wait_for(i, rev, Duration::from_secs(15)).await;
        assert_eq!(doc["coworkers"].as_array().map(Vec::len), Some(4), "{doc}");
        assert_eq!(doc["source"], "api", "{doc}");
    }
    // A scale-down-like change: origin 3 leaves the list.
    let t0 = Instant::now();
    h.set_slice(&[true, true, true, false]);
    let rev2 = h.operator_revision(rev + 1).await;
    for i in 0..3 {
        let doc = h.wait_for(i, rev2, Duration::from_secs(15)).await;
        let list: Vec<String> = doc["coworkers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        assert_eq!(list.len(), 3, "{doc}");
        assert!(!list.contains(&h.addr(3)));
    }
    // How fast is a bench number (operator/benches/convergence-bench.rs); here the watch,
    // not the 60 s resync, delivered it.
    eprintln!("slice change reached every origin in {:?}", t0.elapsed());
    // The ConfigMap holds the same document.
    let cm = h
        .fake
        .get("/api/v1/namespaces/media/configmaps/live-coworkers")
        .expect("configmap");
    let doc = CoworkerDocument::from_slice(
        cm["data"]["coworkers.json"]
            .as_str()
            .unwrap_or("")
            .as_bytes(),
    )
    .expect("document");
    assert_eq!(doc.revision, rev2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_that_was_down_gets_the_change_when_back() {
    let mut h = Harness::start(3, 22).await;
    h.set_slice(&[true, true, true]);
    let rev = h.operator_revision(1).await;
    for i in 0..3 {
        h.wait_for(i, rev, Duration::from_secs(15)).await;
    }
    // Origin 2 is down (its endpoint still listed: Kubernetes has not noticed yet).
    h.origins[2].kill();
    h.set_slice(&[true, false, true]);
    let rev2 = h.operator_revision(rev + 1).await;
    h.wait_for(0, rev2, Duration::from_secs(15)).await;
    // The push to it failed while it was down.
    let t0 = Instant::now();
    while !h
        .ctx
        .delivery_progress(NS, NAME)
        .is_some_and(|p| p.failed.contains_key("live-2"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no failed push to the origin that is down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| h.origins[2].restart()).expect("origin restarts");
    // Back with an empty list; the operator's retry delivers the current revision.
    let doc = h.wait_for(2, rev2, Duration::from_secs(15)).await;
    assert_eq!(doc["coworkers"].as_array().map(Vec::len), Some(2), "{doc}");
    let oc = h
        .fake
        .get("/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters/live")
        .expect("cluster");
    // Eventually the status says every serving pod has the newest revision.
    let t0 = Instant::now();
    let mut oc = oc;
    while oc["status"]["coworkers"]["pending"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "status still pending: {}",
            oc["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        oc = h
            .fake
            .get("/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters/live")
            .expect("cluster");
    }
    assert_eq!(oc["status"]["coworkers"]["revision"], rev2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_revision_pushed_late_is_refused_with_409() {
    let h = Harness::start(2, 23).await;
    h.set_slice(&[true, true]);
    let rev = h.operator_revision(1).await;
    h.set_slice(&[true, false]);
    let rev2 = h.operator_revision(rev + 1).await;
    h.wait_for(0, rev2, Duration::from_secs(15)).await;

    // A late push of the older revision (e.g. a delayed retry): raw HTTP sees 409 ...
    let old = CoworkerDocument::new(rev, [h.addr(0), h.addr(1)], None);
    let _ = &h.holes;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::put(format!("http://{}/api/v1/coworkers", h.addr(0)))
        .header("authorization", format!("Bearer {}", h.token.expose()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(old.to_json())))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    assert_eq!(resp.status().as_u16(), 409);
    // ... the operator's pusher counts it as acknowledged (the pod is newer) ...
    let pusher = Pusher::new(PushConfig::default());
    let out = pusher
        .push_one(
            &PushTarget {
                pod: "live-0".into(),
                addr: h.addr(0),
                doc: old,
            },
            &h.token,
        )
        .await;
    assert_eq!(out, PushOutcome::AlreadyCurrent { current: rev2 });
    // ... and the origin keeps the newer list.
    assert_eq!(h.revision(0).await, rev2);
    let doc = fetch_coworkers(&h.addr(0)).await.expect("document");
    assert_eq!(doc["coworkers"].as_array().map(Vec::len), Some(1), "{doc}");
    // Wrong token: 401, nothing applied.
    let newer = CoworkerDocument::new(rev2 + 10, [h.addr(0)], None);
    let out = pusher
        .push_one(
            &PushTarget {
                pod: "live-0".into(),
                addr: h.addr(0),
                doc: newer,
            },
            &Token::new("wrong"),
        )
        .await;
    assert_eq!(out, PushOutcome::Unauthorized);
    assert_eq!(h.revision(0).await, rev2);
    h.shutdown().await;
}

/// Issue 11: 10 real origins and 3 black-holed addresses in the slices. A change reaches
/// every reachable origin before a push to a black hole could have timed out; the black-holed ones do not hold anyone up and
/// are retried in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_pods_do_not_hold_up_the_others() {
    let h = Harness::start_with_holes(10, 3, 24).await;
    let all = vec![true; 10];
    h.set_slice(&all);
    let rev = h.operator_revision(1).await;
    for i in 0..10 {
        h.wait_for(i, rev, Duration::from_secs(15)).await;
    }
    // Four changes in a row, each while the black holes still hold pushes of the last one.
    let mut rev = rev;
    for round in 0..4 {
        let mut ready = all.clone();
        ready[9] = round % 2 == 1; // origin 9 leaves and comes back
        let t0 = Instant::now();
        h.set_slice(&ready);
        let next = h.operator_revision(rev + 1).await;
        for i in (0..10).filter(|&i| ready[i]) {
            h.wait_for(i, next, Duration::from_secs(15)).await;
        }
        // Waiting for the black holes would take a push timeout at least.
        let took = t0.elapsed();
        assert!(
            took < HOLE_PUSH_TIMEOUT,
            "round {round}: every reachable origin had revision {next} after {took:?}"
        );
        let doc = fetch_coworkers(&h.addr(0)).await.expect("document");
        let listed = 9 + usize::from(ready[9]) + 3;
        assert_eq!(
            doc["coworkers"].as_array().map(Vec::len),
            Some(listed),
            "{doc}"
        );
        rev = next;
    }
    // The black holes are retried in the background (new connections keep arriving) and show
    // up as pending, the reachable ones as acknowledged.
    let before: Vec<usize> = h.holes.iter().map(BlackHole::accepted).collect();
    let t0 = Instant::now();
    while h.holes.iter().zip(&before).any(|(b, n)| b.accepted() <= *n) {
        assert!(
            t0.elapsed() < HOLE_PUSH_TIMEOUT * 2 + Duration::from_secs(20),
            "black-holed pods not retried: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = Instant::now();
    loop {
        let oc = h
            .fake
            .get("/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters/live")
            .expect("cluster");
        let cw = &oc["status"]["coworkers"];
        let pending: Vec<&str> = cw["pending"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if cw["revision"] == rev && pending == ["live-10", "live-11", "live-12"] {
            assert_eq!(
                cw["acknowledged"].as_array().map(Vec::len),
                Some(10),
                "{cw}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "status: {cw}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Their failures are recorded per pod (after each attempt times out), while retries go on.
    let t0 = Instant::now();
    loop {
        let progress = h.ctx.delivery_progress(NS, NAME).expect("delivery task");
        let failed = ["live-10", "live-11", "live-12"]
            .iter()
            .all(|pod| matches!(progress.failed.get(*pod), Some(PushOutcome::Failed { .. })));
        if failed {
            assert_eq!(progress.acked.len(), 10, "{progress:?}");
            break;
        }
        assert!(
            t0.elapsed() < HOLE_PUSH_TIMEOUT * 2 + Duration::from_secs(20),
            "{progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;
}
