//! The operator's coworker delivery against REAL origin processes on loopback: the operator's
//! controller loop runs against the in-memory API server (tower-test mock service) and the
//! EndpointSlice changes are scripted watch events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use origin_operator::build::secret::{self, Token};
use origin_operator::controller::{self, Context, Settings};
use origin_operator::metrics::Metrics;
use origin_operator::push::{PushConfig, PushOutcome, PushTarget, Pusher};
use origin_operator::testing::{
    FakeApiServer, OriginProcess, endpoint_slice, fetch_coworkers, free_port, loopback_cluster,
};
use origin_wire::coworkers::CoworkerDocument;

const NS: &str = "media";
const NAME: &str = "live";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/media/endpointslices";

struct Harness {
    fake: FakeApiServer,
    ctx: Arc<Context>,
    origins: Vec<OriginProcess>,
    ips: Vec<String>,
    api_port: u16,
    token: Token,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runner: Option<tokio::task::JoinHandle<()>>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Harness {
    async fn start(n: usize, subnet: u8) -> Harness {
        let bin = origin_cluster_tests::bin_path("origin");
        let dir =
            std::env::temp_dir().join(format!("operator-push-{}-{subnet}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (api_port, rtmp_port, flv_port) = (
            free_port().expect("port"),
            free_port().expect("port"),
            free_port().expect("port"),
        );
        let oc = loopback_cluster(NAME, NS, "uid-live", n, rtmp_port, api_port, flv_port);

        let fake = FakeApiServer::new();
        let (client, _task) = fake.client();
        let token = Token::generate();
        fake.put(
            "/api/v1/namespaces/media/secrets",
            serde_json::to_value(secret::build(&oc, &token)).expect("secret json"),
        );
        let token_file = dir.join("token");
        std::fs::write(&token_file, token.expose()).expect("token file");

        let ips: Vec<String> = (0..n)
            .map(|i| format!("127.0.{subnet}.{}", i + 1))
            .collect();
        let mut origins = Vec::new();
        for ip in &ips {
            origins.push(
                OriginProcess::start(
                    &bin,
                    format!("{ip}:{api_port}"),
                    format!("{ip}:{rtmp_port}"),
                    format!("{ip}:{flv_port}"),
                    &token_file,
                )
                .await
                .expect("origin starts"),
            );
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
            timeout: Duration::from_millis(300),
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
            ips,
            api_port,
            token,
            stop: Some(stop),
            runner: Some(runner),
            _dir: TempDir(dir),
        }
    }

    /// One slice listing the origins whose flag is true.
    fn set_slice(&self, ready: &[bool]) {
        let pods: Vec<String> = (0..self.ips.len()).map(|i| format!("{NAME}-{i}")).collect();
        let eps: Vec<(&str, &str, bool)> = pods
            .iter()
            .zip(&self.ips)
            .zip(ready)
            .map(|((p, ip), r)| (p.as_str(), ip.as_str(), *r))
            .collect();
        self.fake.put(
            SLICES,
            endpoint_slice(NAME, NS, "live-peers-x1", self.api_port, &eps),
        );
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{}", self.ips[i], self.api_port)
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
                t0.elapsed() < Duration::from_secs(5),
                "operator never reached revision {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(r) = self.runner.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        for o in &mut self.origins {
            o.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_change_reaches_every_origin() {
    let h = Harness::start(4, 21).await;
    h.set_slice(&[true, true, true, true]);
    let rev = h.operator_revision(1).await;
    for i in 0..4 {
        let doc = h.wait_for(i, rev, Duration::from_secs(3)).await;
        assert_eq!(doc["coworkers"].as_array().map(Vec::len), Some(4), "{doc}");
        assert_eq!(doc["source"], "api", "{doc}");
    }
    // A scale-down-like change: origin 3 leaves the list.
    let t0 = Instant::now();
    h.set_slice(&[true, true, true, false]);
    let rev2 = h.operator_revision(rev + 1).await;
    for i in 0..3 {
        let doc = h.wait_for(i, rev2, Duration::from_secs(2)).await;
        let list: Vec<String> = doc["coworkers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        assert_eq!(list.len(), 3, "{doc}");
        assert!(!list.contains(&h.addr(3)));
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "slice change took {took:?} to reach every origin"
    );
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
        h.wait_for(i, rev, Duration::from_secs(3)).await;
    }
    // Origin 2 is down (its endpoint still listed: Kubernetes has not noticed yet).
    h.origins[2].stop().await;
    h.set_slice(&[true, false, true]);
    let rev2 = h.operator_revision(rev + 1).await;
    h.wait_for(0, rev2, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.origins[2].restart().await.expect("origin restarts");
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
            t0.elapsed() < Duration::from_secs(5),
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
    h.wait_for(0, rev2, Duration::from_secs(3)).await;

    // A late push of the older revision (e.g. a delayed retry): raw HTTP sees 409 ...
    let old = CoworkerDocument::new(rev, [h.addr(0), h.addr(1)], None);
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
