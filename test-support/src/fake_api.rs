//! [`FakeApiServer`]: an in-memory Kubernetes API server for a `kube::Client` (the
//! controller-rs ApiServerVerifier pattern, generalised). It answers get/list/watch/apply/
//! create/replace/delete, streams watch events, honours `resourceVersion` on replace (409 on a
//! stale PUT, as optimistic concurrency needs), records every request, and can inject errors or
//! hang requests (accept them and never answer, like an overloaded API server). It serves a
//! `kube::Client` in-process (`tower_test::mock::pair`) or over real TCP ([`FakeApiServer::serve_tcp`])
//! for tests that run the operator binary with a kubeconfig.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::lock;

/// Body type of the fake API server's responses (watch responses stream).
pub type ApiBody = UnsyncBoxBody<Bytes, Infallible>;

/// The in-process transport a `kube::Client` of this fake is built on.
pub type MockService = tower_test::mock::Mock<Request<kube::client::Body>, Response<ApiBody>>;

/// One request the operator sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

impl Recorded {
    /// Query parameter value.
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }
}

/// Injected failure: requests whose `METHOD path` contains `matches` get `status`.
#[derive(Debug, Clone)]
struct Failure {
    method: String,
    path_contains: String,
    status: u16,
    remaining: u32,
}

/// `(prefix, resource)` identifies a collection: prefix is `/api/v1` or `/apis/g/v`.
type Coll = (String, String);

struct Watcher {
    coll: Coll,
    namespace: Option<String>,
    selector: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct ApiState {
    /// (collection, namespace, name) -> object
    objects: BTreeMap<(Coll, String, String), Value>,
    rv: u64,
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
    /// Requests matching one of these (`METHOD`, path substring; empty matches all) are
    /// accepted and not answered until the hang is lifted.
    hangs: Vec<(String, String)>,
    /// (`METHOD`, path) of every request that was held by a hang (recorded on arrival).
    held: Vec<(String, String)>,
    watchers: Vec<Watcher>,
}

/// An in-memory Kubernetes API server for a `kube::Client`.
#[derive(Clone)]
pub struct FakeApiServer {
    state: Arc<Mutex<ApiState>>,
    /// Bumped whenever the hang list changes (hung requests re-check it).
    hang_changed: Arc<watch::Sender<u64>>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            hang_changed: Arc::new(watch::channel(0).0),
        }
    }
}

