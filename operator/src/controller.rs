//! The reconcile loop: validate → build (pure) → apply (server-side apply, field manager
//! `origin-operator`, force, every child on every pass) → hand the coworker plan to the
//! cluster's delivery task → status.
//!
//! The peer Service's EndpointSlices come from a reflector (mapped back to the cluster by the
//! `app.kubernetes.io/instance` label they mirror from the Service). A changed list or
//! advertised address bumps the revision; the document goes to ConfigMap `NAME-coworkers`
//! first (durable; new pods start with it) and then to the cluster's [`Delivery`] task, which
//! PUTs it to every pod concurrently, retries the ones that do not answer in the background
//! and asks for a reconcile when something changed, so status follows without the reconcile
//! ever waiting for a pod.
//!
//! Every API call has a deadline (see [`crate::apiclient`]): a hung API server turns into a
//! reconcile error with backoff, a `Degraded` condition and an Event, never a stall.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use origin_wire::coworkers::{Advertise, CoworkerDocument};
use serde_json::json;

use crate::build;
use crate::build::secret::Token;
use crate::coworkers;
use crate::crd::{AdvertiseMode, CoworkersStatus, OriginCluster, OriginClusterSpec};
use crate::delivery::{Delivery, DeliveryConfig, Plan};
use crate::error::Error;
use crate::labels::{self, FIELD_MANAGER};
use crate::metrics::{ClusterLabels, Metrics};
use crate::push::{PushOutcome, PushTarget, Pusher};
use crate::status::{self, Observed};
use crate::trigger::Triggers;

/// Tunables of the controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Periodic reconcile (drift repair) and full coworker re-push.
    pub resync: Duration,
    /// Coalescing window for bursts of watch events (slice changes during a rollout).
    pub debounce: Duration,
    /// First retry delay after a failed reconcile; doubled per consecutive failure.
    pub error_backoff: Duration,
    /// Largest retry delay after failures.
    pub max_backoff: Duration,
    /// First retry delay for pods that did not acknowledge a push; doubled per failure.
    pub push_backoff: Duration,
    /// Only this namespace, or all.
    pub namespace: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            debounce: Duration::from_millis(100),
            error_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            push_backoff: Duration::from_millis(250),
            namespace: None,
        }
    }
}

/// How long a pass waits for the EndpointSlice reflector's first list.
const SLICES_READY_LIMIT: Duration = Duration::from_secs(30);

/// Largest retry delay of one pod's delivery.
const PUSH_RETRY_MAX: Duration = Duration::from_secs(10);

/// What the operator remembers about one cluster between passes.
#[derive(Debug, Clone, Default)]
struct ClusterState {
    revision: u64,
    list: Option<Vec<String>>,
    advertise: BTreeMap<String, Advertise>,
    errors: u32,
    last_desired: Option<i32>,
    /// Pods whose failure was last reported in an Event (revision, pods).
    reported_failures: Option<(u64, Vec<String>)>,
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub pusher: Pusher,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// This replica's name, on the log line of every push it makes.
    identity: String,
    clusters: Mutex<HashMap<String, ClusterState>>,
    deliveries: Mutex<HashMap<String, Delivery>>,
    /// The EndpointSlice reflector's store once [`run`] started it; listed per pass without.
    slices: Mutex<Option<Store<EndpointSlice>>>,
    /// The OriginCluster reflector's store once [`run`] started it.
    cluster_store: Mutex<Option<Store<OriginCluster>>>,
    /// Reconcile requests from the delivery tasks, at most one pending per cluster.
    triggers: Triggers<ObjectRef<OriginCluster>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Context {
    pub fn new(
        client: Client,
        pusher: Pusher,
        metrics: Arc<Metrics>,
        settings: Settings,
        instance: Option<String>,
    ) -> Self {
        let identity = instance.clone().unwrap_or_default();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            recorder,
            pusher,
            metrics,
            settings,
            identity,
            clusters: Mutex::new(HashMap::new()),
            deliveries: Mutex::new(HashMap::new()),
            slices: Mutex::new(None),
            cluster_store: Mutex::new(None),
            triggers: Triggers::new(),
        }
    }

