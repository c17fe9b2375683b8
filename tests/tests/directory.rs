//! The ownership directory (issue 19, docs/architecture.md, "Ownership directory") with real
//! origin processes, each on its own loopback address like a pod: cold plays find their
//! owner with at most two requests, a frozen or killed directory origin costs plays and
//! publishes nothing but time, two encoders racing for one name get exactly one publish,
//! an owner killed without unpublishing is replaced and its relayed players resume, and a stream
//! of an SRS peer (which only speaks `/api/v1/clusters`) is still found by the broadcast.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use origin::client::Client;
use origin::cluster::directory::directory_origins;
use origin::media::StreamKey;
use origin_cluster_tests::hostile::{Synth, SynthPublisher};
use origin_cluster_tests::*;
use origin_wire::addr::HostPort;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "directory-token";

/// Loopback addresses 127.0.`net`.1 to 127.0.`net`.`n`.
fn ips(net: u8, n: u8) -> Vec<String> {
    (1..=n).map(|i| format!("127.0.{net}.{i}")).collect()
}

/// `n` origins on their own addresses in 127.0.`net`.0/24, with the admin token (the
/// directory needs it).
fn cluster_with(net: u8, n: u8, extra: &[&str], coworkers: Vec<String>) -> Vec<OriginProc> {
    start_cluster_spread(
        &ips(net, n),
        &OriginOpts {
            token_file: Some(token_file(TOKEN)),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            coworkers,
            ..OriginOpts::default()
        },
    )
}

fn cluster(net: u8, n: u8, extra: &[&str]) -> Vec<OriginProc> {
    cluster_with(net, n, extra, Vec::new())
}

fn key(stream: &str) -> StreamKey {
    StreamKey::new(origin_wire::DEFAULT_VHOST, "live", stream)
}

/// Indices of `stream`'s directory origins in `c` (best first), as every origin computes
/// them from the coworker list (plus `extra` members that are not in `c`).
fn directory_of(c: &[OriginProc], extra: &[String], stream: &str) -> Vec<Option<usize>> {
    let addrs: Vec<String> = c.iter().map(|o| o.api_addr()).collect();
    let members: Vec<HostPort> = addrs
        .iter()
        .chain(extra)
        .map(|a| HostPort::parse(a).expect("address"))
        .collect();
    directory_origins(&key(stream), &members)
        .into_iter()
        .map(|m| addrs.iter().position(|a| *a == m.to_string()))
        .collect()
}

/// A stream name whose first directory origin is `first` and that `avoid` do not hold.
fn name_held_by(c: &[OriginProc], first: usize, avoid: &[usize], tag: &str) -> String {
    (0..10_000)
        .map(|i| format!("{tag}-{i}"))
        .find(|s| {
            let d = directory_of(c, &[], s);
            d[0] == Some(first) && d.iter().flatten().all(|x| !avoid.contains(x))
        })
        .expect("a name with that directory")
}

/// The sum over `c` of the samples of `name` (all label sets).
async fn metric_sum(c: &[OriginProc], name: &str) -> f64 {
    let mut sum = 0.0;
    for o in c {
        let text = http("GET", &o.api_url("/metrics"), &[], "").await.text();
        sum += text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse::<f64>().ok()
            })
            .sum::<f64>();
    }
    sum
}

/// Plays `url` over RTMP and waits for its first media message; the time it took.
async fn first_media(url: &str, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let work = async {
        let mut p = Client::connect(url).await.map_err(|e| e.to_string())?;
        p.play(None).await.map_err(|e| e.to_string())?;
        p.next_media().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(started.elapsed())
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| format!("no media from {url} within {limit:?}"))?
}

async fn publish(o: &OriginProc, stream: &str) -> Result<SynthPublisher, String> {
    SynthPublisher::start(&o.rtmp_url(&format!("live/{stream}")), Synth::default()).await
}

