//! The owner's side of the directory: a publish claims its key at the key's directory
//! origins, the claim renews itself as a lease, follows the key when the coworker list
//! moves its directory, and is released when the [`ClaimHandle`] is dropped
//! (docs/architecture.md, "Ownership directory").
//!
//! The first directory origin decides: its grant or conflict is the answer; the second
//! decides only when the first does not answer. A claim the first granted takes the key
//! over at the second (which may have granted a racing claim first). A new publish that
//! meets another origin's claim asks that origin whether it still claims the key; one
//! that says no, or does not answer within the timeout (killed, frozen), is taken to be
//! gone, and its claim is replaced (by number: of two replacing it, one wins).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use origin_wire::addr::HostPort;
use origin_wire::directory::{
    ClaimAnswer, ClaimRequest, LookupAnswer, LookupRequest, OwnerAddr, ReleaseAnswer,
    ReleaseRequest,
};
use origin_wire::paths;
use tokio::sync::oneshot;

use super::remote::RemoteError;
use super::{Directory, wire_key};
use crate::media::StreamKey;

/// Bounds of the renewal period (a third of the lease granted).
const MIN_RENEW: Duration = Duration::from_millis(200);
const MAX_RENEW: Duration = Duration::from_secs(60);

/// Directory origins a claim remembers having been granted at (for its release).
const MAX_HELD: usize = 8;

/// One directory origin's answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Granted(Duration),
    /// Held by this owner's claim of this number.
    Conflict(OwnerAddr, u64),
    Silent,
}

/// What the answers of a key's directory origins, best first, decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The claim holds: publish.
    Granted,
    /// Another origin holds the key.
    Conflict(OwnerAddr),
    /// No directory origin answered: the caller decides another way.
    Unconfirmed,
}

/// The first answer that is one decides (docs/architecture.md, "Ownership directory").
pub fn verdict(answers: &[Answer]) -> Verdict {
    match deciding(answers) {
        Some(Answer::Granted(_)) => Verdict::Granted,
        Some(Answer::Conflict(o, _)) => Verdict::Conflict(o.clone()),
        _ => Verdict::Unconfirmed,
    }
}

/// The answer that decides: the first one given.
fn deciding(answers: &[Answer]) -> Option<&Answer> {
    answers.iter().find(|a| !matches!(a, Answer::Silent))
}

/// Keeps a key in the directory's set of keys this origin claims while it lives.
struct Claiming {
    directory: Arc<Directory>,
    key: StreamKey,
    claim: u64,
}

impl Claiming {
    fn new(directory: Arc<Directory>, key: StreamKey, claim: u64) -> Self {
        directory.claims_here().insert(key.clone(), claim);
        Self {
            directory,
            key,
            claim,
        }
    }
}

impl Drop for Claiming {
    fn drop(&mut self) {
        let mut here = self.directory.claims_here();
        if here.get(&self.key) == Some(&self.claim) {
            here.remove(&self.key);
        }
    }
}

/// A claim held while it lives: renewed in the background, released when dropped.
pub struct ClaimHandle {
    /// Dropping it tells the renewal task to release the claim and end.
    _stop: oneshot::Sender<()>,
    verdict: Verdict,
}

impl ClaimHandle {
    /// What the directory said when the claim was made.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }
}

