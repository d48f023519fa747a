//! What each node derives from the node list: its VRRP instance and peers,
//! its proxy frontends and backends, its DNAT targets, its WireGuard peers.
//!
//! Multi-plane is "add one entry": nothing here is written per node in the
//! file, it all follows from the roles and addresses of the others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;

use super::spec::{
    AnnounceSection, CheckKind, ChecksumMode, ClusterSpec, Datapath, NodeSpec, NotifySection,
    PlaneSettings, Role, TrackedCheck, VrrpMode, defaults,
};
use super::values::{Interval, Port};

/// RFC 5798 §5.1.1.2: the IPv4 multicast group of VRRP.
pub const VRRP_GROUP_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
/// RFC 5798 §5.1.2.2: the IPv6 multicast group of VRRP.
pub const VRRP_GROUP_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12));

/// A plane's health check with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub kind: CheckKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval: Interval,
    pub timeout: Interval,
    pub rise: u32,
    pub fall: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// A plane's ports and check with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanePorts {
    pub proxy_port: Port,
    pub apiserver_port: Port,
    pub health: HealthCheck,
}

impl ClusterSpec {
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn nodes_with(&self, role: Role) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(move |n| n.has_role(role))
    }

    pub fn vip_prefix(&self) -> u32 {
        self.vip.prefix.unwrap_or(match self.vip.address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        })
    }

    /// How often a master advertises to each follower between transitions:
    /// `mesh.follower_interval`, else 1.5 × `vip.advert_interval`
    /// ([`crate::config::spec::FOLLOWER_INTERVAL_ADVERTS`]).
    pub fn follower_interval(&self) -> Interval {
        self.mesh
            .as_ref()
            .and_then(|m| m.follower_interval)
            .unwrap_or_else(|| {
                let advert = self.vip.advert_interval.get();
                let ms =
                    advert.as_secs_f64() * 1000.0 * crate::config::spec::FOLLOWER_INTERVAL_ADVERTS;
                Interval::from_millis(ms.round() as u64)
            })
    }

    /// True when the VIP's interface is the WireGuard mesh interface.
    pub fn vip_on_mesh(&self) -> bool {
        self.mesh
            .as_ref()
            .is_some_and(|mesh| mesh.interface == self.vip.interface)
    }

    /// The configured mode, else unicast on WireGuard (it has no multicast)
    /// and multicast elsewhere.
    pub fn vrrp_mode(&self) -> VrrpMode {
        self.vip.mode.unwrap_or(if self.vip_on_mesh() {
            VrrpMode::Unicast
        } else {
            VrrpMode::Multicast
        })
    }

    pub fn checksum_mode(&self) -> ChecksumMode {
        self.vip.checksum.unwrap_or(ChecksumMode::Keepalived)
    }

    pub fn node_interface<'a>(&'a self, node: &'a NodeSpec) -> &'a str {
        node.interface.as_deref().unwrap_or(&self.vip.interface)
    }

    /// Who a holder sends unicast adverts to: the configured list without
    /// itself, else every other VIP holder.
    pub fn unicast_peers_of(&self, node: &NodeSpec) -> Vec<IpAddr> {
        match &self.vip.unicast_peers {
            Some(list) => list
                .iter()
                .copied()
                .filter(|&a| a != node.address)
                .collect(),
            None => self
                .nodes_with(Role::Vip)
                .filter(|n| n.name != node.name)
                .map(|n| n.address)
                .collect(),
        }
    }

    /// A plane's ports and health check: the node's override, else `[plane]`,
    /// else the built-in default, field by field.
    pub fn plane_ports(&self, node: &NodeSpec) -> PlanePorts {
        self.plane_ports_with(node.plane.as_ref())
    }

    /// [`Self::plane_ports`] for a node's `[nodes.plane]` table (`None`: no overrides).
    pub fn plane_ports_with(&self, local: Option<&PlaneSettings>) -> PlanePorts {
        let cluster = &self.plane;
        macro_rules! pick {
            ($($field:ident).+) => {
                local.and_then(|p| p.$($field).+.clone()).or_else(|| cluster.$($field).+.clone())
            };
        }
        let kind = pick!(health.kind).unwrap_or(CheckKind::Https);
        PlanePorts {
            proxy_port: pick!(proxy_port).unwrap_or(defaults::PROXY_PORT),
            apiserver_port: pick!(apiserver_port).unwrap_or(defaults::APISERVER_PORT),
            health: HealthCheck {
                kind,
                path: match kind {
                    CheckKind::Https => {
                        Some(pick!(health.path).unwrap_or_else(|| defaults::HEALTH_PATH.to_owned()))
                    }
                    CheckKind::Tcp => None,
                },
                interval: pick!(health.interval).unwrap_or(defaults::HEALTH_INTERVAL),
                timeout: pick!(health.timeout).unwrap_or(defaults::HEALTH_TIMEOUT),
                rise: pick!(health.rise).unwrap_or(defaults::HEALTH_RISE),
                fall: pick!(health.fall).unwrap_or(defaults::HEALTH_FALL),
                ca_file: pick!(health.ca_file),
                insecure_skip_verify: pick!(health.insecure_skip_verify).unwrap_or(false),
                server_name: pick!(health.server_name),
            },
        }
    }

    /// With `[firewall] enabled`, the sources allowed in: the mesh network
    /// (or every node's address without a mesh) and `firewall.allow`.
    pub fn firewall_allowed(&self) -> Option<Vec<IpNet>> {
        if !self.firewall.enabled {
            return None;
        }
        let mut allowed: Vec<IpNet> = match &self.mesh {
            Some(mesh) => vec![mesh.network],
            None => self.nodes.iter().map(|n| IpNet::from(n.address)).collect(),
        };
        allowed.extend(self.firewall.allow.iter().copied());
        Some(allowed)
    }

    /// The resolved view of one node, for `vipd config show` and the daemon.
    pub fn plan(&self, name: &str) -> Option<NodePlan> {
        let node = self.node(name)?;
        let mut roles = node.roles.clone();
        roles.sort();
        roles.dedup();
        let api_endpoint = SocketAddr::new(self.vip.address, self.api.port.get());
        let apiserver_backends: Vec<Backend> = self
            .nodes_with(Role::Plane)
            .map(|plane| {
                let ports = self.plane_ports(plane);
                Backend {
                    node: plane.name.clone(),
                    address: SocketAddr::new(plane.address, ports.apiserver_port.get()),
                    local: plane.name == node.name,
                    check: ports.health,
                }
            })
            .collect();

        let vrrp = node.has_role(Role::Vip).then(|| self.vrrp_plan(node));
        let mut frontends = Vec::new();
        if node.has_role(Role::Plane) {
            let ports = self.plane_ports(node);
            frontends.push(Frontend {
                name: "plane",
                listen: SocketAddr::new(node.address, ports.proxy_port.get()),
                backends: apiserver_backends.clone(),
            });
        }
        if node.has_role(Role::Worker) && self.proxy.worker_local {
            let port = self.proxy.worker_port.get();
            for (name, loopback) in [
                ("worker", IpAddr::V4(Ipv4Addr::LOCALHOST)),
                ("worker6", IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ] {
                frontends.push(Frontend {
                    name,
                    listen: SocketAddr::new(loopback, port),
                    backends: apiserver_backends.clone(),
                });
            }
        }
        let mut dnat = None;
        if node.has_role(Role::Vip) {
            match self.api.datapath {
                Datapath::Proxy => frontends.push(Frontend {
                    name: "vip",
                    listen: api_endpoint,
                    backends: apiserver_backends.clone(),
                }),
                Datapath::Dnat => {
                    dnat = Some(DnatPlan {
                        destination: api_endpoint,
                        holder_address: node.address,
                        firewall: self.firewall_allowed(),
                        observe: self.api.observe,
                        targets: self
                            .nodes_with(Role::Plane)
                            .map(|plane| {
                                let ports = self.plane_ports(plane);
                                DnatTarget {
                                    node: plane.name.clone(),
                                    address: SocketAddr::new(plane.address, ports.proxy_port.get()),
                                    check: ports.health,
                                }
                            })
                            .collect(),
                    })
                }
            }
        }
        Some(NodePlan {
            cluster: self.cluster.name.clone(),
            node: node.name.clone(),
            address: node.address,
            roles,
            api_endpoint,
            vrrp,
            frontends,
            dnat,
            wireguard: self.wireguard_plan(node),
            follow: self.follow_plan(node),
        })
    }

    /// Whether the nodes follow the master over the mesh: the VIP is on
    /// the mesh interface and `mesh.follow` is on.
    pub fn mesh_follows(&self) -> bool {
        self.vip_on_mesh() && self.mesh.as_ref().is_some_and(|m| m.follow)
    }

    /// The nodes a holder sends its follower adverts to: every node of the
    /// mesh that is not a VIP holder (holders hear the ordinary adverts).
    pub fn followers(&self) -> Vec<IpAddr> {
        if !self.mesh_follows() {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|n| !n.has_role(Role::Vip) && n.wireguard.is_some())
            .map(|n| n.address)
            .collect()
    }

    /// How `node` follows the master on the mesh, if it does.
    fn follow_plan(&self, node: &NodeSpec) -> Option<FollowPlan> {
        if !self.mesh_follows() || node.wireguard.is_none() {
            return None;
        }
        let mesh = self.mesh.as_ref()?;
        let holder = node.has_role(Role::Vip);
        Some(FollowPlan {
            interface: mesh.interface.clone(),
            vip: IpNet::from(self.vip.address),
            vrid: self.vip.vrid,
            version: self.vip.version,
            checksum: (self.vip.version == 3 && self.vip.address.is_ipv4())
                .then(|| self.checksum_mode()),
            holders: self
                .nodes_with(Role::Vip)
                .filter_map(|h| {
                    Some(FollowedHolder {
                        node: h.name.clone(),
                        address: h.address,
                        public_key: h.wireguard.as_ref()?.public_key.clone(),
                    })
                })
                .collect(),
            interval: if holder {
                self.vip.advert_interval
            } else {
                self.follower_interval()
            },
            holder,
        })
    }

    fn vrrp_plan(&self, node: &NodeSpec) -> VrrpPlan {
        let mode = self.vrrp_mode();
        let v4 = self.vip.address.is_ipv4();
        VrrpPlan {
            interface: self.node_interface(node).to_owned(),
            vip: IpNet::new(self.vip.address, self.vip_prefix() as u8)
                .unwrap_or_else(|_| IpNet::from(self.vip.address)),
            vrid: self.vip.vrid,
            version: self.vip.version,
            priority: node.priority.unwrap_or(0),
            advert_interval: self.vip.advert_interval,
            mode,
            send_to: match mode {
                VrrpMode::Unicast => self.unicast_peers_of(node),
                VrrpMode::Multicast => vec![if v4 { VRRP_GROUP_V4 } else { VRRP_GROUP_V6 }],
            },
            preempt: self.vip.preempt,
            preempt_delay: self.vip.preempt_delay,
            auth_pass_secret: self
                .vip
                .auth_pass
                .as_ref()
                .and_then(|s| s.name().map(str::to_owned)),
            checksum: (self.vip.version == 3 && v4).then(|| self.checksum_mode()),
            announce: self.vip.announce.clone(),
            notify: self.vip.notify.clone(),
            trackers: self.trackers_of(node),
            designated_successor: self.is_designated_successor(node),
            alone: self.nodes_with(Role::Vip).all(|n| n.name == node.name)
                && self
                    .vip
                    .unicast_peers
                    .as_ref()
                    .is_none_or(|peers| peers.is_empty()),
            followers: self.followers(),
            follower_interval: self.follower_interval(),
        }
    }

    /// Whether `node` is the one backup that the file proves is the best
    /// after the master: the second-highest priority, strictly above the
    /// rest and strictly below the top. Only with `fast_takeover` and when
    /// the file lists every router of the VRID (no `unicast_peers` list,
    /// which names routers this file does not describe).
    pub fn is_designated_successor(&self, node: &NodeSpec) -> bool {
        if !self.vip.fast_takeover || self.vip.unicast_peers.is_some() {
            return false;
        }
        let mut priorities: Vec<u32> = self
            .nodes_with(Role::Vip)
            .filter_map(|n| n.priority)
            .collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        match (priorities.first(), priorities.get(1), node.priority) {
            (Some(&top), Some(&second), Some(own)) => {
                own == second
                    && second < top
                    && priorities.get(2).is_none_or(|&third| third < second)
            }
            _ => false,
        }
    }

    /// The trackers that apply to `node`: they watch a plane's own
    /// apiserver or proxy, so they apply to holders that are planes.
    pub fn trackers_of(&self, node: &NodeSpec) -> Vec<TrackerPlan> {
        if !node.has_role(Role::Plane) {
            return Vec::new();
        }
        let ports = self.plane_ports(node);
        self.vip
            .track
            .iter()
            .map(|tracker| {
                let (target, check) = match tracker.check {
                    TrackedCheck::Apiserver => (
                        SocketAddr::new(node.address, ports.apiserver_port.get()),
                        ports.health.clone(),
                    ),
                    TrackedCheck::Proxy => (
                        SocketAddr::new(node.address, ports.proxy_port.get()),
                        HealthCheck {
                            kind: CheckKind::Tcp,
                            path: None,
                            ca_file: None,
                            insecure_skip_verify: false,
                            server_name: None,
                            ..ports.health.clone()
                        },
                    ),
                };
                TrackerPlan {
                    check: tracker.check,
                    weight: tracker.weight,
                    target,
                    probe: HealthCheck {
                        interval: tracker.interval,
                        timeout: tracker.timeout,
                        rise: tracker.rise,
                        fall: tracker.fall,
                        ..check
                    },
                }
            })
            .collect()
    }

    fn wireguard_plan(&self, node: &NodeSpec) -> Option<WireguardPlan> {
        let mesh = self.mesh.as_ref()?;
        let own = node.wireguard.as_ref();
        Some(WireguardPlan {
            interface: mesh.interface.clone(),
            address: IpNet::new(node.address, mesh.network.prefix_len())
                .unwrap_or_else(|_| IpNet::from(node.address)),
            listen_port: mesh.listen_port,
            private_key_secret: own
                .and_then(|w| w.private_key.as_ref())
                .and_then(|s| s.name().map(str::to_owned)),
            peers: self
                .nodes
                .iter()
                .filter(|n| n.name != node.name)
                .filter_map(|peer| {
                    let wg = peer.wireguard.as_ref()?;
                    let mut allowed_ips = vec![IpNet::from(peer.address)];
                    allowed_ips.extend(wg.allowed_ips.iter().copied());
                    Some(WireguardPeerPlan {
                        node: peer.name.clone(),
                        public_key: wg.public_key.clone(),
                        endpoint: wg.endpoint.clone(),
                        allowed_ips,
                    })
                })
                .collect(),
        })
    }
}

