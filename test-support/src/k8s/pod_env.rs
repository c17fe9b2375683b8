//! A container's environment and command line as the kubelet computes them: literal
//! values, downward-API `fieldRef`s, ConfigMap/Secret key refs, and `$(VAR)` expansion
//! of earlier variables in values, command and args.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

/// `$(NAME)` replaced by the value of an already defined variable; `$$` is a literal `$`;
/// unknown references stay as they are.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
            && let Some(v) = vars.get(&body[..end])
        {
            out.push_str(v);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API field path.
pub fn field(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let key = |p: &str| {
        path.strip_prefix(p)
            .and_then(|k| k.strip_suffix("']"))
            .map(str::to_string)
    };
    Some(match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone()?,
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone()?,
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            if let Some(k) = key("metadata.labels['") {
                m.labels.as_ref()?.get(&k)?.clone()
            } else if let Some(k) = key("metadata.annotations['") {
                m.annotations.as_ref()?.get(&k)?.clone()
            } else {
                return None;
            }
        }
    })
}

/// The container's environment, in order (later entries see earlier ones).
pub async fn env(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<BTreeMap<String, String>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars = BTreeMap::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field(pod, &f.field_path, pod_ip, host_ip)
                    .ok_or_else(|| format!("env {}: unsupported field {}", e.name, f.field_path))?
            } else if let Some(r) = &from.config_map_key_ref {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                let cm = api
                    .get(&r.name)
                    .await
                    .map_err(|err| format!("env {}: {err}", e.name))?;
                cm.data
                    .unwrap_or_default()
                    .get(&r.key)
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(r) = &from.secret_key_ref {
                let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
                let s = api
                    .get(&r.name)
                    .await
                    .map_err(|err| format!("env {}: {err}", e.name))?;
                let v = s
                    .data
                    .unwrap_or_default()
                    .get(&r.key)
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                String::from_utf8_lossy(&v).into_owned()
            } else {
                return Err(format!("env {}: unsupported valueFrom", e.name));
            }
        } else {
            String::new()
        };
        vars.insert(e.name.clone(), value);
    }
    Ok(vars)
}

/// Command and args after `$(VAR)` expansion.
pub fn argv(c: &Container, vars: &BTreeMap<String, String>) -> Vec<String> {
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, vars))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_variables_only() {
        let vars = BTreeMap::from([("POD_IP".to_string(), "10.1.2.3".to_string())]);
        assert_eq!(expand("$(POD_IP):1985", &vars), "10.1.2.3:1985");
        assert_eq!(expand("$(NOPE)-$$(POD_IP)", &vars), "$(NOPE)-$(POD_IP)");
    }
}
