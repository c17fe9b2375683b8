//! HTTP playback paths and ownership-query names: `parse_play_path` (path, raw query,
//! extension) and `StreamKey::parse` never panic; whatever parses is normal (parsing its
//! parts again gives the same key), and the URL built from a key (segments re-encoded, as
//! redirects build it) parses back to the same key.

#![forbid(unsafe_code)]

#![no_main]

use libfuzzer_sys::fuzz_target;
use origin::media::StreamKey;
use origin::media::name::{encode_path, encode_segment, parse_play_path};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    for ext in [".flv", ".m3u8"] {
        if let Ok(p) = parse_play_path(path, query, ext) {
            let k = &p.key;
            assert_eq!(
                StreamKey::parse(&k.vhost, &k.app, &k.stream).as_ref(),
                Ok(k),
                "a parsed key is normal"
            );
            let url = format!("/{}/{}{ext}", encode_path(&k.app), encode_segment(&k.stream));
            let vq = format!("vhost={}", k.vhost);
            let again = parse_play_path(&url, Some(&vq), ext).map(|p| p.key);
            assert_eq!(again.as_ref(), Ok(k), "{url}");
        }
    }
    // Ownership queries name streams raw (no decoding): the same normalisation applies.
    let mut parts = s.splitn(3, '\n');
    let (v, a, st) = (parts.next(), parts.next(), parts.next());
    if let (Some(v), Some(a), Some(st)) = (v, a, st)
        && let Ok(k) = StreamKey::parse(v, a, st)
    {
        assert_eq!(StreamKey::parse(&k.vhost, &k.app, &k.stream), Ok(k.clone()));
    }
});
