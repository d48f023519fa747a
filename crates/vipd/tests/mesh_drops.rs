//! What a mesh follower refuses to follow, and what it must follow, on real
//! (userspace) WireGuard in network namespaces (root). Two VIP holders
//! (150, 100), a plane and a worker, all peers of each other on `wg99`;
//! vipd runs on all but the worker, which plays the intruder.
//!
//! - Adverts that must be ignored, each counted under its reason in the
//!   plane's status: from a node that is not a VIP holder (`not_a_holder`),
//!   from a holder's mesh address but over the underlay
//!   (`off_mesh_interface`), over the mesh with TTL 254 (`ttl_not_255`).
//!   The same forged advert sent the right way is followed: the drops are
//!   the checks', not a malformed packet's.
//! - A priority change reloaded on every node moves the VIP to the new
//!   highest holder's peer, and back.
//!
//! The devices are read after every step: never the VIP on two peers.

mod support;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde_json::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vipd::lab::mesh::INTERFACE;
use vipd::lab::netns::{Topology, require_root};
use vipd_core::vrrp::packet::PROTOCOL;
use vipd_core::vrrp::{Advertisement, Centiseconds, ChecksumMode, VersionFields};

use support::mesh::{Mesh, NodeSpec, TWO_HOLDERS_AND_A_PLANE, VIP, VRID};

const NODES: [NodeSpec; 4] = [
    TWO_HOLDERS_AND_A_PLANE[0],
    TWO_HOLDERS_AND_A_PLANE[1],
    TWO_HOLDERS_AND_A_PLANE[2],
    NodeSpec::bare_worker("worker-1", 21),
];

const PLANE: &str = "plane-1";
/// Copies of each forged advert: a few, bounded.
const COPIES: u64 = 5;
/// How long the plane may take to count them.
const COUNTED_WITHIN: Duration = Duration::from_secs(5);

/// A forged VRRPv3 advert: the cluster's VRID and VIP at `priority`, its
/// checksum as the file's default convention (keepalived's) computes it,
/// sent from node `from`'s namespace out of `device`, from `src` to `dst`,
/// with `ttl`.
#[derive(Debug)]
struct Forged<'a> {
    from: &'a str,
    device: &'a str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u32,
    priority: u8,
}

impl Forged<'_> {
    fn send(&self, mesh: &Mesh, copies: u64) {
        let advert = Advertisement {
            vrid: VRID,
            priority: self.priority,
            addresses: vec![IpAddr::V4(VIP)],
            fields: VersionFields::V3 {
                max_advert_interval: Centiseconds(10),
            },
        };
        let message = advert
            .encode(
                IpAddr::V4(self.src),
                IpAddr::V4(self.dst),
                ChecksumMode::Keepalived,
            )
            .unwrap();
        let sent = mesh.node(self.from).ns.enter(|| -> io::Result<()> {
            // Raw protocol 112: the kernel writes the IP header, with the
            // bound source and the TTL set here.
            let socket = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(i32::from(PROTOCOL))),
            )?;
            socket.bind_device(Some(self.device.as_bytes()))?;
            socket.bind(&SockAddr::from(SocketAddrV4::new(self.src, 0)))?;
            socket.set_ttl_v4(self.ttl)?;
            let to = SockAddr::from(SocketAddrV4::new(self.dst, 0));
            for _ in 0..copies {
                socket.send_to(&message, &to)?;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        });
        sent.unwrap()
            .unwrap_or_else(|e| panic!("sending {self:?}: {e}"));
    }
}

fn dropped(status: &Value, reason: &str) -> u64 {
    status["follow"]["dropped"][reason].as_u64().unwrap_or(0)
}

fn counter(status: &Value, name: &str) -> u64 {
    status["follow"][name].as_u64().unwrap()
}

/// Sends `forged`, waits until the plane counted every copy under
/// `reason`, and checks that nothing else moved: no other drop reason, no
/// route change, still holder-1 at 150 on the plane's status and on every
/// device. Returns the plane's status.
fn ignored(mesh: &Mesh, forged: &Forged<'_>, reason: &str, before: &Value) -> Value {
    forged.send(mesh, COPIES);
    let want = dropped(before, reason) + COPIES;
    let mut now = Value::Null;
    let counted = Topology::wait_for(COUNTED_WITHIN, Duration::from_millis(50), || {
        now = mesh.status(PLANE);
        dropped(&now, reason) >= want
    });
    assert!(
        counted,
        "{forged:?}: {reason} not counted {COPIES} times\nbefore {before}\nnow {now}\n{}",
        mesh.logs()
    );
    assert!(mesh.routes_to("holder-1"), "{forged:?}\n{}", mesh.logs());
    let now = mesh.status(PLANE);
    let follow = &now["follow"];
    assert_eq!(dropped(&now, reason), want, "counted twice? {now}");
    let mut others = follow["dropped"].as_object().unwrap().clone();
    others.remove(reason);
    let mut others_before = before["follow"]["dropped"].as_object().unwrap().clone();
    others_before.remove(reason);
    assert_eq!(others, others_before, "{forged:?}: other drops: {now}");
    assert_eq!(
        counter(&now, "changes"),
        counter(before, "changes"),
        "{forged:?} moved the VIP: {now}"
    );
    assert_eq!(follow["holder"], "holder-1", "{now}");
    assert_eq!(follow["holder_priority"], 150, "{now}");
    // And it still hears holder-1 (one advert per follower interval).
    let mut later = now.clone();
    let hearing = Topology::wait_for(COUNTED_WITHIN, Duration::from_millis(50), || {
        later = mesh.status(PLANE);
        counter(&later, "adverts_received") > counter(&now, "adverts_received")
    });
    assert!(hearing, "the plane stopped hearing holder-1: {later}");
    assert_eq!(later["follow"]["changes"], follow["changes"], "{later}");
    later
}

