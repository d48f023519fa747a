//! The cluster file, as written: one TOML document describing the whole
//! cluster. docs/config.md documents every field here; keep them in step.
//!
//! These types only describe shape and per-value limits. Rules that relate
//! fields to each other (a VIP inside the mesh, one priority per holder, ...)
//! live in [`super::rules`], and what each node derives from the node list
//! lives in [`super::resolve`].

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::values::{Interval, Port, SecretField};

/// The built-in defaults, in one place so docs/config.md can be checked against them.
pub mod defaults {
    use super::{Interval, Port};

    pub const API_PORT: Port = Port(6443);
    pub const PROXY_PORT: Port = Port(16443);
    pub const APISERVER_PORT: Port = Port(6443);
    pub const VRRP_VERSION: u32 = 3;
    pub const ADVERT_INTERVAL: Interval = Interval::from_secs(1);
    pub const HEALTH_PATH: &str = "/readyz";
    pub const HEALTH_INTERVAL: Interval = Interval::from_secs(2);
    pub const HEALTH_TIMEOUT: Interval = Interval::from_secs(1);
    pub const HEALTH_RISE: u32 = 2;
    pub const HEALTH_FALL: u32 = 3;
    pub const DNS_VIP_NAME: &str = "k8s-api";
    pub const SECRETS_FILE: &str = "secrets.toml";
    pub const WIREGUARD_LISTEN_PORT: Port = Port(51820);
    pub const ANNOUNCE_COUNT: u32 = 5;
    pub const ANNOUNCE_INTERVAL: Interval = Interval::from_millis(10);
    pub const ANNOUNCE_REPEAT_AFTER: Interval = Interval::from_secs(5);
    pub const NOTIFY_TIMEOUT: Interval = Interval::from_secs(30);
    pub const TRACK_INTERVAL: Interval = Interval::from_secs(1);
    pub const TRACK_TIMEOUT: Interval = Interval::from_millis(500);
    pub const CONNECT_TIMEOUT: Interval = Interval::from_secs(3);
    pub const IDLE_TIMEOUT: Interval = Interval::from_secs(3600);
    pub const MAX_CONNECTIONS: u32 = 10_000;
    pub const DRAIN_TIMEOUT: Interval = Interval::from_secs(30);
    pub const METRICS_LISTEN: &str = "127.0.0.1:9650";
}

/// The whole cluster file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub cluster: ClusterSection,
    pub vip: VipSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub plane: PlaneSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSection>,
    #[serde(default)]
    pub dns: DnsSection,
    #[serde(default)]
    pub firewall: FirewallSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
}

/// `[metrics]`: where the daemon serves Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `GET /metrics`. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The address, on every node. Default 127.0.0.1:9650 (scrape it
    /// through the node, or set the node's mesh address to scrape over
    /// the mesh).
    #[serde(default = "default_metrics_listen")]
    pub listen: std::net::SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> std::net::SocketAddr {
    defaults::METRICS_LISTEN
        .parse()
        .expect("the default metrics address parses")
}

/// How a proxy picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each new connection to the next healthy backend.
    RoundRobin,
    /// The healthy backend with the fewest active connections.
    LeastConn,
    /// The node's own apiserver while it is healthy, the others (least
    /// connections) only when it is not. Elsewhere the same as least-conn.
    LocalFirst,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
            Balance::LocalFirst => "local-first",
        }
    }
}

/// `[proxy]`: the L4 proxy of planes, of `proxy`-datapath VIP holders and of
/// workers in node-local mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Default `local-first` (a plane prefers its own apiserver).
    #[serde(default = "default_balance")]
    pub balance: Balance,
    /// A backend that does not accept within this is skipped for the next.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Interval,
    /// A session idle this long in both directions is closed. Long, so
    /// watches, `logs -f` and `exec` survive. Default 1h.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Interval,
    /// At most this many sessions per listener; past it, new connections
    /// wait in the kernel's accept queue instead of being refused.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// On stop, established sessions get this long to finish.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Interval,
    /// Close the sessions of a backend marked down (HAProxy's
    /// `on-marked-down shutdown-sessions`). Default false.
    #[serde(default)]
    pub close_sessions_on_down: bool,
    /// Send a PROXY protocol v2 header to backends. Default false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Forward with splice(2) (zero copy) rather than through a buffer.
    /// Default true.
    #[serde(default = "default_true")]
    pub splice: bool,
    /// Workers listen on 127.0.0.1 and [::1] at `worker_port` and balance
    /// over every plane (the kubespray / k3s node-local pattern).
    #[serde(default)]
    pub worker_local: bool,
    #[serde(default = "default_worker_port")]
    pub worker_port: Port,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            balance: default_balance(),
            connect_timeout: default_connect_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            drain_timeout: default_drain_timeout(),
            close_sessions_on_down: false,
            proxy_protocol: false,
            splice: true,
            worker_local: false,
            worker_port: default_worker_port(),
        }
    }
}

