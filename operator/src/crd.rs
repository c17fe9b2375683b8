//! The `OriginCluster` custom resource (`origincluster.dev/v1alpha1`), docs/architecture.md,
//! "Operator".

// kube's `printcolumn(...)` repeats `type_ = ...` per column, which this lint misreads.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of the CRD.
pub const GROUP: &str = "origincluster.dev";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Largest `spec.replicas` accepted.
pub const MAX_REPLICAS: i32 = 1000;

/// Humantime durations as the origin accepts them (`500ms`, `5s`, `1m30s`).
const DURATION_PATTERN: &str = r"^([0-9]+(ns|us|ms|s|m|h))+$";

/// A cluster of RTMP origins that find each other's streams (coworkers) and redirect players
/// to the origin that has the publisher.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "origincluster.dev",
    version = "v1alpha1",
    kind = "OriginCluster",
    plural = "originclusters",
    shortname = "ocl",
    namespaced,
    status = "OriginClusterStatus",
    derive = "PartialEq",
    doc = "A cluster of RTMP origins kept in sync by origin-operator",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Coworkers",
        type_ = "integer",
        json_path = ".status.coworkers.revision",
        description = "revision of the coworker list"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.service) || !has(self.service.loadBalancerClass) || !has(self.service.type) || self.service.type == 'LoadBalancer'"
).message("spec.service.loadBalancerClass needs spec.service.type LoadBalancer"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.service) || !has(self.service.externalTrafficPolicy) || !has(self.service.type) || self.service.type != 'ClusterIP'"
).message("spec.service.externalTrafficPolicy needs spec.service.type LoadBalancer or NodePort"))]
#[serde(rename_all = "camelCase")]
pub struct OriginClusterSpec {
    /// Number of origin pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Origin container image (its entrypoint is `/origin`). Defaults to the origin image
    /// of the same version as the operator.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of the origin container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Container ports.
    #[serde(default)]
    pub ports: Ports,
    /// The RTMP/HTTP-FLV Service `NAME-rtmp` (and per-pod Services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// Resources of the origin container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Overrides for the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,
    /// Settings passed to every origin.
    #[serde(default)]
    pub origin: OriginSettings,
    /// Seconds a stopping origin drains publishers (termination grace is this plus 10).
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub drain_seconds: i32,
    /// Which address each origin puts into its redirects.
    #[serde(default)]
    pub advertise: AdvertiseMode,
    /// Publish/play authorization: HTTP hooks (SRS http_hooks compatible) and an auth file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

/// Largest number of URLs per hook event.
pub const MAX_HOOK_URLS: usize = 8;
/// Longest hook URL.
pub const MAX_HOOK_URL_LEN: usize = 2048;
/// Longest hook timeout accepted.
pub const MAX_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Directory the auth Secret is mounted at (never a subPath mount).
pub const AUTH_DIR: &str = "/etc/origin/auth";
/// Key of the auth file in the Secret (and its file name under [`AUTH_DIR`]).
pub const AUTH_KEY: &str = "auth.toml";

/// Authorization of connect/publish/play (docs/architecture.md, "Auth and hooks").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// HTTP callbacks asked before a client may connect, publish or play, and told when it
    /// stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HookSpec>,
    /// A Secret with the auth file under key `auth.toml`, mounted at `/etc/origin/auth/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// Reference to a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What an origin does when a hook cannot be reached or does not answer in time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HookFailure {
    /// Refuse the client.
    #[default]
    Deny,
    /// Let the client in.
    Allow,
}

impl HookFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HookFailure::Deny => "deny",
            HookFailure::Allow => "allow",
        }
    }
}

