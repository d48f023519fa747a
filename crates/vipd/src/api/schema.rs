//! The status document: what `GET /v1/status` returns and `vipd status
//! --json` prints. Its shape is a documented interface (docs/operations.md,
//! "Status schema"): fields are added, never renamed or removed, within one
//! `schema` number.

use serde::{Deserialize, Serialize};

use crate::health::record::LastCheck;
use crate::nftables::DnatStatus;
use crate::vrrp::status::VrrpStatus;

/// Bumped only for an incompatible change.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDocument {
    pub schema: u32,
    pub vipd_version: String,
    pub cluster: String,
    pub node: String,
    pub roles: Vec<String>,
    pub pid: u32,
    /// Seconds since the Unix epoch, like every timestamp here.
    pub started_at: f64,
    pub config: ConfigStatus,
    /// The last reload attempt, successful or not.
    pub last_reload: Option<ReloadOutcome>,
    /// The VRRP instance, on a node with the `vip` role.
    pub vrrp: Option<VrrpStatus>,
    pub frontends: Vec<FrontendStatus>,
    /// The DNAT datapath, on a VIP holder with `api.datapath = "dnat"`.
    pub dnat: Option<DnatStatus>,
    /// On the WireGuard mesh: where this node routes the VIP.
    #[serde(default)]
    pub follow: Option<FollowStatus>,
}

/// Where a node on the mesh routes the VIP (`follow` in the status
/// document): to the WireGuard peer of the master it follows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FollowStatus {
    pub interface: String,
    /// The VIP as an AllowedIPs entry.
    pub vip: String,
    /// The VIP holders followed (node names), in the file's order.
    #[serde(default)]
    pub holders: Vec<String>,
    /// `holder` (routed to `holder`'s peer), `local` (this node is master)
    /// or `nowhere` (no master trusted).
    pub route: String,
    /// The followed holder's node name and mesh address, when `holder`.
    pub holder: Option<String>,
    pub holder_address: Option<std::net::IpAddr>,
    /// Its WireGuard public key: the peer the VIP is on.
    pub peer: Option<String>,
    /// The priority it advertised last.
    pub holder_priority: Option<u8>,
    /// When the route last changed (Unix seconds), and why.
    pub since: f64,
    pub reason: String,
    /// Route changes since start.
    pub changes: u64,
    /// Whether the device carries the route (false while `wg` fails: then
    /// `error` says why and vipd retries).
    pub applied: bool,
    pub error: Option<String>,
    /// Times the device was found routing the VIP elsewhere than this
    /// route (changed outside vipd) and was put back.
    #[serde(default)]
    pub repairs: u64,
    /// How long the last change of the device took, in milliseconds.
    pub last_change_ms: Option<f64>,
    pub adverts_received: u64,
    /// Adverts dropped, by reason (`not_a_holder`, `off_mesh_interface`,
    /// `ttl_not_255`, ...).
    pub dropped: std::collections::BTreeMap<String, u64>,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub file: String,
    pub loaded_at: f64,
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
}

/// What a reload did: its changes, or why the file was refused (the
/// running configuration then stays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub at: f64,
    pub ok: bool,
    /// `signal` (SIGHUP) or `api` (`vipd reload`).
    pub trigger: String,
    /// Why the reload was refused, one entry per problem.
    pub errors: Vec<String>,
    /// What changed, one line each (`frontend plane: backend cp-4 added`).
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontendStatus {
    /// `plane`, `vip` or `worker`.
    pub name: String,
    pub listen: String,
    pub balance: String,
    pub accepted: u64,
    pub active: u64,
    /// Clients no backend accepted.
    pub refused: u64,
    /// Connects that failed before another backend accepted.
    pub retries: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub address: String,
    /// The apiserver of this node (local-first prefers it).
    pub local: bool,
    pub healthy: bool,
    pub active: u64,
    pub total: u64,
    pub connect_failures: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub last_check: Option<LastCheck>,
}
