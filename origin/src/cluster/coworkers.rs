//! The coworker set: the peers' API addresses, held in memory and swapped atomically.
//!
//! Sources (docs/architecture.md, "Coworker delivery"): `--coworker` flags (revision 0), a coworker
//! file re-read when it changes, and `PUT /api/v1/coworkers`. A document only replaces the current
//! one when its revision is newer; the origin drops itself from the list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use origin_wire::addr::HostPort;
use origin_wire::coworkers::{Advertise, CoworkerDocument, DocumentError};

/// The list in use and where it came from.
#[derive(Debug, Clone)]
pub struct CoworkerState {
    pub document: CoworkerDocument,
    /// Peers to ask: the document's list without this origin.
    pub peers: Vec<HostPort>,
    /// The whole cluster, this origin included (as [`Self::me`]), sorted: what the
    /// ownership directory hashes over, the same list on every origin.
    pub members: Vec<HostPort>,
    /// This origin's API address as the list names it (`None`: not known here).
    pub me: Option<HostPort>,
    pub source: String,
    pub updated: SystemTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The document replaced the current one.
    Updated,
    /// Same revision and content as the current one: nothing to do.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("revision {offered} is not newer than the current revision {current}")]
    Stale { offered: u64, current: u64 },
    #[error(transparent)]
    Invalid(#[from] DocumentError),
}

pub struct Coworkers {
    current: RwLock<Arc<CoworkerState>>,
    /// Addresses that mean "this origin" (its API address as peers see it).
    myself: Vec<HostPort>,
    /// Bumped on every change of the list (owners re-claim keys whose directory moved).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Coworkers {
    /// Starts with a static list (revision 0).
    pub fn new(initial: Vec<HostPort>, myself: Vec<HostPort>) -> Self {
        let document = CoworkerDocument::new(0, initial.iter().map(ToString::to_string), None);
        let peers = drop_self(&initial, &myself);
        let (members, me) = members(&initial, &peers, &myself);
        let state = CoworkerState {
            document,
            peers,
            members,
            me,
            source: if initial.is_empty() {
                "none".into()
            } else {
                "flags".into()
            },
            updated: SystemTime::now(),
        };
        let c = Self {
            current: RwLock::new(Arc::new(state)),
            myself,
            changes: tokio::sync::watch::channel(0).0,
        };
        c.publish_metrics();
        c
    }

    pub fn snapshot(&self) -> Arc<CoworkerState> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Peers to ask, self excluded.
    pub fn peers(&self) -> Vec<HostPort> {
        self.snapshot().peers.clone()
    }

    /// The whole cluster with this origin, and this origin's address in it
    /// (docs/architecture.md, "Ownership directory").
    pub fn members(&self) -> (Vec<HostPort>, Option<HostPort>) {
        let s = self.snapshot();
        (s.members.clone(), s.me.clone())
    }

    /// Wakes on every change of the list.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The advertise addresses pushed in the document, if any.
    pub fn advertise(&self) -> Option<Advertise> {
        self.snapshot().document.advertise.clone()
    }

    /// The advertise addresses for pod `pod`: its own entry of `pod_advertise` (the same in
    /// the mounted file and in every PUT), else the document's `advertise`.
    pub fn advertise_for(&self, pod: Option<&str>) -> Option<Advertise> {
        let s = self.snapshot();
        match pod {
            Some(p) => s.document.advertise_for(p).cloned(),
            None => s.document.advertise.clone(),
        }
    }

    /// Applies a document if its revision is newer (or identical, which is a no-op).
    pub fn apply(&self, document: CoworkerDocument, source: &str) -> Result<Applied, ApplyError> {
        let parsed = document.validate()?;
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let current_rev = cur.document.revision;
        let first_real = cur.source == "none" || cur.source == "flags";
        if document.revision == current_rev && document == cur.document {
            return Ok(Applied::Unchanged);
        }
        // Revision 0 documents only replace the flag list; after that revisions must grow.
        if document.revision <= current_rev && !(first_real && document.revision == current_rev) {
            return Err(ApplyError::Stale {
                offered: document.revision,
                current: current_rev,
            });
        }
        let peers = drop_self(&parsed, &self.myself);
        let (members, me) = members(&parsed, &peers, &self.myself);
        *cur = Arc::new(CoworkerState {
            document,
            peers,
            members,
            me,
            source: source.to_string(),
            updated: SystemTime::now(),
        });
        drop(cur);
        self.changes.send_modify(|n| *n += 1);
        self.publish_metrics();
        Ok(Applied::Updated)
    }

