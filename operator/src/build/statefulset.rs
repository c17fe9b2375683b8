//! StatefulSet `NAME`: the origin pods, built to the origin container contract.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::build::child_meta;
use crate::crd::{AUTH_DIR, AUTH_KEY, AdvertiseMode, OriginCluster};
use crate::labels;

/// Path of the origin binary in the image.
pub const ORIGIN_BIN: &str = "/origin";
/// Where the admin-token Secret is mounted.
pub const ADMIN_DIR: &str = "/etc/origin/admin";
/// Key of the token in Secret `NAME-admin-token` (and the file name under [`ADMIN_DIR`]).
pub const TOKEN_KEY: &str = "token";
/// UID/GID the origin runs as (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Environment of the origin container (the whole configuration of the origin).
pub fn origin_env(oc: &OriginCluster) -> Vec<EnvVar> {
    let p = &oc.spec.ports;
    let o = &oc.spec.origin;
    let mut vars = vec![
        env_field("POD_IP", "status.podIP"),
        env_field("POD_NAME", "metadata.name"),
        env("ORIGIN_RTMP_LISTEN", format!("0.0.0.0:{}", p.rtmp)),
        env("ORIGIN_API_LISTEN", format!("0.0.0.0:{}", p.api)),
        env("ORIGIN_FLV_LISTEN", format!("0.0.0.0:{}", p.http)),
        env("ORIGIN_SELF_API", format!("$(POD_IP):{}", p.api)),
        env(
            "ORIGIN_COWORKER_FILE",
            format!(
                "{}/{}",
                origin_wire::coworkers::MOUNT_DIR,
                origin_wire::coworkers::CONFIGMAP_KEY
            ),
        ),
        env(
            "ORIGIN_ADMIN_TOKEN_FILE",
            format!("{ADMIN_DIR}/{TOKEN_KEY}"),
        ),
        env("ORIGIN_WAIT_FOR_PUBLISHER", o.wait_for_publisher.clone()),
        env("ORIGIN_PUBLISH_CONFLICT", o.publish_conflict.as_str()),
        env("ORIGIN_DISCOVERY_TIMEOUT", o.discovery_timeout.clone()),
        env("ORIGIN_LOG_FORMAT", o.log_format.as_str()),
        env("ORIGIN_DRAIN_GRACE", format!("{}s", oc.spec.drain_seconds)),
    ];
    if oc.spec.advertise == AdvertiseMode::PodIP {
        vars.push(env(
            "ORIGIN_ADVERTISE_RTMP",
            format!("$(POD_IP):{}", p.rtmp),
        ));
        vars.push(env(
            "ORIGIN_ADVERTISE_HTTP",
            format!("$(POD_IP):{}", p.http),
        ));
    }
    vars
}

