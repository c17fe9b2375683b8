//! ConfigMap `NAME-coworkers`: the coworker document, key `coworkers.json`, mounted as a
//! directory so new and restarted pods start with the current list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use origin_wire::coworkers::{CONFIGMAP_KEY, CoworkerDocument};

use crate::build::child_meta;
use crate::crd::OriginCluster;
use crate::labels;

pub fn build(oc: &OriginCluster, doc: &CoworkerDocument) -> ConfigMap {
    let (cluster, _) = labels::name_ns(oc);
    ConfigMap {
        metadata: child_meta(oc, labels::configmap(&cluster)),
        data: Some(BTreeMap::from([(CONFIGMAP_KEY.to_string(), doc.to_json())])),
        ..ConfigMap::default()
    }
}

/// The document stored in a ConfigMap, if any and valid.
pub fn document(cm: &ConfigMap) -> Option<CoworkerDocument> {
    let text = cm.data.as_ref()?.get(CONFIGMAP_KEY)?;
    CoworkerDocument::from_slice(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn holds_the_document() {
        let doc = CoworkerDocument::new(4, ["10.0.0.2:1985".into(), "10.0.0.1:1985".into()], None);
        let cm = build(&fixtures::minimal(), &doc);
        assert_eq!(cm.metadata.name.as_deref(), Some("live-coworkers"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("media"));
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("coworkers.json"))
            .expect("key");
        assert_eq!(
            text,
            r#"{"revision":4,"coworkers":["10.0.0.1:1985","10.0.0.2:1985"],"advertise":null}"#
        );
        assert_eq!(document(&cm), Some(doc));
        assert!(cm.metadata.owner_references.is_some());
    }
}
