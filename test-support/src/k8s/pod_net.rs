//! Pod networking of the test node: a bridge in the host's network namespace with the
//! node's address, and per pod a network namespace joined to it by a veth pair, at an
//! address from the harness's own /24. The test process (and the operator) reach pods at
//! their pod IPs through the bridge, and pods reach each other through it.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `ip ARGS`, panicking with its message on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (Debian package iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node's bridge and address range; removed on drop.
pub struct Bridge {
    pub name: String,
    /// The first three octets of the /24, e.g. `10.231.17`.
    pub prefix: String,
    tag: u32,
    next: AtomicU32,
}

impl Bridge {
    /// A bridge named for this process, with `PREFIX.1/24` (the node's InternalIP).
    pub fn create() -> Self {
        let pid = std::process::id();
        let tag = pid % 100_000;
        let prefix = format!("10.{}.{}", 100 + pid % 150, (pid / 150) % 250);
        let name = format!("ocbr{tag}");
        let _ = Command::new("ip").args(["link", "del", &name]).output();
        ip(&["link", "add", &name, "type", "bridge"]);
        ip(&["addr", "add", &format!("{prefix}.1/24"), "dev", &name]);
        ip(&["link", "set", &name, "up"]);
        Self {
            name,
            prefix,
            tag,
            next: AtomicU32::new(2),
        }
    }

    /// The node's address on the bridge.
    pub fn node_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// A new network namespace with the next free address (addresses are not reused).
    pub fn pod_netns(&self) -> PodNet {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        assert!(n < 255, "the test node's /24 is used up");
        let netns = format!("oc{}-{n}", self.tag);
        let veth = format!("v{}x{n}", self.tag);
        let ip_addr = format!("{}.{n}", self.prefix);
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        ip(&["netns", "add", &netns]);
        let pod = PodNet {
            netns: netns.clone(),
            ip: ip_addr.clone(),
        };
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["link", "set", &veth, "master", &self.name, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &netns,
            "route",
            "add",
            "default",
            "via",
            &self.node_ip(),
        ]);
        pod
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// One pod's network namespace (`ip netns` name) and address; deleted on drop, which
/// also removes its veth pair.
pub struct PodNet {
    pub netns: String,
    pub ip: String,
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}
