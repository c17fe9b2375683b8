//! The FLV demuxer on arbitrary bytes: `parse_file` and the incremental `Demuxer` fed in
//! pseudo-random pieces must agree; every tag fits `MAX_TAG_SIZE`; tags re-muxed with
//! `file_header` + `encode_tag` demux to the same tags; the payload inspectors
//! (`inspect_video` / `inspect_audio`) never panic on any tag or on the raw input.

#![forbid(unsafe_code)]

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use origin::media::flv::{self, Demuxer, FlvError, MAX_TAG_SIZE, Tag};

fn incremental(data: &[u8], step: usize) -> (Vec<Tag>, Option<FlvError>) {
    let mut d = Demuxer::new();
    let mut tags = Vec::new();
    for piece in data.chunks(step.max(1)) {
        d.push(piece);
        loop {
            match d.next_tag() {
                Ok(Some(t)) => tags.push(t),
                Ok(None) => break,
                Err(e) => return (tags, Some(e)),
            }
        }
    }
    (tags, None)
}

fuzz_target!(|data: &[u8]| {
    let _ = flv::inspect_video(data);
    let _ = flv::inspect_audio(data);

    let whole = flv::parse_file(data);
    let step = data.first().map_or(1, |b| usize::from(*b) + 1);
    let (tags, err) = incremental(data, step);
    match &whole {
        Ok(t) => assert_eq!((t, None), (&tags, err.as_ref()), "incremental demux disagrees"),
        Err(e) => assert_eq!(Some(e), err.as_ref(), "incremental demux disagrees"),
    }
    if data.len() <= 4096 {
        let (one, err1) = incremental(data, 1);
        assert_eq!((&one, &err1), (&tags, &err), "byte-at-a-time demux disagrees");
    }

    let Ok(tags) = whole else { return };
    let mut file = BytesMut::new();
    file.extend_from_slice(&flv::file_header(true, true));
    for t in &tags {
        assert!(t.payload.len() <= MAX_TAG_SIZE);
        let _ = flv::inspect_video(&t.payload);
        let _ = flv::inspect_audio(&t.payload);
        file.extend_from_slice(&flv::encode_tag(t.tag_type, t.timestamp, &t.payload));
    }
    assert_eq!(flv::parse_file(&file).as_ref(), Ok(&tags), "re-muxed tags differ");
});
