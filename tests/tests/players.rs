//! Real third-party players against one origin, ffmpeg publishing a test pattern:
//! rtmpdump (librtmp), GStreamer's rtmp2src, headless Chromium with mpegts.js and hls.js on a
//! page served from another port (the CORS case), and ffmpeg playing the origin's HLS. The
//! same helpers (`players`) serve the relay
//! acceptance tests against non-owner origins.

#![forbid(unsafe_code)]

use std::time::Duration;

use origin_cluster_tests::players::*;
use origin_cluster_tests::*;

/// Waits until the stream's publisher has been up for `secs` (so a player joins mid-GOP).
async fn wait_uptime(origin: &OriginProc, stream: &str, secs: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let v = http("GET", &origin.api_url("/api/v1/streams"), &[], "")
            .await
            .json();
        let up = v["streams"].as_array().and_then(|a| {
            a.iter()
                .find(|s| s["stream"] == stream)
                .and_then(|s| s["uptime_seconds"].as_f64())
        });
        if up.is_some_and(|u| u >= secs) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{stream} was not up for {secs} s within 15 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn rtmpdump_receives_media_starting_with_a_keyframe() {
    require_rtmpdump();
    let origin = OriginProc::start(&OriginOpts::default());
    // GOP 2 s (50 frames at 25 fps); join at 3 s, in the middle of the second GOP.
    let _pub = origin
        .publish_test_pattern("live/dump", "320x240", 25, 40)
        .await;
    wait_uptime(&origin, "dump", 3.0).await;

    let url = origin.rtmp_url("live/dump");
    let got = tokio::task::spawn_blocking(move || rtmpdump_receive(&url, 4))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let flv = &got.flv;
    eprintln!(
        "rtmpdump: {} bytes, {} pictures, {} audio tags, {} ms of video, exit {:?}",
        flv.total_bytes,
        flv.pictures().count(),
        flv.audio_tags(),
        flv.video_span_ms(),
        got.exit
    );
    let ctx = || {
        format!(
            "{} video / {} audio tags, {} bytes; rtmpdump stderr:\n{}",
            flv.video_tags(),
            flv.audio_tags(),
            flv.total_bytes,
            got.stderr_tail
        )
    };
    assert!(flv.has_video_flag && flv.has_audio_flag, "{}", ctx());
    assert!(
        flv.first_video_is_config(),
        "first video tag is not the AVC sequence header: {}",
        ctx()
    );
    assert!(flv.first_video_is_keyframe(), "{}", ctx());
    assert!(
        flv.first_picture_is_keyframe(),
        "first picture is not a keyframe: {}",
        ctx()
    );
    // About 4 s at 25 fps (plus the cached GOP); a loaded machine gets some slack.
    assert!(flv.pictures().count() >= 40, "{}", ctx());
    assert!(flv.audio_tags() >= 40, "{}", ctx());
    assert!(flv.video_span_ms() >= 1500, "{}", ctx());
    assert!(
        flv.timestamps_non_decreasing(TagKind::Video),
        "video timestamps go backwards"
    );

    // What rtmpdump wrote is a stream ffprobe reads as the published one.
    let file = std::env::temp_dir().join(format!("rtmpdump-{}.flv", free_port()));
    std::fs::write(&file, &flv.data).unwrap();
    let path = file.to_string_lossy().into_owned();
    let probed = tokio::task::spawn_blocking(move || ffprobe(&path))
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let probed = probed.unwrap();
    let v = probed.iter().find(|s| s.codec_type == "video").unwrap();
    assert_eq!(
        (v.codec_name.as_str(), v.width, v.height),
        ("h264", Some(320), Some(240))
    );
    assert!(probed.iter().any(|s| s.codec_name == "aac"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gstreamer_rtmp2src_decodes_video_frames() {
    require_gstreamer();
    let origin = OriginProc::start(&OriginOpts::default());
    let _pub = origin
        .publish_test_pattern("live/gst", "424x240", 25, 40)
        .await;
    let url = origin.rtmp_url("live/gst");
    let got = tokio::task::spawn_blocking(move || gst_rtmp2src_video_frames(&url, 4))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("gstreamer: {got:?}");
    assert!(
        got.frames >= 25,
        "only {} frames decoded in 4 s: {}",
        got.frames,
        got.stderr_tail
    );
    assert_eq!((got.width, got.height), (Some(424), Some(240)));
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_with_mpegts_js_plays_http_flv_from_another_origin() {
    require_browser();
    let origin = OriginProc::start(&OriginOpts::default());
    let _pub = origin
        .publish_test_pattern("live/web", "640x360", 25, 60)
        .await;
    let url = origin.flv_url("live/web.flv");
    let r = tokio::task::spawn_blocking(move || browser_play(WebPlayer::Mpegts, &url))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "chromium/mpegts.js: currentTime {:.2} s, {}x{}, {} ms",
        r.current_time, r.video_width, r.video_height, r.elapsed_ms
    );
    assert!(r.ok && r.advanced > 1.0 && r.current_time > 1.0, "{r:?}");
    assert_eq!((r.video_width, r.video_height), (640, 360), "{r:?}");
}

/// The helpers report a failure as one, with the tool's own words: the relay tests rely
/// on them failing when a player gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn players_on_a_stream_that_is_not_there_fail_with_the_reason() {
    require_rtmpdump();
    require_gstreamer();
    require_browser();
    let origin = OriginProc::start(&OriginOpts::default());
    let rtmp = origin.rtmp_url("live/absent");
    let flv = origin.flv_url("live/absent.flv");
    let (dump, gst, web) = tokio::task::spawn_blocking(move || {
        (
            rtmpdump_receive(&rtmp, 2),
            gst_rtmp2src_video_frames(&rtmp, 2),
            browser_play_with(&BrowserOpts {
                timeout: Duration::from_secs(8),
                ..BrowserOpts::new(WebPlayer::Mpegts, &flv)
            }),
        )
    })
    .await
    .unwrap();

    let e = dump.expect_err("rtmpdump got FLV from a stream nobody publishes");
    let msg = e.to_string();
    eprintln!("absent stream, rtmpdump: {msg}");
    assert!(
        msg.contains("no FLV received") && msg.contains("rtmpdump"),
        "{msg}"
    );

    let e = gst.expect_err("GStreamer decoded frames of a stream nobody publishes");
    assert!(e.to_string().contains("no video frames decoded"), "{e}");

    match web {
        Err(PlayerError::Browser {
            result: Some(r), ..
        }) => {
            assert!(!r.ok && r.current_time == 0.0, "{r:?}");
            // mpegts.js's own error (404, or CORS refusing it), or the runner's deadline.
            assert!(r.error.as_deref().is_some_and(|e| !e.is_empty()), "{r:?}");
            eprintln!("absent stream, browser: {:?}", r.error);
        }
        other => panic!("expected a reported browser failure, got {other:?}"),
    }
}

/// ffmpeg as the player of the origin's own live HLS: the playlist and segments the
/// origin packages from an ffmpeg publish decode without an error, for several seconds.
#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_plays_the_origins_live_hls() {
    require_ffmpeg();
    let origin = OriginProc::start(&OriginOpts::default());
    let _pub = origin
        .publish_test_pattern("live/hlsff", "480x270", 25, 60)
        .await;
    let url = origin.flv_url("live/hlsff.m3u8");
    let probe_url = url.clone();
    let streams = tokio::task::spawn_blocking(move || ffprobe(&probe_url))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("ffprobe of the origin's HLS: {e}"));
    let v = streams
        .iter()
        .find(|s| s.codec_type == "video")
        .unwrap_or_else(|| panic!("no video in {streams:?}"));
    assert_eq!(
        (v.codec_name.as_str(), v.width, v.height),
        ("h264", Some(480), Some(270)),
        "{streams:?}"
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"), "{streams:?}");
    // Four seconds of it, decoded: every video frame is counted, errors are printed.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["60", "ffmpeg", "-hide_banner", "-v", "error", "-i", &url])
            .args(["-map", "0:v:0", "-t", "4", "-f", "framemd5", "-"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ffmpeg")
    })
    .await
    .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg: {:?}: {errors}", out.status);
    assert_eq!(errors.trim(), "", "decode errors");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert!(
        (95..=101).contains(&frames),
        "{frames} video frames decoded from 4 s of 25 fps HLS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_with_hls_js_plays_live_hls_and_measures_the_live_edge_latency() {
    require_browser();
    require_ffmpeg();
    // The origin packages an ffmpeg publish: a segment per 2 s GOP, each with its program
    // date-time (wall clock).
    let origin = OriginProc::start(&OriginOpts::default());
    let _pub = origin
        .publish_test_pattern("live/hlsweb", "480x270", 25, 60)
        .await;
    let url = origin.flv_url("live/hlsweb.m3u8");
    let r = tokio::task::spawn_blocking(move || browser_play(WebPlayer::Hls, &url))
        .await
        .unwrap();
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "chromium/hls.js: advanced {:.2} s from {:.2}, {}x{}, latency {:?} ms ({:?})",
        r.advanced, r.start_time, r.video_width, r.video_height, r.latency_ms, r.latency_source
    );
    assert!(r.advanced > 1.0, "{r:?}");
    assert_eq!((r.video_width, r.video_height), (480, 270), "{r:?}");
    // Live edge: hls.js holds about 3 segments back; measured against the wall clock.
    assert_eq!(
        r.latency_source.as_deref(),
        Some("program-date-time"),
        "{r:?}"
    );
    let l = r.latency_ms.expect("latency measured");
    assert!(
        l > 0.0 && l < 20_000.0,
        "implausible live-edge latency {l} ms"
    );
}
