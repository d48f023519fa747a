//! The mesh follower on real (userspace) WireGuard, in network namespaces
//! (root): two VIP holders and a plane, each with wireguard-go on `wg99` in
//! a mount namespace of its own (lab::mesh), configured from `vipd render
//! wireguard`, all running `vipd run`. The plane routes the VIP to the
//! master's peer, and moves it when the master is SIGKILLed or stopped;
//! the device is read after every step and never has the VIP on two peers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;
use nix::sys::signal::Signal;
use vipd::lab::mesh::{INTERFACE, NodeKeys, in_node_command, secret_name, wireguard_go_command};
use vipd::lab::netns::{Netns, Topology, require_root};
use vipd::mesh::wireguard::AllowedIps;

const NODES: [(&str, u8, &str); 3] = [
    ("holder-1", 1, "roles = [\"vip\"]\npriority = 150"),
    ("holder-2", 2, "roles = [\"vip\"]\npriority = 100"),
    ("plane-1", 11, "roles = [\"plane\"]"),
];

fn cluster(keys: &[NodeKeys]) -> String {
    let mut text = String::from(
        r#"[cluster]
name = "meshtest"

[vip]
address = "198.19.0.100"
interface = "wg99"
vrid = 51
advert_interval = "100ms"

[mesh]
interface = "wg99"
network = "198.19.0.0/24"

[plane.health]
kind = "tcp"
"#,
    );
    for ((name, host, roles), key) in NODES.iter().zip(keys) {
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"{name}\"\n{roles}\naddress = \"198.19.0.{host}\"\nwireguard = {{ public_key = \"{}\", endpoint = \"198.18.0.{host}:51820\", private_key = {{ secret = \"{}\" }} }}\n",
            key.public_key,
            secret_name(name)
        ));
    }
    text
}