fn default_balance() -> Balance {
    Balance::LocalFirst
}

fn default_connect_timeout() -> Interval {
    defaults::CONNECT_TIMEOUT
}

fn default_idle_timeout() -> Interval {
    defaults::IDLE_TIMEOUT
}

fn default_max_connections() -> u32 {
    defaults::MAX_CONNECTIONS
}

fn default_drain_timeout() -> Interval {
    defaults::DRAIN_TIMEOUT
}

fn default_worker_port() -> Port {
    defaults::API_PORT
}

/// `[firewall]`: who may reach VIP:port and the plane proxy ports. Written
/// into vipd's own nftables table; replaces the seed's UFW rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSection {
    /// Drop (and count) what comes from anywhere else. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Sources allowed besides the mesh network (or, without a mesh, the
    /// nodes' own addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IpNet>,
}

/// `[cluster]`: names and files that concern the whole cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// A DNS label naming the cluster (logs, metrics, the lab).
    pub name: String,
    /// Where the secrets live, relative to the cluster file. Default `secrets.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_file: Option<PathBuf>,
    /// The age-encrypted vault, relative to the cluster file. When set, it
    /// replaces `secrets_file`; nodes open it with their identity file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<PathBuf>,
}

/// How VRRP peers find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpMode {
    /// To 224.0.0.18 / ff02::12: LANs and bridges.
    Multicast,
    /// To each peer's address: WireGuard and any network without multicast.
    Unicast,
}

/// The VRRPv3-over-IPv4 checksum convention (IPv6 and VRRPv2 have only one).
/// The keepalived 2.2.7 captures in crates/vipd-core/tests/vectors/ show
/// which is which: keepalived's default includes the pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumMode {
    /// RFC 9568: the checksum covers the VRRP message alone.
    Rfc9568,
    /// What keepalived sends by default: the IPv4 pseudo-header is included.
    Keepalived,
}

/// `[vip]`: the floating address and the VRRP instance that holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// The virtual IP: what kubeadm's controlPlaneEndpoint and every worker use.
    pub address: IpAddr,
    /// Prefix length the VIP is added with. Default 32 (IPv4) or 128 (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u32>,
    /// Interface the VIP lives on, on every holder unless a node overrides it.
    pub interface: String,
    /// The Virtual Router ID, 1..=255. One per VIP on a network.
    pub vrid: u32,
    /// VRRP version: 2 (RFC 3768) or 3 (RFC 5798). Default 3.
    #[serde(default = "default_vrrp_version")]
    pub version: u32,
    /// Advertisement interval. v2: whole seconds; v3: 10 ms steps up to 40.95 s.
    #[serde(default = "default_advert_interval")]
    pub advert_interval: Interval,
    /// `multicast` or `unicast`. Default: unicast on the mesh interface, multicast elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VrrpMode>,
    /// Unicast peers, when they must be listed by hand (a keepalived router
    /// that is not a node of this file). Default: every other VIP holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unicast_peers: Option<Vec<IpAddr>>,
    /// A higher-priority backup takes over from a lower-priority master. Default true.
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// After start-up, wait this long before preempting. Default 0s.
    #[serde(default)]
    pub preempt_delay: Interval,
    /// VRRPv2 simple-text authentication (RFC 2338 PASS; at most 8 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_pass: Option<SecretField>,
    /// VRRPv3 over IPv4 checksum convention. Default `keepalived`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ChecksumMode>,
    /// The designated successor (the second-highest priority) skips
    /// Skew_Time. Default true; it assumes this file lists every router of
    /// the VRID (it is off when `unicast_peers` names others).
    #[serde(default = "default_true")]
    pub fast_takeover: bool,
    /// Gratuitous ARP / unsolicited NA on becoming master.
    #[serde(default)]
    pub announce: AnnounceSection,
    /// Commands run on state changes (keepalived's notify scripts).
    #[serde(default)]
    pub notify: NotifySection,
    /// Health trackers that lower this holder's priority or fault it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track: Vec<Tracker>,
}

