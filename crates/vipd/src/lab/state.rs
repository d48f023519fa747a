//! The lab's state directory: what `vipd lab up` made, so that `drill`,
//! `status` and `down` (separate processes) find it again.
//!
//! ```text
//! DIR/                     default /run/vipd-lab (`--dir`)
//!   state.json             this file's `LabState`: run id, namespaces, pids
//!   cluster.toml           the cluster file, generated from examples/lab.toml
//!   ca.crt                 the lab CA (PEM), what the health checks trust
//!   pki/NODE.crt, .key     each plane's stand-in apiserver certificate
//!   classic/               keepalived and HAProxy configs (`--stack classic`)
//!   secrets.toml           the nodes' WireGuard private keys (`--mesh wireguard`, 0600)
//!   mesh/NODE.conf         each node's `vipd render wireguard`, and NODE.wg (stripped)
//!   logs/NODE.PROGRAM.log  every process's stdout and stderr
//! ```
//!
//! `state.json` is written before the first namespace exists and after every
//! change (through a temporary file and a rename), so a lab interrupted
//! half-way is still known to `down`.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default state directory.
pub const DEFAULT_DIR: &str = "/run/vipd-lab";
/// Prefix of every lab namespace (the test helpers use `vt`, and never
/// reap a lab's namespaces).
pub const NS_PREFIX: &str = "vl";

/// Where the cluster's addresses live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// On the bridge: the VIP on `eth0`, VRRP multicast.
    #[default]
    Lan,
    /// On a WireGuard mesh over the bridge: the VIP on `wg99`.
    Wireguard,
}

impl Network {
    /// The third octet's network: 198.18.0.0/24 on the LAN, 198.19.0.0/24 on the mesh.
    fn octets(self) -> [u8; 3] {
        match self {
            Network::Lan => [198, 18, 0],
            Network::Wireguard => [198, 19, 0],
        }
    }

    /// The cluster's address `host` (198.18.0.host or 198.19.0.host).
    pub fn address(self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.octets();
        Ipv4Addr::new(a, b, c, host)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Lan => "lan",
            Network::Wireguard => "wireguard",
        }
    }

    /// For progress lines: where the cluster is.
    pub fn describe(self) -> &'static str {
        match self {
            Network::Lan => "on the bridge",
            Network::Wireguard => "on a WireGuard mesh",
        }
    }
}

/// Which software runs the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// vipd on every holder and plane.
    Vipd,
    /// keepalived + HAProxy (+ a static DNAT table), configured by `vipd render`.
    Classic,
}

impl Stack {
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Vipd => "vipd",
            Stack::Classic => "classic",
        }
    }
}

/// Where the lab is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `up` is building it (or died doing so: `down` cleans it).
    Building,
    /// Every namespace and process is there.
    Up,
}

/// One host of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub roles: Vec<String>,
    pub namespace: String,
    /// The node's address in the cluster file (on the mesh with `--mesh`).
    pub address: IpAddr,
    /// Its address on the bridge, when that is not `address` (the mesh's
    /// underlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<IpAddr>,
    /// Running processes by what they are (`vipd`, `apiserver`,
    /// `keepalived`, `haproxy`; on the mesh `anchor` and `wireguard-go`)
    /// -> pid.
    #[serde(default)]
    pub pids: BTreeMap<String, u32>,
}

impl NodeState {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Its address on the bridge.
    pub fn underlay(&self) -> IpAddr {
        self.underlay.unwrap_or(self.address)
    }
}

/// Everything `down` needs to remove the lab, and `drill` to drive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub run_id: String,
    pub phase: Phase,
    pub stack: Stack,
    /// The bridge alone, or a WireGuard mesh over it.
    #[serde(default)]
    pub network: Network,
    /// Whether `up` created the directory itself (then `down` removes it).
    pub created_dir: bool,
    /// Every namespace made, in the order made (hub first).
    pub namespaces: Vec<String>,
    pub nodes: Vec<NodeState>,
    /// Files and directories inside DIR that `up` made.
    pub files: Vec<PathBuf>,
}

impl LabState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn load(dir: &Path) -> io::Result<Option<Self>> {
        match std::fs::read_to_string(Self::path(dir)) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                io::Error::other(format!(
                    "{} is not a lab state file ({e}); remove it by hand if no lab is running",
                    Self::path(dir).display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the state through a temporary file and a rename: never half a file.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        write_atomic(&Self::path(dir), text.as_bytes())
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeState> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    pub fn with_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a NodeState> + 'a {
        self.nodes.iter().filter(move |n| n.has_role(role))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A run id: short, unique enough for namespaces made at the same time
/// (the pid and the clock), hex.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or(0);
    let mixed = (std::process::id().wrapping_mul(2_654_435_761)) ^ nanos;
    format!("{NS_PREFIX}{:06x}", mixed & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_short_and_prefixed() {
        let id = new_run_id();
        assert!(id.starts_with(NS_PREFIX));
        assert_eq!(id.len(), NS_PREFIX.len() + 6);
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = LabState {
            run_id: "vl123456".into(),
            phase: Phase::Building,
            stack: Stack::Vipd,
            network: Network::Lan,
            created_dir: false,
            namespaces: vec!["vl123456-hub".into()],
            nodes: vec![],
            files: vec![],
        };
        state.save(dir.path()).unwrap();
        let back = LabState::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.run_id, "vl123456");
        assert_eq!(back.phase, Phase::Building);
        std::fs::write(LabState::path(dir.path()), "{").unwrap();
        assert!(LabState::load(dir.path()).is_err());
    }
}
