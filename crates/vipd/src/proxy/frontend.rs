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
use crate::health::checker::{self, Check};
use crate::health::probe::Probe;

/// Counters of one frontend.
#[derive(Debug, Default)]
pub struct FrontendStats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub retries: AtomicU64,
}

/// A running frontend, as the daemon and the status see it.
#[derive(Debug)]
pub struct Frontend {
    pub name: String,
    pub listen: SocketAddr,
    pub pool: Arc<Pool>,
    pub stats: Arc<FrontendStats>,
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
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let backends: Vec<Arc<Backend>> = plan
        .backends
        .iter()
        .map(|b| Arc::new(Backend::new(b.node.clone(), b.address, b.local)))
        .collect();
    let pool = Arc::new(Pool::new(backends, balance));
    let (health_tx, mut health_events) = mpsc::unbounded_channel();
    let mut checkers = JoinSet::new();
    for (index, backend) in plan.backends.iter().enumerate() {
        let check = Check {
            name: format!("{} backend {}", plan.name, backend.node),
            probe: Probe::from_check(backend.address, &backend.check)?,
            interval: backend.check.interval.get(),
            timeout: backend.check.timeout.get(),
            thresholds: Thresholds::new(backend.check.rise, backend.check.fall),
            initial: Health::Up,
        };
        checkers.spawn(checker::spawn(index, check, health_tx.clone()));
    }
    drop(health_tx);
    let session_settings = Arc::new(SessionSettings {
        connect_timeout: settings.connect_timeout.get(),
        idle_timeout: settings.idle_timeout.get(),
        proxy_protocol: settings.proxy_protocol,
        close_sessions_on_down: settings.close_sessions_on_down,
        splice: settings.splice,
    });
    let limit = Arc::new(Semaphore::new(settings.max_connections as usize));
    let stats = Arc::new(FrontendStats::default());
    let mut sessions = JoinSet::new();
    info!(frontend = plan.name, listen = %plan.listen, backends = plan.backends.len(), "proxy frontend listening");
    loop {
        // Backpressure: at the limit we stop accepting; clients wait in the
        // kernel's queue instead of being refused.
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            permit = Arc::clone(&limit).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(event) = health_events.recv() => {
                pool.backends[event.index].set_healthy(event.health == Health::Up);
                continue;
            }
            accepted = listener.accept() => accepted,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (client, client_address) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(frontend = plan.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let pool = Arc::clone(&pool);
        let settings = Arc::clone(&session_settings);
        let stats = Arc::clone(&stats);
        let name = plan.name;
        sessions.spawn(async move {
            let _permit = permit;
            match session::serve(client, client_address, &pool, &settings).await {
                Ok(done) => {
                    stats.retries.fetch_add(done.retries as u64, Ordering::Relaxed);
                    debug!(frontend = name, client = %client_address, backend = done.backend, up = done.to_backend, down = done.to_client, "session closed");
                }
                Err(e @ session::SessionError::NoBackend { .. }) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(frontend = name, client = %client_address, "{e}");
                }
                Err(e) => debug!(frontend = name, client = %client_address, "session ended: {e}"),
            }
        });
    }
    drop(listener);
    checkers.abort_all();
    drain(plan.name, &mut sessions, settings.drain_timeout.get()).await;
    Ok(())
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
