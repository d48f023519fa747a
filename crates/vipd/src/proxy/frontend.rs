//! A frontend: its listeners (one per worker), its pool, the health
//! checkers of its backends, the connection limit and the drain on stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use vipd_core::health::{Health, Thresholds};

use super::pool::{Backend, Pool};
use super::session::{self, SessionSettings};
pub use super::workers::Workers;
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
    let socket = listen_socket(listen, freebind, false)?;
    socket
        .bind(&listen.into())
        .with_context(|| format!("cannot listen on {listen}"))?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// The listening sockets of one frontend, one per worker (see
/// [`Workers`]), not yet tied to a runtime.
#[derive(Debug)]
pub struct Listeners(Vec<std::net::TcpListener>);

impl Listeners {
    /// The address the first socket is bound to (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0[0].local_addr()
    }
}

impl From<TcpListener> for Listeners {
    fn from(listener: TcpListener) -> Self {
        // Deregisters it from the caller's runtime; a worker registers it again.
        Self(
            listener
                .into_std()
                .map(|l| vec![l])
                .expect("a listener leaves its runtime"),
        )
    }
}

/// Binds `count` listening sockets to `listen`, as [`bind`] does one. With
/// more than one they share the port with `SO_REUSEPORT`, and the kernel
/// spreads new connections over them. SO_REUSEPORT would also let another
/// program that sets it (HAProxy does) share the port unnoticed, so the
/// port is first bound once without it: taken, it fails here.
pub fn bind_shards(
    listen: SocketAddr,
    backlog: i32,
    freebind: bool,
    count: usize,
) -> anyhow::Result<Listeners> {
    let cannot = || format!("cannot listen on {listen}");
    if count <= 1 {
        let socket = listen_socket(listen, freebind, false)?;
        socket.bind(&listen.into()).with_context(cannot)?;
        socket.listen(backlog)?;
        return Ok(Listeners(vec![socket.into()]));
    }
    let probe = listen_socket(listen, freebind, false)?;
    probe.bind(&listen.into()).with_context(cannot)?;
    // Port 0: the shards share the port the probe got.
    let listen = probe.local_addr()?.as_socket().unwrap_or(listen);
    drop(probe);
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = listen_socket(listen, freebind, true)?;
        socket.bind(&listen.into()).with_context(cannot)?;
        socket.listen(backlog)?;
        sockets.push(socket.into());
    }
    Ok(Listeners(sockets))
}

/// A non-blocking listening socket for `listen`, not yet bound.
fn listen_socket(listen: SocketAddr, freebind: bool, reuse_port: bool) -> anyhow::Result<Socket> {
    let domain = if listen.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
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
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Serves `plan` on `listener` until `stop` turns true, then drains.
/// Sessions run on the caller's runtime.
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
        listener.into(),
        frontend,
        updates,
        stop,
        &Workers::current(),
    )
    .await
}

/// The daemon's frontend: [`run`], plus reloads arriving on `updates`, its
/// state published in `frontend`, and one accept loop per listener, each
/// on its worker (its sessions run there too). Health checks and reloads
/// run here, on the caller's runtime.
pub async fn serve(
    initial: FrontendUpdate,
    listeners: Listeners,
    frontend: Arc<Frontend>,
    mut updates: mpsc::Receiver<FrontendUpdate>,
    mut stop: watch::Receiver<bool>,
    workers: &Workers,
) -> anyhow::Result<()> {
    let name = initial.plan.name;
    let mut config = Members::default();
    config.apply(&frontend, initial)?;
    info!(frontend = name, listen = %frontend.listen, backends = frontend.pool.members().backends.len(), workers = listeners.0.len(), "proxy frontend listening");
    // The accept loops stop when this one ends, whatever ends it (also
    // when it is dropped: the sender goes with it).
    let (halt, halted) = watch::channel(false);
    let mut loops = Vec::with_capacity(listeners.0.len());
    for (index, listener) in listeners.0.into_iter().enumerate() {
        let shard = Shard {
            name,
            frontend: Arc::clone(&frontend),
            live: Arc::clone(&config.live),
            limit: Arc::clone(&config.limit),
        };
        loops.push(workers.spawn(index, shard.accept(listener, halted.clone())));
    }
    let mut outcome = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            Some(update) = updates.recv() => {
                if let Err(e) = config.apply(&frontend, update) {
                    break Err(e);
                }
            }
            Some(event) = config.health_events.recv() => {
                if let Some(backend) = frontend.pool.members().backends.get(event.index) {
                    backend.set_healthy(event.health == Health::Up);
                }
            }
        }
    };
    // The accept loops close their listeners and drain.
    halt.send_replace(true);
    for accept_loop in loops {
        match accept_loop.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if outcome.is_ok() => outcome = Err(e),
            Err(e) if outcome.is_ok() => {
                outcome = Err(anyhow::anyhow!("a proxy accept loop failed: {e}"));
            }
            _ => {}
        }
    }
    for checker in config.checkers.drain(..) {
        checker.abort();
    }
    outcome
}

/// What a reload changes that the accept loops read.
#[derive(Debug)]
struct Live {
    session: Arc<SessionSettings>,
    drain_timeout: Duration,
}

/// One accept loop: a listener and the sessions it accepted, on one worker.
struct Shard {
    name: &'static str,
    frontend: Arc<Frontend>,
    live: Arc<ArcSwap<Live>>,
    limit: Arc<Semaphore>,
}

impl Shard {
    async fn accept(
        self,
        listener: std::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let name = self.name;
        let listener = TcpListener::from_std(listener)?;
        let mut sessions = JoinSet::new();
        loop {
            // Backpressure: at the limit we stop accepting; clients wait in the
            // kernel's queue instead of being refused.
            let permit = tokio::select! {
                biased;
                _ = stop.changed() => break,
                permit = Arc::clone(&self.limit).acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let accepted = tokio::select! {
                biased;
                _ = stop.changed() => break,
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
            self.frontend.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let settings = Arc::clone(&self.live.load().session);
            let frontend = Arc::clone(&self.frontend);
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
        drain(name, &mut sessions, self.live.load().drain_timeout).await;
        Ok(())
    }
}

/// The parts of a frontend a reload changes: backends and their checkers,
/// session settings, the connection limit.
struct Members {
    checkers: Vec<crate::health::checker::Checker>,
    health_events: mpsc::UnboundedReceiver<HealthEvent>,
    live: Arc<ArcSwap<Live>>,
    limit: Arc<Semaphore>,
    max_connections: usize,
}

impl Default for Members {
    fn default() -> Self {
        Self {
            checkers: Vec::new(),
            health_events: mpsc::unbounded_channel().1,
            live: Arc::new(ArcSwap::from_pointee(Live {
                session: Arc::new(SessionSettings {
                    connect_timeout: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(3600),
                    proxy_protocol: false,
                    close_sessions_on_down: false,
                    splice: false,
                }),
                drain_timeout: Duration::ZERO,
            })),
            limit: Arc::new(Semaphore::new(0)),
            max_connections: 0,
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
        self.live.store(Arc::new(Live {
            session: Arc::new(SessionSettings {
                connect_timeout: settings.connect_timeout.get(),
                idle_timeout: settings.idle_timeout.get(),
                proxy_protocol: settings.proxy_protocol,
                close_sessions_on_down: settings.close_sessions_on_down,
                splice: settings.splice,
            }),
            drain_timeout: settings.drain_timeout.get(),
        }));
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
