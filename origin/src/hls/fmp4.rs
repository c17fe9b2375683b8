//! Fragmented MP4 (ISO/IEC 14496-12, CMAF) writer, sans-io: the init segment (`ftyp` +
//! `moov` with `mvex`) and media fragments (`moof` + `mdat`), one per LL-HLS part.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{AudioConfig, VideoConfig};
use crate::media::flv::VideoCodec;

pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
/// Video timescale (90 kHz, like MPEG-TS).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Writes a box: the size is patched in once `body` has written its content.
fn bx(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn full(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    bx(out, kind, |o| {
        o.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(o);
    });
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The init segment for the tracks present.
pub fn init_segment(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
    let mut o = BytesMut::with_capacity(1024);
    bx(&mut o, b"ftyp", |o| {
        o.put_slice(b"iso6");
        o.put_u32(0);
        for b in [b"iso6", b"cmfc", b"isom", b"mp41"] {
            o.put_slice(b);
        }
    });
    bx(&mut o, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(1000);
            o.put_u32(0);
            o.put_u32(0x0001_0000);
            o.put_u16(0x0100);
            o.put_slice(&[0; 10]);
            MATRIX.iter().for_each(|m| o.put_u32(*m));
            o.put_slice(&[0; 24]);
            o.put_u32(3);
        });
        if let Some(v) = video {
            trak(o, VIDEO_TRACK, VIDEO_TIMESCALE, Track::Video(v));
        }
        if let Some(a) = audio {
            trak(o, AUDIO_TRACK, a.sample_rate, Track::Audio(a));
        }
        bx(o, b"mvex", |o| {
            for (present, id) in [
                (video.is_some(), VIDEO_TRACK),
                (audio.is_some(), AUDIO_TRACK),
            ] {
                if present {
                    full(o, b"trex", 0, 0, |o| {
                        o.put_u32(id);
                        o.put_u32(1);
                        o.put_u32(0);
                        o.put_u32(0);
                        o.put_u32(0);
                    });
                }
            }
        });
    });
    o.freeze()
}

enum Track<'a> {
    Video(&'a VideoConfig),
    Audio(&'a AudioConfig),
}

fn trak(o: &mut BytesMut, id: u32, timescale: u32, t: Track<'_>) {
    bx(o, b"trak", |o| {
        full(o, b"tkhd", 0, 3, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(id);
            o.put_u32(0);
            o.put_u32(0); // duration
            o.put_slice(&[0; 8]);
            o.put_u16(0); // layer
            o.put_u16(0); // alternate group
            o.put_u16(if matches!(t, Track::Audio(_)) {
                0x0100
            } else {
                0
            });
            o.put_u16(0);
            MATRIX.iter().for_each(|m| o.put_u32(*m));
            let (w, h) = match t {
                Track::Video(v) => (v.width, v.height),
                Track::Audio(_) => (0, 0),
            };
            o.put_u32(u32::from(w) << 16);
            o.put_u32(u32::from(h) << 16);
        });
        bx(o, b"mdia", |o| {
            full(o, b"mdhd", 0, 0, |o| {
                o.put_u32(0);
                o.put_u32(0);
                o.put_u32(timescale);
                o.put_u32(0);
                o.put_u16(0x55c4); // "und"
                o.put_u16(0);
            });
            full(o, b"hdlr", 0, 0, |o| {
                o.put_u32(0);
                o.put_slice(if matches!(t, Track::Video(_)) {
                    b"vide"
                } else {
                    b"soun"
                });
                o.put_slice(&[0; 12]);
                o.put_slice(if matches!(t, Track::Video(_)) {
                    b"Video\0"
                } else {
                    b"Audio\0"
                });
            });
            bx(o, b"minf", |o| {
                match t {
                    Track::Video(_) => full(o, b"vmhd", 0, 1, |o| o.put_slice(&[0; 8])),
                    Track::Audio(_) => full(o, b"smhd", 0, 0, |o| o.put_u32(0)),
                }
                bx(o, b"dinf", |o| {
                    full(o, b"dref", 0, 0, |o| {
                        o.put_u32(1);
                        full(o, b"url ", 0, 1, |_| {});
                    });
                });
                bx(o, b"stbl", |o| {
                    full(o, b"stsd", 0, 0, |o| {
                        o.put_u32(1);
                        match t {
                            Track::Video(v) => video_entry(o, v),
                            Track::Audio(a) => audio_entry(o, a),
                        }
                    });
                    full(o, b"stts", 0, 0, |o| o.put_u32(0));
                    full(o, b"stsc", 0, 0, |o| o.put_u32(0));
                    full(o, b"stsz", 0, 0, |o| {
                        o.put_u32(0);
                        o.put_u32(0);
                    });
                    full(o, b"stco", 0, 0, |o| o.put_u32(0));
                });
            });
        });
    });
}

