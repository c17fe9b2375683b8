//! Media playlist rendering (RFC 8216bis), MPEG-TS and Low-Latency HLS.

use std::fmt::Write;

use super::Packager;
use super::names::{init_name, part_name, segment_name};

/// How URIs in the playlist are written: `<prefix><name><query>`.
#[derive(Debug, Clone, Default)]
pub struct Uris {
    /// Relative directory of the resources (`<stream>/`), already percent-encoded.
    pub prefix: String,
    /// Query appended to every URI (`?vhost=...`), or empty.
    pub query: String,
}

impl Uris {
    /// Resources of stream `stream` under `<stream>/`, carrying `query` (without `?`).
    pub fn for_stream(stream: &str, query: &str) -> Self {
        Self {
            prefix: format!("{}/", percent_encode(stream)),
            query: if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            },
        }
    }

    fn uri(&self, name: &str) -> String {
        format!("{}{}{}", self.prefix, name, self.query)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// `EXT-X-PROGRAM-DATE-TIME` value (ISO 8601, UTC, milliseconds) of Unix time `ms`.
pub fn iso8601(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let rem = ms % 86_400_000;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// `PART-HOLD-BACK` as a multiple of the part target (the spec requires at least 2).
pub const PART_HOLD_BACK_FACTOR: f64 = 2.5;

/// Renders the media playlist; `None` until the first segment is complete.
pub fn render(p: &Packager, uris: &Uris) -> Option<String> {
    let first = p.window().next()?;
    let cfg = p.config();
    let ll = cfg.low_latency;
    let mut o = String::with_capacity(256 + 160 * cfg.window * if ll { 4 } else { 1 });
    o.push_str("#EXTM3U\n");
    let _ = writeln!(o, "#EXT-X-VERSION:{}", if ll { 6 } else { 3 });
    // Every segment starts with a keyframe (or carries only audio).
    o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", p.target_secs());
    let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", first.msn);
    let dseq = p.discontinuity_sequence();
    if dseq > 0 {
        let _ = writeln!(o, "#EXT-X-DISCONTINUITY-SEQUENCE:{dseq}");
    }
    let part_ms = cfg.part_target.as_millis() as u64;
    if ll {
        let hold = (part_ms as f64 * PART_HOLD_BACK_FACTOR).round() as u64;
        let _ = writeln!(
            o,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={}",
            secs(hold)
        );
        let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={}", secs(part_ms));
    }
    // Parts are listed for segments within three target durations of the live edge.
    let window: Vec<_> = p.window().collect();
    let mut recent_from = window.len();
    let mut acc = 0;
    for (i, s) in window.iter().enumerate().rev() {
        acc += s.duration_ms;
        if acc > 3 * 1000 * p.target_secs() {
            break;
        }
        recent_from = i;
    }
    let mut map: Option<u32> = None;
    let mut put_map = |o: &mut String, init: u32| {
        if ll && map != Some(init) {
            let _ = writeln!(o, "#EXT-X-MAP:URI=\"{}\"", uris.uri(&init_name(init)));
            map = Some(init);
        }
    };
    for (i, s) in window.iter().enumerate() {
        if s.discontinuity && i > 0 {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        put_map(&mut o, s.init);
        let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(s.wall_ms));
        if ll && i >= recent_from {
            for (j, part) in s.parts.iter().enumerate() {
                write_part(&mut o, uris, s.msn, j, part.duration_ms, part.independent);
            }
        }
        let _ = writeln!(o, "#EXTINF:{},", secs(s.duration_ms));
        let _ = writeln!(o, "{}", uris.uri(&segment_name(s.msn, ll)));
    }
    if ll && let (Some(msn), Some(parts)) = (p.building_msn(), p.building_parts()) {
        if p.building_discontinuity() {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some((init, _)) = p.init() {
            put_map(&mut o, init);
        }
        if !parts.is_empty()
            && let Some(w) = p.building_wall_ms()
        {
            let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(w));
        }
        for (j, part) in parts.iter().enumerate() {
            write_part(&mut o, uris, msn, j, part.duration_ms, part.independent);
        }
        let _ = writeln!(
            o,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            uris.uri(&part_name(msn, parts.len()))
        );
    }
    Some(o)
}

fn write_part(o: &mut String, uris: &Uris, msn: u64, j: usize, ms: u64, independent: bool) {
    let _ = write!(
        o,
        "#EXT-X-PART:DURATION={},URI=\"{}\"",
        secs(ms),
        uris.uri(&part_name(msn, j))
    );
    o.push_str(if independent {
        ",INDEPENDENT=YES\n"
    } else {
        "\n"
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::HlsConfig;
    use crate::hls::packager::tests::{aac_header, avc_header, feed};
    use std::time::Duration;

    fn packager(ll: bool) -> Packager {
        let mut p = Packager::new(HlsConfig {
            low_latency: ll,
            target_duration: Duration::from_secs(2),
            window: 4,
            part_target: Duration::from_millis(500),
            max_window_bytes: 8 << 20,
        });
        p.push(&avc_header(), 0).unwrap();
        p.push(&aac_header(), 0).unwrap();
        p
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(iso8601(1_796_167_066_000), "2026-12-01T23:17:46.000Z");
    }

    #[test]
    fn nothing_before_the_first_segment() {
        let p = packager(false);
        assert!(render(&p, &Uris::default()).is_none());
    }

    #[test]
    fn ts_playlist_shape() {
        let mut p = packager(false);
        feed(&mut p, 0, 400, 25);
        let text = render(&p, &Uris::for_stream("s t", "vhost=v")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert_eq!(lines[2], "#EXT-X-INDEPENDENT-SEGMENTS");
        assert_eq!(lines[3], "#EXT-X-TARGETDURATION:2");
        let first = p.window().next().unwrap().msn;
        assert_eq!(lines[4], format!("#EXT-X-MEDIA-SEQUENCE:{first}"));
        assert!(first > 0, "the window slid");
        assert_eq!(text.matches("#EXTINF:2.000,").count(), 4);
        assert!(text.contains(&format!("s%20t/seg{first}.ts?vhost=v\n")));
        assert!(!text.contains("EXT-X-PART"));
        assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 4);
    }

    #[test]
    fn ll_playlist_shape() {
        let mut p = packager(true);
        feed(&mut p, 0, 410, 50);
        let text = render(&p, &Uris::for_stream("s", "")).unwrap();
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.250\n"));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"s/init1.mp4\"\n"));
        let last = text.lines().last().unwrap();
        assert_eq!(
            last,
            format!(
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s/part{}.{}.m4s\"",
                p.next_msn(),
                p.building_parts().unwrap().len()
            )
        );
        // Header tags precede the first media segment tag.
        let first_media = text
            .lines()
            .position(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
            .unwrap();
        let last_header = text
            .lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| {
                l.starts_with("#EXT-X-PART-INF") || l.starts_with("#EXT-X-SERVER-CONTROL")
            })
            .unwrap();
        assert!(last_header < first_media);
        for l in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
            let d: f64 = l["#EXT-X-PART:DURATION=".len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(d <= 0.5, "{l}");
        }
    }
}
