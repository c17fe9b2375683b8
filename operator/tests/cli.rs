//! The operator binary against an API server that does not know the CRD: one clear error
//! line and a non-zero exit, not a panic or a retry loop.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_is_one_clear_line() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().fallback(not_found)).await;
    });
    let dir = std::env::temp_dir().join(format!("operator-cli-{}", std::process::id()));
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
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_origin-operator"))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(["--http-listen", "127.0.0.1:0"])
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("operator exits promptly")
        .expect("join")
        .expect("run operator");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
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
