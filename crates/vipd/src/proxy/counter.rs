//! Counters the proxy threads write on every connection or every chunk of
//! bytes, without sharing a cache line between threads.
//!
//! A plain `AtomicU64` that two worker threads both increment moves its
//! cache line from one core to the other on every write: on the
//! connection-per-request path that costs more than the increment itself.
//! A [`Counter`] has one slot per worker thread, each on its own cache line
//! (128 bytes: adjacent-line prefetchers pair 64-byte lines); a worker adds
//! to its own slot (see [`worker_index`]) and a reader (the status, the
//! metrics) sums the slots. Writes stay atomic, so a sum is never torn and
//! a thread that is not a worker (the daemon's runtime, tests) can write
//! too: it shares slot 0.
//!
//! A sum is a snapshot of slots read one after the other: while sessions
//! run it may mix a slot read a moment earlier with one read later, as any
//! read of a live counter does; once the writes stop it is exact.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per counter. More worker threads than this share slots (modulo):
/// still correct, only their writes contend again.
pub const SLOTS: usize = 16;

thread_local! {
    /// The worker this thread is (set once by `Workers::start`); 0 elsewhere.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `index` (its slot in every
/// [`Counter`] and its round-robin cursor).
pub fn set_worker_index(index: usize) {
    WORKER.set(index);
}

/// The calling thread's worker index (0 on a thread that is not a worker).
pub fn worker_index() -> usize {
    WORKER.get()
}

/// The calling thread's slot in a [`Counter`] or [`PerWorker`].
fn slot() -> usize {
    worker_index() % SLOTS
}

/// One value per worker, each on its own cache line.
#[derive(Debug)]
pub struct PerWorker<T>(Box<[Padded<T>]>);

/// A value alone on its cache line(s): what other threads write next to
/// it does not evict it.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        Self((0..SLOTS).map(|_| Padded::default()).collect())
    }
}

impl<T> PerWorker<T> {
    /// The calling thread's value.
    pub fn local(&self) -> &T {
        &self.0[slot()].0
    }

    /// Every worker's value.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// A counter that only grows, written per worker, read as the sum.
#[derive(Debug, Default)]
pub struct Counter(PerWorker<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.local().fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// The sum over the workers.
    pub fn get(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, slot| {
            sum.wrapping_add(slot.load(Ordering::Relaxed))
        })
    }
}

/// A count that goes up and down (sessions open now), written per worker,
/// read as the sum. A worker may take down what another put up (the sum
/// wraps and comes out exact).
#[derive(Debug, Default)]
pub struct Gauge(PerWorker<AtomicU64>);

impl Gauge {
    pub fn inc(&self) {
        self.0.local().fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.local().fetch_sub(1, Ordering::Relaxed);
    }

    /// The sum over the workers.
    pub fn get(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, slot| {
            sum.wrapping_add(slot.load(Ordering::Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_counts_every_thread_once() {
        let counter = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..SLOTS + 3)
            .map(|index| {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || {
                    set_worker_index(index);
                    for _ in 0..1000 {
                        counter.inc();
                    }
                    counter.add(index as u64);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let extra: u64 = (0..SLOTS as u64 + 3).sum();
        assert_eq!(counter.get(), (SLOTS as u64 + 3) * 1000 + extra);
        // A thread that is not a worker counts too (slot 0).
        counter.inc();
        assert_eq!(counter.get(), (SLOTS as u64 + 3) * 1000 + extra + 1);
    }

    #[test]
    fn a_gauge_taken_down_on_another_thread_sums_exactly() {
        let gauge = std::sync::Arc::new(Gauge::default());
        let up = std::sync::Arc::clone(&gauge);
        std::thread::spawn(move || {
            set_worker_index(3);
            up.inc();
            up.inc();
        })
        .join()
        .unwrap();
        assert_eq!(gauge.get(), 2);
        gauge.dec();
        assert_eq!(gauge.get(), 1);
        gauge.dec();
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn slots_sit_on_their_own_cache_lines() {
        let per: PerWorker<AtomicU64> = PerWorker::default();
        let addresses: Vec<usize> = per.iter().map(|s| s as *const _ as usize).collect();
        for pair in addresses.windows(2) {
            assert!(pair[1] - pair[0] >= 128);
        }
        assert!(addresses.iter().all(|a| a % 128 == 0));
    }
}
