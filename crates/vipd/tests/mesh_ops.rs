//! The operator's surface of the mesh follower on real (userspace)
//! WireGuard, in network namespaces (root): two VIP holders and a plane,
//! each with wireguard-go on `wg99` configured from `vipd render
//! wireguard` (tests/support/mesh.rs), all running `vipd run`. On the
//! follower: `vipd verify` passes and names the master's peer, the metrics
//! show the route; a `wg set` by hand and a `wg syncconf` of the rendered
//! file (what the Ansible role's handler runs) move the VIP's entry away
//! from the master, and vipd puts it back, counted as repairs.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::mesh::{Mesh, Node, NodeSpec, TWO_HOLDERS_AND_A_PLANE, VIP};
use vipd::lab::mesh::INTERFACE;
use vipd::lab::netns::{Topology, require_root};

const NODES: [NodeSpec; 3] = TWO_HOLDERS_AND_A_PLANE;
const FOLLOWER: &str = "plane-1";

/// `vipd verify --node NAME --json` inside the node: its mesh-route check.
fn verify_mesh_route(mesh: &Mesh, node: &Node) -> serde_json::Value {
    let (config, secrets) = mesh.files();
    let output = node
        .command(env!("CARGO_BIN_EXE_vipd"))
        .args(["verify", "--json", "--timeout", "300ms", "-c"])
        .arg(config)
        .arg("--secrets")
        .arg(secrets)
        .args(["--node", node.spec.name, "--socket"])
        .arg(&node.socket)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "mesh-route")
        .unwrap_or_else(|| panic!("no mesh-route check: {report:#}"))
        .clone()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn vipd_puts_back_a_vip_entry_moved_outside_it_and_verify_shows_the_route() {
    let test = "vipd_puts_back_a_vip_entry_moved_outside_it_and_verify_shows_the_route";
    if !require_root(test) {
        return;
    }
    let mut mesh = Mesh::up(&NODES);
    let holder1 = mesh.node("holder-1").keys.public_key.clone();
    let holder2 = mesh.node("holder-2").keys.public_key.clone();
    let status = |mesh: &Mesh| mesh.status(FOLLOWER);
    let follows = |mesh: &Mesh, holder: &str| {
        let mut last = serde_json::Value::Null;
        let ok = Topology::wait_for(Duration::from_secs(8), Duration::from_millis(50), || {
            last = status(mesh);
            last["follow"]["route"] == "holder"
                && last["follow"]["holder"] == holder
                && last["follow"]["applied"] == true
        });
        assert!(ok, "{last:#}\n{}", mesh.logs());
        last
    };
    let points_at = |mesh: &Mesh, key: &str| {
        Topology::wait_for(Duration::from_secs(6), Duration::from_millis(50), || {
            mesh.vip_peer(FOLLOWER).as_deref() == Some(key)
        })
    };
    let repairs = |mesh: &Mesh| status(mesh)["follow"]["repairs"].as_u64().unwrap();

    // holder-1 (150) is master; the plane follows it.
    follows(&mesh, "holder-1");
    assert!(points_at(&mesh, &holder1), "{}", mesh.logs());
    assert_eq!(repairs(&mesh), 0);
    let check = verify_mesh_route(&mesh, mesh.node(FOLLOWER));
    assert_eq!(check["verdict"], "pass", "{check:#}\n{}", mesh.logs());
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("holder-1") && detail.contains(&holder1) && detail.contains("since "),
        "{detail}"
    );
    let metrics = mesh.metrics(FOLLOWER);
    let route = |metrics: &str, holder: &str| {
        sample(
            metrics,
            &format!("vipd_follow_route{{route=\"holder\",holder=\"{holder}\"}}"),
        )
    };
    assert_eq!(route(&metrics, "holder-1"), Some(1.0), "{metrics}");
    assert_eq!(route(&metrics, "holder-2"), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, "vipd_follow_route_applied"), Some(1.0));
    assert!(sample(&metrics, "vipd_follow_adverts_received_total").unwrap() > 0.0);

    // A `wg set` by hand puts the VIP on holder-2's peer: vipd puts it back.
    let follower = mesh.node(FOLLOWER);
    let holder2_own = format!("198.19.0.2/32,{VIP}/32");
    follower.run(
        "wg",
        &[
            "set",
            INTERFACE,
            "peer",
            &holder2,
            "allowed-ips",
            &holder2_own,
        ],
    );
    assert_eq!(mesh.vip_peer(FOLLOWER).as_deref(), Some(holder2.as_str()));
    assert!(points_at(&mesh, &holder1), "not put back\n{}", mesh.logs());
    let back = Topology::wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
        repairs(&mesh) == 1
    });
    assert!(back, "{:#}", status(&mesh));
    assert_eq!(
        sample(&mesh.metrics(FOLLOWER), "vipd_follow_route_repairs_total"),
        Some(1.0)
    );
    assert!(
        std::fs::read_to_string(&follower.log)
            .unwrap()
            .contains("put it back"),
        "{}",
        mesh.logs()
    );

    // The master dies: the plane follows holder-2. Then the Ansible
    // handler's `wg syncconf` of the rendered file pins the VIP to
    // holder-1 again (the file's start value): vipd moves it back.
    mesh.signal_vipd("holder-1", Signal::SIGKILL);
    follows(&mesh, "holder-2");
    assert!(points_at(&mesh, &holder2), "{}", mesh.logs());
    let changes_before = status(&mesh)["follow"]["changes"].as_u64().unwrap();
    let follower = mesh.node(FOLLOWER);
    follower.run(
        "bash",
        &[
            "-c",
            &format!(
                "wg syncconf {INTERFACE} <(wg-quick strip {})",
                follower.conf.display()
            ),
        ],
    );
    assert!(points_at(&mesh, &holder2), "not put back\n{}", mesh.logs());
    let back = Topology::wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
        repairs(&mesh) == 2
    });
    let last = status(&mesh);
    assert!(back, "{last:#}");
    // A repair is not a route change.
    assert_eq!(last["follow"]["changes"].as_u64(), Some(changes_before));
    let check = verify_mesh_route(&mesh, mesh.node(FOLLOWER));
    assert_eq!(check["verdict"], "pass", "{check:#}");
    assert!(
        check["detail"].as_str().unwrap().contains("holder-2"),
        "{check:#}"
    );
}
