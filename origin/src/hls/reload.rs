//! Blocking playlist reload and blocking part requests (LL-HLS), decided purely from the
//! packager's state; the edge waits on a `watch` and asks again after each change.

use super::Packager;
use super::names::{NameError, number};

/// How far past the last part a client may ask (the spec's Advance Part Limit).
pub const ADVANCE_PART_LIMIT: u64 = 3;
/// How many segments past the one building a client may ask for.
pub const ADVANCE_SEGMENT_LIMIT: u64 = 2;

/// `_HLS_msn` and `_HLS_part` of a playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadRequest {
    pub msn: u64,
    pub part: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReloadError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
    #[error("_HLS_msn/_HLS_part is too far in the future")]
    TooFar,
    #[error("repeated HLS parameter")]
    Repeated,
}

impl ReloadRequest {
    /// Parses the blocking-reload parameters from decoded query pairs; `None` when the
    /// request does not block. Unrelated parameters are ignored.
    pub fn parse(pairs: &[(String, String)]) -> Result<Option<Self>, ReloadError> {
        let mut msn = None;
        let mut part = None;
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "_HLS_msn" => &mut msn,
                "_HLS_part" => &mut part,
                _ => continue,
            };
            if slot.is_some() {
                return Err(ReloadError::Repeated);
            }
            *slot = Some(number::<u64>(v)?);
        }
        match (msn, part) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ReloadError::PartWithoutMsn),
            (Some(msn), part) => Ok(Some(Self { msn, part })),
        }
    }

    /// Whether the playlist now holds what was asked for; an error when it never can
    /// soon enough to be worth waiting.
    pub fn ready(&self, p: &Packager) -> Result<bool, ReloadError> {
        let next = p.next_msn(); // the segment building (or next to start)
        if self.msn > next + ADVANCE_SEGMENT_LIMIT {
            return Err(ReloadError::TooFar);
        }
        if self.msn < next {
            return Ok(true); // segment complete, so all its parts exist
        }
        let Some(part) = self.part else {
            return Ok(false);
        };
        if self.msn > next {
            return if part > ADVANCE_PART_LIMIT * 4 {
                Err(ReloadError::TooFar)
            } else {
                Ok(false)
            };
        }
        let have = p.building_parts().map_or(0, |ps| ps.len()) as u64;
        if part >= have + ADVANCE_PART_LIMIT {
            return Err(ReloadError::TooFar);
        }
        Ok(part < have)
    }
}

/// Where a requested segment or part stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// Not there yet but expected soon (the preload-hinted part, the segment building).
    Soon,
    /// Expired from memory, or will never exist.
    Gone,
}

/// A part by msn and index: its bytes, or whether waiting makes sense.
pub fn part(p: &Packager, msn: u64, index: u64) -> Lookup<Vec<bytes::Bytes>> {
    let Ok(i) = usize::try_from(index) else {
        return Lookup::Gone;
    };
    if let Some(part) = p.part(msn, i) {
        return Lookup::Found(part.data.clone());
    }
    let next = p.next_msn();
    let building = p.building_parts().map_or(0, |ps| ps.len()) as u64;
    if (msn == next && index < building + ADVANCE_PART_LIMIT)
        || (msn == next + 1 && index < ADVANCE_PART_LIMIT)
    {
        Lookup::Soon
    } else {
        Lookup::Gone
    }
}

/// A complete segment by msn.
pub fn segment(p: &Packager, msn: u64) -> Lookup<Vec<bytes::Bytes>> {
    if let Some(s) = p.segment(msn) {
        return Lookup::Found(s.data.clone());
    }
    if msn == p.next_msn() {
        Lookup::Soon
    } else {
        Lookup::Gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::HlsConfig;
    use crate::hls::packager::tests::{aac_header, avc_header, feed};
    use proptest::prelude::*;
    use std::time::Duration;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ll() -> Packager {
        let mut p = Packager::new(HlsConfig {
            low_latency: true,
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
    fn parse_params() {
        assert_eq!(ReloadRequest::parse(&pairs(&[("vhost", "x")])), Ok(None));
        assert_eq!(
            ReloadRequest::parse(&pairs(&[("_HLS_msn", "5"), ("_HLS_part", "2")])),
            Ok(Some(ReloadRequest {
                msn: 5,
                part: Some(2)
            }))
        );
        assert_eq!(
            ReloadRequest::parse(&pairs(&[("_HLS_part", "2")])),
            Err(ReloadError::PartWithoutMsn)
        );
        assert!(ReloadRequest::parse(&pairs(&[("_HLS_msn", "-1")])).is_err());
        assert!(ReloadRequest::parse(&pairs(&[("_HLS_msn", "1e3")])).is_err());
        assert!(ReloadRequest::parse(&pairs(&[("_HLS_msn", "99999999999999999999999")])).is_err());
        assert_eq!(
            ReloadRequest::parse(&pairs(&[("_HLS_msn", "1"), ("_HLS_msn", "2")])),
            Err(ReloadError::Repeated)
        );
    }

    #[test]
    fn blocking_decisions_follow_the_packager() {
        let mut p = ll();
        feed(&mut p, 0, 100, 50); // 4 s: segment 0 complete, segment 1 building
        let next = p.next_msn();
        let have = p.building_parts().unwrap().len() as u64;
        let r = |msn, part| ReloadRequest { msn, part }.ready(&p);
        assert_eq!(r(next - 1, None), Ok(true));
        assert_eq!(r(next, None), Ok(false));
        assert_eq!(r(next, Some(0)), Ok(have > 0));
        assert_eq!(
            r(next, Some(have)),
            Ok(false),
            "the hinted part is not there yet"
        );
        assert_eq!(
            r(next, Some(have + ADVANCE_PART_LIMIT)),
            Err(ReloadError::TooFar)
        );
        assert_eq!(r(next + 1, Some(0)), Ok(false));
        assert_eq!(r(next + 3, None), Err(ReloadError::TooFar));
        assert_eq!(part(&p, next, have), Lookup::Soon);
        assert_eq!(part(&p, next, have + 10), Lookup::Gone);
        assert_eq!(part(&p, 10_000, 0), Lookup::Gone);
        assert!(matches!(segment(&p, next - 1), Lookup::Found(_)));
        assert_eq!(segment(&p, next), Lookup::Soon);
        // Once the next part is cut, the same request is ready.
        let before = p.building_parts().unwrap().len();
        let mut i = 100;
        while p.building_parts().map_or(0, |x| x.len()) == before && p.next_msn() == next {
            feed(&mut p, i, 1, 50);
            i += 1;
        }
        assert_eq!(
            ReloadRequest {
                msn: next,
                part: Some(have)
            }
            .ready(&p),
            Ok(true)
        );
    }

    proptest! {
        #[test]
        fn prop_decisions_never_panic(msn in any::<u64>(), part in proptest::option::of(any::<u64>())) {
            let mut p = ll();
            feed(&mut p, 0, 80, 25);
            let _ = ReloadRequest { msn, part }.ready(&p);
            let _ = super::part(&p, msn, part.unwrap_or(0));
            let _ = segment(&p, msn);
        }
    }
}