    fn publish_metrics(&self) {
        let s = self.snapshot();
        let m = crate::metrics::global();
        m.coworker_revision.set(s.document.revision as i64);
        m.coworkers.set(s.peers.len() as i64);
    }
}

fn drop_self(list: &[HostPort], myself: &[HostPort]) -> Vec<HostPort> {
    let mut out: Vec<HostPort> = list
        .iter()
        .filter(|p| !myself.contains(p))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The cluster's members (the peers and this origin) and this origin's address among
/// them: the address the list gives it if the list has it, else its first known address.
fn members(
    list: &[HostPort],
    peers: &[HostPort],
    myself: &[HostPort],
) -> (Vec<HostPort>, Option<HostPort>) {
    let me = myself
        .iter()
        .find(|m| list.contains(m))
        .or_else(|| myself.first())
        .cloned();
    let mut all: Vec<HostPort> = peers.iter().cloned().chain(me.clone()).collect();
    all.sort();
    all.dedup();
    (all, me)
}

/// Re-reads a coworker file every `interval` and applies it when its content changes.
/// Kubernetes updates a mounted ConfigMap by swapping a symlink, so content is compared,
/// not modification times.
pub async fn watch_file(coworkers: Arc<Coworkers>, path: PathBuf, interval: Duration) {
    let mut last: Option<Vec<u8>> = None;
    loop {
        load_file(&coworkers, &path, &mut last).await;
        tokio::time::sleep(interval).await;
    }
}

async fn load_file(coworkers: &Coworkers, path: &Path, last: &mut Option<Vec<u8>>) {
    let data = match tokio::fs::read(path).await {
        Ok(d) => d,
        Err(e) => {
            if last.is_some() {
                tracing::warn!(path = %path.display(), error = %e, "coworker file unreadable; keeping the current list");
            }
            return;
        }
    };
    if last.as_deref() == Some(&data[..]) {
        return;
    }
    *last = Some(data.clone());
    match CoworkerDocument::from_slice(&data) {
        Ok(doc) => {
            let rev = doc.revision;
            match coworkers.apply(doc, &format!("file:{}", path.display())) {
                Ok(Applied::Updated) => {
                    tracing::info!(path = %path.display(), revision = rev, "coworker list updated from file")
                }
                Ok(Applied::Unchanged) => {}
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "coworker file not applied")
                }
            }
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "coworker file is malformed; keeping the current list")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> HostPort {
        HostPort::parse(s).unwrap()
    }

    #[test]
    fn a_pod_finds_its_own_advertise_entry_in_the_shared_document() {
        let c = Coworkers::new(vec![], vec![]);
        let mut doc = CoworkerDocument::new(1, ["10.0.0.2:1985".to_string()], None);
        let mine = Advertise {
            rtmp: Some("203.0.113.7:1935".into()),
            http: Some("203.0.113.7:8080".into()),
        };
        doc.pod_advertise.insert("live-1".into(), mine.clone());
        c.apply(doc, "file:/etc/origin/coworkers/coworkers.json")
            .unwrap();
        assert_eq!(c.advertise_for(Some("live-1")), Some(mine));
        assert_eq!(
            c.advertise_for(Some("live-0")),
            None,
            "no entry, no advertise"
        );
        assert_eq!(c.advertise_for(None), None);
    }

    #[test]
    fn drops_itself_and_orders_revisions() {
        let me = hp("10.0.0.1:1985");
        let c = Coworkers::new(vec![hp("10.0.0.2:1985"), me.clone()], vec![me.clone()]);
        assert_eq!(c.peers(), vec![hp("10.0.0.2:1985")]);
        let doc = |rev, list: &[&str]| {
            CoworkerDocument::new(rev, list.iter().map(|s| s.to_string()), None)
        };
        assert_eq!(
            c.apply(doc(3, &["10.0.0.1:1985", "10.0.0.3:1985"]), "api")
                .unwrap(),
            Applied::Updated
        );
        assert_eq!(c.peers(), vec![hp("10.0.0.3:1985")]);
        assert_eq!(
            c.apply(doc(3, &["10.0.0.1:1985", "10.0.0.3:1985"]), "api")
                .unwrap(),
            Applied::Unchanged
        );
        assert!(matches!(
            c.apply(doc(2, &[]), "api"),
            Err(ApplyError::Stale {
                offered: 2,
                current: 3
            })
        ));
        assert!(matches!(
            c.apply(doc(3, &[]), "api"),
            Err(ApplyError::Stale { .. })
        ));
        assert_eq!(
            c.peers(),
            vec![hp("10.0.0.3:1985")],
            "a stale document changes nothing"
        );
        assert_eq!(c.snapshot().source, "api");
    }

    #[test]
    fn members_are_the_same_list_on_every_origin_and_changes_wake_watchers() {
        let all = ["10.0.0.1:1985", "10.0.0.2:1985", "10.0.0.3:1985"].map(hp);
        // Whether a list names the origin itself or not, every origin sees all three.
        for (i, me) in all.iter().enumerate() {
            let with_self = Coworkers::new(all.to_vec(), vec![me.clone()]);
            let others: Vec<HostPort> = all.iter().filter(|x| *x != me).cloned().collect();
            let without_self = Coworkers::new(others, vec![me.clone()]);
            for c in [&with_self, &without_self] {
                let (members, mine) = c.members();
                assert_eq!(members, all.to_vec(), "origin {i}");
                assert_eq!(mine.as_ref(), Some(me));
            }
        }
        // An origin that does not know its own address is not a member.
        let c = Coworkers::new(all[1..].to_vec(), vec![]);
        assert_eq!(c.members(), (all[1..].to_vec(), None));
        let seen = c.subscribe();
        assert!(!seen.has_changed().unwrap());
        let doc = CoworkerDocument::new(1, ["10.0.0.9:1985".to_string()], None);
        c.apply(doc, "api").unwrap();
        assert!(seen.has_changed().unwrap());
    }

    #[tokio::test]
    async fn file_is_reread_on_change() {
        let dir = std::env::temp_dir().join(format!("cw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("coworkers.json");
        let c = Coworkers::new(vec![], vec![]);
        let mut last = None;
        std::fs::write(&path, r#"{"revision":1,"coworkers":["127.0.0.1:2001"]}"#).unwrap();
        load_file(&c, &path, &mut last).await;
        assert_eq!(c.peers(), vec![hp("127.0.0.1:2001")]);
        std::fs::write(&path, "not json").unwrap();
        load_file(&c, &path, &mut last).await;
        assert_eq!(
            c.peers(),
            vec![hp("127.0.0.1:2001")],
            "malformed file keeps the list"
        );
        std::fs::write(&path, r#"{"revision":2,"coworkers":["127.0.0.1:2002"]}"#).unwrap();
        load_file(&c, &path, &mut last).await;
        assert_eq!(c.snapshot().document.revision, 2);
        assert!(c.snapshot().source.starts_with("file:"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
