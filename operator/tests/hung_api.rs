//! The operator binary against an API server that accepts connections and never answers
//! (issue 11): a timeout error within the configured timeout, `/healthz` answering meanwhile,
//! and once the server answers, reconciling resumes; a call that hangs during the loop is a
//! reconcile error (Degraded, reason ApiTimeout) that clears when the server answers again.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use origin_test_support::{FakeApiServer, TempDir};
use serde_json::{Value, json};

const CR_COLL: &str = "/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters";
const CR: &str = "/apis/origincluster.dev/v1alpha1/namespaces/media/originclusters/live";
const STS: &str = "/apis/apps/v1/namespaces/media/statefulsets/live";
const TIMEOUT: Duration = Duration::from_secs(1);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_api_server_times_out_heals_and_clears_the_condition() {
    let fake = FakeApiServer::new();
    fake.put(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "originclusters.origincluster.dev"}}),
    );
    fake.hang_all();
    let (addr, _server) = fake.serve_tcp().await.expect("serve");
    let dir = TempDir::new("operator-hung").expect("dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: media\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .expect("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info,kube=warn")
        .env("NO_COLOR", "1")
        .args(["--http-listen", "127.0.0.1:0", "--namespace", "media"])
        .args(["--api-timeout", "1s", "--debounce-ms", "20"])
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
    let mut op = Operator {
        child,
        lines: rx,
        seen: Vec::new(),
    };

    // 1. Start-up against a server that never answers.
    let (t_serving, line) = op.wait_line(&["serving /healthz"], Duration::from_secs(10));
    let health = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("addr="))
        .expect("addr in the line")
        .to_string();
    let (t_err, err) = op.wait_line(&["did not answer in time"], Duration::from_secs(10));
    let after = t_err.duration_since(t_serving);
    assert!(
        after >= TIMEOUT.mul_f32(0.9) && after < TIMEOUT + Duration::from_millis(1500),
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
        Duration::from_secs(5),
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
    let took = until(
        Duration::from_secs(10),
        "Degraded=True (ApiTimeout)",
        || degraded(&fake) == Some(("True".into(), "ApiTimeout".into())),
    )
    .await;
    assert!(
        took < TIMEOUT + Duration::from_millis(1500),
        "Degraded after {took:?}"
    );
    let (t_fail, fail) = op.wait_line(&["reconcile failed", "ApiTimeout"], Duration::from_secs(5));
    assert!(
        t_fail.duration_since(changed) < TIMEOUT + Duration::from_millis(1500),
        "{fail}"
    );
    let warned = fake.requests().iter().any(|r| {
        r.path.contains("/events")
            && r.body
                .as_ref()
                .is_some_and(|b| b["reason"] == "ReconcileFailed")
    });
    assert!(warned, "a ReconcileFailed event");

    // 4. It answers again: the backoff retry succeeds and the condition clears.
    fake.unhang();
    until(Duration::from_secs(10), "Degraded clears", || {
        degraded(&fake) == Some(("False".into(), "AsExpected".into()))
    })
    .await;
    assert_eq!(fake.get(STS).expect("sts")["spec"]["replicas"], 4);
    assert_eq!(http_get(&health, "/healthz"), 200);
}
