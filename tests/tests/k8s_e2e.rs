//! The user's path from the README on a real Kubernetes control plane (docs/architecture.md,
//! "Test control plane"): etcd, kube-apiserver and kube-controller-manager built from the
//! pinned Go modules by `scripts/k8s-tools` (directory in `ORIGIN_K8S_TOOLS`; the test
//! fails when it is missing), with real `origin` processes as pods in their own network
//! namespaces, and the real operator binary running with the chart's ServiceAccount token.
//!
//! One control plane for the whole path (it takes tens of seconds to start on 2 cores), so
//! the steps run in order in one test, each a function named for what it shows:
//! `kubectl apply -f crds/` and the schema/CEL refusals, `helm install` of the chart,
//! `kubectl apply -f examples/minimal.yaml` (lists complete soon after the last pod turns
//! Ready), relay across pods with ffmpeg/ffprobe, `kubectl scale` up and down
//! (convergence measured; scaling down ends a publisher on a removed pod and a relayed
//! player plays again once the encoder republishes on a remaining pod), a 20 s SIGSTOP of
//! the API server while a pod is added (an error logged meanwhile, a Warning event after),
//! an operator restart that changes no child, leader election after `helm upgrade` (pushes
//! of the two identities never interleave), a rolling update under a publisher and a
//! relayed player, and `kubectl delete` with garbage collection. No `forbidden` may appear
//! in the operator's log at any point.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use origin_cluster_tests::{Ffmpeg, ffmpeg_publish, ffprobe};
use origin_test_support::k8s::{Cluster, OperatorProc, PodInfo};
use origin_test_support::{TempDir, fetch_coworkers, get_blocking};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous deadlines: the suite must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(180);
const NS: &str = "default";
const OPERATOR_NS: &str = "origin-system";
const RELEASE: &str = "oc";
const CLUSTER: &str = "live";
const API_PORT: u16 = 1985;

async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a [`FlvPlayer`] has received so far.
#[derive(Debug, Default, Clone)]
struct Played {
    /// FLV tag bytes (after the HTTP head and the 13-byte FLV header).
    media: u64,
    last: Option<Instant>,
    longest_gap: Duration,
    connections: u32,
}