async fn published(o: &OriginProc, stream: &str) {
    assert!(
        wait_published(
            &o.api_url("/api/v1/streams"),
            "live",
            stream,
            Duration::from_secs(15)
        )
        .await,
        "{stream} not published on {}",
        o.api_addr()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What 30 cold plays cost a cluster.
struct ColdPlays {
    plays: usize,
    lookups: f64,
    queries: f64,
    /// Mean time from a play's question to its owner known, seconds.
    decision: f64,
    times: Vec<Duration>,
}

impl ColdPlays {
    fn print(&self, what: &str) {
        println!(
            "{what}, 20 origins, {} cold RTMP plays through relay: {:.2} directory lookups and \
             {:.2} ownership queries per play; decision mean {:.2} ms; first media p50 {:?} p99 {:?}",
            self.plays,
            self.lookups / self.plays as f64,
            self.queries / self.plays as f64,
            self.decision * 1e3,
            percentile(&self.times, 0.5),
            percentile(&self.times, 0.99),
        );
    }
}

/// Publishes 5 streams on origins 0 to 4 of `c`, then plays each (origin, stream) pair
/// of the others once, one at a time, 30 in all, and counts what the plays cost.
async fn cold_plays(c: &[OriginProc], tag: &str) -> ColdPlays {
    let streams: Vec<String> = (0..5).map(|i| format!("{tag}-{i}")).collect();
    let mut publishers = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        publishers.push(publish(&c[i], s).await.expect("publish accepted"));
        published(&c[i], s).await;
    }
    let lookups = "origin_directory_lookups_total";
    let queries = "origin_ownership_queries_total";
    let sum = "origin_discovery_latency_seconds_sum";
    let count = "origin_discovery_latency_seconds_count";
    let before = [
        metric_sum(c, lookups).await,
        metric_sum(c, queries).await,
        metric_sum(c, sum).await,
        metric_sum(c, count).await,
    ];
    let mut times = Vec::new();
    'outer: for (o, player) in c.iter().enumerate().skip(5) {
        for (i, s) in streams.iter().enumerate() {
            if (o + i) % 2 == 1 {
                continue;
            }
            let t = first_media(
                &player.rtmp_url(&format!("live/{s}")),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|e| panic!("cold play of {s} on origin {o}: {e}"));
            times.push(t);
            if times.len() == 30 {
                break 'outer;
            }
        }
    }
    let after = [
        metric_sum(c, lookups).await,
        metric_sum(c, queries).await,
        metric_sum(c, sum).await,
        metric_sum(c, count).await,
    ];
    times.sort();
    let decided = after[3] - before[3];
    ColdPlays {
        plays: times.len(),
        lookups: after[0] - before[0],
        queries: after[1] - before[1],
        decision: if decided > 0.0 {
            (after[2] - before[2]) / decided
        } else {
            0.0
        },
        times,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_plays_find_their_owner_through_the_directory_with_at_most_two_requests() {
    let c = cluster(60, 20, &["--route", "relay"]);
    let directory = cold_plays(&c, "cold").await;
    directory.print("directory");
    drop(c);
    // The same plays with the broadcast, for comparison (numbers only).
    let c = cluster(67, 20, &["--route", "relay", "--discovery", "broadcast"]);
    let broadcast = cold_plays(&c, "cold").await;
    broadcast.print("broadcast");
    assert_eq!(
        directory.queries, 0.0,
        "no play fell back to asking every coworker"
    );
    assert!(
        directory.lookups <= 2.0 * directory.plays as f64,
        "{} directory lookups for {} cold plays",
        directory.lookups,
        directory.plays
    );
    assert_eq!(
        broadcast.lookups, 0.0,
        "the broadcast mode asks no directory"
    );
    assert!(
        broadcast.queries > 2.0 * broadcast.plays as f64,
        "the broadcast asks many coworkers per play: {}",
        broadcast.queries
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plays_and_publishes_survive_a_frozen_and_a_killed_directory_origin() {
    let mut c = cluster(61, 20, &["--route", "relay"]);
    let (frozen, killed) = (3, 7);
    // Names whose first directory origin is the one that will fail; published (and so
    // claimed there) before it fails, on origins that are not directory origins of it.
    let before_freeze = name_held_by(&c, frozen, &[killed, 10], "f");
    let before_kill = name_held_by(&c, killed, &[frozen, 11], "k");
    let _p1 = publish(&c[10], &before_freeze).await.expect("publish");
    published(&c[10], &before_freeze).await;
    let _p2 = publish(&c[11], &before_kill).await.expect("publish");
    published(&c[11], &before_kill).await;

    signal(c[frozen].pid(), "STOP");
    let _thaw = Thaw(c[frozen].pid());
    let t = first_media(
        &c[15].rtmp_url(&format!("live/{before_freeze}")),
        Duration::from_secs(10),
    )
    .await
    .expect("play of a name whose directory origin is frozen");
    println!("first directory origin frozen: cold play's first media after {t:?}");
    // A new name whose first directory origin is frozen: its publish is decided by the
    // second one (after the discovery timeout), and a second encoder is refused.
    let new_frozen = name_held_by(&c, frozen, &[killed, 12, 13, 16], "nf");
    let started = Instant::now();
    let _p3 = publish(&c[12], &new_frozen)
        .await
        .expect("publish while the first directory origin is frozen");
    println!(
        "publish with the first directory origin frozen took {:?}",
        started.elapsed()
    );
    published(&c[12], &new_frozen).await;
    let second = publish(&c[13], &new_frozen).await;
    assert!(
        second.is_err(),
        "a second encoder of {new_frozen} was accepted"
    );
    let t = first_media(
        &c[16].rtmp_url(&format!("live/{new_frozen}")),
        Duration::from_secs(10),
    )
    .await
    .expect("play of a name published while its directory origin is frozen");
    println!("... and its cold play's first media after {t:?}");

    c[killed].kill();
    let t = first_media(
        &c[17].rtmp_url(&format!("live/{before_kill}")),
        Duration::from_secs(10),
    )
    .await
    .expect("play of a name whose directory origin was killed");
    println!("first directory origin killed: cold play's first media after {t:?}");
    let new_killed = name_held_by(&c, killed, &[frozen, 14, 18], "nk");
    let _p4 = publish(&c[14], &new_killed)
        .await
        .expect("publish while the first directory origin is dead");
    published(&c[14], &new_killed).await;
    let t = first_media(
        &c[18].rtmp_url(&format!("live/{new_killed}")),
        Duration::from_secs(10),
    )
    .await
    .expect("play of a name published while its directory origin is dead");
    println!("... and its cold play's first media after {t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_encoders_publishing_one_name_on_two_origins_at_once_get_exactly_one_publish() {
    let c = cluster(62, 20, &[]);
    for round in 0..8 {
        let name = format!("race-{round}");
        let d = directory_of(&c, &[], &name);
        // Vary who races: plain origins, and the directory origins themselves.
        let (a, b) = match round % 4 {
            0 => (d[0].unwrap(), d[1].unwrap()),
            1 => (d[1].unwrap(), (d[1].unwrap() + 1) % 20),
            _ => {
                let mut others = (0..20).filter(|i| !d.contains(&Some(*i)));
                (others.next().unwrap(), others.nth(round).unwrap())
            }
        };
        let (ra, rb) = tokio::join!(publish(&c[a], &name), publish(&c[b], &name));
        let accepted = [ra.is_ok(), rb.is_ok()];
        assert_eq!(
            accepted.iter().filter(|x| **x).count(),
            1,
            "{name} on origins {a} and {b}: accepted {accepted:?} ({:?} / {:?})",
            ra.as_ref().err(),
            rb.as_ref().err()
        );
        // Players anywhere get the winner's stream.
        let winner = if ra.is_ok() { a } else { b };
        published(&c[winner], &name).await;
        let player = (winner + 5) % 20;
        first_media(
            &c[player].rtmp_url(&format!("live/{name}")),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("play of {name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_killed_without_unpublishing_is_replaced_and_its_relayed_players_resume() {
    let lease = Duration::from_secs(3);
    let mut c = cluster(63, 6, &["--route", "relay", "--directory-lease", "3s"]);
    let name = "orphan";
    let d = directory_of(&c, &[], name);
    let mut others = (0..6).filter(|i| !d.contains(&Some(*i)));
    let (owner, next, watcher) = (
        others.next().expect("origin"),
        others.next().expect("origin"),
        d[1].expect("second directory origin"),
    );
    let _p = publish(&c[owner], name).await.expect("publish");
    published(&c[owner], name).await;
    // A relayed player on another origin.
    let url = c[watcher].rtmp_url(&format!("live/{name}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let player = tokio::spawn(async move {
        let mut p = Client::connect(&url).await.map_err(|e| e.to_string())?;
        p.play(None).await.map_err(|e| e.to_string())?;
        loop {
            p.next_media().await.map_err(|e| e.to_string())?;
            if tx.send(Instant::now()).is_err() {
                return Ok::<(), String>(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("relayed media before the kill");

    c[owner].kill();
    let killed = Instant::now();
    // Its claim is still there, but the dead origin does not answer for it: a publisher
    // elsewhere is accepted (at the latest when the lease runs out).
    let replacement = loop {
        match publish(&c[next], name).await {
            Ok(p) => break p,
            Err(e) => {
                assert!(
                    killed.elapsed() < lease + Duration::from_secs(5),
                    "no publish accepted {:?} after the owner died: {e}",
                    killed.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    println!(
        "owner killed: a new publisher was accepted after {:?} (lease {lease:?})",
        killed.elapsed()
    );
    // The relayed player resumes from the new owner: media after the replacement's
    // publish (what came before it was the dead owner's).
    while rx.try_recv().is_ok() {}
    let resumed = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("relayed player resumed")
        .expect("player alive");
    assert!(!player.is_finished(), "the relayed player stayed connected");
    println!(
        "relayed player resumed {:?} after the kill",
        resumed - killed
    );
    drop(replacement);
    player.abort();
}

/// An origin stand-in that speaks only `/api/v1/clusters` (as SRS does) and owns `stream`,
/// whose RTMP is at `rtmp`; every other request gets SRS's "not owned" answer.
async fn srs_stub(stream: &'static str, rtmp: u16) -> String {
    let l = tokio::net::TcpListener::bind("127.0.64.100:0")
        .await
        .unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = head.lines().next().unwrap_or_default();
                let owned = line.contains("/api/v1/clusters?")
                    && line.contains(&format!("&stream={stream}&"));
                let origin = if owned {
                    format!(
                        r#"{{"ip":"127.0.0.1","port":{rtmp},"vhost":"__defaultVhost__","api":"127.0.0.1:1","routers":["127.0.0.1:1"]}}"#
                    )
                } else {
                    "null".to_string()
                };
                let body = format!(
                    r#"{{"code":0,"data":{{"query":{{"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"{stream}"}},"origin":{origin}}}}}"#
                );
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_an_srs_peer_is_found_through_the_broadcast() {
    // The "SRS" stream really plays from an origin outside the cluster.
    let outside = OriginProc::start(&OriginOpts {
        token_file: Some(token_file(TOKEN)),
        ..OriginOpts::default()
    });
    let _p = publish(&outside, "srs").await.expect("publish");
    published(&outside, "srs").await;
    let stub = srs_stub("srs", outside.rtmp).await;
    let c = cluster_with(64, 6, &["--route", "relay"], vec![stub]);
    let queries0 = metric_sum(&c, "origin_ownership_queries_total").await;
    for o in [0, 3, 5] {
        let t = first_media(&c[o].rtmp_url("live/srs"), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("play of the SRS peer's stream on origin {o}: {e}"));
        println!("SRS peer's stream from origin {o}: first media after {t:?}");
    }
    // The directory did not know it, so the other origins were asked too.
    assert!(metric_sum(&c, "origin_ownership_queries_total").await > queries0);
    // Streams of our own origins still go through the directory, SRS peer or not.
    let _q = publish(&c[1], "ours").await.expect("publish");
    published(&c[1], "ours").await;
    first_media(&c[4].rtmp_url("live/ours"), Duration::from_secs(10))
        .await
        .expect("play of our own stream");
}

/// `POST /api/v1/directory/lookup` of `stream` at `o`: the owner's API address, if any.
async fn lookup_at(o: &OriginProc, stream: &str) -> Option<String> {
    let body =
        format!(r#"{{"key":{{"vhost":"__defaultVhost__","app":"live","stream":"{stream}"}}}}"#);
    let auth = format!("Bearer {TOKEN}");
    let r = http(
        "POST",
        &o.api_url(origin_wire::paths::DIRECTORY_LOOKUP),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["owner"]["api"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_whose_directory_moves_is_claimed_at_its_new_directory_origin_at_once() {
    // A 30 s lease renews every 10 s: a claim at the new origin within 3 s of the change
    // is the re-claim on the change, not a renewal.
    let c = cluster(65, 6, &["--directory-lease", "30s"]);
    let name = "moving-dir";
    let d = directory_of(&c, &[], name);
    let (first, second) = (d[0].expect("first"), d[1].expect("second"));
    let owner = (0..6).find(|i| *i != first && *i != second).expect("owner");
    let _p = publish(&c[owner], name).await.expect("publish");
    published(&c[owner], name).await;
    let owner_api = c[owner].api_addr();
    assert_eq!(
        lookup_at(&c[first], name).await.as_deref(),
        Some(owner_api.as_str())
    );
    assert_eq!(
        lookup_at(&c[second], name).await.as_deref(),
        Some(owner_api.as_str())
    );
    // The first directory origin leaves the list: the next best origin takes its place.
    let rest: Vec<String> = c
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, o)| o.api_addr())
        .collect();
    let members: Vec<HostPort> = rest.iter().map(|a| HostPort::parse(a).unwrap()).collect();
    let moved: Vec<String> = directory_origins(&key(name), &members)
        .into_iter()
        .map(ToString::to_string)
        .collect();
    let newcomer = moved
        .iter()
        .find(|a| **a != c[second].api_addr())
        .expect("a new directory origin");
    let newcomer = c
        .iter()
        .position(|o| o.api_addr() == *newcomer)
        .expect("origin");
    assert_eq!(
        lookup_at(&c[newcomer], name).await,
        None,
        "not claimed there yet"
    );
    let doc = origin_wire::coworkers::CoworkerDocument::new(1, rest.clone(), None).to_json();
    let auth = format!("Bearer {TOKEN}");
    let changed = Instant::now();
    for o in &c {
        let r = http(
            "PUT",
            &o.api_url(origin_wire::paths::COWORKERS),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            &doc,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let deadline = changed + Duration::from_secs(3);
    loop {
        if lookup_at(&c[newcomer], name).await.as_deref() == Some(owner_api.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new directory origin did not get the claim within 3 s of the change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the key's new directory origin had its claim {:?} after the list changed",
        changed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_endpoints_need_the_admin_token_and_clusters_answers_as_before() {
    let c = cluster(66, 2, &[]);
    let url = c[0].api_url(origin_wire::paths::DIRECTORY_CLAIM);
    let claim = |api: &str| {
        format!(
            r#"{{"key":{{"vhost":"__defaultVhost__","app":"live","stream":"x"}},"owner":{{"api":"{api}","rtmp":"{api}"}},"claim":1}}"#
        )
    };
    let json = ("content-type", "application/json");
    let auth = format!("Bearer {TOKEN}");
    let authed = [("authorization", auth.as_str()), json];
    // Without the token, or with another one, nothing is read or changed.
    let r = http("POST", &url, &[json], &claim("10.9.9.9:1")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = http(
        "POST",
        &url,
        &[("authorization", "Bearer nope"), json],
        &claim("10.9.9.9:1"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // The first claim wins; the second owner is told who holds it.
    let r = http("POST", &url, &authed, &claim("10.9.9.9:1")).await;
    assert_eq!(
        (r.status, r.json()["result"].as_str()),
        (200, Some("granted"))
    );
    let r = http("POST", &url, &authed, &claim("10.9.9.8:1")).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["owner"]["api"], "10.9.9.9:1");
    assert_eq!(lookup_at(&c[0], "x").await.as_deref(), Some("10.9.9.9:1"));
    // Malformed and oversized bodies are refused.
    let r = http("POST", &url, &authed, "{").await;
    assert_eq!(r.status, 400);
    let r = http("POST", &url, &authed, &claim("no-port")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let big = format!(
        r#"{{"key":{{"vhost":"__defaultVhost__","app":"live","stream":"{}"}},"owner":{{"api":"h:1","rtmp":"h:1"}},"claim":1}}"#,
        "s".repeat(8192)
    );
    let r = http("POST", &url, &authed, &big).await;
    assert_eq!(r.status, 413);
    // A released claim is gone.
    let release = r#"{"key":{"vhost":"__defaultVhost__","app":"live","stream":"x"},"owner":"10.9.9.9:1","claim":1}"#;
    let r = http(
        "POST",
        &c[0].api_url(origin_wire::paths::DIRECTORY_RELEASE),
        &authed,
        release,
    )
    .await;
    assert_eq!(r.json()["released"], true);
    assert_eq!(lookup_at(&c[0], "x").await, None);
    // The SRS ownership query answers exactly as without a directory.
    let _p = publish(&c[1], "q").await.expect("publish");
    published(&c[1], "q").await;
    let q = format!(
        "vhost=__defaultVhost__&ip=127.0.66.2&app=live&stream=q&coworker={}",
        c[1].api_addr()
    );
    let owned = http(
        "GET",
        &c[1].api_url(&format!("/api/v1/clusters?{q}")),
        &[],
        "",
    )
    .await;
    let ip = c[1].ip();
    assert_eq!(
        owned.text(),
        format!(
            r#"{{"code":0,"data":{{"query":{{"ip":"127.0.66.2","vhost":"__defaultVhost__","app":"live","stream":"q"}},"origin":{{"ip":"{ip}","port":{},"vhost":"__defaultVhost__","api":"{ip}:{}","routers":["{ip}:{}"],"http":"{ip}:{}"}}}}}}"#,
            c[1].rtmp, c[1].api, c[1].api, c[1].flv
        )
    );
    let not = http(
        "GET",
        &c[0].api_url(&format!("/api/v1/clusters?{q}")),
        &[],
        "",
    )
    .await;
    assert!(not.text().ends_with(r#""origin":null}}"#), "{}", not.text());
}
