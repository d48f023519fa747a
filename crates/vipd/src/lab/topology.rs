//! The lab's cluster and network, from counts.
//!
//! The cluster file starts from examples/lab.toml (compiled in): its VIP,
//! VRRP, API and plane settings are kept; the node list is generated from
//! `--holders/--planes/--workers`; `api.datapath` and the CA path are set.
//! Addresses (lab-rules: 198.18.0.0/15 only): holder i is 198.18.0.i,
//! plane i 198.18.0.(10+i), worker i 198.18.0.(20+i), the VIP stays
//! 198.18.0.100. The first worker also carries 198.18.0.40..=55, the load
//! client's source addresses (the DNAT datapath spreads clients by source).
//!
//! The network: one namespace per node and a hub namespace with bridge `br0`
//! (multicast snooping off), each node plugged in with a veth `eth0`.
//! Nothing is made in the root namespace.
//!
//! With `--mesh wireguard` ([`Network::Wireguard`]) the bridge is the
//! underlay and the cluster lives on a WireGuard mesh over it, as the
//! seed's does: every node has `wg99` (lab::mesh) with its address in
//! 198.19.0.0/24 (holder i 198.19.0.i, ... as above; the bridge keeps
//! 198.18.0.x and carries only WireGuard's UDP), the VIP is 198.19.0.100
//! on `wg99`, VRRP runs unicast over the tunnels, and the load client's
//! sources are 198.19.0.40..=55 (worker-1's peer entry allows them).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::config::spec::Datapath;
use crate::lab::mesh::{self, NodeKeys};
use crate::lab::netns::{Netns, Topology};
pub use crate::lab::state::Network;
use crate::lab::state::NodeState;

/// examples/lab.toml, the template.
pub const TEMPLATE: &str = include_str!("../../../../examples/lab.toml");

/// The most nodes of one role (their addresses must not collide).
pub const MAX_PER_ROLE: u8 = 9;
/// How many extra source addresses the load client uses.
pub const CLIENT_SOURCES: u8 = 16;

/// How many nodes of each role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub holders: u8,
    pub planes: u8,
    pub workers: u8,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            holders: 2,
            planes: 3,
            workers: 1,
        }
    }
}

impl Counts {
    pub fn validate(&self) -> Result<(), String> {
        for (what, n, min) in [
            ("--holders", self.holders, 1),
            ("--planes", self.planes, 1),
            ("--workers", self.workers, 1),
        ] {
            if n < min || n > MAX_PER_ROLE {
                return Err(format!(
                    "{what} {n}: use {min}..={MAX_PER_ROLE} (each role has ten addresses in 198.18.0.0/24)"
                ));
            }
        }
        Ok(())
    }
}

/// One node of the generated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    pub name: String,
    pub role: &'static str,
    /// Its address in the cluster file.
    pub address: Ipv4Addr,
    /// Its address on the bridge (the same on the LAN).
    pub underlay: Ipv4Addr,
    pub priority: Option<u32>,
}

/// The nodes for `counts`, holders first.
pub fn nodes(counts: Counts, network: Network) -> Vec<LabNode> {
    let mut nodes = Vec::new();
    let node = |name: String, role, host: u8, priority| LabNode {
        name,
        role,
        address: network.address(host),
        underlay: Network::Lan.address(host),
        priority,
    };
    for i in 1..=counts.holders {
        nodes.push(node(
            format!("holder-{i}"),
            "vip",
            i,
            // 150, then 100, 95, 90...: distinct, the first is the master.
            Some(if i == 1 {
                150
            } else {
                100 - 5 * u32::from(i - 2)
            }),
        ));
    }
    for i in 1..=counts.planes {
        nodes.push(node(format!("plane-{i}"), "plane", 10 + i, None));
    }
    for i in 1..=counts.workers {
        nodes.push(node(format!("worker-{i}"), "worker", 20 + i, None));
    }
    nodes
}

/// The first host of the load client's source addresses.
const CLIENT_SOURCE_BASE: u8 = 40;

/// The load client's source addresses on the first worker.
pub fn client_sources(network: Network) -> Vec<IpAddr> {
    (0..CLIENT_SOURCES)
        .map(|k| IpAddr::V4(network.address(CLIENT_SOURCE_BASE + k)))
        .collect()
}

/// The client's sources as networks (two /29s: .40-.47 and .48-.55), the
/// extra AllowedIPs of the first worker's peer entry on the mesh.
fn client_source_nets(network: Network) -> Vec<String> {
    (0..CLIENT_SOURCES / 8)
        .map(|k| format!("{}/29", network.address(CLIENT_SOURCE_BASE + 8 * k)))
        .collect()
}

