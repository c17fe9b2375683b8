//! The coworker document (DESIGN §5): what the operator writes to the ConfigMap and PUTs
//! to every origin, and what an origin shows on `GET /api/v1/coworkers`.

use serde::{Deserialize, Serialize};

use crate::addr::HostPort;

/// Key of the document in ConfigMap `NAME-coworkers`.
pub const CONFIGMAP_KEY: &str = "coworkers.json";
/// Directory the ConfigMap is mounted at in origin pods (never a subPath mount).
pub const MOUNT_DIR: &str = "/etc/origin/coworkers";
/// Largest coworker list accepted (a cluster is capped at 1000 replicas).
pub const MAX_COWORKERS: usize = 4096;
/// Largest document body accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Addresses an origin puts into its redirects instead of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertise {
    /// `host:port` players use for RTMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<String>,
    /// `host:port` players use for HTTP-FLV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

/// `{"revision": n, "coworkers": ["ip:port", ...], "advertise": {...} | null}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoworkerDocument {
    pub revision: u64,
    pub coworkers: Vec<String>,
    #[serde(default)]
    pub advertise: Option<Advertise>,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document is not valid JSON of the coworker shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("too many coworkers ({0}, at most {MAX_COWORKERS})")]
    TooMany(usize),
    #[error("coworker entry {index}: {source}")]
    BadCoworker {
        index: usize,
        source: crate::addr::AddrError,
    },
    #[error("advertise.{field}: {source}")]
    BadAdvertise {
        field: &'static str,
        source: crate::addr::AddrError,
    },
}

impl CoworkerDocument {
    /// Builds a document with a sorted, de-duplicated coworker list.
    pub fn new(
        revision: u64,
        coworkers: impl IntoIterator<Item = String>,
        advertise: Option<Advertise>,
    ) -> Self {
        let mut list: Vec<String> = coworkers.into_iter().collect();
        list.sort();
        list.dedup();
        Self {
            revision,
            coworkers: list,
            advertise,
        }
    }

    /// Parses and validates a document received from the network or a file.
    pub fn from_slice(body: &[u8]) -> Result<Self, DocumentError> {
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge);
        }
        let doc: Self = serde_json::from_slice(body)?;
        doc.validate()?;
        Ok(doc)
    }

    /// Checks every address; returns the parsed coworker list.
    pub fn validate(&self) -> Result<Vec<HostPort>, DocumentError> {
        if self.coworkers.len() > MAX_COWORKERS {
            return Err(DocumentError::TooMany(self.coworkers.len()));
        }
        if let Some(adv) = &self.advertise {
            for (field, v) in [("rtmp", &adv.rtmp), ("http", &adv.http)] {
                if let Some(v) = v {
                    HostPort::parse(v)
                        .map_err(|source| DocumentError::BadAdvertise { field, source })?;
                }
            }
        }
        self.coworkers
            .iter()
            .enumerate()
            .map(|(index, c)| {
                HostPort::parse(c).map_err(|source| DocumentError::BadCoworker { index, source })
            })
            .collect()
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape() {
        let doc = CoworkerDocument::new(
            7,
            [
                "10.0.0.2:1985".to_string(),
                "10.0.0.1:1985".into(),
                "10.0.0.1:1985".into(),
            ],
            None,
        );
        assert_eq!(
            doc.to_json(),
            r#"{"revision":7,"coworkers":["10.0.0.1:1985","10.0.0.2:1985"],"advertise":null}"#
        );
        assert_eq!(
            CoworkerDocument::from_slice(doc.to_json().as_bytes()).unwrap(),
            doc
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(CoworkerDocument::from_slice(b"{").is_err());
        assert!(CoworkerDocument::from_slice(br#"{"revision":-1,"coworkers":[]}"#).is_err());
        assert!(CoworkerDocument::from_slice(br#"{"revision":1,"coworkers":["nope"]}"#).is_err());
        assert!(
            CoworkerDocument::from_slice(
                br#"{"revision":1,"coworkers":[],"advertise":{"rtmp":"x"}}"#
            )
            .is_err()
        );
        let ok =
            CoworkerDocument::from_slice(br#"{"revision":1,"coworkers":["[::1]:1985"]}"#).unwrap();
        assert_eq!(ok.advertise, None);
    }
}
