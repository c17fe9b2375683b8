//! Plays of names nobody publishes (issue 20.3): 1,000 of them, from one client, over
//! RTMP, HTTP-FLV and HLS, against a real 3-origin cluster. Each is cheap for the origin
//! that holds it and for its coworkers: past `--max-waiting-names-per-ip` a play is
//! refused at once with a clear answer, waiting plays hold no stream, and their re-asks
//! stay within `--owner-query-rate`. Then 1,000 plays of one name, which share one round
//! of queries per re-ask interval. Then 1,000 plays spread over 16 addresses,
//! so that all of them wait: the queries each coworker answers stay bounded, and memory
//! comes back when they end. Every number is printed.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use origin::client::{Client, Event};
use origin::rtmp::amf0::Value;
use origin_cluster_tests::hostile::rss_kib;
use origin_cluster_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const PLAYS: usize = 1000;
/// `--max-waiting-names-per-ip`'s default.
const PER_IP: usize = 64;
/// `--owner-query-rate`'s default: re-ask rounds per second of one origin.
const QUERY_RATE: f64 = 100.0;
const WAIT: Duration = Duration::from_secs(6);
/// Memory a burst of plays may add to the origin holding them.
const MAX_GROWTH_KIB: u64 = 20 * 1024;

/// The answer a play got: an HTTP status, or an RTMP onStatus code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Http(u16),
    Rtmp(String),
    /// No answer, or the connection failed (the reason).
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Rtmp,
    HttpFlv,
    Hls,
}

async fn metric(o: &OriginProc, name: &str) -> f64 {
    let (_, text) = get(&o.api_addr(), "/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics of {}", o.api_addr()))
}

