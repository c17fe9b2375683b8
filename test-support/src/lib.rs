//! Test support shared by the operator's tests, the cross-component tests (`tests/`) and the
//! convergence benchmark. Never a dependency of a production crate.
//!
//! - [`fake_api::FakeApiServer`]: an in-memory Kubernetes API server (in-process or TCP).
//! - [`fake_origin::FakeOrigin`]: a cheap HTTP server with the origin's coworker API.
//! - [`k8s::Cluster`]: a real control plane (etcd, kube-apiserver, kube-controller-manager)
//!   with a pod runner in place of the kubelet.
//! - [`origin_proc::OriginProc`]: a real `origin serve` process; ports are kernel-assigned
//!   and read back from the origin's startup line, so they cannot race.

#![forbid(unsafe_code)]

pub mod fake_api;
pub mod fake_origin;
pub mod k8s;
pub mod origin_proc;
pub mod signal;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

pub use fake_api::{ApiBody, FakeApiServer, Recorded, by_name, endpoint_slice};
pub use fake_origin::FakeOrigin;
pub use origin_proc::{
    OriginOpts, OriginProc, get_blocking, parse_listening, start_cluster_at, start_cluster_on,
};
pub use signal::{Thaw, signal};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of a workspace binary (`origin`), built once per test process into the same
/// target directory as the running test executable.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bin", "origin", "-p", "origin"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build for the origin binary");
        assert!(status.success(), "cargo build of the origin binary failed");
    });
    // test executables live in <target>/<profile>/deps/
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile> directory");
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A port nobody listens on right now, for the few tests that must know a port before a
/// process binds it (prefer port 0 and reading the bound address back). Ports come from a
/// per-process counter below the kernel's ephemeral range, so parallel tests (and their
/// clients' source ports) never get the same port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next =
        NEXT.get_or_init(|| AtomicU16::new(20_000 + (std::process::id() % 100) as u16 * 120));
    loop {
        let p = next.fetch_add(1, Ordering::Relaxed);
        if p >= 32_000 {
            next.store(20_000, Ordering::Relaxed);
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// `GET /api/v1/coworkers` of an origin (real or fake): the JSON document.
pub async fn fetch_coworkers(addr: &str) -> Option<serde_json::Value> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri: http::Uri = format!("http://{addr}{}", origin_wire::paths::COWORKERS)
        .parse()
        .ok()?;
    let fut = async {
        let resp = client.get(uri).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()
        .flatten()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
