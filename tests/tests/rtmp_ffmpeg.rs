//! The origin with real encoders and players: ffmpeg publishes, ffprobe and our RTMP
//! client play (issue 2 acceptance).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use origin::client::{Client, ClientError};
use origin::media::flv::inspect_video;
use origin::rtmp::message::kind;
use origin_cluster_tests::hostile::wait_async;
use origin_cluster_tests::*;

fn video_of(streams: &[Probed]) -> &Probed {
    streams
        .iter()
        .find(|s| s.codec_type == "video")
        .expect("a video stream")
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_publish_then_ffprobe_reads_codecs_over_rtmp_and_http_flv() {
    let origin = OriginProc::start(&OriginOpts::default());
    let _pub = origin
        .publish_test_pattern("live/s", "640x360", 30, 20)
        .await;

    for url in [origin.rtmp_url("live/s"), origin.flv_url("live/s.flv")] {
        let streams = tokio::task::spawn_blocking(move || ffprobe(&url))
            .await
            .unwrap()
            .unwrap();
        let v = video_of(&streams);
        assert_eq!(v.codec_name, "h264");
        assert_eq!((v.width, v.height), (Some(640), Some(360)));
        assert_eq!(v.frame_rate.as_deref(), Some("30/1"));
        let a = streams
            .iter()
            .find(|s| s.codec_type == "audio")
            .expect("an audio stream");
        assert_eq!(a.codec_name, "aac");
    }
    // The API describes the stream.
    let r = http("GET", &origin.api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    let s = &r["streams"][0];
    assert_eq!(
        (s["video_codec"].as_str(), s["audio_codec"].as_str()),
        (Some("H264"), Some("AAC"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_publisher_gets_bad_name_while_first_keeps_going() {
    let origin = OriginProc::start(&OriginOpts::default());
    let mut first = origin
        .publish_test_pattern("live/dup", "320x240", 25, 20)
        .await;

    // Our client sees the exact status code.
    let mut second = Client::connect(&origin.rtmp_url("live/dup")).await.unwrap();
    match second.publish(None).await {
        Err(ClientError::Status { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("second publish was not refused: {other:?}"),
    }
    // A real encoder is refused too: ffmpeg exits with an error.
    let mut ff = ffmpeg_publish(&origin.rtmp_url("live/dup"), "320x240", 25, 20);
    let status = ff
        .wait_timeout(Duration::from_secs(10))
        .expect("second ffmpeg should give up");
    assert!(!status.success());

    // The first publisher is still live: it has not exited and a player gets media.
    assert!(first.try_wait().is_none(), "first publisher died");
    let mut player = Client::connect(&origin.rtmp_url("live/dup")).await.unwrap();
    player.play(None).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), player.next_media())
        .await
        .unwrap()
        .unwrap();
    assert!(m.type_id == kind::VIDEO || m.type_id == kind::AUDIO);
}

#[tokio::test(flavor = "multi_thread")]
async fn mid_stream_player_gets_a_keyframe_first() {
    let origin = OriginProc::start(&OriginOpts::default());
    // GOP of 2 s: joining at a random point is almost never on a keyframe.
    let _pub = origin
        .publish_test_pattern("live/gop", "320x240", 25, 20)
        .await;
    for delay_ms in [700u64, 1300] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let mut p = Client::connect(&origin.rtmp_url("live/gop")).await.unwrap();
        p.play(None).await.unwrap();
        let mut saw_header = false;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), p.next_media())
                .await
                .unwrap()
                .unwrap();
            if m.type_id != kind::VIDEO {
                continue;
            }
            let info = inspect_video(&m.payload);
            if info.sequence_header {
                saw_header = true;
                continue;
            }
            assert!(
                saw_header,
                "the AVC sequence header comes before the first picture"
            );
            assert!(
                info.keyframe,
                "first video frame after joining is not a keyframe"
            );
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_streams_at_once_do_not_mix() {
    let origin = OriginProc::start(&OriginOpts::default());
    let _a = ffmpeg_publish(&origin.rtmp_url("live/a"), "320x240", 25, 20);
    let _b = ffmpeg_publish(&origin.rtmp_url("live/b"), "640x360", 30, 20);
    let api = origin.api_url("/api/v1/streams");
    assert!(wait_published(&api, "live", "a", Duration::from_secs(10)).await);
    assert!(wait_published(&api, "live", "b", Duration::from_secs(10)).await);
    let (ua, ub) = (origin.rtmp_url("live/a"), origin.flv_url("live/b.flv"));
    let a = tokio::task::spawn_blocking(move || ffprobe(&ua))
        .await
        .unwrap()
        .unwrap();
    let b = tokio::task::spawn_blocking(move || ffprobe(&ub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (video_of(&a).width, video_of(&a).frame_rate.as_deref()),
        (Some(320), Some("25/1"))
    );
    assert_eq!(
        (video_of(&b).width, video_of(&b).frame_rate.as_deref()),
        (Some(640), Some("30/1"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_port_is_closed_and_disturbs_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = OriginProc::start(&OriginOpts::default());
    let _pub = origin
        .publish_test_pattern("live/g", "320x240", 25, 20)
        .await;
    let mut player = Client::connect(&origin.rtmp_url("live/g")).await.unwrap();
    player.play(None).await.unwrap();

    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", origin.rtmp))
        .await
        .unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "garbage got an answer");

    // A valid handshake followed by a malformed chunk (fmt 3 on a fresh chunk stream).
    let mut bad = tokio::net::TcpStream::connect(("127.0.0.1", origin.rtmp))
        .await
        .unwrap();
    let c0c1 = origin::rtmp::handshake::client_c0c1(false);
    bad.write_all(&c0c1).await.unwrap();
    let mut s = vec![0u8; 1 + 2 * 1536];
    bad.read_exact(&mut s).await.unwrap();
    bad.write_all(&s[1..1537]).await.unwrap();
    bad.write_all(&[0xc9, 1, 2, 3, 4]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // The player did not notice.
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(5), player.next_media())
            .await
            .unwrap()
            .unwrap();
    }
    let metrics = http("GET", &origin.api_url("/metrics"), &[], "")
        .await
        .text();
    assert!(
        metrics.contains("origin_connections_rejected_total{reason=\"handshake\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn players_stay_through_unpublish_and_get_the_republished_stream() {
    use origin::client::Event;
    use origin::rtmp::amf0::Value;
    let origin = OriginProc::start(&OriginOpts::default());
    // Our client publishes an FLV file made by ffmpeg (the client library's publish path).
    let flv = std::env::temp_dir().join(format!("origin-test-{}.flv", std::process::id()));
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
        ])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(&flv)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let tags = origin::media::flv::parse_file(&std::fs::read(&flv).unwrap()).unwrap();
    let _ = std::fs::remove_file(&flv);
    assert!(tags.len() > 50);

    let mut publisher = Client::connect(&origin.rtmp_url("live/re")).await.unwrap();
    publisher.publish(None).await.unwrap();
    publisher.publish_tags(&tags[..20], false).await.unwrap();
    let mut player = Client::connect(&origin.rtmp_url("live/re")).await.unwrap();
    player.play(None).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), player.next_media())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.type_id, kind::VIDEO);
    publisher.close().await.unwrap();

    let code_of = |e: &Event| match e {
        Event::Status { info, .. } => info.get("code").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let mut got_unpublish = false;
    while !got_unpublish {
        let e = tokio::time::timeout(Duration::from_secs(5), player.next_event())
            .await
            .unwrap()
            .unwrap();
        got_unpublish = code_of(&e).as_deref() == Some("NetStream.Play.UnpublishNotify");
    }
    // The player is still connected; a new publisher brings the stream back.
    let mut again = Client::connect(&origin.rtmp_url("live/re")).await.unwrap();
    again.publish(None).await.unwrap();
    again.publish_tags(&tags, false).await.unwrap();
    let mut got_publish = false;
    let mut media_after = 0;
    while media_after < 10 {
        let e = tokio::time::timeout(Duration::from_secs(5), player.next_event())
            .await
            .unwrap()
            .unwrap();
        if code_of(&e).as_deref() == Some("NetStream.Play.PublishNotify") {
            got_publish = true;
        }
        if got_publish && matches!(e, Event::Media(_)) {
            media_after += 1;
        }
    }
}

/// A stream nobody plays is read on a slow tick (`--unwatched-read-interval`); a player's
/// arrival must wake its publisher at once, so the player gets the live edge, not the
/// cache as it was at the last tick.
#[tokio::test(flavor = "multi_thread")]
async fn a_player_wakes_the_paced_publisher_of_an_unwatched_stream() {
    let origin = OriginProc::start(&OriginOpts {
        extra: ["--unwatched-read-interval", "60s"]
            .map(String::from)
            .to_vec(),
        ..OriginOpts::default()
    });
    let _pub = ffmpeg_publish(&origin.rtmp_url("live/paced"), "320x240", 25, 30);
    let api = origin.api_url("/api/v1/streams");
    let published = wait_async(Duration::from_secs(20), || async {
        let v = http("GET", &api, &[], "").await.json();
        v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["stream"] == "paced" && s["publishing"] == true)?;
        Some(())
    })
    .await;
    assert!(published.is_some(), "ffmpeg published");
    // ffmpeg's timestamps start at 0 when it publishes, before this point.
    let published_at = Instant::now();
    // The scenario: the stream goes unwatched for a while. The publisher has been read
    // once and then waits for the next 60 s tick; ffmpeg's output piles up in the socket.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut p = Client::connect(&origin.rtmp_url("live/paced"))
        .await
        .unwrap();
    p.play(None).await.unwrap();
    // The live edge is at least this far on (ffmpeg -re runs at the wall clock's pace or
    // catches up to it); the cache as of the last tick is under 1 s of media. Without the
    // wake nothing newer arrives before the 60 s tick, far past the deadline.
    let live_edge_ms = published_at.elapsed().as_millis() as u32;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut newest = 0u32;
    while newest + 1000 < live_edge_ms {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, p.next_media())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the publisher was not woken: newest {newest} ms, live edge {live_edge_ms} ms"
                )
            })
            .unwrap();
        if m.type_id == kind::VIDEO {
            newest = newest.max(m.timestamp);
        }
    }
}
