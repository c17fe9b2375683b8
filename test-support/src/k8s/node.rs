//! [`NodeKeeper`]: the one Node of the test cluster, kept Ready by a heartbeat (its
//! status conditions and its Lease in `kube-node-lease`), as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// Name of the Node the pod runner plays the kubelet for.
pub const NODE_NAME: &str = "origin-test-node";
/// Interval of the heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Keeps the Node Ready until dropped.
pub struct NodeKeeper {
    task: tokio::task::JoinHandle<()>,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn status(ip: &str) -> serde_json::Value {
    let t = now();
    let cond = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!({"status": {
        "conditions": [
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": NODE_NAME}],
        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
        "nodeInfo": {"kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "architecture": "amd64",
                     "operatingSystem": "linux", "containerRuntimeVersion": "origin-test-pod-runner://0",
                     "osImage": "", "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
    }})
}

async fn beat(nodes: &Api<Node>, leases: &Api<Lease>, ip: &str) -> Result<(), kube::Error> {
    nodes
        .patch_status(
            NODE_NAME,
            &PatchParams::default(),
            &Patch::Merge(status(ip)),
        )
        .await?;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NODE_NAME},
        "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": now().replace('Z', ".000000Z")},
    });
    leases
        .patch(
            NODE_NAME,
            &PatchParams::apply("origin-test-node").force(),
            &Patch::Apply(lease),
        )
        .await?;
    Ok(())
}

impl NodeKeeper {
    /// Registers the Node (address `ip`) and starts the heartbeat.
    pub async fn start(client: kube::Client, ip: &str) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {
                "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create the Node");
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        let ip = ip.to_string();
        beat(&nodes, &leases, &ip)
            .await
            .expect("first node heartbeat");
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                if let Err(e) = beat(&nodes, &leases, &ip).await {
                    eprintln!("k8s: node heartbeat failed: {e}");
                }
            }
        });
        Self { task }
    }
}

impl Drop for NodeKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
