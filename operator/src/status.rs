//! Status and conditions as pure functions. `lastTransitionTime` changes only when a
//! condition's status flips.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{CoworkersStatus, OriginClusterStatus};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const COWORKERS_SYNCED: &str = "CoworkersSynced";
pub const DEGRADED: &str = "Degraded";

/// What one reconcile pass observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `metadata.generation` of the cluster.
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub desired: i32,
    /// The StatefulSet as the API server returned it after apply (with its status).
    pub statefulset: Option<StatefulSet>,
    /// Pod selector string.
    pub selector: String,
    /// Coworker list delivery.
    pub coworkers: Option<CoworkersStatus>,
    /// Why the pass failed, if it did: (reason, message).
    pub error: Option<(String, String)>,
}

/// Sets condition `type_` in `conds`, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status_s = if status { "True" } else { "False" };
    let new = |ltt: Time| Condition {
        type_: type_.into(),
        status: status_s.into(),
        reason: reason.into(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time: ltt,
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let ltt = if c.status == status_s {
                c.last_transition_time.clone()
            } else {
                now.clone()
            };
            *c = new(ltt);
        }
        None => conds.push(new(now.clone())),
    }
}

/// The status after a pass, given the previous one.
pub fn compute(
    old: Option<&OriginClusterStatus>,
    obs: &Observed,
    now: &Time,
) -> OriginClusterStatus {
    let old = old.cloned().unwrap_or_default();
    let mut conds = old.conditions.clone();
    let g = obs.generation;

    let sts_status = obs.statefulset.as_ref().and_then(|s| s.status.clone());
    let sts_gen = obs.statefulset.as_ref().and_then(|s| s.metadata.generation);
    let replicas = sts_status.as_ref().map_or(old.replicas, |s| s.replicas);
    let ready = sts_status
        .as_ref()
        .map_or(old.ready_replicas, |s| s.ready_replicas.unwrap_or(0));
    let updated = sts_status
        .as_ref()
        .and_then(|s| s.updated_replicas)
        .unwrap_or(0);
    let observed_sts_gen = sts_status.as_ref().and_then(|s| s.observed_generation);
    let revisions_differ = sts_status
        .as_ref()
        .is_some_and(|s| s.current_revision.is_some() && s.current_revision != s.update_revision);

    if let Some((reason, message)) = &obs.error {
        // A failed pass: only Degraded is known; keep the rest as it was.
        set_condition(&mut conds, DEGRADED, true, reason, message.clone(), g, now);
        return OriginClusterStatus {
            conditions: conds,
            selector: Some(obs.selector.clone()),
            ..old
        };
    }

    let all_ready = obs.statefulset.is_some() && ready >= obs.desired && replicas == obs.desired;
    set_condition(
        &mut conds,
        READY,
        all_ready,
        if all_ready {
            "AllReplicasReady"
        } else {
            "ReplicasNotReady"
        },
        format!("{ready}/{} origins ready", obs.desired),
        g,
        now,
    );

    let (progressing, reason, message) = if obs.statefulset.is_none() {
        (true, "Creating", "creating the StatefulSet".to_string())
    } else if observed_sts_gen.is_some() && sts_gen.is_some() && observed_sts_gen < sts_gen {
        (
            true,
            "Updating",
            "the StatefulSet controller has not seen the new spec yet".to_string(),
        )
    } else if replicas != obs.desired {
        (
            true,
            "Scaling",
            format!("scaling from {replicas} to {} origins", obs.desired),
        )
    } else if revisions_differ || updated < obs.desired {
        (
            true,
            "RollingOut",
            format!("{updated}/{} origins updated", obs.desired),
        )
    } else if ready < obs.desired {
        (
            true,
            "WaitingForReady",
            format!("{ready}/{} origins ready", obs.desired),
        )
    } else {
        (false, "Stable", "all origins are up to date".to_string())
    };
    set_condition(
        &mut conds,
        PROGRESSING,
        progressing,
        reason,
        message,
        g,
        now,
    );

    let cw = obs.coworkers.clone().or(old.coworkers.clone());
    if let Some(cw) = &cw {
        let synced = cw.pending.is_empty();
        let message = if synced {
            format!(
                "{} origins on coworker revision {}",
                cw.acknowledged.len(),
                cw.revision
            )
        } else {
            format!(
                "{}/{} origins on coworker revision {}; pending: {}",
                cw.acknowledged.len(),
                cw.acknowledged.len() + cw.pending.len(),
                cw.revision,
                cw.pending.join(", ")
            )
        };
        let reason = if synced {
            "AllOriginsCurrent"
        } else {
            "PushPending"
        };
        set_condition(
            &mut conds,
            COWORKERS_SYNCED,
            synced,
            reason,
            message,
            g,
            now,
        );
    }

    set_condition(
        &mut conds,
        DEGRADED,
        false,
        "AsExpected",
        "last reconcile succeeded".into(),
        g,
        now,
    );

    OriginClusterStatus {
        replicas,
        ready_replicas: ready,
        selector: Some(obs.selector.clone()),
        observed_generation: g,
        coworkers: cw,
        conditions: conds,
    }
}

