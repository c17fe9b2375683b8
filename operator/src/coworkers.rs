//! The coworker list as a pure function of the peer Service's EndpointSlices (docs/architecture.md,
//! "Coworker delivery").

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use origin_wire::addr::HostPort;

/// One live origin: its API address and (when the slice says) its pod name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    /// `ip:apiport` (IPv6 bracketed), exactly as it goes into the coworker list.
    pub addr: String,
    /// Pod name from the endpoint's targetRef, if any.
    pub pod: Option<String>,
}

/// Whether an endpoint belongs in the list: ready, or terminating. Streams on a draining origin
/// must stay findable until the process exits, and a draining origin deliberately fails its
/// readiness probe (so the RTMP Service stops sending it new publishers), which turns `serving`
/// false too: so every terminating endpoint is kept, serving or not (only "serving and terminating"
/// ones would let our own drain hide its streams; see docs/architecture.md, "Operator"). A dead
/// process answers "connection refused", which discovery skips at once. A missing `ready` means
/// "ready" (EndpointSlice API semantics); a missing `terminating` means "not terminating".
pub fn is_live(ep: &Endpoint) -> bool {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    ready || terminating
}

/// Port of the slice named `port_name`, else its only port, else `fallback`.
fn slice_port(slice: &EndpointSlice, port_name: &str, fallback: u16) -> u16 {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let named = ports.iter().find(|p| p.name.as_deref() == Some(port_name));
    let chosen = named.or(if ports.len() == 1 {
        ports.first()
    } else {
        None
    });
    chosen
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(fallback)
}

/// The live peers of all `slices` (the caller passes only the peer Service's slices): sorted by
/// address, one entry per pod. A dual-stack pod (one address per family, in two slices) is
/// listed once, by its IPv4 address; endpoints without a pod reference are de-duplicated by
/// address.
pub fn peers(slices: &[EndpointSlice], port_name: &str, fallback_port: u16) -> Vec<Peer> {
    // pod name (or address when there is none) -> best address
    let mut by_key: BTreeMap<String, (bool, String, Option<String>)> = BTreeMap::new();
    for slice in slices {
        let port = slice_port(slice, port_name, fallback_port);
        for ep in slice.endpoints.iter().filter(|ep| is_live(ep)) {
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                .and_then(|r| r.name.clone());
            // Every address of an endpoint belongs to the same pod; the first is canonical.
            let Some(ip) = ep.addresses.first() else {
                continue;
            };
            let Ok(parsed) = ip.parse::<IpAddr>() else {
                continue;
            };
            let addr = HostPort::new(parsed.to_string(), port).to_string();
            let v4 = parsed.is_ipv4();
            let key = pod.clone().unwrap_or_else(|| addr.clone());
            match by_key.get(&key) {
                // Prefer IPv4, then the smaller address, so the result is deterministic.
                Some((have_v4, have, _))
                    if (*have_v4, std::cmp::Reverse(have)) >= (v4, std::cmp::Reverse(&addr)) => {}
                _ => {
                    by_key.insert(key, (v4, addr, pod));
                }
            }
        }
    }
    let mut out: Vec<Peer> = by_key
        .into_values()
        .map(|(_, addr, pod)| Peer { addr, pod })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.addr == b.addr);
    out
}

