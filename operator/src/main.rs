//! `origin-operator`: runs the OriginCluster controller.
//!
//! Outside a cluster it uses `KUBECONFIG` (or `~/.kube/config`); inside, the service account.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};
use origin_operator::controller::{self, Context, Settings};
use origin_operator::crd::OriginCluster;
use origin_operator::http::{Health, router};
use origin_operator::leader::LeaderElector;
use origin_operator::metrics::Metrics;
use origin_operator::push::{PushConfig, Pusher};

const CRD_NAME: &str = "originclusters.origincluster.dev";

#[derive(Parser, Debug)]
#[command(
    name = "origin-operator",
    version,
    about = "Kubernetes operator for OriginCluster (RTMP origin clusters)"
)]
struct Args {
    /// Only one replica reconciles at a time, elected through a coordination.k8s.io Lease.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "origin-operator")]
    lease_name: String,
    /// Namespace of the Lease (defaults to the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "OPERATOR_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Periodic reconcile and full coworker re-push, in seconds.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Coalescing window for watch events, in milliseconds.
    #[arg(long, default_value_t = 100)]
    debounce_ms: u64,
    /// Timeout of one coworker PUT attempt, in milliseconds.
    #[arg(long, default_value_t = 500)]
    push_timeout_ms: u64,
    /// Log format.
    #[arg(long, env = "OPERATOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// One clear line when the CRD is missing, instead of a watcher error loop.
async fn check_crd(client: &Client, ns: &Option<String>) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => anyhow::bail!(
            "the CustomResourceDefinition {CRD_NAME} is not installed; apply it first: \
             kubectl apply -f crds/originclusters.origincluster.dev.yaml"
        ),
        Err(_) => {} // e.g. no permission to read CRDs: probe the resource instead
    }
    let api: Api<OriginCluster> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the CustomResourceDefinition {CRD_NAME} is not installed; apply it first: \
             kubectl apply -f crds/originclusters.origincluster.dev.yaml"
        ),
        Err(e) => Err(anyhow::anyhow!("cannot list OriginClusters: {e}")),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    check_crd(&client, &args.namespace).await?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = {
        let app = router(metrics.clone(), health.clone());
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        })
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    health.set_ready(true);

    let identity = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("origin-operator-{}", std::process::id()));
    let elector = if args.leader_elect {
        let ns = args
            .lease_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let e = LeaderElector::new(
            Api::namespaced(client.clone(), &ns),
            args.lease_name.clone(),
            identity.clone(),
            Duration::from_secs(15),
        );
        tracing::info!(lease = %args.lease_name, namespace = %ns, identity = %identity, "waiting for leadership");
        let mut rx = stop_rx.clone();
        tokio::select! {
            _ = e.acquire() => {}
            _ = rx.wait_for(|s| *s) => { let _ = http.await; return Ok(()); }
        }
        tracing::info!(identity = %identity, "leading");
        metrics.leader.set(1);
        Some(e)
    } else {
        None
    };

    let settings = Settings {
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        debounce: Duration::from_millis(args.debounce_ms),
        namespace: args.namespace.clone(),
        ..Settings::default()
    };
    let pusher = Pusher::new(PushConfig {
        timeout: Duration::from_millis(args.push_timeout_ms.max(10)),
        ..PushConfig::default()
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        pusher,
        metrics.clone(),
        settings,
        Some(identity),
    ));
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(e) = elector {
        tokio::spawn(async move {
            e.keep().await;
            let _ = lost_tx.send(());
        });
    } else {
        drop(lost_tx);
    }
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = {
        let mut rx = stop_rx.clone();
        let lost = lost.clone();
        async move {
            tokio::select! {
                _ = rx.wait_for(|s| *s) => {}
                r = lost_rx => if r.is_ok() { lost.store(true, std::sync::atomic::Ordering::SeqCst); }
            }
        }
    };
    tracing::info!(namespace = ?args.namespace, "controller starting");
    controller::run(ctx, shutdown).await;
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("lost the leader lease; exiting so another replica can lead");
    }
    let _ = http.await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(&args.log_format);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin-operator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
