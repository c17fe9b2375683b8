//! Everything else a peer's message body reaches: protocol control messages (parse →
//! encode → parse is the identity), aggregate splitting (only media sub-messages come
//! out), command parsing (parse → encode →
//! parse keeps the command), and the tcUrl / stream-name helpers.
//!
//! Input: `[type id]` then the message payload.

#![forbid(unsafe_code)]

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use origin::rtmp::message::{Control, kind, split_aggregate};
use origin::rtmp::{command, url};

fuzz_target!(|data: &[u8]| {
    let Some((&type_id, body)) = data.split_first() else { return };
    let payload = Bytes::copy_from_slice(body);

    if let Ok(Some(c)) = Control::parse(type_id, body) {
        let (t, p) = c.encode();
        assert_eq!(t, type_id);
        assert_eq!(Control::parse(t, &p), Ok(Some(c)));
    }

    for (t, _, part) in split_aggregate(u32::from_le_bytes([type_id, 0, 1, 2]), &payload) {
        assert!(part.len() <= payload.len());
        // Sub-messages go to the stream as media: never a control or command type.
        assert!(
            matches!(t, kind::AUDIO | kind::VIDEO | kind::DATA_AMF0 | kind::DATA_AMF3),
            "aggregate yielded a type {t} sub-message"
        );
    }

    for t in [kind::COMMAND_AMF0, kind::COMMAND_AMF3] {
        if let Ok(cmd) = command::parse(t, body) {
            let enc = cmd.encode();
            let again = command::parse(kind::COMMAND_AMF0, &enc).expect("re-encoded command parses");
            assert_eq!(again.name, cmd.name);
            // Compare through the encoding: a NaN transaction id is not equal to itself.
            assert_eq!(&again.encode()[..], &enc[..]);
            let _ = (cmd.arg_str(0), cmd.arg_number(1));
        }
    }

    if let Ok(s) = std::str::from_utf8(body) {
        let tc = url::TcUrl::parse(s);
        let (name, query) = url::split_stream(s);
        let _ = origin::media::StreamKey::parse("", "live", name);
        let _ = url::resolve_vhost(&[tc.query.as_deref(), query, Some(s)]);
        let _ = url::query_param(s, "vhost");
    }
});
