//! Packager output checked by real tools: ffmpeg encodes a test pattern to FLV, the
//! packager turns its frames into segments, ffprobe and ffmpeg read them back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;

use super::{HlsConfig, Packager};
use crate::media::Frame;
use crate::media::flv::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, parse_file};
use crate::rtmp::message::kind;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("origin-hls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 8 s of 640x360 25 fps H.264 (keyframe every 2 s) and AAC, as FLV tags.
fn encode(dir: &Path, extra: &[&str]) -> Vec<std::sync::Arc<Frame>> {
    let out = dir.join("src.flv");
    let mut args = vec![
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "8",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-g",
        "50",
        "-keyint_min",
        "50",
        "-sc_threshold",
        "0",
        "-c:a",
        "aac",
    ];
    args.extend_from_slice(extra);
    let out_s = out.to_str().unwrap();
    args.push(out_s);
    let st = Command::new("ffmpeg")
        .args(&args)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    let data = std::fs::read(&out).unwrap();
    parse_file(&data)
        .unwrap()
        .into_iter()
        .filter_map(|t| {
            let type_id = match t.tag_type {
                TAG_AUDIO => kind::AUDIO,
                TAG_VIDEO => kind::VIDEO,
                TAG_SCRIPT => return None,
                _ => return None,
            };
            Some(Frame::new(type_id, t.timestamp, t.payload))
        })
        .collect()
}

fn package(frames: &[std::sync::Arc<Frame>], config: HlsConfig) -> Packager {
    let mut p = Packager::new(config);
    for f in frames {
        p.push(f, 1_000_000 + u64::from(f.timestamp)).unwrap();
    }
    p
}

fn write(path: &Path, chunks: &[&[Bytes]]) {
    let mut all = Vec::new();
    for c in chunks {
        for b in *c {
            all.extend_from_slice(b);
        }
    }
    std::fs::write(path, all).unwrap();
}

fn probe(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,r_frame_rate,sample_rate",
            "-of",
            "compact",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ts_config() -> HlsConfig {
    HlsConfig {
        target_duration: Duration::from_secs(2),
        window: 6,
        ..HlsConfig::default()
    }
}

#[test]
fn ts_segments_probe_and_decode() {
    let dir = scratch("ts");
    let frames = encode(&dir, &[]);
    let p = package(&frames, ts_config());
    assert_eq!(
        p.video_config().map(|v| (v.width, v.height)),
        Some((640, 360))
    );
    let segs: Vec<_> = p.segments().iter().collect();
    assert!(
        segs.len() >= 3,
        "8 s with 2 s GOPs gives 3 complete segments"
    );
    for s in &segs {
        assert_eq!(s.duration_ms, 2000, "segment duration is the GOP");
        let path = dir.join(format!("seg{}.ts", s.msn));
        write(&path, &[&s.data]);
        let info = probe(&path);
        assert!(
            info.contains("codec_name=h264|width=640|height=360|r_frame_rate=25/1"),
            "{info}"
        );
        assert!(info.contains("codec_name=aac|sample_rate=44100"), "{info}");
        assert_eq!(decode_errors(&path), "");
    }
    // The segments played in sequence decode as one stream.
    let all: Vec<Bytes> = segs.iter().flat_map(|s| s.data.iter().cloned()).collect();
    let path = dir.join("all.ts");
    write(&path, &[&all]);
    assert_eq!(decode_errors(&path), "");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fmp4_segments_and_parts_probe_and_decode() {
    let dir = scratch("fmp4");
    let frames = encode(&dir, &[]);
    let p = package(
        &frames,
        HlsConfig {
            low_latency: true,
            part_target: Duration::from_millis(500),
            ..ts_config()
        },
    );
    let (_, init) = p.init().unwrap();
    let init = vec![init.clone()];
    let segs: Vec<_> = p.segments().iter().collect();
    assert!(segs.len() >= 3);
    for s in &segs {
        assert_eq!(s.duration_ms, 2000);
        assert!(s.parts.iter().all(|x| x.duration_ms <= 500));
        assert!(s.parts[0].independent);
        let path = dir.join(format!("seg{}.mp4", s.msn));
        write(&path, &[&init, &s.data]);
        let info = probe(&path);
        assert!(
            info.contains("codec_name=h264|width=640|height=360|r_frame_rate=25/1"),
            "{info}"
        );
        assert!(info.contains("codec_name=aac|sample_rate=44100"), "{info}");
        assert_eq!(decode_errors(&path), "");
        // The first part alone (independent) decodes too.
        let path = dir.join(format!("part{}.0.mp4", s.msn));
        write(&path, &[&init, &s.parts[0].data]);
        assert_eq!(decode_errors(&path), "");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// HEVC as Enhanced RTMP (FourCC `hvc1`) frames, built from an x265 Annex B stream
/// (ffmpeg 5 cannot write HEVC to FLV itself).
fn hevc_frames(dir: &Path) -> Vec<std::sync::Arc<Frame>> {
    let out = dir.join("src.hevc");
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-t",
            "6",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx265", "-x265-params"])
        .arg("bframes=0:keyint=25:min-keyint=25:scenecut=0:log-level=error")
        .args(["-f", "hevc"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&out).unwrap();
    // Split at start codes.
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let nals: Vec<&[u8]> = starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut e = starts.get(k + 1).map_or(data.len(), |n| n - 3);
            while e > s && data[e - 1] == 0 {
                e -= 1;
            }
            &data[s..e]
        })
        .collect();
    let ty = |n: &[u8]| (n[0] >> 1) & 0x3f;
    let find = |t: u8| nals.iter().find(|n| ty(n) == t).copied().unwrap();
    let mut record = vec![
        1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,
        0x0f, 3,
    ];
    for t in [32u8, 33, 34] {
        let n = find(t);
        record.extend_from_slice(&[0x80 | t, 0, 1]);
        record.extend_from_slice(&(n.len() as u16).to_be_bytes());
        record.extend_from_slice(n);
    }
    let mut seq = vec![0x80 | 0x10, b'h', b'v', b'c', b'1'];
    seq.extend_from_slice(&record);
    let mut frames = vec![Frame::new(kind::VIDEO, 0, Bytes::from(seq))];
    let mut au: Vec<u8> = Vec::new();
    let mut n_frame = 0u32;
    for n in nals {
        au.extend_from_slice(&(n.len() as u32).to_be_bytes());
        au.extend_from_slice(n);
        if ty(n) < 32 {
            let key = (16..=21).contains(&ty(n));
            let mut p = vec![
                0x80 | if key { 0x10 } else { 0x20 } | 3,
                b'h',
                b'v',
                b'c',
                b'1',
            ];
            p.append(&mut au);
            frames.push(Frame::new(kind::VIDEO, n_frame * 40, Bytes::from(p)));
            n_frame += 1;
        }
    }
    frames
}

#[test]
fn hevc_enhanced_rtmp_probes_in_ts_and_fmp4() {
    let dir = scratch("hevc");
    let frames = hevc_frames(&dir);
    for low_latency in [false, true] {
        let p = package(
            &frames,
            HlsConfig {
                low_latency,
                target_duration: Duration::from_secs(1),
                ..ts_config()
            },
        );
        assert_eq!(
            p.video_config().map(|v| (v.width, v.height)),
            Some((320, 240)),
            "dimensions from the HEVC SPS"
        );
        let s = p.segments().get(1).expect("segments");
        assert_eq!(s.duration_ms, 1000);
        let path = dir.join(format!("seg-{low_latency}"));
        match p.init() {
            Some((_, init)) => write(&path, &[std::slice::from_ref(init), &s.data]),
            None => write(&path, &[&s.data]),
        }
        let info = probe(&path);
        assert!(
            info.contains("codec_name=hevc|width=320|height=240|r_frame_rate=25/1"),
            "{info}"
        );
        assert_eq!(decode_errors(&path), "");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
