//! Pure builders: `&OriginCluster` (+ computed inputs) → the Kubernetes objects to apply.
//! No I/O here; every function is unit-tested over the fixtures in `operator/fixtures/`.

pub mod configmap;
pub mod pdb;
pub mod secret;
pub mod service;
pub mod statefulset;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::OriginCluster;
use crate::labels;

/// Metadata of a child object: name, namespace, the four labels and the owner reference.
pub fn child_meta(oc: &OriginCluster, name: String) -> ObjectMeta {
    let (cluster, ns) = labels::name_ns(oc);
    ObjectMeta {
        name: Some(name),
        namespace: Some(ns),
        labels: Some(labels::labels(&cluster)),
        owner_references: labels::owner_ref(oc).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::OriginCluster;

    pub fn minimal() -> OriginCluster {
        serde_saphyr::from_str(include_str!("../../fixtures/cluster-minimal.yaml"))
            .expect("minimal fixture")
    }

    pub fn full() -> OriginCluster {
        serde_saphyr::from_str(include_str!("../../fixtures/cluster-full.yaml"))
            .expect("full fixture")
    }
}
