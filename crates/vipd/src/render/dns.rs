//! DNS: the VIP's name and every node's name, as zone-file lines (an `A` or
//! `AAAA` record each) or as /etc/hosts lines. Replaces the seed's
//! `vault_dns_records`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::spec::ClusterSpec;

/// One name and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// A single label, relative to the zone.
    pub name: String,
    pub address: IpAddr,
    pub comment: String,
}

/// The zone without its trailing dot (`prod.example`), if `[dns] zone` is set.
pub fn zone_name(spec: &ClusterSpec) -> Option<&str> {
    spec.dns
        .zone
        .as_deref()
        .map(|z| z.strip_suffix('.').unwrap_or(z))
}

/// The VIP's fully qualified name without the trailing dot
/// (`k8s-api.prod.example`), or its bare label without a zone.
pub fn vip_fqdn(spec: &ClusterSpec) -> String {
    match zone_name(spec) {
        Some(zone) => format!("{}.{zone}", spec.dns.vip_name),
        None => spec.dns.vip_name.clone(),
    }
}

/// The VIP first, then every node in file order.
pub fn records(spec: &ClusterSpec) -> Vec<Record> {
    let mut records = vec![Record {
        name: spec.dns.vip_name.clone(),
        address: spec.vip.address,
        comment: format!(
            "the VIP: the API endpoint {}",
            std::net::SocketAddr::new(spec.vip.address, spec.api.port.get())
        ),
    }];
    for node in &spec.nodes {
        let mut roles: Vec<&str> = node.roles.iter().map(|r| r.as_str()).collect();
        roles.sort_unstable();
        roles.dedup();
        records.push(Record {
            name: node.name.clone(),
            address: node.address,
            comment: roles.join(", "),
        });
    }
    records
}

/// Zone-file lines. With `[dns] zone` they start with `$ORIGIN`, so they
/// can be included (`$INCLUDE`) into that zone's file as they are; without
/// it the names are relative to the zone that includes them. No TTL: each
/// record takes the zone's `$TTL`.
pub fn zone(spec: &ClusterSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; The VIP and the nodes of cluster {}, made by `vipd render dns`.",
        spec.cluster.name
    );
    match zone_name(spec) {
        Some(zone) => {
            let _ = writeln!(
                out,
                "; Include it in the zone {zone} (with $INCLUDE, or paste it)."
            );
            let _ = writeln!(out, "$ORIGIN {zone}.");
        }
        None => {
            out.push_str(
                "; Names are relative to the zone that includes these lines ([dns] zone is not set).\n",
            );
        }
    }
    let records = records(spec);
    let width = records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &records {
        let kind = if r.address.is_ipv4() { "A" } else { "AAAA" };
        let _ = writeln!(
            out,
            "{:width$} IN {kind:4} {:15} ; {}",
            r.name,
            r.address.to_string(),
            r.comment
        );
    }
    out
}

/// /etc/hosts lines: the address, then the full name (with a zone) and the
/// short name.
pub fn hosts(spec: &ClusterSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The VIP and the nodes of cluster {}, made by `vipd render dns --format hosts`.",
        spec.cluster.name
    );
    let zone = zone_name(spec);
    let records = records(spec);
    let width = records
        .iter()
        .map(|r| r.address.to_string().len())
        .max()
        .unwrap_or(0);
    for r in &records {
        let names = match zone {
            Some(zone) => format!("{}.{zone} {}", r.name, r.name),
            None => r.name.clone(),
        };
        let _ = writeln!(
            out,
            "{:width$} {names}  # {}",
            r.address.to_string(),
            r.comment
        );
    }
    out
}
