//! Codec configuration from FLV payloads, sans-io: AVC/HEVC decoder configuration records
//! (parameter sets, NAL length size), H.264 SPS dimensions, the AAC AudioSpecificConfig and
//! its ADTS header, and the split of an FLV video payload into its parts.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::flv::VideoCodec;

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("unsupported video codec {0}")]
    UnsupportedVideo(&'static str),
    #[error("unsupported audio codec (only AAC is packaged)")]
    UnsupportedAudio,
    #[error("invalid AudioSpecificConfig")]
    BadAudioConfig,
}

/// What an FLV video payload carries, with the FLV/Enhanced-RTMP header removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket {
    /// A decoder configuration record (`avcC`/`hvcC` body).
    Config { codec: VideoCodec, record: Bytes },
    /// Coded frames, length-prefixed NAL units, with the composition time offset in ms.
    Frames {
        codec: VideoCodec,
        cts: i32,
        keyframe: bool,
        data: Bytes,
    },
    /// End of sequence, metadata or anything else not packaged.
    Other,
}

/// Splits an FLV video tag payload (legacy or Enhanced RTMP).
pub fn video_packet(p: &Bytes) -> Result<VideoPacket, CodecError> {
    let Some(&b0) = p.first() else {
        return Err(CodecError::Truncated("video tag"));
    };
    if b0 & 0x80 != 0 {
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        let codec = match p.get(1..5) {
            Some(b"avc1") => VideoCodec::H264,
            Some(b"hvc1") => VideoCodec::Hevc,
            Some(b"av01") => return Err(CodecError::UnsupportedVideo("AV1")),
            Some(b"vp09") => return Err(CodecError::UnsupportedVideo("VP9")),
            Some(_) => return Err(CodecError::UnsupportedVideo("unknown FourCC")),
            None => return Err(CodecError::Truncated("Enhanced RTMP video header")),
        };
        let keyframe = frame_type == 1;
        return Ok(match packet_type {
            0 => VideoPacket::Config {
                codec,
                record: p.slice(5..),
            },
            1 => {
                let c = p
                    .get(5..8)
                    .ok_or(CodecError::Truncated("composition time"))?;
                VideoPacket::Frames {
                    codec,
                    cts: cts24(c),
                    keyframe,
                    data: p.slice(8..),
                }
            }
            3 => VideoPacket::Frames {
                codec,
                cts: 0,
                keyframe,
                data: p.slice(5..),
            },
            _ => VideoPacket::Other,
        });
    }
    let codec = match b0 & 0x0f {
        7 => VideoCodec::H264,
        12 => VideoCodec::Hevc,
        2 => return Err(CodecError::UnsupportedVideo("H263")),
        4 | 5 => return Err(CodecError::UnsupportedVideo("VP6")),
        _ => return Err(CodecError::UnsupportedVideo("unknown")),
    };
    if b0 >> 4 == 5 {
        // Video info/command frame.
        return Ok(VideoPacket::Other);
    }
    let head = p.get(1..5).ok_or(CodecError::Truncated("AVC header"))?;
    Ok(match head[0] {
        0 => VideoPacket::Config {
            codec,
            record: p.slice(5..),
        },
        1 => VideoPacket::Frames {
            codec,
            cts: cts24(&head[1..4]),
            keyframe: b0 >> 4 == 1,
            data: p.slice(5..),
        },
        _ => VideoPacket::Other,
    })
}

fn cts24(b: &[u8]) -> i32 {
    // Signed 24-bit big endian.
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

/// A video decoder configuration: the record as received plus what muxers need from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    pub codec: VideoCodec,
    /// The raw `AVCDecoderConfigurationRecord`/`HEVCDecoderConfigurationRecord`.
    pub record: Bytes,
    /// Bytes of each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    /// Parameter sets in decoding order (VPS, SPS, PPS), without start codes.
    pub parameter_sets: Vec<Bytes>,
    pub width: u16,
    pub height: u16,
}

/// Largest number of parameter sets kept from one record.
const MAX_PARAMETER_SETS: usize = 32;

impl VideoConfig {
    pub fn parse(codec: VideoCodec, record: Bytes) -> Result<Self, CodecError> {
        match codec {
            VideoCodec::H264 => Self::parse_avc(record),
            VideoCodec::Hevc => Self::parse_hevc(record),
            other => Err(CodecError::UnsupportedVideo(other.name())),
        }
    }