    fn with_state<R>(&self, key: &str, f: impl FnOnce(&mut ClusterState) -> R) -> R {
        let mut map = lock(&self.clusters);
        f(map.entry(key.to_string()).or_default())
    }

    /// Drops everything the operator holds for a cluster: its state, its delivery task and
    /// its metric series.
    fn forget(&self, key: &str) {
        let had = lock(&self.clusters).remove(key).is_some();
        // Dropping the handle aborts the task.
        let delivery = lock(&self.deliveries).remove(key);
        let had = had || delivery.is_some();
        drop(delivery);
        if let Some((ns, name)) = key.split_once('/') {
            let cl = ClusterLabels {
                namespace: ns.to_string(),
                cluster: name.to_string(),
            };
            self.metrics.coworker_revision.remove(&cl);
            self.metrics.coworkers.remove(&cl);
        }
        if had {
            tracing::info!(cluster = %key, "cluster deleted: dropped its delivery task, state and metrics");
        }
    }

    /// Revision the operator holds for a cluster (tests and benchmarks).
    pub fn revision(&self, namespace: &str, name: &str) -> Option<u64> {
        lock(&self.clusters)
            .get(&format!("{namespace}/{name}"))
            .map(|s| s.revision)
    }

    /// Whether a delivery task runs for a cluster.
    pub fn has_delivery(&self, namespace: &str, name: &str) -> bool {
        lock(&self.deliveries).contains_key(&format!("{namespace}/{name}"))
    }