/// `[vip.announce]`: how a new master tells the link where the VIP is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceSection {
    /// Frames per burst (keepalived's `garp_master_repeat`). Default 5.
    #[serde(default = "default_announce_count")]
    pub count: u32,
    /// Between two frames of a burst (keepalived's `garp_interval`). Default 10ms.
    #[serde(default = "default_announce_interval")]
    pub interval: Interval,
    /// A second burst this long after the first, "0s" for none
    /// (keepalived's `garp_master_delay`). Default 5s.
    #[serde(default = "default_announce_repeat")]
    pub repeat_after: Interval,
}

impl Default for AnnounceSection {
    fn default() -> Self {
        Self {
            count: default_announce_count(),
            interval: default_announce_interval(),
            repeat_after: default_announce_repeat(),
        }
    }
}

fn default_announce_count() -> u32 {
    defaults::ANNOUNCE_COUNT
}

fn default_announce_interval() -> Interval {
    defaults::ANNOUNCE_INTERVAL
}

fn default_announce_repeat() -> Interval {
    defaults::ANNOUNCE_REPEAT_AFTER
}

/// `[vip.notify]`: a command (program and arguments, no shell) per state.
/// Each runs with VIPD_* variables describing the change, never blocking
/// the state machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Vec<String>>,
    /// On a stop (the instance leaves service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// On every change, after the state's own command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<String>>,
    /// A command still running after this long is killed. Default 30s.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Interval,
}

fn default_notify_timeout() -> Interval {
    defaults::NOTIFY_TIMEOUT
}

/// What a tracker watches on the node itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackedCheck {
    /// The node's own kube-apiserver, with the plane's health check
    /// (HTTPS /readyz by default). Planes only.
    Apiserver,
    /// The node's own plane proxy port, with a TCP connect. Planes only.
    Proxy,
}

/// `[[vip.track]]`: one tracker, with keepalived's weight semantics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracker {
    pub check: TrackedCheck,
    /// 0: the instance goes to fault while the check fails. Negative: the
    /// priority drops by that much while it fails. Positive: the priority
    /// rises by that much while it succeeds. Default 0.
    #[serde(default)]
    pub weight: i32,
    #[serde(default = "default_track_interval")]
    pub interval: Interval,
    #[serde(default = "default_track_timeout")]
    pub timeout: Interval,
    #[serde(default = "default_track_rise")]
    pub rise: u32,
    #[serde(default = "default_track_fall")]
    pub fall: u32,
}

fn default_track_interval() -> Interval {
    defaults::TRACK_INTERVAL
}

fn default_track_timeout() -> Interval {
    defaults::TRACK_TIMEOUT
}

fn default_track_rise() -> u32 {
    defaults::HEALTH_RISE
}

fn default_track_fall() -> u32 {
    defaults::HEALTH_FALL
}

fn default_vrrp_version() -> u32 {
    defaults::VRRP_VERSION
}

fn default_advert_interval() -> Interval {
    defaults::ADVERT_INTERVAL
}

fn default_true() -> bool {
    true
}

/// Where traffic for VIP:port goes on the VIP holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// The kernel rewrites VIP:port to a healthy plane's proxy port (the seed's design).
    #[default]
    Dnat,
    /// The VIP holder accepts on VIP:port and proxies to the kube-apiservers itself.
    Proxy,
}

/// `[api]`: the Kubernetes API endpoint clients use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The port on the VIP. Default 6443.
    #[serde(default = "default_api_port")]
    pub port: Port,
    /// `dnat` or `proxy`. Default `dnat`.
    #[serde(default)]
    pub datapath: Datapath,
    /// `dnat` datapath: watch the rewritten connections and mark a plane
    /// down when it leaves `fall` of them in a row unanswered past its
    /// check's timeout. Default true.
    #[serde(default = "default_true")]
    pub observe: bool,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            port: defaults::API_PORT,
            datapath: Datapath::default(),
            observe: true,
        }
    }
}

fn default_api_port() -> Port {
    defaults::API_PORT
}

