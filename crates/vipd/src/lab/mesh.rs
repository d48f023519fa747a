//! The lab's WireGuard mesh (`vipd lab --mesh wireguard`, work in progress):
//! per-node keys, and the commands that run a node's userspace WireGuard
//! (wireguard-go) in a mount namespace of its own.
//!
//! Why a mount namespace: wireguard-go's control socket is
//! /run/wireguard/IFNAME.sock, one path for every network namespace, so a
//! second `wg99` elsewhere fails ("UAPI listen error") and `wg` talks to
//! the wrong device. Each node's wireguard-go starts under
//! `unshare --mount --propagation private` with a tmpfs on /run/wireguard;
//! `wg`, and the node's `vipd run`, join that mount namespace with
//! `nsenter --mount=/proc/PID/ns/mnt --net=/run/netns/NS`.
//!
//! Seen here (Debian's wireguard-go 0.0.20220316): no environment variable
//! is needed on Linux (it prints a warning box on stderr and runs); without
//! `-f` it detaches (the parent exits, the child keeps running), so `-f`
//! keeps it in the foreground, where its pid is the one to kill.

use std::path::Path;
use std::process::Command;

use crate::render::wireguard::{KeyError, generate_private_key, public_key};

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

/// wireguard-go for `INTERFACE` inside network namespace `namespace`, in a
/// private mount namespace with its own /run/wireguard. `exec` keeps the
/// pid: the spawned pid ends up being wireguard-go's.
pub fn wireguard_go_command(namespace: &str) -> Command {
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
        "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 tmpfs /run/wireguard && exec wireguard-go -f \"$0\"",
        INTERFACE,
    ]);
    command
}

/// `program` run in the mount namespace of wireguard-go `pid` and in the
/// node's network namespace (where `wg` finds the node's own device).
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
        let go = wireguard_go_command("vl000001-holder-1");
        let args: Vec<String> = go
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"vl000001-holder-1".to_owned()));
        assert_eq!(args.last().map(String::as_str), Some(INTERFACE));
        let wg = in_node_command(42, "vl000001-holder-1", Path::new("wg"));
        let args: Vec<String> = wg
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--mount=/proc/42/ns/mnt");
        assert_eq!(args[1], "--net=/run/netns/vl000001-holder-1");
    }
}
