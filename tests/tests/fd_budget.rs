//! The descriptor budget: an origin started with a low RLIMIT_NOFILE lowers its
//! connection limit to fit it, refuses the join past the limit at once (never leaving it
//! in the accept queue), keeps serving the players it has, and does not spin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use origin::client::Client;
use origin_cluster_tests::hostile::{self, Synth, SynthPublisher};
use origin_cluster_tests::*;

/// RLIMIT_NOFILE (soft and hard) of the origin under test.
const NOFILE: u64 = 256;

/// A join that neither plays nor is refused within this is hanging.
const JOIN_LIMIT: Duration = Duration::from_secs(30);

struct Playing {
    got: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Playing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects and plays `live/full`, counting the media messages that arrive.
async fn join(o: &OriginProc) -> Result<Playing, String> {
    let mut c = Client::connect(&o.rtmp_url("live/full"))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    c.play(None).await.map_err(|e| format!("play: {e}"))?;
    let got = Arc::new(AtomicU64::new(0));
    let counter = got.clone();
    let task = tokio::spawn(async move {
        while c.next_media().await.is_ok() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(Playing { got, task })
}

/// utime + stime of `pid`, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_descriptor_budget_a_join_is_refused_at_once_and_players_keep_playing() {
    let o = OriginProc::start(&OriginOpts {
        nofile: Some(NOFILE),
        ..OriginOpts::default()
    });
    let _publisher = SynthPublisher::start(
        &o.rtmp_url("live/full"),
        Synth {
            video_bytes: 500,
            fps: 10,
            ..Synth::default()
        },
    )
    .await
    .unwrap();

    // Players join one by one until one is refused.
    let mut players = Vec::new();
    let refusal = loop {
        assert!(
            players.len() < NOFILE as usize,
            "{} players joined with {NOFILE} descriptors: the limit does not fit them",
            players.len()
        );
        let started = Instant::now();
        match tokio::time::timeout(JOIN_LIMIT, join(&o)).await {
            Err(_) => panic!(
                "join {} neither played nor was refused in {JOIN_LIMIT:?} (left in the accept queue?)",
                players.len() + 1
            ),
            Ok(Ok(p)) => players.push(p),
            Ok(Err(e)) => break (e, started.elapsed()),
        }
    };
    eprintln!(
        "{} players joined; the next was refused in {:?}: {}",
        players.len(),
        refusal.1,
        refusal.0
    );
    // The limit was lowered to fit the descriptors, not to something useless.
    assert!(
        players.len() >= NOFILE as usize / 2,
        "only {} players joined",
        players.len()
    );
    let metrics = http("GET", &o.api_url("/metrics"), &[], "").await.text();
    assert!(
        metrics.contains("origin_connections_rejected_total{reason=\"max_connections\"} 1"),
        "the refusal was the connection limit: {metrics}"
    );

    // Every player keeps receiving media.
    let before: Vec<u64> = players
        .iter()
        .map(|p| p.got.load(Ordering::Relaxed))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while players
        .iter()
        .zip(&before)
        .any(|(p, b)| p.got.load(Ordering::Relaxed) <= *b + 10)
    {
        assert!(
            Instant::now() < deadline,
            "a player stopped receiving media once the origin was full"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One descriptor per player: written through, a player shares its socket with the
    // publisher (a duplicate per player made 10,000 players need 20,000).
    let fds = hostile::fd_count(o.pid()).unwrap();
    assert!(
        fds <= players.len() + 40,
        "{fds} descriptors for {} players",
        players.len()
    );

    // Joins keep being refused, each at once, and the origin does not spin meanwhile.
    let ticks = cpu_ticks(o.pid());
    let window = Instant::now();
    let mut refused = 0;
    while window.elapsed() < Duration::from_secs(2) {
        match tokio::time::timeout(JOIN_LIMIT, join(&o)).await {
            Err(_) => panic!("a join past the limit hung"),
            Ok(Ok(_)) => panic!("a join past the limit played"),
            Ok(Err(_)) => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spent = (cpu_ticks(o.pid()) - ticks) as f64 / 100.0;
    let wall = window.elapsed().as_secs_f64();
    eprintln!("{refused} more joins refused; origin CPU {spent:.2} s in {wall:.2} s");
    assert!(
        spent < wall / 2.0,
        "the origin used {spent:.2} CPU-seconds in {wall:.2} s while full"
    );
    assert!(_publisher.is_running());
}