    fn parse_avc(record: Bytes) -> Result<Self, CodecError> {
        const T: CodecError = CodecError::Truncated("AVCDecoderConfigurationRecord");
        let r = &record[..];
        if r.len() < 7 {
            return Err(T);
        }
        let nal_length_size = usize::from(r[4] & 3) + 1;
        let mut sets = Vec::new();
        let mut pos = 5;
        for group in 0..2 {
            let count = *r.get(pos).ok_or(T)?;
            let count = if group == 0 { count & 0x1f } else { count };
            pos += 1;
            read_parameter_sets(&record, &mut pos, usize::from(count), &mut sets, T)?;
        }
        let (width, height) = sets
            .iter()
            .find(|s| s.first().map(|b| b & 0x1f) == Some(7))
            .and_then(|sps| h264_dimensions(sps))
            .unwrap_or((0, 0));
        Ok(Self {
            codec: VideoCodec::H264,
            record,
            nal_length_size,
            parameter_sets: sets,
            width,
            height,
        })
    }

    fn parse_hevc(record: Bytes) -> Result<Self, CodecError> {
        const T: CodecError = CodecError::Truncated("HEVCDecoderConfigurationRecord");
        let r = &record[..];
        if r.len() < 23 {
            return Err(T);
        }
        let nal_length_size = usize::from(r[21] & 3) + 1;
        let arrays = r[22];
        let mut pos = 23;
        let mut sets = Vec::new();
        for _ in 0..arrays {
            pos += 1; // completeness and NAL unit type
            let n = u16::from_be_bytes([*r.get(pos).ok_or(T)?, *r.get(pos + 1).ok_or(T)?]);
            pos += 2;
            read_parameter_sets(&record, &mut pos, usize::from(n), &mut sets, T)?;
        }
        // VPS (32), SPS (33), PPS (34) in that order whatever the record's order.
        sets.sort_by_key(|s| s.first().map(|b| (b >> 1) & 0x3f).unwrap_or(63));
        let (width, height) = sets
            .iter()
            .find(|s| s.first().map(|b| (b >> 1) & 0x3f) == Some(33))
            .and_then(|sps| hevc_dimensions(sps))
            .unwrap_or((0, 0));
        Ok(Self {
            codec: VideoCodec::Hevc,
            record,
            nal_length_size,
            parameter_sets: sets,
            width,
            height,
        })
    }

    /// The RFC 6381 codec string (`avc1.64001f`, `hvc1.1.6.L93.B0`).
    pub fn codec_string(&self) -> String {
        match self.codec {
            VideoCodec::H264 if self.record.len() >= 4 => format!(
                "avc1.{:02x}{:02x}{:02x}",
                self.record[1], self.record[2], self.record[3]
            ),
            VideoCodec::Hevc if self.record.len() >= 13 => {
                let r = &self.record;
                let profile_space = ["", "A", "B", "C"][usize::from(r[1] >> 6)];
                let tier = if r[1] & 0x20 != 0 { 'H' } else { 'L' };
                let profile = r[1] & 0x1f;
                let compat = u32::from_be_bytes([r[2], r[3], r[4], r[5]]).reverse_bits();
                format!(
                    "hvc1.{profile_space}{profile}.{compat:X}.{tier}{}.B0",
                    r[12]
                )
            }
            _ => "avc1".into(),
        }
    }
}

/// Converts length-prefixed NAL units to Annex B start codes, appending to `out`.
/// Access unit delimiters in the input are dropped (the muxer writes its own).
pub fn to_annex_b(
    out: &mut BytesMut,
    codec: VideoCodec,
    data: &[u8],
    nal_length_size: usize,
) -> Result<(), CodecError> {
    let mut pos = 0;
    while pos < data.len() {
        let head = data
            .get(pos..pos + nal_length_size)
            .ok_or(CodecError::Truncated("NAL length"))?;
        let len = head.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        pos += nal_length_size;
        let nal = data
            .get(pos..pos + len)
            .ok_or(CodecError::Truncated("NAL unit"))?;
        pos += len;
        if nal.is_empty() || is_aud(codec, nal[0]) {
            continue;
        }
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
    }
    Ok(())
}

fn is_aud(codec: VideoCodec, b0: u8) -> bool {
    match codec {
        VideoCodec::Hevc => (b0 >> 1) & 0x3f == 35,
        _ => b0 & 0x1f == 9,
    }
}

