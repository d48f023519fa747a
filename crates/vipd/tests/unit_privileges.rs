//! vipd with only what deploy/systemd/vipd.service gives it: a user that is
//! not root, CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE as ambient
//! capabilities (so `nft` and notify commands inherit them), the same
//! bounding set, no_new_privs. `setpriv` sets them the way systemd does
//! (User=, AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges=).
//! In a namespace, a lone VIP holder with the DNAT datapath must take the
//! VIP, load its nftables table, run its notify command with the same
//! capabilities, and clean up on SIGTERM; without CAP_NET_ADMIN it must
//! refuse to start. Needs root to build the namespace (CI runs it as root).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use vipd::lab::netns::{Netns, Topology, require_root};

const VIP: &str = "198.18.0.100";
/// `nobody`: what matters is that it is not root and owns nothing.
const UID: &str = "65534";
/// The unit's capabilities, as setpriv names them.
const UNIT_CAPS: &str = "net_admin,net_raw,net_bind_service";
/// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
const UNIT_CAP_MASK: &str = "0000000000003400";

fn cluster(hooks: &Path) -> String {
    format!(
        r#"[cluster]
name = "unit-privileges"

[vip]
address = "{VIP}"
interface = "eth0"
vrid = 52
version = 3
advert_interval = "100ms"
mode = "multicast"

[vip.notify]
master = ["/bin/sh", "-c", "{{ id -u; grep -E '^Cap(Eff|Amb)' /proc/self/status; }} > {hooks}/master.txt"]

[api]
port = 6443
datapath = "dnat"

[plane]
proxy_port = 16443

[plane.health]
insecure_skip_verify = true

[[nodes]]
name = "h1"
roles = ["vip"]
address = "198.18.0.1"
priority = 150

[[nodes]]
name = "p1"
roles = ["plane"]
address = "198.18.0.11"
"#,
        hooks = hooks.display()
    )
}

/// `setpriv` arguments that give the unit's user and capabilities, with
/// `caps` as the ambient, inheritable and bounding sets.
fn setpriv_args(caps: &str) -> Vec<String> {
    let set = format!(
        "-all,{}",
        caps.split(',')
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    vec![
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--no-new-privs".into(),
        "--".into(),
        env!("CARGO_BIN_EXE_vipd").into(),
    ]
}

fn has_vip(host: &Netns) -> bool {
    let out = host
        .run("ip", &["-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
}

fn has_table(host: &Netns) -> bool {
    let out = host.run("nft", &["list", "tables"]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("table inet vipd")
}

/// A directory the unprivileged vipd can read (and, for `writable`, write).
fn shared_dir(path: &Path, writable: bool) {
    let mode = if writable { 0o1777 } else { 0o755 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn vipd_runs_with_the_units_user_and_capabilities_only() {
    if !require_root("vipd_runs_with_the_units_user_and_capabilities_only") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let host = topo.add_host("h1").unwrap();
    topo.plug(&host, "eth0", &["198.18.0.1/24".parse().unwrap()])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path(), false);
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    shared_dir(&hooks, true);
    // The unit's RuntimeDirectory=vipd: the daemon's user owns it.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    shared_dir(&run, true);
    let socket = run.join("vipd.sock");
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster(&hooks)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log_path = dir.path().join("vipd.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let mut command = host.command("setpriv");
    command
        .args(setpriv_args(UNIT_CAPS))
        .args(["run", "--node", "h1", "-c"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("VIPD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let pid = topo.spawn(command).unwrap();

    // The raw VRRP socket (CAP_NET_RAW), the VIP over rtnetlink
    // (CAP_NET_ADMIN), the table loaded by the `nft` it runs (ambient
    // CAP_NET_ADMIN).
    let up = Topology::wait_for(Duration::from_secs(15), Duration::from_millis(20), || {
        has_vip(&host) && has_table(&host)
    });
    assert!(up, "no VIP or no table as the unit's user:\n{}", log());
    let master = hooks.join("master.txt");
    let hook_ran = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        std::fs::read_to_string(&master).is_ok_and(|t| t.contains("CapAmb"))
    });
    assert!(
        hook_ran,
        "the master notify command did not run:\n{}",
        log()
    );
    let hook = std::fs::read_to_string(&master).unwrap();
    assert_eq!(hook.lines().next(), Some(UID), "{hook}");
    for set in ["CapEff", "CapAmb"] {
        assert!(
            hook.lines()
                .any(|l| l.starts_with(set) && l.ends_with(UNIT_CAP_MASK)),
            "the notify command's {set} is not the unit's:\n{hook}"
        );
    }
    assert!(!log().contains("not permitted"), "{}", log());

    // SIGTERM (systemctl stop): the VIP and the table go.
    topo.signal(pid, Signal::SIGTERM).unwrap();
    let gone = Topology::wait_for(Duration::from_secs(15), Duration::from_millis(20), || {
        !has_vip(&host) && !has_table(&host)
    });
    assert!(gone, "VIP or table left after SIGTERM:\n{}", log());

    // Without CAP_NET_ADMIN vipd cannot touch addresses: it must refuse to
    // start (exit 1), not run half-working. `timeout` bounds a hang.
    let without = host
        .command("timeout")
        .arg("20")
        .arg("setpriv")
        .args(setpriv_args("net_raw,net_bind_service"))
        .args(["run", "--node", "h1", "-c"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert_eq!(without.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not permitted"), "{stderr}");
    assert!(!has_vip(&host) && !has_table(&host));
}
