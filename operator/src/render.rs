//! Every object the operator would create for an `OriginCluster`, without a cluster:
//! `origin-operator render FILE` prints them (like `helm template`), and the manifest tests
//! validate them with `kubernetes-validate`.

use crate::build;
use crate::build::secret::Token;
use crate::crd::{AdvertiseMode, OriginCluster};
use crate::labels;
use origin_wire::coworkers::CoworkerDocument;

/// The children of `oc`, in apply order: Secret, per-pod Services, ConfigMap (with an
/// empty first revision), StatefulSet, peer Service, RTMP Service, PodDisruptionBudget.
pub fn objects(
    oc: &OriginCluster,
    token: &Token,
) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    let mut out = vec![serde_json::to_value(build::secret::build(oc, token))?];
    if oc.spec.advertise == AdvertiseMode::PerPodService {
        for i in 0..oc.spec.replicas {
            out.push(serde_json::to_value(build::service::per_pod(oc, i))?);
        }
    }
    out.push(serde_json::to_value(build::configmap::build(
        oc,
        &CoworkerDocument::new(1, Vec::<String>::new(), None),
    ))?);
    out.push(serde_json::to_value(build::statefulset::build(oc))?);
    out.push(serde_json::to_value(build::service::peers(oc))?);
    out.push(serde_json::to_value(build::service::rtmp(oc))?);
    out.push(serde_json::to_value(build::pdb::build(oc))?);
    Ok(out)
}

/// The OriginCluster documents of a YAML stream (other kinds are skipped), with a namespace
/// (`default` when the manifest has none) and a placeholder uid for the owner references.
pub fn clusters_from_yaml(text: &str) -> Result<Vec<OriginCluster>, String> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not YAML: {e}"))?;
    let mut out = Vec::new();
    for d in docs {
        if d.get("kind").and_then(|k| k.as_str()) != Some("OriginCluster") {
            continue;
        }
        let mut oc: OriginCluster =
            serde_json::from_value(d).map_err(|e| format!("not an OriginCluster: {e}"))?;
        if oc.metadata.namespace.is_none() {
            oc.metadata.namespace = Some("default".into());
        }
        if oc.metadata.uid.is_none() {
            let (name, ns) = labels::name_ns(&oc);
            oc.metadata.uid = Some(format!(
                "00000000-0000-0000-0000-{:012x}",
                fnv(&format!("{ns}/{name}"))
            ));
        }
        out.push(oc);
    }
    Ok(out)
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h & 0xffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_renders_all_children() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("examples/") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for oc in clusters_from_yaml(&text).expect("parses") {
                let objs = objects(&oc, &Token::new("t")).expect("objects");
                let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
                for k in [
                    "Secret",
                    "ConfigMap",
                    "StatefulSet",
                    "Service",
                    "PodDisruptionBudget",
                ] {
                    assert!(kinds.contains(&k), "{}: no {k}", path.display());
                }
                for o in &objs {
                    assert!(
                        o["metadata"]["ownerReferences"][0]["uid"].is_string(),
                        "{o}"
                    );
                }
                seen += 1;
            }
        }
        assert!(seen >= 1, "no OriginCluster in examples/");
    }
}
