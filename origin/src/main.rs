//! The `origin` binary: `serve` one origin, run a local `cluster` on loopback, or `drain`
//! the local origin (the pod's preStop hook).

#![deny(unsafe_op_in_unsafe_fn)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use origin::config::{Config, LogFormat, Settings};
use origin::run::{self, Listeners};

/// mimalloc instead of glibc malloc: a publisher allocates a few buffers per frame, and
/// glibc's bin management was about 40 % of the server's CPU when ingesting 300 streams
/// (`bench/README.md`, "Ingest").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (libmimalloc-sys names the
/// options on either side, 14 and 16, but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for 10 s before returning it to the OS (mimalloc's default is 1 s).
/// A stream frees its GOP at every keyframe (every 2 s) and fills it again at once: with
/// 1 s, those pages were given back and faulted in again, zeroed, which cost about a
/// third of the server's CPU when ingesting 300 streams (`bench/README.md`).
///
/// # Safety
///
/// Call it before any other thread of the process exists (first thing in `main`):
/// mimalloc's option setters are not synchronised with allocating threads.
unsafe fn tune_allocator() {
    // SAFETY: the caller guarantees no other thread runs; the option id and the value are
    // plain integers mimalloc accepts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
}

/// How often an idle runtime worker gives the memory freed on it back to the OS.
const IDLE_COLLECT: std::time::Duration = std::time::Duration::from_secs(5);

/// Called when a runtime worker is about to park (nothing to run): at most every
/// [`IDLE_COLLECT`], it lets mimalloc purge the pages freed on this thread whose purge
/// delay is over. mimalloc purges only when the thread that freed them allocates again,
/// so without this the memory of a burst (1,000 connections that came and went) stayed
/// with an origin that went quiet.
fn collect_when_idle() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| {
        let now = std::time::Instant::now();
        if last
            .get()
            .is_none_or(|t| now.duration_since(t) >= IDLE_COLLECT)
        {
            last.set(Some(now));
            // SAFETY: a plain call into the allocator on the current thread; mimalloc's
            // collect is safe to call at any time from any thread.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}

#[derive(Parser)]
#[command(
    name = "origin",
    version,
    about = "RTMP origin server for Kubernetes origin clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the origins of a local cluster listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Layout {
    /// One loopback address per origin, the same ports (like pods).
    Addresses,
    /// One address, consecutive ports.
    Ports,
}

#[derive(Subcommand)]
enum Command {
    /// Serve RTMP, HTTP-FLV and the HTTP API.
    Serve {
        /// TOML file with the same keys as the flags (`rtmp_listen = "0.0.0.0:1935"`).
        #[arg(long, env = "ORIGIN_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Start N origins on loopback, each with the others as coworkers (no Kubernetes).
    /// Options after `--` are passed to every `origin serve`, e.g.
    /// `origin cluster --replicas 3 -- --hls-low-latency --route relay`.
    Cluster {
        /// Number of origins (1 to 1000).
        #[arg(long, default_value_t = 3)]
        replicas: u16,
        /// `addresses`: origin i listens at its own loopback address (first-host + i) on
        /// the base ports, like a pod; `ports`: every origin at --host, origin i on the
        /// base ports + i.
        #[arg(long, value_enum, default_value = "addresses")]
        layout: Layout,
        /// Address of the first origin with `--layout addresses` (origin i: this + i).
        #[arg(long, default_value = "127.0.1.1")]
        first_host: std::net::Ipv4Addr,
        /// RTMP port (with `--layout ports`, origin i listens on RTMP rtmp-base+i, API
        /// api-base+i and HTTP-FLV flv-base+i). Unset bases whose ranges would overlap
        /// another range are moved past it; explicit overlapping bases are an error.
        /// [default: 1935]
        #[arg(long)]
        rtmp_base: Option<u16>,
        /// API port (with `--layout ports`, origin i: api-base+i). [default: 1985]
        #[arg(long)]
        api_base: Option<u16>,
        /// HTTP-FLV port (with `--layout ports`, origin i: flv-base+i). [default: 8080]
        #[arg(long)]
        flv_base: Option<u16>,
        /// Address every origin listens on and advertises with `--layout ports`.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Log format of the origins.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Options for every `origin serve` (after `--`).
        #[arg(last = true)]
        serve: Vec<String>,
    },
    /// Ask the local origin to drain (stop taking publishes) and optionally wait until its
    /// publishers are gone. Used as the pod's preStop hook.
    Drain {
        /// API address of the origin.
        #[arg(long, env = "ORIGIN_API_LISTEN", default_value = "127.0.0.1:1985")]
        api: String,
        /// File holding the origin's admin bearer token.
        #[arg(long, env = "ORIGIN_ADMIN_TOKEN_FILE")]
        admin_token_file: Option<PathBuf>,
        /// Wait until no publisher is left (at most the drain grace + 5 s).
        #[arg(long)]
        wait: bool,
        /// How long the origin lets publishers stay (as its own --drain-grace).
        #[arg(long, env = "ORIGIN_DRAIN_GRACE", default_value = "60s")]
        drain_grace: origin::config::Dur,
    },
}

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: logs written to a file or a pipe stay plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn read_token(path: &Option<PathBuf>) -> Result<Option<String>> {
    match path {
        None => Ok(None),
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("reading admin token file {}", p.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("admin token file {} is empty", p.display());
            }
            Ok(Some(t))
        }
    }
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> Result<()> {
    // SAFETY: first thing in `main`; the runtime and every other thread start below.
    unsafe { tune_allocator() };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_when_idle)
        .build()
        .context("starting the runtime")?
        .block_on(run_cli())
}

async fn run_cli() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, settings } => serve(config, *settings).await,
        Command::Cluster {
            replicas,
            layout,
            first_host,
            rtmp_base,
            api_base,
            flv_base,
            host,
            log_format,
            serve,
        } => {
            let plan = ClusterPlan::new(
                replicas,
                layout,
                first_host,
                [rtmp_base, api_base, flv_base],
                host,
            )?;
            cluster(plan, log_format, serve).await
        }
        Command::Drain {
            api,
            admin_token_file,
            wait,
            drain_grace,
        } => drain(api, admin_token_file, wait, drain_grace.0).await,
    }
}

