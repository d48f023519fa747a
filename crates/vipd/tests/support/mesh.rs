//! A WireGuard mesh of nodes in network namespaces (root), built the way
//! `vipd lab --mesh wireguard` builds one (lab::mesh): every node is a
//! namespace on one underlay bridge (`eth0`, 198.18.0.HOST/24) with an
//! anchor holding a mount namespace of its own, wireguard-go on `wg99`
//! (198.19.0.HOST/24) in it, configured from `vipd render wireguard`,
//! `wg-quick strip` and `wg setconf`. The nodes that run vipd get `vipd
//! run` with one cluster file, in the same namespaces; the others only have
//! their WireGuard device (a worker that is a peer of everyone, say).
//! Dropping the [`Mesh`] kills what it started and deletes its namespaces
//! (its [`Topology`]), also on a panic.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;
use nix::sys::signal::Signal;
use vipd::lab::mesh::{
    self as lab_mesh, INTERFACE, NodeKeys, WIREGUARD_GO_ARGS, anchor_command, anchor_ready,
    in_node_command, secret_name,
};
use vipd::lab::netns::{Netns, Topology};
use vipd::mesh::wireguard::AllowedIps;

/// The VIP, on the mesh interface.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);
/// The cluster file's VRID.
pub const VRID: u8 = 51;

/// How long a route or a status may take to become what a test expects.
const SETTLE: Duration = Duration::from_secs(8);
const POLL: Duration = Duration::from_millis(50);

/// One node, as a test describes it.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    pub name: &'static str,
    /// The last octet of its underlay (198.18.0.x) and mesh (198.19.0.x)
    /// addresses.
    pub host: u8,
    /// The value of its `roles` field.
    pub roles: &'static str,
    /// Its VRRP priority (VIP holders).
    pub priority: Option<u8>,
    /// Whether it runs `vipd run`.
    pub runs_vipd: bool,
}

impl NodeSpec {
    /// A VIP holder that runs vipd.
    pub const fn holder(name: &'static str, host: u8, priority: u8) -> Self {
        Self {
            name,
            host,
            roles: r#"["vip"]"#,
            priority: Some(priority),
            runs_vipd: true,
        }
    }

    /// A VIP holder that runs no vipd (keepalived, say, started by the test).
    pub const fn foreign_holder(name: &'static str, host: u8, priority: u8) -> Self {
        Self {
            runs_vipd: false,
            ..Self::holder(name, host, priority)
        }
    }

    /// A plane that runs vipd.
    pub const fn plane(name: &'static str, host: u8) -> Self {
        Self {
            name,
            host,
            roles: r#"["plane"]"#,
            priority: None,
            runs_vipd: true,
        }
    }

    /// A worker with only its WireGuard device (no vipd).
    pub const fn bare_worker(name: &'static str, host: u8) -> Self {
        Self {
            name,
            host,
            roles: r#"["worker"]"#,
            priority: None,
            runs_vipd: false,
        }
    }
}

/// holder-1 (priority 150), holder-2 (100) and plane-1, all running vipd.
pub const TWO_HOLDERS_AND_A_PLANE: [NodeSpec; 3] = [
    NodeSpec::holder("holder-1", 1, 150),
    NodeSpec::holder("holder-2", 2, 100),
    NodeSpec::plane("plane-1", 11),
];

/// A node as built.
#[derive(Debug)]
pub struct Node {
    pub spec: NodeSpec,
    pub ns: Netns,
    pub keys: NodeKeys,
    /// Its anchor, whose mount namespace wireguard-go, `wg` and vipd join.
    anchor: u32,
    vipd_pid: Option<u32>,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Its rendered wg-quick file.
    pub conf: PathBuf,
}

impl Node {
    /// `program` inside the node: its network namespace and its anchor's
    /// mount namespace (where `wg` finds this node's device).
    pub fn command(&self, program: &str) -> Command {
        in_node_command(self.anchor, self.ns.name(), Path::new(program))
    }

    /// `program args...` inside the node, asserting success; its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} on {}: {}",
            self.spec.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn mesh_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 0, self.spec.host)
    }

    pub fn underlay_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, self.spec.host)
    }
}

/// The mesh: its nodes, the cluster file they share, the guard.
#[derive(Debug)]
pub struct Mesh {
    // First, so it is dropped first: the processes and namespaces go
    // before the directory of the files they use.
    topo: Topology,
    nodes: Vec<Node>,
    config: PathBuf,
    secrets: PathBuf,
    dir: tempfile::TempDir,
}

