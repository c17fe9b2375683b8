//! [`PodRunner`]: the test node's kubelet stand-in. It binds unscheduled Pods to the one
//! Node (there is no scheduler) and, for each Pod on it, runs the container's program as a
//! real process in the pod's own network namespace (see `pod_net`) and a private mount
//! namespace where the pod's volumes are bind-mounted at their `mountPath`s; keeps
//! ConfigMap/Secret volumes current; performs the readiness and liveness probes; writes
//! the Pod status; and on deletion runs the preStop hook, sends SIGTERM, waits out the
//! grace period, SIGKILLs, and removes the Pod.
//!
//! Images are not pulled: a map from the image's program path (e.g. `/origin`) to a
//! binary on this machine says what to run. Only the first container of a Pod is run;
//! security contexts (user, read-only root) are not applied: processes run as root.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::watch;

use super::node::NODE_NAME;
use super::pod_net::{Bridge, PodNet};
use super::probe::ProbeState;
use super::{pod_env, volumes};

/// What the tests can see of a running pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ip: String,
    /// Pid of the container's process (0 while it is not running).
    pub pid: u32,
    pub log: PathBuf,
    pub ready: bool,
}

struct Shared {
    client: kube::Client,
    bridge: Bridge,
    root: PathBuf,
    programs: BTreeMap<String, PathBuf>,
    pods: Mutex<BTreeMap<String, PodInfo>>,
}

