//! The ownership directory's internal endpoints (docs/architecture.md, "Ownership directory").
//!
//! Origins of one cluster only (SRS never calls them): an owner claims a stream key at the
//! key's directory origins, renews the claim as a lease and releases it on unpublish; a
//! non-owner looks the key up there before it asks every coworker. All three are `POST`s
//! with a JSON body and the admin bearer token, next to `/api/v1/clusters` on the API port.

use serde::{Deserialize, Serialize};

use crate::addr::{AddrError, HostPort};

/// Largest request body a directory endpoint reads, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// A stream key: vhost, app and stream, normalised by the sender.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirectoryKey {
    pub vhost: String,
    pub app: String,
    pub stream: String,
}

/// Where a claimed stream is published: what a player or a relay needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerAddr {
    /// The owner's API address as its coworkers list it (`host:port`); it names the owner.
    pub api: String,
    /// The owner's advertised RTMP address (`host:port`).
    pub rtmp: String,
    /// The owner's advertised HTTP playback address (`host:port`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

/// Why an [`OwnerAddr`] from a peer is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OwnerAddrError {
    #[error("owner.{field}: {source}")]
    Addr {
        field: &'static str,
        source: AddrError,
    },
}

impl OwnerAddr {
    /// Checks the three addresses; returns the parsed API and RTMP addresses.
    pub fn validate(&self) -> Result<(HostPort, HostPort), OwnerAddrError> {
        let parse = |field: &'static str, v: &str| {
            HostPort::parse(v).map_err(|source| OwnerAddrError::Addr { field, source })
        };
        let api = parse("api", &self.api)?;
        let rtmp = parse("rtmp", &self.rtmp)?;
        if let Some(http) = &self.http {
            parse("http", http)?;
        }
        Ok((api, rtmp))
    }
}

/// `POST /api/v1/directory/claim`: claims a key, or renews this owner's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub key: DirectoryKey,
    pub owner: OwnerAddr,
    /// Names one publish on the owner; a release must carry the same number.
    pub claim: u64,
    /// The key's first directory origin granted this claim: a second directory origin that
    /// holds another owner's claim replaces it (the first directory origin decides).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takeover: bool,
    /// Replaces the claim of this number (its owner is gone), and only that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<u64>,
}

/// The answer to a claim: HTTP 200 when granted, 409 on a conflict (507 with
/// [`ErrorAnswer`] when the directory is full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ClaimAnswer {
    /// The claim holds for `lease_ms`; renew it well before.
    Granted { lease_ms: u64 },
    /// Another owner's claim, of number `claim`, holds the key.
    Conflict { owner: OwnerAddr, claim: u64 },
}

/// `POST /api/v1/directory/release`: drops a claim (only the claim it names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub key: DirectoryKey,
    /// The owner's API address, as in its claim.
    pub owner: String,
    pub claim: u64,
}

/// The answer to a release: whether a claim was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAnswer {
    pub released: bool,
}

/// `POST /api/v1/directory/lookup`: who owns a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    pub key: DirectoryKey,
}

/// The answer to a lookup: the owner, or `null` when this directory origin holds no claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupAnswer {
    pub owner: Option<OwnerAddr>,
    /// The answering origin itself publishes the key or is claiming it (asked of a claim's
    /// holder to tell a live claim from a stale one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claiming: bool,
}

/// The body of every refusal (400, 401, 403, 507): `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

/// Serialises a directory message (structs of strings and integers cannot fail).
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DirectoryKey {
        DirectoryKey {
            vhost: crate::DEFAULT_VHOST.into(),
            app: "live".into(),
            stream: "cam".into(),
        }
    }

    fn owner() -> OwnerAddr {
        OwnerAddr {
            api: "10.0.0.7:1985".into(),
            rtmp: "203.0.113.7:1935".into(),
            http: Some("203.0.113.7:8080".into()),
        }
    }

    fn round_trip<T>(value: &T) -> String
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let json = to_json(value);
        let back: T = serde_json::from_str(&json).expect("parses back");
        assert_eq!(&back, value, "{json}");
        json
    }

    #[test]
    fn claim_shapes() {
        let req = ClaimRequest {
            key: key(),
            owner: owner(),
            claim: 42,
            takeover: false,
            replace: None,
        };
        assert_eq!(
            round_trip(&req),
            r#"{"key":{"vhost":"__defaultVhost__","app":"live","stream":"cam"},"owner":{"api":"10.0.0.7:1985","rtmp":"203.0.113.7:1935","http":"203.0.113.7:8080"},"claim":42}"#
        );
        let forced = ClaimRequest {
            takeover: true,
            replace: Some(7),
            ..req
        };
        assert!(round_trip(&forced).ends_with(r#""claim":42,"takeover":true,"replace":7}"#));
        assert_eq!(
            round_trip(&ClaimAnswer::Granted { lease_ms: 10_000 }),
            r#"{"result":"granted","lease_ms":10000}"#
        );
        let conflict = round_trip(&ClaimAnswer::Conflict {
            owner: owner(),
            claim: 9,
        });
        assert!(conflict.starts_with(r#"{"result":"conflict","owner":{"api":"10.0.0.7:1985""#));
        assert!(conflict.ends_with(r#""claim":9}"#));
    }

    #[test]
    fn release_and_lookup_shapes() {
        round_trip(&ReleaseRequest {
            key: key(),
            owner: "10.0.0.7:1985".into(),
            claim: 7,
        });
        assert_eq!(
            round_trip(&ReleaseAnswer { released: true }),
            r#"{"released":true}"#
        );
        round_trip(&LookupRequest { key: key() });
        assert_eq!(
            round_trip(&LookupAnswer {
                owner: None,
                claiming: false
            }),
            r#"{"owner":null}"#
        );
        assert_eq!(
            round_trip(&LookupAnswer {
                owner: None,
                claiming: true
            }),
            r#"{"owner":null,"claiming":true}"#
        );
        let mut no_http = owner();
        no_http.http = None;
        assert_eq!(
            round_trip(&LookupAnswer {
                owner: Some(no_http),
                claiming: false
            }),
            r#"{"owner":{"api":"10.0.0.7:1985","rtmp":"203.0.113.7:1935"}}"#
        );
        round_trip(&ErrorAnswer {
            error: "directory full".into(),
        });
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(serde_json::from_str::<ClaimRequest>("{}").is_err());
        assert!(serde_json::from_str::<ClaimAnswer>(r#"{"result":"maybe"}"#).is_err());
        assert!(
            serde_json::from_str::<ClaimRequest>(
                r#"{"key":{"vhost":"v","app":"a","stream":"s"},"owner":{"api":"h:1","rtmp":"h:2"},"claim":-1}"#
            )
            .is_err()
        );
        let mut bad = owner();
        assert!(bad.validate().is_ok());
        bad.rtmp = "nowhere".into();
        assert!(matches!(
            bad.validate(),
            Err(OwnerAddrError::Addr { field: "rtmp", .. })
        ));
        bad = owner();
        bad.http = Some("a b:1".into());
        assert!(bad.validate().is_err());
    }
}
