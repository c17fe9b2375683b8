//! Test doubles with real network behaviour, shared by the unit tests, the cross-component
//! tests and the convergence benchmark:
//! - [`FakeOrigin`]: a real HTTP server (axum on 127.0.0.1:0) implementing the origin's
//!   coworker API contract (PUT with bearer token → 200/409/401/400, GET).
//! - [`FakeApiServer`]: an in-memory Kubernetes API server behind `tower_test::mock::pair`
//!   (the controller-rs ApiServerVerifier pattern, generalised): it answers get/list/watch/
//!   apply/create/delete, streams watch events, records every request and can inject errors.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use origin_wire::coworkers::CoworkerDocument;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Fake origin

#[derive(Default)]
struct OriginState {
    token: String,
    doc: CoworkerDocument,
    puts: u32,
    fail_next: u32,
    last_auth: Option<String>,
}

/// A real HTTP server with the origin's coworker API.
pub struct FakeOrigin {
    /// `127.0.0.1:port`.
    pub addr: String,
    state: Arc<Mutex<OriginState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn put_coworkers(
    State(st): State<Arc<Mutex<OriginState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut s = lock(&st);
    s.puts += 1;
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.last_auth = auth.clone();
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "try again".into());
    }
    if auth.as_deref() != Some(&format!("Bearer {}", s.token)) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized"}"#.into(),
        );
    }
    let doc = match CoworkerDocument::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string()}).to_string(),
            );
        }
    };
    if doc.revision <= s.doc.revision {
        return (
            StatusCode::CONFLICT,
            json!({"error": "revision not newer", "revision": s.doc.revision}).to_string(),
        );
    }
    s.doc = doc;
    (
        StatusCode::OK,
        json!({"revision": s.doc.revision}).to_string(),
    )
}

async fn get_coworkers(State(st): State<Arc<Mutex<OriginState>>>) -> String {
    let s = lock(&st);
    let mut v = serde_json::to_value(&s.doc).unwrap_or(Value::Null);
    v["source"] = json!("api");
    v.to_string()
}

impl FakeOrigin {
    /// Starts on a free loopback port.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", token).await
    }

    /// Starts on `addr` (e.g. the address of an origin that went down, to bring it back).
    pub async fn start_on(addr: &str, token: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new(Mutex::new(OriginState {
            token: token.to_string(),
            ..OriginState::default()
        }));
        let app = Router::new()
            .route(
                origin_wire::paths::COWORKERS,
                get(get_coworkers).put(put_coworkers),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Revision the origin holds.
    pub fn revision(&self) -> u64 {
        lock(&self.state).doc.revision
    }

    /// Document the origin holds.
    pub fn document(&self) -> CoworkerDocument {
        lock(&self.state).doc.clone()
    }

    /// PUT requests received.
    pub fn puts(&self) -> u32 {
        lock(&self.state).puts
    }

    /// Answer the next `n` PUTs with 503.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.state).last_auth.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Fake API server

/// Body type of the fake API server's responses (watch responses stream).
pub type ApiBody = UnsyncBoxBody<Bytes, Infallible>;

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
    watchers: Vec<Watcher>,
}

/// An in-memory Kubernetes API server for a `kube::Client`.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<ApiState>>,
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
        let (svc, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<ApiBody>>();
        let this = self.clone();
        let task = tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let resp = this.handle(req).await;
                send.send_response(resp);
            }
        });
        (kube::Client::new(svc, "default"), task)
    }

    fn st(&self) -> MutexGuard<'_, ApiState> {
        lock(&self.state)
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
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
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
    let mut labels = crate::labels::service_labels(cluster, crate::labels::ROLE_PEERS);
    labels.insert(
        crate::labels::SERVICE_NAME.into(),
        crate::labels::peers_service(cluster),
    );
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

// ---------------------------------------------------------------------------------------------
// Real origin processes

/// A real `origin serve` process on loopback.
pub struct OriginProcess {
    bin: std::path::PathBuf,
    /// `ip:port` of its HTTP API (the coworker address).
    pub api: String,
    pub rtmp: String,
    pub flv: String,
    token_file: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl OriginProcess {
    /// Starts `bin serve` with the given listen addresses and waits until `/healthz` answers.
    pub async fn start(
        bin: &std::path::Path,
        api: String,
        rtmp: String,
        flv: String,
        token_file: &std::path::Path,
    ) -> std::io::Result<Self> {
        let mut p = Self {
            bin: bin.to_path_buf(),
            api,
            rtmp,
            flv,
            token_file: token_file.to_path_buf(),
            child: None,
        };
        p.restart().await?;
        Ok(p)
    }

    /// (Re)starts the process on the same addresses.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let child = tokio::process::Command::new(&self.bin)
            .arg("serve")
            .args(["--rtmp-listen", &self.rtmp])
            .args(["--api-listen", &self.api])
            .args(["--flv-listen", &self.flv])
            .args(["--self-api", &self.api])
            .arg("--admin-token-file")
            .arg(&self.token_file)
            .env("RUST_LOG", "warn")
            .env_remove("ORIGIN_COWORKER_FILE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(&self.api).await.is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(std::io::Error::other(format!(
                    "origin exited at start: {status}"
                )));
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "origin API {} did not come up",
                    self.api
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Kills the process.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

/// A TCP port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET /api/v1/coworkers` of an origin (real or fake): the JSON document.
pub async fn fetch_coworkers(addr: &str) -> Option<Value> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri: http::Uri = format!("http://{addr}{}", origin_wire::paths::COWORKERS)
        .parse()
        .ok()?;
    let fut = async {
        let resp = client.get(uri).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), fut)
        .await
        .ok()
        .flatten()
}

/// An `OriginCluster` with the given ports and no other settings: the fixture the
/// cross-component tests and the convergence bench drive the controller with.
pub fn loopback_cluster(
    name: &str,
    namespace: &str,
    uid: &str,
    replicas: usize,
    rtmp: u16,
    api: u16,
    flv: u16,
) -> crate::crd::OriginCluster {
    use crate::crd::{OriginCluster, OriginClusterSpec, Ports};
    let mut oc = OriginCluster::new(
        name,
        OriginClusterSpec {
            replicas: replicas as i32,
            image: "origin:test".into(),
            image_pull_policy: None,
            image_pull_secrets: vec![],
            ports: Ports {
                rtmp: i32::from(rtmp),
                api: i32::from(api),
                http: i32::from(flv),
            },
            service: None,
            resources: None,
            pod_template: None,
            origin: Default::default(),
            drain_seconds: 60,
            advertise: Default::default(),
        },
    );
    oc.metadata.namespace = Some(namespace.into());
    oc.metadata.uid = Some(uid.into());
    oc
}
