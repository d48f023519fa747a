//! The `inet vipd` table as nft text: a pure function of the DNAT plan and
//! the set of healthy targets, so it can be golden-tested and printed by
//! `vipd render nftables` exactly as the daemon loads it.
//!
//! What the table does, for VIP:port (IPv4 shown; IPv6 is the same with `ip6`):
//!
//! - `dnat_prerouting` / `dnat_output`: new TCP flows to VIP:port, from
//!   outside and from the holder itself, are rewritten to a healthy plane's
//!   proxy port, chosen by `jhash ip saddr` over a fixed bucket map (see
//!   [`assign_buckets`]). Conntrack keeps a flow on its plane afterwards:
//!   NAT chains only see the first packet of a flow. With `[api] observe`
//!   the rule also limits those flows' conntrack events to `new,reply`,
//!   all the passive watch reads (see `observe.rs`).
//! - `snat_postrouting`: those flows leave with the holder's address as
//!   source, so the plane answers through the holder (on a flat L2 network
//!   it would otherwise answer the client directly, which resets it).
//! - `firewall` (optional): sources outside `allowed_sources` that aim at
//!   VIP:port or a plane proxy port are dropped and counted in the named
//!   counter `firewall_dropped`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::config::resolve::DnatPlan;

/// The DNAT table vipd owns; it touches nothing outside it (but for the
/// `proxy` datapath's own crash guard, `guard::GUARD_TABLE`).
pub const TABLE: &str = "vipd";
/// The table's family: one table for IPv4 and IPv6.
pub const FAMILY: &str = "inet";
/// The named counter of dropped packets (with the firewall on).
pub const FIREWALL_COUNTER: &str = "firewall_dropped";
/// A fixed jhash seed: without one the kernel draws a random seed at every
/// load, and each health change would re-spread every client.
pub const HASH_SEED: u32 = 0x7669_7064; // "vipd"

/// Why no ruleset can be generated for a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesetError {
    #[error("the DNAT plan has no target: give at least one node the `plane` role")]
    NoTargets,
    #[error(
        "no DNAT target is healthy: there is nothing to rewrite VIP:port to (the daemon keeps the last set instead)"
    )]
    NoHealthyTarget,
    #[error(
        "the health list has {given} entries for {targets} DNAT targets (a caller bug: one entry per target)"
    )]
    HealthListLength { given: usize, targets: usize },
    #[error(
        "plane {node} has the address {address} and the VIP {vip} is of the other family: DNAT cannot change the address family; give the plane an address of the VIP's family or use `datapath = \"proxy\"`"
    )]
    TargetFamily {
        node: String,
        address: IpAddr,
        vip: IpAddr,
    },
    #[error(
        "the VIP holder's address {holder} and the VIP {vip} are of different families: replies could not be source-NATed; give the holder an address of the VIP's family"
    )]
    HolderFamily { holder: IpAddr, vip: IpAddr },
}

/// The address family the table's rules match, from the VIP's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The nft payload protocol: `ip` or `ip6`.
    fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn set_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

/// How many jhash buckets the map has for `targets` planes: n·(n-1), so that
/// when one plane is down its buckets split evenly over the other n-1.
pub fn bucket_count(targets: usize) -> usize {
    if targets <= 1 {
        1
    } else {
        targets * (targets - 1)
    }
}

/// The target index each bucket sends to. Bucket b belongs to target
/// `b mod n` while it is healthy; a down target's buckets are spread over
/// the healthy ones. So a plane going down moves only its own buckets, and
/// its return takes back only those: clients of healthy planes keep their
/// plane for new connections too. Empty when nothing is healthy.
pub fn assign_buckets(healthy: &[bool]) -> Vec<usize> {
    let targets = healthy.len();
    let up: Vec<usize> = (0..targets).filter(|&i| healthy[i]).collect();
    if up.is_empty() {
        return Vec::new();
    }
    (0..bucket_count(targets))
        .map(|bucket| {
            let owner = bucket % targets;
            if healthy[owner] {
                owner
            } else {
                up[(bucket / targets) % up.len()]
            }
        })
        .collect()
}

/// `addr . port` as an nft concatenation (map data, set elements).
fn concat(address: SocketAddr) -> String {
    format!("{} . {}", address.ip(), address.port())
}