/// HTTP hooks per event: each a list of `http(s)://` URLs, asked in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookSpec {
    /// Asked when a client connects (RTMP connect).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 2048), regex(pattern = HOOK_URL_PATTERN)))]
    pub on_connect: Vec<String>,
    /// Asked before a publish is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 2048), regex(pattern = HOOK_URL_PATTERN)))]
    pub on_publish: Vec<String>,
    /// Told when a publisher stops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 2048), regex(pattern = HOOK_URL_PATTERN)))]
    pub on_unpublish: Vec<String>,
    /// Asked before a player is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 2048), regex(pattern = HOOK_URL_PATTERN)))]
    pub on_play: Vec<String>,
    /// Told when a player stops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 2048), regex(pattern = HOOK_URL_PATTERN)))]
    pub on_stop: Vec<String>,
    /// Told when a client connection closes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 2048), regex(pattern = HOOK_URL_PATTERN)))]
    pub on_close: Vec<String>,
    /// Timeout of one hook call (e.g. `3s`).
    #[serde(default = "default_hook_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Unreachable or slow hook: `deny` (default) or `allow`.
    #[serde(default)]
    pub failure: HookFailure,
}

const HOOK_URL_PATTERN: &str = r"^https?://[^\s/?#]+([/?#]\S*)?$";

fn default_hook_timeout() -> String {
    "3s".into()
}

impl Default for HookSpec {
    fn default() -> Self {
        Self {
            on_connect: vec![],
            on_publish: vec![],
            on_unpublish: vec![],
            on_play: vec![],
            on_stop: vec![],
            on_close: vec![],
            timeout: default_hook_timeout(),
            failure: HookFailure::default(),
        }
    }
}

impl HookSpec {
    /// `(flag, field, urls)` per event, in a fixed order.
    pub fn events(&self) -> [(&'static str, &'static str, &[String]); 6] {
        [
            ("--on-connect", "onConnect", &self.on_connect),
            ("--on-publish", "onPublish", &self.on_publish),
            ("--on-unpublish", "onUnpublish", &self.on_unpublish),
            ("--on-play", "onPlay", &self.on_play),
            ("--on-stop", "onStop", &self.on_stop),
            ("--on-close", "onClose", &self.on_close),
        ]
    }
}

/// The origin image built from this repository at the operator's version.
pub fn default_image() -> String {
    format!("origin:{}", env!("CARGO_PKG_VERSION"))
}

/// The spec an empty `spec: {}` stands for (the same serde defaults).
impl Default for OriginClusterSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            image: default_image(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            ports: Ports::default(),
            service: None,
            resources: None,
            pod_template: None,
            origin: OriginSettings::default(),
            drain_seconds: default_drain_seconds(),
            advertise: AdvertiseMode::default(),
            auth: None,
        }
    }
}

fn default_replicas() -> i32 {
    3
}
fn default_drain_seconds() -> i32 {
    60
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Container ports; they must be distinct.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new(
    "self.rtmp != self.api && self.rtmp != self.http && self.api != self.http"
).message("spec.ports.rtmp, spec.ports.api and spec.ports.http must be distinct"))]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// RTMP port.
    #[serde(default = "default_rtmp")]
    #[schemars(range(min = 1, max = 65535))]
    pub rtmp: i32,
    /// HTTP API port (coworker queries, admin API, probes).
    #[serde(default = "default_api")]
    #[schemars(range(min = 1, max = 65535))]
    pub api: i32,
    /// HTTP-FLV port.
    #[serde(default = "default_http")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: i32,
}

fn default_rtmp() -> i32 {
    i32::from(origin_wire::DEFAULT_RTMP_PORT)
}
fn default_api() -> i32 {
    i32::from(origin_wire::DEFAULT_API_PORT)
}
fn default_http() -> i32 {
    i32::from(origin_wire::DEFAULT_FLV_PORT)
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            rtmp: default_rtmp(),
            api: default_api(),
            http: default_http(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIP => "ClusterIP",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    Cluster,
    Local,
}

impl ExternalTrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalTrafficPolicy::Cluster => "Cluster",
            ExternalTrafficPolicy::Local => "Local",
        }
    }
}

