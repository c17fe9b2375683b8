//! Publish and play authorization with real origin processes, a real HTTP hook server
//! (axum on loopback), ffmpeg and ffprobe (issue 12 acceptance).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use origin::client::{Client, ClientError};
use origin_cluster_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hook backend with SRS's answer format:
/// - `/hook`: denies the publish of stream `denied` and every play whose `param` lacks
///   `token=abc`; answers `slowpoke` after 120 s; allows the rest;
/// - `/notify`: allows (records notifications);
/// - `/slow`: answers `0` after 120 s.
struct HookServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl HookServer {
    async fn start() -> Self {
        type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;
        let seen: Seen = Arc::default();
        async fn hook(
            State(seen): State<Seen>,
            Path(route): Path<String>,
            body: String,
        ) -> &'static str {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            seen.lock().unwrap().push((route.clone(), v.clone()));

            // `hook-<origin>` routes behave as `hook`, so each origin's calls are told apart.
            let route = match route.split_once('-') {
                Some(("hook", _)) => "hook".to_string(),
                _ => route,
            };
            match route.as_str() {
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    "0"
                }
                "hook" if v["stream"] == "slowpoke" => {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    "0"
                }
                "hook" => {
                    let deny = match v["action"].as_str() {
                        Some("on_publish") => v["stream"] == "denied",
                        Some("on_play") => {
                            !v["param"].as_str().is_some_and(|p| p.contains("token=abc"))
                        }
                        _ => false,
                    };
                    if deny {
                        r#"{"code": 403}"#
                    } else {
                        r#"{"code": 0}"#
                    }
                }
                _ => "0",
            }
        }
        let app = Router::new()
            .route("/{route}", post(hook))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen }
    }

    fn url(&self, route: &str) -> String {
        format!("http://{}/{route}", self.addr)
    }

    fn bodies(&self, action: &str) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["action"] == action)
            .map(|(_, v)| v.clone())
            .collect()
    }

    async fn wait_body(&self, action: &str, stream: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(b) = self
                .bodies(action)
                .into_iter()
                .find(|b| stream.is_empty() || b["stream"] == stream)
            {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "no {action} for `{stream}`: {:?}",
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn opts(extra: &[String]) -> OriginOpts {
    OriginOpts {
        extra: extra.to_vec(),
        ..OriginOpts::default()
    }
}

fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.clone()])
        .collect()
}

async fn probe(url: String) -> Result<Vec<Probed>, String> {
    tokio::task::spawn_blocking(move || ffprobe(&url))
        .await
        .unwrap()
}

async fn ffmpeg_fails(url: &str) -> bool {
    let mut ff = ffmpeg_publish(url, "320x240", 25, 20);
    tokio::task::spawn_blocking(move || {
        ff.wait_timeout(Duration::from_secs(15))
            .is_some_and(|s| !s.success())
    })
    .await
    .unwrap()
}

/// Publishes a test pattern to `path` (which may carry a query) and waits for `app/stream`.
async fn publish_and_wait(origin: &OriginProc, path: &str, app: &str, stream: &str) -> Ffmpeg {
    let ff = ffmpeg_publish(&origin.rtmp_url(path), "320x240", 25, 30);
    let ok = wait_published(
        &origin.api_url("/api/v1/streams"),
        app,
        stream,
        Duration::from_secs(10),
    )
    .await;
    assert!(ok, "{path} was not published");
    ff
}

