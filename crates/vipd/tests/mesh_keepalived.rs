//! A gradual migration on the mesh (root): the VIP holders still run
//! keepalived, configured by `vipd render keepalived` (whose `unicast_peer`
//! list names the followers), while a plane already runs vipd. The plane
//! follows the keepalived master over userspace WireGuard, and moves the
//! VIP's AllowedIPs entry when keepalived fails over on a stop and back.

mod support;

use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use support::mesh::{Mesh, NodeSpec};
use vipd::lab::netns::require_root;

const NODES: [NodeSpec; 3] = [
    NodeSpec::foreign_holder("holder-1", 1, 150),
    NodeSpec::foreign_holder("holder-2", 2, 100),
    NodeSpec::plane("plane-1", 11),
];

/// keepalived in the foreground on `name`, VRRP only, with its own pid
/// files (their default paths are shared by every namespace).
fn keepalived(mesh: &mut Mesh, name: &str) -> u32 {
    let (config, secrets) = mesh.files();
    let conf = mesh.dir().join(format!("{name}.keepalived.conf"));
    let rendered = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["render", "keepalived", "-c"])
        .arg(config)
        .arg("--secrets")
        .arg(secrets)
        .args(["--node", name])
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8(rendered.stdout).unwrap();
    assert!(
        text.contains("198.19.0.11  # plane-1"),
        "the follower is a unicast peer:\n{text}"
    );
    std::fs::write(&conf, text).unwrap();
    let file = |ext: &str| mesh.dir().join(format!("{name}.{ext}"));
    let mut command = mesh.node(name).command("keepalived");
    command
        .args([
            "--dont-fork",
            "--log-console",
            "--vrrp",
            "--dont-respawn",
            "--no-syslog",
            "-f",
        ])
        .arg(&conf)
        .arg("-p")
        .arg(file("pid"))
        .arg("-r")
        .arg(file("vrrp.pid"))
        .arg("-c")
        .arg(file("checkers.pid"))
        .arg("-b")
        .arg(file("bfd.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(file("log")).unwrap());
    mesh.spawn(command)
}

/// Waits until the plane follows `holder`; its status, or a panic with
/// every log.
fn follows(mesh: &Mesh, holder: &str, logs: &dyn Fn(&Mesh) -> String) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = vipd::lab::netns::Topology::wait_for(
        std::time::Duration::from_secs(8),
        std::time::Duration::from_millis(50),
        || {
            last = mesh.status("plane-1");
            last["follow"]["route"] == "holder" && last["follow"]["holder"] == holder
        },
    );
    assert!(
        ok,
        "plane-1 does not follow {holder}: {last}\n{}",
        logs(mesh)
    );
    last
}

#[test]
fn a_vipd_follower_follows_a_keepalived_master() {
    if !require_root("a_vipd_follower_follows_a_keepalived_master") {
        return;
    }
    let mut mesh = Mesh::up(&NODES);
    let holder1 = mesh.node("holder-1").keys.public_key.clone();
    let holder2 = mesh.node("holder-2").keys.public_key.clone();
    let first = keepalived(&mut mesh, "holder-1");
    keepalived(&mut mesh, "holder-2");
    let logs = |mesh: &Mesh| {
        let keepalived: String = ["holder-1", "holder-2"]
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(mesh.dir().join(format!("{n}.log")));
                format!("---- keepalived {n}\n{}", log.unwrap_or_default())
            })
            .collect();
        format!("{}\n{keepalived}", mesh.logs())
    };
    let status = follows(&mesh, "holder-1", &logs);
    assert_eq!(status["follow"]["holder_priority"], 150, "{status}");
    assert_eq!(
        mesh.vip_peer("plane-1").as_deref(),
        Some(holder1.as_str()),
        "{}",
        logs(&mesh)
    );
    // keepalived stops: priority 0, holder-2's keepalived takes over, the
    // plane follows it.
    mesh.signal(first, Signal::SIGTERM);
    follows(&mesh, "holder-2", &logs);
    assert_eq!(
        mesh.vip_peer("plane-1").as_deref(),
        Some(holder2.as_str()),
        "{}",
        logs(&mesh)
    );
    // Back: holder-1's keepalived preempts and the plane follows it again.
    // (Started again only once its VRRP child is gone: a late one removes
    // the new instance's pid file.)
    let ns = mesh.node("holder-1").ns.name().to_owned();
    assert!(vipd::lab::stack::wait_gone(
        &ns,
        "keepalived",
        std::time::Duration::from_secs(10)
    ));
    keepalived(&mut mesh, "holder-1");
    let status = follows(&mesh, "holder-1", &logs);
    assert_eq!(
        mesh.vip_peer("plane-1").as_deref(),
        Some(holder1.as_str()),
        "{}",
        logs(&mesh)
    );
    assert!(
        status["follow"]["changes"].as_u64().unwrap() >= 3,
        "{status}"
    );
    assert_eq!(
        status["follow"]["dropped"],
        serde_json::json!({}),
        "{status}"
    );
}