/// The client-facing Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type (L4: RTMP needs a TCP load balancer, not an HTTP ingress).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Annotations, e.g. for the cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `spec.loadBalancerClass` of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// `spec.externalTrafficPolicy` of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
}

impl ServiceSpec {
    pub fn service_type(&self) -> ServiceType {
        self.type_.unwrap_or_default()
    }
}

/// Overrides merged into the origin pod template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Replaces the default (preferred pod anti-affinity across nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra pod labels (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublishConflict {
    /// A second publisher of a stream that another origin owns is refused.
    #[default]
    Reject,
    /// A second publisher is accepted.
    Allow,
}

impl PublishConflict {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishConflict::Reject => "reject",
            PublishConflict::Allow => "allow",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// How an origin serves a player whose stream another origin owns (`--route`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    /// Redirect clients that follow redirects, relay for the others.
    #[default]
    Auto,
    /// Always relay (pull from the owner, fan out locally).
    Relay,
    /// Always redirect (RTMP 302 / HTTP 302).
    Redirect,
}

impl RouteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMode::Auto => "auto",
            RouteMode::Relay => "relay",
            RouteMode::Redirect => "redirect",
        }
    }
}

/// Settings every origin gets as environment variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginSettings {
    /// How long a player waits for a publisher that has not appeared yet (e.g. `5s`).
    #[serde(default = "default_wait_for_publisher")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub wait_for_publisher: String,
    /// What happens when a stream is published on two origins.
    #[serde(default)]
    pub publish_conflict: PublishConflict,
    /// Timeout of one coworker query (e.g. `500ms`).
    #[serde(default = "default_discovery_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub discovery_timeout: String,
    /// Log format of the origins.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Players of a stream another origin owns: `auto` (default), `relay` or `redirect`.
    #[serde(default)]
    pub route: RouteMode,
}

fn default_wait_for_publisher() -> String {
    "5s".into()
}
fn default_discovery_timeout() -> String {
    "500ms".into()
}

impl Default for OriginSettings {
    fn default() -> Self {
        Self {
            wait_for_publisher: default_wait_for_publisher(),
            publish_conflict: PublishConflict::default(),
            discovery_timeout: default_discovery_timeout(),
            log_format: LogFormat::default(),
            route: RouteMode::default(),
        }
    }
}

/// Address each origin advertises in its redirects.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AdvertiseMode {
    /// The pod IP (in-cluster clients such as SRS edges).
    #[default]
    PodIP,
    /// One Service per pod; its external address is pushed to the pod as `advertise`.
    PerPodService,
}

/// Observed state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginClusterStatus {
    /// Pods of the StatefulSet (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Generation of the spec last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Coworker list delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coworkers: Option<CoworkersStatus>,
    /// `Ready`, `Progressing`, `CoworkersSynced`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The coworker list and which pods have it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoworkersStatus {
    /// Revision of the current list (strictly increasing).
    #[serde(default)]
    pub revision: i64,
    /// Current list (`ip:apiport`, sorted).
    #[serde(default)]
    pub list: Vec<String>,
    /// Pods that acknowledged the current revision.
    #[serde(default)]
    pub acknowledged: Vec<String>,
    /// Pods that have not acknowledged it yet.
    #[serde(default)]
    pub pending: Vec<String>,
}

impl OriginCluster {
    /// `spec.service`, or the defaults.
    pub fn service_spec(&self) -> ServiceSpec {
        self.spec.service.clone().unwrap_or_default()
    }
}