/// A player that reads `/live/STREAM.flv` over HTTP from the pod IP in `target` and, when
/// the response ends or fails, connects again (to whatever `target` names by then), as a
/// player that retries does. It records media bytes and the longest gap between two reads.
struct FlvPlayer {
    played: Arc<Mutex<Played>>,
    target: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlvPlayer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FlvPlayer {
    fn start(ip: &str, stream: &str) -> Self {
        let played = Arc::new(Mutex::new(Played::default()));
        let target = Arc::new(Mutex::new(ip.to_string()));
        let (p, t, stream) = (played.clone(), target.clone(), stream.to_string());
        let task = tokio::spawn(async move {
            loop {
                let ip = lock(&t).clone();
                lock(&p).connections += 1;
                let _ = Self::play_once(&ip, &stream, &p).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            played,
            target,
            task,
        }
    }

    /// One HTTP-FLV response, read to its end (or a 10 s silence, or an error).
    async fn play_once(ip: &str, stream: &str, p: &Mutex<Played>) -> std::io::Result<()> {
        let t = Duration::from_secs(10);
        let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
        let mut sock = tokio::time::timeout(t, tokio::net::TcpStream::connect((ip, 8080)))
            .await
            .map_err(|_| timed_out())??;
        let req = format!(
            "GET /live/{stream}.flv HTTP/1.1\r\nHost: {ip}:8080\r\nConnection: close\r\n\r\n"
        );
        sock.write_all(req.as_bytes()).await?;
        let mut head = Vec::new();
        let mut skip: Option<usize> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(t, sock.read(&mut buf))
                .await
                .map_err(|_| timed_out())??;
            if n == 0 {
                return Ok(());
            }
            let mut chunk = &buf[..n];
            if skip.is_none() {
                head.extend_from_slice(chunk);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
                    return Ok(());
                }
                let body = head.len() - (end + 4);
                chunk = &buf[n - body..n];
                skip = Some(13);
            }
            let s = skip.get_or_insert(0);
            let drop_n = (*s).min(chunk.len());
            *s -= drop_n;
            let media = chunk.len() - drop_n;
            if media > 0 {
                let mut g = lock(p);
                let now = Instant::now();
                if let Some(last) = g.last {
                    g.longest_gap = g.longest_gap.max(now - last);
                }
                g.last = Some(now);
                g.media += media as u64;
            }
        }
    }

    fn played(&self) -> Played {
        lock(&self.played).clone()
    }

    fn retarget(&self, ip: &str) {
        *lock(&self.target) = ip.to_string();
    }

    fn target(&self) -> String {
        lock(&self.target).clone()
    }

    /// Waits until `more` media bytes arrived after this call.
    async fn wait_media(&self, what: &str, more: u64) {
        let from = self.played().media;
        eventually(what, LONG, || async {
            (self.played().media >= from + more).then_some(())
        })
        .await;
    }
}

/// Media a player must receive to count as playing (a few seconds of the test pattern).
const PLAYING: u64 = 64 * 1024;

/// The ffmpeg test pattern published to `stream` at pod `ip` for up to 10 minutes.
fn publish_to(ip: &str, stream: &str) -> Ffmpeg {
    ffmpeg_publish(
        &format!("rtmp://{ip}:1935/live/{stream}"),
        "320x240",
        25,
        600,
    )
}

/// The cluster's pods as the runner runs them, sorted by name.
fn origin_pods(c: &Cluster) -> Vec<PodInfo> {
    let mut pods: Vec<PodInfo> = c
        .runner
        .pods()
        .into_iter()
        .filter(|p| p.namespace == NS && p.name.starts_with(&format!("{CLUSTER}-")))
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    pods
}

/// The pod IPs once exactly `n` pods run a live `origin` process and are Ready.
fn ready_ips(c: &Cluster, n: usize) -> Option<Vec<String>> {
    let pods = origin_pods(c);
    let all = pods.len() == n
        && pods.iter().all(|p| {
            p.ready
                && std::fs::read_link(format!("/proc/{}/exe", p.pid))
                    .is_ok_and(|exe| exe.ends_with("origin"))
        });
    all.then(|| pods.into_iter().map(|p| p.ip).collect())
}

/// Waits for [`ready_ips`]; on timeout the failure shows what the runner and the API
/// server have.
async fn wait_ready_ips(c: &Cluster, n: usize) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        if let Some(ips) = ready_ips(c, n) {
            return ips;
        }
        if t0.elapsed() > LONG {
            let pods = c
                .kubectl
                .run(&["get", "pods", "-n", NS, "-o", "wide"])
                .await;
            panic!(
                "timed out waiting for {n} origin pods Ready\nrunner: {:#?}\nAPI server:\n{}{}",
                origin_pods(c),
                pods.stdout,
                pods.stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every origin at `ips` lists every other one.
async fn converged(ips: &[String]) -> bool {
    for ip in ips {
        let Some(doc) = fetch_coworkers(&format!("{ip}:{API_PORT}")).await else {
            return false;
        };
        let list: Vec<String> = doc["coworkers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .filter(|a| a != &format!("{ip}:{API_PORT}"))
            .collect();
        let want: Vec<String> = ips
            .iter()
            .filter(|o| *o != ip)
            .map(|o| format!("{o}:{API_PORT}"))
            .collect();
        let mut sorted = list.clone();
        sorted.sort();
        let mut want_sorted = want;
        want_sorted.sort();
        if sorted != want_sorted {
            return false;
        }
    }
    true
}

fn assert_no_forbidden(op: &OperatorProc) {
    let log = op.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        bad.is_empty(),
        "RBAC denials in the operator's log:\n{}",
        bad.join("\n")
    );
}

/// (1) The CRD is accepted and served; invalid objects are refused with the schema's or
/// the CEL rule's message.
async fn crds_accepted_and_enforced(c: &Cluster, scratch: &TempDir) {
    c.kubectl.ok(&["apply", "-f", "crds/"]).await;
    c.kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=120s",
            "crd/originclusters.origincluster.dev",
        ])
        .await;
    // The OpenAPI document follows the Established condition by a few seconds.
    let explain = eventually("kubectl explain originclusters.spec", LONG, || async {
        let r = c.kubectl.run(&["explain", "originclusters.spec"]).await;
        r.success.then_some(r.stdout)
    })
    .await;
    assert!(explain.contains("replicas"), "kubectl explain: {explain}");

    let bad = |name: &str, spec: &str| {
        let path = scratch.path().join(format!("{name}.yaml"));
        let doc = format!(
            "apiVersion: origincluster.dev/v1alpha1\nkind: OriginCluster\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
        );
        std::fs::write(&path, doc).expect("write");
        path.display().to_string()
    };
    let negative = bad("bad-replicas", "  replicas: -1");
    let err = c.kubectl.fails(&["apply", "-f", &negative]).await;
    assert!(
        err.contains("spec.replicas") && err.contains("should be greater than or equal to 1"),
        "{err}"
    );
    let route = bad("bad-route", "  origin:\n    route: teleport");
    let err = c.kubectl.fails(&["apply", "-f", &route]).await;
    assert!(
        err.contains("spec.origin.route") && err.contains("Unsupported value"),
        "{err}"
    );
    let ports = bad(
        "bad-ports",
        "  ports:\n    rtmp: 1935\n    api: 1935\n    http: 8080",
    );
    let err = c.kubectl.fails(&["apply", "-f", &ports]).await;
    assert!(err.contains("must be distinct"), "CEL rule message: {err}");
}

/// (2) `helm install` of the chart with default values; the operator runs as its own
/// process with the Deployment's arguments and environment and the token of the chart's
/// ServiceAccount, and becomes Ready.
async fn helm_install_operator(c: &Cluster, identity: &str) -> OperatorProc {
    c.helm
        .ok(&[
            "install",
            RELEASE,
            "charts/origin-cluster-operator",
            "-n",
            OPERATOR_NS,
            "--create-namespace",
        ])
        .await;
    start_operator(c, identity).await
}

async fn start_operator(c: &Cluster, identity: &str) -> OperatorProc {
    let deploys: serde_json::Value = serde_json::from_str(
        &c.kubectl
            .ok(&["get", "deployments", "-n", OPERATOR_NS, "-o", "json"])
            .await,
    )
    .expect("json");
    let deploy = &deploys["items"][0];
    let pod = &deploy["spec"]["template"]["spec"];
    let sa = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => OPERATOR_NS.to_string(),
                Some(_) => return None,
                None => e["value"].as_str().unwrap_or_default().to_string(),
            };
            Some((name, value))
        })
        .collect();
    let token = c
        .kubectl
        .ok(&["create", "token", sa, "-n", OPERATOR_NS, "--duration=2h"])
        .await;
    let mut op = OperatorProc::start(
        c.dir.path(),
        &c.plane.server,
        &c.plane.certs.ca_crt,
        token.trim(),
        &args,
        &env,
        identity,
    );
    op.wait_ready(LONG).await;
    op
}

