//! Optional leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can
//! run: only the holder reconciles. Acquire/renew use the Lease's resourceVersion (optimistic
//! concurrency), so two candidates can never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

/// One candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

impl LeaderElector {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            lease_duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often a holder renews (a third of the lease duration).
    pub fn renew_interval(&self) -> Duration {
        self.lease_duration / 3
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.lease_duration.as_secs())
                    .unwrap_or(i32::MAX)
                    .max(1),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquires or renews the Lease. `Ok(true)`: we hold it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == self.identity {
            self.spec(now, transitions, spec.acquire_time.clone())
        } else {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let expired = match &spec.renew_time {
                Some(MicroTime(t)) => t.checked_add(duration).map_or(true, |end| end < now),
                None => true,
            };
            if !holder.is_empty() && !expired {
                return Ok(false);
            }
            self.spec(now, transitions + 1, None)
        };
        lease.spec = Some(new_spec);
        // replace carries our resourceVersion: a concurrent writer makes this fail with 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
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
            tokio::time::sleep(self.renew_interval()).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease duration; returns then (the
    /// caller must stop reconciling: another replica may take over).
    pub async fn keep(&self) {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "lease renewal failed");
                    if last_ok.elapsed() >= self.lease_duration {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApiServer;

    #[tokio::test]
    async fn one_holder_and_takeover_after_expiry() {
        let fake = FakeApiServer::new();
        let (client, _t) = fake.client();
        let api: Api<Lease> = Api::namespaced(client, "ops");
        let a = LeaderElector::new(api.clone(), "origin-operator", "a", Duration::from_secs(15));
        let b = LeaderElector::new(api.clone(), "origin-operator", "b", Duration::from_secs(15));
        assert!(a.try_acquire_or_renew().await.expect("a"));
        assert!(
            !b.try_acquire_or_renew().await.expect("b"),
            "a holds a fresh lease"
        );
        assert!(a.try_acquire_or_renew().await.expect("a renews"));
        // a stops renewing: make its renewal old.
        let mut lease = api.get("origin-operator").await.expect("lease");
        if let Some(s) = lease.spec.as_mut() {
            s.renew_time = Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(60)));
        }
        api.replace("origin-operator", &PostParams::default(), &lease)
            .await
            .expect("age it");
        assert!(b.try_acquire_or_renew().await.expect("b takes over"));
        let lease = api.get("origin-operator").await.expect("lease");
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert!(!a.try_acquire_or_renew().await.expect("a"), "a lost it");
        for r in fake.requests() {
            let (g, res, verb) =
                crate::rbac::request_attributes(&r.method, &r.path, &r.query).expect("attrs");
            assert!(crate::rbac::allows(&g, &res, &verb), "{verb} {g}/{res}");
        }
    }
}
