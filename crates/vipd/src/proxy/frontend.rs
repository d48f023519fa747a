//! A frontend: one listener, its pool, the health checkers of its backends,
//! the connection limit and the drain on stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use vipd_core::health::{Health, Thresholds};

use super::pool::{Backend, Pool};
use super::session::{self, SessionSettings};
use crate::config::resolve::Frontend as FrontendPlan;
use crate::config::spec::{Balance, ProxySection};
use crate::health::checker::{self, Check, HealthEvent};
use crate::health::probe::Probe;

/// Counters of one frontend.
#[derive(Debug, Default)]
pub struct FrontendStats {
    pub accepted: AtomicU64,
    /// Clients no backend accepted.
    pub refused: AtomicU64,
    /// Backends that failed a connect before another one accepted.
    pub retries: AtomicU64,
    /// Sessions open now.
    pub active: AtomicU64,
}

/// A running frontend, as the daemon, the status and the metrics see it.
#[derive(Debug)]
pub struct Frontend {
    pub name: String,
    pub listen: SocketAddr,
    pub pool: Arc<Pool>,
    pub stats: FrontendStats,
}

impl Frontend {
    pub fn new(plan: &FrontendPlan, balance: Balance) -> Self {
        Self {
            name: plan.name.to_owned(),
            listen: plan.listen,
            pool: Arc::new(Pool::new(Vec::new(), balance)),
            stats: FrontendStats::default(),
        }
    }
}

/// A reload's new configuration for a running frontend (same listen address).
#[derive(Debug, Clone)]
pub struct FrontendUpdate {
    pub plan: FrontendPlan,
    pub settings: ProxySection,
}

