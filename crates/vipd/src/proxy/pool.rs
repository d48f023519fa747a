//! The backends of one frontend and how the next one is chosen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Notify;

use super::counter::{Counter, PerWorker};

use crate::config::spec::Balance;
use crate::health::record::CheckRecord;

/// One backend, shared by the sessions, the health checker and the status.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    /// The apiserver on this node (local-first prefers it).
    pub local: bool,
    healthy: AtomicBool,
    /// Exact across the worker threads (one atomic, not a per-worker
    /// [`Counter`]): least-connections decides with it.
    active: AtomicUsize,
    /// Sessions established. Per-worker counters, summed when read.
    pub total: Counter,
    pub connect_failures: Counter,
    /// Bytes forwarded, counted as they move (live, per chunk).
    pub bytes_to_backend: Counter,
    pub bytes_to_client: Counter,
    /// Woken when the backend is marked down, for sessions that close then.
    pub marked_down: Notify,
    /// The health checker's last result and latencies.
    pub check: Arc<CheckRecord>,
}

impl Backend {
    pub fn new(name: impl Into<String>, address: SocketAddr, local: bool) -> Self {
        Self {
            name: name.into(),
            address,
            local,
            // Up until a check says otherwise: traffic flows from the start.
            healthy: AtomicBool::new(true),
            active: AtomicUsize::new(0),
            total: Counter::default(),
            connect_failures: Counter::default(),
            bytes_to_backend: Counter::default(),
            bytes_to_client: Counter::default(),
            marked_down: Notify::new(),
            check: Arc::new(CheckRecord::default()),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Marks the backend up or down; wakes the sessions waiting on a mark-down.
    pub fn set_healthy(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was && !healthy {
            self.marked_down.notify_waiters();
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a connect in progress as active until the guard drops, so
    /// least-connections does not pile every new client onto a backend that
    /// swallows SYNs (its connects hang for `connect_timeout`, and a backend
    /// counted only once connected would look idle all that time).
    pub fn begin_connect(self: &Arc<Self>) -> SessionGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        SessionGuard(Arc::clone(self))
    }

    /// Counts a session for least-connections until the guard drops.
    pub fn open_session(self: &Arc<Self>) -> SessionGuard {
        let guard = self.begin_connect();
        guard.established();
        guard
    }
}

/// One active session (or connect in progress) on a backend.
#[derive(Debug)]
pub struct SessionGuard(Arc<Backend>);

impl SessionGuard {
    /// The connect succeeded: the session counts in the backend's total.
    pub fn established(&self) {
        self.0.total.inc();
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The backends of one frontend. A reload replaces the member list in
/// place; the forwarding path reads it without a lock.
///
/// Round robin keeps one cursor per worker thread (each on its own cache
/// line, no write shared between threads): every worker takes the backends
/// in turn for the clients it accepted, and worker `i` starts at backend
/// `i`. Each worker's clients are spread evenly; over all workers, a
/// backend is ahead of another by at most one session per worker, whatever
/// the kernel's (`SO_REUSEPORT`) split of clients over the workers.
#[derive(Debug)]
pub struct Pool {
    members: ArcSwap<Members>,
    next: PerWorker<AtomicUsize>,
}

/// One version of a pool's membership.
#[derive(Debug)]
pub struct Members {
    pub backends: Vec<Arc<Backend>>,
    pub balance: Balance,
}

/// What the balancing order needs to know of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub healthy: bool,
    pub local: bool,
    pub active: usize,
}

impl Pool {
    pub fn new(backends: Vec<Arc<Backend>>, balance: Balance) -> Self {
        let next: PerWorker<AtomicUsize> = PerWorker::default();
        for (index, cursor) in next.iter().enumerate() {
            cursor.store(index, Ordering::Relaxed);
        }
        Self {
            members: ArcSwap::from_pointee(Members { backends, balance }),
            next,
        }
    }

    /// The current members (a snapshot: a reload does not change it).
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Installs new members. Sessions already on a removed backend go on
    /// until they end; new sessions see only the new list.
    pub fn replace(&self, backends: Vec<Arc<Backend>>, balance: Balance) {
        self.members.store(Arc::new(Members { backends, balance }));
    }

    /// The backends to try for a new session, best first. Every backend is
    /// in the list (healthy ones first), so a client is refused only when
    /// none of them accepts: with every backend marked down the proxy fails
    /// open instead of refusing everyone on the checks' word.
    ///
    /// The list borrows the members (an `arc_swap` guard, no reference
    /// count shared with the other workers touched); only the backend a
    /// session settles on is cloned out of it (see [`Backend::begin_connect`]).
    pub fn candidates(&self) -> Candidates {
        let members = self.members.load();
        let views: Vec<View> = members
            .backends
            .iter()
            .map(|b| View {
                healthy: b.is_healthy(),
                local: b.local,
                active: b.active(),
            })
            .collect();
        let start = self.next.local().fetch_add(1, Ordering::Relaxed);
        let order = order(members.balance, &views, start);
        Candidates { members, order }
    }
}

/// The backends to try for one session, best first: see [`Pool::candidates`].
#[derive(Debug)]
pub struct Candidates {
    members: Guard<Arc<Members>>,
    order: Vec<usize>,
}

impl Candidates {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The backends, in the order to try them.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.order.iter().map(|&i| &self.members.backends[i])
    }
}

/// The order to try backends in: healthy ones by the balancing rule, then
/// the unhealthy ones (the fail-open tail). `start` rotates round robin and
/// breaks least-connection ties fairly.
pub fn order(balance: Balance, views: &[View], start: usize) -> Vec<usize> {
    let n = views.len();
    // Rotating by `start` spreads ties and gives round robin its turn; the
    // sort is stable (and, for a few backends, an insertion sort in place:
    // one allocation per session, the list itself), so the rotation
    // decides among equals.
    let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
    order.sort_by_key(|&i| {
        let v = views[i];
        if !v.healthy {
            // The fail-open tail, fewest connections first.
            return (true, false, v.active);
        }
        match balance {
            Balance::RoundRobin => (false, false, 0),
            Balance::LeastConn => (false, false, v.active),
            // Local first, then fewest connections, then the rotation.
            Balance::LocalFirst => (false, !v.local, v.active),
        }
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(healthy: bool, local: bool, active: usize) -> View {
        View {
            healthy,
            local,
            active,
        }
    }

    #[test]
    fn round_robin_takes_turns_over_healthy_backends() {
        let views = [
            view(true, false, 0),
            view(false, false, 0),
            view(true, false, 0),
        ];
        let firsts: Vec<usize> = (0..4)
            .map(|s| order(Balance::RoundRobin, &views, s)[0])
            .collect();
        assert_eq!(firsts, [0, 2, 2, 0]);
        // The unhealthy one is still tried, last.
        assert_eq!(order(Balance::RoundRobin, &views, 0), [0, 2, 1]);
    }

    #[test]
    fn least_conn_prefers_the_idlest() {
        let views = [
            view(true, false, 5),
            view(true, false, 1),
            view(true, false, 3),
        ];
        assert_eq!(order(Balance::LeastConn, &views, 0), [1, 2, 0]);
    }

    #[test]
    fn local_first_uses_the_local_apiserver_while_it_is_healthy() {
        let views = [
            view(true, false, 0),
            view(true, true, 50),
            view(true, false, 1),
        ];
        assert_eq!(order(Balance::LocalFirst, &views, 0)[0], 1);
        let views = [
            view(true, false, 4),
            view(false, true, 0),
            view(true, false, 1),
        ];
        assert_eq!(order(Balance::LocalFirst, &views, 0), [2, 0, 1]);
    }

    #[test]
    fn all_down_fails_open_with_every_backend() {
        let views = [view(false, false, 2), view(false, false, 0)];
        assert_eq!(order(Balance::LocalFirst, &views, 0), [1, 0]);
        assert!(order(Balance::RoundRobin, &[], 3).is_empty());
    }

    proptest::proptest! {
        /// Whatever the state, every backend appears exactly once, healthy ones first.
        #[test]
        fn every_backend_once_healthy_first(
            states in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY, 0usize..10), 0..8),
            start in 0usize..100,
            balance in proptest::sample::select(vec![Balance::RoundRobin, Balance::LeastConn, Balance::LocalFirst]),
        ) {
            let views: Vec<View> = states.iter().map(|&(h, l, a)| view(h, l, a)).collect();
            let got = order(balance, &views, start);
            let mut sorted = got.clone();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(sorted, (0..views.len()).collect::<Vec<_>>());
            let first_unhealthy = got.iter().position(|&i| !views[i].healthy).unwrap_or(got.len());
            proptest::prop_assert!(got[first_unhealthy..].iter().all(|&i| !views[i].healthy));
        }
    }
}

#[cfg(test)]
mod connect_tests {
    use super::*;

    #[test]
    fn a_connect_in_progress_counts_as_active_but_not_in_the_total() {
        let backend = Arc::new(Backend::new("cp-1", "127.0.0.1:1".parse().unwrap(), false));
        let pending = backend.begin_connect();
        assert_eq!(backend.active(), 1);
        assert_eq!(backend.total.get(), 0);
        pending.established();
        assert_eq!(backend.total.get(), 1);
        drop(pending);
        assert_eq!(backend.active(), 0);
        // Least-conn sends the next client elsewhere while a connect hangs.
        let other = Arc::new(Backend::new("cp-2", "127.0.0.1:2".parse().unwrap(), false));
        let pool = Pool::new(
            vec![Arc::clone(&backend), Arc::clone(&other)],
            Balance::LeastConn,
        );
        let _hanging = backend.begin_connect();
        for _ in 0..4 {
            assert_eq!(pool.candidates().iter().next().unwrap().name, "cp-2");
        }
    }

    #[test]
    fn round_robin_rotates_per_worker_from_the_workers_index() {
        let backends: Vec<Arc<Backend>> = (0..3)
            .map(|i| {
                let address = format!("127.0.0.1:{}", i + 1).parse().unwrap();
                Arc::new(Backend::new(format!("cp-{i}"), address, false))
            })
            .collect();
        let pool = Arc::new(Pool::new(backends, Balance::RoundRobin));
        let firsts = |worker: usize| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                crate::proxy::counter::set_worker_index(worker);
                (0..6)
                    .map(|_| pool.candidates().iter().next().unwrap().name.clone())
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap()
        };
        // Each worker takes every backend in turn, starting at its index.
        assert_eq!(firsts(0), ["cp-0", "cp-1", "cp-2", "cp-0", "cp-1", "cp-2"]);
        assert_eq!(firsts(1), ["cp-1", "cp-2", "cp-0", "cp-1", "cp-2", "cp-0"]);
        // Worker 0's cursor went on where it stopped.
        assert_eq!(firsts(0)[0], "cp-0");
        assert_eq!(firsts(2)[..2], ["cp-2", "cp-0"]);
    }
}
