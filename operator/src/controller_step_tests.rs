//! Unit tests of the pure steps of a reconcile pass (no API server, no pods).

use super::*;
use crate::delivery::Progress;

fn addrs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn advertise(pod: &str, rtmp: &str) -> BTreeMap<String, Advertise> {
    let a = Advertise {
        rtmp: Some(rtmp.to_string()),
        http: None,
    };
    BTreeMap::from([(pod.to_string(), a)])
}

fn doc(revision: u64, list: &[&str], adv: &BTreeMap<String, Advertise>) -> CoworkerDocument {
    file_document(revision, &addrs(list), adv)
}

#[test]
fn the_revision_bumps_only_when_what_pods_are_told_changes() {
    let mut s = ClusterState::default();
    let two = addrs(&["10.0.0.1:1985", "10.0.0.2:1985"]);
    let none = BTreeMap::new();
    let first = s.advance(&two, &none, 0);
    assert_eq!(
        first,
        Revision {
            revision: 1,
            bumped: true
        }
    );
    let again = s.advance(&two, &none, 0);
    assert_eq!(
        again,
        Revision {
            revision: 1,
            bumped: false
        },
        "same list"
    );
    let three = addrs(&["10.0.0.1:1985", "10.0.0.2:1985", "10.0.0.3:1985"]);
    assert_eq!(s.advance(&three, &none, 0).revision, 2, "a pod more");
    let adv = advertise("live-0", "203.0.113.7:1935");
    assert_eq!(
        s.advance(&three, &adv, 0).revision,
        3,
        "an advertised address"
    );
    assert!(!s.advance(&three, &adv, 0).bumped);
    // A pod holds revision 7 (the operator lost its state): go above it.
    let ahead = s.advance(&three, &adv, 7);
    assert_eq!(
        ahead,
        Revision {
            revision: 8,
            bumped: true
        }
    );
    assert_eq!(s.list.as_deref(), Some(&three[..]));
}

#[test]
fn a_restart_resumes_from_the_durable_revision() {
    let list = addrs(&["10.0.0.1:1985"]);
    let none = BTreeMap::new();
    // The ConfigMap holds this very list at 5: adopted, no bump.
    let mut s = ClusterState::default();
    s.resume(
        Some(&doc(5, &["10.0.0.1:1985"], &none)),
        Some(4),
        &list,
        &none,
    );
    assert_eq!(s.revision, 5);
    assert!(!s.advance(&list, &none, 0).bumped);
    // The status is ahead of the ConfigMap: continue above the status.
    let mut s = ClusterState::default();
    s.resume(
        Some(&doc(5, &["10.0.0.1:1985"], &none)),
        Some(9),
        &list,
        &none,
    );
    assert_eq!(s.revision, 9);
    assert!(
        s.list.is_none(),
        "the ConfigMap's list is older than revision 9"
    );
    assert_eq!(s.advance(&list, &none, 0).revision, 10);
    // The list changed while the operator was down: bump above the durable revision.
    let mut s = ClusterState::default();
    s.resume(Some(&doc(5, &["10.0.0.9:1985"], &none)), None, &list, &none);
    assert_eq!(s.advance(&list, &none, 0).revision, 6);
    // Nothing durable: start at 1.
    let mut s = ClusterState::default();
    s.resume(None, None, &list, &none);
    assert_eq!(s.advance(&list, &none, 0).revision, 1);
}

#[test]
fn each_target_gets_the_file_document_with_its_own_advertise() {
    let adv = advertise("live-1", "203.0.113.8:1935");
    let file = doc(4, &["10.0.0.1:1985", "10.0.0.2:1985"], &adv);
    let peers = vec![
        coworkers::Peer {
            addr: "10.0.0.1:1985".into(),
            pod: Some("live-0".into()),
        },
        coworkers::Peer {
            addr: "10.0.0.2:1985".into(),
            pod: Some("live-1".into()),
        },
        coworkers::Peer {
            addr: "10.0.0.3:1985".into(),
            pod: None,
        },
    ];
    let t = push_targets(&peers, &file);
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].pod, "live-0");
    assert_eq!(t[0].doc.advertise, None);
    assert_eq!(t[1].doc.advertise, adv.get("live-1").cloned());
    assert_eq!(
        t[2].pod, "10.0.0.3:1985",
        "a pod without a name is keyed by address"
    );
    for x in &t {
        assert_eq!(x.doc.revision, 4);
        assert_eq!(x.doc.coworkers, file.coworkers);
        assert_eq!(x.doc.pod_advertise, adv, "file and PUT agree");
    }
}