/// Arguments of the origin container: `serve`, the route mode and the auth settings.
pub fn origin_args(oc: &OriginCluster) -> Vec<String> {
    let mut args = vec![
        "serve".to_string(),
        format!("--route={}", oc.spec.origin.route.as_str()),
    ];
    if let Some(auth) = &oc.spec.auth {
        if let Some(h) = &auth.hooks {
            for (flag, _, urls) in h.events() {
                for u in urls {
                    args.push(format!("{flag}={u}"));
                }
            }
            args.push(format!("--hook-timeout={}", h.timeout));
            args.push(format!("--hook-failure={}", h.failure.as_str()));
        }
        if auth.secret_ref.is_some() {
            args.push(format!("--auth-file={AUTH_DIR}/{AUTH_KEY}"));
        }
    }
    args
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("api".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

fn default_affinity(cluster: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(labels::selector(cluster)),
                            match_expressions: None,
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

/// The StatefulSet.
pub fn build(oc: &OriginCluster) -> StatefulSet {
    let (cluster, _) = labels::name_ns(oc);
    let spec = &oc.spec;
    let overrides = spec.pod_template.clone().unwrap_or_default();
    let p = &spec.ports;

    // Operator labels win over user labels: the selector must keep matching.
    let mut pod_labels: BTreeMap<String, String> = overrides.labels.clone();
    pod_labels.extend(labels::labels(&cluster));

    let auth_secret = spec
        .auth
        .as_ref()
        .and_then(|a| a.secret_ref.as_ref())
        .map(|s| s.name.clone());
    let container = Container {
        name: "origin".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec![ORIGIN_BIN.into()]),
        args: Some(origin_args(oc)),
        env: Some(origin_env(oc)),
        ports: Some(vec![
            ContainerPort {
                name: Some("rtmp".into()),
                container_port: p.rtmp,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("api".into()),
                container_port: p.api,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: p.http,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http_probe(origin_wire::paths::READYZ, 2, 2)),
        liveness_probe: Some(http_probe(origin_wire::paths::HEALTHZ, 10, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![ORIGIN_BIN.into(), "drain".into(), "--wait".into()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: "coworkers".into(),
                    mount_path: origin_wire::coworkers::MOUNT_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "admin-token".into(),
                    mount_path: ADMIN_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(auth_secret.as_ref().map(|_| VolumeMount {
                name: "auth".into(),
                mount_path: AUTH_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }))
            .collect(),
        ),
        ..Container::default()
    };

    let volumes = vec![
        Volume {
            name: "coworkers".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: labels::configmap(&cluster),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "admin-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(labels::secret(&cluster)),
                default_mode: Some(0o440),
                items: Some(vec![KeyToPath {
                    key: TOKEN_KEY.into(),
                    path: TOKEN_KEY.into(),
                    mode: None,
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
    .into_iter()
    .chain(auth_secret.map(|name| Volume {
        name: "auth".into(),
        // The whole Secret as a directory (never subPath: updates must reach the pod).
        secret: Some(SecretVolumeSource {
            secret_name: Some(name),
            default_mode: Some(0o440),
            items: Some(vec![KeyToPath {
                key: AUTH_KEY.into(),
                path: AUTH_KEY.into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }))
    .collect::<Vec<_>>();

    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(i64::from(spec.drain_seconds) + 10),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        affinity: Some(
            overrides
                .affinity
                .clone()
                .unwrap_or_else(|| default_affinity(&cluster)),
        ),
        node_selector: (!overrides.node_selector.is_empty())
            .then(|| overrides.node_selector.clone()),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        topology_spread_constraints: (!overrides.topology_spread_constraints.is_empty())
            .then(|| overrides.topology_spread_constraints.clone()),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        ..PodSpec::default()
    };

    StatefulSet {
        metadata: child_meta(oc, labels::statefulset(&cluster)),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(labels::peers_service(&cluster)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&cluster)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!overrides.annotations.is_empty())
                        .then(|| overrides.annotations.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    fn env_map(sts: &StatefulSet) -> BTreeMap<String, EnvVar> {
        container(sts)
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    fn container(sts: &StatefulSet) -> &Container {
        &pod(sts).containers[0]
    }

    fn pod(sts: &StatefulSet) -> &PodSpec {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn val<'a>(m: &'a BTreeMap<String, EnvVar>, k: &str) -> &'a str {
        m.get(k)
            .and_then(|e| e.value.as_deref())
            .unwrap_or_else(|| panic!("env {k}"))
    }

    #[test]
    fn minimal_cluster_contract() {
        let oc = fixtures::minimal();
        let sts = build(&oc);
        assert_eq!(sts.metadata.name.as_deref(), Some("live"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("media"));
        let owner = &sts.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.kind, "OriginCluster");
        assert_eq!(owner.name, "live");
        assert_eq!(owner.controller, Some(true));
        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("live-peers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));

        let c = container(&sts);
        assert_eq!(c.command, Some(vec!["/origin".to_string()]));
        assert_eq!(
            c.args,
            Some(vec!["serve".to_string(), "--route=auto".to_string()])
        );
        let env = env_map(&sts);
        assert_eq!(val(&env, "ORIGIN_RTMP_LISTEN"), "0.0.0.0:1935");
        assert_eq!(val(&env, "ORIGIN_API_LISTEN"), "0.0.0.0:1985");
        assert_eq!(val(&env, "ORIGIN_FLV_LISTEN"), "0.0.0.0:8080");
        assert_eq!(val(&env, "ORIGIN_SELF_API"), "$(POD_IP):1985");
        assert_eq!(
            val(&env, "ORIGIN_COWORKER_FILE"),
            "/etc/origin/coworkers/coworkers.json"
        );
        assert_eq!(
            val(&env, "ORIGIN_ADMIN_TOKEN_FILE"),
            "/etc/origin/admin/token"
        );
        assert_eq!(val(&env, "ORIGIN_WAIT_FOR_PUBLISHER"), "5s");
        assert_eq!(val(&env, "ORIGIN_PUBLISH_CONFLICT"), "reject");
        assert_eq!(val(&env, "ORIGIN_DISCOVERY_TIMEOUT"), "500ms");
        assert_eq!(val(&env, "ORIGIN_LOG_FORMAT"), "text");
        assert_eq!(val(&env, "ORIGIN_DRAIN_GRACE"), "60s");
        assert_eq!(val(&env, "ORIGIN_ADVERTISE_RTMP"), "$(POD_IP):1935");
        assert_eq!(val(&env, "ORIGIN_ADVERTISE_HTTP"), "$(POD_IP):8080");
        let pod_ip = env
            .get("POD_IP")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.field_ref.as_ref());
        assert_eq!(pod_ip.map(|f| f.field_path.as_str()), Some("status.podIP"));
        // POD_IP must come before the variables that reference it.
        let names: Vec<_> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
        assert!(pos("POD_IP") < pos("ORIGIN_SELF_API"));

        let ready = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("readiness");
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(ready.port, IntOrString::String("api".into()));
        let live = c
            .liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("liveness");
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        let pre = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone());
        assert_eq!(
            pre,
            Some(vec!["/origin".into(), "drain".into(), "--wait".into()])
        );
        assert_eq!(pod(&sts).termination_grace_period_seconds, Some(70));

        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".into()])
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );

        // ConfigMap mounted as a directory, never subPath.
        let mounts = c.volume_mounts.as_ref().expect("mounts");
        assert!(mounts.iter().all(|m| m.sub_path.is_none()));
        let cw = mounts
            .iter()
            .find(|m| m.name == "coworkers")
            .expect("coworkers mount");
        assert_eq!(cw.mount_path, "/etc/origin/coworkers");
        let vols = pod(&sts).volumes.as_ref().expect("volumes");
        let cm = vols
            .iter()
            .find(|v| v.name == "coworkers")
            .and_then(|v| v.config_map.as_ref());
        assert_eq!(cm.map(|c| c.name.as_str()), Some("live-coworkers"));
        let sec = vols
            .iter()
            .find(|v| v.name == "admin-token")
            .and_then(|v| v.secret.as_ref());
        assert_eq!(
            sec.and_then(|s| s.secret_name.as_deref()),
            Some("live-admin-token")
        );

        // Default anti-affinity spreads pods across nodes.
        let aff = pod(&sts)
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref());
        assert!(
            aff.and_then(|a| a
                .preferred_during_scheduling_ignored_during_execution
                .as_ref())
                .is_some()
        );

        // Selector matches the pod labels.
        let sel = spec.selector.match_labels.as_ref().expect("selector");
        let pl = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("pod labels");
        assert!(sel.iter().all(|(k, v)| pl.get(k) == Some(v)));
    }

    #[test]
    fn full_cluster_overrides() {
        let oc = fixtures::full();
        let sts = build(&oc);
        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(5));
        let c = container(&sts);
        assert_eq!(c.image.as_deref(), Some("registry.example/origin:2"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        let env = env_map(&sts);
        assert_eq!(val(&env, "ORIGIN_RTMP_LISTEN"), "0.0.0.0:11935");
        assert_eq!(val(&env, "ORIGIN_SELF_API"), "$(POD_IP):11985");
        assert_eq!(val(&env, "ORIGIN_WAIT_FOR_PUBLISHER"), "10s");
        assert_eq!(val(&env, "ORIGIN_PUBLISH_CONFLICT"), "allow");
        assert_eq!(val(&env, "ORIGIN_DISCOVERY_TIMEOUT"), "250ms");
        assert_eq!(val(&env, "ORIGIN_LOG_FORMAT"), "json");
        assert_eq!(val(&env, "ORIGIN_DRAIN_GRACE"), "120s");
        // PerPodService: the advertised address is pushed, not set from the pod IP.
        assert!(!env.contains_key("ORIGIN_ADVERTISE_RTMP"));
        assert!(!env.contains_key("ORIGIN_ADVERTISE_HTTP"));
        let ports: Vec<_> = c.ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(ports, [11935, 11985, 18080]);
        let p = pod(&sts);
        assert_eq!(p.termination_grace_period_seconds, Some(130));
        assert_eq!(
            p.node_selector
                .as_ref()
                .and_then(|n| n.get("pool"))
                .map(String::as_str),
            Some("media")
        );
        assert_eq!(p.tolerations.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            p.topology_spread_constraints.as_ref().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            p.image_pull_secrets.as_ref().map(|s| s[0].name.as_str()),
            Some("regcred")
        );
        let res = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("requests");
        assert_eq!(res.get("cpu").map(|q| q.0.as_str()), Some("500m"));
        let meta = spec.template.metadata.as_ref().expect("template meta");
        let pl = meta.labels.as_ref().expect("labels");
        assert_eq!(pl.get("team").map(String::as_str), Some("video"));
        // A user label cannot steal the selector label.
        assert_eq!(pl.get(labels::INSTANCE).map(String::as_str), Some("big"));
        assert_eq!(
            meta.annotations
                .as_ref()
                .and_then(|a| a.get("prometheus.io/scrape"))
                .map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn only_replicas_differ_when_scaling() {
        let mut oc = fixtures::full();
        let a = serde_json::to_value(build(&oc)).expect("json");
        oc.spec.replicas = 9;
        let mut b = serde_json::to_value(build(&oc)).expect("json");
        assert_eq!(b["spec"]["replicas"], 9);
        b["spec"]["replicas"] = a["spec"]["replicas"].clone();
        assert_eq!(a, b);
    }

    #[test]
    fn route_and_auth_become_origin_flags_and_a_directory_mount() {
        let mut oc = fixtures::minimal();
        let sts = build(&oc);
        assert_eq!(
            container(&sts).args.as_deref(),
            Some(&["serve".to_string(), "--route=auto".to_string()][..])
        );
        assert!(!pod(&sts).volumes.iter().flatten().any(|v| v.name == "auth"));

        oc.spec.origin.route = crate::crd::RouteMode::Redirect;
        oc.spec.auth = Some(crate::crd::AuthSpec {
            hooks: Some(crate::crd::HookSpec {
                on_publish: vec![
                    "http://auth:8085/pub".into(),
                    "https://b.example/p?x=1".into(),
                ],
                on_play: vec!["http://auth:8085/play".into()],
                on_close: vec!["http://auth:8085/close".into()],
                timeout: "2s".into(),
                failure: crate::crd::HookFailure::Allow,
                ..crate::crd::HookSpec::default()
            }),
            secret_ref: Some(crate::crd::SecretRef {
                name: "origin-auth".into(),
            }),
        });
        let sts = build(&oc);
        let args = container(&sts).args.clone().expect("args");
        assert_eq!(
            args,
            [
                "serve",
                "--route=redirect",
                "--on-publish=http://auth:8085/pub",
                "--on-publish=https://b.example/p?x=1",
                "--on-play=http://auth:8085/play",
                "--on-close=http://auth:8085/close",
                "--hook-timeout=2s",
                "--hook-failure=allow",
                "--auth-file=/etc/origin/auth/auth.toml",
            ]
        );
        let mount = container(&sts)
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "auth")
            .expect("auth mount");
        assert_eq!(mount.mount_path, "/etc/origin/auth");
        assert!(mount.sub_path.is_none(), "never a subPath mount");
        assert_eq!(mount.read_only, Some(true));
        let vol = pod(&sts)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "auth")
            .and_then(|v| v.secret.clone())
            .expect("auth volume");
        assert_eq!(vol.secret_name.as_deref(), Some("origin-auth"));
        assert_eq!(vol.items.expect("items")[0].key, "auth.toml");
    }
}
