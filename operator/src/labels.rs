//! Names and labels of the child objects (docs/architecture.md, "Operator").

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::crd::OriginCluster;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "origin-operator";

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Which Service of a cluster this is (`peers`, `rtmp`, `pod`); mirrored onto EndpointSlices.
pub const ROLE: &str = "origincluster.dev/service-role";
/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label the StatefulSet controller puts on each pod.
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";

pub const ROLE_PEERS: &str = "peers";
pub const ROLE_RTMP: &str = "rtmp";
pub const ROLE_POD: &str = "pod";

/// The four labels every child object carries.
pub fn labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), "origin".to_string()),
        (INSTANCE.to_string(), cluster.to_string()),
        (MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
        (COMPONENT.to_string(), "origin".to_string()),
    ])
}

/// Labels plus the Service role.
pub fn service_labels(cluster: &str, role: &str) -> BTreeMap<String, String> {
    let mut l = labels(cluster);
    l.insert(ROLE.to_string(), role.to_string());
    l
}

/// The pod selector (immutable once the StatefulSet exists).
pub fn selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), "origin".to_string()),
        (INSTANCE.to_string(), cluster.to_string()),
    ])
}

/// The selector as a label-selector string (`status.selector`, for the scale subresource).
pub fn selector_string(cluster: &str) -> String {
    selector(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label selector of the EndpointSlices the operator watches (all clusters).
pub fn peer_slices_watch_selector() -> String {
    format!("{MANAGED_BY}={FIELD_MANAGER},{ROLE}={ROLE_PEERS}")
}

pub fn statefulset(cluster: &str) -> String {
    cluster.to_string()
}
pub fn peers_service(cluster: &str) -> String {
    format!("{cluster}-peers")
}
pub fn rtmp_service(cluster: &str) -> String {
    format!("{cluster}-rtmp")
}
pub fn configmap(cluster: &str) -> String {
    format!("{cluster}-coworkers")
}
pub fn secret(cluster: &str) -> String {
    format!("{cluster}-admin-token")
}
pub fn pdb(cluster: &str) -> String {
    cluster.to_string()
}
/// Pod `i` of the StatefulSet; also the name of its per-pod Service.
pub fn pod(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-{ordinal}")
}

/// The ordinal of a pod (or per-pod Service) name of `cluster`.
pub fn ordinal(cluster: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok()
}

/// Controller owner reference to the cluster (garbage collection of every child).
/// `blockOwnerDeletion` lets foreground deletion wait for the children (it needs `update` on
/// `originclusters/finalizers` where the OwnerReferencesPermissionEnforcement plugin is on).
pub fn owner_ref(oc: &OriginCluster) -> Option<OwnerReference> {
    let mut o = oc.controller_owner_ref(&())?;
    o.block_owner_deletion = Some(true);
    Some(o)
}

/// Name and namespace of a cluster.
pub fn name_ns(oc: &OriginCluster) -> (String, String) {
    (
        oc.name_any(),
        oc.namespace().unwrap_or_else(|| "default".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(peers_service("live"), "live-peers");
        assert_eq!(rtmp_service("live"), "live-rtmp");
        assert_eq!(configmap("live"), "live-coworkers");
        assert_eq!(secret("live"), "live-admin-token");
        assert_eq!(pod("live", 2), "live-2");
        assert_eq!(ordinal("live", "live-12"), Some(12));
        assert_eq!(ordinal("live", "live-peers"), None);
        assert_eq!(ordinal("live", "lively-1"), None);
        assert_eq!(
            selector_string("live"),
            "app.kubernetes.io/instance=live,app.kubernetes.io/name=origin"
        );
        assert_eq!(labels("x").len(), 4);
    }
}
