//! PodDisruptionBudget `NAME`: at most one origin voluntarily disrupted at a time (independent
//! of `spec.replicas`, so scaling changes nothing here).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::build::child_meta;
use crate::crd::OriginCluster;
use crate::labels;

pub fn build(oc: &OriginCluster) -> PodDisruptionBudget {
    let (cluster, _) = labels::name_ns(oc);
    PodDisruptionBudget {
        metadata: child_meta(oc, labels::pdb(&cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&cluster)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn one_at_a_time() {
        let pdb = build(&fixtures::full());
        assert_eq!(pdb.metadata.name.as_deref(), Some("big"));
        let spec = pdb.spec.as_ref().expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.as_ref().and_then(|s| s.match_labels.clone()),
            Some(labels::selector("big"))
        );
        let l = pdb.metadata.labels.as_ref().expect("labels");
        for k in [
            labels::NAME,
            labels::INSTANCE,
            labels::MANAGED_BY,
            labels::COMPONENT,
        ] {
            assert!(l.contains_key(k), "{k}");
        }
    }
}