/// The access unit delimiter that starts every TS video access unit.
pub fn access_unit_delimiter(codec: VideoCodec) -> &'static [u8] {
    match codec {
        VideoCodec::Hevc => &[0, 0, 0, 1, 0x46, 0x01, 0x50],
        _ => &[0, 0, 0, 1, 0x09, 0xf0],
    }
}

/// Reads bits MSB first from an RBSP (emulation prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Self {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |a, _| Some((a << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            (k / 2 + 1) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// Width and height from an H.264 SPS NAL unit (with its header byte).
pub fn h264_dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    let mut b = Bits::new(sps.get(1..)?);
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags, level
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = b.ue()?;
        if chroma_format == 3 {
            b.bit()?;
        }
        b.ue()?;
        b.ue()?;
        b.bit()?;
        if b.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + b.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?;
    let w_mbs = b.ue()? + 1;
    let h_map = b.ue()? + 1;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?;
    }
    b.bit()?;
    let (crop_w, crop_h) = cropping(&mut b, chroma_format)?;
    // u64: every factor is below 2^33, so no product overflows.
    let field = u64::from(2 - frame_mbs_only);
    let w = (u64::from(w_mbs) * 16).checked_sub(crop_w)?;
    let h = (field * u64::from(h_map) * 16).checked_sub(field * crop_h)?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// Width and height from an HEVC SPS NAL unit (with its two header bytes).
pub fn hevc_dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    let mut b = Bits::new(sps.get(2..)?);
    b.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)?;
    b.bit()?; // temporal_id_nesting
    // profile_tier_level(1, max_sub_layers_minus1)
    b.bits(8)?; // profile space, tier, profile idc
    b.bits(32)?; // compatibility flags
    b.bits(24)?;
    b.bits(24)?; // 48 bits of constraint flags
    b.bits(8)?; // general_level_idc
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((b.bit()?, b.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            b.bits(2)?;
        }
    }
    for (profile, level) in present {
        if profile == 1 {
            b.bits(32)?;
            b.bits(32)?;
            b.bits(24)?; // 88 bits
        }
        if level == 1 {
            b.bits(8)?;
        }
    }
    b.ue()?; // sps_seq_parameter_set_id
    let chroma_format = b.ue()?;
    if chroma_format == 3 {
        b.bit()?;
    }
    let w = b.ue()?;
    let h = b.ue()?;
    let (crop_w, crop_h) = cropping(&mut b, chroma_format)?;
    let w = u64::from(w).checked_sub(crop_w)?;
    let h = u64::from(h).checked_sub(crop_h)?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// The conformance cropping window of an H.264 or HEVC SPS (a flag, then left, right,
/// top and bottom offsets in chroma units), as luma samples `(width, height)` to remove
/// (the height per field for interlaced H.264). u64: no product overflows.
fn cropping(b: &mut Bits, chroma_format: u32) -> Option<(u64, u64)> {
    if b.bit()? == 0 {
        return Some((0, 0));
    }
    let (l, r, t, btm) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
    // chroma_format_idc: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    let (sub_w, sub_h) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    Some((
        sub_w * (u64::from(l) + u64::from(r)),
        sub_h * (u64::from(t) + u64::from(btm)),
    ))
}

/// AAC AudioSpecificConfig essentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The raw AudioSpecificConfig (for `esds`).
    pub asc: Bytes,
    pub object_type: u8,
    pub frequency_index: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// What an FLV audio payload carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    Config(Bytes),
    Frame(Bytes),
}

/// Splits an FLV AAC audio payload; other codecs are refused.
pub fn audio_packet(p: &Bytes) -> Result<AudioPacket, CodecError> {
    let b0 = *p.first().ok_or(CodecError::Truncated("audio tag"))?;
    if b0 >> 4 != 10 {
        return Err(CodecError::UnsupportedAudio);
    }
    match p.get(1) {
        Some(0) => Ok(AudioPacket::Config(p.slice(2..))),
        Some(_) => Ok(AudioPacket::Frame(p.slice(2..))),
        None => Err(CodecError::Truncated("AAC packet type")),
    }
}

