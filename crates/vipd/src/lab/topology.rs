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

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::config::spec::Datapath;
use crate::lab::netns::{Netns, Topology};
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
    pub address: Ipv4Addr,
    pub priority: Option<u32>,
}

/// The nodes for `counts`, holders first.
pub fn nodes(counts: Counts) -> Vec<LabNode> {
    let mut nodes = Vec::new();
    for i in 1..=counts.holders {
        nodes.push(LabNode {
            name: format!("holder-{i}"),
            role: "vip",
            address: Ipv4Addr::new(198, 18, 0, i),
            // 150, then 100, 95, 90...: distinct, the first is the master.
            priority: Some(if i == 1 {
                150
            } else {
                100 - 5 * u32::from(i - 2)
            }),
        });
    }
    for i in 1..=counts.planes {
        nodes.push(LabNode {
            name: format!("plane-{i}"),
            role: "plane",
            address: Ipv4Addr::new(198, 18, 0, 10 + i),
            priority: None,
        });
    }
    for i in 1..=counts.workers {
        nodes.push(LabNode {
            name: format!("worker-{i}"),
            role: "worker",
            address: Ipv4Addr::new(198, 18, 0, 20 + i),
            priority: None,
        });
    }
    nodes
}

/// The load client's source addresses on the first worker.
pub fn client_sources() -> Vec<IpAddr> {
    (0..CLIENT_SOURCES)
        .map(|k| IpAddr::V4(Ipv4Addr::new(198, 18, 0, 40 + k)))
        .collect()
}

/// The cluster file for `counts`: the template with its node list
/// replaced, `api.datapath` and `plane.health.ca_file` set.
pub fn cluster_text(counts: Counts, datapath: Datapath, ca_file: &Path) -> Result<String, String> {
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
    let nodes: Vec<toml::Value> = nodes(counts)
        .into_iter()
        .map(|n| {
            let mut t = toml::Table::new();
            t.insert("name".into(), toml::Value::String(n.name));
            t.insert(
                "roles".into(),
                toml::Value::Array(vec![toml::Value::String(n.role.into())]),
            );
            t.insert("address".into(), toml::Value::String(n.address.to_string()));
            if let Some(p) = n.priority {
                t.insert("priority".into(), toml::Value::Integer(i64::from(p)));
            }
            toml::Value::Table(t)
        })
        .collect();
    table.remove("nodes");
    table.insert("api".into(), toml::Value::Table(api));
    table.insert("plane".into(), toml::Value::Table(plane));
    table.insert("nodes".into(), toml::Value::Array(nodes));
    let body = toml::to_string(&table).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Generated by `vipd lab up` from examples/lab.toml: {} holder(s), {} plane(s), {} worker(s).\n\n{body}",
        counts.holders, counts.planes, counts.workers
    ))
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
        let address: ipnet::IpNet = format!("{}/24", node.address)
            .parse()
            .map_err(io::Error::other)?;
        topo.plug(&netns, "eth0", &[address])?;
        if node.has_role("vip") {
            // DNAT forwards; the classic HAProxy binds the VIP before it holds it.
            sysctl(&netns, "net.ipv4.ip_forward=1")?;
            sysctl(&netns, "net.ipv4.ip_nonlocal_bind=1")?;
        }
        if node.name == "worker-1" {
            for source in client_sources() {
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
            for datapath in [Datapath::Dnat, Datapath::Proxy] {
                let text = cluster_text(counts, datapath, Path::new("/tmp/lab/ca.crt")).unwrap();
                let checked =
                    crate::config::check_text("lab.toml", &text, Path::new("lab.toml"), None);
                assert_eq!(checked.errors(), 0, "{}\n{text}", checked.render());
                let spec = checked.spec.unwrap();
                let n = usize::from(counts.holders + counts.planes + counts.workers);
                assert_eq!(spec.nodes.len(), n);
                assert_eq!(spec.api.datapath, datapath);
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
