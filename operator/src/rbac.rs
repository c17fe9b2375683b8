//! THE list of API groups, resources and verbs the operator uses. The Helm chart's
//! ClusterRole is checked against this (`crdgen rbac` prints it as JSON). Every API call in
//! [`crate::controller`] and [`crate::leader`] must be covered here; the controller tests
//! assert that every request the operator sends to the (mock) API server is allowed by it.

use serde::Serialize;

/// One ClusterRole rule.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];
/// Owned children: watched, server-side applied (apply creates too).
const APPLY: &[&str] = &["get", "list", "watch", "create", "patch"];

/// Everything the operator needs, cluster-wide.
pub const RULES: &[Rule] = &[
    Rule {
        api_groups: &["origincluster.dev"],
        resources: &["originclusters"],
        verbs: READ,
    },
    Rule {
        api_groups: &["origincluster.dev"],
        resources: &["originclusters/status"],
        verbs: &["get", "patch"],
    },
    // Setting blockOwnerDeletion on children's owner references requires this.
    Rule {
        api_groups: &["origincluster.dev"],
        resources: &["originclusters/finalizers"],
        verbs: &["update"],
    },
    Rule {
        api_groups: &["apps"],
        resources: &["statefulsets"],
        verbs: APPLY,
    },
    // Per-pod Services are deleted on scale-down.
    Rule {
        api_groups: &[""],
        resources: &["services"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        api_groups: &[""],
        resources: &["configmaps"],
        verbs: APPLY,
    },
    // The admin-token Secret is read and created once; never listed, watched or patched.
    Rule {
        api_groups: &[""],
        resources: &["secrets"],
        verbs: &["get", "create"],
    },
    Rule {
        api_groups: &["policy"],
        resources: &["poddisruptionbudgets"],
        verbs: APPLY,
    },
    Rule {
        api_groups: &["discovery.k8s.io"],
        resources: &["endpointslices"],
        verbs: READ,
    },
    Rule {
        api_groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create", "patch"],
    },
    Rule {
        api_groups: &["coordination.k8s.io"],
        resources: &["leases"],
        verbs: &["get", "create", "update"],
    },
    Rule {
        api_groups: &["apiextensions.k8s.io"],
        resources: &["customresourcedefinitions"],
        verbs: &["get"],
    },
];

/// The rules as JSON: `[{"apiGroups":[..],"resources":[..],"verbs":[..]}]`.
pub fn rules_json() -> String {
    let mut s = serde_json::to_string_pretty(RULES).unwrap_or_default();
    s.push('\n');
    s
}

/// Whether `verb` on `group`/`resource` (`resource/subresource` for subresources) is allowed.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    RULES.iter().any(|r| {
        r.api_groups.contains(&group) && r.resources.contains(&resource) && r.verbs.contains(&verb)
    })
}

/// Maps an HTTP request the kube client sends to (group, resource, verb) for [`allows`].
/// Returns `None` for paths that are not resource paths (e.g. `/version`).
pub fn request_attributes(
    method: &str,
    path: &str,
    query: &str,
) -> Option<(String, String, String)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, r @ ..] if !r.is_empty() => r,
        r => r,
    };
    let (resource, named) = match rest {
        [res] => (res.to_string(), false),
        [res, _name] => (res.to_string(), true),
        [res, _name, sub] => (format!("{res}/{sub}"), true),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let v: serde_json::Value = serde_json::from_str(&rules_json()).expect("json");
        let first = &v[0];
        assert_eq!(first["apiGroups"][0], "origincluster.dev");
        assert_eq!(first["resources"][0], "originclusters");
        assert!(first["verbs"].as_array().is_some_and(|a| a.len() == 3));
    }

    #[test]
    fn request_mapping() {
        assert_eq!(
            request_attributes(
                "PATCH",
                "/apis/apps/v1/namespaces/ns/statefulsets/x",
                "fieldManager=a"
            ),
            Some(("apps".into(), "statefulsets".into(), "patch".into()))
        );
        assert_eq!(
            request_attributes("GET", "/api/v1/services", "watch=true&labelSelector=a"),
            Some(("".into(), "services".into(), "watch".into()))
        );
        assert_eq!(
            request_attributes(
                "PATCH",
                "/apis/origincluster.dev/v1alpha1/namespaces/n/originclusters/c/status",
                ""
            ),
            Some((
                "origincluster.dev".into(),
                "originclusters/status".into(),
                "patch".into()
            ))
        );
        assert!(allows("discovery.k8s.io", "endpointslices", "watch"));
        assert!(!allows("", "pods", "list"), "the operator never needs pods");
        assert!(!allows("", "secrets", "update"));
    }
}
