//! Convergence benchmark: time from an EndpointSlice event to every reachable origin serving
//! the new coworker revision, for 10 and 50 origins, and for 50 origins of which 5 listed
//! addresses are black-holed (accept, never answer).
//!
//! The operator's real controller loop (production debounce and push settings) runs against the
//! in-memory API server; the slice change is a watch event. Origins are real `origin serve`
//! processes on loopback addresses 127.0.1.x when the binary is found (`--origin-bin`,
//! `$ORIGIN_BIN`, or next to this binary), else lightweight real HTTP servers implementing the
//! same coworker API. The output says which.
//!
//! `cargo bench -p origin-operator --bench convergence-bench -- [--sizes 10,50,50/5] [--rounds 5]`
//! (`N/K`: N listed origins, K of them black-holed).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use origin_operator::build::secret::{self, Token};
use origin_operator::controller::{self, Context, Settings};
use origin_operator::crd::{OriginCluster, OriginClusterSpec};
use origin_operator::metrics::Metrics;
use origin_operator::push::{PushConfig, Pusher};
use origin_test_support::{
    FakeApiServer, FakeOrigin, OriginOpts, OriginProc, endpoint_slice, fetch_coworkers,
};

const NS: &str = "bench";
const NAME: &str = "bench";

struct Args {
    /// (listed origins, black-holed among them)
    sizes: Vec<(usize, usize)>,
    rounds: usize,
    origin_bin: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![(10, 0), (50, 0), (50, 5)],
        rounds: 5,
        origin_bin: std::env::var_os("ORIGIN_BIN").map(PathBuf::from),
    };
    let mut force_fake = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                let v = it.next().ok_or("--sizes needs a value")?;
                a.sizes = v
                    .split(',')
                    .map(|s| {
                        let (n, k) = s.trim().split_once('/').unwrap_or((s.trim(), "0"));
                        match (n.parse::<usize>(), k.parse::<usize>()) {
                            (Ok(n), Ok(k)) if k < n => Ok((n, k)),
                            _ => Err(format!("bad size {s} (N or N/K with K < N)")),
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => {
                a.rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--rounds needs a number")?
            }
            "--origin-bin" => a.origin_bin = it.next().map(PathBuf::from),
            "--fake-origins" => force_fake = true,
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if force_fake {
        a.origin_bin = None;
    } else if a.origin_bin.is_none() {
        // In the same target directory and profile (benches run from <profile>/deps/).
        a.origin_bin = std::env::current_exe().ok().and_then(|e| {
            e.ancestors()
                .skip(1)
                .take(2)
                .map(|d| d.join("origin"))
                .find(|p| p.is_file())
        });
    }
    Ok(a)
}

enum Origins {
    Real(Vec<OriginProc>),
    Fake(Vec<FakeOrigin>),
}

impl Origins {
    fn api_addrs(&self) -> Vec<String> {
        match self {
            Origins::Real(v) => v.iter().map(OriginProc::api_addr).collect(),
            Origins::Fake(v) => v.iter().map(|o| o.addr.clone()).collect(),
        }
    }
}

/// A listed address that accepts connections and never answers.
async fn black_hole(ip: &str) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let l = tokio::net::TcpListener::bind((ip, 0))
        .await
        .map_err(|e| format!("black hole on {ip}: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    Ok((addr, task))
}

fn cluster(n: usize) -> OriginCluster {
    let mut oc = OriginCluster::new(
        NAME,
        OriginClusterSpec {
            replicas: n as i32,
            image: "origin:bench".into(),
            ..OriginClusterSpec::default()
        },
    );
    oc.metadata.namespace = Some(NS.into());
    oc.metadata.uid = Some("bench-uid".into());
    oc
}

/// Polls every address until it serves revision ≥ `rev`; returns when all do.
async fn wait_all(addrs: &[String], rev: u64, limit: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let waits = addrs.iter().map(|a| async move {
        loop {
            let got = fetch_coworkers(a)
                .await
                .and_then(|v| v["revision"].as_u64())
                .unwrap_or(0);
            if got >= rev {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(format!("{a} stuck at revision {got} < {rev}"));
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    for r in futures::future::join_all(waits).await {
        r?;
    }
    Ok(t0.elapsed())
}

/// `n` listed origins, the last `holes` of them black-holed.
async fn run_size(
    n: usize,
    holes: usize,
    rounds: usize,
    bin: Option<&PathBuf>,
    dir: &std::path::Path,
) -> Result<Vec<Duration>, String> {
    let fake = FakeApiServer::new();
    let (client, _task) = fake.client();
    let oc = cluster(n);
    let token = Token::generate();
    fake.put(
        "/api/v1/namespaces/bench/secrets",
        serde_json::to_value(secret::build(&oc, &token)).map_err(|e| e.to_string())?,
    );
    let token_file = dir.join(format!("token-{n}-{holes}"));
    std::fs::write(&token_file, token.expose()).map_err(|e| e.to_string())?;

    let live = n - holes;
    let ips: Vec<String> = (0..n).map(|i| format!("127.0.1.{}", i + 1)).collect();
    let origins = match bin {
        Some(bin) => {
            let opts = OriginOpts {
                token_file: Some(token_file.clone()),
                ..OriginOpts::default()
            };
            let mut v = Vec::new();
            for ip in &ips[..live] {
                let (bin, ip, opts) = (bin.clone(), ip.clone(), opts.clone());
                v.push(
                    tokio::task::spawn_blocking(move || {
                        OriginProc::spawn(&bin, &ip, (0, 0, 0), &opts)
                            .map_err(|e| format!("origin on {ip}: {e}"))
                    })
                    .await
                    .map_err(|e| e.to_string())??,
                );
            }
            Origins::Real(v)
        }
        None => {
            let mut v = Vec::new();
            for ip in &ips[..live] {
                v.push(
                    FakeOrigin::start_on(&format!("{ip}:0"), token.expose())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            Origins::Fake(v)
        }
    };
    let addrs = origins.api_addrs();
    let mut hole_tasks = Vec::new();
    let mut listed = addrs.clone();
    for ip in &ips[live..] {
        let (a, t) = black_hole(ip).await?;
        listed.push(a);
        hole_tasks.push(t);
    }

    fake.put(
        "/apis/origincluster.dev/v1alpha1/namespaces/bench/originclusters",
        serde_json::to_value(&oc).map_err(|e| e.to_string())?,
    );
    let ctx = Arc::new(Context::new(
        client,
        Pusher::new(PushConfig::default()),
        Arc::new(Metrics::new()),
        Settings::default(),
        None,
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(controller::run(ctx.clone(), async move {
        let _ = stop_rx.await;
    }));

    // One slice per listed address (each has its own port); the measured change flips the
    // readiness of the first origin's endpoint.
    let slices = "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices";
    let slice = |i: usize, ready: bool| {
        let (ip, port) = listed[i].rsplit_once(':').unwrap_or(("", "0"));
        let port: u16 = port.parse().unwrap_or(0);
        let pod = format!("{NAME}-{i}");
        endpoint_slice(
            NAME,
            NS,
            &format!("bench-peers-{i}"),
            port,
            &[(&pod, ip, ready)],
        )
    };
    for i in 0..n {
        fake.put(slices, slice(i, true));
    }
    // Warm-up: first list (not measured).
    let mut rev = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rev == 0
        || wait_all(&addrs, rev, Duration::from_millis(10))
            .await
            .is_err()
    {
        if Instant::now() > deadline {
            return Err("warm-up did not converge".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        rev = ctx.revision(NS, NAME).unwrap_or(0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut times = Vec::new();
    for round in 0..rounds {
        // Alternate: origin 0 goes not-ready / comes back.
        let ready0 = round % 2 == 1;
        let expect = rev + 1;
        let t0 = Instant::now();
        fake.put(slices, slice(0, ready0));
        let reachable = if ready0 { &addrs[..] } else { &addrs[1..] };
        wait_all(reachable, expect, Duration::from_secs(10)).await?;
        times.push(t0.elapsed());
        rev = expect;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), runner).await;
    for t in hole_tasks {
        t.abort();
    }
    drop(origins);
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("convergence-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let dir = std::env::temp_dir().join(format!("convergence-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("convergence-bench: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match &args.origin_bin {
        Some(b) => println!("origins: real origin processes ({})", b.display()),
        None => println!(
            "origins: lightweight axum servers with the origin coworker API (origin binary not found)"
        ),
    }
    println!(
        "measured: EndpointSlice watch event -> every reachable listed origin serves the new revision (GET /api/v1/coworkers); \
         operator defaults: debounce {} ms, push timeout 500 ms",
        Settings::default().debounce.as_millis()
    );
    println!(
        "{:>8} {:>12} {:>7} {:>9} {:>9} {:>9}",
        "origins", "black-holed", "rounds", "min_ms", "median_ms", "max_ms"
    );
    let mut ok = true;
    for &(n, holes) in &args.sizes {
        let n = n.max(holes + 2);
        match run_size(n, holes, args.rounds.max(1), args.origin_bin.as_ref(), &dir).await {
            Ok(mut t) => {
                t.sort();
                println!(
                    "{:>8} {:>12} {:>7} {:>9.1} {:>9.1} {:>9.1}",
                    n,
                    holes,
                    t.len(),
                    ms(t[0]),
                    ms(t[t.len() / 2]),
                    ms(t[t.len() - 1])
                );
            }
            Err(e) => {
                ok = false;
                println!("{n:>8} {holes:>12} failed: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