/// The condition of `type_`, if present.
pub fn condition<'a>(status: &'a OriginClusterStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).expect("timestamp"))
    }

    fn sts(generation: i64, status: StatefulSetStatus) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(status),
        }
    }

    fn steady(n: i32) -> StatefulSetStatus {
        StatefulSetStatus {
            replicas: n,
            ready_replicas: Some(n),
            updated_replicas: Some(n),
            observed_generation: Some(1),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            ..StatefulSetStatus::default()
        }
    }

    fn cw(rev: i64, acked: &[&str], pending: &[&str]) -> CoworkersStatus {
        CoworkersStatus {
            revision: rev,
            list: vec![],
            acknowledged: acked.iter().map(|s| s.to_string()).collect(),
            pending: pending.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn is(st: &OriginClusterStatus, type_: &str) -> (String, String) {
        let c = condition(st, type_).unwrap_or_else(|| panic!("{type_} missing"));
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn steady_cluster_is_ready_and_synced() {
        let obs = Observed {
            generation: Some(2),
            desired: 3,
            statefulset: Some(sts(1, steady(3))),
            selector: "a=b".into(),
            coworkers: Some(cw(4, &["o-0", "o-1", "o-2"], &[])),
            error: None,
        };
        let st = compute(None, &obs, &t(0));
        assert_eq!((st.replicas, st.ready_replicas), (3, 3));
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(st.selector.as_deref(), Some("a=b"));
        assert_eq!(is(&st, READY), ("True".into(), "AllReplicasReady".into()));
        assert_eq!(is(&st, PROGRESSING), ("False".into(), "Stable".into()));
        assert_eq!(
            is(&st, COWORKERS_SYNCED),
            ("True".into(), "AllOriginsCurrent".into())
        );
        assert_eq!(is(&st, DEGRADED), ("False".into(), "AsExpected".into()));
        assert!(
            st.conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
    }

    #[test]
    fn creating_and_scaling_are_progressing() {
        let obs = Observed {
            desired: 3,
            ..Observed::default()
        };
        let st = compute(None, &obs, &t(0));
        assert_eq!(is(&st, READY).0, "False");
        assert_eq!(is(&st, PROGRESSING), ("True".into(), "Creating".into()));
        assert!(condition(&st, COWORKERS_SYNCED).is_none(), "no list yet");

        let obs = Observed {
            desired: 5,
            statefulset: Some(sts(1, steady(3))),
            ..Observed::default()
        };
        let st = compute(None, &obs, &t(0));
        assert_eq!(is(&st, PROGRESSING), ("True".into(), "Scaling".into()));
        assert_eq!(is(&st, READY).0, "False");

        let mut rolling = steady(3);
        rolling.update_revision = Some("r2".into());
        rolling.updated_replicas = Some(1);
        let obs = Observed {
            desired: 3,
            statefulset: Some(sts(1, rolling)),
            ..Observed::default()
        };
        assert_eq!(is(&compute(None, &obs, &t(0)), PROGRESSING).1, "RollingOut");
    }

    #[test]
    fn pending_pods_mean_not_synced() {
        let obs = Observed {
            desired: 3,
            statefulset: Some(sts(1, steady(3))),
            coworkers: Some(cw(7, &["o-0", "o-1"], &["o-2"])),
            ..Observed::default()
        };
        let st = compute(None, &obs, &t(0));
        let c = condition(&st, COWORKERS_SYNCED).expect("synced");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "PushPending")
        );
        assert!(
            c.message.contains("o-2") && c.message.contains("2/3"),
            "{}",
            c.message
        );
    }

    #[test]
    fn transition_time_changes_only_on_flip() {
        let mut obs = Observed {
            desired: 3,
            statefulset: Some(sts(1, steady(3))),
            coworkers: Some(cw(1, &["a"], &[])),
            ..Observed::default()
        };
        let s1 = compute(None, &obs, &t(0));
        // Same state later: times unchanged, message may change.
        obs.coworkers = Some(cw(2, &["a", "b"], &[]));
        let s2 = compute(Some(&s1), &obs, &t(100));
        for c in &s2.conditions {
            assert_eq!(c.last_transition_time, t(0), "{} moved", c.type_);
        }
        assert!(condition(&s2, COWORKERS_SYNCED).is_some_and(|c| c.message.contains("revision 2")));
        // An error flips Degraded only.
        obs.error = Some(("ApplyFailed".into(), "boom".into()));
        let s3 = compute(Some(&s2), &obs, &t(200));
        let d = condition(&s3, DEGRADED).expect("degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            ("True", "ApplyFailed", "boom")
        );
        assert_eq!(d.last_transition_time, t(200));
        assert_eq!(
            condition(&s3, READY).map(|c| c.last_transition_time.clone()),
            Some(t(0))
        );
        assert_eq!(
            s3.coworkers, s2.coworkers,
            "failed pass keeps the last known list"
        );
        // Recovery flips it back.
        obs.error = None;
        let s4 = compute(Some(&s3), &obs, &t(300));
        let d = condition(&s4, DEGRADED).expect("degraded");
        assert_eq!(
            (d.status.as_str(), d.last_transition_time.clone()),
            ("False", t(300))
        );
    }
}