impl AudioConfig {
    pub fn parse(asc: Bytes) -> Result<Self, CodecError> {
        if asc.len() < 2 {
            return Err(CodecError::BadAudioConfig);
        }
        let object_type = asc[0] >> 3;
        let frequency_index = ((asc[0] & 7) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        if object_type == 0 || object_type == 31 || channels == 0 || channels > 7 {
            return Err(CodecError::BadAudioConfig);
        }
        let sample_rate = *SAMPLE_RATES
            .get(usize::from(frequency_index))
            .ok_or(CodecError::BadAudioConfig)?;
        Ok(Self {
            asc,
            object_type,
            frequency_index,
            sample_rate,
            channels,
        })
    }

    /// The 7-byte ADTS header (no CRC) for a raw AAC frame of `len` bytes.
    pub fn adts_header(&self, len: usize) -> [u8; 7] {
        let full = (len + 7) as u32;
        // ADTS carries profile = object type - 1 in two bits (Main, LC, SSR, LTP).
        let profile = (self.object_type.saturating_sub(1)).min(3);
        [
            0xff,
            0xf1,
            (profile << 6) | (self.frequency_index << 2) | (self.channels >> 2),
            ((self.channels & 3) << 6) | ((full >> 11) & 3) as u8,
            ((full >> 3) & 0xff) as u8,
            (((full & 7) << 5) as u8) | 0x1f,
            0xfc,
        ]
    }

    /// `mp4a.40.2` and friends.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// Reads `count` length-prefixed (u16) parameter sets at `pos` of a decoder
/// configuration record, keeping at most `MAX_PARAMETER_SETS` (as shared slices).
fn read_parameter_sets(
    record: &Bytes,
    pos: &mut usize,
    count: usize,
    sets: &mut Vec<Bytes>,
    truncated: CodecError,
) -> Result<(), CodecError> {
    let r = &record[..];
    for _ in 0..count {
        let hi = *r.get(*pos).ok_or(truncated)?;
        let lo = *r.get(*pos + 1).ok_or(truncated)?;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        *pos += 2;
        if *pos + len > r.len() {
            return Err(truncated);
        }
        if sets.len() < MAX_PARAMETER_SETS {
            sets.push(record.slice(*pos..*pos + len));
        }
        *pos += len;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_data {
    /// A real x264 SPS (640x360, High profile).
    pub(crate) const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use super::test_data::SPS;

    /// Exp-Golomb writer for hand-made parameter sets.
    fn ue_bits(bits: &mut Vec<bool>, v: u32) {
        let x = u64::from(v) + 1;
        let n = 64 - x.leading_zeros();
        bits.extend(std::iter::repeat_n(false, n as usize - 1));
        bits.extend((0..n).rev().map(|i| (x >> i) & 1 == 1));
    }

    fn pack(bits: &[bool]) -> Vec<u8> {
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |a, (i, b)| a | (u8::from(*b) << (7 - i)))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn prop_extreme_sps_values_never_panic(w in any::<u32>(), h in any::<u32>(), crop in prop::collection::vec(any::<u32>(), 4)) {
            let (w, h) = (w.min(u32::MAX - 1), h.min(u32::MAX - 1));
            let crop: Vec<u32> = crop.iter().map(|c| (*c).min(u32::MAX - 1)).collect();
            // H.264 baseline SPS: header, profile 66, flags, level, ids, then the sizes.
            let mut b: Vec<bool> = Vec::new();
            for byte in [0x67u8, 66, 0, 30] {
                b.extend((0..8).rev().map(|i| (byte >> i) & 1 == 1));
            }
            for v in [0, 0, 0, 0, 1] {
                ue_bits(&mut b, v);
            }
            b.push(false);
            ue_bits(&mut b, w);
            ue_bits(&mut b, h);
            b.extend([true, true, true]);
            for c in &crop {
                ue_bits(&mut b, *c);
            }
            let _ = h264_dimensions(&pack(&b));
            // HEVC SPS: header, ids, PTL (96 bits), id, chroma, sizes, window.
            let mut b: Vec<bool> = vec![false, true, false, false, false, false, true, false];
            b.extend([false; 8]);
            b.extend([false; 8]);
            b.extend([false; 96]);
            ue_bits(&mut b, 0);
            ue_bits(&mut b, 1);
            ue_bits(&mut b, w);
            ue_bits(&mut b, h);
            b.push(true);
            for c in &crop {
                ue_bits(&mut b, *c);
            }
            let _ = hevc_dimensions(&pack(&b));
        }
    }

    #[test]
    fn sps_dimensions() {
        assert_eq!(h264_dimensions(SPS), Some((640, 360)));
        assert_eq!(h264_dimensions(&[0x67]), None);
    }

    #[test]
    fn avc_record_and_annex_b() {
        let mut rec = vec![1, 0x64, 0, 0x1e, 0xff, 0xe1];
        rec.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        rec.extend_from_slice(SPS);
        rec.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        let c = VideoConfig::parse(VideoCodec::H264, Bytes::from(rec)).unwrap();
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.parameter_sets.len(), 2);
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!(c.codec_string(), "avc1.64001e");

        let mut out = BytesMut::new();
        let data = [0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 1, 2];
        to_annex_b(&mut out, VideoCodec::H264, &data, 4).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 1, 0x65, 1, 2], "AUD dropped");
        assert!(to_annex_b(&mut out, VideoCodec::H264, &[0, 0, 0, 9, 1], 4).is_err());
    }

