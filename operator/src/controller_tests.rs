//! Controller tests against the in-memory API server (tower-test mock service) and real HTTP
//! fake origins.

use super::*;
use crate::build::fixtures;
use crate::push::PushConfig;
use crate::push::{PushOutcome, PushTarget};
use origin_test_support::{FakeApiServer, FakeOrigin, Recorded, endpoint_slice};
use serde_json::Value;

const NS: &str = "media";
const CR_COLL: &str = "/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/media/endpointslices";

fn settings() -> Settings {
    Settings {
        resync: Duration::from_secs(60),
        debounce: Duration::from_millis(20),
        error_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
        push_backoff: Duration::from_millis(250),
        namespace: None,
    }
}

fn setup() -> (FakeApiServer, Arc<Context>) {
    let fake = FakeApiServer::new();
    let (client, _task) = fake.client();
    let pusher = Pusher::new(PushConfig {
        timeout: Duration::from_millis(300),
        attempts: 2,
        backoff: Duration::from_millis(20),
        concurrency: 64,
    });
    let ctx = Arc::new(Context::new(
        client,
        pusher,
        Arc::new(Metrics::new()),
        settings(),
        Some("test".into()),
    ));
    (fake, ctx)
}

/// Stores the cluster in the fake and returns it as the API server has it.
fn store(fake: &FakeApiServer, oc: &OriginCluster) -> OriginCluster {
    fake.put(CR_COLL, serde_json::to_value(oc).expect("json"));
    current(fake, oc)
}

fn current(fake: &FakeApiServer, oc: &OriginCluster) -> OriginCluster {
    let v = fake
        .get(&format!("{CR_COLL}/{}", oc.name_any()))
        .expect("cluster stored");
    serde_json::from_value(v).expect("cluster parses")
}

fn child_patches(reqs: &[Recorded]) -> BTreeMap<String, Value> {
    reqs.iter()
        .filter(|r| r.method == "PATCH" && !r.path.ends_with("/status"))
        .map(|r| (r.path.clone(), r.body.clone().unwrap_or(Value::Null)))
        .collect()
}

fn assert_rbac_covers(reqs: &[Recorded]) {
    for r in reqs {
        let (g, res, verb) = crate::rbac::request_attributes(&r.method, &r.path, &r.query)
            .expect("resource request");
        assert!(
            crate::rbac::allows(&g, &res, &verb),
            "RBAC rules do not allow {verb} {g}/{res} ({} {})",
            r.method,
            r.path
        );
    }
}

fn cond(oc: &OriginCluster, type_: &str) -> (String, String) {
    let st = oc.status.as_ref().expect("status");
    let c = status::condition(st, type_).unwrap_or_else(|| panic!("condition {type_}"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn create_applies_every_child_with_field_manager_and_owner() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::minimal());
    let uid = oc.uid().expect("uid");
    let action = reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));

    let reqs = fake.requests();
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(
            r.param("fieldManager").as_deref(),
            Some("origin-operator"),
            "{}",
            r.path
        );
        assert_eq!(r.param("force").as_deref(), Some("true"), "{}", r.path);
    }
    assert_rbac_covers(&reqs);

    let children = [
        "/apis/apps/v1/namespaces/media/statefulsets/live",
        "/api/v1/namespaces/media/services/live-peers",
        "/api/v1/namespaces/media/services/live-rtmp",
        "/api/v1/namespaces/media/configmaps/live-coworkers",
        "/api/v1/namespaces/media/secrets/live-admin-token",
        "/apis/policy/v1/namespaces/media/poddisruptionbudgets/live",
    ];
    for path in children {
        let obj = fake
            .get(path)
            .unwrap_or_else(|| panic!("{path} not created"));
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], uid.as_str(), "{path}");
        assert_eq!(owner["kind"], "OriginCluster", "{path}");
        assert_eq!(owner["controller"], true, "{path}");
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/instance"], "live",
            "{path}"
        );
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "origin-operator"
        );
    }
    // The Secret is created (never applied over) and holds a 64-hex token.
    let secret_post = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/secrets"))
        .expect("secret created");
    assert_eq!(
        secret_post.param("fieldManager").as_deref(),
        Some("origin-operator")
    );
    let cm = fake
        .get("/api/v1/namespaces/media/configmaps/live-coworkers")
        .expect("configmap");
    assert_eq!(
        cm["data"]["coworkers.json"],
        r#"{"revision":1,"coworkers":[],"advertise":null}"#
    );

    let oc = current(&fake, &oc);
    let st = oc.status.as_ref().expect("status");
    assert_eq!(
        st.selector.as_deref(),
        Some("app.kubernetes.io/instance=live,app.kubernetes.io/name=origin")
    );
    assert_eq!(st.observed_generation, oc.metadata.generation);
    assert_eq!(cond(&oc, status::DEGRADED).0, "False");
    assert_eq!(cond(&oc, status::READY).0, "False", "no pods yet");
    assert_eq!(
        cond(&oc, status::COWORKERS_SYNCED).0,
        "True",
        "empty list is trivially synced"
    );
    let events: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/apis/events.k8s.io/"))
        .filter_map(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["reason"].as_str().map(str::to_string))
        })
        .collect();
    assert!(
        events.contains(&"AdminTokenCreated".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"CoworkersUpdated".to_string()),
        "{events:?}"
    );

    // A second pass keeps the token and changes nothing.
    let token_before = fake
        .get("/api/v1/namespaces/media/secrets/live-admin-token")
        .expect("secret")["data"]
        .clone();
    fake.clear_requests();
    reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect("second pass");
    let token_after = fake
        .get("/api/v1/namespaces/media/secrets/live-admin-token")
        .expect("secret")["data"]
        .clone();
    assert_eq!(token_before, token_after);
    let reqs = fake.requests();
    assert!(
        !reqs
            .iter()
            .any(|r| r.path.ends_with("/secrets") && r.method == "POST")
    );
    assert!(
        !reqs.iter().any(|r| r.path.ends_with("/status")),
        "status unchanged: no write"
    );
}

