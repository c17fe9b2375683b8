//! Answering `/api/v1/clusters` (docs/architecture.md, "Ownership query").

use origin_wire::DEFAULT_VHOST;
use origin_wire::addr::HostPort;
use origin_wire::clusters::{ClustersAnswer, ClustersQuery, OriginInfo};
use origin_wire::coworkers::Advertise;
use origin_wire::directory::OwnerAddr;

use crate::media::{Registry, StreamKey};

/// How this origin is reached: its listen ports and configured advertise addresses.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub rtmp_port: u16,
    pub api_port: u16,
    pub flv_port: u16,
    pub advertise_rtmp: Option<HostPort>,
    pub advertise_http: Option<HostPort>,
}

/// The stream key a query names, normalised like every other name (a playback
/// extension stripped, the vhost defaulted); `None` for a name no publisher can have.
pub fn query_key(q: &ClustersQuery) -> Option<StreamKey> {
    StreamKey::parse(q.vhost_or_default(), &q.app, &q.stream).ok()
}

/// Builds the answer. `pushed` is the advertise part of the coworker document (it wins
/// over the flags); `request_host` is the Host the query arrived on.
pub fn answer(
    q: &ClustersQuery,
    registry: &Registry,
    me: &Identity,
    pushed: Option<&Advertise>,
    request_host: Option<&str>,
) -> ClustersAnswer {
    // SRS resolves an unknown vhost to the default one.
    let owned = query_key(q).and_then(|key| {
        if registry.is_owned(&key) {
            Some(key)
        } else {
            let fallback = StreamKey::new(DEFAULT_VHOST, key.app.clone(), key.stream.clone());
            registry.is_owned(&fallback).then_some(fallback)
        }
    });
    let origin = owned.map(|key| {
        let rtmp = pushed
            .and_then(|a| a.rtmp.as_deref())
            .and_then(|s| HostPort::parse(s).ok())
            .or_else(|| me.advertise_rtmp.clone());
        let http = pushed
            .and_then(|a| a.http.as_deref())
            .and_then(|s| HostPort::parse(s).ok())
            .or_else(|| me.advertise_http.clone());
        let host = rtmp
            .as_ref()
            .map(|a| a.host.clone())
            .or_else(|| HostPort::parse(&q.coworker).ok().map(|c| c.host))
            .or_else(|| request_host.map(host_of))
            .unwrap_or_else(|| "127.0.0.1".to_string());
        let port = rtmp.as_ref().map(|a| a.port).unwrap_or(me.rtmp_port);
        let api = HostPort::new(host.clone(), me.api_port).to_string();
        let http = http
            .unwrap_or_else(|| HostPort::new(host.clone(), me.flv_port))
            .to_string();
        OriginInfo {
            ip: host,
            port,
            vhost: key.vhost,
            api: api.clone(),
            routers: vec![api],
            http: Some(http),
        }
    });
    ClustersAnswer::new(q, origin)
}

/// This origin as a directory claim names it (docs/architecture.md, "Ownership directory"):
/// `api` is its address in the coworker list; the RTMP and HTTP addresses are resolved as
/// in an ownership answer (the pushed advertise addresses, then the flags, then `api`'s
/// host with the listen ports).
pub fn owner_addr(me: &Identity, pushed: Option<&Advertise>, api: &HostPort) -> OwnerAddr {
    let pick = |pushed: Option<&str>, flag: &Option<HostPort>, port: u16| {
        pushed
            .and_then(|s| HostPort::parse(s).ok())
            .or_else(|| flag.clone())
            .unwrap_or_else(|| HostPort::new(api.host.clone(), port))
            .to_string()
    };
    OwnerAddr {
        api: api.to_string(),
        rtmp: pick(
            pushed.and_then(|a| a.rtmp.as_deref()),
            &me.advertise_rtmp,
            me.rtmp_port,
        ),
        http: Some(pick(
            pushed.and_then(|a| a.http.as_deref()),
            &me.advertise_http,
            me.flv_port,
        )),
    }
}