    #[test]
    fn flv_video_packets() {
        let legacy = Bytes::from_static(&[0x17, 1, 0xff, 0xff, 0xfe, 9, 9]);
        assert_eq!(
            video_packet(&legacy).unwrap(),
            VideoPacket::Frames {
                codec: VideoCodec::H264,
                cts: -2,
                keyframe: true,
                data: Bytes::from_static(&[9, 9])
            }
        );
        let enhanced = Bytes::from_static(&[0x80 | 0x10 | 1, b'h', b'v', b'c', b'1', 0, 0, 40, 7]);
        assert_eq!(
            video_packet(&enhanced).unwrap(),
            VideoPacket::Frames {
                codec: VideoCodec::Hevc,
                cts: 40,
                keyframe: true,
                data: Bytes::from_static(&[7])
            }
        );
        let x = Bytes::from_static(&[0x80 | 0x20 | 3, b'h', b'v', b'c', b'1', 5]);
        assert!(matches!(
            video_packet(&x).unwrap(),
            VideoPacket::Frames {
                cts: 0,
                keyframe: false,
                ..
            }
        ));
        let seq = Bytes::from_static(&[0x80 | 0x10, b'h', b'v', b'c', b'1', 1, 2]);
        assert!(matches!(
            video_packet(&seq).unwrap(),
            VideoPacket::Config {
                codec: VideoCodec::Hevc,
                ..
            }
        ));
        assert!(video_packet(&Bytes::from_static(&[0x17, 1])).is_err());
        assert!(video_packet(&Bytes::from_static(&[0x80, b'a', b'v', b'0', b'1'])).is_err());
    }

    #[test]
    fn hevc_record() {
        let mut rec = vec![
            1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,
            0x0f,
        ];
        rec.push(2); // arrays
        rec.extend_from_slice(&[0x21, 0, 1, 0, 2, 0x42, 0x01]); // SPS
        rec.extend_from_slice(&[0x20, 0, 1, 0, 2, 0x40, 0x01]); // VPS
        let c = VideoConfig::parse(VideoCodec::Hevc, Bytes::from(rec)).unwrap();
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.parameter_sets[0][0], 0x40, "VPS first");
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.B0");
    }

    #[test]
    fn aac_config_and_adts() {
        let c = AudioConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 2));
        let h = c.adts_header(100);
        assert_eq!(&h[..2], &[0xff, 0xf1]);
        let len =
            ((usize::from(h[3]) & 3) << 11) | (usize::from(h[4]) << 3) | (usize::from(h[5]) >> 5);
        assert_eq!(len, 107);
        assert!(AudioConfig::parse(Bytes::from_static(&[0x12])).is_err());
        assert_eq!(
            audio_packet(&Bytes::from_static(&[0x2f, 1])),
            Err(CodecError::UnsupportedAudio)
        );
    }

    proptest! {
        #[test]
        fn prop_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let b = Bytes::from(data.clone());
            let _ = video_packet(&b);
            let _ = audio_packet(&b);
            let _ = VideoConfig::parse(VideoCodec::H264, b.clone());
            let _ = VideoConfig::parse(VideoCodec::Hevc, b.clone());
            let _ = AudioConfig::parse(b);
            let _ = h264_dimensions(&data);
            let _ = hevc_dimensions(&data);
            let mut out = BytesMut::new();
            for n in [1, 2, 4] {
                let _ = to_annex_b(&mut out, VideoCodec::H264, &data, n);
            }
        }

        #[test]
        fn prop_annex_b_keeps_every_nal(nals in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..50), 0..10)) {
            let mut data = Vec::new();
            for n in &nals {
                data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                data.extend_from_slice(n);
            }
            let mut out = BytesMut::new();
            to_annex_b(&mut out, VideoCodec::H264, &data, 4).unwrap();
            let kept: usize = nals.iter().filter(|n| n[0] & 0x1f != 9).map(|n| n.len() + 4).sum();
            prop_assert_eq!(out.len(), kept);
        }
    }
}
