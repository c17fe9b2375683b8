//! The coworker document (docs/architecture.md, "Coworker delivery"): what the operator writes to
//! the ConfigMap and PUTs to every origin, and what an origin shows on `GET /api/v1/coworkers`.

use std::collections::BTreeMap;

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

/// Largest per-pod advertise map accepted (one entry per replica).
pub const MAX_POD_ADVERTISE: usize = 4096;

/// `{"revision": n, "coworkers": ["ip:port", ...], "advertise": {...} | null,
/// "pod_advertise": {"<pod name>": {...}, ...}}` (`pod_advertise` only when non-empty).
///
/// `pod_advertise` is the same in the ConfigMap file and in every PUT of a revision, so an
/// origin that knows its pod name finds its address in either ([`Self::advertise_for`]);
/// origins that ignore the field keep using `advertise`, which the operator sets per pod in
/// the PUT and leaves `null` in the shared file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoworkerDocument {
    pub revision: u64,
    pub coworkers: Vec<String>,
    #[serde(default)]
    pub advertise: Option<Advertise>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_advertise: BTreeMap<String, Advertise>,
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
    #[error("too many pod_advertise entries ({0}, at most {MAX_POD_ADVERTISE})")]
    TooManyPods(usize),
    #[error("pod_advertise.{pod}.{field}: {source}")]
    BadPodAdvertise {
        pod: String,
        field: &'static str,
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
            pod_advertise: BTreeMap::new(),
        }
    }

    /// The address pod `pod` advertises: its `pod_advertise` entry, else `advertise`.
    pub fn advertise_for(&self, pod: &str) -> Option<&Advertise> {
        self.pod_advertise.get(pod).or(self.advertise.as_ref())
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
        if self.pod_advertise.len() > MAX_POD_ADVERTISE {
            return Err(DocumentError::TooManyPods(self.pod_advertise.len()));
        }
        for (pod, adv) in &self.pod_advertise {
            for (field, v) in [("rtmp", &adv.rtmp), ("http", &adv.http)] {
                if let Some(v) = v {
                    HostPort::parse(v).map_err(|source| DocumentError::BadPodAdvertise {
                        pod: pod.clone(),
                        field,
                        source,
                    })?;
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
        assert!(
            CoworkerDocument::from_slice(
                br#"{"revision":1,"coworkers":[],"pod_advertise":{"o-0":{"rtmp":"nope"}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn pod_advertise_is_optional_and_resolves_per_pod() {
        let shared = Advertise {
            rtmp: Some("10.0.0.9:1935".into()),
            http: None,
        };
        let mine = Advertise {
            rtmp: Some("203.0.113.1:1935".into()),
            http: Some("203.0.113.1:8080".into()),
        };
        let mut doc = CoworkerDocument::new(3, ["10.0.0.1:1985".to_string()], None);
        // Without entries the JSON is exactly the shape in
        // docs/architecture.md, "Coworker delivery".
        assert!(!doc.to_json().contains("pod_advertise"));
        doc.pod_advertise.insert("o-0".into(), mine.clone());
        let json = doc.to_json();
        let back = CoworkerDocument::from_slice(json.as_bytes()).unwrap();
        assert_eq!(back, doc);
        assert_eq!(back.advertise_for("o-0"), Some(&mine));
        assert_eq!(back.advertise_for("o-1"), None);
        doc.advertise = Some(shared.clone());
        assert_eq!(doc.advertise_for("o-1"), Some(&shared));
        assert_eq!(doc.advertise_for("o-0"), Some(&mine));
        // A reader that knows only the old fields still parses the new document.
        #[derive(serde::Deserialize)]
        struct Old {
            revision: u64,
            coworkers: Vec<String>,
            advertise: Option<Advertise>,
        }
        let old: Old = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (old.revision, old.coworkers.len(), old.advertise),
            (3, 1, None)
        );
    }
}
