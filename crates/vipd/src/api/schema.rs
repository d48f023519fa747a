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