#[tokio::test]
async fn scale_changes_only_statefulset_replicas() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::full());
    reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect("first pass");
    let first = child_patches(&fake.requests());

    fake.clear_requests();
    let mut scaled = current(&fake, &oc);
    scaled.spec.replicas = 2; // kubectl scale ocl/big --replicas=2 (from 5)
    let scaled = store(&fake, &scaled);
    reconcile(Arc::new(scaled), ctx.clone())
        .await
        .expect("scaled pass");
    let reqs = fake.requests();
    let second = child_patches(&reqs);

    let mut changed = Vec::new();
    for (path, body) in &second {
        match first.get(path) {
            Some(b) if b == body => {}
            Some(b) => changed.push((path.clone(), b.clone(), body.clone())),
            None => changed.push((path.clone(), Value::Null, body.clone())),
        }
    }
    assert_eq!(
        changed.len(),
        1,
        "only one child changes: {:?}",
        changed.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    let (path, mut before, after) = changed.remove(0);
    assert!(path.ends_with("/statefulsets/big"), "{path}");
    assert_eq!(after["spec"]["replicas"], 2);
    before["spec"]["replicas"] = Value::from(2);
    assert_eq!(before, after, "nothing but spec.replicas differs");
    // PerPodService: the Services of pods 2..4 are deleted, 0 and 1 kept.
    let deleted: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        deleted,
        [
            "/api/v1/namespaces/media/services/big-2",
            "/api/v1/namespaces/media/services/big-3",
            "/api/v1/namespaces/media/services/big-4"
        ]
    );
    assert!(
        fake.get("/api/v1/namespaces/media/services/big-1")
            .is_some()
    );
    let events: Vec<_> = reqs
        .iter()
        .filter_map(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["reason"].as_str().map(str::to_string))
        })
        .collect();
    assert!(events.contains(&"ScaledDown".to_string()), "{events:?}");
    assert_rbac_covers(&reqs);
}

