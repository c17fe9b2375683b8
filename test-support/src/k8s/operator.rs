//! [`OperatorProc`]: the real `origin-operator` binary as its own process, with the
//! arguments and environment of the chart's Deployment and the token of its
//! ServiceAccount (so the chart's RBAC is what the API server enforces).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::Daemon;

/// Path of the `origin-operator` binary, built once per test process.
pub fn operator_bin_path() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--bin",
                "origin-operator",
                "-p",
                "origin-operator",
            ])
            .current_dir(crate::workspace_root())
            .status()
            .expect("run cargo build for the operator binary");
        assert!(
            status.success(),
            "cargo build of the operator binary failed"
        );
    });
    let origin = crate::bin_path("origin");
    origin.with_file_name("origin-operator")
}

/// A running operator; killed on drop.
pub struct OperatorProc {
    pub daemon: Daemon,
    /// Address of its /healthz, /readyz and /metrics.
    pub http: String,
    pub identity: String,
}

impl OperatorProc {
    /// Starts the operator with `args` and `env` (from the Deployment), a kubeconfig
    /// holding `token`, its HTTP endpoint on a free loopback port, and `identity` as
    /// POD_NAME.
    pub fn start(
        dir: &Path,
        server: &str,
        ca: &Path,
        token: &str,
        args: &[String],
        env: &[(String, String)],
        identity: &str,
    ) -> Self {
        let kubeconfig = dir.join(format!("{identity}.kubeconfig"));
        super::write_kubeconfig(&kubeconfig, server, ca, serde_json::json!({"token": token}));
        let http = format!("127.0.0.1:{}", crate::free_port());
        let mut all = vec![
            "env".to_string(),
            "-i".into(),
            "PATH=/usr/bin:/bin".into(),
            format!("KUBECONFIG={}", kubeconfig.display()),
            format!("POD_NAME={identity}"),
        ];
        for (k, v) in env {
            if k != "OPERATOR_HTTP_LISTEN" && k != "POD_NAME" {
                all.push(format!("{k}={v}"));
            }
        }
        all.push(format!("OPERATOR_HTTP_LISTEN={http}"));
        all.push(operator_bin_path().display().to_string());
        all.extend(args.iter().cloned());
        let daemon = Daemon::spawn(identity, Path::new(&all[0]), &all[1..], dir);
        Self {
            daemon,
            http,
            identity: identity.into(),
        }
    }

    /// Waits until GET /readyz answers 200.
    pub async fn wait_ready(&mut self, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let addr = self.http.clone();
            let r = tokio::task::spawn_blocking(move || crate::get_blocking(&addr, "/readyz"))
                .await
                .ok()
                .flatten();
            if matches!(r, Some((200, _))) {
                return;
            }
            if let Some(st) = self.daemon.exited() {
                panic!("operator exited ({st}):\n{}", self.daemon.log_tail(40));
            }
            assert!(
                t0.elapsed() < limit,
                "operator not ready after {limit:?}:\n{}",
                self.daemon.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }
}
