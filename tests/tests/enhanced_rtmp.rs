//! Enhanced RTMP (FourCC) video passes through untouched and its keyframes drive the GOP
//! cache. Debian's ffmpeg 5.1 cannot publish Enhanced RTMP, so our client publishes
//! synthetic HEVC and AV1 frames with the Enhanced RTMP header layout.

#![forbid(unsafe_code)]

use std::time::Duration;

use origin::client::Client;
use origin::media::flv::{VideoCodec, inspect_video};
use origin::rtmp::message::kind;
use origin_cluster_tests::*;

/// `[ex bit | frame type | packet type][fourcc][body]`.
fn ex_frame(fourcc: &[u8; 4], key: bool, packet_type: u8, n: u32) -> Vec<u8> {
    let mut p = vec![0x80 | (if key { 1 } else { 2 } << 4) | packet_type];
    p.extend_from_slice(fourcc);
    p.extend_from_slice(&n.to_be_bytes());
    p.extend(std::iter::repeat_n(0xab, 200));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn enhanced_rtmp_hevc_and_av1_pass_through_with_keyframe_start() {
    let origin = OriginProc::start(&OriginOpts::default());
    for (name, fourcc, codec) in [
        ("hevc", b"hvc1", VideoCodec::Hevc),
        ("av1", b"av01", VideoCodec::Av1),
    ] {
        let url = origin.rtmp_url(&format!("live/{name}"));
        let mut publisher = Client::connect(&url).await.unwrap();
        publisher.publish(None).await.unwrap();
        // SequenceStart, then GOPs of 10: a CodedFramesX keyframe and 9 CodedFrames.
        publisher
            .send_media(kind::VIDEO, 0, &ex_frame(fourcc, true, 0, 0))
            .await
            .unwrap();
        let mut sent = Vec::new();
        for i in 0..25u32 {
            let f = ex_frame(fourcc, i % 10 == 0, if i % 10 == 0 { 3 } else { 1 }, i);
            publisher.send_media(kind::VIDEO, 40 * i, &f).await.unwrap();
            sent.push(f);
        }
        publisher
            .send_media(kind::VIDEO, 1000, &ex_frame(fourcc, false, 1, 999))
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        // Wait until the origin has the frames, then join mid-GOP (last keyframe: i = 20).
        let api = origin.api_url("/api/v1/streams");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let v = http("GET", &api, &[], "").await.json();
            let arrived = v["streams"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["stream"] == name && s["frames_in"].as_u64() >= Some(27));
            if arrived {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: frames never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut player = Client::connect(&url).await.unwrap();
        player.play(None).await.unwrap();
        let header = tokio::time::timeout(Duration::from_secs(5), player.next_media())
            .await
            .unwrap()
            .unwrap();
        let info = inspect_video(&header.payload);
        assert!(
            info.sequence_header && info.codec == codec,
            "{name}: sequence header first"
        );
        let first = tokio::time::timeout(Duration::from_secs(5), player.next_media())
            .await
            .unwrap()
            .unwrap();
        assert!(
            inspect_video(&first.payload).keyframe,
            "{name}: a keyframe first"
        );
        assert_eq!(
            &first.payload[..],
            &sent[20][..],
            "{name}: payload passed through byte for byte"
        );
        assert_eq!(first.timestamp, 800);
        let stats = http("GET", &api, &[], "").await.json();
        let s = stats["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"] == name)
            .unwrap()
            .clone();
        assert_eq!(s["video_codec"], codec.name());
    }
}