#[tokio::test]
async fn api_error_backs_off_and_sets_degraded() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::minimal());
    fake.fail("PATCH", "/statefulsets/live", 500, 2);

    let err = reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect_err("apply fails");
    assert!(matches!(err, Error::Kube(_)), "{err}");
    let a1 = error_policy(Arc::new(oc.clone()), &err, ctx.clone());
    assert_eq!(a1, Action::requeue(Duration::from_secs(1)));
    let degraded = current(&fake, &oc);
    assert_eq!(
        cond(&degraded, status::DEGRADED),
        ("True".into(), "ApiError".into())
    );
    let msg = status::condition(degraded.status.as_ref().expect("status"), status::DEGRADED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(msg.contains("injected failure"), "{msg}");

    let err = reconcile(Arc::new(degraded.clone()), ctx.clone())
        .await
        .expect_err("fails again");
    let a2 = error_policy(Arc::new(degraded.clone()), &err, ctx.clone());
    assert_eq!(
        a2,
        Action::requeue(Duration::from_secs(2)),
        "exponential backoff"
    );
    let warnings = fake
        .requests()
        .iter()
        .filter(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b["reason"] == "ReconcileFailed" || b["type"] == "Warning")
        })
        .count();
    assert!(warnings >= 1, "a Warning event is published");

    // The API recovers: Degraded flips back, the backoff resets.
    let again = current(&fake, &oc);
    reconcile(Arc::new(again.clone()), ctx.clone())
        .await
        .expect("recovered");
    let healed = current(&fake, &oc);
    assert_eq!(
        cond(&healed, status::DEGRADED),
        ("False".into(), "AsExpected".into())
    );
    let err = Error::InvalidSpec("x".into());
    let any = Error::Kube(kube::Error::Service("x".into()));
    assert_eq!(
        error_policy(Arc::new(healed), &any, ctx.clone()),
        Action::requeue(Duration::from_secs(1)),
        "backoff restarts after a success"
    );
    assert_eq!(
        error_policy(Arc::new(again), &err, ctx),
        Action::await_change()
    );
}

#[tokio::test]
async fn invalid_spec_is_reported_not_retried() {
    let (fake, ctx) = setup();
    let mut oc = fixtures::minimal();
    oc.spec.origin.discovery_timeout = "soon".into();
    let oc = store(&fake, &oc);
    let err = reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect_err("invalid");
    assert!(matches!(err, Error::InvalidSpec(_)));
    assert_eq!(
        error_policy(Arc::new(oc.clone()), &err, ctx),
        Action::await_change()
    );
    let oc = current(&fake, &oc);
    assert_eq!(
        cond(&oc, status::DEGRADED),
        ("True".into(), "InvalidSpec".into())
    );
    assert!(
        fake.get("/apis/apps/v1/namespaces/media/statefulsets/live")
            .is_none()
    );
}

#[tokio::test]
async fn deletion_leaves_nothing_that_owner_references_do_not_cover() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::full());
    reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect("reconcile");
    let uid = oc.uid().expect("uid");
    let oc = current(&fake, &oc);
    assert!(
        oc.metadata.finalizers.is_none(),
        "no finalizer: deletion is never blocked"
    );

    let mut created = 0;
    for coll in [
        "/apis/apps/v1/statefulsets",
        "/api/v1/services",
        "/api/v1/configmaps",
        "/api/v1/secrets",
        "/apis/policy/v1/poddisruptionbudgets",
    ] {
        for obj in fake.list(coll) {
            created += 1;
            let owners = obj["metadata"]["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                owners.iter().any(|o| o["uid"] == uid.as_str()
                    && o["controller"] == true
                    && o["blockOwnerDeletion"] == true),
                "{} {} has no controller owner reference",
                coll,
                obj["metadata"]["name"]
            );
        }
    }
    assert_eq!(
        created,
        1 + 2 + 5 + 1 + 1 + 1,
        "sts, 2 services, 5 per-pod services, cm, secret, pdb"
    );
    // Nothing cluster-scoped was written.
    for r in fake.requests().iter().filter(|r| r.method != "GET") {
        assert!(
            r.path.contains("/namespaces/media/"),
            "{} {}",
            r.method,
            r.path
        );
    }

    // Deleting: the reconciler only forgets its memory.
    let mut deleting = oc.clone();
    deleting.metadata.deletion_timestamp = Some(now());
    fake.clear_requests();
    let action = reconcile(Arc::new(deleting), ctx.clone())
        .await
        .expect("deleting");
    assert_eq!(action, Action::await_change());
    assert!(fake.requests().is_empty());
    assert_eq!(ctx.revision(NS, "big"), None);
    assert!(!ctx.has_delivery(NS, "big"));
}

/// Pre-creates the admin-token Secret so fake origins can be started with a known token.
fn store_token(fake: &FakeApiServer, oc: &OriginCluster, token: &str) {
    let secret = build::secret::build(oc, &Token::new(token));
    fake.put(
        "/api/v1/namespaces/media/secrets",
        serde_json::to_value(secret).expect("json"),
    );
}

async fn origins(n: usize, token: &str) -> Vec<FakeOrigin> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(FakeOrigin::start(token).await.expect("origin"));
    }
    v
}