/// How a kube-apiserver's health is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// HTTPS GET of `path`; healthy on a 200.
    Https,
    /// A TCP connect; healthy when it completes.
    Tcp,
}

/// `[plane.health]` and `[nodes.plane.health]`. Every field is optional so a
/// node can override one of them; unset fields fall back to the cluster-wide
/// value, then to the built-in default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CheckKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// The cluster CA the apiserver certificate is verified against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (checks still need a TLS handshake and a 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// SNI and certificate name. Default: the plane's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `[plane]` (cluster-wide) and `[nodes.plane]` (one node): the ports and
/// health check of a control plane.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaneSettings {
    /// Where the plane's proxy listens on its mesh address (the seed's HAProxy frontend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_port: Option<Port>,
    /// Where the local kube-apiserver listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apiserver_port: Option<Port>,
    #[serde(default)]
    pub health: HealthSettings,
}

/// `[mesh]`: the WireGuard network the nodes share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    /// The WireGuard interface, e.g. `wg99`.
    pub interface: String,
    /// The mesh network; every node address is inside it.
    pub network: IpNet,
    /// WireGuard's UDP port. Default 51820.
    #[serde(default = "default_wireguard_port")]
    pub listen_port: Port,
    /// With the VIP on the mesh interface, every node follows the VRRP
    /// master: vipd keeps the VIP in the AllowedIPs of the master's peer
    /// and moves it on a failover. Default true.
    #[serde(default = "default_true")]
    pub follow: bool,
    /// How often a master sends the followers an advert, after the burst
    /// it sends them on taking over. Default: 1.5 × `vip.advert_interval`
    /// ([`ClusterSpec::follower_interval`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follower_interval: Option<Interval>,
}

/// The default follower interval, in advert intervals: a dead master's
/// last advert to a follower is then overdue (1.25 intervals) before a
/// backup's Master_Down_Interval (3 advert intervals and the skew, from
/// an advert up to one interval older) ends, so the followers take the new
/// master's first advert at once: 1.25 × 1.5 = 1.875 < 2.
pub const FOLLOWER_INTERVAL_ADVERTS: f64 = 1.5;

/// The longest follower interval, in advert intervals, with which a
/// follower still re-points on the new master's first advert after a crash
/// (1.25 × it ≤ 2 advert intervals).
pub const FOLLOWER_INTERVAL_PROMPT_ADVERTS: f64 = 1.6;

fn default_wireguard_port() -> Port {
    defaults::WIREGUARD_LISTEN_PORT
}

/// `[dns]`: names the cluster publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// The zone names live in, e.g. `cluster.example.`. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The VIP's name (the seed's `k8s-api` record). Default `k8s-api`.
    #[serde(default = "default_vip_name")]
    pub vip_name: String,
}

impl Default for DnsSection {
    fn default() -> Self {
        Self {
            zone: None,
            vip_name: defaults::DNS_VIP_NAME.to_owned(),
        }
    }
}

fn default_vip_name() -> String {
    defaults::DNS_VIP_NAME.to_owned()
}

/// What a node does. A node may have several roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the VIP with VRRP (the seed's keepalived host).
    Vip,
    /// Runs a kube-apiserver and the plane proxy in front of it.
    Plane,
    /// Runs workloads and reaches the API through the VIP.
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Vip => "vip",
            Role::Plane => "plane",
            Role::Worker => "worker",
        }
    }
}

/// `[[nodes]]`: one machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name (its hostname; a DNS label).
    pub name: String,
    pub roles: Vec<Role>,
    /// The node's address on the mesh (or LAN): what peers, DNAT and checks use.
    pub address: IpAddr,
    /// The interface for the VIP on this node. Default `vip.interface`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// VRRP priority, 1..=254 (255: the VIP is this node's own address). Required for `vip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// How Ansible or an operator reaches the node (the inventory address). Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Overrides of `[plane]` for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<PlaneSettings>,
    /// This node's WireGuard peer entry. Required when `[mesh]` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireguardPeer>,
}

impl NodeSpec {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// `[nodes.wireguard]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardPeer {
    /// The node's public key, base64 as `wg pubkey` prints it.
    pub public_key: String,
    /// Where the other nodes reach it: `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The node's private key: a reference to a secret, never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretField>,
    /// Extra AllowedIPs besides the node's own address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<IpNet>,
}
