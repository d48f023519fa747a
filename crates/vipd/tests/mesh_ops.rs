//! The operator's surface of the mesh follower on real (userspace)
//! WireGuard, in network namespaces (root): two VIP holders and a plane,
//! each with wireguard-go on `wg99` configured from `vipd render
//! wireguard`, all running `vipd run`. On the follower: `vipd verify` passes
//! and names the master's peer, the metrics show the route; a `wg set` by
//! hand and a `wg syncconf` of the rendered file (what the Ansible role's
//! handler runs) move the VIP's entry away from the master, and vipd puts
//! it back, counted as repairs.

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
const FOLLOWER: usize = 2;
const VIP: &str = "198.19.0.100/32";

fn cluster(keys: &[NodeKeys]) -> String {
    let mut text = String::from(
        r#"[cluster]
name = "meshops"

[vip]
address = "198.19.0.100"
interface = "wg99"
vrid = 52
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

struct Node {
    name: &'static str,
    ns: Netns,
    wg_pid: u32,
    vipd_pid: Option<u32>,
    socket: PathBuf,
    log: PathBuf,
    /// Its rendered wg-quick file.
    conf: PathBuf,
}

impl Node {
    /// A program inside the node (its network and its wireguard-go's mount
    /// namespace, so `wg` finds this node's device).
    fn command(&self, program: &str) -> Command {
        in_node_command(self.wg_pid, self.ns.name(), Path::new(program))
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} on {}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The peer whose AllowedIPs hold the VIP, asserting at most one does.
    fn vip_peer(&self) -> Option<String> {
        let text = self.run("wg", &["show", INTERFACE, "allowed-ips"]);
        let device = AllowedIps::parse(&text).unwrap();
        let holders = device.holders_of(VIP.parse::<IpNet>().unwrap());
        assert!(holders.len() <= 1, "the VIP on two peers: {text}");
        holders.first().map(|k| (*k).to_owned())
    }

    fn status(&self) -> serde_json::Value {
        let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn metrics(&self) -> String {
        let response = vipd::api::client::request(&self.socket, "GET", "/metrics").unwrap();
        assert_eq!(response.status, 200);
        String::from_utf8(response.body).unwrap()
    }

    /// `vipd verify --node NAME --json` inside the node: its mesh-route check.
    fn verify_mesh_route(&self, config: &Path, secrets: &Path) -> serde_json::Value {
        let output = self
            .command(env!("CARGO_BIN_EXE_vipd"))
            .args(["verify", "--json", "--timeout", "300ms", "-c"])
            .arg(config)
            .arg("--secrets")
            .arg(secrets)
            .args(["--node", self.name, "--socket"])
            .arg(&self.socket)
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
    let mut topo = Topology::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<NodeKeys> = NODES
        .iter()
        .map(|_| NodeKeys::generate().unwrap())
        .collect();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster(&keys)).unwrap();
    let secrets = dir.path().join("secrets.toml");
    let secrets_text: String = NODES
        .iter()
        .zip(&keys)
        .map(|((name, ..), key)| format!("{} = \"{}\"\n", secret_name(name), key.private_key))
        .collect();
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
        let node = Node {
            name,
            ns,
            wg_pid,
            vipd_pid: None,
            socket: dir.path().join(format!("{name}.sock")),
            log: dir.path().join(format!("{name}.log")),
            conf: dir.path().join(format!("{INTERFACE}-{name}.conf")),
        };
        let up = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            node.command("wg")
                .args(["show", INTERFACE])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(up, "wireguard-go did not come up on {name}");
        let rendered = Command::new(env!("CARGO_BIN_EXE_vipd"))
            .args(["render", "wireguard", "-c"])
            .arg(&config)
            .arg("--secrets")
            .arg(&secrets)
            .args(["--node", name, "-o"])
            .arg(&node.conf)
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        // What `wg-quick up` does, minus what needs the kernel module.
        node.run(
            "bash",
            &[
                "-c",
                &format!(
                    "wg setconf {INTERFACE} <(wg-quick strip {})",
                    node.conf.display()
                ),
            ],
        );
        let mesh = format!("198.19.0.{host}/24");
        node.run("ip", &["addr", "add", &mesh, "dev", INTERFACE]);
        node.run("ip", &["link", "set", INTERFACE, "up"]);
        nodes.push(node);
    }
    for node in &mut nodes {
        let mut command = node.command(env!("CARGO_BIN_EXE_vipd"));
        command
            .args(["run", "-c"])
            .arg(&config)
            .arg("--secrets")
            .arg(&secrets)
            .args(["--node", node.name, "--socket"])
            .arg(&node.socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&node.log).unwrap());
        node.vipd_pid = Some(topo.spawn(command).unwrap());
    }
    let logs = |nodes: &[Node]| -> String {
        nodes
            .iter()
            .map(|n| {
                format!(
                    "{}:\n{}",
                    n.name,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let follower = &nodes[FOLLOWER];
    let (holder1, holder2) = (keys[0].public_key.clone(), keys[1].public_key.clone());
    let follows = |holder: &str| {
        let mut last = serde_json::Value::Null;
        let ok = Topology::wait_for(Duration::from_secs(8), Duration::from_millis(50), || {
            last = follower.status();
            last["follow"]["route"] == "holder"
                && last["follow"]["holder"] == holder
                && last["follow"]["applied"] == true
        });
        assert!(ok, "{last:#}\n{}", logs(&nodes));
        last
    };
    let points_at = |key: &str| {
        Topology::wait_for(Duration::from_secs(6), Duration::from_millis(50), || {
            follower.vip_peer().as_deref() == Some(key)
        })
    };
    let repairs = || follower.status()["follow"]["repairs"].as_u64().unwrap();

    // holder-1 (150) is master; the plane follows it.
    follows("holder-1");
    assert!(points_at(&holder1), "{}", logs(&nodes));
    assert_eq!(repairs(), 0);
    let check = follower.verify_mesh_route(&config, &secrets);
    assert_eq!(check["verdict"], "pass", "{check:#}\n{}", logs(&nodes));
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("holder-1") && detail.contains(&holder1) && detail.contains("since "),
        "{detail}"
    );
    let metrics = follower.metrics();
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
    let holder2_own = format!("198.19.0.2/32,{VIP}");
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
    assert_eq!(follower.vip_peer().as_deref(), Some(holder2.as_str()));
    assert!(points_at(&holder1), "not put back\n{}", logs(&nodes));
    let back = Topology::wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
        repairs() == 1
    });
    assert!(back, "{:#}", follower.status());
    assert_eq!(
        sample(&follower.metrics(), "vipd_follow_route_repairs_total"),
        Some(1.0)
    );
    assert!(
        std::fs::read_to_string(&follower.log)
            .unwrap()
            .contains("put it back"),
        "{}",
        logs(&nodes)
    );

    // The master dies: the plane follows holder-2. Then the Ansible
    // handler's `wg syncconf` of the rendered file pins the VIP to
    // holder-1 again (the file's start value): vipd moves it back.
    let master = nodes[0].vipd_pid.unwrap();
    topo.signal(master, Signal::SIGKILL).unwrap();
    follows("holder-2");
    assert!(points_at(&holder2), "{}", logs(&nodes));
    let changes_before = follower.status()["follow"]["changes"].as_u64().unwrap();
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
    assert!(points_at(&holder2), "not put back\n{}", logs(&nodes));
    let back = Topology::wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
        repairs() == 2
    });
    let status = follower.status();
    assert!(back, "{status:#}");
    // A repair is not a route change.
    assert_eq!(status["follow"]["changes"].as_u64(), Some(changes_before));
    let check = follower.verify_mesh_route(&config, &secrets);
    assert_eq!(check["verdict"], "pass", "{check:#}");
    assert!(
        check["detail"].as_str().unwrap().contains("holder-2"),
        "{check:#}"
    );
}