async fn serve(config_file: Option<PathBuf>, settings: Settings) -> Result<()> {
    let file = match &config_file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            Settings::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))?
        }
        None => Settings::default(),
    };
    let settings = settings.or(file);
    let token = read_token(&settings.admin_token_file)?;
    let config = Config::from_settings(settings, token);
    init_logs(config.log_format);
    let listeners = Listeners::bind(&config)
        .await
        .context("binding listeners")?;
    run::run(config, listeners, stop_signal()).await?;
    Ok(())
}

/// Port bases of a local cluster whose ranges `[base, base + replicas)` never overlap.
fn port_bases(replicas: u16, wanted: [(Option<u16>, u16, &str); 3]) -> Result<[u16; 3]> {
    let n = u32::from(replicas);
    let mut taken: Vec<(u32, u32)> = Vec::new();
    let mut out = [0u16; 3];
    for (i, (explicit, default, name)) in wanted.into_iter().enumerate() {
        let mut start = u32::from(explicit.unwrap_or(default));
        loop {
            match taken.iter().find(|(s, e)| start < *e && *s < start + n) {
                None => break,
                Some(_) if explicit.is_some() => bail!(
                    "--{name}-base {start}: ports {start}..{} overlap another port range of the {replicas} origins",
                    start + n - 1
                ),
                Some((_, e)) => start = *e,
            }
        }
        if start + n > 65_536 {
            bail!(
                "{name} ports {start}..{} do not fit below 65536",
                start + n - 1
            );
        }
        taken.push((start, start + n));
        out[i] = start as u16;
    }
    Ok(out)
}

