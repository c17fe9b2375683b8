//! The operator binary: against an API server that does not know the CRD (one clear error
//! line and a non-zero exit, not a panic or a retry loop; logs fit for a pipe), its help, and
//! crdgen.

#![forbid(unsafe_code)]

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;

async fn not_found() -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#,
    )
}

/// Runs the operator against an API server that answers 404 to everything, with `args`;
/// stdout and stderr are pipes.
async fn run_against_missing_crd(args: &[&str]) -> std::process::Output {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().fallback(not_found)).await;
    });
    let dir = std::env::temp_dir().join(format!(
        "operator-cli-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .expect("kubeconfig");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_origin-operator"))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .env_remove("OPERATOR_LOG_FORMAT")
            .args(["--http-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("operator exits promptly")
        .expect("join")
        .expect("run operator");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_is_one_clear_line() {
    let out = run_against_missing_crd(&[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(
        lines[0].contains("originclusters.origincluster.dev is not installed")
            && lines[0].contains("kubectl apply"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

/// `kubectl logs` shows what the operator writes to a pipe: never ANSI colour codes; with
/// `--log-format json`, one JSON object per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_pipe_are_plain_text_or_json_lines() {
    let text = run_against_missing_crd(&["--log-format", "text"]).await;
    let log = String::from_utf8_lossy(&text.stdout);
    assert!(
        log.contains("serving /healthz, /readyz and /metrics"),
        "the start-up line is logged: {log:?}"
    );
    assert!(
        !text.stdout.contains(&0x1b),
        "ESC in a piped text log: {log:?}"
    );

    let json = run_against_missing_crd(&["--log-format", "json"]).await;
    assert!(!json.stdout.contains(&0x1b), "ESC in a piped JSON log");
    let log = String::from_utf8_lossy(&json.stdout);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let start = lines
        .iter()
        .find(|v| v["message"] == "serving /healthz, /readyz and /metrics")
        .unwrap_or_else(|| panic!("no start-up line in {log}"));
    assert_eq!(start["level"], "INFO");
    assert!(
        start["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "fields are top-level keys: {start}"
    );
}

/// Every flag of the operator that has a default shows it in `--help`.
#[test]
fn help_shows_every_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_origin-operator"))
        .arg("--help")
        .env_remove("POD_NAMESPACE")
        .env_remove("WATCH_NAMESPACE")
        .output()
        .expect("origin-operator --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, default) in [
        ("--lease-name", "origin-operator"),
        ("--lease-duration", "15s"),
        ("--http-listen", "0.0.0.0:8080"),
        ("--api-timeout", "10s"),
        ("--resync-seconds", "60"),
        ("--debounce-ms", "100"),
        ("--push-timeout-ms", "500"),
        ("--log-format", "text"),
    ] {
        let section = flag_help(&help, flag);
        assert!(
            section.contains(&format!("[default: {default}]")),
            "{flag} does not show its default {default}: {section}"
        );
    }
}

/// The help of one flag: from its line to the next flag's.
fn flag_help<'a>(help: &'a str, flag: &str) -> &'a str {
    let start = help
        .find(&format!("      {flag} "))
        .unwrap_or_else(|| panic!("{flag} not in the help:\n{help}"));
    let rest = &help[start + flag.len() + 6..];
    let end = rest.find("\n  -").map_or(rest.len(), |e| e + 1);
    &help[start..start + flag.len() + 6 + end]
}

#[test]
fn crdgen_prints_crd_and_rbac() {
    let crd = Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .output()
        .expect("crdgen");
    assert!(crd.status.success());
    let text = String::from_utf8_lossy(&crd.stdout);
    assert_eq!(
        text,
        include_str!("../../crds/originclusters.origincluster.dev.yaml")
    );
    let rbac = Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .arg("rbac")
        .output()
        .expect("crdgen rbac");
    assert!(rbac.status.success());
    let rules: serde_json::Value = serde_json::from_slice(&rbac.stdout).expect("rbac json");
    let rules = rules.as_array().expect("array");
    assert!(
        rules.iter().all(|r| r["apiGroups"].is_array()
            && r["resources"].is_array()
            && r["verbs"].is_array())
    );
    assert!(rules.iter().any(|r| r["resources"][0] == "endpointslices"));
    let bad = Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .arg("nope")
        .output()
        .expect("crdgen nope");
    assert!(!bad.status.success());
}
