//! Where a redirected client is sent: the owner's URL for the client's protocol, the
//! client's query kept (it may carry a token) and the vhost named when not the default.
//! The RTMP form is SRS's (docs/architecture.md, "RTMP 302").

use origin_wire::DEFAULT_VHOST;
use origin_wire::addr::{HostPort, url_host};
use origin_wire::clusters::Owner;

use super::Protocol;
use crate::media::StreamKey;
use crate::media::name::{encode_path, encode_segment};

/// The owner's URL for one protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An RTMP 302: the tcUrl and the full URL of the stream.
    Rtmp { tc_url: String, url: String },
    /// An HTTP 302 `Location` (HTTP-FLV or HLS).
    Http(String),
}

impl Target {
    pub fn new(
        protocol: Protocol,
        owner: &Owner,
        flv_port: u16,
        key: &StreamKey,
        query: Option<&str>,
    ) -> Self {
        match protocol {
            Protocol::Rtmp => {
                let (tc_url, url) = rtmp_redirect(owner, key, query);
                Target::Rtmp { tc_url, url }
            }
            Protocol::HttpFlv => Target::Http(http_redirect(owner, flv_port, key, query, ".flv")),
            Protocol::Hls => Target::Http(http_redirect(owner, flv_port, key, query, ".m3u8")),
        }
    }

    /// The full URL: an HTTP `Location`, or the RTMP stream URL.
    pub fn location(&self) -> String {
        match self {
            Target::Rtmp { url, .. } => url.clone(),
            Target::Http(location) => location.clone(),
        }
    }

    /// The URL without its query (which is the client's and may hold a token): for logs.
    pub fn logged(&self) -> &str {
        let url = match self {
            Target::Rtmp { url, .. } => url,
            Target::Http(location) => location,
        };
        url.split('?').next().unwrap_or_default()
    }
}

/// The RTMP 302 URLs: `(tcUrl, full url)` as SRS builds them.
pub fn rtmp_redirect(owner: &Owner, key: &StreamKey, query: Option<&str>) -> (String, String) {
    let tc_url = format!(
        "rtmp://{}:{}/{}",
        url_host(&owner.ip),
        owner.port,
        encode_path(&key.app)
    );
    let mut full = format!("{tc_url}/{}", encode_segment(&key.stream));
    if let Some(q) = with_vhost(query, &key.vhost).filter(|q| !q.is_empty()) {
        full.push('?');
        full.push_str(&q);
    }
    (tc_url, full)
}

/// The owner's HTTP playback URL of the stream, ending in `ext` (`.flv`, `.m3u8`): its
/// advertised HTTP address, else its IP with our own playback port.
pub fn http_redirect(
    owner: &Owner,
    flv_port: u16,
    key: &StreamKey,
    query: Option<&str>,
    ext: &str,
) -> String {
    let authority = owner
        .http
        .as_deref()
        .and_then(|h| HostPort::parse(h).ok())
        .unwrap_or_else(|| HostPort::new(owner.ip.clone(), flv_port));
    let mut url = format!(
        "http://{authority}/{}/{}{ext}",
        encode_path(&key.app),
        encode_segment(&key.stream)
    );
    if let Some(q) = with_vhost(query, &key.vhost).filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    url
}

/// Keeps the client's query and adds `vhost=` for a non-default vhost not already named.
fn with_vhost(query: Option<&str>, vhost: &str) -> Option<String> {
    let has_vhost = query.is_some_and(|q| crate::rtmp::url::query_param(q, "vhost").is_some());
    match (query, vhost != DEFAULT_VHOST && !has_vhost) {
        (Some(q), true) if !q.is_empty() => Some(format!("{q}&vhost={vhost}")),
        (_, true) => Some(format!("vhost={vhost}")),
        (q, false) => q.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls() {
        let owner = Owner {
            ip: "127.0.0.1".into(),
            port: 21936,
            http: Some("127.0.0.1:28080".into()),
            api: None,
        };
        let key = StreamKey::new(DEFAULT_VHOST, "live", "test");
        assert_eq!(
            rtmp_redirect(&owner, &key, None),
            (
                "rtmp://127.0.0.1:21936/live".to_string(),
                "rtmp://127.0.0.1:21936/live/test".to_string()
            )
        );
        assert_eq!(
            rtmp_redirect(&owner, &key, Some("token=1")).1,
            "rtmp://127.0.0.1:21936/live/test?token=1"
        );
        let vkey = StreamKey::new("v1", "live", "test");
        assert_eq!(
            rtmp_redirect(&owner, &vkey, None).1,
            "rtmp://127.0.0.1:21936/live/test?vhost=v1"
        );
        assert_eq!(
            http_redirect(&owner, 8080, &key, None, ".flv"),
            "http://127.0.0.1:28080/live/test.flv"
        );
        let bare = Owner {
            http: None,
            ..owner
        };
        assert_eq!(
            http_redirect(&bare, 8080, &key, Some("a=b"), ".flv"),
            "http://127.0.0.1:8080/live/test.flv?a=b"
        );
        // Names are re-encoded segment by segment, so a decoded name round-trips.
        let odd = StreamKey::new(DEFAULT_VHOST, "live", "a b%/c");
        assert_eq!(
            http_redirect(&bare, 8080, &odd, None, ".flv"),
            "http://127.0.0.1:8080/live/a%20b%25%2Fc.flv"
        );
    }

    #[test]
    fn hls_goes_to_the_owners_playlist_with_the_query() {
        let owner = Owner {
            ip: "10.0.0.2".into(),
            port: 1935,
            http: None,
            api: None,
        };
        let key = StreamKey::new("v1", "live", "cam");
        let t = Target::new(Protocol::Hls, &owner, 8080, &key, Some("token=s"));
        assert_eq!(
            t,
            Target::Http("http://10.0.0.2:8080/live/cam.m3u8?token=s&vhost=v1".into())
        );
        assert_eq!(t.logged(), "http://10.0.0.2:8080/live/cam.m3u8");
        let key = StreamKey::new(DEFAULT_VHOST, "live", "cam");
        assert_eq!(
            Target::new(Protocol::Hls, &owner, 8080, &key, Some("")),
            Target::Http("http://10.0.0.2:8080/live/cam.m3u8".into())
        );
        let rtmp = Target::new(Protocol::Rtmp, &owner, 8080, &key, Some("token=s"));
        assert_eq!(
            rtmp,
            Target::Rtmp {
                tc_url: "rtmp://10.0.0.2:1935/live".into(),
                url: "rtmp://10.0.0.2:1935/live/cam?token=s".into()
            }
        );
        assert_eq!(rtmp.logged(), "rtmp://10.0.0.2:1935/live/cam");
    }
}