/// The CRD as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&OriginCluster::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    const COMMITTED: &str = include_str!("../../crds/originclusters.origincluster.dev.yaml");

    #[test]
    fn committed_crd_is_current() {
        let generated = crd_yaml().expect("serialise CRD");
        if std::env::var_os("UPDATE_CRDS").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../crds/originclusters.origincluster.dev.yaml"
            );
            std::fs::write(path, &generated).expect("write CRD");
            return;
        }
        assert!(
            generated == COMMITTED,
            "crds/originclusters.origincluster.dev.yaml is stale: run \
             `cargo run -p origin-operator --bin crdgen > crds/originclusters.origincluster.dev.yaml`"
        );
    }

    #[test]
    fn crd_names_and_subresources() {
        let crd = OriginCluster::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("originclusters.origincluster.dev")
        );
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "OriginCluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ocl".to_string()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, VERSION);
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Replicas", "Ready", "Coworkers", "Age"]);
        let json = serde_json::to_string(&crd).expect("json");
        assert!(
            !json.contains("uint"),
            "unsigned formats are not allowed in CRDs"
        );
        assert!(json.contains(r#""maximum":1000"#));
    }

    #[test]
    fn default_spec_is_the_empty_spec() {
        let empty: OriginClusterSpec = serde_json::from_str("{}").expect("parse");
        assert_eq!(empty, OriginClusterSpec::default());
    }

    #[test]
    fn spec_defaults_from_minimal_json() {
        let spec: OriginClusterSpec =
            serde_json::from_str(r#"{"image":"origin:1"}"#).expect("parse");
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.drain_seconds, 60);
        assert_eq!(
            spec.ports,
            Ports {
                rtmp: 1935,
                api: 1985,
                http: 8080
            }
        );
        assert_eq!(spec.advertise, AdvertiseMode::PodIP);
        assert_eq!(spec.origin.wait_for_publisher, "5s");
        assert_eq!(spec.origin.publish_conflict, PublishConflict::Reject);
        assert_eq!(
            spec.service.unwrap_or_default().service_type(),
            ServiceType::LoadBalancer
        );
    }

    #[test]
    fn example_resource_parses() {
        let text = include_str!("../../crds/examples/minimal.yaml");
        let oc: OriginCluster =
            serde_saphyr::from_str(text).expect("example parses as OriginCluster");
        assert_eq!(oc.metadata.name.as_deref(), Some("live"));
        assert!(kube::core::cel::validate_cel(&oc).is_ok());
    }

    fn cluster(spec: serde_json::Value) -> OriginCluster {
        let mut v = serde_json::json!({
            "apiVersion": "origincluster.dev/v1alpha1",
            "kind": "OriginCluster",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"image": "origin:1"}
        });
        if let (Some(dst), Some(src)) = (v["spec"].as_object_mut(), spec.as_object()) {
            for (k, val) in src {
                dst.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("cluster fixture")
    }

    #[test]
    fn cel_ports_must_be_distinct() {
        let ok = cluster(serde_json::json!({}));
        assert!(kube::core::cel::validate_cel(&ok).is_ok());
        let bad = cluster(serde_json::json!({"ports": {"rtmp": 1935, "api": 1935, "http": 8080}}));
        let err = kube::core::cel::validate_cel(&bad).expect_err("duplicate ports rejected");
        assert!(format!("{err:?}").contains("must be distinct"), "{err:?}");
    }

    #[test]
    fn cel_service_rules() {
        let bad = cluster(
            serde_json::json!({"service": {"type": "ClusterIP", "loadBalancerClass": "x"}}),
        );
        let err = kube::core::cel::validate_cel(&bad).expect_err("lb class on ClusterIP");
        assert!(format!("{err:?}").contains("loadBalancerClass"), "{err:?}");
        let bad = cluster(
            serde_json::json!({"service": {"type": "ClusterIP", "externalTrafficPolicy": "Local"}}),
        );
        assert!(kube::core::cel::validate_cel(&bad).is_err());
        let ok = cluster(
            serde_json::json!({"service": {"type": "NodePort", "externalTrafficPolicy": "Local"}}),
        );
        assert!(kube::core::cel::validate_cel(&ok).is_ok());
        let ok = cluster(serde_json::json!({"service": {"loadBalancerClass": "x"}}));
        assert!(kube::core::cel::validate_cel(&ok).is_ok());
    }
}
