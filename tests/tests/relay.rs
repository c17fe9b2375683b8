//! Relay (issue 9, docs/architecture.md, "Relay"): every origin plays every stream to every player,
//! with real origin processes and real clients. Players that ignore RTMP 302 (ffmpeg, rtmpdump,
//! GStreamer, browsers) play from a non-owner because it relays.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use origin::client::{self, Client, ClientError, ConnectOptions, Event, RtmpUrl};
use origin::rtmp::amf0::Value;
use origin::rtmp::command::{self, status};
use origin::rtmp::message::kind;
use origin_cluster_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cluster(n: usize, extra: &[&str]) -> Vec<OriginProc> {
    start_cluster(
        n,
        &OriginOpts {
            token_file: Some(token_file("relay-token")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..OriginOpts::default()
        },
    )
}

/// Players of `stream` on `o` according to its streams API.
async fn players_of(o: &OriginProc, stream: &str) -> Option<u64> {
    let v = http("GET", &o.api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["stream"] == stream)
        .and_then(|s| s["players"].as_u64())
}

/// Waits until `f` yields `Some` (async), polling every 50 ms.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Status line and headers of an HTTP GET, without reading the (endless) body.
async fn head_of(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://other.example\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed before the header ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).to_string()
}

/// The value of the sample `series` (name and labels, as printed) in a metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn is_keyframe(payload: &[u8]) -> bool {
    // FLV video tag: frame type in the high nibble (also for Enhanced RTMP), 1 = key.
    payload.first().is_some_and(|b| (b >> 4) & 0x7 == 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn any_origin_plays_every_stream_to_ffprobe_over_rtmp_and_http_flv() {
    let c = cluster(3, &[]);
    let _pub = c[0]
        .publish_test_pattern("live/demo", "320x240", 25, 60)
        .await;
    let owner = ffprobe(&c[0].rtmp_url("live/demo")).expect("owner");
    let relayed = ffprobe(&c[2].rtmp_url("live/demo")).expect("non-owner over RTMP");
    assert_eq!(
        relayed, owner,
        "codecs, resolution and frame rate through the relay"
    );
    assert!(
        owner
            .iter()
            .any(|p| p.codec_name == "h264" && p.width == Some(320))
    );
    assert!(owner.iter().any(|p| p.codec_name == "aac"));
    // HTTP-FLV from the non-owner: served here (200), not redirected, with CORS.
    let head = head_of(&format!("127.0.0.1:{}", c[2].flv), "/live/demo.flv").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{head}"
    );
    let flv = ffprobe(&c[2].flv_url("live/demo.flv")).expect("non-owner over HTTP-FLV");
    assert_eq!(flv, owner);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_players_on_a_non_owner_share_one_upstream_and_start_at_a_keyframe() {
    let c = cluster(2, &[]);
    let _pub = c[0]
        .publish_test_pattern("live/many", "320x240", 25, 60)
        .await;
    let url = c[1].rtmp_url("live/many");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = Client::connect(&url).await?;
            p.play(None).await?;
            let mut first_video: Option<Vec<u8>> = None;
            let mut first_picture: Option<Vec<u8>> = None;
            let mut last = Instant::now();
            let mut worst_gap = Duration::ZERO;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                let m = tokio::time::timeout(Duration::from_secs(5), p.next_media())
                    .await
                    .map_err(|_| ClientError::Timeout)??;
                worst_gap = worst_gap.max(last.elapsed());
                last = Instant::now();
                if m.type_id == kind::VIDEO {
                    if first_video.is_none() {
                        first_video = Some(m.payload.to_vec());
                    }
                    // The first picture: the first video that is not a sequence header.
                    if first_picture.is_none() && m.payload.get(1) != Some(&0) {
                        first_picture = Some(m.payload.to_vec());
                    }
                }
            }
            Ok::<_, ClientError>((first_video, first_picture, worst_gap, p))
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        let (first_video, first_picture, gap, p) = t.await.unwrap().expect("relayed player");
        assert!(
            is_keyframe(&first_video.expect("video")),
            "first video message is a keyframe"
        );
        assert!(
            is_keyframe(&first_picture.expect("picture")),
            "first picture is a keyframe"
        );
        assert!(gap < Duration::from_secs(2), "stalled for {gap:?}");
        held.push(p);
    }
    // The owner sees one player for the stream: the relay.
    assert_eq!(players_of(&c[0], "many").await, Some(1));
    assert_eq!(players_of(&c[1], "many").await, Some(50));
    let v = http("GET", &c[1].api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    let s = &v["streams"][0];
    assert!(s["relay_from"].is_string(), "{v}");
    // A relay never owns: the non-owner answers "not owned", the owner "owned".
    let q = "/api/v1/clusters?app=live&stream=many";
    assert!(http("GET", &c[1].api_url(q), &[], "").await.json()["data"]["origin"].is_null());
    assert!(http("GET", &c[0].api_url(q), &[], "").await.json()["data"]["origin"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn players_on_a_relay_survive_the_publisher_moving_to_another_origin() {
    let c = cluster(3, &["--republish-timeout", "20s"]);
    let mut first = c[0]
        .publish_test_pattern("live/moving", "320x240", 25, 60)
        .await;
    let mut players = Vec::new();
    for _ in 0..3 {
        let mut p = Client::connect(&c[2].rtmp_url("live/moving"))
            .await
            .unwrap();
        p.play(None).await.unwrap();
        players.push(p);
    }
    let readers: Vec<_> = players
        .into_iter()
        .map(|mut p| {
            tokio::spawn(async move {
                let (mut last_video, mut last_audio) = (None::<u32>, None::<u32>);
                let mut after_move = 0usize;
                let mut unpublished = false;
                let started = Instant::now();
                while after_move < 100 {
                    assert!(started.elapsed() < Duration::from_secs(40), "never resumed");
                    let ev = tokio::time::timeout(Duration::from_secs(25), p.next_event())
                        .await
                        .expect("the player was kept")
                        .expect("the connection was kept");
                    match ev {
                        Event::Media(m) => {
                            let last = if m.type_id == kind::VIDEO {
                                &mut last_video
                            } else {
                                &mut last_audio
                            };
                            if let Some(l) = *last {
                                assert!(
                                    m.timestamp >= l,
                                    "timestamp went backwards: {l} -> {}",
                                    m.timestamp
                                );
                            }
                            *last = Some(m.timestamp);
                            if unpublished {
                                after_move += 1;
                            }
                        }
                        Event::Status { info, .. } => {
                            let code = info.get("code").and_then(Value::as_str).unwrap_or_default();
                            assert_ne!(
                                info.get("level").and_then(Value::as_str),
                                Some("error"),
                                "{info:?}"
                            );
                            if code == status::PLAY_UNPUBLISH_NOTIFY {
                                unpublished = true;
                            }
                        }
                        _ => {}
                    }
                }
                unpublished
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The encoder stops on A and starts on B.
    drop(first.0.kill());
    let _ = first.0.wait();
    assert!(
        until(Duration::from_secs(10), || async {
            players_of(&c[0], "moving").await.is_none().then_some(())
        })
        .await
        .is_some(),
        "A released the stream"
    );
    let _second = c[1]
        .publish_test_pattern("live/moving", "320x240", 25, 60)
        .await;
    for r in readers {
        assert!(r.await.unwrap(), "players saw the unpublish and resumed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_closes_a_linger_after_the_last_player() {
    let c = cluster(2, &["--relay-linger", "1s"]);
    let _pub = c[0]
        .publish_test_pattern("live/linger", "320x240", 25, 60)
        .await;
    let mut p = Client::connect(&c[1].rtmp_url("live/linger"))
        .await
        .unwrap();
    p.play(None).await.unwrap();
    p.next_media().await.unwrap();
    assert_eq!(
        players_of(&c[0], "linger").await,
        Some(1),
        "the relay plays"
    );
    drop(p);
    let closed = until(Duration::from_secs(6), || async {
        (players_of(&c[0], "linger").await == Some(0)).then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "the relay closed its upstream after the linger"
    );
    assert!(
        until(Duration::from_secs(3), || async {
            players_of(&c[1], "linger").await.is_none().then_some(())
        })
        .await
        .is_some(),
        "the relaying origin released the stream"
    );
}

/// The connect command an SRS edge's RTMP client sends (docs/architecture.md, "Relay").
fn srs_edge_options() -> ConnectOptions {
    ConnectOptions {
        flash_ver: "WIN 15,0,0,239".into(),
        properties: vec![
            ("swfUrl".into(), Value::str("")),
            ("fpad".into(), Value::Boolean(false)),
            ("capabilities".into(), Value::Number(239.0)),
            ("audioCodecs".into(), Value::Number(3575.0)),
            ("videoCodecs".into(), Value::Number(252.0)),
            ("videoFunction".into(), Value::Number(1.0)),
            ("objectEncoding".into(), Value::Number(0.0)),
        ],
        ..ConnectOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_srs_edge_gets_the_byte_exact_srs_302_in_auto_mode() {
    let c = cluster(2, &[]);
    let _pub = c[0]
        .publish_test_pattern("live/edge", "320x240", 25, 30)
        .await;
    let url = RtmpUrl::parse(&c[1].rtmp_url("live/edge")).unwrap();
    let mut p = Client::connect_with(url, &srs_edge_options())
        .await
        .unwrap();
    p.play(None).await.unwrap();
    let msg = loop {
        match tokio::time::timeout(Duration::from_secs(5), p.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Status { message, info }
                if info.get("code").and_then(Value::as_str)
                    == Some("NetConnection.Connect.Rejected") =>
            {
                break message;
            }
            Event::Media(_) => panic!("an SRS edge was relayed, not redirected"),
            _ => {}
        }
    };
    let tc = format!("rtmp://127.0.0.1:{}/live", c[0].rtmp);
    assert_eq!((msg.csid, msg.stream_id), (5, 0));
    assert_eq!(
        &msg.payload[..],
        &command::redirect_302(&tc, &format!("{tc}/edge"))[..]
    );
    // An ordinary client on the same origin is relayed, and an explicit opt-in is not.
    let (_p, _first, hops) = client::play_following_redirects(&c[1].rtmp_url("live/edge"), 3)
        .await
        .unwrap();
    assert!(hops.is_empty(), "relayed, not redirected");
    let (_p, _first, hops) =
        client::play_following_redirects(&c[1].rtmp_url("live/edge?redirect=302"), 3)
            .await
            .unwrap();
    assert_eq!(hops.len(), 1, "redirect=302 opts in to the 302");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_request_is_never_relayed_or_redirected_onward() {
    // Origin B relays from A; a relay request for the stream sent to B (which has only a
    // relay) must not be served from the relay, relayed again, or redirected.
    let c = cluster(2, &["--wait-for-publisher", "1s"]);
    let _pub = c[0]
        .publish_test_pattern("live/chain", "320x240", 25, 30)
        .await;
    let mut p = Client::connect(&c[1].rtmp_url("live/chain")).await.unwrap();
    p.play(None).await.unwrap();
    p.next_media().await.unwrap();
    let url = RtmpUrl::parse(&c[1].rtmp_url("live/chain")).unwrap();
    let options = ConnectOptions {
        flash_ver: origin::relay::relay_flash_ver(),
        properties: vec![(
            origin::relay::TOKEN_PROPERTY.into(),
            Value::str("relay-token"),
        )],
        ..ConnectOptions::default()
    };
    let mut relay = Client::connect_with(url, &options).await.unwrap();
    relay.play(None).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), relay.next_media()).await {
        Ok(Err(ClientError::Status { code, .. })) => {
            assert_eq!(code, status::PLAY_STREAM_NOT_FOUND)
        }
        other => panic!("a relay request was served from a relay: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coworker_parameter_is_sent_as_srs_sends_it() {
    // A stub coworker records the request line of the ownership query.
    let stub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub_addr = stub.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = stub.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = tx
                    .send(text.lines().next().unwrap_or_default().to_string())
                    .await;
                let body = r#"{"code":0,"data":{"origin":null}}"#;
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let o = OriginProc::start(&OriginOpts {
        coworkers: vec![stub_addr.to_string()],
        extra: vec!["--wait-for-publisher".into(), "0s".into()],
        ..OriginOpts::default()
    });
    let r = http("GET", &o.flv_url("live/s.flv"), &[], "").await;
    assert_eq!(r.status, 404);
    let line = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        line,
        format!(
            "POST /api/v1/clusters?vhost=__defaultVhost__&ip=127.0.0.1&app=live&stream=s&coworker={stub_addr} HTTP/1.1"
        )
    );
}

mod real_players {
    //! The players that ignore RTMP 302 play from a non-owner: rtmpdump (librtmp),
    //! GStreamer's rtmp2src, and Chromium with mpegts.js, the latter also through a
    //! `--route redirect` 302 (CORS on the redirect).

    use super::*;
    use origin_cluster_tests::players::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn rtmpdump_and_gstreamer_receive_media_from_a_non_owner() {
        require_rtmpdump();
        require_gstreamer();
        let c = cluster(3, &[]);
        let _pub = c[0]
            .publish_test_pattern("live/lib", "424x240", 25, 60)
            .await;
        let url = c[2].rtmp_url("live/lib");
        let (dump, gst) = tokio::task::spawn_blocking(move || {
            (
                rtmpdump_receive(&url, 4),
                gst_rtmp2src_video_frames(&url, 4),
            )
        })
        .await
        .unwrap();
        let dump = dump.unwrap_or_else(|e| panic!("rtmpdump via the relay: {e}"));
        assert!(dump.flv.pictures().count() >= 40, "{}", dump.stderr_tail);
        assert!(dump.flv.first_picture_is_keyframe());
        assert!(dump.flv.timestamps_non_decreasing(TagKind::Video));
        let gst = gst.unwrap_or_else(|e| panic!("GStreamer via the relay: {e}"));
        assert!(
            gst.frames >= 25,
            "{} frames: {}",
            gst.frames,
            gst.stderr_tail
        );
        assert_eq!((gst.width, gst.height), (Some(424), Some(240)));
    }

    /// HTTP 302s `o` sent so far.
    async fn http_redirects(o: &OriginProc) -> f64 {
        let text = http("GET", &o.api_url("/metrics"), &[], "").await.text();
        metric(&text, "origin_redirects_total{kind=\"http\"}").unwrap_or(0.0)
    }

    async fn browser_plays_from_non_owner(route: &str) {
        require_browser();
        let c = cluster(2, &["--route", route]);
        let _pub = c[0]
            .publish_test_pattern("live/web", "640x360", 25, 60)
            .await;
        let before = http_redirects(&c[1]).await;
        let url = c[1].flv_url("live/web.flv");
        let r = tokio::task::spawn_blocking(move || browser_play(WebPlayer::Mpegts, &url))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("Chromium/mpegts.js via {route}: {e}"));
        assert!(r.ok && r.advanced > 1.0, "{r:?}");
        assert_eq!((r.video_width, r.video_height), (640, 360), "{r:?}");
        let redirected = http_redirects(&c[1]).await - before;
        if route == "redirect" {
            // The browser went through a 302 (with CORS) and played from the owner.
            assert!(
                redirected >= 1.0,
                "the browser got no 302 from the non-owner"
            );
            let head = head_of(&format!("127.0.0.1:{}", c[1].flv), "/live/web.flv").await;
            assert!(head.starts_with("HTTP/1.1 302"), "{head}");
            let lower = head.to_ascii_lowercase();
            assert!(
                lower.contains(&format!(
                    "location: http://127.0.0.1:{}/live/web.flv",
                    c[0].flv
                )),
                "{head}"
            );
            assert!(lower.contains("access-control-allow-origin: *"), "{head}");
            assert!(
                players_of(&c[1], "web").await.is_none(),
                "the non-owner relayed"
            );
        } else {
            assert_eq!(redirected, 0.0, "the browser was redirected, not relayed");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn chromium_plays_http_flv_from_a_non_owner_relayed() {
        browser_plays_from_non_owner("auto").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn chromium_plays_http_flv_from_a_non_owner_through_a_302() {
        browser_plays_from_non_owner("redirect").await;
    }
}

// ---------------------------------------------------------------------------------------
// Faults of a real owner process: frozen (SIGSTOP), killed (SIGKILL), or a listener that
// never answers the RTMP handshake (docs/architecture.md, "Relay").

/// Arrival times of the media a player received.
type Arrivals = std::sync::Arc<std::sync::Mutex<Vec<Instant>>>;

/// One RTMP player (the project's client, which does not follow redirects) reading
/// `url` in the background until `stop`: records media arrivals, fails on an error
/// status, a lost connection or a timestamp going backwards.
fn rtmp_player(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Arrivals, tokio::task::JoinHandle<Result<(), String>>) {
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let task = tokio::spawn(async move {
        let mut p = Client::connect(&url).await.map_err(|e| e.to_string())?;
        p.play(None).await.map_err(|e| e.to_string())?;
        let (mut last_video, mut last_audio) = (None::<u32>, None::<u32>);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let ev = match tokio::time::timeout(Duration::from_millis(500), p.next_event()).await {
                Err(_) => continue,
                Ok(ev) => ev.map_err(|e| format!("the connection was lost: {e}"))?,
            };
            match ev {
                Event::Media(m) => {
                    let last = if m.type_id == kind::VIDEO {
                        &mut last_video
                    } else {
                        &mut last_audio
                    };
                    if let Some(l) = *last
                        && m.timestamp < l
                    {
                        return Err(format!("timestamp went backwards: {l} -> {}", m.timestamp));
                    }
                    *last = Some(m.timestamp);
                    seen.lock().unwrap().push(Instant::now());
                }
                Event::Status { info, .. }
                    if info.get("level").and_then(Value::as_str) == Some("error") =>
                {
                    return Err(format!("error status: {info:?}"));
                }
                _ => {}
            }
        }
        Ok(())
    });
    (arrivals, task)
}

/// ffmpeg decoding an HTTP-FLV stream to nowhere; its `-progress` frame counts, with the
/// time each new count was read, are recorded. Killed on drop.
struct FfmpegFlvPlayer {
    child: std::process::Child,
    arrivals: Arrivals,
}

impl FfmpegFlvPlayer {
    fn start(url: &str) -> Self {
        use std::io::BufRead;
        require_ffmpeg();
        let mut child = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostats"])
            .args(["-i", url, "-map", "0:v", "-f", "null", "-"])
            .args(["-progress", "pipe:1", "-stats_period", "0.2"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg");
        let out = child.stdout.take().expect("ffmpeg stdout");
        let arrivals = Arrivals::default();
        let seen = arrivals.clone();
        std::thread::spawn(move || {
            let mut frames = 0u64;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line
                    .strip_prefix("frame=")
                    .and_then(|n| n.trim().parse().ok())
                    && n > frames
                {
                    frames = n;
                    seen.lock().unwrap().push(Instant::now());
                }
            }
        });
        Self { child, arrivals }
    }
}

impl Drop for FfmpegFlvPlayer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arrivals at or after `since`.
fn arrived_since(a: &Arrivals, since: Instant) -> Vec<Instant> {
    a.lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t >= since)
        .collect()
}

/// The owner of a relayed stream fails (`fault` is applied to origin 0's process); the
/// encoder moves to origin 1; the RTMP and HTTP-FLV players on origin 2 must resume,
/// with media arriving from origin 1, within `limit` of the fault.
async fn players_resume_after_owner_fault(
    name: &str,
    fault: &str,
    reasons: &[&str],
    limit: Duration,
) {
    let c = cluster(3, &[]);
    let path = format!("live/{name}");
    let first = c[0].publish_test_pattern(&path, "320x240", 25, 120).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let players: Vec<_> = (0..3)
        .map(|_| rtmp_player(c[2].rtmp_url(&path), stop.clone()))
        .collect();
    let flv = FfmpegFlvPlayer::start(&c[2].flv_url(&format!("{path}.flv")));
    // Everybody plays through the relay first.
    let start = Instant::now();
    let playing = until(Duration::from_secs(20), || async {
        (players.iter().all(|(a, _)| a.lock().unwrap().len() >= 50)
            && flv.arrivals.lock().unwrap().len() >= 3)
            .then_some(())
    })
    .await;
    assert!(playing.is_some(), "players did not start through the relay");
    assert_eq!(
        players_of(&c[0], name).await,
        Some(1),
        "one upstream: the relay"
    );
    println!("players started in {:?}", start.elapsed());

    let pid = c[0].pid();
    let _thaw = Thaw(pid);
    signal(pid, fault);
    let fault_at = Instant::now();
    // The encoder reconnects to another origin.
    drop(first);
    let _second = c[1].publish_test_pattern(&path, "320x240", 25, 120).await;
    let republished_at = Instant::now();

    let resumed = until(limit.saturating_sub(fault_at.elapsed()), || async {
        let rtmp = players
            .iter()
            .all(|(a, _)| arrived_since(a, republished_at).len() >= 25);
        let http = arrived_since(&flv.arrivals, republished_at).len() >= 2;
        (rtmp && http).then_some(Instant::now())
    })
    .await;
    let first_after = |a: &Arrivals| arrived_since(a, republished_at).first().copied();
    let report: Vec<_> = players
        .iter()
        .map(|(a, _)| first_after(a).map(|t| t - fault_at))
        .chain([first_after(&flv.arrivals).map(|t| t - fault_at)])
        .collect();
    println!(
        "owner {fault}: encoder republished {:?} after the fault; first media after it \
         (RTMP x3, HTTP-FLV) at {report:?} after the fault",
        republished_at - fault_at
    );
    assert!(
        resumed.is_some(),
        "players on the relaying origin did not resume within {limit:?} of the owner's \
         SIG{fault}: {report:?}"
    );
    // The media comes from origin 1: the relay is its player now.
    assert_eq!(
        players_of(&c[1], name).await,
        Some(1),
        "the relay pulls from origin 1"
    );
    let text = http("GET", &c[2].api_url("/metrics"), &[], "").await.text();
    let counted: f64 = reasons
        .iter()
        .filter_map(|r| {
            metric(
                &text,
                &format!("origin_relay_failures_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    assert!(
        counted >= 1.0,
        "the relay's failure is counted as one of {reasons:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (_, t) in players {
        t.await.unwrap().expect("RTMP player through the relay");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn players_on_a_relay_resume_when_the_owner_freezes() {
    // SIGSTOP: the owner's TCP connections stay open and nothing flows. The relay must
    // notice by its idle deadline (default 3 s), not wait for TCP.
    players_resume_after_owner_fault("frz", "STOP", &["idle"], Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn players_on_a_relay_resume_when_the_owner_is_killed() {
    // The upstream's TCP connection is closed or reset by the kernel.
    players_resume_after_owner_fault(
        "killed",
        "KILL",
        &["closed", "reset"],
        Duration::from_secs(20),
    )
    .await;
}

/// A coworker API that answers every ownership query with "owned here, RTMP on 127.0.0.1
/// at `rtmp`" (read per query, so a test can point it elsewhere while it runs).
async fn claiming_coworker(rtmp: std::sync::Arc<std::sync::atomic::AtomicU16>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let port = rtmp.load(std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = format!(
                    r#"{{"code":0,"data":{{"query":{{"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"hs"}},"origin":{{"ip":"127.0.0.1","port":{port},"vhost":"__defaultVhost__","api":"127.0.0.1:1","routers":[]}}}}}}"#
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
async fn a_relay_gives_up_on_an_owner_that_never_answers_the_handshake() {
    // The "owner" accepts TCP and never sends S0/S1/S2 (a hung process, a wrong port).
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    let rtmp = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(hole_port));
    let coworker = claiming_coworker(rtmp.clone()).await;
    let token = token_file("relay-token");
    let real = OriginProc::start(&OriginOpts {
        token_file: Some(token.clone()),
        ..OriginOpts::default()
    });
    let _pub = real
        .publish_test_pattern("live/hs", "320x240", 25, 90)
        .await;
    let o = OriginProc::start(&OriginOpts {
        coworkers: vec![coworker],
        token_file: Some(token),
        extra: ["--wait-for-publisher", "40s", "--discovery-cache", "0s"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let url = o.rtmp_url("live/hs");
    let started = Instant::now();
    let player = tokio::spawn(async move {
        let mut p = Client::connect(&url).await?;
        p.play(None).await?;
        let first = tokio::time::timeout(Duration::from_secs(60), p.next_media())
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok::<_, ClientError>((Instant::now(), first))
    });
    let flv = FfmpegFlvPlayer::start(&o.flv_url("live/hs.flv"));
    // The relay connects to the hole, gives up within its connect timeout (counted as
    // a timeout), and asks again.
    let gave_up = until(Duration::from_secs(30), || async {
        let text = http("GET", &o.api_url("/metrics"), &[], "").await.text();
        metric(&text, "origin_relay_failures_total{reason=\"timeout\"}")
            .filter(|n| *n >= 1.0)
            .map(|_| Instant::now())
    })
    .await
    .expect("the relay never gave up on the silent owner");
    println!(
        "relay gave up on the silent owner {:?} after the play ({} connections to it)",
        gave_up - started,
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(
        !player.is_finished(),
        "the player was dropped while the relay retried"
    );
    // A real owner appears: the waiting player gets its media.
    rtmp.store(real.rtmp, std::sync::atomic::Ordering::SeqCst);
    let switched = Instant::now();
    let (at, first) = tokio::time::timeout(Duration::from_secs(40), player)
        .await
        .expect("the player got no media after the real owner appeared")
        .unwrap()
        .expect("the player through the relay");
    assert!(first.type_id == kind::VIDEO || first.type_id == kind::AUDIO);
    println!(
        "first media {:?} after the real owner appeared",
        at - switched
    );
    let decoded = until(Duration::from_secs(30), || async {
        (!flv.arrivals.lock().unwrap().is_empty()).then_some(Instant::now())
    })
    .await
    .expect("the HTTP-FLV player decoded nothing after the real owner appeared");
    println!(
        "HTTP-FLV frames decoded {:?} after the real owner appeared",
        decoded - switched
    );
    assert_eq!(
        players_of(&real, "hs").await,
        Some(1),
        "relayed from the real owner"
    );
}