async fn metric(origin: &OriginProc, line_start: &str) -> f64 {
    let text = http("GET", &origin.api_url("/metrics"), &[], "")
        .await
        .text();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_allow_and_deny_publish_and_play_with_srs_bodies() {
    require_ffmpeg();
    let hooks = HookServer::start().await;
    let origin = OriginProc::start(&opts(&args(&[
        ("--on-connect", hooks.url("notify")),
        ("--on-publish", hooks.url("hook")),
        ("--on-unpublish", hooks.url("notify")),
        ("--on-play", hooks.url("hook")),
        ("--on-stop", hooks.url("notify")),
        ("--on-close", hooks.url("notify")),
    ])));

    // The denied stream: ffmpeg fails, our client sees an error status.
    assert!(
        ffmpeg_fails(&origin.rtmp_url("live/denied?token=abc")).await,
        "ffmpeg publishing a denied stream did not fail"
    );
    let mut c = Client::connect(&origin.rtmp_url("live/denied"))
        .await
        .unwrap();
    match c.publish(None).await {
        Err(ClientError::Status { code, .. }) => assert_eq!(code, "NetStream.Publish.Denied"),
        other => panic!("denied publish: {other:?}"),
    }

    // The allowed stream publishes.
    let mut ff = publish_and_wait(&origin, "live/allowed?token=abc", "live", "allowed").await;

    // Play: allowed with the token over RTMP and HTTP-FLV, refused without.
    let v = probe(origin.rtmp_url("live/allowed?token=abc"))
        .await
        .unwrap();
    assert!(v.iter().any(|s| s.codec_name == "h264"), "{v:?}");
    let v = probe(origin.flv_url("live/allowed.flv?token=abc"))
        .await
        .unwrap();
    assert!(v.iter().any(|s| s.codec_name == "h264"), "{v:?}");
    assert!(
        probe(origin.rtmp_url("live/allowed?token=bad"))
            .await
            .is_err()
    );
    assert!(
        probe(origin.flv_url("live/allowed.flv?token=bad"))
            .await
            .is_err()
    );
    let r = http(
        "GET",
        &origin.flv_url("live/allowed.flv?token=bad"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        r.headers.contains_key("access-control-allow-origin"),
        "403 without CORS: {:?}",
        r.headers
    );
    let mut p = Client::connect(&origin.rtmp_url("live/allowed?token=nope"))
        .await
        .unwrap();
    match p.play(None).await {
        Err(ClientError::Status { code, .. }) => assert_eq!(code, "NetStream.Play.Failed"),
        other => panic!("denied play: {other:?}"),
    }

    // The bodies carry SRS's fields and values.
    let publish = hooks.wait_body("on_publish", "allowed").await;
    for field in [
        "server_id",
        "service_id",
        "action",
        "client_id",
        "ip",
        "vhost",
        "app",
        "tcUrl",
        "stream",
        "param",
        "stream_url",
        "stream_id",
    ] {
        assert!(publish.get(field).is_some(), "{field} missing: {publish}");
    }
    assert_eq!(publish["param"], "?token=abc");
    assert_eq!(publish["ip"], "127.0.0.1");
    assert_eq!(publish["app"], "live");
    assert_eq!(publish["vhost"], "__defaultVhost__");
    assert_eq!(publish["stream_url"], "/live/allowed");
    assert!(
        publish["tcUrl"]
            .as_str()
            .is_some_and(|t| t.starts_with("rtmp://127.0.0.1:") && t.ends_with("/live")),
        "{publish}"
    );
    let play = hooks.wait_body("on_play", "allowed").await;
    assert!(play.get("pageUrl").is_some(), "{play}");
    assert_eq!(play["ip"], "127.0.0.1");
    let flv_play = hooks
        .bodies("on_play")
        .into_iter()
        .find(|b| {
            b["tcUrl"]
                .as_str()
                .is_some_and(|t| t.starts_with("http://"))
        })
        .expect("an on_play for the HTTP-FLV player");
    assert_eq!(flv_play["param"], "?token=abc");
    let connect = hooks.wait_body("on_connect", "").await;
    assert_eq!(connect["app"], "live");
    hooks.wait_body("on_stop", "allowed").await;
    hooks.wait_body("on_close", "").await;
    // Server and service ids are the same on every call of one process.
    let ids: std::collections::HashSet<_> = hooks
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, v)| (v["server_id"].to_string(), v["service_id"].to_string()))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // The publisher ending is notified.
    drop(ff.0.kill());
    hooks.wait_body("on_unpublish", "allowed").await;
    assert!(metric(&origin, "origin_auth_refusals_total{").await >= 4.0);
    assert!(
        metric(
            &origin,
            "origin_hook_calls_total{event=\"on_publish\",outcome=\"deny\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hook_down_or_slow_follows_the_failure_mode_and_never_hangs() {
    require_ffmpeg();
    let hooks = HookServer::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cases = [
        (hooks.url("slow"), "deny", false),
        (format!("http://{dead}/hook"), "deny", false),
        (hooks.url("slow"), "allow", true),
        (format!("http://{dead}/hook"), "allow", true),
    ];
    for (url, mode, admitted) in cases {
        let origin = OriginProc::start(&opts(&args(&[
            ("--on-publish", url.clone()),
            ("--hook-timeout", "1s".into()),
            ("--hook-failure", mode.into()),
        ])));
        let started = Instant::now();
        let mut c = Client::connect(&origin.rtmp_url("live/s")).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(30), c.publish(None))
            .await
            .unwrap_or_else(|_| panic!("{url} {mode}: publish hung"));
        // The 1 s timeout decided, not the hook (120 s): well before that, and for the slow
        // hook not before the timeout. The upper margin is for a loaded machine.
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(20),
            "{url} {mode}: the answer took {took:?} with a 1 s hook timeout"
        );
        if url.ends_with("/slow") {
            assert!(
                took >= Duration::from_millis(900),
                "{url} {mode}: answered after {took:?}, before the 1 s hook timeout"
            );
        }
        assert_eq!(r.is_ok(), admitted, "{url} {mode}: {r:?}");
        // A real encoder agrees.
        if admitted {
            drop(c);
            let _ff = origin
                .publish_test_pattern("live/ff", "320x240", 25, 10)
                .await;
        } else {
            assert!(ffmpeg_fails(&origin.rtmp_url("live/ff")).await);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_hook_delays_only_its_own_publish_and_play() {
    let hooks = HookServer::start().await;
    let origin = OriginProc::start(&opts(&args(&[
        ("--on-publish", hooks.url("hook")),
        ("--on-play", hooks.url("hook")),
        ("--hook-timeout", "90s".into()),
    ])));
    // Ten clients whose hook answer hangs (120 s, cut at 90 s by the hook timeout).
    let mut stuck = Vec::new();
    for i in 0..10 {
        let url = origin.rtmp_url("live/slowpoke");
        stuck.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await.unwrap();
            if i % 2 == 0 {
                c.publish(None).await
            } else {
                c.play(None).await
            }
        }));
    }
    hooks.wait_body("on_publish", "slowpoke").await;
    // Meanwhile other clients publish and play at once.
    for i in 0..5 {
        let started = Instant::now();
        let mut p = Client::connect(&origin.rtmp_url(&format!("live/quick{i}")))
            .await
            .unwrap();
        p.publish(None).await.unwrap();
        let mut q = Client::connect(&origin.rtmp_url(&format!("live/quick{i}?token=abc")))
            .await
            .unwrap();
        q.play(None).await.unwrap();
        // Behind the stuck hooks they would wait 90 s; the margin is for a loaded machine.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a publish+play waited {:?} behind other clients' hooks",
            started.elapsed()
        );
    }
    assert!(
        stuck.iter().all(|t| !t.is_finished()),
        "the slow hooks answered early"
    );
    for t in stuck {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_file_keys_and_reload_without_restart() {
    require_ffmpeg();
    let dir = std::env::temp_dir().join(format!(
        "origin-auth-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth.toml");
    let rules = |key: &str| {
        format!(
            "[[rule]]\naction = \"publish\"\nstream = \"live/*\"\nsecret = \"{key}\"\n\n\
             [[rule]]\naction = \"play\"\nstream = \"live/*\"\nnetworks = [\"127.0.0.0/8\", \"::1\"]\n"
        )
    };
    std::fs::write(&file, rules("k1")).unwrap();
    let origin = OriginProc::start(&opts(&["--auth-file".into(), file.display().to_string()]));

    assert!(ffmpeg_fails(&origin.rtmp_url("live/a?key=wrong")).await);
    assert!(ffmpeg_fails(&origin.rtmp_url("live/a")).await);
    let ff = publish_and_wait(&origin, "live/a?key=k1", "live", "a").await;
    let v = probe(origin.rtmp_url("live/a")).await.unwrap();
    assert!(v.iter().any(|s| s.codec_name == "h264"));
    drop(ff);

    // Rotate the key: the new one works without a restart, the old one stops working.
    std::fs::write(&file, rules("k2")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(&origin.rtmp_url("live/b?key=k2"))
            .await
            .unwrap();
        if c.publish(None).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the new key never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = Client::connect(&origin.rtmp_url("live/c?key=k1"))
        .await
        .unwrap();
    assert!(c.publish(None).await.is_err(), "the old key still works");

    // A broken edit keeps the last good rules: once the origin has read it (it says so),
    // the current key still works and the old one still does not.
    let broken = "auth file is broken; keeping the last good rules";
    let seen = origin.log_count(broken);
    std::fs::write(&file, "[[rule]]\naction = ").unwrap();
    let read = {
        let origin = &origin;
        tokio::task::block_in_place(|| origin.wait_log(broken, seen, Duration::from_secs(20)))
    };
    assert!(read, "the origin never read the broken edit");
    let mut c = Client::connect(&origin.rtmp_url("live/d?key=k2"))
        .await
        .unwrap();
    c.publish(None).await.unwrap();
    let mut c = Client::connect(&origin.rtmp_url("live/e?key=k1"))
        .await
        .unwrap();
    assert!(c.publish(None).await.is_err(), "the old key is back");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects from `source` and completes the RTMP handshake; the stream if the server
/// answered.
async fn rtmp_handshake_stream(source: &str, port: u16) -> Option<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(([127, 0, 0, 1], port).into()).await.ok()?;
    let mut c0c1 = vec![0u8; 1537];
    c0c1[0] = 3;
    s.write_all(&c0c1).await.ok()?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut s0s1s2)).await {
        Ok(Ok(_)) => Some(s),
        _ => None,
    }
}

async fn rtmp_handshake_from(source: &str, port: u16) -> bool {
    rtmp_handshake_stream(source, port).await.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_flood_from_one_address_is_refused_while_others_connect() {
    let origin = OriginProc::start(&opts(&["--max-connections-per-ip".into(), "5".into()]));
    // Five served connections from 127.0.0.1 hold its whole allowance (retrying while the
    // readiness probe's connection is still being counted).
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() < 5 {
        match rtmp_handshake_stream("127.0.0.1", origin.rtmp).await {
            Some(s) => held.push(s),
            None => assert!(Instant::now() < deadline, "only {} admitted", held.len()),
        }
    }
    let before = metric(
        &origin,
        "origin_connections_rejected_total{reason=\"max_connections_per_ip\"}",
    )
    .await;
    // The flood: every further connection from 127.0.0.1 is closed at once.
    for _ in 0..20 {
        assert!(!rtmp_handshake_from("127.0.0.1", origin.rtmp).await);
    }
    // The HTTP-FLV listener applies the same limit.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", origin.flv))
        .await
        .unwrap();
    let _ = s
        .write_all(b"GET /live/x.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("HTTP-FLV connection over the limit was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "answered: {:?}", String::from_utf8_lossy(&buf[..n]));
    // Another address still gets through, with a real player too.
    assert!(rtmp_handshake_from("127.0.0.2", origin.rtmp).await);
    let after = metric(
        &origin,
        "origin_connections_rejected_total{reason=\"max_connections_per_ip\"}",
    )
    .await;
    assert!(after - before >= 21.0, "counted {before} -> {after}");
    // Releasing the held connections frees the allowance.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rtmp_handshake_from("127.0.0.1", origin.rtmp).await {
        assert!(Instant::now() < deadline, "allowance not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_params_never_reach_the_logs() {
    let hooks = HookServer::start().await;
    let dir = std::env::temp_dir().join(format!(
        "origin-auth-logs-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth.toml");
    std::fs::write(
        &file,
        "[[rule]]\naction = \"publish\"\nstream = \"live/*\"\nsecret = \"FILESECRET\"\n",
    )
    .unwrap();
    let log = dir.join("origin.log");
    let hook = format!("{}?secret=URLSECRET", hooks.url("hook"));
    let (rtmp, api, flv) = (free_port(), free_port(), free_port());
    let out = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(bin_path("origin"))
        .arg("serve")
        .args(["--rtmp-listen", &format!("127.0.0.1:{rtmp}")])
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--flv-listen", &format!("127.0.0.1:{flv}")])
        .args(["--auth-file", &file.display().to_string()])
        .args(["--hook-timeout", "500ms"])
        .args([
            "--on-connect",
            &hook,
            "--on-publish",
            &hook,
            "--on-play",
            &hook,
        ])
        .args([
            "--on-unpublish",
            &hook,
            "--on-stop",
            &hook,
            "--on-close",
            &hook,
        ])
        .args(["--on-play", "http://127.0.0.1:9/dead?secret=URLSECRET2"])
        .env("RUST_LOG", "trace")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let up = wait_for(Duration::from_secs(10), || {
        [rtmp, api, flv]
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
            .then_some(())
    });
    assert!(up.is_some(), "origin did not start");
    let url = |path: &str| format!("rtmp://127.0.0.1:{rtmp}/{path}");
    // Refused by the rules, refused by the hook, allowed.
    let mut c = Client::connect(&url("live/s?key=WRONGSECRET"))
        .await
        .unwrap();
    assert!(c.publish(None).await.is_err());
    let mut c = Client::connect(&url("live/denied?key=FILESECRET&token=TOKENSECRET"))
        .await
        .unwrap();
    assert!(c.publish(None).await.is_err());
    let mut publisher = Client::connect(&url("live/s?key=FILESECRET&token=TOKENSECRET"))
        .await
        .unwrap();
    publisher.publish(None).await.unwrap();
    // Plays that fail at the dead second on_play URL (failure = deny), over both protocols.
    let mut p = Client::connect(&url("live/s?token=abc&x=PLAYSECRET"))
        .await
        .unwrap();
    assert!(p.play(None).await.is_err());
    let r = http(
        "GET",
        &format!("http://127.0.0.1:{flv}/live/s.flv?token=abc&x=FLVSECRET"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    drop(publisher);
    hooks.wait_body("on_unpublish", "s").await;
    hooks.wait_body("on_close", "").await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("hook denied") && text.contains("refused by the auth rules"),
        "{text}"
    );
    for secret in [
        "FILESECRET",
        "WRONGSECRET",
        "TOKENSECRET",
        "PLAYSECRET",
        "FLVSECRET",
        "URLSECRET",
        "token=abc",
    ] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn relayed_play_calls_only_the_non_owners_on_play() {
    require_ffmpeg();
    let hooks = HookServer::start().await;
    let token = token_file("cluster-secret-token");
    let ports: Vec<(u16, u16, u16)> = (0..2)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let all: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{}", p.1)).collect();
    let origins: Vec<OriginProc> = ports
        .iter()
        .zip(["a", "b"])
        .map(|(&(r, a, f), name)| {
            let url = hooks.url(&format!("hook-{name}"));
            let mut extra = args(&[
                ("--on-publish", url.clone()),
                ("--on-play", url.clone()),
                ("--on-stop", url.clone()),
                ("--on-connect", url.clone()),
                ("--self-api", format!("127.0.0.1:{a}")),
                ("--route", "relay".into()),
            ]);
            extra.extend(
                all.iter()
                    .flat_map(|c| ["--coworker".to_string(), c.clone()]),
            );
            OriginProc::start_on(
                r,
                a,
                f,
                &OriginOpts {
                    token_file: Some(token.clone()),
                    extra,
                    ..OriginOpts::default()
                },
            )
        })
        .collect();
    let (owner, edge) = (&origins[0], &origins[1]);
    let _ff = publish_and_wait(owner, "live/r?token=abc", "live", "r").await;
    // A player on the non-owner, over RTMP and over HTTP-FLV: relayed from the owner.
    let v = probe(edge.rtmp_url("live/r?token=abc")).await.unwrap();
    assert!(v.iter().any(|s| s.codec_name == "h264"), "{v:?}");
    let v = probe(edge.flv_url("live/r.flv?token=abc")).await.unwrap();
    assert!(v.iter().any(|s| s.codec_name == "h264"), "{v:?}");
    // A player without the token is refused by the non-owner's own on_play.
    assert!(probe(edge.rtmp_url("live/r")).await.is_err());
    let calls = |route: &str, action: &str| -> Vec<serde_json::Value> {
        hooks
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, v)| r == route && v["action"] == action)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let edge_plays = calls("hook-b", "on_play");
    assert!(
        edge_plays.len() >= 3,
        "non-owner on_play calls: {edge_plays:?}"
    );
    assert!(
        edge_plays
            .iter()
            .all(|b| b["ip"] == "127.0.0.1" && b["stream"] == "r")
    );
    assert_eq!(calls("hook-a", "on_publish").len(), 1);
    let owner_plays = calls("hook-a", "on_play");
    assert!(
        owner_plays.is_empty(),
        "the owner ran on_play for the relay: {owner_plays:?}"
    );
    // The relay's connection to the owner ran none of the owner's hooks.
    assert_eq!(
        calls("hook-a", "on_connect").len(),
        1,
        "only the publisher's connect"
    );
    assert!(calls("hook-a", "on_stop").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_rate_per_address_is_limited() {
    let origin = OriginProc::start(&opts(&["--max-connection-rate-per-ip".into(), "5".into()]));
    // The readiness probe may have used a token; a burst of 30 gets at most the bucket.
    let mut served = 0;
    let started = Instant::now();
    for _ in 0..30 {
        if rtmp_handshake_from("127.0.0.1", origin.rtmp).await {
            served += 1;
        }
    }
    // A bucket of 5, refilled at 5/s while the burst ran.
    let allowed = 5 + (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        served >= 1 && served <= allowed,
        "{served} of 30 served at 5/s (at most {allowed})"
    );
    let refused = metric(
        &origin,
        "origin_connections_rejected_total{reason=\"connection_rate_per_ip\"}",
    )
    .await;
    assert_eq!(refused as usize, 30 - served, "refusals counted");
    // Another address has its own bucket; the first one refills.
    assert!(rtmp_handshake_from("127.0.0.2", origin.rtmp).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rtmp_handshake_from("127.0.0.1", origin.rtmp).await {
        assert!(Instant::now() < deadline, "bucket never refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