#[test]
fn adverts_from_outside_the_holders_mesh_path_are_counted_and_ignored() {
    if !require_root("adverts_from_outside_the_holders_mesh_path_are_counted_and_ignored") {
        return;
    }
    let mesh = Mesh::up(&NODES);
    let plane = mesh.node(PLANE);
    // Reverse-path filtering (inherited from the root namespace on some
    // machines) would drop the underlay advert of (b) before any socket
    // sees it; off in the plane's namespace, vipd's own check is what
    // stops it.
    let sysctl = plane.ns.run(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.eth0.rp_filter=0",
        ],
    );
    assert!(sysctl.unwrap().status.success());
    assert!(mesh.routes_to("holder-1"), "{}", mesh.logs());
    let status = mesh.follows(PLANE, "holder-1");
    let (worker, holder2) = (mesh.node("worker-1"), mesh.node("holder-2"));

    // (a) The worker is a peer (its WireGuard key is good) but no VIP
    // holder: its priority 254 claim is dropped after decoding.
    let from_worker = Forged {
        from: "worker-1",
        device: INTERFACE,
        src: worker.mesh_address(),
        dst: plane.mesh_address(),
        ttl: 255,
        priority: 254,
    };
    let status = ignored(&mesh, &from_worker, "not_a_holder", &status);

    // (b) holder-2's mesh address, but over the underlay, where no key
    // vouches for the sender.
    let underlay = Forged {
        from: "holder-2",
        device: "eth0",
        src: holder2.mesh_address(),
        dst: plane.underlay_address(),
        ttl: 255,
        priority: 254,
    };
    let status = ignored(&mesh, &underlay, "off_mesh_interface", &status);

    // (c) Over the mesh from holder-2, but routed (TTL 254, RFC 5798 §7.1).
    let routed = Forged {
        from: "holder-2",
        device: INTERFACE,
        src: holder2.mesh_address(),
        dst: plane.mesh_address(),
        ttl: 254,
        priority: 254,
    };
    let status = ignored(&mesh, &routed, "ttl_not_255", &status);

    // The control: the same advert over the mesh with TTL 255 is followed
    // (priority 254 beats 150), and once its claim goes overdue (nothing
    // repeats it) the plane is back on holder-1, which kept advertising.
    let followed = Forged { ttl: 255, ..routed };
    followed.send(&mesh, 1);
    let mut now = Value::Null;
    let back = Topology::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        now = mesh.status(PLANE);
        // Read every device on the way: the move and the move back each
        // leave the VIP on one peer.
        mesh.vip_peer(PLANE);
        counter(&now, "changes") >= counter(&status, "changes") + 2
            && now["follow"]["holder"] == "holder-1"
    });
    assert!(
        back,
        "the control advert was not followed, or the plane did not come back\nbefore {status}\nnow {now}\n{}",
        mesh.logs()
    );
    assert_eq!(
        counter(&now, "changes"),
        counter(&status, "changes") + 2,
        "{now}"
    );
    assert_eq!(
        now["follow"]["dropped"], status["follow"]["dropped"],
        "{now}"
    );
    assert!(mesh.routes_to("holder-1"), "{}", mesh.logs());
}

#[test]
fn a_reloaded_priority_change_re_points_the_vip_and_back() {
    if !require_root("a_reloaded_priority_change_re_points_the_vip_and_back") {
        return;
    }
    let mut mesh = Mesh::up(&NODES);
    assert!(mesh.routes_to("holder-1"), "{}", mesh.logs());
    let start = mesh.follows(PLANE, "holder-1");

    // holder-2 above holder-1: it preempts (preempt is on by default), and
    // every follower moves the VIP to its peer.
    mesh.set_priority("holder-2", 200);
    let reloaded = mesh.reload_all();
    let holder2 = &reloaded.iter().find(|(n, _)| *n == "holder-2").unwrap().1;
    assert!(holder2.contains("VRRP priority 100 -> 200"), "{reloaded:?}");
    assert!(mesh.routes_to("holder-2"), "{}", mesh.logs());
    let moved = mesh.follows(PLANE, "holder-2");
    assert_eq!(moved["follow"]["holder_priority"], 200, "{moved}");
    assert_eq!(moved["follow"]["reason"], "higher_priority", "{moved}");
    assert_eq!(
        counter(&moved, "changes"),
        counter(&start, "changes") + 1,
        "{moved}"
    );

    // Back to 100: holder-1 (150) preempts again.
    mesh.set_priority("holder-2", 100);
    let reloaded = mesh.reload_all();
    let holder2 = &reloaded.iter().find(|(n, _)| *n == "holder-2").unwrap().1;
    assert!(holder2.contains("VRRP priority 200 -> 100"), "{reloaded:?}");
    assert!(mesh.routes_to("holder-1"), "{}", mesh.logs());
    let back = mesh.follows(PLANE, "holder-1");
    assert_eq!(back["follow"]["holder_priority"], 150, "{back}");
    assert_eq!(back["follow"]["reason"], "higher_priority", "{back}");
    assert_eq!(
        counter(&back, "changes"),
        counter(&start, "changes") + 2,
        "{back}"
    );
    assert!(
        back["follow"]["dropped"].as_object().unwrap().is_empty(),
        "{back}"
    );
}