struct Parsed {
    coll: Coll,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Parsed> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (format!("/api/{v}"), rest),
        ["apis", g, v, rest @ ..] => (format!("/apis/{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        r => (None, r),
    };
    let (resource, name, sub) = match rest {
        [res] => (res, None, None),
        [res, name] => (res, Some(name.to_string()), None),
        [res, name, sub] => (res, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Parsed {
        coll: (prefix, resource.to_string()),
        namespace,
        name,
        sub,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = if b[i] == b'%' && i + 2 < b.len() {
            std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        } else {
            None
        };
        if let Some(v) = hex {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn selector_of(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("labelSelector="))
        .flat_map(|s| {
            percent_decode(s)
                .split(',')
                .filter_map(|t| {
                    t.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn matches(obj: &Value, namespace: &Option<String>, selector: &[(String, String)]) -> bool {
    if let Some(ns) = namespace
        && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
    {
        return false;
    }
    selector
        .iter()
        .all(|(k, v)| obj["metadata"]["labels"][k].as_str() == Some(v.as_str()))
}

/// Deep merge (objects merged, everything else replaced): an approximation of apply.
fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(dv) if v.is_object() && dv.is_object() => merge(dv, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

fn full(status: u16, body: Value) -> Response<ApiBody> {
    let bytes = Bytes::from(body.to_string());
    let body = http_body_util::Full::new(bytes)
        .map_err(|e| match e {})
        .boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":reason,"code":code})
}

impl FakeApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `kube::Client` served by this fake, and the task answering it.
    pub fn client(&self) -> (kube::Client, tokio::task::JoinHandle<()>) {
        self.client_with(|svc| kube::Client::new(svc, "default"))
    }

    /// Like [`Self::client`], with the client built by `make` from the mock service (e.g.
    /// with the operator's timeout layer around it).
    pub fn client_with(
        &self,
        make: impl FnOnce(MockService) -> kube::Client,
    ) -> (kube::Client, tokio::task::JoinHandle<()>) {
        let (svc, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<ApiBody>>();
        let this = self.clone();
        let task = tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                // One task per request: a hung request must not hold up the others.
                let this = this.clone();
                tokio::spawn(async move {
                    let resp = this.handle(req).await;
                    send.send_response(resp);
                });
            }
        });
        (make(svc), task)
    }

    /// Serves this fake over HTTP/1.1 on `127.0.0.1:0` (for a kubeconfig); the task stops
    /// when dropped or aborted.
    pub async fn serve_tcp(&self) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let this = this.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let bytes = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                Ok::<_, Infallible>(
                                    this.answer(parts.method.as_str(), &parts.uri, bytes).await,
                                )
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        Ok((addr, task))
    }

    /// Accept requests whose method is `method` (empty: any) and whose path contains
    /// `path_contains` (empty: any), and never answer them until [`Self::unhang`].
    pub fn hang(&self, method: &str, path_contains: &str) {
        self.st().hangs.push((method.into(), path_contains.into()));
        self.hang_changed.send_modify(|g| *g += 1);
    }

    /// Every request hangs (a server that accepts connections and never answers).
    pub fn hang_all(&self) {
        self.hang("", "");
    }

    /// Lifts every hang; requests held so far are answered (their clients gave up long ago).
    pub fn unhang(&self) {
        self.st().hangs.clear();
        self.hang_changed.send_modify(|g| *g += 1);
    }

    fn is_hung(&self, method: &str, path: &str) -> bool {
        self.st()
            .hangs
            .iter()
            .any(|(m, p)| (m.is_empty() || m == method) && path.contains(p.as_str()))
    }

    fn st(&self) -> MutexGuard<'_, ApiState> {
        lock(&self.state)
    }

    /// How many requests with `method` and a path containing `path_contains` a hang has
    /// held so far (counted when they arrive, unlike [`Self::requests`]).
    pub fn held(&self, method: &str, path_contains: &str) -> usize {
        self.st()
            .held
            .iter()
            .filter(|(m, p)| m == method && p.contains(path_contains))
            .count()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.st().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.st().requests.clear();
    }

    /// Answer the next `times` requests matching `method` and a path containing `path_contains`
    /// with HTTP `status`.
    pub fn fail(&self, method: &str, path_contains: &str, status: u16, times: u32) {
        self.st().failures.push(Failure {
            method: method.into(),
            path_contains: path_contains.into(),
            status,
            remaining: times,
        });
    }

    /// Stored object at `path` (e.g. `/apis/apps/v1/namespaces/ns/statefulsets/x`).
    pub fn get(&self, path: &str) -> Option<Value> {
        let p = parse_path(path)?;
        let key = (p.coll, p.namespace.unwrap_or_default(), p.name?);
        self.st().objects.get(&key).cloned()
    }

    /// Stored objects of a collection path (e.g. `/api/v1/services`), any namespace.
    pub fn list(&self, path: &str) -> Vec<Value> {
        let Some(p) = parse_path(path) else {
            return vec![];
        };
        self.st()
            .objects
            .iter()
            .filter(|((c, ns, _), _)| *c == p.coll && p.namespace.as_ref().is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Creates or replaces an object (as another actor would) and notifies watchers.
    /// `path` is the collection path including the namespace.
    pub fn put(&self, collection_path: &str, mut obj: Value) {
        let Some(p) = parse_path(collection_path) else {
            return;
        };
        let ns = p
            .namespace
            .clone()
            .or_else(|| obj["metadata"]["namespace"].as_str().map(str::to_string))
            .unwrap_or_default();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut st = self.st();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{name}-{rv}"));
        }
        if !ns.is_empty() {
            obj["metadata"]["namespace"] = json!(ns);
        }
        let existed = st
            .objects
            .insert((p.coll.clone(), ns, name), obj.clone())
            .is_some();
        Self::notify(
            &mut st,
            &p.coll,
            if existed { "MODIFIED" } else { "ADDED" },
            &obj,
        );
    }

    /// Deletes an object and notifies watchers.
    pub fn delete(&self, path: &str) -> Option<Value> {
        let p = parse_path(path)?;
        let mut st = self.st();
        let obj = st
            .objects
            .remove(&(p.coll.clone(), p.namespace.unwrap_or_default(), p.name?))?;
        Self::notify(&mut st, &p.coll, "DELETED", &obj);
        Some(obj)
    }

    fn notify(st: &mut ApiState, coll: &Coll, kind: &str, obj: &Value) {
        let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})));
        st.watchers.retain(|w| {
            if &w.coll != coll || !matches(obj, &w.namespace, &w.selector) {
                return !w.tx.is_closed();
            }
            w.tx.send(line.clone()).is_ok()
        });
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<ApiBody> {
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        self.answer(parts.method.as_str(), &parts.uri, bytes).await
    }

    async fn answer(&self, method: &str, uri: &http::Uri, bytes: Bytes) -> Response<ApiBody> {
        let method = method.to_string();
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or_default().to_string();
        let mut hang_rx = self.hang_changed.subscribe();
        if self.is_hung(&method, &path) {
            self.st().held.push((method.clone(), path.clone()));
        }
        while self.is_hung(&method, &path) {
            if hang_rx.changed().await.is_err() {
                break;
            }
        }
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let rec = Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        };
        let mut st = self.st();
        st.requests.push(rec);
        if let Some(f) = st
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.contains(&f.path_contains))
        {
            f.remaining -= 1;
            let code = f.status;
            return full(code, status_body(code, "InternalError", "injected failure"));
        }
        let Some(p) = parse_path(&path) else {
            return full(404, status_body(404, "NotFound", "unknown path"));
        };
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let ns = p.namespace.clone().unwrap_or_default();
        match (method.as_str(), &p.name) {
            ("GET", None) if watch => {
                let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                let selector = selector_of(&query);
                // Replay what changed after the version the client listed at.
                let since: u64 = Recorded {
                    method: String::new(),
                    path: String::new(),
                    query: query.clone(),
                    body: None,
                }
                .param("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
                for ((c, _, _), obj) in &st.objects {
                    let rv: u64 = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if *c == p.coll && rv > since && matches(obj, &p.namespace, &selector) {
                        let _ = tx.send(Bytes::from(format!(
                            "{}\n",
                            json!({"type": "MODIFIED", "object": obj})
                        )));
                    }
                }
                st.watchers.push(Watcher {
                    coll: p.coll.clone(),
                    namespace: p.namespace.clone(),
                    selector,
                    tx,
                });
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    let b = rx.recv().await?;
                    Some((Ok::<_, Infallible>(http_body::Frame::data(b)), rx))
                });
                let body = http_body_util::StreamBody::new(stream).boxed_unsync();
                let mut resp = Response::new(body);
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            ("GET", None) => {
                let sel = selector_of(&query);
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|((c, _, _), v)| *c == p.coll && matches(v, &p.namespace, &sel))
                    .map(|(_, v)| v.clone())
                    .collect();
                full(
                    200,
                    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name)) => match st.objects.get(&(p.coll.clone(), ns, name.clone())) {
                Some(v) => full(200, v.clone()),
                None => full(
                    404,
                    status_body(404, "NotFound", &format!("{name} not found")),
                ),
            },
            ("PATCH", Some(name)) | ("PUT", Some(name)) => {
                let key = (p.coll.clone(), ns.clone(), name.clone());
                let Some(patch) = body else {
                    return full(400, status_body(400, "BadRequest", "no body"));
                };
                let mut obj = st
                    .objects
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| json!({"metadata": {}}));
                let existed = st.objects.contains_key(&key);
                if method == "PUT" {
                    // Replace: the object must exist, and a resourceVersion in the body must
                    // be the current one (optimistic concurrency).
                    if !existed {
                        return full(
                            404,
                            status_body(404, "NotFound", &format!("{name} not found")),
                        );
                    }
                    let want = patch["metadata"]["resourceVersion"].as_str();
                    let have = obj["metadata"]["resourceVersion"].as_str();
                    if want.is_some() && want != have {
                        return full(
                            409,
                            status_body(
                                409,
                                "Conflict",
                                &format!(
                                    "Operation cannot be fulfilled on {name}: the object has been modified; please apply your changes to the latest version and try again"
                                ),
                            ),
                        );
                    }
                }
                if p.sub.as_deref() == Some("status") {
                    if !existed {
                        return full(
                            404,
                            status_body(404, "NotFound", &format!("{name} not found")),
                        );
                    }
                    if let Some(s) = patch.get("status") {
                        obj["status"] = s.clone();
                    }
                } else if method == "PUT" {
                    let old_spec = obj.get("spec").cloned();
                    let meta = obj["metadata"].clone();
                    obj = patch.clone();
                    obj["metadata"]["uid"] = meta["uid"].clone();
                    obj["metadata"]["generation"] = meta["generation"].clone();
                    if obj.get("spec").cloned() != old_spec {
                        let g = meta["generation"].as_i64().unwrap_or(0) + 1;
                        obj["metadata"]["generation"] = json!(g);
                    }
                } else {
                    let old_spec = obj.get("spec").cloned();
                    merge(&mut obj, &patch);
                    if obj.get("spec").cloned() != old_spec || !existed {
                        let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                        obj["metadata"]["generation"] = json!(g);
                    }
                }
                st.rv += 1;
                let rv = st.rv;
                obj["metadata"]["name"] = json!(name);
                if !ns.is_empty() {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                if obj["metadata"]["uid"].is_null() {
                    obj["metadata"]["uid"] = json!(format!("uid-{name}-{rv}"));
                }
                st.objects.insert(key, obj.clone());
                Self::notify(
                    &mut st,
                    &p.coll,
                    if existed { "MODIFIED" } else { "ADDED" },
                    &obj,
                );
                full(if existed { 200 } else { 201 }, obj)
            }
            ("POST", None) => {
                let Some(mut obj) = body else {
                    return full(400, status_body(400, "BadRequest", "no body"));
                };
                let name = obj["metadata"]["name"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        obj["metadata"]["generateName"]
                            .as_str()
                            .map(|g| format!("{g}{}", st.rv + 1))
                    })
                    .unwrap_or_default();
                let key = (p.coll.clone(), ns.clone(), name.clone());
                if st.objects.contains_key(&key) {
                    return full(
                        409,
                        status_body(409, "AlreadyExists", &format!("{name} already exists")),
                    );
                }
                st.rv += 1;
                obj["metadata"]["name"] = json!(name);
                obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                st.objects.insert(key, obj.clone());
                Self::notify(&mut st, &p.coll, "ADDED", &obj);
                full(201, obj)
            }
            ("DELETE", Some(name)) => {
                match st.objects.remove(&(p.coll.clone(), ns, name.clone())) {
                    Some(obj) => {
                        Self::notify(&mut st, &p.coll, "DELETED", &obj);
                        full(200, obj)
                    }
                    None => full(
                        404,
                        status_body(404, "NotFound", &format!("{name} not found")),
                    ),
                }
            }
            _ => full(405, status_body(405, "MethodNotAllowed", "unsupported")),
        }
    }
}

