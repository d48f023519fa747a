//! The operator's window into a running daemon.
//!
//! - [`schema`]: the status document (`vipd status --json`), a stable interface;
//! - [`server`]: the control socket (HTTP over a Unix socket, root only:
//!   `GET /v1/status`, `POST /v1/reload`, `GET /metrics`) and the metrics
//!   listener;
//! - [`metrics`]: the Prometheus exposition, read from the same live state
//!   as the status at scrape time (no second set of books);
//! - [`client`]: what `vipd status` and `vipd reload` use to talk to the socket.
//!
//! The subsystems publish into [`State`]; the API only reads it.

pub mod client;
pub mod metrics;
pub mod schema;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::health::record::unix_now;
use crate::mesh::follow::SharedFollowStatus;
use crate::nftables::SharedDnatStatus;
use crate::proxy::frontend::Frontend;
use crate::vrrp::status::SharedVrrpStatus;
use schema::{BackendStatus, ConfigStatus, FrontendStatus, ReloadOutcome, StatusDocument};

/// Where the default control socket lives (systemd's RuntimeDirectory=vipd).
pub const DEFAULT_SOCKET: &str = "/run/vipd/vipd.sock";

/// The live state of a daemon, shared by its subsystems and its API.
#[derive(Debug)]
pub struct State {
    pub cluster: String,
    pub node: String,
    pub roles: Vec<String>,
    pub started_at: f64,
    pub config_file: String,
    inner: Mutex<Inner>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    frontends: Vec<Arc<Frontend>>,
    vrrp: Option<SharedVrrpStatus>,
    dnat: Option<SharedDnatStatus>,
    follow: Option<SharedFollowStatus>,
    generation: u64,
    loaded_at: f64,
    last_reload: Option<ReloadOutcome>,
}

impl State {
    pub fn new(cluster: &str, node: &str, roles: Vec<String>, config_file: &str) -> Self {
        let now = unix_now();
        Self {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            roles,
            started_at: now,
            config_file: config_file.to_owned(),
            inner: Mutex::new(Inner {
                generation: 1,
                loaded_at: now,
                ..Inner::default()
            }),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The subsystems running now (replaced whole after a reload).
    pub fn set_subsystems(
        &self,
        frontends: Vec<Arc<Frontend>>,
        vrrp: Option<SharedVrrpStatus>,
        dnat: Option<SharedDnatStatus>,
    ) {
        let mut inner = self.inner();
        inner.frontends = frontends;
        inner.vrrp = vrrp;
        inner.dnat = dnat;
    }

    pub fn record_reload(&self, outcome: ReloadOutcome) {
        let counter = if outcome.ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner();
        if outcome.ok {
            inner.generation += 1;
            inner.loaded_at = outcome.at;
        }
        inner.last_reload = Some(outcome);
    }

    pub fn frontends(&self) -> Vec<Arc<Frontend>> {
        self.inner().frontends.clone()
    }

    pub fn vrrp(&self) -> Option<SharedVrrpStatus> {
        self.inner().vrrp.clone()
    }

    pub fn dnat(&self) -> Option<SharedDnatStatus> {
        self.inner().dnat.clone()
    }

    /// The mesh follower running now, if any.
    pub fn set_follow(&self, follow: Option<SharedFollowStatus>) {
        self.inner().follow = follow;
    }

    pub fn follow(&self) -> Option<SharedFollowStatus> {
        self.inner().follow.clone()
    }

    /// The configuration generation: 1 at start, +1 per successful reload.
    pub fn document_generation(&self) -> u64 {
        self.inner().generation
    }

    /// The status document now.
    pub fn document(&self) -> StatusDocument {
        let (generation, loaded_at, last_reload) = {
            let inner = self.inner();
            (inner.generation, inner.loaded_at, inner.last_reload.clone())
        };
        StatusDocument {
            schema: schema::SCHEMA,
            vipd_version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            roles: self.roles.clone(),
            pid: std::process::id(),
            started_at: self.started_at,
            config: ConfigStatus {
                file: self.config_file.clone(),
                loaded_at,
                generation,
            },
            last_reload,
            vrrp: self.vrrp().map(|v| v.snapshot()),
            frontends: self
                .frontends()
                .iter()
                .map(|f| frontend_status(f))
                .collect(),
            dnat: self.dnat().map(|d| d.snapshot()),
            follow: self.follow().map(|f| f.snapshot()),
        }
    }
}

fn frontend_status(frontend: &Frontend) -> FrontendStatus {
    let members = frontend.pool.members();
    FrontendStatus {
        name: frontend.name.clone(),
        listen: frontend.listen.to_string(),
        balance: members.balance.as_str().to_owned(),
        accepted: frontend.stats.accepted.get(),
        active: frontend.stats.active.get(),
        refused: frontend.stats.refused.get(),
        retries: frontend.stats.retries.get(),
        backends: members
            .backends
            .iter()
            .map(|b| BackendStatus {
                name: b.name.clone(),
                address: b.address.to_string(),
                local: b.local,
                healthy: b.is_healthy(),
                active: b.active() as u64,
                total: b.total.get(),
                connect_failures: b.connect_failures.get(),
                bytes_to_backend: b.bytes_to_backend.get(),
                bytes_to_client: b.bytes_to_client.get(),
                last_check: b.check.last(),
            })
            .collect(),
    }
}
