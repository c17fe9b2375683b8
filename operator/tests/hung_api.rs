//! The operator binary against a fake API server over TCP (issue 11):
//! - a server that accepts connections and never answers: a timeout error within the
//!   configured timeout, `/healthz` answering meanwhile, and once the server answers,
//!   reconciling resumes; a call that hangs during the loop is a reconcile error (Degraded,
//!   reason ApiTimeout) that clears when the server answers again;
//! - two replicas with `--leader-elect`: one leads; on SIGTERM it releases the Lease and the
//!   standby takes over well before the lease would have expired.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use origin_test_support::{FakeApiServer, TempDir};
use serde_json::{Value, json};

const CR_COLL: &str = "/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters";
const CR: &str = "/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters/live";
const STS: &str = "/apis/apps/v1/namespaces/media/statefulsets/live";
const TIMEOUT: Duration = Duration::from_secs(1);
/// How late past [`TIMEOUT`] a timeout may show on a loaded machine (still far below the
/// minutes a request would hang without it).
const SLACK: Duration = Duration::from_secs(8);

struct Operator {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Waits for a log line containing every one of `needles`.
    fn wait_line(&mut self, needles: &[&str], limit: Duration) -> (Instant, String) {
        let t0 = Instant::now();
        loop {
            if let Some(hit) = self
                .seen
                .iter()
                .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
            {
                return hit.clone();
            }
            let left = limit.saturating_sub(t0.elapsed());
            assert!(
                !left.is_zero(),
                "no log line with {needles:?}; got:\n{}",
                self.dump()
            );
            if let Ok(l) = self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                self.seen.push(l);
            }
        }
    }

    fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn http_get(addr: &str, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn degraded(fake: &FakeApiServer) -> Option<(String, String)> {
    let oc = fake.get(CR)?;
    let c = oc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Degraded")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Starts the operator binary (each with its own identity) and collects its log lines.
fn spawn_operator(kubeconfig: &std::path::Path, extra: &[&str]) -> Operator {
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin-operator"))
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env(
            "POD_NAME",
            format!("operator-{}", NEXT_ID.fetch_add(1, Ordering::SeqCst)),
        )
        .env("RUST_LOG", "info,kube=warn")
        .env("NO_COLOR", "1")
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--namespace",
            "media",
            "--debounce-ms",
            "20",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start operator");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    Operator {
        child,
        lines: rx,
        seen: Vec::new(),
    }
}

fn write_kubeconfig(dir: &TempDir, addr: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: media\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .expect("kubeconfig");
    path
}

fn fake_with_crd() -> FakeApiServer {
    let fake = FakeApiServer::new();
    fake.put(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "originclusters.origincluster.dev"}}),
    );
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_api_server_times_out_heals_and_clears_the_condition() {
    let fake = fake_with_crd();
    fake.hang_all();
    let (addr, _server) = fake.serve_tcp().await.expect("serve");
    let dir = TempDir::new("operator-hung").expect("dir");
    let kubeconfig = write_kubeconfig(&dir, addr);
    let mut op = spawn_operator(&kubeconfig, &["--api-timeout", "1s"]);

    // 1. Start-up against a server that never answers.
    let (t_serving, line) = op.wait_line(&["serving /healthz"], Duration::from_secs(10));
    let health = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("addr="))
        .expect("addr in the line")
        .to_string();
    let (t_err, err) = op.wait_line(&["did not answer in time"], Duration::from_secs(20));
    // The configured timeout fired: not much too early, and long before the client's own
    // defaults (minutes) would have; the upper margin is for a loaded machine.
    let after = t_err.duration_since(t_serving);
    assert!(
        after >= TIMEOUT.mul_f32(0.9) && after < TIMEOUT + SLACK,
        "timeout error after {after:?} (timeout {TIMEOUT:?}): {err}"
    );
    assert!(err.contains("ERROR") && err.contains("retry_in"), "{err}");
    assert_eq!(
        http_get(&health, "/healthz"),
        200,
        "/healthz answers while the API hangs"
    );
    assert_eq!(
        http_get(&health, "/readyz"),
        503,
        "not ready before the API answered"
    );

    // 2. The server answers: the operator starts and reconciles.
    fake.put(
        CR_COLL,
        json!({"apiVersion": "origincluster.dev/v1alpha1", "kind": "OriginCluster",
               "metadata": {"name": "live", "namespace": "media", "uid": "uid-live"},
               "spec": {"replicas": 3}}),
    );
    fake.unhang();
    until(
        Duration::from_secs(15),
        "StatefulSet created after the API came back",
        || fake.get(STS).is_some(),
    )
    .await;
    until(
        Duration::from_secs(15),
        "Degraded=False after the first pass",
        || degraded(&fake) == Some(("False".into(), "AsExpected".into())),
    )
    .await;
    assert_eq!(http_get(&health, "/readyz"), 200);

    // 3. One call hangs in the loop: a reconcile error within the timeout, recorded as
    // Degraded (ApiTimeout) with a Warning event.
    fake.hang("PATCH", "/statefulsets/");
    let mut oc = fake.get(CR).expect("cluster");
    oc["spec"]["replicas"] = Value::from(4);
    let changed = Instant::now();
    fake.put(CR_COLL, oc);
    let took = until(TIMEOUT + SLACK, "Degraded=True (ApiTimeout)", || {
        degraded(&fake) == Some(("True".into(), "ApiTimeout".into()))
    })
    .await;
    assert!(took < TIMEOUT + SLACK, "Degraded after {took:?}");
    let (t_fail, fail) = op.wait_line(&["reconcile failed", "ApiTimeout"], Duration::from_secs(20));
    let failed_after = t_fail.duration_since(changed);
    assert!(
        failed_after >= TIMEOUT.mul_f32(0.9) && failed_after < TIMEOUT + SLACK,
        "after {failed_after:?}: {fail}"
    );
    until(Duration::from_secs(15), "a ReconcileFailed event", || {
        fake.requests().iter().any(|r| {
            r.path.contains("/events")
                && r.body
                    .as_ref()
                    .is_some_and(|b| b["reason"] == "ReconcileFailed")
        })
    })
    .await;

    // 4. It answers again: the backoff retry succeeds and the condition clears.
    fake.unhang();
    until(Duration::from_secs(20), "Degraded clears", || {
        degraded(&fake) == Some(("False".into(), "AsExpected".into()))
    })
    .await;
    assert_eq!(fake.get(STS).expect("sts")["spec"]["replicas"], 4);
    assert_eq!(http_get(&health, "/healthz"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_releases_the_lease_on_sigterm_and_the_standby_takes_over() {
    let fake = fake_with_crd();
    fake.put(
        CR_COLL,
        json!({"apiVersion": "origincluster.dev/v1alpha1", "kind": "OriginCluster",
               "metadata": {"name": "live", "namespace": "media", "uid": "uid-live"},
               "spec": {"replicas": 3}}),
    );
    let (addr, _server) = fake.serve_tcp().await.expect("serve");
    let dir = TempDir::new("operator-leader").expect("dir");
    let kc = write_kubeconfig(&dir, addr);
    let elect = [
        "--leader-elect",
        "--lease-namespace",
        "media",
        "--lease-duration",
        "15s",
    ];
    let mut a = spawn_operator(&kc, &elect);
    a.wait_line(&["leading"], Duration::from_secs(15));
    until(Duration::from_secs(10), "the leader reconciles", || {
        fake.get(STS).is_some()
    })
    .await;
    let mut b = spawn_operator(&kc, &elect);
    b.wait_line(&["waiting for leadership"], Duration::from_secs(15));
    // b stays a standby while a renews.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(l) = b.lines.try_recv() {
        b.seen.push(l);
    }
    assert!(
        !b.seen.iter().any(|(_, l)| l.contains(" leading")),
        "two leaders: {}",
        b.dump()
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(a.child.id().to_string())
        .status();
    let t_term = Instant::now();
    a.wait_line(&["released the leader lease"], Duration::from_secs(10));
    let (t_lead, _) = b.wait_line(&[" leading"], Duration::from_secs(14));
    let took = t_lead.duration_since(t_term);
    assert!(
        took < Duration::from_secs(9),
        "standby took over after {took:?}; without the release it would wait 15 s from its \
         last sight of a renewal (2 s apart), at least 11 s"
    );
    let status = a.child.wait().expect("a exits");
    assert!(status.success(), "{status:?}\n{}", a.dump());
    let lease = fake
        .get("/apis/coordination.k8s.io/v1/namespaces/media/leases/origin-operator")
        .expect("lease");
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
}
