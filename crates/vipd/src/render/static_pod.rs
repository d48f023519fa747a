//! A kubelet static Pod that runs `vipd run` for one node: what kube-vip
//! and the kubeadm HA guide do for keepalived and HAProxy, with vipd's
//! capabilities and nothing more.
//!
//! The trade-off, written into the manifest and docs/operations.md: a static
//! Pod runs only once the kubelet runs, so on the first control plane the
//! VIP appears during `kubeadm init` (after kubeadm starts the kubelet), not
//! before it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::yaml_str;
use crate::config::NodePlan;
use crate::config::spec::{ClusterSpec, Role};

/// The capabilities `vipd run` needs: NET_ADMIN (the VIP address, nftables),
/// NET_RAW (VRRP's raw socket, gratuitous ARP), NET_BIND_SERVICE (an API
/// port below 1024).
pub const CAPABILITIES: [&str; 3] = ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"];

/// Seconds the kubelet waits after SIGTERM beyond `[proxy] drain_timeout`
/// (the VRRP stop advert, removing the VIP and the nftables table).
pub const GRACE_MARGIN_SECS: u64 = 5;

/// Where things are on the node, as the Pod sees them (the same paths: the
/// directories are mounted where they are on the host).
#[derive(Debug, Clone)]
pub struct Options {
    /// The container image with the `vipd` binary (and `nft` for the DNAT datapath).
    pub image: String,
    /// The cluster file's path on the node.
    pub config: PathBuf,
}

/// The Pod manifest for /etc/kubernetes/manifests.
pub fn render(spec: &ClusterSpec, plan: &NodePlan, options: &Options) -> String {
    let config_dir = options.config.parent().unwrap_or(Path::new("/"));
    let secrets = crate::config::secrets_path(&options.config, spec, None);
    let secrets_dir = secrets.parent().unwrap_or(Path::new("/"));
    let mut mounts: Vec<(&str, &Path)> = vec![("config", config_dir)];
    if !secrets_dir.starts_with(config_dir) {
        mounts.push(("secrets", secrets_dir));
    }
    let grace = spec.proxy.drain_timeout.get().as_secs() + GRACE_MARGIN_SECS;
    let roles: Vec<&str> = plan.roles.iter().map(|r| r.as_str()).collect();
    // What on this node the endpoint depends on.
    let what = match (
        plan.roles.contains(&Role::Vip),
        plan.roles.contains(&Role::Plane),
    ) {
        (true, true) => "it carries the VIP and proxies to the kube-apiservers",
        (true, false) => "it carries the VIP",
        (false, true) => "its plane proxy, which the VIP forwards to",
        (false, false) => "its node-local proxy",
    };

    let mut out = String::new();
    let _ = write!(
        out,
        "# vipd for node {node} (roles: {roles}) of cluster {cluster}, made by\n\
         # `vipd render static-pod`. Install as /etc/kubernetes/manifests/vipd.yaml\n\
         # on {node}; the kubelet runs it.\n\
         #\n\
         # Trade-off: a static Pod runs only while the kubelet runs, so this node's\n\
         # part of the endpoint {endpoint}\n\
         # ({what}) works only once the kubelet has started this Pod.\n\
         # On the first control plane that is during `kubeadm init`, after kubeadm\n\
         # starts the kubelet, never before it: put this file in place before\n\
         # `kubeadm init` (its preflight checks only kubeadm's own manifests), and\n\
         # kubeadm's calls to the endpoint succeed once vipd and the local\n\
         # kube-apiserver are up. Nothing can use the VIP before that (a check of the\n\
         # endpoint before init fails). A VIP holder without a kubelet (a dedicated\n\
         # load balancer) runs vipd as a system service instead.\n\
         #\n\
         # Liveness is the process: vipd exits when a subsystem fails and the kubelet\n\
         # restarts it (restartPolicy Always); there is no probe endpoint yet.\n",
        node = plan.node,
        roles = roles.join(", "),
        cluster = plan.cluster,
        endpoint = plan.api_endpoint,
        what = what,
    );
    out.push_str(
        "apiVersion: v1\n\
         kind: Pod\n\
         metadata:\n  name: vipd\n  namespace: kube-system\n  labels:\n    component: vipd\n    tier: control-plane\n\
         spec:\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  restartPolicy: Always\n",
    );
    let _ = writeln!(out, "  terminationGracePeriodSeconds: {grace}");
    out.push_str("  containers:\n    - name: vipd\n");
    let _ = writeln!(out, "      image: {}", yaml_str(&options.image));
    out.push_str("      imagePullPolicy: IfNotPresent\n      command:\n");
    let config = options.config.display().to_string();
    for arg in ["vipd", "run", "--config", &config, "--node", &plan.node] {
        let _ = writeln!(out, "        - {}", yaml_str(arg));
    }
    out.push_str(
        "      securityContext:\n\
         \x20       runAsUser: 0\n\
         \x20       allowPrivilegeEscalation: false\n\
         \x20       readOnlyRootFilesystem: true\n\
         \x20       capabilities:\n\
         \x20         drop:\n\
         \x20           - \"ALL\"\n\
         \x20         add:\n",
    );
    for cap in CAPABILITIES {
        let _ = writeln!(out, "            - {}", yaml_str(cap));
    }
    out.push_str("      volumeMounts:\n");
    for (name, dir) in &mounts {
        let _ = writeln!(
            out,
            "        - name: {name}\n          mountPath: {}\n          readOnly: true",
            yaml_str(&dir.display().to_string())
        );
    }
    out.push_str("  volumes:\n");
    for (name, dir) in &mounts {
        let _ = writeln!(
            out,
            "    - name: {name}\n      hostPath:\n        path: {}\n        type: Directory",
            yaml_str(&dir.display().to_string())
        );
    }
    out
}