fn children() -> Vec<(&'static str, String)> {
    vec![
        ("statefulset", CLUSTER.to_string()),
        ("service", format!("{CLUSTER}-peers")),
        ("service", format!("{CLUSTER}-rtmp")),
        ("configmap", format!("{CLUSTER}-coworkers")),
        ("secret", format!("{CLUSTER}-admin-token")),
        ("poddisruptionbudget", CLUSTER.to_string()),
    ]
}

/// The resourceVersion of every child, or None while one is missing.
async fn child_versions(c: &Cluster) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for (kind, name) in children() {
        let r = c
            .kubectl
            .run(&[
                "get",
                kind,
                &name,
                "-n",
                NS,
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ])
            .await;
        if !r.success {
            return None;
        }
        out.push(format!("{kind}/{name}={}", r.stdout));
    }
    Some(out)
}

/// (3) `kubectl apply -f examples/minimal.yaml`: the children appear, three origin
/// processes run and become Ready, `kubectl get ocl` shows 3 ready, and every origin lists
/// the other two. Returns the pod IPs.
async fn minimal_example(c: &Cluster) -> Vec<String> {
    c.kubectl
        .ok(&["apply", "-n", NS, "-f", "examples/minimal.yaml"])
        .await;
    eventually("every child object", LONG, || child_versions(c)).await;
    let ips = wait_ready_ips(c, 3).await;
    let ready_at = Instant::now();
    eventually("coworker lists of 3", LONG, || {
        let ips = ips.clone();
        async move { converged(&ips).await.then_some(()) }
    })
    .await;
    let lag = ready_at.elapsed();
    eprintln!(
        "k8s e2e: coworker lists complete {:.0} ms after the last of 3 pods turned Ready",
        lag.as_secs_f64() * 1000.0
    );
    // The target is 1 s; the bound is loose so a loaded machine passes.
    assert!(
        lag < Duration::from_secs(10),
        "coworker lists took {lag:?} after the last pod turned Ready"
    );
    let table = eventually("kubectl get ocl with 3 ready", LONG, || async {
        let out = c.kubectl.ok(&["get", "ocl", CLUSTER, "-n", NS]).await;
        let row: Vec<String> = out
            .lines()
            .nth(1)?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        (row.get(1).map(String::as_str) == Some("3") && row.get(2).map(String::as_str) == Some("3"))
            .then_some(out)
    })
    .await;
    assert!(
        table.starts_with("NAME") && table.contains("REPLICAS") && table.contains("READY"),
        "{table}"
    );
    ips
}