fn cluster_text<'a>(nodes: impl IntoIterator<Item = (&'a NodeSpec, &'a NodeKeys)>) -> String {
    let mut text = format!(
        r#"[cluster]
name = "meshtest"

[vip]
address = "{VIP}"
interface = "{INTERFACE}"
vrid = {VRID}
advert_interval = "100ms"

[mesh]
interface = "{INTERFACE}"
network = "198.19.0.0/24"
follower_interval = "200ms"

[plane.health]
kind = "tcp"
"#
    );
    for (spec, keys) in nodes {
        let NodeSpec {
            name, host, roles, ..
        } = spec;
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"{name}\"\nroles = {roles}\naddress = \"198.19.0.{host}\"\n"
        ));
        if let Some(priority) = spec.priority {
            text.push_str(&format!("priority = {priority}\n"));
        }
        text.push_str(&format!(
            "wireguard = {{ public_key = \"{}\", endpoint = \"198.18.0.{host}:51820\", private_key = {{ secret = \"{}\" }} }}\n",
            keys.public_key,
            secret_name(name)
        ));
    }
    text
}

fn vipd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vipd"))
}

impl Mesh {
    /// Builds every node of `specs` and starts vipd on those that run it.
    pub fn up(specs: &[NodeSpec]) -> Mesh {
        let topo = Topology::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<NodeKeys> = specs
            .iter()
            .map(|_| NodeKeys::generate().unwrap())
            .collect();
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, cluster_text(specs.iter().zip(&keys))).unwrap();
        let secrets = dir.path().join("secrets.toml");
        let secrets_text: String = specs
            .iter()
            .zip(&keys)
            .map(|(spec, key)| format!("{} = \"{}\"\n", secret_name(spec.name), key.private_key))
            .collect();
        std::fs::write(&secrets, secrets_text).unwrap();
        std::fs::set_permissions(
            &secrets,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut mesh = Mesh {
            topo,
            nodes: Vec::new(),
            config,
            secrets,
            dir,
        };
        for (spec, keys) in specs.iter().zip(keys) {
            let node = mesh.build_node(*spec, keys);
            mesh.nodes.push(node);
        }
        for index in 0..mesh.nodes.len() {
            if mesh.nodes[index].spec.runs_vipd {
                mesh.start(index);
            }
        }
        mesh
    }

