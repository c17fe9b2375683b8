//! `origin-operator`: runs the OriginCluster controller.
//!
//! Outside a cluster it uses `KUBECONFIG` (or `~/.kube/config`); inside, the service account.

#![forbid(unsafe_code)]

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
    #[command(subcommand)]
    command: Option<Command>,
    /// Only one replica reconciles at a time, elected through a coordination.k8s.io Lease.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "origin-operator")]
    lease_name: String,
    /// Namespace of the Lease (defaults to the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a lease is valid without renewal (the holder gives up after two thirds).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "OPERATOR_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Deadline of every Kubernetes API request (e.g. `10s`, `500ms`).
    #[arg(long, env = "OPERATOR_API_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    api_timeout: Duration,
    /// Periodic reconcile and full coworker re-push, in seconds.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Coalescing window for watch events, in milliseconds.
    #[arg(long, default_value_t = 100)]
    debounce_ms: u64,
    /// Timeout of one coworker PUT attempt, in milliseconds.
    #[arg(long, default_value_t = 500)]
    push_timeout_ms: u64,
    /// Log format: `text` (coloured only when stdout is a terminal) or `json` (one object
    /// per line).
    #[arg(long, env = "OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print (as YAML) every object the operator would create for the OriginClusters in
    /// FILE, without contacting a cluster.
    Render {
        /// A manifest with one or more OriginCluster documents (`-`: stdin).
        file: std::path::PathBuf,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // Colour only on a terminal: `kubectl logs`, files and pipes get plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
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

enum Startup {
    /// Fatal: one clear line and exit.
    Fatal(anyhow::Error),
    /// Transient (timeout, connection refused, 5xx): retry with backoff.
    Retry(String),
}

fn not_installed() -> Startup {
    Startup::Fatal(anyhow::anyhow!(
        "the CustomResourceDefinition {CRD_NAME} is not installed; apply it first: \
         kubectl apply -f crds/originclusters.origincluster.dev.yaml"
    ))
}

fn transient(what: &str, e: &kube::Error) -> Startup {
    if origin_operator::apiclient::is_kube_timeout(e) {
        Startup::Retry(format!(
            "{what}: Kubernetes API server did not answer in time ({e})"
        ))
    } else {
        Startup::Retry(format!("{what}: {e}"))
    }
}

/// Checks that the CRD exists: one clear line when it is missing, retries when the API
/// server cannot be reached.
async fn check_crd(client: &Client, ns: &Option<String>) -> Result<(), Startup> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => return Err(not_installed()),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 401 => {} // probe the resource
        Err(e) => return Err(transient("cannot read CustomResourceDefinitions", &e)),
    }
    let api: Api<OriginCluster> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(not_installed()),
        Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => Err(Startup::Fatal(
            anyhow::anyhow!("cannot list OriginClusters: {}", s.message),
        )),
        Err(e) => Err(transient("cannot list OriginClusters", &e)),
    }
}

fn render(file: &std::path::Path) -> anyhow::Result<()> {
    use origin_operator::build::secret::Token;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("read stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?
    };
    let clusters = origin_operator::render::clusters_from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if clusters.is_empty() {
        anyhow::bail!("{}: no OriginCluster in it", file.display());
    }
    let mut out = String::new();
    for oc in &clusters {
        origin_operator::controller::validate(&oc.spec)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for obj in origin_operator::render::objects(oc, &Token::generate())? {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&obj)?);
        }
    }
    print!("{out}");
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Health first: /healthz answers whatever the API server does.
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_listen))?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(addr = %addr, "serving /healthz, /readyz and /metrics");
    }
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
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let client = origin_operator::apiclient::client(config, args.api_timeout)
        .context("cannot build the Kubernetes client")?;
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = tokio::select! {
            r = check_crd(&client, &args.namespace) => r,
            _ = stopped(stop_rx.clone()) => { let _ = http.await; return Ok(()); }
        };
        match attempt {
            Ok(()) => break,
            Err(Startup::Fatal(e)) => return Err(e),
            Err(Startup::Retry(msg)) => {
                tracing::error!(timeout = %humantime::format_duration(args.api_timeout), retry_in = %humantime::format_duration(delay), "{msg}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(stop_rx.clone()) => { let _ = http.await; return Ok(()); }
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
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
        let e = Arc::new(LeaderElector::new(
            Api::namespaced(client.clone(), &ns),
            args.lease_name.clone(),
            identity.clone(),
            args.lease_duration,
        ));
        tracing::info!(lease = %args.lease_name, namespace = %ns, identity = %identity, "waiting for leadership");
        tokio::select! {
            _ = e.acquire() => {}
            _ = stopped(stop_rx.clone()) => { let _ = http.await; return Ok(()); }
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
    tracing::info!(namespace = ?args.namespace, api_timeout = %humantime::format_duration(args.api_timeout), "controller starting");
    let controller = controller::run(ctx, stopped(stop_rx.clone()));
    match &elector {
        Some(e) => {
            // Losing the lease stops reconciling at once (the controller future, with every
            // reconcile in it, is dropped) and ends the process.
            tokio::select! {
                _ = controller => {}
                _ = e.keep() => {
                    metrics.leader.set(0);
                    anyhow::bail!("lost the leader lease; stopped reconciling, exiting so another replica can lead");
                }
            }
            metrics.leader.set(0);
            if let Err(err) = e.release().await {
                tracing::warn!(error = %err, "could not release the leader lease");
            } else {
                tracing::info!("released the leader lease");
            }
        }
        None => controller.await,
    }
    let _ = http.await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::Render { file }) = &args.command {
        return match render(file) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("origin-operator: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    init_tracing(args.log_format);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin-operator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
