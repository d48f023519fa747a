//! The mesh follower on real (userspace) WireGuard, in network namespaces
//! (root): two VIP holders and a plane, each with wireguard-go on `wg99`
//! (tests/support/mesh.rs, built as the lab builds its nodes), configured
//! from `vipd render wireguard`, all running `vipd run`. The plane routes
//! the VIP to the master's peer, and moves it when the master is SIGKILLed,
//! restarted (it preempts) or stopped; every device is read after every
//! step and never has the VIP on two peers.

mod support;

use nix::sys::signal::Signal;
use support::mesh::{Mesh, NodeSpec, TWO_HOLDERS_AND_A_PLANE};
use vipd::lab::netns::require_root;

const NODES: [NodeSpec; 3] = TWO_HOLDERS_AND_A_PLANE;

#[test]
fn a_follower_moves_the_vip_to_the_new_master_on_kill_and_stop() {
    if !require_root("a_follower_moves_the_vip_to_the_new_master_on_kill_and_stop") {
        return;
    }
    let mut mesh = Mesh::up(&NODES);
    // holder-1 (150) is master: the plane and holder-2 route the VIP to its
    // peer, holder-1 itself to no peer (it holds the VIP). The plane follows
    // holder-1 by its adverts (the rendered file pinned the VIP there
    // already): its status says so.
    assert!(mesh.routes_to("holder-1"), "{}", mesh.logs());
    mesh.follows("plane-1", "holder-1");

    // SIGKILL the master's vipd: no priority 0; holder-2 takes over and the
    // plane follows it.
    mesh.signal_vipd("holder-1", Signal::SIGKILL);
    assert!(routes_but("holder-1", &mesh, "holder-2"), "{}", mesh.logs());
    mesh.follows("plane-1", "holder-2");

    // holder-1 back: it preempts (higher priority); every node follows.
    mesh.start_vipd("holder-1");
    assert!(mesh.routes_to("holder-1"), "{}", mesh.logs());
    mesh.follows("plane-1", "holder-1");

    // SIGTERM: priority 0, make before break; the plane moves to holder-2.
    mesh.signal_vipd("holder-1", Signal::SIGTERM);
    assert!(routes_but("holder-1", &mesh, "holder-2"), "{}", mesh.logs());
    let status = mesh.follows("plane-1", "holder-2");
    assert!(
        status["follow"]["changes"].as_u64().unwrap() >= 3,
        "{status}"
    );
}

/// Every node but `gone` (whose vipd no longer runs, so its device keeps
/// what it had) routes the VIP to `master`: [`Mesh::routes_to`] skips the
/// nodes without a running vipd.
fn routes_but(gone: &str, mesh: &Mesh, master: &str) -> bool {
    assert!(!mesh.runs_vipd(gone), "{gone} still runs vipd");
    mesh.routes_to(master)
}
