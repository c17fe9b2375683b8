//! The resource names a playlist hands out, and their strict parsing.
//!
//! A playlist `/<app>/<stream>.m3u8` names resources relative to itself under
//! `<stream>/`: `seg<msn>.ts` (MPEG-TS), `seg<msn>.m4s`, `part<msn>.<i>.m4s` and
//! `init<n>.mp4` (low latency).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Segment(u64),
    Part(u64, u32),
    Init(u32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("unknown HLS resource name")]
    Unknown,
    #[error("bad number in HLS resource name or parameter")]
    BadNumber,
    #[error("this resource is not served in this HLS mode")]
    WrongMode,
}

/// Longest decimal number accepted in a name or query parameter.
const MAX_DIGITS: usize = 19;

/// Parses a decimal number strictly: digits only, no sign, bounded length.
pub fn number<T: std::str::FromStr>(s: &str) -> Result<T, NameError> {
    if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::BadNumber);
    }
    s.parse().map_err(|_| NameError::BadNumber)
}

pub fn segment_name(msn: u64, low_latency: bool) -> String {
    if low_latency {
        format!("seg{msn}.m4s")
    } else {
        format!("seg{msn}.ts")
    }
}

pub fn part_name(msn: u64, index: usize) -> String {
    format!("part{msn}.{index}.m4s")
}

pub fn init_name(generation: u32) -> String {
    format!("init{generation}.mp4")
}

pub fn parse_resource(name: &str, low_latency: bool) -> Result<Resource, NameError> {
    if let Some(n) = name.strip_prefix("seg").and_then(|n| n.strip_suffix(".ts")) {
        if low_latency {
            return Err(NameError::WrongMode);
        }
        return Ok(Resource::Segment(number(n)?));
    }
    if let Some(n) = name
        .strip_prefix("seg")
        .and_then(|n| n.strip_suffix(".m4s"))
    {
        if !low_latency {
            return Err(NameError::WrongMode);
        }
        return Ok(Resource::Segment(number(n)?));
    }
    if let Some(n) = name
        .strip_prefix("part")
        .and_then(|n| n.strip_suffix(".m4s"))
    {
        if !low_latency {
            return Err(NameError::WrongMode);
        }
        let (msn, i) = n.split_once('.').ok_or(NameError::Unknown)?;
        return Ok(Resource::Part(number(msn)?, number(i)?));
    }
    if let Some(n) = name
        .strip_prefix("init")
        .and_then(|n| n.strip_suffix(".mp4"))
    {
        if !low_latency {
            return Err(NameError::WrongMode);
        }
        return Ok(Resource::Init(number(n)?));
    }
    Err(NameError::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_resource(&segment_name(7, false), false),
            Ok(Resource::Segment(7))
        );
        assert_eq!(
            parse_resource(&segment_name(7, true), true),
            Ok(Resource::Segment(7))
        );
        assert_eq!(
            parse_resource(&part_name(7, 3), true),
            Ok(Resource::Part(7, 3))
        );
        assert_eq!(parse_resource(&init_name(2), true), Ok(Resource::Init(2)));
    }

    #[test]
    fn hostile_names() {
        for bad in [
            "seg.ts",
            "seg-1.ts",
            "seg+1.ts",
            "seg1 .ts",
            "seg99999999999999999999.ts",
            "x.ts",
            "seg1.ts/..",
            "part1.m4s",
        ] {
            assert!(parse_resource(bad, bad.ends_with(".m4s")).is_err(), "{bad}");
        }
        assert_eq!(parse_resource("seg1.m4s", false), Err(NameError::WrongMode));
        assert_eq!(
            parse_resource("part1.99999999999.m4s", true),
            Err(NameError::BadNumber)
        );
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(s in ".{0,40}") {
            let _ = parse_resource(&s, true);
            let _ = parse_resource(&s, false);
        }
    }
}
