//! A frontend: its listeners (one per worker), its pool, the health
//! checkers of its backends, the connection limit and the drain on stop.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use vipd_core::health::{Health, Thresholds};

use super::counter::{Counter, Gauge, Padded};
use super::pool::{Backend, Pool};
use super::session::{self, SessionSettings};
pub use super::workers::Workers;
use crate::config::resolve::Frontend as FrontendPlan;
use crate::config::spec::{Balance, ProxySection};
use crate::health::checker::{self, Check, HealthEvent};
use crate::health::probe::Probe;

/// Counters of one frontend. The accept loops of all workers write them:
/// each counter has a slot per worker (see [`Counter`]), summed when read.
#[derive(Debug, Default)]
pub struct FrontendStats {
    pub accepted: Counter,
    /// Clients no backend accepted.
    pub refused: Counter,
    /// Backends that failed a connect before another one accepted.
    pub retries: Counter,
    /// Sessions open now.
    pub active: Gauge,
}

/// A running frontend, as the daemon, the status and the metrics see it.
#[derive(Debug)]
pub struct Frontend {
    pub name: String,
    pub listen: SocketAddr,
    pub pool: Arc<Pool>,
    pub stats: FrontendStats,
    limit: Limit,
    /// Bumped to make every accept loop close the sessions it holds.
    close_all: watch::Sender<u64>,
}

impl Frontend {
    pub fn new(plan: &FrontendPlan, balance: Balance) -> Self {
        Self {
            name: plan.name.to_owned(),
            listen: plan.listen,
            pool: Arc::new(Pool::new(Vec::new(), balance)),
            stats: FrontendStats::default(),
            limit: Limit::default(),
            close_all: watch::channel(0).0,
        }
    }