/// Waits until every origin accepts on its API port (an origin binds all its listeners
/// before it serves any); fails if one exits or never comes up.
async fn wait_started(
    children: &mut [tokio::process::Child],
    apis: &[String],
    limit: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    for (i, (child, addr)) in children.iter_mut().zip(apis).enumerate() {
        {
            loop {
                if let Some(status) = child.try_wait()? {
                    bail!("origin-{i} exited during start-up ({status}); see its log above");
                }
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("origin-{i} did not listen on {addr} within {limit:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(())
}

/// Where each origin of a local cluster listens.
struct ClusterPlan {
    /// Per origin: (host, rtmp, api, flv).
    origins: Vec<(String, u16, u16, u16)>,
    summary: String,
}

impl ClusterPlan {
    fn new(
        replicas: u16,
        layout: Layout,
        first_host: std::net::Ipv4Addr,
        bases: [Option<u16>; 3],
        host: String,
    ) -> Result<Self> {
        if replicas == 0 || replicas > 1000 {
            bail!("--replicas must be between 1 and 1000");
        }
        let wanted = |n| {
            port_bases(
                n,
                [
                    (bases[0], 1935, "rtmp"),
                    (bases[1], 1985, "api"),
                    (bases[2], 8080, "flv"),
                ],
            )
        };
        match layout {
            Layout::Ports => {
                let [r, a, f] = wanted(replicas)?;
                Ok(Self {
                    origins: (0..replicas)
                        .map(|i| (host.clone(), r + i, a + i, f + i))
                        .collect(),
                    summary: format!("{replicas} origins on {host}"),
                })
            }
            Layout::Addresses => {
                let [r, a, f] = wanted(1)?;
                let first = u32::from(first_host);
                let Some(last) = first.checked_add(u32::from(replicas) - 1) else {
                    bail!("--first-host {first_host}: {replicas} addresses do not fit");
                };
                let last = std::net::Ipv4Addr::from(last);
                Ok(Self {
                    origins: (0..u32::from(replicas))
                        .map(|i| (std::net::Ipv4Addr::from(first + i).to_string(), r, a, f))
                        .collect(),
                    summary: format!("{replicas} origins on {first_host} to {last}"),
                })
            }
        }
    }
}

async fn cluster(plan: ClusterPlan, log_format: LogFormat, serve: Vec<String>) -> Result<()> {
    let replicas = plan.origins.len();
    let exe = std::env::current_exe().context("locating the origin binary")?;
    let dir = std::env::temp_dir().join(format!("origin-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token: String = (0..32)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, &token)?;
    let all: Vec<String> = plan
        .origins
        .iter()
        .map(|(h, _, a, _)| format!("{h}:{a}"))
        .collect();
    // The list goes in a coworker file (revision 0, like flags): a thousand `--coworker`
    // flags per origin would not do.
    let coworker_file = dir.join("coworkers.json");
    let doc = origin_wire::coworkers::CoworkerDocument::new(0, all.iter().cloned(), None);
    std::fs::write(&coworker_file, doc.to_json())?;
    let mut children = Vec::new();
    for (i, (host, rtmp, api, flv)) in plan.origins.iter().enumerate() {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("serve")
            .args(["--rtmp-listen", &format!("{host}:{rtmp}")])
            .args(["--api-listen", &format!("{host}:{api}")])
            .args(["--flv-listen", &format!("{host}:{flv}")])
            .args(["--self-api", &format!("{host}:{api}")])
            .args(["--admin-token-file", &token_file.to_string_lossy()])
            .args(["--coworker-file", &coworker_file.to_string_lossy()])
            .args([
                "--log-format",
                if log_format == LogFormat::Json {
                    "json"
                } else {
                    "text"
                },
            ])
            .args(&serve)
            .kill_on_drop(true);
        children.push(
            cmd.spawn()
                .with_context(|| format!("starting origin {i}"))?,
        );
    }
    let limit = Duration::from_secs(15) + Duration::from_millis(50) * replicas as u32;
    if let Err(e) = wait_started(&mut children, &all, limit).await {
        for c in &mut children {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    println!(
        "origin cluster: {}, admin token in {}",
        plan.summary,
        token_file.display()
    );
    for (i, (host, rtmp, api, flv)) in plan.origins.iter().enumerate() {
        println!(
            "  origin-{i}: rtmp://{host}:{rtmp}  api http://{host}:{api}  http-flv http://{host}:{flv}"
        );
    }
    let (h0, r0, a0, _) = &plan.origins[0];
    let (hl, rl, _, fl) = &plan.origins[replicas - 1];
    println!();
    println!("publish (to origin-0):");
    println!(
        "  ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac -f flv rtmp://{h0}:{r0}/live/demo"
    );
    println!("play from any origin, with any player (a non-owner relays the stream):");
    println!("  ffplay rtmp://{hl}:{rl}/live/demo");
    println!("  ffplay http://{hl}:{fl}/live/demo.flv");
    println!("  ffprobe -hide_banner http://{hl}:{fl}/live/demo.flv");
    println!(
        "ask who owns it (SRS-compatible): curl 'http://{h0}:{a0}/api/v1/clusters?app=live&stream=demo'"
    );
    println!("Ctrl-C stops all origins.");
    let mut waits: futures::stream::FuturesUnordered<_> =
        children.iter_mut().map(|c| c.wait()).collect();
    use futures::StreamExt;
    let died = tokio::select! {
        _ = stop_signal() => None,
        r = waits.next() => { eprintln!("an origin exited: {r:?}; stopping the others"); Some(r) }
    };
    drop(waits);
    for c in &mut children {
        if let Some(pid) = c.id() {
            // SIGTERM so each origin shuts down gracefully.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for c in &mut children {
        let _ = tokio::time::timeout(Duration::from_secs(15), c.wait()).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if died.is_some() {
        bail!("an origin of the cluster exited unexpectedly");
    }
    Ok(())
}

async fn drain(
    api: String,
    token_file: Option<PathBuf>,
    wait: bool,
    grace: Duration,
) -> Result<()> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let token = read_token(&token_file)?.context("drain needs --admin-token-file")?;
    // An unspecified listen address (0.0.0.0:1985) is reached on loopback.
    let api = api.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(format!("http://{api}/api/v1/drain"))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())?;
    let resp = client.request(req).await.context("calling the drain API")?;
    if !resp.status().is_success() {
        bail!("drain refused: HTTP {}", resp.status());
    }
    println!("draining");
    if !wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let resp = client
            .get(format!("http://{api}/api/v1/drain").parse()?)
            .await?;
        let body = resp.into_body().collect().await?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v["publishers"].as_u64() == Some(0) {
            println!("no publishers left");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("drain grace over");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_cluster_gives_each_origin_its_own_address_or_its_own_ports() {
        let first: std::net::Ipv4Addr = "127.0.1.1".parse().unwrap();
        let plan = ClusterPlan::new(1000, Layout::Addresses, first, [None; 3], "x".into()).unwrap();
        assert_eq!(plan.origins.len(), 1000);
        assert_eq!(plan.origins[0], ("127.0.1.1".into(), 1935, 1985, 8080));
        assert_eq!(plan.origins[999], ("127.0.4.232".into(), 1935, 1985, 8080));
        let mut hosts: Vec<&String> = plan.origins.iter().map(|o| &o.0).collect();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), 1000);
        let ports =
            ClusterPlan::new(3, Layout::Ports, first, [None; 3], "127.0.0.1".into()).unwrap();
        assert_eq!(ports.origins[2], ("127.0.0.1".into(), 1937, 1987, 8082));
        assert!(ClusterPlan::new(1001, Layout::Addresses, first, [None; 3], "x".into()).is_err());
        assert!(ClusterPlan::new(0, Layout::Ports, first, [None; 3], "x".into()).is_err());
        let same = [Some(2000), Some(2000), None];
        assert!(ClusterPlan::new(2, Layout::Addresses, first, same, "x".into()).is_err());
    }

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets a plain integer option. Other test threads may run, but no
        // other test in this binary touches mimalloc's options, and an option write racing
        // allocations only changes when freed pages are purged.
        unsafe {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(
                    libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                    1000,
                    "option 15 has purge_delay's default (1 s)"
                );
            }
            tune_allocator();
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                10_000
            );
        }
    }
}
