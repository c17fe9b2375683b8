//! Stream identity and the one place where names are normalised.
//!
//! Every way a stream is named (an RTMP publish or play, an HTTP-FLV or HLS path, an
//! ownership query from a coworker) goes through [`StreamKey::parse`], so a publisher and
//! a query always agree on the key. Only a known playback extension (`.flv`, `.m3u8`,
//! `.ts`, `.mp4`) is stripped: `cam.1` stays `cam.1`, `cam.1.flv` is `cam.1`.

use std::fmt;

use origin_wire::DEFAULT_VHOST;

use crate::rtmp::url::query_param;

/// Longest app or stream name accepted.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest vhost accepted (a DNS name).
pub const MAX_VHOST_LEN: usize = 253;
/// Extensions a player may put on a stream name; they never belong to the name.
pub const PLAY_EXTENSIONS: [&str; 4] = [".flv", ".m3u8", ".ts", ".mp4"];

/// `vhost/app/stream`: the identity of a stream in one origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub vhost: String,
    pub app: String,
    pub stream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid vhost (DNS characters only, at most {MAX_VHOST_LEN} bytes)")]
    Vhost,
    #[error("invalid app name")]
    App,
    #[error("invalid stream name")]
    Stream,
    #[error("expected /<app>/<stream>{0}")]
    Path(&'static str),
}

impl StreamKey {
    /// A key from parts already known to be normal (tests, internal use).
    pub fn new(
        vhost: impl Into<String>,
        app: impl Into<String>,
        stream: impl Into<String>,
    ) -> Self {
        Self {
            vhost: vhost.into(),
            app: app.into(),
            stream: stream.into(),
        }
    }

    /// Normalises and validates a name: an empty vhost is the default one, a known
    /// playback extension is dropped from the stream, and each part is checked.
    pub fn parse(vhost: &str, app: &str, stream: &str) -> Result<Self, NameError> {
        let vhost = if vhost.is_empty() {
            DEFAULT_VHOST
        } else {
            vhost
        };
        if !valid_vhost(vhost) {
            return Err(NameError::Vhost);
        }
        let app = app.trim_matches('/');
        if !valid_name(app) {
            return Err(NameError::App);
        }
        let stream = strip_play_extension(stream);
        if !valid_name(stream) || stream.contains('/') {
            return Err(NameError::Stream);
        }
        Ok(Self::new(vhost, app, stream))
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.vhost, self.app, self.stream)
    }
}

/// Drops known playback extensions (`test.flv` == `test`, and `test.flv.flv` too, so
/// normalising is idempotent); any other dot stays.
pub fn strip_play_extension(mut stream: &str) -> &str {
    'again: loop {
        for ext in PLAY_EXTENSIONS {
            if let Some(base) = stream.strip_suffix(ext)
                && !base.is_empty()
            {
                stream = base;
                continue 'again;
            }
        }
        return stream;
    }
}

/// A name is valid when non-empty, bounded, and free of control characters and `..`
/// path segments.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.chars().any(|c| c.is_control())
        && !name.split('/').any(|seg| seg == ".." || seg.is_empty())
}

