//! The SRS-compatible ownership query `/api/v1/clusters` (docs/architecture.md, "Ownership query").
//!
//! The answer's key order is SRS's (insertion order), so the structs below list their
//! fields in exactly that order and serde keeps it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DEFAULT_VHOST;

/// The query parameters of `/api/v1/clusters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClustersQuery {
    #[serde(default)]
    pub vhost: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub stream: String,
    #[serde(default)]
    pub coworker: String,
}

impl ClustersQuery {
    /// The query string in SRS's parameter order, percent-encoded.
    pub fn to_query_string(&self) -> String {
        format!(
            "vhost={}&ip={}&app={}&stream={}&coworker={}",
            encode(&self.vhost),
            encode(&self.ip),
            encode(&self.app),
            encode(&self.stream),
            encode(&self.coworker)
        )
    }

    /// The vhost with SRS's fallback applied.
    pub fn vhost_or_default(&self) -> &str {
        if self.vhost.is_empty() {
            DEFAULT_VHOST
        } else {
            &self.vhost
        }
    }
}

/// Percent-encodes a query component the way SRS sends it: only what a query cannot carry is
/// encoded (docs/architecture.md, "Ownership query"). `:` and `@` pass (`coworker=10.0.0.3:1985`,
/// which an SRS owner echoes raw into `origin.ip`); `&`, `=`, `+`, `#`, `%`, spaces, brackets and
/// non-ASCII bytes are encoded.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'@'
            | b'/'
            | b'!'
            | b'$'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b','
            | b';' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `data.query`: the echo of the request (SRS does not echo `coworker`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryEcho {
    pub ip: String,
    pub vhost: String,
    pub app: String,
    pub stream: String,
}

/// `data.origin`: where the stream is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginInfo {
    /// Advertised host for RTMP.
    pub ip: String,
    /// RTMP port, a JSON integer.
    pub port: u16,
    pub vhost: String,
    /// `host:apiport`.
    pub api: String,
    pub routers: Vec<String>,
    /// Our extension: `host:flvport` so HTTP-FLV redirects know the owner's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClustersData {
    pub query: QueryEcho,
    pub origin: Option<OriginInfo>,
}

/// The whole answer: `{"code":0,"data":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClustersAnswer {
    pub code: i64,
    pub data: ClustersData,
}