/// Numbers of this process's claims: a release names the publish it ends.
fn next_claim() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Distinct across restarts of the origin too (a release of an earlier life's claim
    // must not drop a new one): high bits from the clock.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The state of one claim's renewal.
struct Keeper {
    directory: Arc<Directory>,
    key: StreamKey,
    owner: OwnerAddr,
    claim: u64,
    /// Directory origins that granted it (released on drop).
    held: Vec<HostPort>,
    /// The directory origins of the last round, best first.
    dirs: Vec<HostPort>,
    renew: Duration,
    /// Marks the key as claimed here (a holder check asks); dropped before the release.
    claiming: Option<Claiming>,
    /// Whether rounds still check another claim's holder (the first round only: a
    /// publish that has begun does not take its key from another).
    first: bool,
}

impl Directory {
    /// Claims `key` for `owner` (this origin) at the key's directory origins and keeps the
    /// claim until the handle is dropped. `None` when the directory is off here.
    pub async fn claim(self: &Arc<Self>, key: &StreamKey, owner: OwnerAddr) -> Option<ClaimHandle> {
        if !self.enabled() {
            return None;
        }
        let claim = next_claim();
        let mut keeper = Keeper {
            directory: self.clone(),
            key: key.clone(),
            owner,
            claim,
            held: Vec::new(),
            dirs: Vec::new(),
            renew: self.lease / 3,
            // Before the first request: a racing claimer that checks sees this one live.
            claiming: Some(Claiming::new(self.clone(), key.clone(), claim)),
            first: true,
        };
        // Subscribed first, so a change during the first round is not missed.
        let changes = self.coworkers.subscribe();
        let verdict = keeper.round().await;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(keeper.keep(stopped, changes));
        Some(ClaimHandle {
            _stop: stop,
            verdict,
        })
    }

    /// Asks one directory origin (this origin's own table without a request).
    async fn claim_at(&self, at: &HostPort, me: Option<&HostPort>, req: &ClaimRequest) -> Answer {
        let answer = if Some(at) == me {
            self.answer_claim(req).ok()
        } else {
            let Some(remote) = &self.remote else {
                return Answer::Silent;
            };
            match remote
                .call::<_, ClaimAnswer>(at, paths::DIRECTORY_CLAIM, req, &[409])
                .await
            {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::debug!(directory = %at, stream = %self_key(req), error = %e, "directory claim not answered");
                    None
                }
            }
        };
        match answer {
            Some(ClaimAnswer::Granted { lease_ms }) => {
                Answer::Granted(Duration::from_millis(lease_ms))
            }
            Some(ClaimAnswer::Conflict { owner, claim }) => Answer::Conflict(owner, claim),
            None => Answer::Silent,
        }
    }

    /// Whether the origin `holder` still claims `key`: asked directly. No answer within the
    /// timeout (killed, frozen, partitioned) counts as gone, as a coworker that does not
    /// answer an ownership query counts as not owning; an answer that cannot be read
    /// (another token, an older origin) keeps the claim.
    async fn holder_claims(&self, holder: &OwnerAddr, key: &StreamKey) -> bool {
        let Ok((api, _)) = holder.validate() else {
            return false;
        };
        if Some(&api) == self.coworkers.members().1.as_ref() {
            return self.is_claiming(key);
        }
        let Some(remote) = &self.remote else {
            return true;
        };
        let req = LookupRequest { key: wire_key(key) };
        match remote
            .call::<_, LookupAnswer>(&api, paths::DIRECTORY_LOOKUP, &req, &[])
            .await
        {
            Ok(a) => a.claiming,
            Err(RemoteError::Timeout(_) | RemoteError::Http(_)) => false,
            Err(e) => {
                tracing::debug!(holder = %api, stream = %key, error = %e, "claim holder's answer unreadable; keeping its claim");
                true
            }
        }
    }

    async fn release_at(&self, at: &HostPort, me: Option<&HostPort>, req: &ReleaseRequest) {
        if Some(at) == me {
            let _ = self.serve_release(req);
            return;
        }
        if let Some(remote) = &self.remote {
            let r = remote
                .call::<_, ReleaseAnswer>(at, paths::DIRECTORY_RELEASE, req, &[])
                .await;
            if let Err(e) = r {
                tracing::debug!(directory = %at, error = %e, "directory release not answered; the lease will run out");
            }
        }
    }
}

fn self_key(req: &ClaimRequest) -> String {
    format!("{}/{}/{}", req.key.vhost, req.key.app, req.key.stream)
}