#[test]
fn delivery_progress_sorts_targets_into_acknowledged_and_pending() {
    let file = doc(3, &[], &BTreeMap::new());
    let target = |pod: &str, addr: &str| PushTarget {
        pod: pod.into(),
        addr: addr.into(),
        doc: file.clone(),
    };
    let targets = vec![
        target("live-2", "10.0.0.2:1985"),
        target("live-0", "10.0.0.0:1985"),
        target("live-1", "10.0.0.1:1985"),
        target("live-3", "10.0.0.3:1985"),
    ];
    let mut progress = Progress::default();
    progress
        .acked
        .insert("live-0".into(), ("10.0.0.0:1985".into(), 3));
    // An older revision, and the right revision at an old address, are not acknowledgements.
    progress
        .acked
        .insert("live-1".into(), ("10.0.0.1:1985".into(), 2));
    progress
        .acked
        .insert("live-2".into(), ("10.9.9.9:1985".into(), 3));
    progress.failed.insert(
        "live-3".into(),
        PushOutcome::Failed {
            error: "timed out".into(),
        },
    );
    let d = Delivered::of(&targets, &progress, 3);
    assert_eq!(d.acknowledged, ["live-0"]);
    assert_eq!(d.pending, ["live-1", "live-2", "live-3"], "sorted");
    assert_eq!(d.failures.len(), 1);
    assert_eq!(d.failures[0].0, "live-3");
    let st = coworkers_status(3, &addrs(&["a:1"]), &d);
    assert_eq!(st.revision, 3);
    assert_eq!(st.pending, d.pending);
    assert_eq!(st.acknowledged, d.acknowledged);
}

#[test]
fn scale_events_name_the_direction() {
    assert_eq!(scale_event(None, 3), None, "first pass");
    assert_eq!(scale_event(Some(3), 3), None);
    assert_eq!(
        scale_event(Some(3), 5),
        Some(("ScaledUp", "scaled from 3 to 5 origins".to_string()))
    );
    assert_eq!(
        scale_event(Some(5), 1),
        Some(("ScaledDown", "scaled from 5 to 1 origins".to_string()))
    );
}

#[test]
fn push_failures_are_reported_once_per_set_and_name_at_most_ten_pods() {
    let mut s = ClusterState::default();
    assert!(s.failures_are_news(2, vec!["live-1".into()]));
    assert!(!s.failures_are_news(2, vec!["live-1".into()]), "same set");
    assert!(s.failures_are_news(2, vec!["live-1".into(), "live-2".into()]));
    assert!(s.failures_are_news(3, vec!["live-1".into(), "live-2".into()]));
    let failures: Vec<(String, PushOutcome)> = (0..12)
        .map(|i| (format!("live-{i}"), PushOutcome::Unauthorized))
        .collect();
    let note = push_failed_note(3, &failures);
    assert!(note.starts_with("revision 3 not acknowledged by 12 origins (live-0: "));
    assert!(note.contains("live-9: "));
    assert!(!note.contains("live-10"), "{note}");
}

#[test]
fn pending_pods_bring_the_next_pass_forward() {
    let settings = Settings::default();
    let done = Delivered {
        acknowledged: vec!["live-0".into()],
        ..Delivered::default()
    };
    assert_eq!(
        next_action(&settings, &done),
        Action::requeue(settings.resync)
    );
    let pending = Delivered {
        pending: vec!["live-0".into()],
        ..Delivered::default()
    };
    assert_eq!(
        next_action(&settings, &pending),
        Action::requeue(PUSH_RETRY_MAX)
    );
    let quick = Settings {
        resync: Duration::from_secs(2),
        ..Settings::default()
    };
    assert_eq!(
        next_action(&quick, &pending),
        Action::requeue(Duration::from_secs(2))
    );
}
