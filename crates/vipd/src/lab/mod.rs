//! The lab: whole clusters in network namespaces on one machine.
//!
//! - [`netns`]: topologies (namespaces, a bridge, veth links, processes
//!   inside them) that always take themselves down again;
//! - [`pki`]: a throw-away CA and apiserver certificates;
//! - [`apiserver`]: a stand-in kube-apiserver whose health can be switched;
//! - `vipd lab`: [`lifecycle`] (`up`, `drill`, `status`, `down`; the
//!   command line in [`crate::cli`]'s lab.rs only parses and prints) builds
//!   on [`topology`] (the cluster file and the network from counts, on the
//!   bridge or on a WireGuard mesh), [`mesh`] (a node's WireGuard), [`state`]
//!   (the state directory shared by the steps), [`stack`] (the per-node
//!   processes of the vipd or the classic stack), [`client`] (the load
//!   client and the VIP watch), [`drill`] (the scenarios) and [`report`]
//!   (table, JSON, SVG).

pub mod apiserver;
pub mod client;
pub mod drill;
pub mod lifecycle;
pub mod mesh;
pub mod netns;
pub mod pki;
pub mod report;
pub mod stack;
pub mod state;
pub mod topology;

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT or SIGTERM arrived (after [`catch_interrupts`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// From now on SIGINT and SIGTERM set [`interrupted`] instead of ending the
/// process, so the lab can clean up; a second one ends it at once.
pub fn catch_interrupts() {
    let spawned = std::thread::Builder::new()
        .name("lab-signals".into())
        .spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                INTERRUPTED.store(true, Ordering::Relaxed);
                eprintln!("vipd lab: interrupted, cleaning up (again to exit at once)");
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                std::process::exit(130);
            });
        });
    if spawned.is_err() {
        eprintln!("vipd lab: cannot watch for Ctrl-C; an interrupted lab needs `vipd lab down`");
    }
}