impl Keeper {
    /// One round of claims at the current directory origins; returns the verdict and
    /// remembers where it was granted.
    async fn round(&mut self) -> Verdict {
        let (dirs, me) = self.directory.directory_for(&self.key);
        let req = ClaimRequest {
            key: wire_key(&self.key),
            owner: self.owner.clone(),
            claim: self.claim,
            takeover: false,
            replace: None,
        };
        let d = &self.directory;
        let mut answers = join_all(dirs.iter().map(|at| d.claim_at(at, me.as_ref(), &req))).await;
        let stale = match deciding(&answers) {
            Some(Answer::Conflict(holder, n)) if self.first => {
                (!d.holder_claims(holder, &self.key).await).then_some((holder.api.clone(), *n))
            }
            _ => None,
        };
        let req = match stale {
            Some((holder, n)) => {
                tracing::info!(stream = %self.key, %holder, "the key's holder is gone; replacing its claim");
                let replace = ClaimRequest {
                    replace: Some(n),
                    ..req
                };
                answers =
                    join_all(dirs.iter().map(|at| d.claim_at(at, me.as_ref(), &replace))).await;
                replace
            }
            None => req,
        };
        self.first = false;
        let verdict = verdict(&answers);
        if verdict == Verdict::Granted {
            // The deciding origin granted it: the others follow.
            let forced = ClaimRequest {
                takeover: true,
                ..req
            };
            for (at, a) in dirs.iter().zip(answers.iter_mut()) {
                if matches!(a, Answer::Conflict(..)) {
                    *a = d.claim_at(at, me.as_ref(), &forced).await;
                }
            }
        }
        for (at, a) in dirs.iter().zip(&answers) {
            match a {
                Answer::Granted(_) if !self.held.contains(at) => {
                    self.held.push(at.clone());
                    if self.held.len() > MAX_HELD {
                        self.held.remove(0);
                    }
                }
                Answer::Conflict(..) => self.held.retain(|h| h != at),
                _ => {}
            }
        }
        let lease = answers
            .iter()
            .filter_map(|a| match a {
                Answer::Granted(l) => Some(*l),
                _ => None,
            })
            .min()
            .unwrap_or(self.directory.lease);
        self.renew = (lease / 3).clamp(MIN_RENEW, MAX_RENEW);
        if let Verdict::Conflict(o) = &verdict {
            tracing::debug!(stream = %self.key, holder = %o.api, "directory: the key is claimed by another origin");
        }
        self.dirs = dirs;
        verdict
    }

