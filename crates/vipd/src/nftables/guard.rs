//! The crash guard of the `proxy` datapath: a table `inet vipd_guard` on a
//! VIP holder whose own proxy listens on VIP:port.
//!
//! When vipd dies without a stop (SIGKILL, OOM, a panic), the VIP stays on
//! the interface until the backup takes over and its gratuitous ARPs (or
//! unsolicited NAs) reach the clients. Meanwhile the kernel answers every
//! SYN for VIP:port with a reset, since nothing listens any more: the
//! client's connect fails at once. keepalived + HAProxy do not have this
//! window, because HAProxy outlives keepalived.
//!
//! The guard drops exactly those resets: a RST|ACK with sequence number 0
//! from VIP:port is what the kernel sends for a SYN that found no listener
//! (RFC 793: a reset to a segment without ACK takes SEQ 0). The client then
//! retransmits its SYN (after 1 s on Linux) and, by then, reaches the new
//! master. While vipd runs, its listener answers the SYNs and the rule never
//! matches. A reset from a session (an abort) carries the connection's
//! sequence number and passes. The table lives in the kernel, so it outlasts
//! the process. It is loaded at start, before VRRP can take the VIP, and
//! deleted at the end of a stop, after the VIP has gone.

use std::net::SocketAddr;

use super::apply::{Nft, NftError};
use super::ruleset::FAMILY;

/// The guard's own table, apart from the DNAT table `inet vipd`.
pub const GUARD_TABLE: &str = "vipd_guard";
/// The named counter of resets the guard dropped.
pub const GUARD_COUNTER: &str = "resets_dropped";

/// The `table inet vipd_guard { ... }` block for the listener `vip`.
pub fn table(vip: SocketAddr) -> String {
    let ip = match vip {
        SocketAddr::V4(_) => "ip",
        SocketAddr::V6(_) => "ip6",
    };
    let (address, port) = (vip.ip(), vip.port());
    format!(
        "table {FAMILY} {GUARD_TABLE} {{
\t# Resets the kernel sent for SYNs to VIP:port while no vipd listened.
\tcounter {GUARD_COUNTER} {{
\t}}

\t# After a crash the VIP stays here until the backup takes over: no reset,
\t# so the client retransmits its SYN, to the new master by then.
\tchain output {{
\t\ttype filter hook output priority 0; policy accept;
\t\t{ip} saddr {address} tcp sport {port} tcp flags & (syn | rst | ack) == rst | ack tcp sequence 0 counter name \"{GUARD_COUNTER}\" drop
\t}}
}}
"
    )
}

/// A file that replaces the guard in one transaction, whatever was there.
pub fn replace_batch(vip: SocketAddr) -> String {
    format!(
        "table {FAMILY} {GUARD_TABLE}\ndelete table {FAMILY} {GUARD_TABLE}\n\n{}",
        table(vip)
    )
}

/// A file that removes the guard; it succeeds when there was none.
pub fn remove_batch() -> String {
    format!("table {FAMILY} {GUARD_TABLE}\ndelete table {FAMILY} {GUARD_TABLE}\n")
}

/// Loads the guard for `vip` (replacing any), or removes it for `None`.
pub async fn set(nft: &Nft, vip: Option<SocketAddr>) -> Result<(), NftError> {
    match vip {
        Some(vip) => nft.load(&replace_batch(vip)).await,
        None => nft.load(&remove_batch()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_the_listener_in_its_family() {
        let v4 = table("198.18.0.100:6443".parse().unwrap());
        assert!(
            v4.contains("\t\tip saddr 198.18.0.100 tcp sport 6443 tcp flags & (syn | rst | ack) == rst | ack tcp sequence 0 counter name \"resets_dropped\" drop\n"),
            "{v4}"
        );
        let v6 = table("[2001:db8::100]:443".parse().unwrap());
        assert!(
            v6.contains("\t\tip6 saddr 2001:db8::100 tcp sport 443 tcp flags"),
            "{v6}"
        );
        assert!(!v6.contains("\tip saddr"), "{v6}");
    }

    #[test]
    fn the_batches_replace_and_remove_only_the_guard() {
        let batch = replace_batch("198.18.0.100:6443".parse().unwrap());
        assert!(batch.starts_with("table inet vipd_guard\ndelete table inet vipd_guard\n"));
        assert!(!batch.contains("table inet vipd\n"), "{batch}");
        assert_eq!(
            remove_batch(),
            "table inet vipd_guard\ndelete table inet vipd_guard\n"
        );
    }
}
