//! Optional leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can
//! run while only the holder reconciles. Semantics of client-go's `leaderelection`:
//!
//! - A lease held by someone else counts as expired only when this process has not seen it
//!   change for `leaseDurationSeconds`, measured on the local monotonic clock from when the
//!   change was observed. `renewTime` is written for humans and never compared with our wall
//!   clock, so clock skew between replicas cannot hand a live lease to a second leader.
//! - Acquire and renew are `replace` calls carrying the resourceVersion that was read, so of
//!   two racing candidates only one write succeeds (the other gets 409).
//! - The holder renews every `retry_period`; when no renewal succeeded for `renew_deadline`
//!   (shorter than the lease duration), [`LeaderElector::keep`] returns and the caller must
//!   stop reconciling at once: another replica can take over only a full lease duration after
//!   it saw the last renewal, so there is a `lease_duration - renew_deadline` margin.
//! - On shutdown the holder releases the lease ([`LeaderElector::release`]) so a standby
//!   takes over without waiting for expiry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct LeaderTiming {
    /// How long a lease is valid without renewal (what others wait before taking over).
    pub lease_duration: Duration,
    /// The holder gives up when it could not renew for this long (< `lease_duration`).
    pub renew_deadline: Duration,
    /// Interval between attempts (acquire and renew).
    pub retry_period: Duration,
}

impl Default for LeaderTiming {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The lease record as last seen, and when (monotonic).
#[derive(Debug, Clone)]
struct ObservedLease {
    record: (String, Option<MicroTime>, Option<i32>, Option<i32>),
    duration: Duration,
    at: Instant,
}

/// One candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaderTiming,
    observed: Mutex<Option<ObservedLease>>,
    /// When this candidate last wrote the lease successfully as its holder.
    last_renew: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LeaderElector {
    /// A candidate with client-go's default timing and the given lease duration.
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        let d = LeaderTiming::default();
        let scale = |x: Duration| {
            Duration::from_secs_f64(
                x.as_secs_f64() * lease_duration.as_secs_f64() / d.lease_duration.as_secs_f64(),
            )
        };
        Self::with_timing(
            api,
            name,
            identity,
            LeaderTiming {
                lease_duration,
                renew_deadline: scale(d.renew_deadline),
                retry_period: scale(d.retry_period),
            },
        )
    }

    pub fn with_timing(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        timing: LeaderTiming,
    ) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            timing,
            observed: Mutex::new(None),
            last_renew: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn timing(&self) -> LeaderTiming {
        self.timing
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs_f64().ceil() as i64)
            .unwrap_or(i32::MAX)
            .max(1)
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Records the lease as seen now if it differs from what we saw last.
    fn observe(&self, spec: &LeaseSpec) -> ObservedLease {
        let record = (
            spec.holder_identity.clone().unwrap_or_default(),
            spec.renew_time.clone(),
            spec.lease_transitions,
            spec.lease_duration_seconds,
        );
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15),
        );
        let mut o = lock(&self.observed);
        match o.as_ref() {
            Some(prev) if prev.record == record => prev.clone(),
            _ => {
                let fresh = ObservedLease {
                    record,
                    duration,
                    at: Instant::now(),
                };
                *o = Some(fresh.clone());
                fresh
            }
        }
    }

    /// Acquires or renews the Lease. `Ok(true)`: we hold it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.won(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let seen = self.observe(&spec);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == self.identity {
            self.spec(transitions, spec.acquire_time.clone())
        } else {
            if !holder.is_empty() && seen.at.elapsed() < seen.duration {
                return Ok(false);
            }
            self.spec(transitions + 1, None)
        };
        lease.spec = Some(new_spec);
        // replace carries the resourceVersion we read: a concurrent writer makes it fail.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.won(&written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn won(&self, lease: &Lease) {
        if let Some(spec) = &lease.spec {
            self.observe(spec);
        }
        *lock(&self.last_renew) = Some(Instant::now());
    }

    /// Blocks until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "leader election request failed")
                }
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews every retry period; returns when the lease is lost: someone else holds it, or no
    /// renewal succeeded within the renew deadline. The caller must stop reconciling then.
    pub async fn keep(&self) {
        loop {
            let last = lock(&self.last_renew).unwrap_or_else(Instant::now);
            let deadline = last + self.timing.renew_deadline;
            let wake = (Instant::now() + self.timing.retry_period).min(deadline);
            tokio::time::sleep_until(wake.into()).await;
            if Instant::now() >= deadline {
                tracing::warn!(lease = %self.name, deadline = ?self.timing.renew_deadline, "could not renew the lease in time");
                return;
            }
            match tokio::time::timeout_at(deadline.into(), self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %self.name, "another replica holds the lease");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, lease = %self.name, "lease renewal failed")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, deadline = ?self.timing.renew_deadline, "could not renew the lease in time");
                    return;
                }
            }
        }
    }

    /// Gives the lease up (on shutdown) if we hold it, so a standby takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                *lock(&self.last_renew) = None;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