/// (4) ffmpeg publishes to pod 0; ffprobe plays RTMP from pod 2 and HTTP-FLV and HLS
/// from pod 1: relay across real pods at their pod IPs.
async fn relay_across_pods(ips: &[String]) {
    let url = format!("rtmp://{}:1935/live/e2e", ips[0]);
    let _publisher = ffmpeg_publish(&url, "320x240", 25, 120);
    let probe = |u: String| async move {
        let mut last = String::new();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            let u2 = u.clone();
            match tokio::task::spawn_blocking(move || ffprobe(&u2))
                .await
                .expect("join")
            {
                Ok(s)
                    if s.iter().any(|p| p.codec_name == "h264")
                        && s.iter().any(|p| p.codec_name == "aac") =>
                {
                    return;
                }
                Ok(s) => last = format!("{s:?}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{u} never played h264+aac: {last}");
    };
    probe(format!("rtmp://{}:1935/live/e2e", ips[2])).await;
    probe(format!("http://{}:8080/live/e2e.flv", ips[1])).await;
    probe(format!("http://{}:8080/live/e2e.m3u8", ips[1])).await;
}

/// `kubectl scale ocl/NAME --replicas=n`, then the time until n pods are Ready and every
/// coworker list holds the other n-1, and status.replicas/readyReplicas follow.
async fn scale_to(c: &Cluster, n: usize) -> Duration {
    let t0 = Instant::now();
    c.kubectl
        .ok(&[
            "scale",
            &format!("ocl/{CLUSTER}"),
            "-n",
            NS,
            &format!("--replicas={n}"),
        ])
        .await;
    let ips = wait_ready_ips(c, n).await;
    eventually(&format!("coworker lists of {n}"), LONG, || {
        let ips = ips.clone();
        async move { converged(&ips).await.then_some(()) }
    })
    .await;
    let took = t0.elapsed();
    eventually("status.replicas and readyReplicas", LONG, || async {
        let out = c
            .kubectl
            .ok(&[
                "get",
                "ocl",
                CLUSTER,
                "-n",
                NS,
                "-o",
                "jsonpath={.status.replicas} {.status.readyReplicas}",
            ])
            .await;
        (out.trim() == format!("{n} {n}")).then_some(())
    })
    .await;
    took
}

/// (5, 6) Scale steps up and down; convergence from the scale call to the last coworker
/// list updated, median and max printed. The PodDisruptionBudget keeps the selector.
async fn scale_steps(c: &Cluster) {
    let mut times = Vec::new();
    for n in [5, 2, 3, 4, 3, 4, 5, 4, 5, 3] {
        let took = if n == 2 {
            scale_down_moves_publisher(c).await
        } else {
            scale_to(c, n).await
        };
        eprintln!(
            "k8s e2e: scale to {n}: converged in {:.2} s",
            took.as_secs_f64()
        );
        times.push(took);
    }
    times.sort();
    eprintln!(
        "k8s e2e: scale convergence over {} steps: median {:.2} s, max {:.2} s",
        times.len(),
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    let sel = c
        .kubectl
        .ok(&[
            "get",
            "pdb",
            CLUSTER,
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.selector.matchLabels}",
        ])
        .await;
    assert!(
        sel.contains(&format!("\"app.kubernetes.io/instance\":\"{CLUSTER}\"")),
        "{sel}"
    );
}

/// (6) Scale from 5 down to 2 with a publisher on pod 4 and a player on pod 1 relayed
/// from it: the publisher's connection ends once pod 4 is drained and stopped, and when
/// the encoder republishes on pod 0 the player on pod 1 gets media again. Returns the
/// scale's convergence time.
async fn scale_down_moves_publisher(c: &Cluster) -> Duration {
    let ips = wait_ready_ips(c, 5).await;
    let mut first = publish_to(&ips[4], "moved");
    let player = FlvPlayer::start(&ips[1], "moved");
    player
        .wait_media("the player on pod 1 playing from pod 4", PLAYING)
        .await;
    let t0 = Instant::now();
    let took = scale_to(c, 2).await;
    let ended_by = Instant::now() + LONG;
    while first.try_wait().is_none() {
        assert!(
            Instant::now() < ended_by,
            "the publisher on the removed pod was never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = t0.elapsed();
    let gap_from = Instant::now();
    let _second = publish_to(&ips[0], "moved");
    player
        .wait_media("the player on pod 1 after republishing on pod 0", PLAYING)
        .await;
    let p = player.played();
    eprintln!(
        "k8s e2e: scale to 2: the publisher on pod 4 ended {:.1} s after the scale call; \
         the player on pod 1 had media again {:.1} s after republishing on pod 0 \
         (longest gap {:.1} s, {} connections)",
        ended.as_secs_f64(),
        gap_from.elapsed().as_secs_f64(),
        p.longest_gap.as_secs_f64(),
        p.connections
    );
    took
}

/// One metric of a running operator (0 when it does not answer).
async fn metric(op: &OperatorProc, name: &str) -> u64 {
    let addr = op.http.clone();
    let metrics = tokio::task::spawn_blocking(move || get_blocking(&addr, "/metrics"))
        .await
        .expect("join")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// How many times a Warning event `ReconcileFailed` was recorded for the cluster (each
/// Event object counts its repetitions in `count` or `series.count`).
async fn failed_events(c: &Cluster) -> u64 {
    let out = c
        .kubectl
        .ok(&[
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            &format!("involvedObject.name={CLUSTER},reason=ReconcileFailed,type=Warning"),
            "-o",
            "json",
        ])
        .await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("events json");
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            e["count"]
                .as_u64()
                .max(e["series"]["count"].as_u64())
                .unwrap_or(1)
        })
        .sum()
}

/// (9) The API server freezes (SIGSTOP) for 20 s just as a pod is added: the operator
/// logs an error or warning meanwhile and does not crash, after SIGCONT the new pod
/// reaches every coworker list, and a `ReconcileFailed` Warning event (written by the
/// operator when a reconcile fails, here on the API timeout) is visible.
async fn api_server_freeze(c: &Cluster, op: &mut OperatorProc) {
    c.kubectl
        .ok(&["scale", &format!("ocl/{CLUSTER}"), "-n", NS, "--replicas=4"])
        .await;
    eventually("the 4th origin process started", LONG, || async {
        (origin_pods(c).iter().filter(|p| p.pid != 0).count() == 4).then_some(())
    })
    .await;
    let log_before = op.log().lines().count();
    let failed_before = failed_events(c).await;
    c.plane.apiserver.signal("STOP");
    tokio::time::sleep(Duration::from_secs(20)).await;
    c.plane.apiserver.signal("CONT");
    let t0 = Instant::now();
    let ips = wait_ready_ips(c, 4).await;
    eventually("coworker lists of 4 after SIGCONT", LONG, || {
        let ips = ips.clone();
        async move { converged(&ips).await.then_some(()) }
    })
    .await;
    let log = op.log();
    let errors: Vec<&str> = log
        .lines()
        .skip(log_before)
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .collect();
    eprintln!(
        "k8s e2e: API server frozen 20 s: new pod in every coworker list {:.2} s after SIGCONT; {} error/warning lines from the operator meanwhile",
        t0.elapsed().as_secs_f64(),
        errors.len()
    );
    for l in &errors {
        eprintln!("k8s e2e:   {l}");
    }
    assert!(
        !errors.is_empty(),
        "the operator logged no error or warning while the API server was frozen"
    );
    let t_events = Instant::now();
    eventually(
        "a ReconcileFailed Warning event after SIGCONT",
        LONG,
        || async { (failed_events(c).await > failed_before).then_some(()) },
    )
    .await;
    eprintln!(
        "k8s e2e: the ReconcileFailed Warning event visible {:.2} s after the lists converged",
        t_events.elapsed().as_secs_f64()
    );
    assert!(
        op.daemon.exited().is_none(),
        "the operator exited:\n{}",
        op.daemon.log_tail(20)
    );
}

/// (7) Leader election: `helm upgrade` enables it, two operator processes run, the
/// Lease names one; SIGKILL of the holder hands over to the other within the lease
/// duration, never two leaders at a sample, and delivery goes on (a scale converges).
async fn leader_election(c: &Cluster, op: OperatorProc) -> OperatorProc {
    drop(op);
    c.helm
        .ok(&[
            "upgrade",
            RELEASE,
            "charts/origin-cluster-operator",
            "-n",
            OPERATOR_NS,
            "--set",
            "leaderElection.enabled=true",
            "--set",
            "replicaCount=2",
        ])
        .await;
    let a = start_operator(c, "operator-le-a").await;
    let b = start_operator(c, "operator-le-b").await;
    let holder = || async {
        let h = c
            .kubectl
            .ok(&[
                "get",
                "leases",
                "-n",
                OPERATOR_NS,
                "-o",
                "jsonpath={.items[*].spec.holderIdentity}",
            ])
            .await;
        (!h.trim().is_empty()).then(|| h.trim().to_string())
    };
    let first = eventually("a Lease holder", LONG, holder).await;
    assert!(first == a.identity || first == b.identity, "holder {first}");
    let (leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
    eventually("the holder reports leading", LONG, || async {
        (metric(&leader, "origin_operator_leader").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        metric(&follower, "origin_operator_leader").await,
        0,
        "two leaders"
    );
    assert_no_forbidden(&leader);
    leader.daemon.signal("KILL");
    let t0 = Instant::now();
    eventually("the follower takes over", LONG, || async {
        (metric(&follower, "origin_operator_leader").await == 1).then_some(())
    })
    .await;
    let takeover = t0.elapsed();
    let h = eventually("the new holder in the Lease", LONG, holder).await;
    assert_eq!(h, follower.identity);
    eprintln!(
        "k8s e2e: leader SIGKILLed; the other operator leads after {:.1} s (lease 15 s)",
        takeover.as_secs_f64()
    );
    let took = scale_to(c, 3).await;
    eprintln!(
        "k8s e2e: scale to 3 under the new leader: {:.2} s",
        took.as_secs_f64()
    );
    assert_no_forbidden(&follower);
    pushes_never_interleave(&leader, &follower);
    follower
}

/// The timestamps of the "coworker list pushed" lines in an operator's log, each line
/// checked to carry that operator's identity, and the line number of its "leading" line.
fn pushes_of(op: &OperatorProc) -> (Option<usize>, Vec<(usize, String)>) {
    let log = op.log();
    let mut leading = None;
    let mut pushes = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["message"].as_str() {
            Some("leading") if leading.is_none() => leading = Some(i),
            Some("coworker list pushed") => {
                assert_eq!(
                    v["identity"].as_str(),
                    Some(op.identity.as_str()),
                    "a push logged without this operator's identity: {line}"
                );
                let ts = v["timestamp"].as_str().unwrap_or_default().to_string();
                pushes.push((i, ts));
            }
            _ => {}
        }
    }
    (leading, pushes)
}

/// (7) Each operator logs every push with its identity; between the two takeovers all
/// pushes come from one identity: none before a process leads, and the new leader's
/// first push comes after the old leader's last one.
fn pushes_never_interleave(old: &OperatorProc, new: &OperatorProc) {
    let (old_lead, old_pushes) = pushes_of(old);
    let (new_lead, new_pushes) = pushes_of(new);
    assert!(!old_pushes.is_empty(), "the first leader logged no push");
    assert!(!new_pushes.is_empty(), "the new leader logged no push");
    for (lead, pushes, who) in [
        (old_lead, &old_pushes, &old.identity),
        (new_lead, &new_pushes, &new.identity),
    ] {
        let lead = lead.unwrap_or_else(|| panic!("{who} never logged leading"));
        assert!(
            pushes.iter().all(|(line, _)| *line > lead),
            "{who} pushed before it led"
        );
    }
    let old_last = &old_pushes[old_pushes.len() - 1].1;
    let new_first = &new_pushes[0].1;
    assert!(
        new_first > old_last,
        "pushes interleave: {} pushed at {new_first}, {} last at {old_last}",
        new.identity,
        old.identity
    );
    eprintln!(
        "k8s e2e: pushes: {} by {} up to {old_last}, then {} by {} from {new_first}",
        old_pushes.len(),
        old.identity,
        new_pushes.len(),
        new.identity
    );
}

/// (11) A change of `spec.origin` rolls the StatefulSet one pod at a time: every pod is
/// replaced, at no sample are two of the three down, and the lists converge again. A
/// publisher and a player relayed through the rolling pods: when a roll cuts one of them,
/// it comes back on a Ready pod (as an encoder and a player that retry do), and the
/// player receives media after the roll.
async fn rolling_update(c: &Cluster) {
    let before: Vec<String> = origin_pods(c).into_iter().map(|p| p.uid).collect();
    assert_eq!(before.len(), 3);
    let ips = wait_ready_ips(c, 3).await;
    let mut publisher = (ips[0].clone(), publish_to(&ips[0], "rolled"));
    let mut republished = 0;
    let player = FlvPlayer::start(&ips[1], "rolled");
    player
        .wait_media("the player on pod 1 playing from pod 0", PLAYING)
        .await;
    let t0 = Instant::now();
    c.kubectl
        .ok(&[
            "patch",
            "ocl",
            CLUSTER,
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"origin":{"waitForPublisher":"6s"}}}"#,
        ])
        .await;
    let mut fewest = 3;
    let ips = loop {
        let pods = origin_pods(c);
        let ready: Vec<&PodInfo> = pods.iter().filter(|p| p.ready).collect();
        fewest = fewest.min(ready.len());
        let live = |ip: &str| ready.iter().any(|p| p.ip == ip);
        if let Some(pod) = ready.first() {
            if publisher.1.try_wait().is_some() || !live(&publisher.0) {
                publisher = (pod.ip.clone(), publish_to(&pod.ip, "rolled"));
                republished += 1;
            }
            if !live(&player.target()) {
                player.retarget(&ready[ready.len() - 1].ip);
            }
        }
        let replaced = pods.len() == 3 && pods.iter().all(|p| !before.contains(&p.uid));
        if replaced && let Some(ips) = ready_ips(c, 3) {
            break ips;
        }
        assert!(t0.elapsed() < LONG * 2, "rollout incomplete: {pods:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eventually("coworker lists after the rollout", LONG, || {
        let ips = ips.clone();
        async move { converged(&ips).await.then_some(()) }
    })
    .await;
    let rolled = t0.elapsed();
    player
        .wait_media("the player receiving media after the rollout", PLAYING)
        .await;
    let p = player.played();
    eprintln!(
        "k8s e2e: rolling update of 3 pods in {:.1} s, at least {fewest} Ready at every sample; \
         player: longest gap {:.1} s over {} connections, publisher republished {republished} times",
        rolled.as_secs_f64(),
        p.longest_gap.as_secs_f64(),
        p.connections
    );
    assert!(
        fewest >= 2,
        "more than one pod down at once during the rollout"
    );
}

/// `origin_operator_reconciles_total` of a running operator.
async fn reconciles(op: &OperatorProc) -> u64 {
    let addr = op.http.clone();
    let metrics = tokio::task::spawn_blocking(move || get_blocking(&addr, "/metrics"))
        .await
        .expect("join")
        .map(|(_, body)| body)
        .unwrap_or_default();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("origin_operator_reconciles_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// (8) A new operator process changes no child: server-side apply of unchanged objects
/// is a no-op.
async fn restart_changes_nothing(c: &Cluster, op: &mut OperatorProc) {
    let before = eventually("children", LONG, || child_versions(c)).await;
    assert!(
        reconciles(op).await >= 1,
        "the first operator never reconciled"
    );
    // The old process stops first (no leader election in the default chart).
    op.daemon.signal("TERM");
    let t0 = Instant::now();
    while op.daemon.exited().is_none() {
        assert!(t0.elapsed() < LONG, "the operator did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_no_forbidden(op);
    *op = start_operator(c, "operator-b").await;
    eventually("the new operator reconciled", LONG, || async {
        (reconciles(op).await >= 1).then_some(())
    })
    .await;
    // A window for any write the new process would make.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = child_versions(c).await.expect("children");
    assert_eq!(before, after, "an operator restart changed a child");
}

/// (10) `kubectl delete ocl`: the garbage collector removes every child, and no origin
/// process of the cluster is left.
async fn delete_collects_everything(c: &Cluster) {
    c.kubectl
        .ok(&["delete", "ocl", CLUSTER, "-n", NS, "--wait=true"])
        .await;
    eventually("children garbage-collected", LONG, || async {
        for (kind, name) in children() {
            if c.kubectl.run(&["get", kind, &name, "-n", NS]).await.success {
                return None;
            }
        }
        Some(())
    })
    .await;
    eventually("no origin process left", LONG, || async {
        origin_pods(c).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_path_on_a_real_control_plane() {
    let t0 = Instant::now();
    let c = Cluster::start().await;
    let scratch = TempDir::new("k8s-e2e").expect("temp");
    eprintln!(
        "k8s e2e: control plane RSS {} MiB (etcd + apiserver + controller-manager)",
        c.plane.rss_kib() / 1024
    );

    crds_accepted_and_enforced(&c, &scratch).await;
    let mut op = helm_install_operator(&c, "operator-a").await;
    assert_no_forbidden(&op);

    let ips = minimal_example(&c).await;
    assert_no_forbidden(&op);
    relay_across_pods(&ips).await;

    scale_steps(&c).await;
    assert_no_forbidden(&op);

    api_server_freeze(&c, &mut op).await;
    assert_no_forbidden(&op);

    restart_changes_nothing(&c, &mut op).await;
    assert_no_forbidden(&op);

    let op = leader_election(&c, op).await;
    rolling_update(&c).await;

    delete_collects_everything(&c).await;
    assert_no_forbidden(&op);
    eprintln!(
        "k8s e2e: control plane RSS at the end {} MiB; whole path {:.0} s",
        c.plane.rss_kib() / 1024,
        t0.elapsed().as_secs_f64()
    );
}