/// One slice per origin (each fake origin has its own port on 127.0.0.1).
fn put_slices(fake: &FakeApiServer, cluster: &str, origins: &[&FakeOrigin]) {
    for (i, o) in origins.iter().enumerate() {
        let port: u16 = o
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("port");
        let pod = format!("{cluster}-{i}");
        let slice = endpoint_slice(
            cluster,
            NS,
            &format!("{cluster}-peers-{i}"),
            port,
            &[(&pod, "127.0.0.1", true)],
        );
        fake.put(SLICES, slice);
    }
}

/// Waits (polling) until `f` holds; panics with `what` after `limit`.
async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn cm_doc(fake: &FakeApiServer, cluster: &str) -> CoworkerDocument {
    let cm = fake
        .get(&format!(
            "/api/v1/namespaces/media/configmaps/{cluster}-coworkers"
        ))
        .expect("configmap");
    CoworkerDocument::from_slice(
        cm["data"]["coworkers.json"]
            .as_str()
            .unwrap_or("")
            .as_bytes(),
    )
    .expect("document")
}

#[tokio::test]
async fn restarted_operator_continues_above_the_durable_revision() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::minimal());
    store_token(&fake, &oc, "tok");
    let token = Token::new("tok");
    let os = origins(2, "tok").await;
    put_slices(&fake, "live", &[&os[0], &os[1]]);
    reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect("first");
    until(Duration::from_secs(15), "revision 1 delivered", || {
        os[0].revision() == 1
    })
    .await;
    let oc = current(&fake, &oc);

    // A new operator process with empty memory, and one origin that is ahead (pushed by a
    // previous leader whose ConfigMap write was lost).
    let (client, _t) = fake.client();
    let ctx2 = Arc::new(Context::new(
        client,
        ctx.pusher.clone(),
        Arc::new(Metrics::new()),
        settings(),
        None,
    ));
    drop(ctx);
    reconcile(Arc::new(oc.clone()), ctx2.clone())
        .await
        .expect("restart");
    assert_eq!(
        ctx2.revision(NS, "live"),
        Some(1),
        "same list: no new revision"
    );
    let other = FakeOrigin::start("tok").await.expect("origin");
    let pusher = Pusher::new(PushConfig::default());
    let ahead = PushTarget {
        pod: "x".into(),
        addr: other.addr.clone(),
        doc: CoworkerDocument::new(7, vec![], None),
    };
    assert_eq!(pusher.push_one(&ahead, &token).await, PushOutcome::Applied);
    put_slices(&fake, "live", &[&os[0], &os[1], &other]);
    reconcile(Arc::new(oc.clone()), ctx2.clone())
        .await
        .expect("pass sees a newer pod");
    until(Duration::from_secs(15), "the newer pod reported", || {
        ctx2.delivery_progress(NS, "live")
            .is_some_and(|p| p.seen_newer == 7)
    })
    .await;
    reconcile(Arc::new(current(&fake, &oc)), ctx2.clone())
        .await
        .expect("pass above it");
    assert_eq!(ctx2.revision(NS, "live"), Some(8));
    until(Duration::from_secs(15), "revision 8 everywhere", || {
        [&os[0], &os[1], &other].iter().all(|o| o.revision() == 8)
    })
    .await;
    for o in [&os[0], &os[1], &other] {
        assert_eq!(o.document().coworkers.len(), 3);
    }
}

/// Stops the controller loop started by [`run_loop`]: it must still be running, end on
/// shutdown, and not have panicked.
async fn stop_loop(tx: tokio::sync::oneshot::Sender<()>, runner: tokio::task::JoinHandle<()>) {
    tx.send(())
        .expect("the controller loop was still running before shutdown");
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .expect("the controller loop stops on shutdown")
        .expect("the controller loop did not panic");
}

/// Runs the controller loop; the sender stops it.
fn run_loop(
    ctx: &Arc<Context>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    (tx, runner)
}