    /// Renews the claim every third of its lease, and at once when the coworker list moves
    /// the key's directory; on stop, releases it where it was granted.
    async fn keep(
        mut self,
        mut stop: oneshot::Receiver<()>,
        mut changes: tokio::sync::watch::Receiver<u64>,
    ) {
        loop {
            let moved = tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(self.renew) => false,
                r = changes.changed() => match r {
                    Ok(()) => true,
                    // The coworker set is gone: the origin is shutting down.
                    Err(_) => break,
                },
            };
            if moved && self.directory.directory_for(&self.key).0 == self.dirs {
                continue;
            }
            if moved {
                tracing::info!(stream = %self.key, "coworker list moved the key's directory; claiming it there");
            }
            if let Verdict::Conflict(o) = self.round().await {
                tracing::warn!(stream = %self.key, holder = %o.api, "directory: another origin holds this publish's key");
            }
        }
        // No longer claimed here: a holder check from now on finds it gone.
        self.claiming = None;
        let me = self.directory.coworkers.members().1;
        let req = ReleaseRequest {
            key: wire_key(&self.key),
            owner: self.owner.api.clone(),
            claim: self.claim,
        };
        let d = &self.directory;
        join_all(
            self.held
                .iter()
                .map(|at| d.release_at(at, me.as_ref(), &req)),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Coworkers;
    use crate::cluster::directory::{DirectoryConfig, Lookup};

    fn owner(i: u8) -> OwnerAddr {
        OwnerAddr {
            api: format!("10.0.0.{i}:1985"),
            rtmp: format!("10.0.0.{i}:1935"),
            http: None,
        }
    }

    #[test]
    fn the_first_answer_decides() {
        let g = Answer::Granted(Duration::from_secs(10));
        let c = Answer::Conflict(owner(2), 7);
        let n = Answer::Silent;
        assert_eq!(verdict(&[g.clone(), c.clone()]), Verdict::Granted);
        assert_eq!(
            verdict(&[c.clone(), g.clone()]),
            Verdict::Conflict(owner(2))
        );
        assert_eq!(verdict(&[n.clone(), g.clone()]), Verdict::Granted);
        assert_eq!(
            verdict(&[n.clone(), c.clone()]),
            Verdict::Conflict(owner(2))
        );
        assert_eq!(verdict(&[n.clone(), n.clone()]), Verdict::Unconfirmed);
        assert_eq!(verdict(&[]), Verdict::Unconfirmed);
    }

    fn lone(me: &str) -> Arc<Directory> {
        let me = HostPort::parse(me).unwrap();
        Directory::new(
            Arc::new(Coworkers::new(vec![], vec![me])),
            DirectoryConfig {
                enabled: true,
                lease: Duration::from_secs(3),
                max_entries: 16,
                timeout: Duration::from_millis(100),
                token: Some("t".into()),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_renews_itself_and_is_released_on_drop() {
        let d = lone("10.0.0.1:1985");
        let key = StreamKey::new(origin_wire::DEFAULT_VHOST, "live", "cam");
        let h = d.claim(&key, owner(1)).await.expect("directory on");
        assert_eq!(h.verdict(), &Verdict::Granted);
        // Another publish of the key is refused, long after the first lease would have
        // run out: the claim renews itself.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let other = d.claim(&key, owner(2)).await.unwrap();
        assert_eq!(other.verdict(), &Verdict::Conflict(owner(1)));
        drop(other);
        drop(h);
        // The release runs on the renewal task.
        for _ in 0..100 {
            if d.entries() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(d.entries(), 0, "released");
        let again = d.claim(&key, owner(2)).await.unwrap();
        assert_eq!(again.verdict(), &Verdict::Granted);
    }

    #[tokio::test]
    async fn a_claim_whose_holder_does_not_answer_is_replaced() {
        let d = lone("10.0.0.1:1985");
        let key = StreamKey::new(origin_wire::DEFAULT_VHOST, "live", "cam");
        // A claim of an origin that is gone (TEST-NET: nothing answers there).
        let gone = OwnerAddr {
            api: "192.0.2.9:1985".into(),
            rtmp: "192.0.2.9:1935".into(),
            http: None,
        };
        let stale = ClaimRequest {
            key: wire_key(&key),
            owner: gone,
            claim: 5,
            takeover: false,
            replace: None,
        };
        d.serve_claim(&stale).unwrap();
        let h = d.claim(&key, owner(1)).await.unwrap();
        assert_eq!(h.verdict(), &Verdict::Granted);
        match d.lookup(&key).await {
            Lookup::Unknown => {} // it names this origin itself: not an owner to go to
            other => panic!("{other:?}"),
        }
        assert!(d.is_claiming(&key));
        drop(h);
        for _ in 0..100 {
            if !d.is_claiming(&key) && d.entries() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!d.is_claiming(&key));
        assert_eq!(d.entries(), 0);
    }

    #[tokio::test]
    async fn a_refused_claims_release_keeps_the_holders_claim() {
        let d = lone("10.0.0.1:1985");
        let key = StreamKey::new(origin_wire::DEFAULT_VHOST, "live", "cam");
        let h = d.claim(&key, owner(1)).await.unwrap();
        let refused = d.claim(&key, owner(2)).await.unwrap();
        assert!(matches!(refused.verdict(), Verdict::Conflict(_)));
        drop(refused);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(d.entries(), 1, "the holder's claim stays");
        drop(h);
    }
}