fn video_entry(o: &mut BytesMut, v: &VideoConfig) {
    let (entry, config) = if v.codec == VideoCodec::Hevc {
        (b"hvc1", b"hvcC")
    } else {
        (b"avc1", b"avcC")
    };
    bx(o, entry, |o| {
        o.put_slice(&[0; 6]);
        o.put_u16(1);
        o.put_slice(&[0; 16]);
        o.put_u16(v.width);
        o.put_u16(v.height);
        o.put_u32(0x0048_0000);
        o.put_u32(0x0048_0000);
        o.put_u32(0);
        o.put_u16(1);
        o.put_slice(&[0; 32]);
        o.put_u16(0x0018);
        o.put_u16(0xffff);
        bx(o, config, |o| o.put_slice(&v.record));
    });
}

fn audio_entry(o: &mut BytesMut, a: &AudioConfig) {
    bx(o, b"mp4a", |o| {
        o.put_slice(&[0; 6]);
        o.put_u16(1);
        o.put_slice(&[0; 8]);
        o.put_u16(u16::from(a.channels));
        o.put_u16(16);
        o.put_u32(0);
        o.put_u32(a.sample_rate.min(0xffff) << 16);
        full(o, b"esds", 0, 0, |o| {
            let asc = &a.asc[..a.asc.len().min(100)];
            let dsi = 2 + asc.len();
            let dcd = 2 + 13 + dsi;
            let es = 2 + 3 + dcd + 3;
            o.put_u8(3);
            o.put_u8((es - 2) as u8);
            o.put_u16(AUDIO_TRACK as u16);
            o.put_u8(0);
            o.put_u8(4);
            o.put_u8((dcd - 2) as u8);
            o.put_u8(0x40);
            o.put_u8(0x15);
            o.put_slice(&[0, 0, 0]);
            o.put_u32(0);
            o.put_u32(0);
            o.put_u8(5);
            o.put_u8(asc.len() as u8);
            o.put_slice(asc);
            o.put_slice(&[6, 1, 2]);
        });
    });
}

/// One sample of a fragment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Composition offset (PTS - DTS) in the track's timescale.
    pub cts: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// One track's run in a fragment.
#[derive(Debug, Clone)]
pub struct Run {
    pub track: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub base_time: u64,
    pub samples: Vec<Sample>,
}

/// A `moof` + `mdat` fragment; returned as chunks so sample data is never copied.
pub fn fragment(sequence: u32, runs: &[Run]) -> Vec<Bytes> {
    let runs: Vec<&Run> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let mut o = BytesMut::with_capacity(256);
    let mut offsets = Vec::new();
    bx(&mut o, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| o.put_u32(sequence));
        for r in &runs {
            bx(o, b"traf", |o| {
                full(o, b"tfhd", 0, 0x02_0000, |o| o.put_u32(r.track));
                full(o, b"tfdt", 1, 0, |o| o.put_u64(r.base_time));
                full(
                    o,
                    b"trun",
                    1,
                    0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800,
                    |o| {
                        o.put_u32(r.samples.len() as u32);
                        offsets.push(o.len());
                        o.put_i32(0);
                        for s in &r.samples {
                            o.put_u32(s.duration);
                            o.put_u32(s.data.len() as u32);
                            o.put_u32(if s.keyframe { 0x0200_0000 } else { 0x0101_0000 });
                            o.put_i32(s.cts);
                        }
                    },
                );
            });
        }
    });
    let moof_len = o.len();
    let mut data_pos = moof_len + 8;
    for (r, at) in runs.iter().zip(&offsets) {
        o[*at..*at + 4].copy_from_slice(&(data_pos as i32).to_be_bytes());
        data_pos += r.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    let mdat_len = data_pos - moof_len;
    o.put_u32(mdat_len as u32);
    o.put_slice(b"mdat");
    let mut chunks = vec![o.freeze()];
    for r in &runs {
        chunks.extend(r.samples.iter().map(|s| s.data.clone()));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-level boxes as (type, size).
    fn boxes(data: &[u8]) -> Vec<([u8; 4], usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 8 <= data.len() {
            let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            out.push((data[pos + 4..pos + 8].try_into().unwrap(), size));
            assert!(size >= 8 && pos + size <= data.len(), "box fits");
            pos += size;
        }
        assert_eq!(pos, data.len());
        out
    }

    #[test]
    fn fragment_layout_and_offsets() {
        let runs = [
            Run {
                track: VIDEO_TRACK,
                base_time: 9000,
                samples: vec![Sample {
                    duration: 3000,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::from_static(b"abcd"),
                }],
            },
            Run {
                track: AUDIO_TRACK,
                base_time: 4410,
                samples: vec![Sample {
                    duration: 1024,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::from_static(b"xy"),
                }],
            },
        ];
        let whole: Vec<u8> = fragment(7, &runs).concat();
        let b = boxes(&whole);
        assert_eq!(
            b.iter().map(|x| &x.0).collect::<Vec<_>>(),
            [b"moof", b"mdat"]
        );
        let moof = b[0].1;
        assert_eq!(&whole[moof + 8..], b"abcdxy");
        // Each trun's data_offset points at its samples.
        let first = whole.windows(4).position(|w| w == b"trun").unwrap() + 4 + 4 + 4;
        let off = i32::from_be_bytes(whole[first..first + 4].try_into().unwrap()) as usize;
        assert_eq!(&whole[off..off + 4], b"abcd");
    }
}