/// An EndpointSlice of cluster `cluster`'s peer Service with one port (`api`) and
/// endpoints `(pod, ip, ready)`.
pub fn endpoint_slice(
    cluster: &str,
    namespace: &str,
    name: &str,
    port: u16,
    endpoints: &[(&str, &str, bool)],
) -> Value {
    // The labels a peer Service's slices mirror from it (docs/architecture.md, "Operator") plus the
    // slice controller's own `kubernetes.io/service-name`.
    let labels = json!({
        "app.kubernetes.io/name": "origin",
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/managed-by": "origin-operator",
        "app.kubernetes.io/component": "origin",
        "origincluster.dev/service-role": "peers",
        "kubernetes.io/service-name": format!("{cluster}-peers"),
    });
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(pod, ip, ready)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace}
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "api", "port": port, "protocol": "TCP"}]
    })
}

/// Helper: a map from key to value for quick lookups in tests.
pub fn by_name(objs: &[Value]) -> HashMap<String, Value> {
    objs.iter()
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::Api;
    use kube::api::PostParams;

    #[tokio::test]
    async fn replace_honours_resource_version() {
        let fake = FakeApiServer::new();
        let (client, _t) = fake.client();
        let api: Api<Lease> = Api::namespaced(client, "ns");
        let mut lease = Lease::default();
        lease.metadata.name = Some("l".into());
        let created = api
            .create(&PostParams::default(), &lease)
            .await
            .expect("create");
        let mut a = created.clone();
        let mut b = created;
        a.spec = Some(Default::default());
        api.replace("l", &PostParams::default(), &a)
            .await
            .expect("first writer wins");
        b.spec = Some(Default::default());
        match api.replace("l", &PostParams::default(), &b).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
            other => panic!("stale replace accepted: {other:?}"),
        }
        // Replacing what does not exist is 404 (no create-on-update).
        let mut ghost = Lease::default();
        ghost.metadata.name = Some("ghost".into());
        match api.replace("ghost", &PostParams::default(), &ghost).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn hung_requests_are_answered_after_unhang() {
        let fake = FakeApiServer::new();
        let (client, _t) = fake.client();
        let api: Api<Lease> = Api::namespaced(client, "ns");
        fake.hang_all();
        let call = tokio::spawn(async move { api.get_opt("x").await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!call.is_finished(), "answered while hung");
        fake.unhang();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), call)
            .await
            .expect("answered after unhang")
            .expect("join")
            .expect("ok");
        assert!(got.is_none());
    }
}