/// The lab's VIP.
pub fn vip(network: Network) -> Ipv4Addr {
    network.address(100)
}

/// The cluster file for `counts`: the template with its node list
/// replaced, `api.datapath` and `plane.health.ca_file` set. With `keys`
/// (one per node of [`nodes`], in order) the cluster is on the WireGuard
/// mesh: `[mesh]`, the VIP on `wg99` (VRRP unicast, the mesh's default),
/// and each node's `[nodes.wireguard]` with its underlay endpoint and its
/// private key named as a secret ([`mesh::secret_name`]).
pub fn cluster_text(
    counts: Counts,
    datapath: Datapath,
    ca_file: &Path,
    keys: Option<&[NodeKeys]>,
) -> Result<String, String> {
    let network = if keys.is_some() {
        Network::Wireguard
    } else {
        Network::Lan
    };
    let mut table: toml::Table = TEMPLATE
        .parse()
        .map_err(|e| format!("examples/lab.toml: {e}"))?;
    let section = |table: &mut toml::Table, name: &str| -> Result<toml::Table, String> {
        match table.remove(name) {
            Some(toml::Value::Table(t)) => Ok(t),
            _ => Err(format!("examples/lab.toml has no [{name}] table")),
        }
    };
    let mut api = section(&mut table, "api")?;
    api.insert(
        "datapath".into(),
        toml::Value::String(
            match datapath {
                Datapath::Dnat => "dnat",
                Datapath::Proxy => "proxy",
            }
            .into(),
        ),
    );
    let mut plane = section(&mut table, "plane")?;
    let mut health = match plane.remove("health") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    health.insert(
        "ca_file".into(),
        toml::Value::String(ca_file.display().to_string()),
    );
    plane.insert("health".into(), toml::Value::Table(health));
    let mut vip = section(&mut table, "vip")?;
    if keys.is_some() {
        vip.insert("address".into(), vip_value(network));
        vip.insert("interface".into(), mesh::INTERFACE.into());
        vip.remove("mode");
        let mut m = toml::Table::new();
        m.insert("interface".into(), mesh::INTERFACE.into());
        m.insert(
            "network".into(),
            format!("{}/24", network.address(0)).into(),
        );
        m.insert("listen_port".into(), i64::from(mesh::LISTEN_PORT).into());
        table.insert("mesh".into(), toml::Value::Table(m));
    }
    let nodes = nodes(counts, network);
    if let Some(keys) = keys
        && keys.len() != nodes.len()
    {
        return Err(format!(
            "{} WireGuard key pairs for {} nodes",
            keys.len(),
            nodes.len()
        ));
    }
    let nodes: Vec<toml::Value> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let mut t = toml::Table::new();
            t.insert("name".into(), toml::Value::String(n.name.clone()));
            t.insert(
                "roles".into(),
                toml::Value::Array(vec![toml::Value::String(n.role.into())]),
            );
            t.insert("address".into(), toml::Value::String(n.address.to_string()));
            if let Some(p) = n.priority {
                t.insert("priority".into(), toml::Value::Integer(i64::from(p)));
            }
            if let Some(key) = keys.and_then(|k| k.get(i)) {
                let mut wg = toml::Table::new();
                wg.insert("public_key".into(), key.public_key.clone().into());
                wg.insert(
                    "endpoint".into(),
                    format!("{}:{}", n.underlay, mesh::LISTEN_PORT).into(),
                );
                let mut secret = toml::Table::new();
                secret.insert("secret".into(), mesh::secret_name(&n.name).into());
                wg.insert("private_key".into(), toml::Value::Table(secret));
                if n.name == "worker-1" {
                    wg.insert(
                        "allowed_ips".into(),
                        toml::Value::Array(
                            client_source_nets(network)
                                .into_iter()
                                .map(toml::Value::String)
                                .collect(),
                        ),
                    );
                }
                t.insert("wireguard".into(), toml::Value::Table(wg));
            }
            toml::Value::Table(t)
        })
        .collect();
    table.remove("nodes");
    table.insert("vip".into(), toml::Value::Table(vip));
    table.insert("api".into(), toml::Value::Table(api));
    table.insert("plane".into(), toml::Value::Table(plane));
    table.insert("nodes".into(), toml::Value::Array(nodes));
    let body = toml::to_string(&table).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Generated by `vipd lab up` from examples/lab.toml: {} holder(s), {} plane(s), {} worker(s){}.\n\n{body}",
        counts.holders,
        counts.planes,
        counts.workers,
        if keys.is_some() {
            ", on a WireGuard mesh"
        } else {
            ""
        }
    ))
}