/// Binds the listener. Separate from [`run`] so that a bind failure (port
/// taken) stops the daemon at start with a clear error. `freebind` allows an
/// address the node does not hold yet: the VIP, which VRRP adds later.
pub fn bind(listen: SocketAddr, backlog: i32, freebind: bool) -> anyhow::Result<TcpListener> {
    let domain = if listen.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit these: no per-connection system calls.
    super::session::tune(socket2::SockRef::from(&socket))?;
    if listen.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if freebind {
        match listen {
            SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
            SocketAddr::V6(_) => socket.set_freebind_v6(true)?,
        }
    }
    socket
        .bind(&listen.into())
        .with_context(|| format!("cannot listen on {listen}"))?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// Serves `plan` on `listener` until `stop` turns true, then drains.
pub async fn run(
    plan: FrontendPlan,
    listener: TcpListener,
    settings: &ProxySection,
    balance: Balance,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let frontend = Arc::new(Frontend::new(&plan, balance));
    let (_updates_tx, updates) = mpsc::channel(1);
    let mut settings = settings.clone();
    settings.balance = balance;
    serve(
        FrontendUpdate { plan, settings },
        listener,
        frontend,
        updates,
        stop,
    )
    .await
}

/// The daemon's frontend: [`run`], plus reloads arriving on `updates` and
/// its state published in `frontend`.
pub async fn serve(
    initial: FrontendUpdate,
    listener: TcpListener,
    frontend: Arc<Frontend>,
    mut updates: mpsc::Receiver<FrontendUpdate>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let name = initial.plan.name;
    let mut config = Members::default();
    config.apply(&frontend, initial)?;
    info!(frontend = name, listen = %frontend.listen, backends = frontend.pool.members().backends.len(), "proxy frontend listening");
    let mut sessions = JoinSet::new();
    loop {
        // Backpressure: at the limit we stop accepting; clients wait in the
        // kernel's queue instead of being refused.
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(update) = updates.recv() => {
                config.apply(&frontend, update)?;
                continue;
            }
            permit = Arc::clone(&config.limit).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(event) = config.health_events.recv() => {
                if let Some(backend) = frontend.pool.members().backends.get(event.index) {
                    backend.set_healthy(event.health == Health::Up);
                }
                continue;
            }
            Some(update) = updates.recv() => {
                config.apply(&frontend, update)?;
                continue;
            }
            accepted = listener.accept() => accepted,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (client, client_address) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(frontend = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        frontend.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let settings = Arc::clone(&config.session);
        let frontend = Arc::clone(&frontend);
        sessions.spawn(async move {
            let _permit = permit;
            frontend.stats.active.fetch_add(1, Ordering::Relaxed);
            let outcome = session::serve(client, client_address, &frontend.pool, &settings).await;
            frontend.stats.active.fetch_sub(1, Ordering::Relaxed);
            match outcome {
                Ok(done) => {
                    frontend.stats.retries.fetch_add(done.retries as u64, Ordering::Relaxed);
                    debug!(frontend = name, client = %client_address, backend = done.backend, up = done.to_backend, down = done.to_client, "session closed");
                }
                Err(e @ session::SessionError::NoBackend { .. }) => {
                    frontend.stats.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(frontend = name, client = %client_address, "{e}");
                }
                Err(e) => debug!(frontend = name, client = %client_address, "session ended: {e}"),
            }
        });
    }
    drop(listener);
    for checker in config.checkers.drain(..) {
        checker.abort();
    }
    drain(name, &mut sessions, config.drain_timeout).await;
    Ok(())
}

/// The parts of a frontend a reload changes: backends and their checkers,
/// session settings, the connection limit.
struct Members {
    checkers: Vec<tokio::task::JoinHandle<()>>,
    health_events: mpsc::UnboundedReceiver<HealthEvent>,
    session: Arc<SessionSettings>,
    limit: Arc<Semaphore>,
    max_connections: usize,
    drain_timeout: Duration,
}

impl Default for Members {
    fn default() -> Self {
        Self {
            checkers: Vec::new(),
            health_events: mpsc::unbounded_channel().1,
            session: Arc::new(SessionSettings {
                connect_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(3600),
                proxy_protocol: false,
                close_sessions_on_down: false,
                splice: false,
            }),
            limit: Arc::new(Semaphore::new(0)),
            max_connections: 0,
            drain_timeout: Duration::ZERO,
        }
    }
}

impl Members {
    /// Installs `update`: a backend that stays (same name and address)
    /// keeps its health, counters and sessions; new ones start healthy;
    /// removed ones keep their sessions until those end. Checkers restart
    /// on a fresh channel, so no event of the old list is misread.
    fn apply(&mut self, frontend: &Frontend, update: FrontendUpdate) -> anyhow::Result<()> {
        let FrontendUpdate { plan, settings } = update;
        let old = frontend.pool.members();
        let mut checks = Vec::with_capacity(plan.backends.len());
        let backends: Vec<Arc<Backend>> = plan
            .backends
            .iter()
            .map(|b| {
                old.backends
                    .iter()
                    .find(|o| o.name == b.node && o.address == b.address && o.local == b.local)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(b.node.clone(), b.address, b.local)))
            })
            .collect();
        for (backend, backend_plan) in backends.iter().zip(&plan.backends) {
            checks.push(Check {
                name: format!("{} backend {}", plan.name, backend_plan.node),
                probe: Probe::from_check(backend_plan.address, &backend_plan.check)?,
                interval: backend_plan.check.interval.get(),
                timeout: backend_plan.check.timeout.get(),
                thresholds: Thresholds::new(backend_plan.check.rise, backend_plan.check.fall),
                initial: if backend.is_healthy() {
                    Health::Up
                } else {
                    Health::Down
                },
                record: Some(Arc::clone(&backend.check)),
            });
        }
        for gone in old
            .backends
            .iter()
            .filter(|o| !backends.iter().any(|b| Arc::ptr_eq(b, o)))
        {
            info!(frontend = plan.name, backend = %gone.name, address = %gone.address, sessions = gone.active(), "backend removed; its sessions run to their end");
        }
        for added in backends
            .iter()
            .filter(|b| !old.backends.iter().any(|o| Arc::ptr_eq(b, o)))
        {
            if !old.backends.is_empty() {
                info!(frontend = plan.name, backend = %added.name, address = %added.address, "backend added");
            }
        }
        for checker in self.checkers.drain(..) {
            checker.abort();
        }
        let (health_tx, health_events) = mpsc::unbounded_channel();
        for (index, check) in checks.into_iter().enumerate() {
            self.checkers
                .push(checker::spawn(index, check, health_tx.clone()));
        }
        self.health_events = health_events;
        frontend.pool.replace(backends, settings.balance);
        self.session = Arc::new(SessionSettings {
            connect_timeout: settings.connect_timeout.get(),
            idle_timeout: settings.idle_timeout.get(),
            proxy_protocol: settings.proxy_protocol,
            close_sessions_on_down: settings.close_sessions_on_down,
            splice: settings.splice,
        });
        self.drain_timeout = settings.drain_timeout.get();
        let wanted = settings.max_connections as usize;
        if wanted > self.max_connections {
            self.limit.add_permits(wanted - self.max_connections);
        } else if wanted < self.max_connections {
            // Permits held by sessions come back as those end; take the
            // difference as they do.
            let excess = u32::try_from(self.max_connections - wanted).unwrap_or(u32::MAX);
            let limit = Arc::clone(&self.limit);
            tokio::spawn(async move {
                if let Ok(permits) = limit.acquire_many_owned(excess).await {
                    permits.forget();
                }
            });
        }
        self.max_connections = wanted;
        Ok(())
    }
}

/// Lets established sessions finish, up to `deadline`, then closes the rest.
async fn drain(name: &str, sessions: &mut JoinSet<()>, deadline: Duration) {
    if sessions.is_empty() {
        return;
    }
    info!(
        frontend = name,
        sessions = sessions.len(),
        ?deadline,
        "draining"
    );
    let finished = tokio::time::timeout(deadline, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        warn!(
            frontend = name,
            left = sessions.len(),
            "drain deadline reached: closing the remaining sessions"
        );
        sessions.abort_all();
    }
}