#[tokio::test]
async fn restart_never_overwrites_the_durable_list_before_the_slices_are_listed() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::minimal());
    store_token(&fake, &oc, "tok");
    let os = origins(2, "tok").await;
    put_slices(&fake, "live", &[&os[0], &os[1]]);
    let mut addrs: Vec<String> = os.iter().map(|o| o.addr.clone()).collect();
    addrs.sort();
    // What a previous operator process left: revision 5 with the current list.
    let durable = CoworkerDocument::new(5, addrs.clone(), None);
    fake.put(
        "/api/v1/namespaces/media/configmaps",
        serde_json::to_value(build::configmap::build(&oc, &durable)).expect("cm"),
    );
    // The new process starts while the EndpointSlice list hangs.
    fake.hang("GET", "/endpointslices");
    let (tx, runner) = run_loop(&ctx);
    // The controller has asked for the slices and waits for them; meanwhile (a window, as
    // a negative needs) it writes no list.
    until(
        Duration::from_secs(15),
        "the controller asked for the slices",
        || fake.held("GET", "/endpointslices") > 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        cm_doc(&fake, "live"),
        durable,
        "no list before the slices are known"
    );
    fake.unhang();
    until(
        Duration::from_secs(15),
        "the origins get revision 5",
        || os.iter().all(|o| o.revision() == 5),
    )
    .await;
    assert_eq!(
        ctx.revision(NS, "live"),
        Some(5),
        "same list: no new revision"
    );
    assert_eq!(cm_doc(&fake, "live"), durable);
    stop_loop(tx, runner).await;
}

