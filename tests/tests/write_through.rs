//! Write-through fan-out (`--merge-writes 0`): the publisher's task writes each frame to
//! every caught-up player itself. A player whose socket is full must be handed back to
//! its own task and never block the publisher or the other players.

#![forbid(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use origin_cluster_tests::players::*;
use origin_cluster_tests::*;

async fn stream_field(o: &OriginProc, stream: &str, field: &str) -> Option<u64> {
    let v = http("GET", &o.api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["stream"] == stream)
        .and_then(|s| s[field].as_u64())
}

async fn slow_player_disconnects(o: &OriginProc) -> u64 {
    let text = http("GET", &o.api_url("/metrics"), &[], "").await.text();
    text.lines()
        .find(|l| l.starts_with("origin_slow_player_disconnects"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// Kills a child's process group however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_player_that_stops_reading_never_blocks_the_publisher_or_the_others() {
    require_rtmpdump();
    let origin = OriginProc::start(&OriginOpts {
        // A long write timeout: a publisher that blocked on the stuck socket would stall
        // for most of it, far more than a loaded machine's slack below.
        extra: ["--merge-writes", "0", "--write-timeout", "10s"]
            .map(String::from)
            .to_vec(),
        ..OriginOpts::default()
    });
    // ffmpeg publishes a 16 Mbit/s test pattern (CBR with filler), so the stopped
    // player's socket buffers (megabytes on loopback) fill within seconds.
    let url = origin.rtmp_url("live/wt");
    let cbr_16m = [
        "-x264-params",
        "nal-hrd=cbr",
        "-b:v",
        "16M",
        "-minrate",
        "16M",
        "-maxrate",
        "16M",
        "-bufsize",
        "4M",
    ];
    let _publisher = Killed(
        ffmpeg_publish_command(&url, "640x360", 30, 90, &cbr_16m)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn ffmpeg"),
    );
    assert!(
        wait_published(
            &origin.api_url("/api/v1/streams"),
            "live",
            "wt",
            Duration::from_secs(10)
        )
        .await,
        "ffmpeg did not publish"
    );

    // The stuck player: rtmpdump, stopped (SIGSTOP) once it plays, so it reads no more.
    let stuck = Killed(
        Command::new("rtmpdump")
            .args(["--live", "-r", &url, "-o", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn rtmpdump"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream_field(&origin, "wt", "players").await != Some(1) {
        assert!(Instant::now() < deadline, "the stuck player never played");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .args(["-STOP", &stuck.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let cut_before = slow_player_disconnects(&origin).await;
    let frames_before = stream_field(&origin, "wt", "frames_in").await.unwrap();
    let started = Instant::now();

    // Two players that keep reading while the stuck one's socket fills up.
    const SECONDS: u32 = 20;
    let players: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::task::spawn_blocking(move || rtmpdump_receive(&url, SECONDS))
        })
        .collect();

    // The stuck player is cut off (its socket filled, then the write timeout passed)
    // while the others play.
    let deadline = Instant::now() + Duration::from_secs(u64::from(SECONDS) + 20);
    while slow_player_disconnects(&origin).await <= cut_before {
        assert!(
            Instant::now() < deadline,
            "the stopped player was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "stopped player cut off after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for p in players {
        let got = p.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        let flv = &got.flv;
        eprintln!(
            "player: {} pictures, {} ms of video",
            flv.pictures().count(),
            flv.video_span_ms()
        );
        assert!(flv.first_picture_is_keyframe());
        assert!(flv.timestamps_non_decreasing(TagKind::Video));
        // Real time all along: a publisher blocked on the stuck socket would have held
        // these players up too.
        assert!(
            flv.video_span_ms() >= (SECONDS - 6) * 1000,
            "the players kept getting media in real time: {} ms in {SECONDS} s",
            flv.video_span_ms()
        );
    }
    // The publisher never fell behind real time (30 fps plus audio).
    let frames = stream_field(&origin, "wt", "frames_in").await.unwrap() - frames_before;
    let secs = started.elapsed().as_secs_f64();
    assert!(
        frames as f64 >= 30.0 * (secs - 6.0),
        "publisher fell behind: {frames} frames in {secs:.1} s"
    );
    drop(stuck);
}