/// Runs the pods of the test node until dropped (then every process is killed and every
/// network namespace removed).
pub struct PodRunner {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn key(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn ns_name(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl PodRunner {
    pub fn start(
        client: kube::Client,
        bridge: Bridge,
        root: PathBuf,
        programs: BTreeMap<String, PathBuf>,
    ) -> Self {
        std::fs::create_dir_all(&root).expect("pod root directory");
        let shared = Arc::new(Shared {
            client,
            bridge,
            root,
            programs,
            pods: Mutex::new(BTreeMap::new()),
        });
        let task = tokio::spawn(watch_pods(shared.clone()));
        Self { shared, task }
    }

    /// The pods running (or starting) now.
    pub fn pods(&self) -> Vec<PodInfo> {
        crate::lock(&self.shared.pods).values().cloned().collect()
    }

    /// The node's address (the bridge's), where the pods' default route goes.
    pub fn node_ip(&self) -> String {
        self.shared.bridge.node_ip()
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut workers: HashMap<String, (watch::Sender<Option<Pod>>, AbortOnDrop)> = HashMap::new();
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Dropping `workers` (when this task is aborted) drops every worker's process.
    while let Some(ev) = stream.next().await {
        let pod = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(p)) => {
                if let Some((tx, _)) = workers.remove(&key(&p)) {
                    let _ = tx.send(None);
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("k8s pod runner: watch error: {e}");
                continue;
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        match spec.node_name.as_deref() {
            None if pod.metadata.deletion_timestamp.is_none() => {
                tokio::spawn(bind(shared.client.clone(), pod));
            }
            Some(NODE_NAME) => {
                workers.retain(|_, (_, h)| !h.0.is_finished());
                if let Some((tx, _)) = workers.get(&key(&pod)) {
                    let _ = tx.send(Some(pod));
                } else if pod.metadata.deletion_timestamp.is_some() {
                    // Deleted before (or after) it ran here: nothing to stop.
                    tokio::spawn(remove(shared.client.clone(), pod));
                } else if !is_finished(&pod) {
                    let (tx, rx) = watch::channel(Some(pod.clone()));
                    let h = tokio::spawn(Worker::run(shared.clone(), pod.clone(), rx));
                    workers.insert(key(&pod), (tx, AbortOnDrop(h)));
                }
            }
            _ => {}
        }
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Deletes a pod with grace 0 (the kubelet's last step), if it is still the same pod.
async fn remove(client: kube::Client, pod: Pod) {
    let (ns, name) = ns_name(&pod);
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => eprintln!("k8s pod runner: {ns}/{name}: final delete: {e}"),
    }
}

/// Binds a pod to the node (the scheduler's job) through the `binding` subresource.
async fn bind(client: kube::Client, pod: Pod) {
    let (ns, name) = ns_name(&pod);
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                      "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}});
    if let Err(e) = api
        .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &body)
        .await
    {
        eprintln!("k8s pod runner: bind {ns}/{name}: {e}");
    }
}

impl Drop for Worker {
    /// Also when the task is aborted (the Pod's Delete event may come first).
    fn drop(&mut self) {
        crate::lock(&self.shared.pods).remove(&key(&self.pod));
    }
}

/// Shell run in the pod's mount namespace, as `sh -c SCRIPT sh PROGRAM [SRC DST ro|rw]...
/// -- ARGS...`. Every source, and the program, is first bind-mounted into a private
/// staging tmpfs, then each staged source is bind-mounted at its `DST`, so a volume
/// mounted over a directory that holds a later source or the program itself (an
/// `emptyDir` at `/tmp` when the checkout is under `/tmp`) hides nothing the pod needs.
const MOUNT_SCRIPT: &str = r#"set -e
stage=/run/origin-test-pod-stage
mkdir -p "$stage"
mount -t tmpfs -o mode=0700 tmpfs "$stage"
mkdir "$stage/bin"
program="$stage/bin/${1##*/}"
touch "$program"
mount --bind "$1" "$program"
shift
i=0
while [ "$1" != "--" ]; do
  i=$((i + 1))
  mkdir "$stage/$i"
  mount --bind "$1" "$stage/$i"
  printf '%s %s %s\n' "$i" "$3" "$2" >>"$stage/plan"
  shift 3
done
shift
if [ -f "$stage/plan" ]; then
  while read -r n mode dst; do
    mkdir -p "$dst"
    if [ "$mode" = ro ]; then mount --bind -o ro "$stage/$n" "$dst"; else mount --bind "$stage/$n" "$dst"; fi
  done <"$stage/plan"
fi
exec "$program" "$@""#;

/// Where [`MOUNT_SCRIPT`] puts the container's program (under its own file name) inside
/// the pod's mount namespace.
const STAGED_PROGRAMS: &str = "/run/origin-test-pod-stage/bin";

/// One pod's lifecycle on the node.
struct Worker {
    shared: Arc<Shared>,
    pod: Pod,
    container: Container,
    net: PodNet,
    dir: PathBuf,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    started_at: String,
    restarts: i32,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
    ready_since: String,
    /// The container's environment (also given to exec hooks).
    vars: BTreeMap<String, String>,
}

impl Worker {
    async fn run(shared: Arc<Shared>, pod: Pod, mut rx: watch::Receiver<Option<Pod>>) {
        let (ns, name) = ns_name(&pod);
        let Some(container) = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first().cloned())
        else {
            return;
        };
        let dir = shared.root.join(format!("{ns}_{name}_{}", key(&pod)));
        let net = shared.bridge.pod_netns();
        let log = dir.join(format!("{}.log", container.name));
        let _ = std::fs::create_dir_all(&dir);
        let mut w = Worker {
            readiness: container
                .readiness_probe
                .clone()
                .map(|p| ProbeState::new(p, false)),
            liveness: container
                .liveness_probe
                .clone()
                .map(|p| ProbeState::new(p, true)),
            shared,
            pod,
            container,
            net,
            dir,
            log,
            child: None,
            started_at: now(),
            restarts: 0,
            ready_since: now(),
            vars: BTreeMap::new(),
        };
        w.publish(false);
        w.lifecycle(&mut rx).await;
    }

    async fn lifecycle(&mut self, rx: &mut watch::Receiver<Option<Pod>>) {
        let mut last_sync = Instant::now();
        loop {
            if self.child.is_none()
                && let Err(e) = self.start().await
            {
                eprintln!("k8s pod runner: {}: cannot start yet: {e}", self.label());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if self.child.is_some() {
                self.check_exit().await;
                self.probe().await;
                if last_sync.elapsed() >= Duration::from_secs(1) {
                    last_sync = Instant::now();
                    self.sync_volumes().await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                changed = rx.changed() => {
                    let latest = if changed.is_ok() { rx.borrow_and_update().clone() } else { None };
                    match latest {
                        None => return, // gone from the API: the process dies with us
                        Some(p) if p.metadata.deletion_timestamp.is_some() => {
                            self.pod = p;
                            self.terminate().await;
                            return;
                        }
                        Some(p) => self.pod = p,
                    }
                }
            }
        }
    }

    fn label(&self) -> String {
        let (ns, name) = ns_name(&self.pod);
        format!("{ns}/{name}")
    }

    fn publish(&self, ready: bool) {
        let (namespace, name) = ns_name(&self.pod);
        let info = PodInfo {
            namespace,
            name,
            uid: key(&self.pod),
            ip: self.net.ip.clone(),
            pid: self.child.as_ref().and_then(|c| c.id()).unwrap_or(0),
            log: self.log.clone(),
            ready,
        };
        crate::lock(&self.shared.pods).insert(info.uid.clone(), info);
    }

    /// The program on this machine for the image's program path.
    fn program(&self, argv: &mut [String]) -> Result<(), String> {
        let first = argv.first_mut().ok_or("container has no command")?;
        let host = self
            .shared
            .programs
            .get(first.as_str())
            .ok_or_else(|| format!("no program on this node for {first}"))?;
        *first = host.display().to_string();
        Ok(())
    }

    async fn start(&mut self) -> Result<(), String> {
        let client = self.shared.client.clone();
        let dirs = volumes::materialise(&client, &self.pod, &self.dir.join("volumes"))
            .await
            .map_err(|e| e.0)?;
        let host_ip = self.shared.bridge.node_ip();
        let vars =
            pod_env::env(&client, &self.pod, &self.container, &self.net.ip, &host_ip).await?;
        let mut argv = pod_env::argv(&self.container, &vars);
        self.program(&mut argv)?;
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.net.netns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
        ]);
        cmd.args(["sh", "-c", MOUNT_SCRIPT, "sh"]);
        let (program, args) = argv.split_first().ok_or("container has no command")?;
        cmd.arg(program);
        for m in self.container.volume_mounts.iter().flatten() {
            let src = dirs
                .get(&m.name)
                .ok_or_else(|| format!("no volume {}", m.name))?;
            let src = match &m.sub_path {
                Some(sp) if !sp.is_empty() => src.join(sp),
                _ => src.clone(),
            };
            let ro = if m.read_only == Some(true) {
                "ro"
            } else {
                "rw"
            };
            cmd.arg(src).arg(&m.mount_path).arg(ro);
        }
        cmd.arg("--").args(args);
        self.vars = vars.clone();
        let (_, name) = ns_name(&self.pod);
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOSTNAME", name)
            .envs(&vars);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("log file: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        self.started_at = now();
        self.readiness = self
            .container
            .readiness_probe
            .clone()
            .map(|p| ProbeState::new(p, false));
        self.liveness = self
            .container
            .liveness_probe
            .clone()
            .map(|p| ProbeState::new(p, true));
        let ready = self.readiness.is_none();
        self.publish(ready);
        self.write_status(ready, "Running").await;
        Ok(())
    }

    /// A container that exited is restarted (restartPolicy Always), after a short pause.
    async fn check_exit(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(Some(st)) = child.try_wait() {
            eprintln!(
                "k8s pod runner: {}: container exited ({st}); restarting",
                self.label()
            );
            self.child = None;
            self.restarts += 1;
            self.publish(false);
            self.write_status(false, "Running").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn probe(&mut self) {
        let ip = self.net.ip.clone();
        if let Some(l) = self.liveness.as_mut()
            && l.tick(&self.container, &ip).await
            && !l.ok
        {
            eprintln!(
                "k8s pod runner: {}: liveness probe failed; killing the container",
                self.label()
            );
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill().await;
            }
            return;
        }
        if let Some(r) = self.readiness.as_mut()
            && r.tick(&self.container, &ip).await
        {
            let ready = r.ok;
            self.ready_since = now();
            self.publish(ready);
            self.write_status(ready, "Running").await;
        }
    }

    async fn sync_volumes(&mut self) {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        for v in self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
        {
            if let Ok(Some(files)) = volumes::files(&self.shared.client, &ns, v).await
                && let Err(e) = volumes::sync_dir(&self.dir.join("volumes").join(&v.name), &files)
            {
                eprintln!("k8s pod runner: {}: volume {}: {e}", self.label(), v.name);
            }
        }
    }

    async fn write_status(&self, ready: bool, phase: &str) {
        let (ns, name) = ns_name(&self.pod);
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let r = if ready { "True" } else { "False" };
        let t = &self.ready_since;
        let cond = |type_: &str, status: &str| json!({"type": type_, "status": status, "lastTransitionTime": t});
        let running = self.child.is_some();
        let state = if running {
            json!({"running": {"startedAt": self.started_at}})
        } else {
            json!({"waiting": {"reason": "ContainerCreating"}})
        };
        let host = self.shared.bridge.node_ip();
        let status = json!({"status": {
            "phase": phase,
            "hostIP": host, "hostIPs": [{"ip": host}],
            "podIP": self.net.ip, "podIPs": [{"ip": self.net.ip}],
            "startTime": self.started_at,
            "conditions": [cond("PodScheduled", "True"), cond("Initialized", "True"),
                           cond("ContainersReady", r), cond("Ready", r)],
            "containerStatuses": [{
                "name": self.container.name, "ready": ready, "started": running,
                "restartCount": self.restarts, "image": self.container.image.clone().unwrap_or_default(),
                "imageID": "", "state": state,
            }],
        }});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
        {
            eprintln!("k8s pod runner: {ns}/{name}: status: {e}");
        }
    }

    /// Runs `argv` (program mapped) inside the running container's namespaces.
    async fn exec_in_pod(&self, argv: &[String]) -> Option<tokio::process::Child> {
        let pid = self.child.as_ref()?.id()?;
        let mut argv = argv.to_vec();
        self.program(&mut argv).ok()?;
        // The container's own program is reached at its staged path there (the host
        // path may be under a volume's mount point).
        let mut own = pod_env::argv(&self.container, &self.vars);
        if self.program(&mut own).is_ok() && own.first() == argv.first() {
            let name = Path::new(&argv[0]).file_name().unwrap_or_default();
            argv[0] = format!("{STAGED_PROGRAMS}/{}", name.to_string_lossy());
        }
        tokio::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "-m", "--"])
            .args(&argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .envs(&self.vars)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// preStop hook, SIGTERM, the rest of the grace period, SIGKILL; then the Pod is
    /// removed (deletion with grace 0). Readiness keeps being probed meanwhile.
    async fn terminate(&mut self) {
        let deadline = Instant::now() + self.grace();
        let hook = self
            .container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone());
        if let Some(argv) = hook
            && let Some(mut hook) = self.exec_in_pod(&argv).await
        {
            while Instant::now() < deadline {
                if matches!(hook.try_wait(), Ok(Some(_))) {
                    break;
                }
                self.probe().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        while Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                break;
            }
            self.probe().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill().await;
        }
        self.child = None;
        self.publish(false);
        self.write_status(false, "Running").await;
        remove(self.shared.client.clone(), self.pod.clone()).await;
    }
}
