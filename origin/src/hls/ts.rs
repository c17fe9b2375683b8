//! MPEG-TS writer (ISO/IEC 13818-1), sans-io: PAT/PMT, PES packetization into 188-byte
//! packets, PCR on the video PID (audio when there is no video), continuity counters.

use bytes::{BufMut, BytesMut};

use crate::media::flv::VideoCodec;

pub const PACKET: usize = 188;
const PAT_PID: u16 = 0;
const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x100;
pub const AUDIO_PID: u16 = 0x101;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_HEVC: u8 = 0x24;
const STREAM_TYPE_AAC: u8 = 0x0f;
/// 33-bit PTS/DTS wrap.
const TS_MASK: u64 = (1 << 33) - 1;

/// Continuity counters and program layout of one TS stream.
#[derive(Debug, Clone)]
pub struct TsWriter {
    video: Option<VideoCodec>,
    audio: bool,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl TsWriter {
    pub fn new(video: Option<VideoCodec>, audio: bool) -> Self {
        Self {
            video,
            audio,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
        }
    }

    fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// PAT and PMT, written at the start of every segment.
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&[0x00, 0xb0, 0, 0x00, 0x01, 0xc1, 0, 0]);
        pat.extend_from_slice(&[0x00, 0x01, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        finish_section(&mut pat);
        write_section(out, PAT_PID, &mut self.cc_pat, &pat);

        let mut pmt = Vec::with_capacity(32);
        let pcr = self.pcr_pid();
        pmt.extend_from_slice(&[0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0, 0]);
        pmt.extend_from_slice(&[0xe0 | (pcr >> 8) as u8, pcr as u8, 0xf0, 0]);
        if let Some(codec) = self.video {
            let st = if codec == VideoCodec::Hevc {
                STREAM_TYPE_HEVC
            } else {
                STREAM_TYPE_H264
            };
            pmt.extend_from_slice(&[st, 0xe0 | (VIDEO_PID >> 8) as u8, VIDEO_PID as u8, 0xf0, 0]);
        }
        if self.audio {
            pmt.extend_from_slice(&[
                STREAM_TYPE_AAC,
                0xe0 | (AUDIO_PID >> 8) as u8,
                AUDIO_PID as u8,
                0xf0,
                0,
            ]);
        }
        finish_section(&mut pmt);
        write_section(out, PMT_PID, &mut self.cc_pmt, &pmt);
    }

    /// One video access unit (Annex B) as a PES; `pts`/`dts` in 90 kHz.
    pub fn write_video(&mut self, out: &mut BytesMut, pts: u64, dts: u64, key: bool, es: &[u8]) {
        let pcr = (self.pcr_pid() == VIDEO_PID).then_some(dts);
        let mut cc = self.cc_video;
        write_pes(out, VIDEO_PID, &mut cc, 0xe0, pts, Some(dts), pcr, key, es);
        self.cc_video = cc;
    }

    /// One audio frame (ADTS) as a PES; `pts` in 90 kHz.
    pub fn write_audio(&mut self, out: &mut BytesMut, pts: u64, es: &[u8]) {
        let pcr = (self.pcr_pid() == AUDIO_PID).then_some(pts);
        let mut cc = self.cc_audio;
        write_pes(
            out,
            AUDIO_PID,
            &mut cc,
            0xc0,
            pts,
            None,
            pcr,
            pcr.is_some(),
            es,
        );
        self.cc_audio = cc;
    }
}

/// Fills in section_length and appends the CRC.
fn finish_section(s: &mut Vec<u8>) {
    let len = s.len() - 3 + 4;
    s[1] = 0xb0 | ((len >> 8) as u8 & 0x0f);
    s[2] = len as u8;
    let crc = crc32_mpeg(s);
    s.extend_from_slice(&crc.to_be_bytes());
}

fn write_section(out: &mut BytesMut, pid: u16, cc: &mut u8, section: &[u8]) {
    let start = out.len();
    out.put_u8(0x47);
    out.put_u8(0x40 | (pid >> 8) as u8);
    out.put_u8(pid as u8);
    out.put_u8(0x10 | *cc);
    *cc = (*cc + 1) & 0x0f;
    out.put_u8(0); // pointer field
    out.put_slice(section);
    out.resize(start + PACKET, 0xff);
}

fn put_timestamp(out: &mut BytesMut, prefix: u8, t: u64) {
    let t = t & TS_MASK;
    out.put_u8((prefix << 4) | (((t >> 30) as u8 & 7) << 1) | 1);
    out.put_u16((((t >> 15) & 0x7fff) as u16) << 1 | 1);
    out.put_u16(((t & 0x7fff) as u16) << 1 | 1);
}

#[allow(clippy::too_many_arguments)]
fn write_pes(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    pcr: Option<u64>,
    random_access: bool,
    es: &[u8],
) {
    let dts = dts.filter(|d| *d != pts);
    let header_data = if dts.is_some() { 10 } else { 5 };
    let mut pes = BytesMut::with_capacity(9 + header_data);
    pes.put_slice(&[0, 0, 1, stream_id]);
    let pes_len = 3 + header_data + es.len();
    // Video may leave the length open (0); audio frames always fit.
    pes.put_u16(if stream_id == 0xe0 || pes_len > 0xffff {
        0
    } else {
        pes_len as u16
    });
    pes.put_u8(0x80);
    pes.put_u8(if dts.is_some() { 0xc0 } else { 0x80 });
    pes.put_u8(header_data as u8);
    put_timestamp(&mut pes, if dts.is_some() { 3 } else { 2 }, pts);
    if let Some(d) = dts {
        put_timestamp(&mut pes, 1, d);
    }

    let total = pes.len() + es.len();
    let mut written = 0;
    let mut first = true;
    while written < total {
        let start = out.len();
        out.put_u8(0x47);
        out.put_u8(if first { 0x40 } else { 0 } | (pid >> 8) as u8);
        out.put_u8(pid as u8);
        // Adaptation field: PCR/random access on the first packet, stuffing on the last.
        let mut af: Vec<u8> = Vec::new();
        if first && (pcr.is_some() || random_access) {
            let mut flags = 0u8;
            if random_access {
                flags |= 0x40;
            }
            af.push(flags);
            if let Some(p) = pcr {
                af[0] |= 0x10;
                let base = p & TS_MASK;
                af.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    (((base & 1) as u8) << 7) | 0x7e,
                    0,
                ]);
            }
        }
        let remaining = total - written;
        let room = |af_len: usize| PACKET - 4 - if af_len > 0 { 1 + af_len } else { 0 };
        if remaining < room(af.len()) {
            // Stuff: grow the adaptation field so the payload fills the packet exactly.
            let need = PACKET - 4 - remaining; // bytes for length byte + field
            if need == 1 {
                // Adaptation field of length 0 (just the length byte).
                af.clear();
                out.put_u8(0x30 | *cc);
                out.put_u8(0);
            } else {
                if af.is_empty() {
                    af.push(0);
                }
                af.resize(need - 1, 0xff);
                out.put_u8(0x30 | *cc);
                out.put_u8(af.len() as u8);
                out.put_slice(&af);
            }
        } else if af.is_empty() {
            out.put_u8(0x10 | *cc);
        } else {
            out.put_u8(0x30 | *cc);
            out.put_u8(af.len() as u8);
            out.put_slice(&af);
        }
        *cc = (*cc + 1) & 0x0f;
        let space = PACKET - (out.len() - start);
        let mut take = space.min(total - written);
        while take > 0 {
            if written < pes.len() {
                let n = take.min(pes.len() - written);
                out.put_slice(&pes[written..written + n]);
                written += n;
                take -= n;
            } else {
                let off = written - pes.len();
                out.put_slice(&es[off..off + take]);
                written += take;
                take = 0;
            }
        }
        debug_assert_eq!(out.len() - start, PACKET);
        first = false;
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, no reflection, no final xor).
pub fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reassembles the PES payload bytes of `pid` from TS packets, checking continuity.
    pub(crate) fn payloads(ts: &[u8], pid: u16) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut last_cc: Option<u8> = None;
        for p in ts.chunks(PACKET) {
            assert_eq!(p.len(), PACKET);
            assert_eq!(p[0], 0x47);
            let this = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            if this != pid {
                continue;
            }
            let cc = p[3] & 0x0f;
            if let Some(l) = last_cc {
                assert_eq!(cc, (l + 1) & 0x0f, "continuity counter");
            }
            last_cc = Some(cc);
            let mut pos = 4;
            if p[3] & 0x20 != 0 {
                pos += 1 + usize::from(p[4]);
            }
            if p[1] & 0x40 != 0 {
                out.push(Vec::new());
            }
            if let Some(cur) = out.last_mut() {
                cur.extend_from_slice(&p[pos..]);
            }
        }
        out
    }

    #[test]
    fn crc_of_known_pat() {
        // The CRC of a section including its own CRC is zero.
        let mut s = vec![0x00, 0xb0, 0, 0x00, 0x01, 0xc1, 0, 0, 0, 1, 0xf0, 0];
        finish_section(&mut s);
        assert_eq!(crc32_mpeg(&s), 0);
    }

    #[test]
    fn tables_are_whole_packets() {
        let mut w = TsWriter::new(Some(VideoCodec::H264), true);
        let mut out = BytesMut::new();
        w.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET);
        assert_eq!(&out[..4], &[0x47, 0x40, 0, 0x10]);
    }

    proptest! {
        #[test]
        fn prop_pes_round_trips(sizes in prop::collection::vec(0usize..2000, 1..8), pts in any::<u64>()) {
            let mut w = TsWriter::new(Some(VideoCodec::H264), true);
            let mut out = BytesMut::new();
            let mut sent = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let es: Vec<u8> = (0..*n).map(|j| (i + j) as u8).collect();
                w.write_video(&mut out, pts, pts.wrapping_sub(3000), i == 0, &es);
                sent.push(es);
            }
            prop_assert_eq!(out.len() % PACKET, 0);
            let got = payloads(&out, VIDEO_PID);
            prop_assert_eq!(got.len(), sent.len());
            for (g, s) in got.iter().zip(&sent) {
                prop_assert_eq!(&g[..4], &[0u8, 0, 1, 0xe0][..]);
                let hl = 9 + usize::from(g[8]);
                prop_assert_eq!(&g[hl..], &s[..]);
            }
        }
    }
}
