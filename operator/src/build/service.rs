//! Services: headless `NAME-peers` (API port; the StatefulSet's serviceName; its EndpointSlices
//! are the coworker source), `NAME-rtmp` (RTMP + HTTP-FLV for clients) and, with
//! `advertise: PerPodService`, one Service per pod named like the pod.

use k8s_openapi::api::core::v1::{LoadBalancerStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use origin_wire::addr::HostPort;

use crate::build::child_meta;
use crate::crd::{OriginCluster, ServiceType};
use crate::labels;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Headless peer Service: only ready pods are published (`publishNotReadyAddresses: false`).
pub fn peers(oc: &OriginCluster) -> Service {
    let (cluster, _) = labels::name_ns(oc);
    let mut meta = child_meta(oc, labels::peers_service(&cluster));
    meta.labels = Some(labels::service_labels(&cluster, labels::ROLE_PEERS));
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(false),
            selector: Some(labels::selector(&cluster)),
            ports: Some(vec![port("api", oc.spec.ports.api)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn client_spec(
    oc: &OriginCluster,
    selector: std::collections::BTreeMap<String, String>,
) -> ServiceSpec {
    let s = oc.service_spec();
    let t = s.service_type();
    ServiceSpec {
        type_: Some(t.as_str().into()),
        selector: Some(selector),
        ports: Some(vec![
            port("rtmp", oc.spec.ports.rtmp),
            port("http", oc.spec.ports.http),
        ]),
        load_balancer_class: if t == ServiceType::LoadBalancer {
            s.load_balancer_class.clone()
        } else {
            None
        },
        external_traffic_policy: if t == ServiceType::ClusterIP {
            None
        } else {
            s.external_traffic_policy.map(|p| p.as_str().to_string())
        },
        ..ServiceSpec::default()
    }
}

/// Client Service `NAME-rtmp`.
pub fn rtmp(oc: &OriginCluster) -> Service {
    let (cluster, _) = labels::name_ns(oc);
    let mut meta = child_meta(oc, labels::rtmp_service(&cluster));
    meta.labels = Some(labels::service_labels(&cluster, labels::ROLE_RTMP));
    let annotations = oc.service_spec().annotations;
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    Service {
        metadata: meta,
        spec: Some(client_spec(oc, labels::selector(&cluster))),
        status: None,
    }
}

/// Per-pod Service for pod `ordinal` (selector `statefulset.kubernetes.io/pod-name`).
pub fn per_pod(oc: &OriginCluster, ordinal: i32) -> Service {
    let (cluster, _) = labels::name_ns(oc);
    let pod = labels::pod(&cluster, ordinal);
    let mut meta = child_meta(oc, pod.clone());
    meta.labels = Some(labels::service_labels(&cluster, labels::ROLE_POD));
    let annotations = oc.service_spec().annotations;
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    let mut selector = labels::selector(&cluster);
    selector.insert(labels::POD_NAME.into(), pod);
    Service {
        metadata: meta,
        spec: Some(client_spec(oc, selector)),
        status: None,
    }
}

/// The address clients outside the cluster reach a per-pod Service at, once known:
/// the load balancer's first ingress IP/hostname, or the cluster IP for `ClusterIP`.
/// (`NodePort` has no single address the operator can know: `None`.)
pub fn external_host(svc: &Service) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    match spec.type_.as_deref() {
        Some("LoadBalancer") => {
            let lb: &LoadBalancerStatus = svc.status.as_ref()?.load_balancer.as_ref()?;
            let ing = lb.ingress.as_ref()?.first()?;
            ing.ip.clone().or_else(|| ing.hostname.clone())
        }
        Some("ClusterIP") => spec
            .cluster_ip
            .clone()
            .filter(|ip| ip != "None" && !ip.is_empty()),
        _ => None,
    }
}

/// `advertise` of a pod behind per-pod Service `svc`.
pub fn advertise_for(
    svc: &Service,
    oc: &OriginCluster,
) -> Option<origin_wire::coworkers::Advertise> {
    let host = external_host(svc)?;
    let p = &oc.spec.ports;
    Some(origin_wire::coworkers::Advertise {
        rtmp: Some(HostPort::new(host.clone(), p.rtmp as u16).to_string()),
        http: Some(HostPort::new(host, p.http as u16).to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, ServiceStatus};

    #[test]
    fn peers_is_headless_api_only() {
        let svc = peers(&fixtures::minimal());
        assert_eq!(svc.metadata.name.as_deref(), Some("live-peers"));
        let l = svc.metadata.labels.as_ref().expect("labels");
        assert_eq!(l.get(labels::INSTANCE).map(String::as_str), Some("live"));
        assert_eq!(l.get(labels::ROLE).map(String::as_str), Some("peers"));
        assert_eq!(
            l.get(labels::MANAGED_BY).map(String::as_str),
            Some("origin-operator")
        );
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(false));
        let ports = spec.ports.as_ref().expect("ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("api"), 1985)
        );
        assert!(svc.metadata.owner_references.is_some());
    }

    #[test]
    fn rtmp_defaults_to_load_balancer() {
        let svc = rtmp(&fixtures::minimal());
        assert_eq!(svc.metadata.name.as_deref(), Some("live-rtmp"));
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let ports: Vec<_> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        assert_eq!(
            ports,
            [(Some("rtmp".into()), 1935), (Some("http".into()), 8080)]
        );
        assert_eq!(spec.selector, Some(labels::selector("live")));
        assert!(svc.metadata.annotations.is_none());
    }

    #[test]
    fn rtmp_with_full_spec() {
        let svc = rtmp(&fixtures::full());
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(spec.load_balancer_class, None);
        assert_eq!(
            svc.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("example.com/lb"))
                .map(String::as_str),
            Some("internal")
        );
        let ports: Vec<_> = spec.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [11935, 18080]);
    }

    #[test]
    fn per_pod_selects_one_pod() {
        let svc = per_pod(&fixtures::full(), 3);
        assert_eq!(svc.metadata.name.as_deref(), Some("big-3"));
        let sel = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .expect("selector");
        assert_eq!(sel.get(labels::POD_NAME).map(String::as_str), Some("big-3"));
        assert_eq!(sel.get(labels::INSTANCE).map(String::as_str), Some("big"));
        let l = svc.metadata.labels.as_ref().expect("labels");
        assert_eq!(l.get(labels::ROLE).map(String::as_str), Some("pod"));
    }

    #[test]
    fn external_addresses() {
        let oc = fixtures::minimal();
        let mut svc = per_pod(&oc, 0);
        assert_eq!(external_host(&svc), None, "no load balancer address yet");
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("2001:db8::7".into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        });
        let adv = advertise_for(&svc, &oc).expect("advertise");
        assert_eq!(adv.rtmp.as_deref(), Some("[2001:db8::7]:1935"));
        assert_eq!(adv.http.as_deref(), Some("[2001:db8::7]:8080"));
        let mut np = per_pod(&fixtures::full(), 0);
        np.spec.as_mut().expect("spec").cluster_ip = Some("10.0.0.9".into());
        assert_eq!(
            external_host(&np),
            None,
            "NodePort has no single external address"
        );
    }
}
