//! Where proxy sessions run: one thread per worker, each with its own
//! single-threaded tokio runtime (its own epoll, timers and run queue) and
//! its own listening socket per frontend (`SO_REUSEPORT`: the kernel spreads
//! new connections over the workers). A session lives and dies on the
//! worker that accepted it: no hand-over to another thread, no work
//! stealing, no cross-core wake-up on the forwarding path. This is the
//! layout of HAProxy's threads with per-thread listeners.
//!
//! The daemon (VRRP, health checks, the control socket) runs on its own
//! runtime; a frontend's accept loops and sessions run on the workers.
//!
//! Each worker knows its index ([`super::counter::worker_index`]): the
//! statistics counters and the round-robin cursors keep one slot per
//! worker, so what a worker writes per connection stays in its core's cache.

use std::io;
use std::sync::Arc;
use std::thread;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The threads proxy sessions run on.
#[derive(Debug)]
pub struct Workers {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The runtime of whoever calls [`Workers::spawn`] (tests, one listener).
    Current,
    Threads {
        handles: Vec<Handle>,
        /// Dropped with the workers: their threads then end.
        _stop: watch::Sender<()>,
    },
}

impl Workers {
    /// Sessions run on the caller's runtime, behind one listener.
    pub fn current() -> Arc<Self> {
        Arc::new(Self {
            kind: Kind::Current,
        })
    }

    /// `count` threads (at least one), each running a single-threaded
    /// runtime until the returned value is dropped.
    pub fn start(count: usize) -> io::Result<Arc<Self>> {
        let (stop, stopped) = watch::channel(());
        let mut handles = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            // Sockets and timers only: with the process driver, every
            // park would also look for exited child processes.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            thread::Builder::new()
                .name(format!("vipd-proxy-{index}"))
                .spawn(move || {
                    // Its slot in the per-worker counters and cursors.
                    super::counter::set_worker_index(index);
                    runtime.block_on(async move {
                        // Ends when the sender is dropped.
                        while stopped.changed().await.is_ok() {}
                    });
                })?;
        }
        Ok(Arc::new(Self {
            kind: Kind::Threads {
                handles,
                _stop: stop,
            },
        }))
    }

    /// How many listening sockets a frontend needs: one per worker thread.
    pub fn listeners(&self) -> usize {
        match &self.kind {
            Kind::Current => 1,
            Kind::Threads { handles, .. } => handles.len(),
        }
    }

    /// Runs `future` on worker `index` (modulo the count).
    pub fn spawn<F>(&self, index: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.kind {
            Kind::Current => tokio::spawn(future),
            Kind::Threads { handles, .. } => handles[index % handles.len()].spawn(future),
        }
    }
}
