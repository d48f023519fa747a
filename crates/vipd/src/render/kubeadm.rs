//! kubeadm: the ClusterConfiguration fragment that makes the VIP the API
//! endpoint (controlPlaneEndpoint) and puts it, its name and every plane's
//! address into the apiserver certificate (certSANs), with the join commands
//! as comments.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::dns;
use super::yaml_str;
use crate::config::spec::{ClusterSpec, Role};

/// The kubeadm configuration API version. The two fields written here are
/// the same in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// kubeadm 1.22 and later (deprecated from 1.31).
    V1beta3,
    /// kubeadm 1.31 and later.
    V1beta4,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta3 => "kubeadm.k8s.io/v1beta3",
            ApiVersion::V1beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

/// What controlPlaneEndpoint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The VIP's address: works without DNS.
    Address,
    /// The VIP's DNS name (`[dns] vip_name` in `[dns] zone`): the address can
    /// change later without new certificates, but every node must resolve it.
    Name,
}

/// controlPlaneEndpoint: `VIP:port` (IPv6 in brackets) or `name:port`.
pub fn control_plane_endpoint(spec: &ClusterSpec, endpoint: Endpoint) -> String {
    match endpoint {
        Endpoint::Address => SocketAddr::new(spec.vip.address, spec.api.port.get()).to_string(),
        Endpoint::Name => format!("{}:{}", dns::vip_fqdn(spec), spec.api.port),
    }
}

/// apiServer.certSANs: the VIP, its name (short and full), every plane's
/// address, without repeats.
pub fn cert_sans(spec: &ClusterSpec) -> Vec<String> {
    let mut sans = vec![spec.vip.address.to_string(), spec.dns.vip_name.clone()];
    sans.push(dns::vip_fqdn(spec));
    sans.extend(spec.nodes_with(Role::Plane).map(|n| n.address.to_string()));
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

pub fn render(spec: &ClusterSpec, version: ApiVersion, endpoint: Endpoint) -> String {
    let cp_endpoint = control_plane_endpoint(spec, endpoint);
    let planes: Vec<_> = spec.nodes_with(Role::Plane).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# kubeadm ClusterConfiguration of cluster {}, made by `vipd render kubeadm`.",
        spec.cluster.name
    );
    out.push_str(
        "# Every kubelet, kubectl and joining node reaches the API through the VIP,\n\
         # which vipd keeps on a healthy control plane. Merge these fields into the\n\
         # file given to `kubeadm init --config`; keep its other fields.\n",
    );
    if endpoint == Endpoint::Name {
        let _ = writeln!(
            out,
            "# The endpoint is a name: every node must resolve {} to {} (`vipd render dns`).",
            dns::vip_fqdn(spec),
            spec.vip.address
        );
    }
    let _ = writeln!(out, "apiVersion: {}", version.as_str());
    out.push_str("kind: ClusterConfiguration\n");
    let _ = writeln!(out, "controlPlaneEndpoint: {}", yaml_str(&cp_endpoint));
    out.push_str("apiServer:\n  certSANs:\n");
    for san in cert_sans(spec) {
        let _ = writeln!(out, "    - {}", yaml_str(&san));
    }
    out.push_str("#\n# Each plane's kube-apiserver (InitConfiguration / JoinConfiguration):\n");
    for plane in &planes {
        let ports = spec.plane_ports(plane);
        let _ = writeln!(
            out,
            "#   {}: localAPIEndpoint.advertiseAddress {}, bindPort {}",
            plane.name, plane.address, ports.apiserver_port
        );
    }
    let _ = write!(
        out,
        "#\n\
         # Joining, once `kubeadm init --config FILE --upload-certs` ran on the first plane\n\
         # (`kubeadm token create --print-join-command` prints a fresh token and hash):\n\
         #   a worker:\n\
         #     kubeadm join {cp_endpoint} --token <token> \\\n\
         #       --discovery-token-ca-cert-hash sha256:<hash>\n\
         #   another control plane (the key from `kubeadm init phase upload-certs --upload-certs`):\n\
         #     kubeadm join {cp_endpoint} --token <token> \\\n\
         #       --discovery-token-ca-cert-hash sha256:<hash> \\\n\
         #       --control-plane --certificate-key <key>\n"
    );
    out
}