fn vip_value(network: Network) -> toml::Value {
    vip(network).to_string().into()
}

/// The lab's secrets file on the mesh: every node's private key.
pub fn secrets_text(counts: Counts, keys: &[NodeKeys]) -> String {
    let mut out =
        String::from("# The lab nodes' WireGuard private keys (`vipd lab up --mesh wireguard`).\n");
    for (node, key) in nodes(counts, Network::Wireguard).iter().zip(keys) {
        out.push_str(&format!(
            "{} = \"{}\"\n",
            mesh::secret_name(&node.name),
            key.private_key
        ));
    }
    out
}

/// Builds the network for `nodes` under `run_id`. On error everything made
/// so far is removed (the topology guard); on success it stays, and the
/// namespaces (hub first) are returned.
pub fn build(run_id: &str, nodes: &mut [NodeState]) -> io::Result<Vec<String>> {
    let mut topo = Topology::with_run_id(run_id.to_owned());
    topo.hub()?;
    for node in nodes.iter_mut() {
        let netns = topo.add_host(&node.name)?;
        node.namespace = netns.name().to_owned();
        let address: ipnet::IpNet = format!("{}/24", node.underlay())
            .parse()
            .map_err(io::Error::other)?;
        topo.plug(&netns, "eth0", &[address])?;
        if node.has_role("vip") {
            // DNAT forwards; the classic HAProxy binds the VIP before it holds it.
            sysctl(&netns, "net.ipv4.ip_forward=1")?;
            sysctl(&netns, "net.ipv4.ip_nonlocal_bind=1")?;
        }
        if node.name == "worker-1" && node.underlay.is_none() {
            for source in client_sources(Network::Lan) {
                netns.ip(&["addr", "add", &format!("{source}/32"), "dev", "eth0"])?;
            }
        }
    }
    let names = topo
        .namespaces()
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    topo.keep();
    Ok(names)
}

fn sysctl(netns: &Netns, setting: &str) -> io::Result<()> {
    let out = netns.run("sysctl", &["-qw", setting])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "sysctl -w {setting} in {}: {}",
            netns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_cluster_passes_check() {
        for counts in [
            Counts::default(),
            Counts {
                holders: 3,
                planes: 5,
                workers: 2,
            },
            Counts {
                holders: 9,
                planes: 9,
                workers: 9,
            },
        ] {
            let n = usize::from(counts.holders + counts.planes + counts.workers);
            let keys: Vec<NodeKeys> = (0..n).map(|_| NodeKeys::generate().unwrap()).collect();
            for datapath in [Datapath::Dnat, Datapath::Proxy] {
                for keys in [None, Some(&keys[..])] {
                    let text =
                        cluster_text(counts, datapath, Path::new("/tmp/lab/ca.crt"), keys).unwrap();
                    let checked =
                        crate::config::check_text("lab.toml", &text, Path::new("lab.toml"), None);
                    assert_eq!(checked.errors(), 0, "{}\n{text}", checked.render());
                    let spec = checked.spec.unwrap();
                    assert_eq!(spec.nodes.len(), n);
                    assert_eq!(spec.api.datapath, datapath);
                    assert_eq!(spec.vip_on_mesh(), keys.is_some(), "{text}");
                    if keys.is_some() {
                        // No follower_interval in the file: 1.5 × the 100 ms adverts.
                        assert_eq!(
                            spec.follower_interval().get(),
                            std::time::Duration::from_millis(150)
                        );
                        let worker = spec.plan("worker-1").unwrap();
                        let follow = worker.follow.expect("a worker follows on the mesh");
                        assert_eq!(follow.interval.get(), std::time::Duration::from_millis(150));
                        assert!(!follow.holder);
                        let holder = spec.plan("holder-1").unwrap();
                        let vrrp = holder.vrrp.expect("a holder runs VRRP");
                        assert_eq!(
                            vrrp.followers.len(),
                            usize::from(counts.planes + counts.workers),
                            "every node but the holders (they hear the adverts anyway) is a follower"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn counts_out_of_range_are_refused() {
        assert!(
            Counts {
                holders: 0,
                ..Counts::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Counts {
                planes: 10,
                ..Counts::default()
            }
            .validate()
            .is_err()
        );
        assert!(Counts::default().validate().is_ok());
    }
}
