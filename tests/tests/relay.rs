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

    async fn browser_plays_from_non_owner(route: &str) {
        require_browser();
        let c = cluster(2, &["--route", route]);
        let _pub = c[0]
            .publish_test_pattern("live/web", "640x360", 25, 60)
            .await;
        let url = c[1].flv_url("live/web.flv");
        let r = tokio::task::spawn_blocking(move || browser_play(WebPlayer::Mpegts, &url))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("Chromium/mpegts.js via {route}: {e}"));
        assert!(r.ok && r.advanced > 1.0, "{r:?}");
        assert_eq!((r.video_width, r.video_height), (640, 360), "{r:?}");
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
