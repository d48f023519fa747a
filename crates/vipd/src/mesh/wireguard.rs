//! The WireGuard device, read and changed with `wg` from wireguard-tools.
//!
//! `wg` is the one client that speaks both of WireGuard's control
//! interfaces: generic netlink to the kernel module and the UAPI socket
//! (/var/run/wireguard/IFNAME.sock) of userspace implementations
//! (wireguard-go, boringtun). A route change is rare (a failover), and one
//! `wg show` + one `wg set` cost some 20 ms here: less than a crate that
//! speaks both protocols would add to the dependency tree.
//!
//! Only the VIP entry changes. `wg set IF peer KEY allowed-ips LIST`
//! replaces that peer's list, so the list is read first and written back
//! with the VIP added or removed; the rest stays as `vipd render wireguard`
//! wrote it. WireGuard maps a prefix to exactly one peer: adding the VIP to
//! the new peer takes it from the old one in the same operation, so the VIP
//! is never on two peers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// The peers of a device and their AllowedIPs, as `wg show IF allowed-ips`
/// prints them, in the device's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedIps(pub Vec<(String, Vec<IpNet>)>);

impl AllowedIps {
    /// Parses `wg show IF allowed-ips`: one line per peer, the public key,
    /// a tab, the prefixes separated by spaces (or `(none)`).
    pub fn parse(text: &str) -> Result<AllowedIps, String> {
        let mut peers = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, rest) = line
                .split_once('\t')
                .ok_or_else(|| format!("unexpected line from wg: {line:?}"))?;
            let mut prefixes = Vec::new();
            for item in rest.split_whitespace().filter(|&i| i != "(none)") {
                prefixes.push(
                    item.parse::<IpNet>()
                        .map_err(|e| format!("allowed IP {item:?} from wg: {e}"))?,
                );
            }
            peers.push((key.to_owned(), prefixes));
        }
        Ok(AllowedIps(peers))
    }

    /// The peers whose AllowedIPs hold `vip` exactly.
    pub fn holders_of(&self, vip: IpNet) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, prefixes)| prefixes.contains(&vip))
            .map(|(key, _)| key.as_str())
            .collect()
    }

    pub fn peer(&self, key: &str) -> Option<&[IpNet]> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, prefixes)| prefixes.as_slice())
    }
}

/// What one route change did to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The peers whose list was written, in order.
    pub written: Vec<String>,
    /// From reading the device to the last write returning.
    pub took: Duration,
}

/// One WireGuard interface.
#[derive(Debug, Clone)]
pub struct Device {
    pub interface: String,
    program: PathBuf,
}

impl Device {
    pub fn new(interface: &str) -> Device {
        let program =
            std::env::var_os("VIPD_WG").map_or_else(|| PathBuf::from("wg"), PathBuf::from);
        Device {
            interface: interface.to_owned(),
            program,
        }
    }

    async fn wg(&self, args: &[&str]) -> Result<String, String> {
        let output = tokio::process::Command::new(&self.program)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "{} not found: install wireguard-tools (it programs the VIP's route on {})",
                    self.program.display(),
                    self.interface
                ),
                _ => format!("running {}: {e}", self.program.display()),
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "wg {}: {} ({})",
                args.join(" "),
                stderr.trim(),
                output.status
            ));
        }
        String::from_utf8(output.stdout).map_err(|_| "wg printed something not UTF-8".to_owned())
    }

    /// Every peer and its AllowedIPs.
    pub async fn allowed_ips(&self) -> Result<AllowedIps, String> {
        AllowedIps::parse(&self.wg(&["show", &self.interface, "allowed-ips"]).await?)
    }

    /// Routes `vip` to the peer `to` (its public key), or to no peer.
    /// Writes only what differs: nothing when the device already routes it
    /// there. A peer `to` that the device does not have is an error.
    pub async fn route(&self, vip: IpNet, to: Option<&str>) -> Result<Applied, String> {
        let started = Instant::now();
        let device = self.allowed_ips().await?;
        let mut written = Vec::new();
        if let Some(key) = to {
            let prefixes = device.peer(key).ok_or_else(|| {
                format!(
                    "{} has no peer {key}: bring the interface up from `vipd render wireguard` (every VIP holder is a peer)",
                    self.interface
                )
            })?;
            if !prefixes.contains(&vip) {
                let mut list = prefixes.to_vec();
                list.push(vip);
                self.set(key, &list).await?;
                written.push(key.to_owned());
            }
        }
        // A new peer set above took the VIP from the old one (WireGuard's
        // semantics); routed to no peer, it is cleared where it sits.
        if to.is_none() {
            for holder in device.holders_of(vip) {
                let list: Vec<IpNet> = device
                    .peer(holder)
                    .unwrap_or_default()
                    .iter()
                    .copied()
                    .filter(|p| *p != vip)
                    .collect();
                self.set(holder, &list).await?;
                written.push(holder.to_owned());
            }
        }
        Ok(Applied {
            written,
            took: started.elapsed(),
        })
    }

    async fn set(&self, key: &str, list: &[IpNet]) -> Result<(), String> {
        let joined = list
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.wg(&["set", &self.interface, "peer", key, "allowed-ips", &joined])
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
mH+4S7n9xx3I3kqPpr2M8hC7pTJ8JH8Ix8ZxYp0xZ1g=\t198.19.0.1/32 198.19.0.100/32
eO0nfSmkfhaC2qClUMcQhqWNiyejFb5Wf1t3Z2Jf034=\t198.19.0.2/32
jCA8RTp/J3eBRDeg8Nrs8BaBBZwCm5F8NbKwiy0CtCo=\t(none)
";

    #[test]
    fn wg_show_allowed_ips_parses() {
        let parsed = AllowedIps::parse(SAMPLE).unwrap();
        assert_eq!(parsed.0.len(), 3);
        let vip: IpNet = "198.19.0.100/32".parse().unwrap();
        assert_eq!(
            parsed.holders_of(vip),
            ["mH+4S7n9xx3I3kqPpr2M8hC7pTJ8JH8Ix8ZxYp0xZ1g="]
        );
        assert_eq!(
            parsed.peer("jCA8RTp/J3eBRDeg8Nrs8BaBBZwCm5F8NbKwiy0CtCo="),
            Some(&[][..])
        );
        assert!(AllowedIps::parse("no tab here").is_err());
        assert!(AllowedIps::parse("key\tnot-a-prefix").is_err());
    }
}