    /// Closes every session open now (new ones are accepted as before):
    /// for the VIP frontend of a holder the VIP has left, whose clients
    /// already talk to the new master. Left open, such sessions would hold
    /// their apiserver connections and count for least-conn for minutes.
    pub fn close_sessions(&self) {
        self.close_all
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// A frontend as the sessions of one accept loop hold it: each session
/// clones this `Arc`, whose reference count only that loop's worker
/// writes, instead of the frontend's, which every worker would write per
/// connection (and next to it the fields every session reads).
#[derive(Debug)]
#[repr(align(128))]
struct ShardFrontend(Arc<Frontend>);

impl ShardFrontend {
    /// Reserves a place under `max_connections`, waiting while the
    /// frontend is at the limit. The place is freed when the returned
    /// value drops.
    async fn admit(self: &Arc<Self>) -> Admitted {
        loop {
            if let Some(admitted) = self.try_admit() {
                return admitted;
            }
            // Registered before the second look, so a place freed in
            // between wakes this one (see `Admitted::drop`).
            let freed = self.0.limit.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(admitted) = self.try_admit() {
                return admitted;
            }
            freed.await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Admitted> {
        let limit = &self.0.limit;
        let max = limit.max.load(Ordering::Relaxed);
        let open = &limit.open.0;
        let mut now = open.load(Ordering::Relaxed);
        while now < max {
            match open.compare_exchange_weak(now, now + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(Admitted(Arc::clone(self))),
                Err(actual) => now = actual,
            }
        }
        None
    }
}

/// The connection limit of a frontend, shared by its accept loops: one
/// count, exact across the workers, of the sessions open and the places
/// accept loops hold for their next client. It replaces a semaphore, whose
/// release takes a lock: here a session costs one compare-and-swap and one
/// subtraction, and a wake-up only at the limit.
#[derive(Debug, Default)]
struct Limit {
    /// On its own cache line: every worker writes it per connection, and
    /// `max` next to it would be evicted from the readers' caches each time.
    open: Padded<AtomicUsize>,
    max: AtomicUsize,
    freed: Notify,
}

impl Limit {
    /// A reload's new limit; loops waiting at the old one look again.
    fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
        self.freed.notify_waiters();
    }
}

/// A place under a frontend's connection limit (and the frontend, for the
/// session that takes it).
struct Admitted(Arc<ShardFrontend>);

impl Drop for Admitted {
    fn drop(&mut self) {
        let limit = &self.0.0.limit;
        let was = limit.open.0.fetch_sub(1, Ordering::Relaxed);
        // Loops wait only when the count was at the limit (or the limit
        // changed, which wakes them itself).
        if was >= limit.max.load(Ordering::Relaxed) {
            limit.freed.notify_waiters();
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
            frontend: Arc::new(ShardFrontend(Arc::clone(&frontend))),
            live: Arc::clone(&config.live),
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
    session: SessionSettings,
    drain_timeout: Duration,
}

/// One accept loop: a listener and the sessions it accepted, on one worker.
struct Shard {
    name: &'static str,
    frontend: Arc<ShardFrontend>,
    live: Arc<ArcSwap<Live>>,
}

impl Shard {
    async fn accept(
        self,
        listener: std::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let name = self.name;
        let listener = crate::sys::register(listener)?;
        let mut sessions = JoinSet::new();
        let mut close_all = self.frontend.0.close_all.subscribe();
        // One wait for the stop for the loop's life: a new `changed()` per
        // round would register with the channel (a lock shared with the
        // other workers' loops) per connection.
        let stopped = stop.changed();
        tokio::pin!(stopped);
        // The place under the connection limit for the next client, kept
        // while the loop goes round for a finished session.
        let mut place = None;
        loop {
            // Backpressure: at the limit we stop accepting; clients wait in the
            // kernel's queue instead of being refused.
            let admitted = match place.take() {
                Some(admitted) => admitted,
                // The close signal last: polled (registered with the
                // frontend's channel) only when nothing else is ready, never
                // per connection under load.
                None => tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    admitted = self.frontend.admit() => admitted,
                    Ok(()) = close_all.changed() => {
                        close(name, &mut sessions);
                        continue;
                    }
                },
            };
            let accepted = tokio::select! {
                biased;
                _ = &mut stopped => break,
                accepted = accept(&listener) => accepted,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {
                    place = Some(admitted);
                    continue;
                }
                Ok(()) = close_all.changed() => {
                    close(name, &mut sessions);
                    place = Some(admitted);
                    continue;
                }
            };
            let (client, client_address) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    place = Some(admitted);
                    // EMFILE and friends: back off instead of spinning.
                    warn!(frontend = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.frontend.0.stats.accepted.inc();
            // A copy of the settings: no reference count shared with the
            // other workers to touch per session.
            let settings = self.live.load().session.clone();
            sessions.spawn(async move {
                // Holds the frontend (and the place) until the session ends.
                let frontend = &admitted.0.0;
                let open = Open::new(&frontend.stats.active);
                let outcome = session::serve(client, client_address, &frontend.pool, &settings).await;
                drop(open);
                match outcome {
                    Ok(done) => {
                        if done.retries > 0 {
                            frontend.stats.retries.add(done.retries as u64);
                        }
                        debug!(frontend = name, client = %client_address, backend = done.backend, up = done.to_backend, down = done.to_client, "session closed");
                    }
                    Err(e @ session::SessionError::NoBackend { .. }) => {
                        frontend.stats.refused.inc();
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

/// The next client from the listener's queue, registered with this
/// worker's reactor. accept4(2) makes the socket non-blocking: no further
/// system call before the session's first read.
async fn accept(
    listener: &AsyncFd<std::net::TcpListener>,
) -> std::io::Result<(session::Stream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        loop {
            let mut guard = std::task::ready!(listener.poll_read_ready(cx))?;
            match guard.try_io(|listener| crate::sys::accept(listener.as_fd())) {
                Ok(Ok((stream, address))) => {
                    return Poll::Ready(
                        crate::sys::register(stream).map(|stream| (stream, address)),
                    );
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    })
    .await
}

/// Aborts the sessions of one accept loop: their sockets close, their
/// places and counts are given back as each task is dropped.
fn close<T: 'static>(name: &str, sessions: &mut JoinSet<T>) {
    if !sessions.is_empty() {
        info!(
            frontend = name,
            sessions = sessions.len(),
            "closing the sessions of this accept loop"
        );
        sessions.abort_all();
    }
}

/// A session counted in its frontend's `active` until it ends (also when
/// the drain deadline aborts it).
struct Open<'a>(&'a Gauge);

impl<'a> Open<'a> {
    fn new(active: &'a Gauge) -> Self {
        active.inc();
        Self(active)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The parts of a frontend a reload changes: backends and their checkers,
/// session settings (the connection limit is in the [`Frontend`]).
struct Members {
    checkers: Vec<crate::health::checker::Checker>,
    health_events: mpsc::UnboundedReceiver<HealthEvent>,
    live: Arc<ArcSwap<Live>>,
}

impl Default for Members {
    fn default() -> Self {
        Self {
            checkers: Vec::new(),
            health_events: mpsc::unbounded_channel().1,
            live: Arc::new(ArcSwap::from_pointee(Live {
                session: SessionSettings {
                    connect_timeout: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(3600),
                    proxy_protocol: false,
                    close_sessions_on_down: false,
                    splice: false,
                },
                drain_timeout: Duration::ZERO,
            })),
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
            session: SessionSettings {
                connect_timeout: settings.connect_timeout.get(),
                idle_timeout: settings.idle_timeout.get(),
                proxy_protocol: settings.proxy_protocol,
                close_sessions_on_down: settings.close_sessions_on_down,
                splice: settings.splice,
            },
            drain_timeout: settings.drain_timeout.get(),
        }));
        // Sessions above a lowered limit run on; new clients wait until the
        // count is under it.
        frontend.limit.set_max(settings.max_connections as usize);
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
