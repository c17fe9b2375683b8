//! [`ControlPlane`]: etcd, kube-apiserver and kube-controller-manager on loopback, with
//! generated certificates, temp directories and an admin kubeconfig; killed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::certs::Certs;
use super::process::Daemon;

/// How long the API server may take to become ready on a loaded 2-core machine.
const READY_LIMIT: Duration = Duration::from_secs(180);

/// The controllers kube-controller-manager runs (names from its `--help`).
pub const CONTROLLERS: &[&str] = &[
    "statefulset-controller",
    "endpointslice-controller",
    "garbage-collector-controller",
    "disruption-controller",
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
];

/// The service CIDR given to the API server.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Directory of the tools built by `scripts/k8s-tools` (env `ORIGIN_K8S_TOOLS`). Fails
/// (never skips) when it is not set or a binary is missing.
pub fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("ORIGIN_K8S_TOOLS").map(PathBuf::from).expect(
        "ORIGIN_K8S_TOOLS is not set: run `export ORIGIN_K8S_TOOLS=$(scripts/k8s-tools | tail -1)` \
         (scripts/test does this) to build etcd, kube-apiserver, kube-controller-manager, \
         kubectl and helm",
    );
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
        "helm",
    ] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run scripts/k8s-tools",
            dir.join(b).display()
        );
    }
    dir
}

pub struct ControlPlane {
    pub certs: Certs,
    pub server: String,
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    pub etcd: Daemon,
    pub apiserver: Daemon,
    pub controller_manager: Daemon,
    dir: PathBuf,
}

/// A kubeconfig (JSON, which is YAML) for `server` with the CA and either a client
/// certificate pair or a bearer token.
pub fn write_kubeconfig(path: &Path, server: &str, ca: &Path, user: serde_json::Value) {
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user", "namespace": "default"}}],
        "current-context": "test",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write kubeconfig");
}

fn s(v: impl Into<String>) -> String {
    v.into()
}

fn apiserver_args(certs: &Certs, etcd: &str, port: u16, dir: &Path) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    vec![
        format!("--etcd-servers={etcd}"),
        s("--bind-address=127.0.0.1"),
        s("--advertise-address=127.0.0.1"),
        // A loopback advertise address is refused by the endpoint reconciler of the
        // `kubernetes` Service, which nothing here needs.
        s("--endpoint-reconciler-type=none"),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", p(&dir.join("apiserver-certs"))),
        format!("--tls-cert-file={}", p(&certs.apiserver_crt)),
        format!("--tls-private-key-file={}", p(&certs.apiserver_key)),
        format!("--client-ca-file={}", p(&certs.ca_crt)),
        s("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
        format!("--service-account-key-file={}", p(&certs.sa_pub)),
        format!("--service-account-signing-key-file={}", p(&certs.sa_key)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        s("--authorization-mode=Node,RBAC"),
        s("--allow-privileged=true"),
        s("--profiling=false"),
        s("--v=1"),
    ]
}

fn controller_manager_args(certs: &Certs, kubeconfig: &Path) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    vec![
        format!("--kubeconfig={}", p(kubeconfig)),
        format!("--service-account-private-key-file={}", p(&certs.sa_key)),
        format!("--root-ca-file={}", p(&certs.ca_crt)),
        s("--use-service-account-credentials=true"),
        format!("--controllers={}", CONTROLLERS.join(",")),
        s("--leader-elect=false"),
        s("--bind-address=127.0.0.1"),
        s("--secure-port=0"),
        s("--concurrent-statefulset-syncs=5"),
        s("--v=1"),
    ]
}

impl ControlPlane {
    /// Starts etcd and the API server and waits for `/readyz`, then starts the
    /// controller manager.
    pub async fn start(dir: &Path) -> Self {
        let tools = tools_dir();
        let certs = Certs::generate(&dir.join("pki"));
        let (client_port, peer_port, api_port) =
            (crate::free_port(), crate::free_port(), crate::free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let etcd = Daemon::spawn(
            "etcd",
            &tools.join("etcd"),
            &[
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            ],
            dir,
        );
        let apiserver = Daemon::spawn(
            "kube-apiserver",
            &tools.join("kube-apiserver"),
            &apiserver_args(&certs, &etcd_url, api_port, dir),
            dir,
        );
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server,
            &certs.ca_crt,
            serde_json::json!({"client-certificate": certs.admin_crt, "client-key": certs.admin_key}),
        );
        let controller_manager = Daemon::spawn(
            "kube-controller-manager",
            &tools.join("kube-controller-manager"),
            &controller_manager_args(&certs, &kubeconfig),
            dir,
        );
        let mut plane = Self {
            certs,
            server,
            kubeconfig,
            etcd,
            apiserver,
            controller_manager,
            dir: dir.to_path_buf(),
        };
        plane.wait_ready().await;
        plane
    }

    /// A kube client with the admin credentials.
    pub async fn admin_client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    async fn wait_ready(&mut self) {
        let t0 = Instant::now();
        let client = self.admin_client().await;
        loop {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("request");
            let ok = tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await;
            if matches!(ok, Ok(Ok(ref body)) if body.trim() == "ok") {
                eprintln!(
                    "k8s: API server ready after {:.1} s",
                    t0.elapsed().as_secs_f64()
                );
                return;
            }
            for d in [
                &mut self.etcd,
                &mut self.apiserver,
                &mut self.controller_manager,
            ] {
                if let Some(st) = d.exited() {
                    panic!("{} exited ({st}):\n{}", d.name, d.log_errors(15));
                }
            }
            assert!(
                t0.elapsed() < READY_LIMIT,
                "kube-apiserver not ready after {READY_LIMIT:?} (last: {ok:?}):\n{}",
                self.apiserver.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Resident memory of etcd + API server + controller manager, in KiB.
    pub fn rss_kib(&self) -> u64 {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .iter()
            .filter_map(|d| d.rss_kib())
            .sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("kube client")
}