/// `addr:port` as a dnat/snat argument (`[v6]:port` for IPv6).
fn nat_to(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// A network as a set element: a host prefix as the bare address.
fn element(network: IpNet) -> String {
    if network.prefix_len() == network.max_prefix_len() {
        network.addr().to_string()
    } else {
        network.to_string()
    }
}

/// The `table inet vipd { ... }` block for `plan` with the targets whose
/// `healthy` entry is true (one entry per `plan.targets`, in order).
pub fn table(plan: &DnatPlan, healthy: &[bool]) -> Result<String, RulesetError> {
    if plan.targets.is_empty() {
        return Err(RulesetError::NoTargets);
    }
    if healthy.len() != plan.targets.len() {
        return Err(RulesetError::HealthListLength {
            given: healthy.len(),
            targets: plan.targets.len(),
        });
    }
    let vip = plan.destination;
    let family = Family::of(vip.ip());
    for target in &plan.targets {
        if Family::of(target.address.ip()) != family {
            return Err(RulesetError::TargetFamily {
                node: target.node.clone(),
                address: target.address.ip(),
                vip: vip.ip(),
            });
        }
    }
    if Family::of(plan.holder_address) != family {
        return Err(RulesetError::HolderFamily {
            holder: plan.holder_address,
            vip: vip.ip(),
        });
    }
    let buckets = assign_buckets(healthy);
    if buckets.is_empty() {
        return Err(RulesetError::NoHealthyTarget);
    }
    let ip = family.keyword();

    let mut out = String::new();
    let _ = writeln!(out, "table {FAMILY} {TABLE} {{");
    if let Some(allowed) = &plan.firewall {
        write_firewall_objects(&mut out, plan, family, allowed);
    }

    let _ = writeln!(
        out,
        "\t# New flows to the VIP from other hosts: the client address picks a bucket, the bucket a plane."
    );
    let _ = writeln!(out, "\tchain dnat_prerouting {{");
    let _ = writeln!(
        out,
        "\t\ttype nat hook prerouting priority dstnat; policy accept;"
    );
    write_dnat_rule(&mut out, plan, &buckets, ip);
    let _ = writeln!(out, "\t}}\n");

    let _ = writeln!(
        out,
        "\t# The same for connections made on the holder itself."
    );
    let _ = writeln!(out, "\tchain dnat_output {{");
    // nft 1.0.6 refuses the symbolic `dstnat` on the output hook; -100 is its value.
    let _ = writeln!(
        out,
        "\t\ttype nat hook output priority -100; policy accept;"
    );
    write_dnat_rule(&mut out, plan, &buckets, ip);
    let _ = writeln!(out, "\t}}\n");

    let _ = writeln!(
        out,
        "\t# Replies must come back through the holder to be un-NATed."
    );
    let _ = writeln!(out, "\tchain snat_postrouting {{");
    let _ = writeln!(
        out,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    );
    let _ = writeln!(
        out,
        "\t\tmeta l4proto tcp ct status dnat ct original {ip} daddr {} ct original proto-dst {} snat {ip} to {}",
        vip.ip(),
        vip.port(),
        plan.holder_address
    );
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// The counter, the allowed set and the filter chain of `[firewall]`.
fn write_firewall_objects(out: &mut String, plan: &DnatPlan, family: Family, allowed: &[IpNet]) {
    let ip = family.keyword();
    let (same, other): (Vec<IpNet>, Vec<IpNet>) =
        allowed.iter().partition(|n| Family::of(n.addr()) == family);
    // Overlapping intervals are refused by nft; merged, they mean the same.
    let merged = IpNet::aggregate(&same);
    let _ = writeln!(out, "\t# Packets the firewall chain dropped.");
    let _ = writeln!(out, "\tcounter {FIREWALL_COUNTER} {{");
    let _ = writeln!(out, "\t}}\n");
    let mut protected = vec![concat(plan.destination)];
    protected.extend(plan.targets.iter().map(|t| concat(t.address)));
    let _ = writeln!(
        out,
        "\t# VIP:port and the plane proxy ports, as far as their traffic passes here."
    );
    let _ = writeln!(out, "\tset protected_destinations {{");
    let _ = writeln!(out, "\t\ttype {} . inet_service", family.set_type());
    let _ = writeln!(out, "\t\telements = {{ {} }}", protected.join(", "));
    let _ = writeln!(out, "\t}}\n");
    if !other.is_empty() {
        let list: Vec<String> = other.iter().map(|n| element(*n)).collect();
        let _ = writeln!(
            out,
            "\t# Allowed, but of the other family than the VIP, so never a source here: {}",
            list.join(", ")
        );
    }
    let _ = writeln!(out, "\tset allowed_sources {{");
    let _ = writeln!(out, "\t\ttype {}", family.set_type());
    let _ = writeln!(out, "\t\tflags interval");
    if !merged.is_empty() {
        let list: Vec<String> = merged.iter().map(|n| element(*n)).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(", "));
    }
    let _ = writeln!(out, "\t}}\n");
    let _ = writeln!(
        out,
        "\t# Before DNAT (dstnat - 10), while the VIP is still the destination."
    );
    let _ = writeln!(out, "\tchain firewall {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook prerouting priority dstnat - 10; policy accept;"
    );
    let _ = writeln!(
        out,
        "\t\t{ip} daddr . tcp dport @protected_destinations {ip} saddr != @allowed_sources counter name \"{FIREWALL_COUNTER}\" drop"
    );
    let _ = writeln!(out, "\t}}\n");
}

/// The DNAT rule: straight to the one target, or through the bucket map.
fn write_dnat_rule(out: &mut String, plan: &DnatPlan, buckets: &[usize], ip: &str) {
    let vip = plan.destination;
    let mut matches = format!("{ip} daddr {} tcp dport {}", vip.ip(), vip.port());
    if plan.observe {
        // The passive watch needs two events per flow: its creation and its
        // first answer. Without a mask each TCP state change is one more
        // message to the daemon (about six per connection).
        matches.push_str(" ct event set new,reply");
    }
    let first = buckets[0];
    if buckets.iter().all(|&b| b == first) {
        let _ = writeln!(
            out,
            "\t\t{matches} dnat {ip} to {}",
            nat_to(plan.targets[first].address)
        );
        return;
    }
    let _ = writeln!(
        out,
        "\t\t{matches} dnat {ip} to jhash {ip} saddr mod {} seed {HASH_SEED:#x} map {{",
        buckets.len()
    );
    for (bucket, &target) in buckets.iter().enumerate() {
        let separator = if bucket + 1 == buckets.len() { "" } else { "," };
        let _ = writeln!(
            out,
            "\t\t\t{bucket} : {}{separator}",
            concat(plan.targets[target].address)
        );
    }
    let _ = writeln!(out, "\t\t}}");
}

/// A file that replaces the whole table in one transaction, whatever was
/// there before (a stale table of a crashed run included): nft applies a
/// file atomically, and `table` before `delete` makes the delete succeed
/// when there was none. What `vipd render nftables` prints.
pub fn replace_batch(plan: &DnatPlan, healthy: &[bool]) -> Result<String, RulesetError> {
    let table = table(plan, healthy)?;
    Ok(format!(
        "{}{FAMILY_TABLE}\ndelete {FAMILY_TABLE}\n\n{table}",
        header(plan, healthy)
    ))
}

/// A file that empties the table's chains and refills them in one
/// transaction: the hooks stay registered throughout and the named counter
/// and set keep their contents. The daemon's batch on a health change.
pub fn refill_batch(plan: &DnatPlan, healthy: &[bool]) -> Result<String, RulesetError> {
    let table = table(plan, healthy)?;
    Ok(format!(
        "{}{FAMILY_TABLE}\nflush {FAMILY_TABLE}\n\n{table}",
        header(plan, healthy)
    ))
}

/// A file that removes the table, and succeeds when there is none.
pub fn remove_batch() -> String {
    format!("{FAMILY_TABLE}\ndelete {FAMILY_TABLE}\n")
}

/// `table inet vipd`, as nft commands name it.
const FAMILY_TABLE: &str = "table inet vipd";

/// The comment at the top of a batch: what it is and which targets it holds.
fn header(plan: &DnatPlan, healthy: &[bool]) -> String {
    let mut out = format!(
        "# vipd: the DNAT datapath of {}, generated; do not edit.\n",
        plan.destination
    );
    for (target, &up) in plan.targets.iter().zip(healthy) {
        let state = if up { "healthy" } else { "down" };
        let _ = writeln!(out, "# target {} {} {state}", target.node, target.address);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve::{DnatTarget, HealthCheck};
    use crate::config::spec::CheckKind;
    use crate::config::values::Interval;

    fn plan(targets: usize) -> DnatPlan {
        let check = HealthCheck {
            kind: CheckKind::Tcp,
            path: None,
            interval: Interval::from_secs(1),
            timeout: Interval::from_millis(500),
            rise: 2,
            fall: 2,
            ca_file: None,
            insecure_skip_verify: false,
            server_name: None,
        };
        DnatPlan {
            destination: "198.18.0.100:6443".parse().unwrap(),
            holder_address: "198.18.0.10".parse().unwrap(),
            targets: (0..targets)
                .map(|i| DnatTarget {
                    node: format!("cp-{}", i + 1),
                    address: format!("198.18.0.{}:16443", 11 + i).parse().unwrap(),
                    check: check.clone(),
                })
                .collect(),
            firewall: None,
            observe: true,
        }
    }

    #[test]
    fn every_target_owns_the_same_number_of_buckets() {
        for targets in 1..=7 {
            let buckets = assign_buckets(&vec![true; targets]);
            assert_eq!(buckets.len(), bucket_count(targets));
            for target in 0..targets {
                let owned = buckets.iter().filter(|&&b| b == target).count();
                assert_eq!(owned, buckets.len() / targets, "{targets} targets");
            }
        }
    }

    #[test]
    fn one_plane_down_moves_only_its_buckets_and_splits_them_evenly() {
        for targets in 2..=7 {
            let all = assign_buckets(&vec![true; targets]);
            for down in 0..targets {
                let mut healthy = vec![true; targets];
                healthy[down] = false;
                let after = assign_buckets(&healthy);
                for (bucket, (&before, &now)) in all.iter().zip(&after).enumerate() {
                    assert_ne!(now, down, "bucket {bucket} still on the down target");
                    if before != down {
                        assert_eq!(before, now, "bucket {bucket} of a healthy plane moved");
                    }
                }
                for target in (0..targets).filter(|&t| t != down) {
                    let owned = after.iter().filter(|&&b| b == target).count();
                    assert_eq!(owned, targets, "{targets} targets, {down} down");
                }
            }
        }
    }

    #[test]
    fn nothing_healthy_assigns_nothing() {
        assert!(assign_buckets(&[false, false, false]).is_empty());
        assert_eq!(
            table(&plan(3), &[false, false, false]),
            Err(RulesetError::NoHealthyTarget)
        );
    }

    #[test]
    fn one_healthy_target_is_a_plain_dnat() {
        let text = table(&plan(3), &[false, true, false]).unwrap();
        assert!(text.contains("dnat ip to 198.18.0.12:16443\n"), "{text}");
        assert!(!text.contains("jhash"), "{text}");
    }

    #[test]
    fn the_event_mask_follows_the_passive_watch() {
        let watched = table(&plan(3), &[true, true, true]).unwrap();
        let rules = |t: &str| t.lines().filter(|l| l.contains("dnat ip to")).count();
        let masked = |t: &str| t.matches("ct event set new,reply dnat ip to").count();
        assert_eq!((rules(&watched), masked(&watched)), (2, 2), "{watched}");
        let mut quiet = plan(3);
        quiet.observe = false;
        let unwatched = table(&quiet, &[true, true, true]).unwrap();
        assert_eq!(
            (rules(&unwatched), masked(&unwatched)),
            (2, 0),
            "{unwatched}"
        );
        assert!(!unwatched.contains("ct event"), "{unwatched}");
    }

    #[test]
    fn families_must_agree() {
        let mut mixed = plan(2);
        mixed.targets[1].address = "[2001:db8::12]:16443".parse().unwrap();
        assert!(matches!(
            table(&mixed, &[true, true]),
            Err(RulesetError::TargetFamily { .. })
        ));
        let mut holder = plan(2);
        holder.holder_address = "2001:db8::10".parse().unwrap();
        assert!(matches!(
            table(&holder, &[true, true]),
            Err(RulesetError::HolderFamily { .. })
        ));
    }

    #[test]
    fn the_health_list_matches_the_targets() {
        assert_eq!(
            table(&plan(3), &[true]),
            Err(RulesetError::HealthListLength {
                given: 1,
                targets: 3
            })
        );
    }
}
