//! The wire crate's parsers on arbitrary bytes.
//!
//! * `CoworkerDocument::from_slice`: never panics; an accepted document validates, and its
//!   JSON (what an origin serves on GET /api/v1/coworkers) is accepted again unchanged.
//! * `clusters::parse_owner` (an SRS-compatible ownership answer from a peer): never
//!   panics; an accepted owner has a non-empty ip and a non-zero port.
//! * `HostPort::parse`: never panics; an accepted address prints (`Display`, used to build
//!   URLs and redirects) as a string that parses back to the same address.

#![forbid(unsafe_code)]

#![no_main]

use libfuzzer_sys::fuzz_target;
use origin_wire::addr::HostPort;
use origin_wire::clusters::parse_owner;
use origin_wire::coworkers::CoworkerDocument;

fn host_port_round_trip(s: &str) {
    if let Ok(hp) = HostPort::parse(s) {
        let printed = hp.to_string();
        assert_eq!(HostPort::parse(&printed).as_ref(), Ok(&hp), "{s:?} printed as {printed:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = CoworkerDocument::from_slice(data) {
        let parsed = doc.validate().expect("an accepted document validates");
        assert_eq!(parsed.len(), doc.coworkers.len());
        let json = doc.to_json();
        let again = CoworkerDocument::from_slice(json.as_bytes()).expect("own JSON is accepted");
        assert_eq!(again, doc);
        for c in &doc.coworkers {
            host_port_round_trip(c);
        }
    }

    let status = if data.first() == Some(&b'!') { 201 } else { 200 };
    if let Some(owner) = parse_owner(status, data) {
        assert!(!owner.ip.is_empty() && owner.port != 0);
    }

    let s = String::from_utf8_lossy(data);
    host_port_round_trip(&s);
    for line in s.lines() {
        host_port_round_trip(line);
    }
});