/// `GET path` from `src`: the status and the body (read to its end, within 15 s).
async fn get_from(src: IpAddr, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let work = async {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind {src}: {e}"))?;
        let mut s = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status line: {text:?}"))?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        Ok((status, body.unwrap_or_default()))
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .map_err(|_| "no answer within 15 s".to_string())?
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let addr: SocketAddr = addr.parse().expect("api address");
    get_from(addr.ip(), addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// Where the plays go: origin-2's address and ports.
#[derive(Clone)]
struct At {
    ip: String,
    rtmp: u16,
    flv: u16,
}

/// An RTMP play of `name`: the first onStatus code that is not Reset/Start.
async fn rtmp_play(at: &At, name: &str) -> Answer {
    let work = async {
        let url = format!("rtmp://{}:{}/live/{name}", at.ip, at.rtmp);
        let mut c = Client::connect(&url)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        c.play(None).await.map_err(|e| format!("play: {e}"))?;
        loop {
            match c.next_event().await.map_err(|e| format!("read: {e}"))? {
                Event::Status { info, .. } => {
                    let code = info.get("code").and_then(Value::as_str).unwrap_or("");
                    if !code.ends_with("Play.Reset") && !code.ends_with("Play.Start") {
                        return Ok::<_, String>(code.to_string());
                    }
                }
                Event::Media(_) => return Err("media for a name nobody publishes".into()),
                _ => {}
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), work).await {
        Ok(Ok(code)) => Answer::Rtmp(code),
        Ok(Err(e)) => Answer::Failed(e),
        Err(_) => Answer::Failed("no answer within 15 s".into()),
    }
}

async fn play(kind: Kind, at: &At, src: IpAddr, name: &str) -> Answer {
    let flv: SocketAddr = SocketAddr::new(at.ip.parse().expect("ip"), at.flv);
    let path = match kind {
        Kind::Rtmp => return rtmp_play(at, name).await,
        Kind::HttpFlv => format!("/live/{name}.flv"),
        Kind::Hls => format!("/live/{name}.m3u8"),
    };
    match get_from(src, flv, &path).await {
        Ok((status, _)) => Answer::Http(status),
        Err(e) => Answer::Failed(e),
    }
}

/// Answers by kind, counted.
fn tally(answers: &[Answer]) -> Vec<(Answer, usize)> {
    let mut out: Vec<(Answer, usize)> = Vec::new();
    for a in answers {
        match out.iter_mut().find(|(k, _)| k == a) {
            Some((_, n)) => *n += 1,
            None => out.push((a.clone(), 1)),
        }
    }
    out
}

fn count(answers: &[Answer], want: &Answer) -> usize {
    answers.iter().filter(|a| *a == want).count()
}

/// What one burst cost.
struct Cost {
    answers: Vec<Answer>,
    /// Queries each coworker answered, per second of the burst.
    rates: Vec<f64>,
    queries: Vec<f64>,
    seconds: f64,
    peak_growth_kib: u64,
    /// Plays origin-2 reported waiting at the peak.
    peak_waiting: f64,
}

/// Sends `PLAYS` plays of fresh random names to `c[2]`, from `sources` in turn, all at
/// once, and measures what they cost until the last is answered.
async fn burst(c: &[OriginProc], kind: Kind, sources: &[IpAddr], tag: &str) -> Cost {
    burst_of(c, kind, sources, &|i| {
        format!("{tag}-{}-{i}", std::process::id())
    })
    .await
}

/// Like [`burst`], play `i` asking for `name(i)`.
async fn burst_of(
    c: &[OriginProc],
    kind: Kind,
    sources: &[IpAddr],
    name: &dyn Fn(usize) -> String,
) -> Cost {
    let pid = c[2].pid();
    let base_rss = rss_kib(pid);
    let mut before = Vec::new();
    for o in &c[..2] {
        before.push(metric(o, "origin_ownership_queries_total").await);
    }
    let at = At {
        ip: c[2].ip().to_string(),
        rtmp: c[2].rtmp,
        flv: c[2].flv,
    };
    let started = Instant::now();
    let plays: Vec<_> = (0..PLAYS)
        .map(|i| {
            let (at, src) = (at.clone(), sources[i % sources.len()]);
            let name = name(i);
            tokio::spawn(async move { play(kind, &at, src, &name).await })
        })
        .collect();
    let mut peak_growth_kib = 0;
    let mut peak_waiting: f64 = 0.0;
    while !plays.iter().all(|p| p.is_finished()) {
        peak_growth_kib = peak_growth_kib.max(rss_kib(pid).saturating_sub(base_rss));
        peak_waiting = peak_waiting.max(metric(&c[2], "origin_waiting_plays").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut answers = Vec::new();
    for p in plays {
        answers.push(p.await.expect("play task"));
    }
    let mut queries = Vec::new();
    for (o, b) in c[..2].iter().zip(before) {
        queries.push(metric(o, "origin_ownership_queries_total").await - b);
    }
    let rates = queries.iter().map(|q| q / seconds).collect();
    Cost {
        answers,
        rates,
        queries,
        seconds,
        peak_growth_kib,
        peak_waiting,
    }
}

/// Waits until origin-2 has no waiting play and its RSS is back within `slack` of `base`.
async fn settles(o: &OriginProc, base_kib: u64, slack_kib: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let rss = rss_kib(o.pid());
        let waiting = metric(o, "origin_waiting_plays").await;
        if waiting == 0.0 && rss <= base_kib + slack_kib {
            return Ok(rss);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{waiting} plays still waiting, RSS {rss} KiB vs a baseline of {base_kib} KiB"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn report(kind: Kind, clients: usize, cost: &Cost) {
    println!(
        "unknown names, {kind:?}, {PLAYS} plays from {clients} address(es): {:.1} s, answers {:?}, \
         peak waiting {}, queries per coworker {:?} = {:.0} and {:.0} per second, \
         origin RSS peak growth {:.1} MiB",
        cost.seconds,
        tally(&cost.answers),
        cost.peak_waiting,
        cost.queries,
        cost.rates[0],
        cost.rates[1],
        cost.peak_growth_kib as f64 / 1024.0
    );
}

/// The most queries one coworker may answer for a burst that ran `seconds` with `first`
/// plays that waited: each waiting play's first round, plus re-asks within the rate (and
/// its one-second burst).
fn query_bound(first: usize, seconds: f64) -> f64 {
    first as f64 + QUERY_RATE * (seconds + 1.0) + 10.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_plays_of_unknown_names_cost_bounded_queries_and_memory() {
    let wait = format!("{}s", WAIT.as_secs());
    let c = start_cluster(
        3,
        &OriginOpts {
            extra: vec!["--wait-for-publisher".into(), wait],
            ..OriginOpts::default()
        },
    );
    let one: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
    // Warm-up: the first 1,000 connections of each kind size what the process keeps once
    // (the runtime's I/O and timer slabs, the allocator's pages; mimalloc returns freed
    // pages only as it is used again). The baseline is the most it keeps after any of
    // them; later bursts must come back under it, so a burst that leaked would fail.
    let mut base = 0;
    for kind in [Kind::Rtmp, Kind::HttpFlv, Kind::Hls] {
        let cold = rss_kib(c[2].pid());
        let warm = burst(&c, kind, &one, &format!("warm-{kind:?}")).await;
        let kept = settles(&c[2], 0, u64::MAX).await.expect("warm-up ends");
        println!(
            "  warm-up {kind:?}: RSS {cold} KiB before, peak growth {:.1} MiB, {kept} KiB kept",
            warm.peak_growth_kib as f64 / 1024.0
        );
        base = base.max(kept);
    }

    // From one client: PER_IP plays wait (and end "not found"), the rest are refused at
    // once with a clear answer; none of this costs a coworker more than the bound.
    for (kind, waited, refused) in [
        (
            Kind::Rtmp,
            Answer::Rtmp("NetStream.Play.StreamNotFound".into()),
            Answer::Rtmp("NetStream.Play.Failed".into()),
        ),
        (Kind::HttpFlv, Answer::Http(404), Answer::Http(429)),
        (Kind::Hls, Answer::Http(404), Answer::Http(429)),
    ] {
        let cost = burst(&c, kind, &one, &format!("{kind:?}")).await;
        report(kind, 1, &cost);
        // RTMP plays are counted per connection's address too, but the test's RTMP client
        // cannot choose its source: all come from 127.0.0.1, like the HTTP ones.
        assert_eq!(
            (
                count(&cost.answers, &waited),
                count(&cost.answers, &refused)
            ),
            (PER_IP, PLAYS - PER_IP),
            "{kind:?}: {:?}",
            tally(&cost.answers)
        );
        assert!(cost.peak_waiting <= PER_IP as f64, "{kind:?}");
        for q in &cost.queries {
            assert!(
                *q <= query_bound(PER_IP, cost.seconds),
                "{kind:?}: {q} queries"
            );
        }
        assert!(
            cost.peak_growth_kib < MAX_GROWTH_KIB,
            "{kind:?}: RSS grew {} KiB",
            cost.peak_growth_kib
        );
        let after = settles(&c[2], base, 4 * 1024).await;
        println!("  {kind:?}: back to {after:?} KiB (baseline {base} KiB)");
        after.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }

    // 1,000 plays of one name nobody publishes, from one client (viewers waiting for a
    // stream to start): none is refused, and they share one round of queries per
    // re-ask interval (500 ms), so each coworker answers about 2 a second.
    let one_name = format!("soon-{}", std::process::id());
    let cost = burst_of(&c, Kind::HttpFlv, &one, &|_| one_name.clone()).await;
    report(Kind::HttpFlv, 1, &cost);
    assert_eq!(
        count(&cost.answers, &Answer::Http(404)),
        PLAYS,
        "{:?}",
        tally(&cost.answers)
    );
    for q in &cost.queries {
        assert!(*q <= 4.0 * (cost.seconds + 1.0), "{q} queries for one name");
    }
    settles(&c[2], base, 4 * 1024)
        .await
        .expect("memory comes back after 1,000 plays of one name");

    // From 16 addresses, so all 1,000 wait at once: the first rounds go, re-asks are held
    // to the rate, and the memory comes back.
    let many: Vec<IpAddr> = (1..=16)
        .map(|i| format!("127.0.41.{i}").parse().unwrap())
        .collect();
    let cost = burst(&c, Kind::HttpFlv, &many, "many").await;
    report(Kind::HttpFlv, many.len(), &cost);
    assert_eq!(
        count(&cost.answers, &Answer::Http(404)),
        PLAYS,
        "{:?}",
        tally(&cost.answers)
    );
    assert!(
        cost.peak_waiting > (PLAYS / 2) as f64,
        "{}",
        cost.peak_waiting
    );
    for q in &cost.queries {
        assert!(*q <= query_bound(PLAYS, cost.seconds), "{q} queries");
    }
    // Each waiting play is an open HTTP connection and a publish watch (no stream).
    assert!(
        cost.peak_growth_kib < 48 * 1024,
        "1,000 waiting plays grew RSS by {} KiB",
        cost.peak_growth_kib
    );
    let after = settles(&c[2], base, 4 * 1024).await;
    println!("  all waiting: back to {after:?} KiB (baseline {base} KiB)");
    after.expect("memory comes back after 1,000 waiting plays");
}