/// A vhost is a DNS name (letters, digits, `-`, `.`, and `_` for `__defaultVhost__`),
/// at most 253 bytes.
pub fn valid_vhost(vhost: &str) -> bool {
    !vhost.is_empty()
        && vhost.len() <= MAX_VHOST_LEN
        && vhost
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The parts of an HTTP playback path `/<app...>/<stream><ext>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayPath {
    pub key: StreamKey,
    /// The client's query string (without `?`), kept for redirects and hooks.
    pub query: Option<String>,
}

/// Parses an HTTP playback path that must end in `ext` (e.g. `.flv`), with the request's
/// raw query (its `vhost=` selects the vhost). The path is percent-decoded per segment.
pub fn parse_play_path(
    path: &str,
    raw_query: Option<&str>,
    ext: &'static str,
) -> Result<PlayPath, NameError> {
    let path = path.trim_start_matches('/');
    let Some(path) = path.strip_suffix(ext) else {
        return Err(NameError::Path(ext));
    };
    let Some((app, stream)) = path.rsplit_once('/') else {
        return Err(NameError::Path(ext));
    };
    let app = percent_decode(app).ok_or(NameError::App)?;
    let stream = percent_decode(stream).ok_or(NameError::Stream)?;
    let query = raw_query.filter(|q| !q.is_empty());
    let vhost = query
        .and_then(|q| query_param(q, "vhost"))
        .map(percent_decode)
        .unwrap_or(Some(String::new()))
        .ok_or(NameError::Vhost)?;
    let key = StreamKey::parse(&vhost, &app, &stream)?;
    Ok(PlayPath {
        key,
        query: query.map(str::to_string),
    })
}

/// Strict percent-decoding of a path segment: `None` for a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
            let (h, l) = (hex(i + 1)?, hex(i + 2)?);
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters and a
/// few sub-delimiters that are safe in a path), so a decoded name round-trips in a URL.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'+' | b',' | b';' | b'=' | b'@' | b':'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a `/`-separated path, segment by segment.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_playback_extensions_are_stripped() {
        let k = StreamKey::parse("", "live", "cam.1").unwrap();
        assert_eq!(k.stream, "cam.1");
        assert_eq!(k.vhost, DEFAULT_VHOST);
        assert_eq!(
            StreamKey::parse("", "live", "cam.1.flv").unwrap().stream,
            "cam.1"
        );
        assert_eq!(StreamKey::parse("", "live", "t.m3u8").unwrap().stream, "t");
        assert_eq!(StreamKey::parse("", "live", ".flv").unwrap().stream, ".flv");
        assert!(StreamKey::parse("", "live", "").is_err());
    }

    #[test]
    fn vhosts_are_dns_names() {
        assert!(valid_vhost("__defaultVhost__"));
        assert!(valid_vhost("a-b.example.com"));
        assert!(!valid_vhost("a\nb"));
        assert!(!valid_vhost("a b"));
        assert!(!valid_vhost(&"a".repeat(254)));
        assert!(StreamKey::parse("x\x1b[31m", "live", "s").is_err());
    }

    #[test]
    fn play_paths() {
        let p = parse_play_path("/live/cam.1.flv", Some("vhost=v1&token=x"), ".flv").unwrap();
        assert_eq!(p.key, StreamKey::new("v1", "live", "cam.1"));
        assert_eq!(p.query.as_deref(), Some("vhost=v1&token=x"));
        let p = parse_play_path("/a/b/s%20t.flv", None, ".flv").unwrap();
        assert_eq!(p.key, StreamKey::new(DEFAULT_VHOST, "a/b", "s t"));
        assert!(parse_play_path("/live/s.m3u8", None, ".flv").is_err());
        assert!(parse_play_path("/s.flv", None, ".flv").is_err());
        assert!(parse_play_path("/live/%zz.flv", None, ".flv").is_err());
        assert!(parse_play_path("/../x/s.flv", None, ".flv").is_err());
    }

    #[test]
    fn segments_round_trip() {
        assert_eq!(encode_segment("s t%"), "s%20t%25");
        assert_eq!(
            percent_decode(&encode_segment("a/b?c#d")).unwrap(),
            "a/b?c#d"
        );
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent(vhost in "[a-z_.-]{0,12}", app in "[a-z]{1,6}(/[a-z]{1,4})?", stream in "[a-zA-Z0-9._-]{1,16}(\\.flv|\\.m3u8|\\.ts|\\.mp4)?") {
            if let Ok(k) = StreamKey::parse(&vhost, &app, &stream) {
                let again = StreamKey::parse(&k.vhost, &k.app, &k.stream);
                prop_assert_eq!(again, Ok(k));
            }
        }

        #[test]
        fn publisher_and_query_agree(app in "[a-z]{1,6}", stream in "[a-zA-Z0-9 ._%-]{1,16}") {
            // A publisher names `stream`; an HTTP player asks for the encoded path with
            // `.flv`; an ownership query sends the raw name: all three keys are equal.
            if let Ok(published) = StreamKey::parse("", &app, &stream) {
                let path = format!("/{}/{}.flv", encode_segment(&app), encode_segment(&published.stream));
                let played = parse_play_path(&path, None, ".flv").map(|p| p.key);
                prop_assert_eq!(played, Ok(published.clone()));
                let queried = StreamKey::parse("", &app, &format!("{}.flv", published.stream));
                prop_assert_eq!(queried, Ok(published));
            }
        }

        #[test]
        fn parsing_never_panics(path in "\\PC{0,64}", q in proptest::option::of("\\PC{0,32}")) {
            let _ = parse_play_path(&path, q.as_deref(), ".flv");
        }
    }
}