    /// Delivery progress of a cluster (tests and benchmarks).
    pub fn delivery_progress(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<crate::delivery::Progress> {
        lock(&self.deliveries)
            .get(&format!("{namespace}/{name}"))
            .map(Delivery::progress)
    }

    /// Hands `plan` to the cluster's delivery task (started on first use). `None` when the
    /// cluster was deleted meanwhile: checked under the same lock [`Self::forget`] takes, so a
    /// pass that was already running cannot start a task for a deleted cluster.
    fn delivery_submit(
        &self,
        oc: &OriginCluster,
        key: &str,
        plan: Plan,
    ) -> Option<crate::delivery::Progress> {
        let mut map = lock(&self.deliveries);
        if let Some(store) = lock(&self.cluster_store).as_ref()
            && store.get(&ObjectRef::from_obj(oc)).is_none()
        {
            return None;
        }
        let d = map.entry(key.to_string()).or_insert_with(|| {
            let triggers = self.triggers.clone();
            let obj = ObjectRef::from_obj(oc);
            Delivery::spawn(
                self.pusher.clone(),
                self.metrics.clone(),
                DeliveryConfig {
                    retry_base: self.settings.push_backoff,
                    retry_max: PUSH_RETRY_MAX,
                    resync: self.settings.resync,
                    identity: self.identity.clone(),
                },
                move || {
                    triggers.request(obj.clone());
                },
            )
        });
        d.submit(plan);
        Some(d.progress())
    }

    async fn event(&self, oc: &OriginCluster, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &oc.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

fn key(oc: &OriginCluster) -> String {
    let (name, ns) = labels::name_ns(oc);
    format!("{ns}/{name}")
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Checks what the CRD schema cannot.
pub fn validate(spec: &OriginClusterSpec) -> Result<(), Error> {
    for (field, v) in [
        ("origin.waitForPublisher", &spec.origin.wait_for_publisher),
        ("origin.discoveryTimeout", &spec.origin.discovery_timeout),
    ] {
        humantime::parse_duration(v)
            .map_err(|e| Error::InvalidSpec(format!("spec.{field} `{v}`: {e}")))?;
    }
    let p = &spec.ports;
    for (field, v) in [("rtmp", p.rtmp), ("api", p.api), ("http", p.http)] {
        if !(1..=65535).contains(&v) {
            return Err(Error::InvalidSpec(format!(
                "spec.ports.{field} {v} is not a port"
            )));
        }
    }
    if p.rtmp == p.api || p.rtmp == p.http || p.api == p.http {
        return Err(Error::InvalidSpec("spec.ports must be distinct".into()));
    }
    if !(1..=crate::crd::MAX_REPLICAS).contains(&spec.replicas) {
        return Err(Error::InvalidSpec(format!(
            "spec.replicas {} out of 1..=1000",
            spec.replicas
        )));
    }
    if spec.image.trim().is_empty() {
        return Err(Error::InvalidSpec("spec.image is empty".into()));
    }
    if let Some(auth) = &spec.auth {
        validate_auth(auth)?;
    }
    Ok(())
}

/// One hook URL: `http://` or `https://`, a host, no whitespace or control characters.
fn validate_hook_url(field: &str, i: usize, url: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::InvalidSpec(format!(
            "spec.auth.hooks.{field}[{i}] `{}`: {why}",
            url.chars().take(80).collect::<String>()
        ))
    };
    if url.len() > crate::crd::MAX_HOOK_URL_LEN {
        return Err(bad(&format!(
            "longer than {} characters",
            crate::crd::MAX_HOOK_URL_LEN
        )));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("must be an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(bad("has no host"));
    }
    if let Some((h, port)) = host.rsplit_once(':')
        && !h.ends_with(']')
        && !h.contains(':')
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad("has an invalid port"));
    }
    Ok(())
}

/// `spec.auth`: bounded URL lists, sane timeout, a valid Secret name.
pub fn validate_auth(auth: &crate::crd::AuthSpec) -> Result<(), Error> {
    if let Some(h) = &auth.hooks {
        for (_, field, urls) in h.events() {
            if urls.len() > crate::crd::MAX_HOOK_URLS {
                return Err(Error::InvalidSpec(format!(
                    "spec.auth.hooks.{field} has {} URLs, at most {}",
                    urls.len(),
                    crate::crd::MAX_HOOK_URLS
                )));
            }
            for (i, u) in urls.iter().enumerate() {
                validate_hook_url(field, i, u)?;
            }
        }
        let t = humantime::parse_duration(&h.timeout).map_err(|e| {
            Error::InvalidSpec(format!("spec.auth.hooks.timeout `{}`: {e}", h.timeout))
        })?;
        if t.is_zero() || t > crate::crd::MAX_HOOK_TIMEOUT {
            return Err(Error::InvalidSpec(format!(
                "spec.auth.hooks.timeout `{}` must be above 0 and at most 60s",
                h.timeout
            )));
        }
    }
    if let Some(s) = &auth.secret_ref {
        let n = &s.name;
        let dns1123 = !n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !dns1123 {
            return Err(Error::InvalidSpec(format!(
                "spec.auth.secretRef.name `{}` is not a valid Secret name",
                n.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Reconciles one cluster.
pub async fn reconcile(oc: Arc<OriginCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&oc);
    if oc.meta().deletion_timestamp.is_some() {
        // Owner references garbage-collect every child; only our memory needs cleaning.
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let res = reconcile_inner(&oc, &ctx, &key).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    match res {
        Ok(action) => {
            ctx.with_state(&key, |s| s.errors = 0);
            Ok(action)
        }
        Err(e) => {
            ctx.metrics.error(e.reason());
            ctx.with_state(&key, |s| s.errors = s.errors.saturating_add(1));
            tracing::warn!(cluster = %key, reason = e.reason(), error = %e, "reconcile failed");
            let (name, _) = labels::name_ns(&oc);
            let obs = Observed {
                generation: oc.meta().generation,
                desired: oc.spec.replicas,
                selector: labels::selector_string(&name),
                error: Some((e.reason().to_string(), e.to_string())),
                ..Observed::default()
            };
            let st = status::compute(oc.status.as_ref(), &obs, &now());
            if oc.status.as_ref() != Some(&st)
                && let Err(pe) = patch_status(&ctx.client, &oc, &st).await
            {
                tracing::warn!(cluster = %key, error = %pe, "could not record the Degraded condition");
            }
            ctx.event(&oc, EventType::Warning, "ReconcileFailed", e.to_string())
                .await;
            Err(e)
        }
    }
}

/// Retry policy: invalid specs wait for a change; other errors back off exponentially.
pub fn error_policy(oc: Arc<OriginCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    if matches!(err, Error::InvalidSpec(_)) {
        return Action::await_change();
    }
    let n = ctx.with_state(&key(&oc), |s| s.errors).max(1);
    Action::requeue(backoff(
        ctx.settings.error_backoff,
        ctx.settings.max_backoff,
        n,
    ))
}

/// `base * 2^(n-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

async fn patch_status(
    client: &Client,
    oc: &OriginCluster,
    st: &crate::crd::OriginClusterStatus,
) -> Result<(), Error> {
    let (name, ns) = labels::name_ns(oc);
    let api: Api<OriginCluster> = Api::namespaced(client.clone(), &ns);
    let body = json!({
        "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        "kind": "OriginCluster",
        "status": st,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The admin token: read from the Secret, or generated and created once.
async fn ensure_token(
    oc: &OriginCluster,
    ctx: &Context,
    ns: &str,
    cluster: &str,
) -> Result<Token, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = labels::secret(cluster);
    if let Some(t) = api
        .get_opt(&name)
        .await?
        .as_ref()
        .and_then(build::secret::token_of)
    {
        return Ok(t);
    }
    let token = Token::generate();
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&pp, &build::secret::build(oc, &token)).await {
        Ok(_) => {
            ctx.event(
                oc,
                EventType::Normal,
                "AdminTokenCreated",
                format!("created Secret {name}"),
            )
            .await;
            Ok(token)
        }
        // Created concurrently (or exists without a usable token): never overwrite it.
        Err(kube::Error::Api(ae)) if ae.code == 409 => {
            build::secret::token_of(&api.get(&name).await?).ok_or_else(|| {
                Error::InvalidSpec(format!("Secret {name} exists but has no `token` key"))
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Per-pod Services (PerPodService): applies every wanted one on every pass (drift such as
/// edited annotations is undone), deletes surplus ones, and returns the advertised address of
/// each pod whose Service has an external address.
async fn per_pod_services(
    oc: &OriginCluster,
    ctx: &Context,
    ns: &str,
    cluster: &str,
) -> Result<BTreeMap<String, Advertise>, Error> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "{}={cluster},{}={}",
        labels::INSTANCE,
        labels::ROLE,
        labels::ROLE_POD
    );
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let wanted = if oc.spec.advertise == AdvertiseMode::PerPodService {
        oc.spec.replicas
    } else {
        0
    };
    let mut surplus: BTreeMap<String, Service> =
        existing.into_iter().map(|s| (s.name_any(), s)).collect();
    let mut adv = BTreeMap::new();
    for i in 0..wanted {
        let name = labels::pod(cluster, i);
        surplus.remove(&name);
        let svc = api
            .patch(
                &name,
                &apply_params(),
                &Patch::Apply(&build::service::per_pod(oc, i)),
            )
            .await?;
        if let Some(a) = build::service::advertise_for(&svc, oc) {
            adv.insert(name, a);
        }
    }
    // Scale-down (or a switch back to PodIP): remove the Services of pods that are gone.
    for (name, _) in surplus {
        if labels::ordinal(cluster, &name).is_some() {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(ae)) if ae.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(adv)
}

/// The peer Service's EndpointSlices: from the reflector when the controller runs, else listed.
async fn peer_slices(ctx: &Context, ns: &str, cluster: &str) -> Result<Vec<EndpointSlice>, Error> {
    let service = labels::peers_service(cluster);
    let store = lock(&ctx.slices).clone();
    if let Some(store) = store {
        // Never compute a list from a reflector that has not listed yet: an empty list would
        // become a new revision and overwrite the durable one in the ConfigMap.
        match tokio::time::timeout(SLICES_READY_LIMIT, store.wait_until_ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                return Err(Error::NotReady(
                    "the EndpointSlice watch has not listed yet".into(),
                ));
            }
        }
        return Ok(store
            .state()
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::SERVICE_NAME))
                        == Some(&service)
            })
            .map(|s| (**s).clone())
            .collect());
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{}={service}", labels::SERVICE_NAME));
    Ok(api.list(&lp).await?.items)
}

/// One pass over a cluster, step by step. Each step is a function of its own; the pure ones
/// (revision bookkeeping, push targets, the delivery summary, events, the next pass) are
/// unit-tested in `controller_tests.rs`.
async fn reconcile_inner(oc: &OriginCluster, ctx: &Context, key: &str) -> Result<Action, Error> {
    validate(&oc.spec)?;
    let (cluster, ns) = labels::name_ns(oc);
    // The token first: the StatefulSet mounts it and every push carries it.
    let token = ensure_token(oc, ctx, &ns, &cluster).await?;
    let peers = live_peers(oc, ctx, &ns, &cluster).await?;
    let addrs = coworkers::addresses(&peers);
    let advertise = per_pod_services(oc, ctx, &ns, &cluster).await?;
    let Revision { revision, bumped } =
        settle_revision(oc, ctx, key, &ns, &cluster, &addrs, &advertise).await?;
    let file_doc = file_document(revision, &addrs, &advertise);
    apply_configmap(oc, ctx, &ns, &cluster, &file_doc).await?;
    let targets = push_targets(&peers, &file_doc);
    let plan = Plan {
        revision,
        targets: targets.clone(),
        token,
    };
    let Some(progress) = ctx.delivery_submit(oc, key, plan) else {
        // Deleted while this pass ran: nothing more to do for it.
        ctx.forget(key);
        return Ok(Action::await_change());
    };
    let delivered = Delivered::of(&targets, &progress, revision);
    record_coworker_metrics(ctx, &ns, &cluster, revision, addrs.len());
    let sts = apply_children(oc, ctx, &ns, &cluster).await?;
    let coworkers = coworkers_status(revision, &addrs, &delivered);
    record_status(oc, ctx, &cluster, sts, coworkers).await?;
    publish_transitions(oc, ctx, key, revision, bumped, addrs.len(), &delivered).await;
    Ok(next_action(&ctx.settings, &delivered))
}

/// The live peers of the cluster, from its peer Service's EndpointSlices.
async fn live_peers(
    oc: &OriginCluster,
    ctx: &Context,
    ns: &str,
    cluster: &str,
) -> Result<Vec<coworkers::Peer>, Error> {
    let slices = peer_slices(ctx, ns, cluster).await?;
    let api_port = u16::try_from(oc.spec.ports.api).unwrap_or(origin_wire::DEFAULT_API_PORT);
    Ok(coworkers::peers(&slices, "api", api_port))
}

/// The coworker revision of this pass, and whether this pass bumped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Revision {
    revision: u64,
    bumped: bool,
}

impl ClusterState {
    /// After an operator restart (no list in memory): continue from the durable revision,
    /// the higher of the ConfigMap's document and the status. When the ConfigMap already
    /// holds exactly this list at that revision, adopt it so the pass does not bump.
    fn resume(
        &mut self,
        from_cm: Option<&CoworkerDocument>,
        from_status: Option<u64>,
        addrs: &[String],
        advertise: &BTreeMap<String, Advertise>,
    ) {
        let durable = from_cm.map(|d| d.revision).max(from_status);
        self.revision = self.revision.max(durable.unwrap_or(0));
        if let Some(d) = from_cm
            && d.revision == self.revision
            && d.coworkers == addrs
            && &d.pod_advertise == advertise
        {
            self.list = Some(addrs.to_vec());
            self.advertise = advertise.clone();
        }
    }

    /// Bumps the revision when the list or an advertised address changed, or a pod reported
    /// a revision at or above ours (`seen_newer`: the operator lost its state).
    fn advance(
        &mut self,
        addrs: &[String],
        advertise: &BTreeMap<String, Advertise>,
        seen_newer: u64,
    ) -> Revision {
        let bumped = self.list.as_deref() != Some(addrs)
            || &self.advertise != advertise
            || seen_newer >= self.revision;
        if bumped {
            self.revision = self.revision.max(seen_newer) + 1;
            self.list = Some(addrs.to_vec());
            self.advertise = advertise.clone();
        }
        Revision {
            revision: self.revision,
            bumped,
        }
    }

    /// Whether `failed_pods` at `revision` are news (not the set last reported in an Event);
    /// records them as reported.
    fn failures_are_news(&mut self, revision: u64, failed_pods: Vec<String>) -> bool {
        let new = Some((revision, failed_pods));
        let changed = self.reported_failures != new;
        self.reported_failures = new;
        changed
    }
}

/// Step "revision": resumes from the durable revision once after a restart, then bumps it
/// when anything the pods are told changed.
async fn settle_revision(
    oc: &OriginCluster,
    ctx: &Context,
    key: &str,
    ns: &str,
    cluster: &str,
    addrs: &[String],
    advertise: &BTreeMap<String, Advertise>,
) -> Result<Revision, Error> {
    if ctx.with_state(key, |s| s.list.is_none()) {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let from_cm = cms
            .get_opt(&labels::configmap(cluster))
            .await?
            .as_ref()
            .and_then(build::configmap::document);
        let from_status = oc
            .status
            .as_ref()
            .and_then(|s| s.coworkers.as_ref())
            .map(|c| u64::try_from(c.revision).unwrap_or(0));
        ctx.with_state(key, |s| {
            s.resume(from_cm.as_ref(), from_status, addrs, advertise)
        });
    }
    let seen_newer = ctx
        .delivery_progress(ns, cluster)
        .map_or(0, |p| p.seen_newer);
    Ok(ctx.with_state(key, |s| s.advance(addrs, advertise, seen_newer)))
}

/// The shared document (ConfigMap file): every pod's address keyed by pod name, so file and
/// PUT agree; `advertise` is pod-specific and only set in each pod's PUT.
fn file_document(
    revision: u64,
    addrs: &[String],
    advertise: &BTreeMap<String, Advertise>,
) -> CoworkerDocument {
    let mut doc = CoworkerDocument::new(revision, addrs.to_vec(), None);
    doc.pod_advertise = advertise.clone();
    doc
}

/// Step "ConfigMap": durable, and what new pods start with (applied every pass).
async fn apply_configmap(
    oc: &OriginCluster,
    ctx: &Context,
    ns: &str,
    cluster: &str,
    doc: &CoworkerDocument,
) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    cms.patch(
        &labels::configmap(cluster),
        &apply_params(),
        &Patch::Apply(&build::configmap::build(oc, doc)),
    )
    .await?;
    Ok(())
}

/// One PUT per live peer: the file document plus that pod's own advertised address.
fn push_targets(peers: &[coworkers::Peer], file_doc: &CoworkerDocument) -> Vec<PushTarget> {
    peers
        .iter()
        .map(|p| {
            let pod = p.pod.clone().unwrap_or_else(|| p.addr.clone());
            let mut doc = file_doc.clone();
            doc.advertise = file_doc.pod_advertise.get(&pod).cloned();
            PushTarget {
                pod,
                addr: p.addr.clone(),
                doc,
            }
        })
        .collect()
}

/// What the delivery task has achieved for this pass's targets, each list sorted by pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Delivered {
    /// Pods that acknowledged this revision at their current address.
    acknowledged: Vec<String>,
    /// Every other target.
    pending: Vec<String>,
    /// Pending pods whose last attempt at this revision failed, with its outcome.
    failures: Vec<(String, PushOutcome)>,
}

impl Delivered {
    fn of(targets: &[PushTarget], progress: &crate::delivery::Progress, revision: u64) -> Self {
        let mut d = Delivered::default();
        for t in targets {
            if progress.acked.get(&t.pod) == Some(&(t.addr.clone(), revision)) {
                d.acknowledged.push(t.pod.clone());
            } else {
                d.pending.push(t.pod.clone());
                if let Some(o) = progress.failed.get(&t.pod) {
                    d.failures.push((t.pod.clone(), o.clone()));
                }
            }
        }
        d.acknowledged.sort();
        d.pending.sort();
        d.failures.sort_by(|a, b| a.0.cmp(&b.0));
        d
    }
}

fn record_coworker_metrics(ctx: &Context, ns: &str, cluster: &str, revision: u64, n: usize) {
    let cl = ClusterLabels {
        namespace: ns.to_string(),
        cluster: cluster.to_string(),
    };
    ctx.metrics
        .coworker_revision
        .get_or_create(&cl)
        .set(i64::try_from(revision).unwrap_or(i64::MAX));
    ctx.metrics
        .coworkers
        .get_or_create(&cl)
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// Step "children": the StatefulSet, both Services and the PodDisruptionBudget (server-side
/// apply every pass; unchanged objects are no-ops). Returns the StatefulSet as applied.
async fn apply_children(
    oc: &OriginCluster,
    ctx: &Context,
    ns: &str,
    cluster: &str,
) -> Result<StatefulSet, Error> {
    let client = &ctx.client;
    let pp = apply_params();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = sts_api
        .patch(
            &labels::statefulset(cluster),
            &pp,
            &Patch::Apply(&build::statefulset::build(oc)),
        )
        .await?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    svc_api
        .patch(
            &labels::peers_service(cluster),
            &pp,
            &Patch::Apply(&build::service::peers(oc)),
        )
        .await?;
    svc_api
        .patch(
            &labels::rtmp_service(cluster),
            &pp,
            &Patch::Apply(&build::service::rtmp(oc)),
        )
        .await?;
    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    pdb_api
        .patch(
            &labels::pdb(cluster),
            &pp,
            &Patch::Apply(&build::pdb::build(oc)),
        )
        .await?;
    Ok(sts)
}

fn coworkers_status(revision: u64, addrs: &[String], delivered: &Delivered) -> CoworkersStatus {
    CoworkersStatus {
        revision: i64::try_from(revision).unwrap_or(i64::MAX),
        list: addrs.to_vec(),
        acknowledged: delivered.acknowledged.clone(),
        pending: delivered.pending.clone(),
    }
}

/// Step "status": from what the delivery task has achieved so far; patched only when it
/// changed.
async fn record_status(
    oc: &OriginCluster,
    ctx: &Context,
    cluster: &str,
    sts: StatefulSet,
    coworkers: CoworkersStatus,
) -> Result<(), Error> {
    let obs = Observed {
        generation: oc.meta().generation,
        desired: oc.spec.replicas,
        statefulset: Some(sts),
        selector: labels::selector_string(cluster),
        coworkers: Some(coworkers),
        error: None,
    };
    let st = status::compute(oc.status.as_ref(), &obs, &now());
    if oc.status.as_ref() != Some(&st) {
        patch_status(&ctx.client, oc, &st).await?;
    }
    Ok(())
}

/// The Event of a change of `spec.replicas`, if it changed since the last pass.
fn scale_event(previous: Option<i32>, desired: i32) -> Option<(&'static str, String)> {
    let prev = previous?;
    let reason = match prev.cmp(&desired) {
        std::cmp::Ordering::Less => "ScaledUp",
        std::cmp::Ordering::Greater => "ScaledDown",
        std::cmp::Ordering::Equal => return None,
    };
    Some((reason, format!("scaled from {prev} to {desired} origins")))
}

/// The note of a `CoworkerPushFailed` Event (at most ten pods named).
fn push_failed_note(revision: u64, failures: &[(String, PushOutcome)]) -> String {
    let detail: Vec<String> = failures
        .iter()
        .take(10)
        .map(|(pod, o)| format!("{pod}: {}", o.label()))
        .collect();
    format!(
        "revision {revision} not acknowledged by {} origins ({}); retrying in the background",
        failures.len(),
        detail.join(", ")
    )
}

/// Step "events": one Event per meaningful transition (scaled, new revision, a new set of
/// pods that did not acknowledge).
async fn publish_transitions(
    oc: &OriginCluster,
    ctx: &Context,
    key: &str,
    revision: u64,
    bumped: bool,
    origins: usize,
    delivered: &Delivered,
) {
    let desired = oc.spec.replicas;
    let previous = ctx.with_state(key, |s| s.last_desired.replace(desired));
    if let Some((reason, note)) = scale_event(previous, desired) {
        ctx.event(oc, EventType::Normal, reason, note).await;
    }
    if bumped {
        let note = format!("coworker revision {revision}: {origins} origins");
        ctx.event(oc, EventType::Normal, "CoworkersUpdated", note)
            .await;
    }
    let failures = &delivered.failures;
    let failed_pods: Vec<String> = failures.iter().map(|(p, _)| p.clone()).collect();
    if !failures.is_empty() && ctx.with_state(key, |s| s.failures_are_news(revision, failed_pods)) {
        let note = push_failed_note(revision, failures);
        ctx.event(oc, EventType::Warning, "CoworkerPushFailed", note)
            .await;
    }
}

/// Step "next pass": the delivery task asks for one when pushes complete and the resync
/// repairs drift; while pods are pending, look again sooner as a safety net.
fn next_action(settings: &Settings, delivered: &Delivered) -> Action {
    if delivered.pending.is_empty() {
        Action::requeue(settings.resync)
    } else {
        Action::requeue(settings.resync.min(PUSH_RETRY_MAX))
    }
}

/// Maps an EndpointSlice of a peer Service back to its cluster.
pub fn slice_to_cluster(slice: EndpointSlice) -> Option<ObjectRef<OriginCluster>> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(labels::MANAGED_BY).map(String::as_str) != Some(FIELD_MANAGER) {
        return None;
    }
    let cluster = labels.get(labels::INSTANCE)?;
    let ns = slice.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(cluster).within(ns))
}

fn api_all<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let ns = ctx.settings.namespace.clone();
    let managed =
        watcher::Config::default().labels(&format!("{}={FIELD_MANAGER}", labels::MANAGED_BY));

    // OriginClusters: our own reflector, so deletions (and objects gone while the watch was
    // down) drop their delivery task, state and metrics at once.
    let (clusters, cluster_writer) = reflector::store::<OriginCluster>();
    *lock(&ctx.cluster_store) = Some(clusters.clone());
    let sweep_ctx = ctx.clone();
    let sweep_store = clusters.clone();
    let cluster_events = reflector::reflector(
        cluster_writer,
        watcher(
            api_all::<OriginCluster>(&client, &ns),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .inspect(move |ev| match ev {
        Ok(watcher::Event::Delete(oc)) => sweep_ctx.forget(&key(oc)),
        Ok(watcher::Event::InitDone) => {
            let live: std::collections::HashSet<String> =
                sweep_store.state().iter().map(|oc| key(oc)).collect();
            let known: Vec<String> = lock(&sweep_ctx.clusters)
                .keys()
                .chain(lock(&sweep_ctx.deliveries).keys())
                .cloned()
                .collect();
            for k in known.into_iter().filter(|k| !live.contains(k)) {
                sweep_ctx.forget(&k);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "OriginCluster watch failed; retrying with backoff"),
    })
    .applied_objects();

    // EndpointSlices of the peer Services: a reflector the reconcile reads the peers from.
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    *lock(&ctx.slices) = Some(slices);
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(
            api_all::<EndpointSlice>(&client, &ns),
            watcher::Config::default().labels(&labels::peer_slices_watch_selector()),
        ),
    )
    .default_backoff()
    .inspect(|ev| {
        if let Err(e) = ev {
            tracing::warn!(error = %e, "EndpointSlice watch failed; retrying with backoff");
        }
    })
    .touched_objects();

    let controller = Controller::for_stream(cluster_events, clusters)
        .owns(api_all::<StatefulSet>(&client, &ns), managed.clone())
        .owns(api_all::<Service>(&client, &ns), managed.clone())
        .owns(api_all::<ConfigMap>(&client, &ns), managed.clone())
        .owns(api_all::<PodDisruptionBudget>(&client, &ns), managed)
        .watches_stream(slice_events, slice_to_cluster)
        .with_config(ControllerConfig::default().debounce(ctx.settings.debounce))
        .reconcile_on(ctx.triggers.clone().stream());
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {} // logged above
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
    *lock(&ctx.slices) = None;
    *lock(&ctx.cluster_store) = None;
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "controller_step_tests.rs"]
mod step_tests;