fn run_in(pid: u32, ns: &Netns, program: &str, args: &[&str]) -> String {
    let output = in_node_command(pid, ns.name(), Path::new(program))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The peer (public key) whose AllowedIPs hold the VIP on a node, asserting
/// that at most one does.
fn vip_peer(pid: u32, ns: &Netns) -> Option<String> {
    let text = run_in(pid, ns, "wg", &["show", INTERFACE, "allowed-ips"]);
    let device = AllowedIps::parse(&text).unwrap();
    let vip: IpNet = "198.19.0.100/32".parse().unwrap();
    let holders = device.holders_of(vip);
    assert!(holders.len() <= 1, "the VIP on two peers: {text}");
    holders.first().map(|k| (*k).to_owned())
}

struct Node {
    ns: Netns,
    wg_pid: u32,
    vipd_pid: Option<u32>,
    socket: PathBuf,
    log: PathBuf,
}

#[test]
fn a_follower_moves_the_vip_to_the_new_master_on_kill_and_stop() {
    if !require_root("a_follower_moves_the_vip_to_the_new_master_on_kill_and_stop") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<NodeKeys> = NODES
        .iter()
        .map(|_| NodeKeys::generate().unwrap())
        .collect();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster(&keys)).unwrap();
    let secrets = dir.path().join("secrets.toml");
    let mut secrets_text = String::new();
    for ((name, ..), key) in NODES.iter().zip(&keys) {
        secrets_text.push_str(&format!(
            "{} = \"{}\"\n",
            secret_name(name),
            key.private_key
        ));
    }
    std::fs::write(&secrets, secrets_text).unwrap();
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let mut nodes = Vec::new();
    for (name, host, _) in NODES {
        let ns = topo.add_host(name).unwrap();
        let underlay: IpNet = format!("198.18.0.{host}/24").parse().unwrap();
        topo.plug(&ns, "eth0", &[underlay]).unwrap();
        let mut command = wireguard_go_command(ns.name());
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let wg_pid = topo.spawn(command).unwrap();
        let up = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            in_node_command(wg_pid, ns.name(), Path::new("wg"))
                .args(["show", INTERFACE])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(up, "wireguard-go did not come up on {name}");
        let conf = dir.path().join(format!("{name}.conf"));
        let rendered = Command::new(env!("CARGO_BIN_EXE_vipd"))
            .args(["render", "wireguard", "-c"])
            .arg(&config)
            .arg("--secrets")
            .arg(&secrets)
            .args(["--node", name, "-o"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let stripped = Command::new("wg-quick")
            .arg("strip")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(stripped.status.success());
        let plain = dir.path().join(format!("{name}.plain"));
        std::fs::write(&plain, &stripped.stdout).unwrap();
        run_in(
            wg_pid,
            &ns,
            "wg",
            &["setconf", INTERFACE, plain.to_str().unwrap()],
        );
        let mesh = format!("198.19.0.{host}/24");
        run_in(wg_pid, &ns, "ip", &["addr", "add", &mesh, "dev", INTERFACE]);
        run_in(wg_pid, &ns, "ip", &["link", "set", INTERFACE, "up"]);
        nodes.push(Node {
            ns,
            wg_pid,
            vipd_pid: None,
            socket: dir.path().join(format!("{name}.sock")),
            log: dir.path().join(format!("{name}.log")),
        });
    }
    let start = |topo: &mut Topology, node: &mut Node, name: &str| {
        let mut command = in_node_command(
            node.wg_pid,
            node.ns.name(),
            Path::new(env!("CARGO_BIN_EXE_vipd")),
        );
        command
            .args(["run", "-c"])
            .arg(&config)
            .arg("--secrets")
            .arg(&secrets)
            .args(["--node", name, "--socket"])
            .arg(&node.socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&node.log).unwrap());
        node.vipd_pid = Some(topo.spawn(command).unwrap());
    };
    for (node, (name, ..)) in nodes.iter_mut().zip(NODES) {
        start(&mut topo, node, name);
    }
    let logs = |nodes: &[Node]| -> String {
        nodes
            .iter()
            .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let (holder1_key, holder2_key) = (keys[0].public_key.clone(), keys[1].public_key.clone());
    let plane = 2;
    let points_at = |nodes: &[Node], want: Option<&str>| {
        Topology::wait_for(Duration::from_secs(8), Duration::from_millis(50), || {
            vip_peer(nodes[plane].wg_pid, &nodes[plane].ns).as_deref() == want
        })
    };
    // holder-1 (150) is master: the plane routes the VIP to its peer, and
    // holder-1 itself to no peer (it holds the VIP).
    assert!(points_at(&nodes, Some(&holder1_key)), "{}", logs(&nodes));
    let master_route =
        Topology::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            vip_peer(nodes[0].wg_pid, &nodes[0].ns).is_none()
        });
    assert!(
        master_route,
        "the master still routes the VIP to a peer\n{}",
        logs(&nodes)
    );
    assert_eq!(
        vip_peer(nodes[1].wg_pid, &nodes[1].ns),
        Some(holder1_key.clone())
    );
    // The plane follows holder-1 by its adverts (the rendered file pinned
    // the VIP there already): its status says so.
    let follows = |nodes: &[Node], holder: &str| {
        let mut last = serde_json::Value::Null;
        let ok = Topology::wait_for(Duration::from_secs(8), Duration::from_millis(50), || {
            last = status_of(&nodes[plane].socket);
            last["follow"]["route"] == "holder" && last["follow"]["holder"] == holder
        });
        assert!(ok, "{last}\n{}", logs(nodes));
        last
    };
    follows(&nodes, "holder-1");

    // SIGKILL the master's vipd: no priority 0; holder-2 takes over and the
    // plane follows it.
    topo.signal(nodes[0].vipd_pid.take().unwrap(), Signal::SIGKILL)
        .unwrap();
    assert!(points_at(&nodes, Some(&holder2_key)), "{}", logs(&nodes));
    follows(&nodes, "holder-2");

    // holder-1 back: it preempts (higher priority); the plane follows.
    start(&mut topo, &mut nodes[0], "holder-1");
    assert!(points_at(&nodes, Some(&holder1_key)), "{}", logs(&nodes));

    // SIGTERM: priority 0, make before break; the plane moves to holder-2.
    topo.signal(nodes[0].vipd_pid.take().unwrap(), Signal::SIGTERM)
        .unwrap();
    assert!(points_at(&nodes, Some(&holder2_key)), "{}", logs(&nodes));
    let status = follows(&nodes, "holder-2");
    assert!(
        status["follow"]["changes"].as_u64().unwrap() >= 3,
        "{status}"
    );
}

fn status_of(socket: &Path) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}
