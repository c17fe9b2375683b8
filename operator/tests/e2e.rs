//! End-to-end tests against a real cluster (kind, k3d, ...). Ignored by default; run with
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test -p origin-operator --test e2e -- --ignored --test-threads=1
//! ```
//!
//! They apply the CRD, run the controller in-process with the kubeconfig's credentials,
//! create an OriginCluster in `$E2E_NAMESPACE` (default `default`), scale it through the scale
//! subresource (what `kubectl scale` and an HPA use) and delete it.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use origin_operator::controller::{self, Context, Settings};
use origin_operator::crd::OriginCluster;
use origin_operator::metrics::Metrics;
use origin_operator::push::{PushConfig, Pusher};

async fn client() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("KUBECONFIG is not set: skipping the end-to-end test");
        return None;
    }
    Some(Client::try_default().await.expect("kubeconfig works"))
}

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
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "needs a real cluster (KUBECONFIG)"]
async fn create_scale_delete() {
    let Some(client) = client().await else { return };
    let ns = std::env::var("E2E_NAMESPACE").unwrap_or_else(|_| "default".into());

    // 1. CRD.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "originclusters.origincluster.dev",
        &PatchParams::apply("origin-operator-e2e").force(),
        &Patch::Apply(&OriginCluster::crd()),
    )
    .await
    .expect("apply CRD");
    eventually("CRD established", Duration::from_secs(30), || {
        let crds = crds.clone();
        async move {
            let c = crds.get("originclusters.origincluster.dev").await.ok()?;
            let established = c
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;

    // 2. Controller in-process.
    let ctx = Arc::new(Context::new(
        client.clone(),
        Pusher::new(PushConfig::default()),
        Arc::new(Metrics::new()),
        Settings {
            namespace: Some(ns.clone()),
            ..Settings::default()
        },
        Some("e2e".into()),
    ));
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(controller::run(ctx, async move {
        let _ = stop_rx.await;
    }));

    // 3. Create (an invalid one is rejected by the API server's CEL rule first).
    let api: Api<OriginCluster> = Api::namespaced(client.clone(), &ns);
    let bad: OriginCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "origincluster.dev/v1alpha1", "kind": "OriginCluster",
        "metadata": {"name": "e2e-bad"},
        "spec": {"image": "origin:e2e", "ports": {"rtmp": 1935, "api": 1935, "http": 8080}}
    }))
    .expect("bad fixture");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("duplicate ports rejected");
    assert!(err.to_string().contains("distinct"), "{err}");

    let oc: OriginCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "origincluster.dev/v1alpha1", "kind": "OriginCluster",
        "metadata": {"name": "e2e"},
        "spec": {"image": std::env::var("E2E_ORIGIN_IMAGE").unwrap_or_else(|_| "origin:e2e".into()),
                 "replicas": 2, "service": {"type": "ClusterIP"}}
    }))
    .expect("fixture");
    let _ = api.delete("e2e", &DeleteParams::default()).await;
    api.create(&PostParams::default(), &oc)
        .await
        .expect("create OriginCluster");
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually(
        "StatefulSet with 2 replicas",
        Duration::from_secs(30),
        || {
            let s = sts_api.clone();
            async move { (s.get("e2e").await.ok()?.spec?.replicas == Some(2)).then_some(()) }
        },
    )
    .await;
    for name in ["e2e-peers", "e2e-rtmp"] {
        svc_api.get(name).await.expect(name);
    }
    cm_api
        .get("e2e-coworkers")
        .await
        .expect("coworkers ConfigMap");
    let rtmp_rv = svc_api
        .get("e2e-rtmp")
        .await
        .expect("svc")
        .metadata
        .resource_version;

    // 4. Scale through the scale subresource (kubectl scale / HPA).
    api.patch_scale(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scale");
    eventually(
        "StatefulSet with 3 replicas",
        Duration::from_secs(30),
        || {
            let s = sts_api.clone();
            async move { (s.get("e2e").await.ok()?.spec?.replicas == Some(3)).then_some(()) }
        },
    )
    .await;
    let after = svc_api
        .get("e2e-rtmp")
        .await
        .expect("svc")
        .metadata
        .resource_version;
    assert_eq!(rtmp_rv, after, "scaling leaves the Service alone");
    let selector = eventually("status.selector", Duration::from_secs(30), || {
        let a = api.clone();
        async move { a.get("e2e").await.ok()?.status?.selector }
    })
    .await;
    assert!(selector.contains("app.kubernetes.io/instance=e2e"));

    // 5. Delete: owner references garbage-collect the children.
    api.delete("e2e", &DeleteParams::foreground())
        .await
        .expect("delete");
    eventually(
        "children garbage-collected",
        Duration::from_secs(90),
        || {
            let (s, c) = (sts_api.clone(), cm_api.clone());
            async move {
                let gone = s.get_opt("e2e").await.ok()?.is_none()
                    && c.get_opt("e2e-coworkers").await.ok()?.is_none();
                gone.then_some(())
            }
        },
    )
    .await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
}