#[tokio::test]
async fn deleting_a_cluster_drops_its_task_state_and_metrics() {
    let (fake, ctx) = setup();
    let (tx, runner) = run_loop(&ctx);
    let oc = store(&fake, &fixtures::minimal());
    store_token(&fake, &oc, "tok");
    let os = origins(2, "tok").await;
    put_slices(&fake, "live", &[&os[0], &os[1]]);
    until(
        Duration::from_secs(15),
        "delivered and acknowledged",
        || {
            ctx.delivery_progress(NS, "live")
                .is_some_and(|p| p.acked.len() == 2)
        },
    )
    .await;
    assert!(ctx.has_delivery(NS, "live"));
    assert!(ctx.revision(NS, "live").is_some());
    let text = ctx.metrics.encode();
    assert!(text.contains(r#"cluster="live""#));
    let acks: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("origin_operator_coworker_delivery_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        acks >= 2,
        "delivery latency observed per acknowledgement: {text}"
    );
    // kubectl delete ocl/live (no finalizer: the API server removes it at once).
    fake.delete(&format!("{CR_COLL}/live"));
    until(Duration::from_secs(15), "cluster forgotten", || {
        !ctx.has_delivery(NS, "live") && ctx.revision(NS, "live").is_none()
    })
    .await;
    let text = ctx.metrics.encode();
    assert!(!text.contains(r#"cluster="live""#), "{text}");
    // No more pushes after the task is gone (a resync or retry would show up here).
    let puts: Vec<u32> = os.iter().map(|o| o.puts()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(os.iter().map(|o| o.puts()).collect::<Vec<_>>(), puts);
    stop_loop(tx, runner).await;
}

#[tokio::test]
async fn per_pod_service_advertise_agrees_in_file_and_push_at_every_revision() {
    let (fake, ctx) = setup();
    let mut oc = fixtures::minimal();
    oc.spec.replicas = 2;
    oc.spec.advertise = AdvertiseMode::PerPodService;
    let oc = store(&fake, &oc);
    store_token(&fake, &oc, "tok");
    let os = origins(2, "tok").await;
    put_slices(&fake, "live", &[&os[0], &os[1]]);
    let pods = ["live-0", "live-1"];

    // Each step: what the cloud has assigned to the per-pod Services so far.
    let steps: [[Option<&str>; 2]; 4] = [
        [None, None],
        [Some("203.0.113.10"), None],
        [Some("203.0.113.10"), Some("203.0.113.11")],
        [Some("203.0.113.20"), Some("203.0.113.11")],
    ];
    let mut last_rev = 0;
    for (step, addrs) in steps.iter().enumerate() {
        for (i, a) in addrs.iter().enumerate() {
            let path = format!("/api/v1/namespaces/media/services/live-{i}");
            if let (Some(ip), Some(mut svc)) = (a, fake.get(&path)) {
                svc["status"] = serde_json::json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
                fake.put("/api/v1/namespaces/media/services", svc);
            }
        }
        reconcile(Arc::new(current(&fake, &oc)), ctx.clone())
            .await
            .expect("pass");
        let rev = ctx.revision(NS, "live").expect("revision");
        assert!(
            rev > last_rev,
            "step {step}: a new address is a new revision"
        );
        last_rev = rev;
        until(
            Duration::from_secs(15),
            "both origins at the revision",
            || os.iter().all(|o| o.revision() == rev),
        )
        .await;
        let file = cm_doc(&fake, "live");
        assert_eq!(file.revision, rev);
        assert_eq!(
            file.advertise, None,
            "the shared file has no pod-specific advertise"
        );
        for (i, pod) in pods.iter().enumerate() {
            let pushed = os[i].document();
            let want = addrs[i].map(|ip| Advertise {
                rtmp: Some(format!("{ip}:1935")),
                http: Some(format!("{ip}:8080")),
            });
            assert_eq!(pushed.advertise, want, "step {step}: PUT to {pod}");
            assert_eq!(
                file.advertise_for(pod),
                pushed.advertise_for(pod),
                "step {step}: file and PUT disagree for {pod}"
            );
            assert_eq!(
                file.advertise_for(pod),
                want.as_ref(),
                "step {step}: file for {pod}"
            );
            assert_eq!(pushed.pod_advertise, file.pod_advertise);
        }
    }
    // A pod that read revision R from the file answers the PUT of R with 409: it still has
    // its address (from pod_advertise), so the acknowledgement is true.
    let file = cm_doc(&fake, "live");
    assert!(file.advertise_for("live-0").is_some());
}

#[tokio::test]
async fn drifted_children_are_restored_on_the_next_pass() {
    let (fake, ctx) = setup();
    let oc = store(&fake, &fixtures::full());
    reconcile(Arc::new(oc.clone()), ctx.clone())
        .await
        .expect("first pass");
    let svc_path = "/api/v1/namespaces/media/services/big-0";
    let original = fake.get(svc_path).expect("per-pod service");
    let annotations = original["metadata"]["annotations"].clone();
    assert!(
        annotations.as_object().is_some_and(|a| !a.is_empty()),
        "the fixture sets Service annotations: {original}"
    );
    // Someone edits the per-pod Service and the ConfigMap by hand.
    let mut tampered = original.clone();
    for (_, v) in tampered["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .iter_mut()
    {
        *v = Value::from("tampered");
    }
    tampered["spec"]["externalTrafficPolicy"] = Value::from("Cluster");
    fake.put("/api/v1/namespaces/media/services", tampered);
    let cm_path = "/api/v1/namespaces/media/configmaps/big-coworkers";
    let mut cm = fake.get(cm_path).expect("configmap");
    let cm_data = cm["data"].clone();
    cm["data"]["coworkers.json"] = Value::from(r#"{"revision":999,"coworkers":[]}"#);
    fake.put("/api/v1/namespaces/media/configmaps", cm);

    reconcile(Arc::new(current(&fake, &oc)), ctx.clone())
        .await
        .expect("next pass");
    let restored = fake.get(svc_path).expect("service");
    assert_eq!(
        restored["metadata"]["annotations"], annotations,
        "annotations restored"
    );
    assert_eq!(
        restored["spec"]["externalTrafficPolicy"],
        original["spec"]["externalTrafficPolicy"]
    );
    assert_eq!(
        fake.get(cm_path).expect("configmap")["data"],
        cm_data,
        "ConfigMap restored"
    );
}

#[test]
fn slices_map_back_to_their_cluster() {
    let s: EndpointSlice =
        serde_json::from_value(endpoint_slice("live", NS, "live-peers-1", 1985, &[]))
            .expect("slice");
    let r = slice_to_cluster(s.clone()).expect("mapped");
    assert_eq!(r.name, "live");
    assert_eq!(r.namespace.as_deref(), Some(NS));
    let mut foreign = s;
    if let Some(l) = foreign.metadata.labels.as_mut() {
        l.insert(labels::MANAGED_BY.into(), "someone-else".into());
    }
    assert!(slice_to_cluster(foreign).is_none());
}

#[test]
fn auth_validation_names_the_bad_field() {
    use crate::crd::{AuthSpec, HookSpec, SecretRef};
    let hooks = |urls: Vec<&str>| AuthSpec {
        hooks: Some(HookSpec {
            on_play: urls.into_iter().map(str::to_string).collect(),
            ..HookSpec::default()
        }),
        secret_ref: None,
    };
    assert!(validate_auth(&hooks(vec!["http://a:8085/x", "https://b.example"])).is_ok());
    for (url, why) in [
        ("ftp://a/x", "http:// or https://"),
        ("http:///x", "no host"),
        ("http://a b/x", "whitespace"),
        ("http://a:99999/x", "invalid port"),
        ("file:///etc/passwd", "http:// or https://"),
    ] {
        let e = validate_auth(&hooks(vec![url])).expect_err(url).to_string();
        assert!(
            e.contains("spec.auth.hooks.onPlay[0]") && e.contains(why),
            "{url}: {e}"
        );
    }
    let long = format!("http://a/{}", "x".repeat(3000));
    assert!(
        validate_auth(&hooks(vec![&long]))
            .expect_err("long")
            .to_string()
            .contains("longer than")
    );
    let many = vec!["http://a/x"; crate::crd::MAX_HOOK_URLS + 1];
    let e = validate_auth(&hooks(many))
        .expect_err("too many")
        .to_string();
    assert!(e.contains("onPlay has 9 URLs, at most 8"), "{e}");
    let mut bad_t = hooks(vec![]);
    if let Some(h) = bad_t.hooks.as_mut() {
        h.timeout = "10m".into();
    }
    assert!(
        validate_auth(&bad_t)
            .expect_err("timeout")
            .to_string()
            .contains("at most 60s")
    );
    let bad_secret = AuthSpec {
        hooks: None,
        secret_ref: Some(SecretRef {
            name: "Not_A_Name".into(),
        }),
    };
    assert!(
        validate_auth(&bad_secret)
            .expect_err("name")
            .to_string()
            .contains("secretRef.name")
    );
    // Through validate(): an invalid spec, reported and not retried.
    let mut spec = fixtures::minimal().spec;
    spec.auth = Some(hooks(vec!["gopher://x"]));
    assert!(matches!(validate(&spec), Err(Error::InvalidSpec(_))));
}

#[test]
fn validation_messages() {
    let ok = fixtures::full().spec;
    assert!(validate(&ok).is_ok());
    let mut bad = ok.clone();
    bad.origin.wait_for_publisher = "5 parsecs".into();
    let e = validate(&bad).expect_err("duration");
    assert!(
        e.to_string().contains("spec.origin.waitForPublisher"),
        "{e}"
    );
    let mut bad = ok.clone();
    bad.ports.http = bad.ports.api;
    assert!(validate(&bad).is_err());
    let mut bad = ok;
    bad.replicas = 0;
    assert!(validate(&bad).is_err());
    assert_eq!(
        backoff(Duration::from_secs(1), Duration::from_secs(300), 1),
        Duration::from_secs(1)
    );
    assert_eq!(
        backoff(Duration::from_secs(1), Duration::from_secs(300), 4),
        Duration::from_secs(8)
    );
    assert_eq!(
        backoff(Duration::from_secs(1), Duration::from_secs(300), 40),
        Duration::from_secs(300)
    );
}

mod hook_url_properties {
    use super::*;
    use proptest::prelude::*;

    fn hooks(url: String) -> crate::crd::AuthSpec {
        crate::crd::AuthSpec {
            hooks: Some(crate::crd::HookSpec {
                on_publish: vec![url],
                ..crate::crd::HookSpec::default()
            }),
            secret_ref: None,
        }
    }

    proptest! {
        /// Hostile input never panics; whatever is accepted is a bounded http(s) URL with a
        /// host and no whitespace, so it is safe to pass as one `--on-publish=` argument.
        #[test]
        fn accepted_urls_are_bounded_http_urls(url in any::<String>()) {
            if validate_auth(&hooks(url.clone())).is_ok() {
                prop_assert!(url.starts_with("http://") || url.starts_with("https://"));
                prop_assert!(url.len() <= crate::crd::MAX_HOOK_URL_LEN);
                prop_assert!(!url.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
        }

        #[test]
        fn well_formed_urls_are_accepted(
            https in any::<bool>(),
            host in "[a-z][a-z0-9-]{0,20}(\\.[a-z0-9]{1,10}){0,3}",
            port in proptest::option::of(1u16..),
            path in "(/[A-Za-z0-9._~%-]{0,12}){0,4}(\\?[a-z]=[0-9]{1,4})?",
        ) {
            let url = format!(
                "{}://{host}{}{path}",
                if https { "https" } else { "http" },
                port.map(|p| format!(":{p}")).unwrap_or_default()
            );
            prop_assert!(validate_auth(&hooks(url.clone())).is_ok(), "{}", url);
        }
    }
}
