//! [`Tool`]: kubectl or helm run against the test cluster, with a deadline.

use std::path::PathBuf;
use std::time::Duration;

/// How long one kubectl/helm call may take.
const CALL_LIMIT: Duration = Duration::from_secs(180);

/// A command-line tool pointed at the test cluster's kubeconfig.
#[derive(Clone, Debug)]
pub struct Tool {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

/// What a call printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Tool {
    /// Runs the tool with `args` (from the repository root).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "HELM_CACHE_HOME",
                self.kubeconfig.with_extension("helm-cache"),
            )
            .env(
                "HELM_CONFIG_HOME",
                self.kubeconfig.with_extension("helm-config"),
            )
            .env(
                "HELM_DATA_HOME",
                self.kubeconfig.with_extension("helm-data"),
            )
            .current_dir(crate::workspace_root())
            .kill_on_drop(true);
        let out = tokio::time::timeout(CALL_LIMIT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} took over {CALL_LIMIT:?}", self.bin.display()))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.success,
            "{} {args:?} failed:\n{}{}",
            self.bin.display(),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs and asserts failure; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.success,
            "{} {args:?} succeeded but should not:\n{}",
            self.bin.display(),
            out.stdout
        );
        out.stderr
    }
}
