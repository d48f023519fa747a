//! The lab's WireGuard mesh (`vipd lab --mesh wireguard`): per-node keys,
//! and a node's userspace WireGuard (wireguard-go) in a mount namespace of
//! its own.
//!
//! Why a mount namespace: wireguard-go's control socket is
//! /run/wireguard/IFNAME.sock, one path for every network namespace, so a
//! second `wg99` elsewhere fails ("UAPI listen error") and `wg` talks to
//! the wrong device. Each node gets an *anchor*, a sleeping process started
//! under `unshare --mount --propagation private` with a tmpfs on
//! /run/wireguard, which holds the node's mount namespace for the lab's
//! life; wireguard-go, `wg`, and every daemon of the node join it and the
//! node's network namespace with `nsenter --mount=/proc/ANCHOR/ns/mnt
//! --net=/run/netns/NS` ([`in_node_command`]). So a killed wireguard-go
//! can be started again where the node's vipd still finds its socket.
//! (The anchor's mount namespace is a copy made by `ip netns exec`, which
//! mounts the network namespace's own /sys: the node's processes see
//! their interfaces there.)
//!
//! A node comes up as it would in production: `vipd render wireguard -o`
//! writes its wg-quick file, `wg-quick strip` turns it into what `wg
//! setconf` reads, and the address goes on `wg99` ([`configure`]).
//!
//! Seen here (Debian's wireguard-go 0.0.20220316): no environment variable
//! is needed on Linux (it prints a warning box on stderr and runs); without
//! `-f` it detaches (the parent exits, the child keeps running), so `-f`
//! keeps it in the foreground, where its pid is the one to kill.

use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::keys::{KeyError, generate_private_key, public_key};
use crate::mesh::wireguard::AllowedIps;

/// The WireGuard interface of every lab node.
pub const INTERFACE: &str = "wg99";
/// The underlay port.
pub const LISTEN_PORT: u16 = 51820;

/// A node's key pair, base64 as `wg genkey` / `wg pubkey` print them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    pub private_key: String,
    pub public_key: String,
}

impl NodeKeys {
    pub fn generate() -> Result<Self, KeyError> {
        let private_key = generate_private_key()?;
        let public_key = public_key(&private_key)?;
        Ok(Self {
            private_key,
            public_key,
        })
    }
}

/// The secret name of a node's private key in the lab's secrets file.
pub fn secret_name(node: &str) -> String {
    format!("wg_{}", node.replace('-', "_"))
}

/// The anchor of a node: a process that only holds the node's mount
/// namespace, with a tmpfs of its own on /run/wireguard. `exec` keeps the
/// pid: the spawned pid ends up being the anchor's.
pub fn anchor_command(namespace: &str) -> Command {
    let mut command = Command::new("ip");
    command.args([
        "netns",
        "exec",
        namespace,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 tmpfs /run/wireguard && exec sleep infinity",
    ]);
    command
}

/// The arguments of wireguard-go in the foreground for [`INTERFACE`].
pub const WIREGUARD_GO_ARGS: [&str; 2] = ["-f", INTERFACE];

/// True when the anchor `pid` has its tmpfs on /run/wireguard (so a
/// wireguard-go started in its mount namespace has a socket of its own).
pub fn anchor_ready(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(4) == Some("/run/wireguard"))
    })
}

/// Renders `node`'s wg-quick file with `vipd render wireguard` into
/// `dir/NODE.conf` (0600, by `-o`) and strips it with `wg-quick strip`
/// into `dir/NODE.wg`, what `wg setconf` reads. Returns the latter.
pub fn render(
    vipd: &Path,
    cluster: &Path,
    secrets: &Path,
    node: &str,
    dir: &Path,
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join(format!("{node}.conf"));
    let out = Command::new(vipd)
        .args(["render", "wireguard", "-c"])
        .arg(cluster)
        .arg("--secrets")
        .arg(secrets)
        .args(["--node", node, "-o"])
        .arg(&conf)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "vipd render wireguard --node {node}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let out = Command::new("wg-quick").arg("strip").arg(&conf).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "wg-quick strip {}: {}",
            conf.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // The private key is in it: 0600 before it is written.
    let plain = dir.join(format!("{node}.wg"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&plain)?;
    std::io::Write::write_all(&mut file, &out.stdout)?;
    Ok(plain)
}

/// `wg ARGS` (or `ip ARGS`) on a node; its stdout, or an error with stderr.
pub fn run_in(anchor: u32, namespace: &str, program: &str, args: &[&str]) -> io::Result<String> {
    let out = in_node_command(anchor, namespace, Path::new(program))
        .args(args)
        .output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{program} {} in {namespace}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Waits (bounded) for wireguard-go's device on a node, then loads the
/// stripped file `plain`, puts `addresses` on it and sets it up.
pub fn configure(
    anchor: u32,
    namespace: &str,
    plain: &Path,
    addresses: &[IpNet],
    limit: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    while run_in(anchor, namespace, "wg", &["show", INTERFACE]).is_err() {
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "wireguard-go made no {INTERFACE} in {namespace} within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let plain = plain.display().to_string();
    run_in(anchor, namespace, "wg", &["setconf", INTERFACE, &plain])?;
    for address in addresses {
        run_in(
            anchor,
            namespace,
            "ip",
            &["addr", "add", &address.to_string(), "dev", INTERFACE],
        )?;
    }
    run_in(anchor, namespace, "ip", &["link", "set", INTERFACE, "up"])?;
    Ok(())
}

/// The peers (public keys) whose AllowedIPs hold `vip` on a node's device.
pub fn vip_peers(anchor: u32, namespace: &str, vip: IpNet) -> io::Result<Vec<String>> {
    let text = run_in(anchor, namespace, "wg", &["show", INTERFACE, "allowed-ips"])?;
    let device = AllowedIps::parse(&text).map_err(io::Error::other)?;
    Ok(device
        .holders_of(vip)
        .into_iter()
        .map(|k| k.to_owned())
        .collect())
}

/// `program` run in the mount namespace of process `pid` (a node's anchor,
/// or its wireguard-go) and in the node's network namespace (where `wg`
/// finds the node's own device).
pub fn in_node_command(pid: u32, namespace: &str, program: &Path) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--mount=/proc/{pid}/ns/mnt"))
        .arg(format!("--net=/run/netns/{namespace}"))
        .arg("--")
        .arg(program);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pair_up_and_secret_names_are_toml_keys() {
        let keys = NodeKeys::generate().unwrap();
        assert_eq!(public_key(&keys.private_key).unwrap(), keys.public_key);
        assert_ne!(NodeKeys::generate().unwrap(), keys);
        assert_eq!(secret_name("holder-1"), "wg_holder_1");
    }

    #[test]
    fn node_commands_name_the_namespaces() {
        let wg = in_node_command(42, "vl000001-holder-1", Path::new("wg"));
        let args: Vec<String> = wg
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--mount=/proc/42/ns/mnt");
        assert_eq!(args[1], "--net=/run/netns/vl000001-holder-1");
        let anchor = anchor_command("vl000001-holder-1");
        let args: Vec<String> = anchor
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"vl000001-holder-1".to_owned()));
        let script = args.last().unwrap();
        assert!(script.contains("/run/wireguard") && script.ends_with("exec sleep infinity"));
    }
}