/// Everything one node does, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePlan {
    pub cluster: String,
    pub node: String,
    pub address: IpAddr,
    pub roles: Vec<Role>,
    /// VIP:port, what clients use.
    pub api_endpoint: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<VrrpPlan>,
    pub frontends: Vec<Frontend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnat: Option<DnatPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireguardPlan>,
    /// On the mesh: how this node follows the VRRP master.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowPlan>,
}

/// How a node on the mesh routes the VIP to the master (`vipd_core`'s
/// follower, carried out on the WireGuard device).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowPlan {
    /// The WireGuard interface.
    pub interface: String,
    /// The VIP as an AllowedIPs entry (/32 or /128).
    pub vip: IpNet,
    pub vrid: u32,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ChecksumMode>,
    /// The VIP holders: the only senders followed, the only peers the VIP
    /// is routed to.
    pub holders: Vec<FollowedHolder>,
    /// How often this node hears the master: the follower interval, or on a
    /// holder the advert interval.
    pub interval: Interval,
    /// This node is a VIP holder itself.
    pub holder: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowedHolder {
    pub node: String,
    pub address: IpAddr,
    pub public_key: String,
}

impl NodePlan {
    /// VIP:port as this node's own proxy listens on it: a VIP holder with
    /// the `proxy` datapath (what the crash guard protects).
    pub fn vip_listener(&self) -> Option<SocketAddr> {
        self.vrrp.as_ref()?;
        self.frontends
            .iter()
            .find(|f| f.name == "vip")
            .map(|f| f.listen)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpPlan {
    pub interface: String,
    pub vip: IpNet,
    pub vrid: u32,
    pub version: u32,
    pub priority: u32,
    pub advert_interval: Interval,
    pub mode: VrrpMode,
    /// Where adverts go: the multicast group, or each unicast peer.
    pub send_to: Vec<IpAddr>,
    pub preempt: bool,
    pub preempt_delay: Interval,
    /// The name of the PASS secret; never its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_pass_secret: Option<String>,
    /// Only for VRRPv3 over IPv4, the one case with two conventions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ChecksumMode>,
    pub announce: AnnounceSection,
    pub notify: NotifySection,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trackers: Vec<TrackerPlan>,
    /// Takes over without Skew_Time (see `ClusterSpec::is_designated_successor`).
    pub designated_successor: bool,
    /// The mesh followers this holder sends adverts to as master.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<IpAddr>,
    /// Between two adverts to the followers (after the burst).
    pub follower_interval: Interval,
    /// No other router can take the VIP over: the file has no other VIP
    /// holder and `vip.unicast_peers` names none. A stop then gives the VIP
    /// up at once instead of waiting for a successor's advert.
    pub alone: bool,
}

/// A tracker as one node runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackerPlan {
    pub check: TrackedCheck,
    /// keepalived's semantics: 0 faults, negative lowers on failure,
    /// positive raises on success.
    pub weight: i32,
    pub target: SocketAddr,
    /// How it is probed: the tracker's interval, timeout, rise and fall.
    pub probe: HealthCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frontend {
    pub name: &'static str,
    pub listen: SocketAddr,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    pub node: String,
    pub address: SocketAddr,
    /// The apiserver on this very node (local-first balancing prefers it).
    pub local: bool,
    pub check: HealthCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnatPlan {
    /// VIP:port, rewritten in the kernel.
    pub destination: SocketAddr,
    /// The holder's own address: the source of SNAT'd flows when masquerade
    /// is not wanted, and where the firewall applies.
    pub holder_address: IpAddr,
    /// Each plane's proxy port; only the healthy ones are loaded.
    pub targets: Vec<DnatTarget>,
    /// Sources allowed to reach VIP:port, when the firewall is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Vec<IpNet>>,
    /// Whether unanswered rewritten connections mark a target down
    /// (`[api] observe`).
    pub observe: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnatTarget {
    pub node: String,
    pub address: SocketAddr,
    pub check: HealthCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireguardPlan {
    pub interface: String,
    pub address: IpNet,
    pub listen_port: Port,
    /// The name of the private key's secret; never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_secret: Option<String>,
    pub peers: Vec<WireguardPeerPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireguardPeerPlan {
    pub node: String,
    pub public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<IpNet>,
}
