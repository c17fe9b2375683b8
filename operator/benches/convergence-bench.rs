//! Convergence benchmark: time from an EndpointSlice event to every origin serving the new
//! coworker revision, for 10 and 50 origins.
//!
//! The operator's real controller loop (production debounce and push settings) runs against the
//! in-memory API server; the slice change is a watch event. Origins are real `origin serve`
//! processes on loopback addresses 127.0.1.x when the binary is found (`--origin-bin`,
//! `$ORIGIN_BIN`, or next to this binary), else lightweight real HTTP servers implementing the
//! same coworker API. The output says which.
//!
//! `cargo run --release -p origin-operator --bin convergence-bench -- [--sizes 10,50] [--rounds 5]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use origin_operator::build::secret::{self, Token};
use origin_operator::controller::{self, Context, Settings};
use origin_operator::metrics::Metrics;
use origin_operator::push::{PushConfig, Pusher};
use origin_operator::testing::{
    FakeApiServer, FakeOrigin, OriginProcess, endpoint_slice, free_port, loopback_cluster,
};

const NS: &str = "bench";
const NAME: &str = "bench";

struct Args {
    sizes: Vec<usize>,
    rounds: usize,
    origin_bin: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![10, 50],
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
                    .map(|s| s.trim().parse().map_err(|_| format!("bad size {s}")))
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
        // Next to this binary (same target directory and profile).
        a.origin_bin = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("origin")))
            .filter(|p| p.is_file());
    }
    Ok(a)
}

enum Origins {
    Real(Vec<OriginProcess>),
    Fake(Vec<FakeOrigin>),
}

impl Origins {
    fn api_addrs(&self) -> Vec<String> {
        match self {
            Origins::Real(v) => v.iter().map(|o| o.api.clone()).collect(),
            Origins::Fake(v) => v.iter().map(|o| o.addr.clone()).collect(),
        }
    }
}

/// Polls every address until it serves revision ≥ `rev`; returns when all do.
async fn wait_all(addrs: &[String], rev: u64, limit: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let waits = addrs.iter().map(|a| async move {
        loop {
            let got = origin_operator::testing::fetch_coworkers(a)
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

async fn run_size(
    n: usize,
    rounds: usize,
    bin: Option<&PathBuf>,
    dir: &std::path::Path,
) -> Result<Vec<Duration>, String> {
    let fake = FakeApiServer::new();
    let (client, _task) = fake.client();
    let api_port = free_port().map_err(|e| e.to_string())?;
    let rtmp_port = free_port().map_err(|e| e.to_string())?;
    let flv_port = free_port().map_err(|e| e.to_string())?;
    let oc = loopback_cluster(NAME, NS, "bench-uid", n, rtmp_port, api_port, flv_port);
    let token = Token::generate();
    fake.put(
        "/api/v1/namespaces/bench/secrets",
        serde_json::to_value(secret::build(&oc, &token)).map_err(|e| e.to_string())?,
    );
    let token_file = dir.join(format!("token-{n}"));
    std::fs::write(&token_file, token.expose()).map_err(|e| e.to_string())?;

    let ips: Vec<String> = (0..n).map(|i| format!("127.0.1.{}", i + 1)).collect();
    let origins = match bin {
        Some(bin) => {
            let mut v = Vec::new();
            for ip in &ips {
                v.push(
                    OriginProcess::start(
                        bin,
                        format!("{ip}:{api_port}"),
                        format!("{ip}:{rtmp_port}"),
                        format!("{ip}:{flv_port}"),
                        &token_file,
                    )
                    .await
                    .map_err(|e| format!("origin on {ip}: {e}"))?,
                );
            }
            Origins::Real(v)
        }
        None => {
            let mut v = Vec::new();
            for ip in &ips {
                v.push(
                    FakeOrigin::start_on(&format!("{ip}:{api_port}"), token.expose())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            Origins::Fake(v)
        }
    };
    let addrs = origins.api_addrs();

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

    let pods: Vec<String> = (0..n).map(|i| format!("{NAME}-{i}")).collect();
    let slice = |ready_last: bool| {
        let eps: Vec<(&str, &str, bool)> = pods
            .iter()
            .zip(&ips)
            .enumerate()
            .map(|(i, (p, ip))| (p.as_str(), ip.as_str(), i + 1 < n || ready_last))
            .collect();
        endpoint_slice(NAME, NS, "bench-peers-abcde", api_port, &eps)
    };
    let slices = "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices";
    // Warm-up: first list (not measured).
    fake.put(slices, slice(true));
    let mut rev = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
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
        // Alternate: the last origin goes not-ready / comes back.
        let ready_last = round % 2 == 1;
        let expect = rev + 1;
        let t0 = Instant::now();
        fake.put(slices, slice(ready_last));
        let listed = if ready_last {
            &addrs[..]
        } else {
            &addrs[..n - 1]
        };
        wait_all(listed, expect, Duration::from_secs(10)).await?;
        times.push(t0.elapsed());
        rev = expect;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), runner).await;
    if let Origins::Real(mut v) = origins {
        for o in &mut v {
            o.stop().await;
        }
    }
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
        "measured: EndpointSlice watch event -> every listed origin serves the new revision (GET /api/v1/coworkers); \
         operator defaults: debounce {} ms, push timeout 500 ms",
        Settings::default().debounce.as_millis()
    );
    println!(
        "{:>8} {:>7} {:>9} {:>9} {:>9}",
        "origins", "rounds", "min_ms", "median_ms", "max_ms"
    );
    let mut ok = true;
    for &n in &args.sizes {
        match run_size(n.max(2), args.rounds.max(1), args.origin_bin.as_ref(), &dir).await {
            Ok(mut t) => {
                t.sort();
                println!(
                    "{:>8} {:>7} {:>9.1} {:>9.1} {:>9.1}",
                    n,
                    t.len(),
                    ms(t[0]),
                    ms(t[t.len() / 2]),
                    ms(t[t.len() - 1])
                );
            }
            Err(e) => {
                ok = false;
                println!("{n:>8} failed: {e}");
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
