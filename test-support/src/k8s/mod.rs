//! A real Kubernetes control plane for the tests (docs/architecture.md, "Test control
//! plane"): etcd, kube-apiserver and kube-controller-manager built by `scripts/k8s-tools`
//! (directory in `ORIGIN_K8S_TOOLS`), one Node kept Ready, and a pod runner standing in
//! for the kubelet, which runs the real `origin` binary for each Pod in its own network
//! and mount namespaces. Needs root (network namespaces, bind mounts).

pub mod certs;
pub mod control_plane;
pub mod node;
pub mod operator;
pub mod pod_env;
pub mod pod_net;
pub mod pod_runner;
pub mod probe;
pub mod process;
pub mod tool;
pub mod volumes;

use std::collections::BTreeMap;
use std::time::Instant;

pub use control_plane::{ControlPlane, tools_dir, write_kubeconfig};
pub use node::{NODE_NAME, NodeKeeper};
pub use operator::OperatorProc;
pub use pod_runner::{PodInfo, PodRunner};
pub use tool::Tool;

/// The control plane, the node and its pod runner; everything stops on drop.
pub struct Cluster {
    // Dropped in this order: pods first, the directory last.
    pub runner: PodRunner,
    node: NodeKeeper,
    pub client: kube::Client,
    pub kubectl: Tool,
    pub helm: Tool,
    pub plane: ControlPlane,
    pub dir: crate::TempDir,
}

impl Cluster {
    /// Starts everything; the pod runner maps the image program `/origin` to the
    /// workspace's `origin` binary.
    pub async fn start() -> Self {
        let t0 = Instant::now();
        let tools = tools_dir();
        let dir = crate::TempDir::new("origin-k8s").expect("temp dir");
        let plane = ControlPlane::start(dir.path()).await;
        let client = plane.admin_client().await;
        let bridge = pod_net::Bridge::create();
        let node = NodeKeeper::start(client.clone(), &bridge.node_ip()).await;
        let programs = BTreeMap::from([("/origin".to_string(), crate::bin_path("origin"))]);
        let runner = PodRunner::start(client.clone(), bridge, dir.path().join("pods"), programs);
        let tool = |name: &str| Tool {
            bin: tools.join(name),
            kubeconfig: plane.kubeconfig.clone(),
        };
        eprintln!("k8s: cluster up in {:.1} s", t0.elapsed().as_secs_f64());
        Self {
            runner,
            node,
            client,
            kubectl: tool("kubectl"),
            helm: tool("helm"),
            plane,
            dir,
        }
    }

    /// Keeps the node heartbeat alive (it is, as long as the cluster lives).
    pub fn node(&self) -> &NodeKeeper {
        &self.node
    }
}