    fn build_node(&mut self, spec: NodeSpec, keys: NodeKeys) -> Node {
        let name = spec.name;
        let ns = self.topo.add_host(name).unwrap();
        let underlay: IpNet = format!("198.18.0.{}/24", spec.host).parse().unwrap();
        self.topo.plug(&ns, "eth0", &[underlay]).unwrap();
        let mut command = anchor_command(ns.name());
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let anchor = self.topo.spawn(command).unwrap();
        assert!(
            Topology::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
                anchor_ready(anchor)
            }),
            "the mount namespace of {name} did not come up"
        );
        let mut command = in_node_command(anchor, ns.name(), Path::new("wireguard-go"));
        command
            .args(WIREGUARD_GO_ARGS)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.topo.spawn(command).unwrap();
        let plain = lab_mesh::render(
            Path::new(env!("CARGO_BIN_EXE_vipd")),
            &self.config,
            &self.secrets,
            name,
            self.dir.path(),
        )
        .unwrap();
        let node = Node {
            spec,
            ns,
            keys,
            anchor,
            vipd_pid: None,
            socket: self.dir.path().join(format!("{name}.sock")),
            log: self.dir.path().join(format!("{name}.log")),
            conf: self.dir.path().join(format!("{name}.conf")),
        };
        let mesh: IpNet = format!("{}/24", node.mesh_address()).parse().unwrap();
        lab_mesh::configure(
            anchor,
            node.ns.name(),
            &plain,
            &[mesh],
            Duration::from_secs(10),
        )
        .unwrap();
        node
    }

    /// `vipd run` on node `index`, in its network and mount namespaces.
    fn start(&mut self, index: usize) {
        let node = &self.nodes[index];
        let mut command = node.command(env!("CARGO_BIN_EXE_vipd"));
        command
            .args(["run", "-c"])
            .arg(&self.config)
            .arg("--secrets")
            .arg(&self.secrets)
            .args(["--node", node.spec.name, "--socket"])
            .arg(&node.socket)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&node.log)
                    .unwrap(),
            );
        let pid = self.topo.spawn(command).unwrap();
        self.nodes[index].vipd_pid = Some(pid);
    }

    fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Sends `signal` to node `name`'s vipd (it is then no longer counted
    /// as running: start it again with [`Mesh::start_vipd`]).
    pub fn signal_vipd(&mut self, name: &str, signal: Signal) {
        let index = self.index(name);
        let pid = self.nodes[index]
            .vipd_pid
            .take()
            .unwrap_or_else(|| panic!("no vipd runs on {name}"));
        self.topo.signal(pid, signal).unwrap();
    }

    /// Starts node `name`'s vipd (again), appending to its log.
    pub fn start_vipd(&mut self, name: &str) {
        let index = self.index(name);
        self.start(index);
    }

    /// Starts `command` (made with [`Node::command`]); it is killed with
    /// the mesh.
    pub fn spawn(&mut self, command: Command) -> u32 {
        self.topo.spawn(command).unwrap()
    }

    /// Sends `signal` to a process [`Mesh::spawn`] started.
    pub fn signal(&mut self, pid: u32, signal: Signal) {
        self.topo.signal(pid, signal).unwrap();
    }

    /// A scratch directory the mesh removes with itself.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster file and the secrets file the nodes share.
    pub fn files(&self) -> (&Path, &Path) {
        (&self.config, &self.secrets)
    }

    /// The metrics of node `name` (`GET /metrics` on its control socket).
    pub fn metrics(&self, name: &str) -> String {
        let response =
            vipd::api::client::request(&self.node(name).socket, "GET", "/metrics").unwrap();
        assert_eq!(response.status, 200);
        String::from_utf8(response.body).unwrap()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Every vipd log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.spec.runs_vipd)
            .map(|n| {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                format!("---- {}\n{log}", n.spec.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The peer (public key) whose AllowedIPs hold the VIP on a node's
    /// device, asserting that at most one does.
    pub fn vip_peer(&self, name: &str) -> Option<String> {
        let text = self
            .node(name)
            .run("wg", &["show", INTERFACE, "allowed-ips"]);
        let device = AllowedIps::parse(&text).unwrap();
        let holders = device.holders_of(IpNet::from(std::net::IpAddr::V4(VIP)));
        assert!(holders.len() <= 1, "the VIP on two peers of {name}: {text}");
        holders.first().map(|k| (*k).to_owned())
    }

    /// Whether node `name`'s vipd runs (started and not signalled since).
    pub fn runs_vipd(&self, name: &str) -> bool {
        self.node(name).vipd_pid.is_some()
    }

    /// Waits until every node whose vipd runs routes the VIP to `master`'s
    /// peer, and `master` to no peer (it holds the VIP). Every device is
    /// read each time, the other nodes' too: none may have the VIP on two
    /// peers.
    pub fn routes_to(&self, master: &str) -> bool {
        let master_key = self.node(master).keys.public_key.as_str();
        Topology::wait_for(SETTLE, POLL, || {
            let mut all = true;
            for node in &self.nodes {
                let peer = self.vip_peer(node.spec.name);
                let want = (node.spec.name != master).then_some(master_key);
                all &= node.vipd_pid.is_none() || peer.as_deref() == want;
            }
            all
        })
    }

    /// `vipd status --json` of a node (`null` while it does not answer).
    pub fn status(&self, name: &str) -> serde_json::Value {
        let output = vipd()
            .args(["status", "--json", "--socket"])
            .arg(&self.node(name).socket)
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until node `name`'s status says it follows `holder`, and
    /// returns that status.
    pub fn follows(&self, name: &str, holder: &str) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let ok = Topology::wait_for(SETTLE, POLL, || {
            last = self.status(name);
            last["follow"]["route"] == "holder" && last["follow"]["holder"] == holder
        });
        assert!(
            ok,
            "{name} does not follow {holder}: {last}\n{}",
            self.logs()
        );
        last
    }

    /// Rewrites the cluster file with `priority` for holder `name` (the
    /// daemons read it on their next reload).
    pub fn set_priority(&mut self, name: &str, priority: u8) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        node.spec.priority = Some(priority);
        let text = cluster_text(self.nodes.iter().map(|n| (&n.spec, &n.keys)));
        std::fs::write(&self.config, text).unwrap();
    }

    /// `vipd reload` on every node that runs vipd, asserting each one
    /// took the file; what each printed, by node.
    pub fn reload_all(&self) -> Vec<(&'static str, String)> {
        self.nodes
            .iter()
            .filter(|n| n.spec.runs_vipd)
            .map(|node| {
                let output = vipd()
                    .args(["reload", "--socket"])
                    .arg(&node.socket)
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "reload on {}: {}{}",
                    node.spec.name,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
                (
                    node.spec.name,
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                )
            })
            .collect()
    }
}