impl ClustersAnswer {
    pub fn new(query: &ClustersQuery, origin: Option<OriginInfo>) -> Self {
        Self {
            code: 0,
            data: ClustersData {
                query: QueryEcho {
                    ip: query.ip.clone(),
                    vhost: query.vhost.clone(),
                    app: query.app.clone(),
                    stream: query.stream.clone(),
                },
                origin,
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The owner as an asker sees it: only what SRS itself reads, plus our `http` extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub ip: String,
    pub port: u16,
    pub http: Option<String>,
    pub api: Option<String>,
}

/// Applies SRS's acceptance rules to an answer: HTTP 200/201, a JSON object, integer
/// `code == 0`, `data.origin` an object with a string `ip` and an integer `port`.
/// Returns `None` for "not owned" and for anything malformed.
pub fn parse_owner(status: u16, body: &[u8]) -> Option<Owner> {
    if status != 200 && status != 201 {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let code = obj.get("code")?;
    if !(code.is_i64() || code.is_u64()) || code.as_i64() != Some(0) {
        return None;
    }
    let origin = obj.get("data")?.as_object()?.get("origin")?.as_object()?;
    let ip = origin.get("ip")?.as_str()?;
    let port = origin.get("port")?;
    if !(port.is_u64() || port.is_i64()) {
        return None;
    }
    let port = u16::try_from(port.as_u64()?).ok()?;
    if ip.is_empty() || port == 0 {
        return None;
    }
    Some(Owner {
        ip: lenient_host(ip),
        port,
        http: origin
            .get("http")
            .and_then(Value::as_str)
            .map(str::to_string),
        api: origin
            .get("api")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The host in an answer's `origin.ip`, decoded leniently: an SRS owner echoes the raw
/// `coworker` parameter's host, so an asker that percent-encoded it gets back
/// `127.0.0.1%3A21990`; decode it and keep the host part.
fn lenient_host(ip: &str) -> String {
    if !ip.contains('%') {
        return ip.to_string();
    }
    let b = ip.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&out).into_owned();
    match crate::addr::HostPort::parse(&decoded) {
        Ok(hp) => hp.host,
        Err(_) => decoded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_encoded_coworker_is_decoded() {
        let body = br#"{"code":0,"data":{"origin":{"ip":"127.0.0.1%3A21990","port":21940}}}"#;
        let o = parse_owner(200, body).unwrap();
        assert_eq!((o.ip.as_str(), o.port), ("127.0.0.1", 21940));
    }

    fn q() -> ClustersQuery {
        ClustersQuery {
            vhost: DEFAULT_VHOST.into(),
            ip: "127.0.0.1".into(),
            app: "live".into(),
            stream: "test".into(),
            coworker: "127.0.0.1:21986".into(),
        }
    }

    #[test]
    fn srs_owned_bytes() {
        let a = ClustersAnswer::new(
            &q(),
            Some(OriginInfo {
                ip: "127.0.0.1".into(),
                port: 21936,
                vhost: DEFAULT_VHOST.into(),
                api: "127.0.0.1:21986".into(),
                routers: vec!["127.0.0.1:21986".into()],
                http: None,
            }),
        );
        assert_eq!(
            a.to_json(),
            r#"{"code":0,"data":{"query":{"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"test"},"origin":{"ip":"127.0.0.1","port":21936,"vhost":"__defaultVhost__","api":"127.0.0.1:21986","routers":["127.0.0.1:21986"]}}}"#
        );
        let owner = parse_owner(200, a.to_json().as_bytes()).unwrap();
        assert_eq!((owner.ip.as_str(), owner.port), ("127.0.0.1", 21936));
    }

    #[test]
    fn srs_not_owned_bytes() {
        let a = ClustersAnswer::new(&q(), None);
        assert_eq!(
            a.to_json(),
            r#"{"code":0,"data":{"query":{"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"test"},"origin":null}}"#
        );
        assert_eq!(parse_owner(200, a.to_json().as_bytes()), None);
    }

    #[test]
    fn acceptance_rules() {
        let ok = br#"{"code":0,"data":{"origin":{"ip":"h","port":1935}}}"#;
        assert!(parse_owner(200, ok).is_some());
        assert!(parse_owner(201, ok).is_some());
        assert!(parse_owner(500, ok).is_none());
        assert!(parse_owner(200, br#"{"code":0,"origin":{"ip":"h","port":1935}}"#).is_none());
        assert!(
            parse_owner(
                200,
                br#"{"code":0,"data":{"origin":{"ip":"h","port":1935.0}}}"#
            )
            .is_none()
        );
        assert!(
            parse_owner(
                200,
                br#"{"code":"0","data":{"origin":{"ip":"h","port":1935}}}"#
            )
            .is_none()
        );
        assert!(
            parse_owner(
                200,
                br#"{"code":1,"data":{"origin":{"ip":"h","port":1935}}}"#
            )
            .is_none()
        );
        assert!(
            parse_owner(
                200,
                br#"{"code":0,"data":{"origin":{"ip":"","port":1935}}}"#
            )
            .is_none()
        );
        assert!(
            parse_owner(
                200,
                br#"{"code":0,"data":{"origin":{"ip":"h","port":70000}}}"#
            )
            .is_none()
        );
        assert!(parse_owner(200, b"garbage").is_none());
    }

    #[test]
    fn query_string_is_encoded_in_srs_order() {
        let mut query = q();
        query.stream = "a b&c".into();
        assert_eq!(
            query.to_query_string(),
            "vhost=__defaultVhost__&ip=127.0.0.1&app=live&stream=a%20b%26c&coworker=127.0.0.1:21986"
        );
    }
}