/// Just the addresses, sorted (the document's `coworkers`).
pub fn addresses(peers: &[Peer]) -> Vec<String> {
    peers.iter().map(|p| p.addr.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};

    fn ep(
        addr: &str,
        pod: &str,
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> Endpoint {
        Endpoint {
            addresses: vec![addr.to_string()],
            conditions: Some(EndpointConditions {
                ready,
                serving,
                terminating,
            }),
            target_ref: (!pod.is_empty()).then(|| ObjectReference {
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        }
    }

    fn slice(family: &str, port: Option<(&str, i32)>, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: family.into(),
            endpoints,
            ports: port.map(|(n, p)| {
                vec![EndpointPort {
                    name: Some(n.into()),
                    port: Some(p),
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]
            }),
            ..EndpointSlice::default()
        }
    }

    fn addrs(slices: &[EndpointSlice]) -> Vec<String> {
        addresses(&peers(slices, "api", 1985))
    }

    #[test]
    fn ready_endpoints_sorted() {
        let s = slice(
            "IPv4",
            Some(("api", 1985)),
            vec![
                ep("10.0.0.9", "o-2", Some(true), Some(true), Some(false)),
                ep("10.0.0.10", "o-0", Some(true), Some(true), Some(false)),
                ep("10.0.0.1", "o-1", Some(true), None, None),
            ],
        );
        // Sorted as strings, the same order as `CoworkerDocument::new`.
        assert_eq!(
            addrs(std::slice::from_ref(&s)),
            ["10.0.0.10:1985", "10.0.0.1:1985", "10.0.0.9:1985"]
        );
        let p = peers(&[s], "api", 1985);
        assert_eq!(p[1].pod.as_deref(), Some("o-1"));
        let doc = origin_wire::coworkers::CoworkerDocument::new(1, addresses(&p), None);
        assert_eq!(doc.coworkers, addresses(&p));
    }

    #[test]
    fn not_ready_is_left_out_and_missing_conditions_mean_ready() {
        let s = slice(
            "IPv4",
            Some(("api", 1985)),
            vec![
                ep("10.0.0.1", "o-0", Some(false), Some(false), Some(false)),
                ep("10.0.0.2", "o-1", None, None, None),
                Endpoint {
                    addresses: vec!["10.0.0.3".into()],
                    ..Endpoint::default()
                },
            ],
        );
        assert_eq!(addrs(&[s]), ["10.0.0.2:1985", "10.0.0.3:1985"]);
    }

    #[test]
    fn terminating_stays_whether_serving_or_draining_not_ready_goes() {
        let s = slice(
            "IPv4",
            Some(("api", 1985)),
            vec![
                ep("10.0.0.1", "o-0", Some(false), Some(true), Some(true)),
                ep("10.0.0.2", "o-1", Some(false), Some(false), Some(true)),
                ep("10.0.0.3", "o-2", Some(true), Some(true), Some(false)),
                ep("10.0.0.4", "o-3", Some(false), Some(false), Some(false)),
            ],
        );
        assert_eq!(
            addrs(&[s]),
            ["10.0.0.1:1985", "10.0.0.2:1985", "10.0.0.3:1985"]
        );
    }

    #[test]
    fn several_slices_and_duplicates() {
        let a = slice(
            "IPv4",
            Some(("api", 1985)),
            vec![
                ep("10.0.0.1", "o-0", Some(true), None, None),
                ep("10.0.0.2", "o-1", Some(true), None, None),
            ],
        );
        // The same endpoint appears in two slices while the controller moves it.
        let b = slice(
            "IPv4",
            Some(("api", 1985)),
            vec![
                ep("10.0.0.2", "o-1", Some(true), None, None),
                ep("10.0.0.3", "o-2", Some(true), None, None),
                ep("10.0.0.4", "", Some(true), None, None),
                ep("10.0.0.4", "", Some(true), None, None),
            ],
        );
        assert_eq!(
            addrs(&[a, b]),
            [
                "10.0.0.1:1985",
                "10.0.0.2:1985",
                "10.0.0.3:1985",
                "10.0.0.4:1985"
            ]
        );
    }

    #[test]
    fn no_endpoints() {
        assert!(addrs(&[]).is_empty());
        assert!(addrs(&[slice("IPv4", Some(("api", 1985)), vec![])]).is_empty());
        let only_down = slice(
            "IPv4",
            None,
            vec![ep("10.0.0.1", "o-0", Some(false), Some(false), None)],
        );
        assert!(addrs(&[only_down]).is_empty());
    }

    #[test]
    fn dual_stack_lists_each_pod_once() {
        let v4 = slice(
            "IPv4",
            Some(("api", 1985)),
            vec![ep("10.0.0.1", "o-0", Some(true), None, None)],
        );
        let v6 = slice(
            "IPv6",
            Some(("api", 1985)),
            vec![
                ep("fd00::1", "o-0", Some(true), None, None),
                ep("fd00::2", "o-1", Some(true), None, None),
            ],
        );
        // o-0 by its IPv4 address, o-1 (IPv6 only) bracketed.
        assert_eq!(
            addrs(&[v6.clone(), v4.clone()]),
            ["10.0.0.1:1985", "[fd00::2]:1985"]
        );
        assert_eq!(addrs(&[v4, v6]), ["10.0.0.1:1985", "[fd00::2]:1985"]);
    }

    #[test]
    fn ipv6_only_and_ports() {
        let s = slice(
            "IPv6",
            Some(("api", 11985)),
            vec![ep("fd00:0:0::a", "o-0", Some(true), None, None)],
        );
        assert_eq!(addrs(&[s]), ["[fd00::a]:11985"]);
        // A slice without ports falls back to the spec's API port.
        let s = slice(
            "IPv4",
            None,
            vec![ep("10.1.1.1", "o-0", Some(true), None, None)],
        );
        assert_eq!(addrs(&[s]), ["10.1.1.1:1985"]);
        // Garbage addresses are ignored.
        let s = slice(
            "FQDN",
            None,
            vec![ep("origin.example", "o-0", Some(true), None, None)],
        );
        assert!(addrs(&[s]).is_empty());
    }
}
