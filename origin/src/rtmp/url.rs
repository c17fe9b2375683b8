//! RTMP URLs: tcUrl parsing, vhost resolution and stream names with query strings.

use origin_wire::DEFAULT_VHOST;

/// The parts of an `rtmp://host[:port]/app[?query]` tcUrl.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    pub app: String,
    pub query: Option<String>,
}

impl TcUrl {
    /// Lenient parse: anything without a `scheme://` still yields the app part.
    pub fn parse(url: &str) -> Self {
        let (scheme, rest) = url.split_once("://").unwrap_or(("rtmp", url));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = split_authority(authority);
        let (app, query) = match path.split_once('?') {
            Some((a, q)) => (a, Some(q.to_string())),
            None => (path, None),
        };
        Self {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
            app: app.trim_matches('/').to_string(),
            query,
        }
    }
}

fn split_authority(authority: &str) -> (String, Option<u16>) {
    if let Some((h, p)) = authority
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
    {
        {
            return (
                h.to_string(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (authority.to_string(), None),
    }
}

/// Value of `key` in a `k=v&k2=v2` query string.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// Splits `name?query` into the name and the query.
pub fn split_stream(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

/// Resolves the vhost from an explicit `vhost=` parameter (in the app, the tcUrl or the
/// stream query); otherwise the default vhost. See the README on why the tcUrl host alone
/// does not select a vhost here.
pub fn resolve_vhost(queries: &[Option<&str>]) -> String {
    queries
        .iter()
        .flatten()
        .find_map(|q| query_param(q, "vhost").filter(|v| !v.is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| DEFAULT_VHOST.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tc_urls() {
        let t = TcUrl::parse("rtmp://127.0.0.1:1935/live");
        assert_eq!(
            (t.host.as_str(), t.port, t.app.as_str()),
            ("127.0.0.1", Some(1935), "live")
        );
        let t = TcUrl::parse("rtmp://example.com/live/sub?vhost=v1&token=x");
        assert_eq!(
            (t.host.as_str(), t.port, t.app.as_str()),
            ("example.com", None, "live/sub")
        );
        assert_eq!(t.query.as_deref(), Some("vhost=v1&token=x"));
        let t = TcUrl::parse("rtmp://[::1]:1936/live");
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(1936)));
    }

    #[test]
    fn vhost_and_names() {
        assert_eq!(resolve_vhost(&[None, Some("a=b&vhost=v2")]), "v2");
        assert_eq!(resolve_vhost(&[Some("vhost=")]), DEFAULT_VHOST);
        assert_eq!(split_stream("s?token=1"), ("s", Some("token=1")));
    }
}