/// Host part of a `Host` header value.
fn host_of(h: &str) -> String {
    HostPort::parse(h)
        .map(|hp| hp.host)
        .unwrap_or_else(|_| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{MediaConfig, PublisherInfo};
    use std::time::Instant;

    fn query(stream: &str, vhost: &str) -> ClustersQuery {
        ClustersQuery {
            vhost: vhost.into(),
            ip: "127.0.0.1".into(),
            app: "live".into(),
            stream: stream.into(),
            coworker: "127.0.0.1:21986".into(),
        }
    }

    fn me() -> Identity {
        Identity {
            rtmp_port: 21936,
            api_port: 21986,
            flv_port: 28080,
            ..Identity::default()
        }
    }

    #[test]
    fn owned_answer_matches_srs_and_adds_http() {
        let reg = Registry::new(MediaConfig::default());
        let _p = reg
            .publish(
                &StreamKey::new(DEFAULT_VHOST, "live", "test"),
                PublisherInfo {
                    id: 1,
                    addr: None,
                    since: Instant::now(),
                    upstream: None,
                },
            )
            .unwrap();
        let a = answer(&query("test.flv", "some.host"), &reg, &me(), None, None);
        assert_eq!(
            a.to_json(),
            r#"{"code":0,"data":{"query":{"ip":"127.0.0.1","vhost":"some.host","app":"live","stream":"test.flv"},"origin":{"ip":"127.0.0.1","port":21936,"vhost":"__defaultVhost__","api":"127.0.0.1:21986","routers":["127.0.0.1:21986"],"http":"127.0.0.1:28080"}}}"#
        );
        let not = answer(&query("other", ""), &reg, &me(), None, None);
        assert!(not.data.origin.is_none());
    }

    #[test]
    fn a_claim_names_the_same_addresses_as_an_ownership_answer() {
        let api = HostPort::new("10.0.0.3", 21986);
        let o = owner_addr(&me(), None, &api);
        assert_eq!(
            (o.api.as_str(), o.rtmp.as_str(), o.http.as_deref()),
            ("10.0.0.3:21986", "10.0.0.3:21936", Some("10.0.0.3:28080"))
        );
        let pushed = Advertise {
            rtmp: Some("198.51.100.7:31935".into()),
            http: None,
        };
        let mut flagged = me();
        flagged.advertise_http = Some(HostPort::new("203.0.113.5", 80));
        let o = owner_addr(&flagged, Some(&pushed), &api);
        assert_eq!(
            (o.rtmp.as_str(), o.http.as_deref()),
            ("198.51.100.7:31935", Some("203.0.113.5:80"))
        );
    }

    #[test]
    fn advertised_address_order() {
        let reg = Registry::new(MediaConfig::default());
        let _p = reg
            .publish(
                &StreamKey::new(DEFAULT_VHOST, "live", "s"),
                PublisherInfo {
                    id: 1,
                    addr: None,
                    since: Instant::now(),
                    upstream: None,
                },
            )
            .unwrap();
        let mut q = query("s", "");
        q.coworker = String::new();
        let a = answer(&q, &reg, &me(), None, Some("10.1.1.1:21986"));
        assert_eq!(
            a.data.origin.as_ref().unwrap().ip,
            "10.1.1.1",
            "Host header is the last resort"
        );
        let mut flagged = me();
        flagged.advertise_rtmp = Some(HostPort::new("203.0.113.5", 1935));
        let a = answer(&query("s", ""), &reg, &flagged, None, None);
        let o = a.data.origin.unwrap();
        assert_eq!((o.ip.as_str(), o.port), ("203.0.113.5", 1935));
        let pushed = Advertise {
            rtmp: Some("198.51.100.7:31935".into()),
            http: Some("198.51.100.7:38080".into()),
        };
        let o = answer(&query("s", ""), &reg, &flagged, Some(&pushed), None)
            .data
            .origin
            .unwrap();
        assert_eq!(
            (o.ip.as_str(), o.port, o.http.as_deref()),
            ("198.51.100.7", 31935, Some("198.51.100.7:38080"))
        );
    }
}
