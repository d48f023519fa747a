//! `vipd verify`: live checks of a running cluster, each printed as PASS,
//! FAIL or SKIP with what was seen. It replaces the seed's manual tests
//! ("ping the VIP", "curl -k https://VIP:6443/healthz", "which node has
//! the VIP?", "iptables -t nat -L") with one command whose exit code says
//! whether all passed.
//!
//! What a check can see depends on where it runs: with `--node` naming a
//! VIP holder, it also looks at that node's interface, daemon and DNAT
//! table. The VIP-uniqueness check sends an ARP probe (RFC 5227) on the
//! VIP's link and counts the MAC addresses that answer. On a WireGuard
//! mesh, where ARP means nothing, `mesh-route` reads the device instead:
//! which peer's AllowedIPs hold the VIP, against the master the daemon
//! follows.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use vipd_core::vrrp::announce::{MacAddr, arp_probe, arp_reply_sender};

use super::VerifyArgs;
use super::status::{clock, span};
use crate::api::schema::{FollowStatus, StatusDocument};
use crate::config::resolve::{FollowPlan, HealthCheck, NodePlan};
use crate::config::spec::{ClusterSpec, Role};
use crate::health::probe::Probe;
use crate::health::record::unix_now;
use crate::mesh::wireguard::{AllowedIps, Device};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Cannot be seen from here; not a failure.
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
}

fn finding(check: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        verdict,
        detail: detail.into(),
    }
}

pub fn run(args: &VerifyArgs) -> ExitCode {
    let options = crate::config::SecretsOptions {
        secrets: args.secrets.as_deref(),
        identity: Some(&args.identity),
    };
    let checked = match crate::config::check_file_with(&args.config, options) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let mut findings = Vec::new();
    let spec = match (&checked.spec, checked.errors()) {
        (Some(spec), 0) => {
            findings.push(finding(
                "config",
                Verdict::Pass,
                format!("{} passes `vipd check`", args.config.display()),
            ));
            spec.clone()
        }
        _ => {
            findings.push(finding(
                "config",
                Verdict::Fail,
                format!(
                    "{} does not pass `vipd check` ({} errors): run it for the details",
                    args.config.display(),
                    checked.errors()
                ),
            ));
            return report(&findings, args.json);
        }
    };
    let plan = match &args.node {
        Some(name) => match spec.plan(name) {
            Some(plan) => Some(plan),
            None => {
                eprintln!("error: no node \"{name}\" in {}", args.config.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = args.timeout.get();
    runtime.block_on(async {
        if let Some(plan) = &plan {
            findings.extend(local_checks(&spec, plan, args).await);
        }
        findings.push(vip_holders(&spec, plan.as_ref()).await);
        findings.push(tcp_check("vip-port", spec_endpoint(&spec), timeout).await);
        let apiserver_check = apiserver_check(&spec);
        for plane in spec.nodes_with(Role::Plane) {
            let ports = spec.plane_ports(plane);
            let proxy = SocketAddr::new(plane.address, ports.proxy_port.get());
            findings.push(tcp_check(&format!("plane-proxy {}", plane.name), proxy, timeout).await);
            let apiserver = SocketAddr::new(plane.address, ports.apiserver_port.get());
            findings.push(apiserver_ready(&plane.name, apiserver, &apiserver_check, timeout).await);
        }
    });
    report(&findings, args.json)
}

fn spec_endpoint(spec: &ClusterSpec) -> SocketAddr {
    SocketAddr::new(spec.vip.address, spec.api.port.get())
}

/// The planes' health check with `/readyz`: the apiserver's own verdict.
fn apiserver_check(spec: &ClusterSpec) -> Option<HealthCheck> {
    let plane = spec.nodes_with(Role::Plane).next()?;
    let mut check = spec.plane_ports(plane).health;
    if check.path.is_some() {
        check.path = Some("/readyz".to_owned());
    }
    Some(check)
}

fn report(findings: &[Finding], json: bool) -> ExitCode {
    let failed = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    if json {
        let document = serde_json::json!({ "passed": failed == 0, "checks": findings });
        println!("{document:#}");
    } else {
        let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
        for f in findings {
            let verdict = match f.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            };
            println!("{verdict}  {:<width$}  {}", f.check, f.detail);
        }
        let passed = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Pass)
            .count();
        println!(
            "\n{passed} passed, {failed} failed, {} skipped",
            findings.len() - passed - failed
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn tcp_check(name: &str, address: SocketAddr, timeout: Duration) -> Finding {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => finding(
            name,
            Verdict::Pass,
            format!("{address} accepts TCP ({:.1?})", started.elapsed()),
        ),
        Ok(Err(e)) => finding(name, Verdict::Fail, format!("{address}: {e}")),
        Err(_) => finding(
            name,
            Verdict::Fail,
            format!("{address}: no answer within {timeout:?}"),
        ),
    }
}

async fn apiserver_ready(
    plane: &str,
    address: SocketAddr,
    check: &Option<HealthCheck>,
    timeout: Duration,
) -> Finding {
    let name = format!("apiserver {plane}");
    let Some(check) = check else {
        return finding(name, Verdict::Skip, "no plane health check configured");
    };
    let probe = match Probe::from_check(address, check) {
        Ok(probe) => probe,
        Err(e) => return finding(name, Verdict::Fail, format!("cannot set the check up: {e}")),
    };
    let what = match &check.path {
        Some(path) => format!("https://{address}{path}"),
        None => format!("{address} (TCP)"),
    };
    match probe.run(timeout).await {
        Ok(took) => finding(name, Verdict::Pass, format!("{what} answers ({took:.1?})")),
        Err(e) => finding(name, Verdict::Fail, format!("{what}: {e}")),
    }
}

/// What only the node itself can see: its daemon, the VIP on its
/// interface, its DNAT table.
async fn local_checks(spec: &ClusterSpec, plan: &NodePlan, args: &VerifyArgs) -> Vec<Finding> {
    let mut out = Vec::new();
    let status = match crate::api::client::request(&args.socket, "GET", "/v1/status") {
        Ok(response) if response.status == 200 => {
            match serde_json::from_slice::<crate::api::schema::StatusDocument>(&response.body) {
                Ok(document) => Some(document),
                Err(e) => {
                    out.push(finding(
                        "daemon",
                        Verdict::Fail,
                        format!("unreadable status: {e}"),
                    ));
                    None
                }
            }
        }
        Ok(response) => {
            out.push(finding(
                "daemon",
                Verdict::Fail,
                format!("the control socket answered {}", response.status),
            ));
            None
        }
        Err(e) => {
            out.push(finding("daemon", Verdict::Fail, e.to_string()));
            None
        }
    };
    if let Some(document) = &status {
        if document.node != plan.node {
            out.push(finding(
                "daemon",
                Verdict::Fail,
                format!(
                    "the daemon at {} runs node \"{}\", not \"{}\"",
                    args.socket.display(),
                    document.node,
                    plan.node
                ),
            ));
        } else {
            let down: Vec<String> = document
                .frontends
                .iter()
                .flat_map(|f| {
                    f.backends
                        .iter()
                        .filter(|b| !b.healthy)
                        .map(move |b| format!("{} backend {}", f.name, b.name))
                })
                .collect();
            let detail = if down.is_empty() {
                format!("running, config generation {}", document.config.generation)
            } else {
                format!(
                    "running, config generation {}; marked down: {}",
                    document.config.generation,
                    down.join(", ")
                )
            };
            out.push(finding("daemon", Verdict::Pass, detail));
            if let Some(reload) = document.last_reload.as_ref().filter(|r| !r.ok) {
                out.push(finding(
                    "last-reload",
                    Verdict::Fail,
                    format!(
                        "the last reload was refused (the old configuration runs): {}",
                        reload.errors.join("; ")
                    ),
                ));
            }
        }
    }
    if let (Some(vrrp), Some(document)) = (&plan.vrrp, &status)
        && let Some(v) = &document.vrrp
    {
        let netlink_has = match crate::netlink::Netlink::connect() {
            Ok(netlink) => match netlink.link(&vrrp.interface).await {
                Ok(link) => netlink.has_address(link.index, spec.vip.address).await.ok(),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let master = v.state == "master";
        let (verdict, detail) = match netlink_has {
            Some(has) if has == master => (
                Verdict::Pass,
                format!(
                    "{} and the VIP is {}on {}",
                    v.state,
                    if has { "" } else { "not " },
                    vrrp.interface
                ),
            ),
            Some(has) => (
                Verdict::Fail,
                format!(
                    "state {} but the VIP is {}on {}: something else changed the interface",
                    v.state,
                    if has { "" } else { "not " },
                    vrrp.interface
                ),
            ),
            None => (
                Verdict::Skip,
                format!("cannot read the addresses of {}", vrrp.interface),
            ),
        };
        out.push(finding("vip-local", verdict, detail));
    }
    if let Some(dnat) = &plan.dnat {
        out.push(dnat_table(dnat, status.as_ref()).await);
    }
    if let Some(follow) = &plan.follow {
        let device = Device::new(&follow.interface).allowed_ips().await;
        out.push(mesh_route(
            spec,
            follow,
            status.as_ref(),
            device,
            unix_now(),
        ));
    }
    if let Some(vip) = plan.vip_listener() {
        out.push(crash_guard(vip).await);
    }
    out
}

/// On a `proxy` holder: the crash guard's table is loaded for VIP:port.
async fn crash_guard(listener: std::net::SocketAddr) -> Finding {
    use crate::nftables::guard::{GUARD_COUNTER, GUARD_TABLE};
    let name = "crash-guard";
    let nft = crate::nftables::Nft::default();
    match nft.list_named(GUARD_TABLE).await {
        Ok(Some(text)) => {
            let rule = format!("saddr {} tcp sport {} ", listener.ip(), listener.port());
            if !text.contains(&rule) {
                return finding(
                    name,
                    Verdict::Fail,
                    format!(
                        "table inet {GUARD_TABLE} does not guard {listener}: reload the daemon (`vipd reload`)"
                    ),
                );
            }
            // `counter resets_dropped { packets N bytes M }` when listed.
            let dropped = text
                .split(&format!("counter {GUARD_COUNTER}"))
                .nth(1)
                .and_then(|rest| rest.split("packets ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?");
            finding(
                name,
                Verdict::Pass,
                format!(
                    "table inet {GUARD_TABLE} guards {listener} ({dropped} resets dropped so far)"
                ),
            )
        }
        Ok(None) => finding(
            name,
            Verdict::Fail,
            format!(
                "table inet {GUARD_TABLE} is missing: after a crash, clients would be refused until the backup takes over; the daemon loads it at start (see its log)"
            ),
        ),
        Err(e) => finding(name, Verdict::Fail, format!("cannot list it: {e}")),
    }
}

/// The `inet vipd` table is there, and the targets it sends new flows to
/// are the planes the daemon finds healthy.
async fn dnat_table(
    dnat: &crate::config::resolve::DnatPlan,
    status: Option<&crate::api::schema::StatusDocument>,
) -> Finding {
    let name = "dnat-table";
    let nft = crate::nftables::Nft::default();
    let text = match nft.list_table().await {
        Ok(Some(text)) => text,
        Ok(None) => {
            return finding(
                name,
                Verdict::Fail,
                "table inet vipd is missing: is the daemon running with api.datapath = \"dnat\"?",
            );
        }
        Err(e) => return finding(name, Verdict::Fail, format!("cannot list it: {e}")),
    };
    // A target is in the table as `ADDRESS . PORT` in the bucket map.
    let in_table: BTreeSet<String> = dnat
        .targets
        .iter()
        .filter(|t| text.contains(&format!("{} . {}", t.address.ip(), t.address.port())))
        .map(|t| t.node.clone())
        .collect();
    let Some(dnat_status) = status.and_then(|s| s.dnat.as_ref()) else {
        return finding(
            name,
            Verdict::Pass,
            format!(
                "present, targets {} (no daemon status to compare with)",
                join(&in_table)
            ),
        );
    };
    let healthy: BTreeSet<String> = dnat_status
        .targets
        .iter()
        .filter(|t| t.healthy)
        .map(|t| t.node.clone())
        .collect();
    if healthy == in_table || (healthy.is_empty() && dnat_status.fail_open) {
        let note = if dnat_status.fail_open {
            " (fail-open: no plane healthy, the last set kept)"
        } else {
            ""
        };
        finding(
            name,
            if dnat_status.fail_open {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            format!(
                "present, targets {} = the healthy planes{note}",
                join(&in_table)
            ),
        )
    } else {
        finding(
            name,
            Verdict::Fail,
            format!(
                "the table sends new flows to {} but the healthy planes are {}",
                join(&in_table),
                join(&healthy)
            ),
        )
    }
}

/// On a node that follows the VRRP master over the mesh: the WireGuard
/// device routes the VIP to exactly the peer of the master the daemon
/// follows (or to no peer while this node is master), that peer is a VIP
/// holder, and the daemon has the route applied. `device` is what
/// `wg show IF allowed-ips` said.
fn mesh_route(
    spec: &ClusterSpec,
    follow: &FollowPlan,
    status: Option<&StatusDocument>,
    device: Result<AllowedIps, String>,
    now: f64,
) -> Finding {
    let name = "mesh-route";
    let (interface, vip) = (&follow.interface, follow.vip);
    let device = match device {
        Ok(device) => device,
        Err(e) => {
            return finding(
                name,
                Verdict::Fail,
                format!(
                    "cannot read the AllowedIPs of {interface}: {e} (is the interface up? `wg-quick up {interface}` with the file from `vipd render wireguard`)"
                ),
            );
        }
    };
    let peer = |key: &str| describe_peer(spec, key);
    let on: Vec<&str> = device.holders_of(vip);
    if on.len() > 1 {
        return finding(
            name,
            Verdict::Fail,
            format!(
                "the VIP {vip} is in the AllowedIPs of {} peers of {interface}: {}; it must be on one, the master's (something outside vipd wrote them: see `wg show {interface} allowed-ips`)",
                on.len(),
                on.iter().map(|k| peer(k)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let actual = on.first().copied();
    if let Some(key) = actual
        && !follow.holders.iter().any(|h| h.public_key == key)
    {
        return finding(
            name,
            Verdict::Fail,
            format!(
                "the VIP {vip} is in the AllowedIPs of {}, which is not a VIP holder in the cluster file: this node sends the VIP's traffic there. Take it off that peer (`wg set {interface} peer {key} allowed-ips` with the rest of its list) and let vipd route it; a wg-quick file from an old cluster file does this: render it again (`vipd render wireguard`)",
                peer(key)
            ),
        );
    }
    let where_now = match actual {
        Some(key) => format!("on the peer of {}", peer(key)),
        None => format!("on no peer of {interface}"),
    };
    let Some(document) = status else {
        return finding(
            name,
            Verdict::Skip,
            format!(
                "the VIP {vip} is {where_now} (no daemon status to compare with: see the `daemon` check)"
            ),
        );
    };
    let Some(route) = &document.follow else {
        return finding(
            name,
            Verdict::Fail,
            format!(
                "the cluster file says this node follows the VRRP master on {interface}, but the daemon does not: it runs another configuration (`vipd reload`) or a vipd without the follower; the VIP is {where_now}"
            ),
        );
    };
    let since = format!(
        "since {} UTC ({} ago, {})",
        clock(route.since),
        span(now - route.since),
        route.reason
    );
    if !route.applied {
        return finding(
            name,
            Verdict::Fail,
            format!(
                "the daemon's route ({}) is not applied on {interface}: {}; vipd retries every second, the VIP is {where_now} meanwhile",
                route_text(route),
                route
                    .error
                    .as_deref()
                    .unwrap_or("not yet (after a start the follower waits to hear the master)")
            ),
        );
    }
    let expected = match route.route.as_str() {
        "holder" => route.peer.as_deref(),
        _ => None,
    };
    if route.route == "nowhere" {
        return finding(
            name,
            Verdict::Fail,
            format!(
                "this node follows no master ({since}): no VIP holder's advert arrived in time, so the VIP is {where_now} and unreachable from here; look at `vipd status` on the holders and at the tunnels to them (`wg show {interface} latest-handshakes`)"
            ),
        );
    }
    if actual != expected {
        let wanted = match expected {
            Some(key) => format!("the peer of {}", peer(key)),
            None => "no peer (this node is master and holds it)".to_owned(),
        };
        return finding(
            name,
            Verdict::Fail,
            format!(
                "the daemon routes the VIP {vip} to {wanted}, but {interface} has it {where_now}: changed outside vipd (`wg syncconf` or `wg-quick up` of the rendered file, `wg set`); vipd puts it back within a few seconds while it runs: run verify again, and if it stays, see the log (`journalctl -u vipd`)"
            ),
        );
    }
    let detail = match actual {
        Some(_) => format!(
            "the VIP {vip} is {where_now}, the master this node follows, {since}; {} change(s)",
            route.changes
        ),
        None => format!(
            "the VIP {vip} is {where_now}: this node is master and holds it, {since}; {} change(s)",
            route.changes
        ),
    };
    finding(name, Verdict::Pass, detail)
}

/// A WireGuard peer by its node's name and its key.
fn describe_peer(spec: &ClusterSpec, key: &str) -> String {
    let node = spec
        .nodes
        .iter()
        .find(|n| n.wireguard.as_ref().is_some_and(|w| w.public_key == key));
    match node {
        Some(node) => format!("{} ({key})", node.name),
        None => format!("an unknown peer ({key}, no node of the cluster file)"),
    }
}

/// The daemon's route, in a few words.
fn route_text(route: &FollowStatus) -> String {
    match (route.route.as_str(), &route.holder) {
        ("holder", Some(holder)) => format!("to {holder}'s peer"),
        ("local", _) => "local: this node is master".to_owned(),
        (other, _) => other.to_owned(),
    }
}

fn join(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// How many hosts answer for the VIP on its link: this node (its own
/// interface) plus every MAC that answers an ARP probe.
async fn vip_holders(spec: &ClusterSpec, plan: Option<&NodePlan>) -> Finding {
    let name = "vip-holders";
    let IpAddr::V4(vip) = spec.vip.address else {
        return finding(
            name,
            Verdict::Skip,
            "IPv6 VIP: duplicate detection by NDP is not done yet; check `vipd status` on each holder",
        );
    };
    let Some(plan) = plan else {
        return finding(
            name,
            Verdict::Skip,
            "give --node (a node on the VIP's link) to count the holders",
        );
    };
    let interface = match &plan.vrrp {
        Some(vrrp) => vrrp.interface.clone(),
        None => match spec.node(&plan.node) {
            Some(node) => spec.node_interface(node).to_owned(),
            None => return finding(name, Verdict::Skip, "unknown node"),
        },
    };
    let netlink = match crate::netlink::Netlink::connect() {
        Ok(netlink) => netlink,
        Err(e) => return finding(name, Verdict::Skip, format!("netlink: {e}")),
    };
    let link = match netlink.link(&interface).await {
        Ok(link) => link,
        Err(e) => return finding(name, Verdict::Skip, format!("interface {interface}: {e}")),
    };
    let here = netlink
        .has_address(link.index, spec.vip.address)
        .await
        .unwrap_or(false);
    let Some(mac) = link.mac.filter(|_| link.arp) else {
        return finding(
            name,
            Verdict::Skip,
            format!("{interface} has no ARP (WireGuard, tun): holders cannot be counted from here"),
        );
    };
    let answers = match tokio::task::spawn_blocking(move || probe(link.index, MacAddr(mac), vip))
        .await
    {
        Ok(Ok(answers)) => answers,
        Ok(Err(e)) => return finding(name, Verdict::Skip, format!("ARP probe: {e} (needs root)")),
        Err(e) => return finding(name, Verdict::Skip, format!("ARP probe: {e}")),
    };
    let mut holders: Vec<String> = answers.iter().map(format_mac).collect();
    if here {
        holders.insert(0, format!("this node ({})", plan.node));
    }
    match holders.len() {
        1 => finding(
            name,
            Verdict::Pass,
            format!("{vip} is held by exactly one host: {}", holders[0]),
        ),
        0 => finding(
            name,
            Verdict::Fail,
            format!(
                "no host answers for {vip}: no VIP holder is master (see `vipd status` on the holders)"
            ),
        ),
        n => finding(
            name,
            Verdict::Fail,
            format!(
                "{n} hosts answer for {vip}: {} (split brain: do the holders hear each other's adverts?)",
                holders.join(", ")
            ),
        ),
    }
}

fn format_mac(mac: &MacAddr) -> String {
    mac.0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends ARP probes for `vip` and collects the distinct repliers for half
/// a second. Bounded: three probes, one receive deadline.
fn probe(ifindex: u32, mac: MacAddr, vip: Ipv4Addr) -> std::io::Result<Vec<MacAddr>> {
    const ETHERTYPE_ARP: u16 = 0x0806;
    let socket = crate::sys::packet_socket_for(ifindex, ETHERTYPE_ARP)?;
    let mut frame = arp_probe(mac, vip).to_vec();
    frame.resize(60, 0);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut answers: Vec<MacAddr> = Vec::new();
    let mut buf = [0u8; 1600];
    for _ in 0..3 {
        socket.send(&frame)?;
        let round_end = (Instant::now() + Duration::from_millis(150)).min(deadline);
        while let Some(left) = round_end.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let n = match std::io::Read::read(&mut &socket, &mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            };
            if let Some(sender) = arp_reply_sender(&buf[..n], vip)
                && sender != mac
                && !answers.contains(&sender)
            {
                answers.push(sender);
            }
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB_A: &str = "4ItZFbWa9Lm8DuQeZ0+vuHs27tL32x2WBd5VF9VdzGU=";
    const LB_B: &str = "KbjMJRJ/AHz7AH6pW0hG8y3LyDDXWSziteOJp1Dwqy4=";
    const CP_1: &str = "2H2jx2ju1TvQheTEiu8V66cjjcQL3EPrljRNsGEKyCk=";
    const WORKER: &str = "GNd2x86GMhZ5nTRpsgVRnyQjjOxXEhW4utNo9d51Si4=";
    const STRANGER: &str = "7G/J9wBpdD94VQCrYYn45ahrSIeY/k2JwZQmwqKiQQM=";

    fn spec() -> ClusterSpec {
        let text = format!(
            r#"
[cluster]
name = "t"
[vip]
address = "198.19.7.100"
interface = "wg7"
vrid = 42
advert_interval = "100ms"
[mesh]
interface = "wg7"
network = "198.19.7.0/24"
[plane.health]
kind = "tcp"
[[nodes]]
name = "lb-a"
roles = ["vip"]
address = "198.19.7.1"
priority = 150
wireguard = {{ public_key = "{LB_A}", endpoint = "198.18.70.1:51820" }}
[[nodes]]
name = "lb-b"
roles = ["vip"]
address = "198.19.7.2"
priority = 100
wireguard = {{ public_key = "{LB_B}", endpoint = "198.18.70.2:51820" }}
[[nodes]]
name = "cp-1"
roles = ["plane"]
address = "198.19.7.11"
wireguard = {{ public_key = "{CP_1}", endpoint = "198.18.70.11:51820" }}
[[nodes]]
name = "worker-1"
roles = ["worker"]
address = "198.19.7.21"
wireguard = {{ public_key = "{WORKER}" }}
"#
        );
        let checked =
            crate::config::check_text("t.toml", &text, std::path::Path::new("t.toml"), None);
        assert_eq!(checked.errors(), 0, "{:?}", checked.diagnostics);
        checked.spec.unwrap()
    }

    /// `wg show wg7 allowed-ips` of the worker, the VIP on `vip_on` (keys).
    fn device(vip_on: &[&str]) -> Result<AllowedIps, String> {
        let peers = [
            (LB_A, "198.19.7.1/32"),
            (LB_B, "198.19.7.2/32"),
            (CP_1, "198.19.7.11/32"),
        ];
        let mut text = String::new();
        for (key, own) in peers {
            let vip = if vip_on.contains(&key) {
                " 198.19.7.100/32"
            } else {
                ""
            };
            text.push_str(&format!("{key}\t{own}{vip}\n"));
        }
        for key in vip_on
            .iter()
            .filter(|k| !peers.iter().any(|(p, _)| p == *k))
        {
            text.push_str(&format!("{key}\t198.19.7.100/32\n"));
        }
        AllowedIps::parse(&text)
    }

    const NOW: f64 = 1_800_000_000.0;

    /// The worker's status document, following `holder` (or `route`).
    fn status(route: &str, holder: Option<(&str, &str)>) -> StatusDocument {
        StatusDocument {
            schema: 1,
            vipd_version: "0".into(),
            cluster: "t".into(),
            node: "worker-1".into(),
            roles: vec!["worker".into()],
            pid: 1,
            started_at: NOW - 600.0,
            config: crate::api::schema::ConfigStatus {
                file: "t.toml".into(),
                loaded_at: NOW - 600.0,
                generation: 1,
            },
            last_reload: None,
            vrrp: None,
            frontends: Vec::new(),
            dnat: None,
            follow: Some(FollowStatus {
                interface: "wg7".into(),
                vip: "198.19.7.100/32".into(),
                holders: vec!["lb-a".into(), "lb-b".into()],
                route: route.into(),
                holder: holder.map(|(name, _)| name.to_owned()),
                peer: holder.map(|(_, key)| key.to_owned()),
                since: NOW - 184.0,
                reason: "former_master_overdue".into(),
                changes: 2,
                applied: true,
                ..FollowStatus::default()
            }),
        }
    }

    fn judge(
        node: &str,
        status: Option<&StatusDocument>,
        device: Result<AllowedIps, String>,
    ) -> Finding {
        let spec = spec();
        let plan = spec.plan(node).unwrap();
        mesh_route(&spec, plan.follow.as_ref().unwrap(), status, device, NOW)
    }

    #[track_caller]
    fn expect(finding: &Finding, verdict: Verdict, words: &[&str]) {
        assert_eq!(finding.verdict, verdict, "{}", finding.detail);
        for word in words {
            assert!(
                finding.detail.contains(word),
                "{word:?} not in: {}",
                finding.detail
            );
        }
    }

    #[test]
    fn the_vip_on_the_followed_masters_peer_passes_with_since_when() {
        let doc = status("holder", Some(("lb-b", LB_B)));
        let found = judge("worker-1", Some(&doc), device(&[LB_B]));
        expect(
            &found,
            Verdict::Pass,
            &[
                "lb-b (KbjM",
                "since 07:56:56 UTC",
                "3m04s ago",
                "former_master_overdue",
            ],
        );
    }

    #[test]
    fn the_vip_on_another_holders_peer_fails_naming_both() {
        let doc = status("holder", Some(("lb-b", LB_B)));
        let found = judge("worker-1", Some(&doc), device(&[LB_A]));
        expect(
            &found,
            Verdict::Fail,
            &["to the peer of lb-b", "on the peer of lb-a", "wg syncconf"],
        );
        // Routed nowhere while the daemon follows lb-b: also wrong.
        let found = judge("worker-1", Some(&doc), device(&[]));
        expect(&found, Verdict::Fail, &["on no peer of wg7"]);
    }

    #[test]
    fn the_vip_on_a_node_that_is_no_holder_fails() {
        let doc = status("holder", Some(("lb-b", LB_B)));
        let found = judge("worker-1", Some(&doc), device(&[CP_1]));
        expect(&found, Verdict::Fail, &["cp-1", "not a VIP holder"]);
        let found = judge("worker-1", Some(&doc), device(&[STRANGER]));
        expect(&found, Verdict::Fail, &["unknown peer", STRANGER]);
        // Without a daemon to ask, the file alone still tells.
        let found = judge("worker-1", None, device(&[CP_1]));
        expect(&found, Verdict::Fail, &["not a VIP holder"]);
    }

    #[test]
    fn the_vip_on_two_peers_fails() {
        let doc = status("holder", Some(("lb-b", LB_B)));
        let found = judge("worker-1", Some(&doc), device(&[LB_A, LB_B]));
        expect(&found, Verdict::Fail, &["2 peers", "lb-a", "lb-b"]);
    }

    #[test]
    fn a_route_not_applied_fails_with_the_daemons_error() {
        let mut doc = status("holder", Some(("lb-b", LB_B)));
        let route = doc.follow.as_mut().unwrap();
        route.applied = false;
        route.error = Some("wg set wg7: Operation not permitted".into());
        let found = judge("worker-1", Some(&doc), device(&[LB_B]));
        expect(
            &found,
            Verdict::Fail,
            &["not applied", "Operation not permitted", "to lb-b's peer"],
        );
    }

    #[test]
    fn no_master_followed_fails() {
        let doc = status("nowhere", None);
        let found = judge("worker-1", Some(&doc), device(&[]));
        expect(
            &found,
            Verdict::Fail,
            &["follows no master", "latest-handshakes"],
        );
    }

    #[test]
    fn a_master_holds_the_vip_on_no_peer() {
        let mut doc = status("local", None);
        doc.node = "lb-a".into();
        let found = judge("lb-a", Some(&doc), device(&[]));
        expect(
            &found,
            Verdict::Pass,
            &["on no peer", "this node is master"],
        );
        let found = judge("lb-a", Some(&doc), device(&[LB_B]));
        expect(
            &found,
            Verdict::Fail,
            &["to no peer", "on the peer of lb-b"],
        );
    }

    #[test]
    fn a_daemon_that_does_not_follow_or_a_device_that_cannot_be_read_fails() {
        let mut doc = status("holder", Some(("lb-b", LB_B)));
        doc.follow = None;
        let found = judge("worker-1", Some(&doc), device(&[LB_B]));
        expect(
            &found,
            Verdict::Fail,
            &["the daemon does not", "vipd reload"],
        );
        let found = judge(
            "worker-1",
            Some(&status("holder", Some(("lb-b", LB_B)))),
            Err("wg show wg7 allowed-ips: Unable to access interface: No such device".into()),
        );
        expect(
            &found,
            Verdict::Fail,
            &["No such device", "wg-quick up wg7"],
        );
        // No daemon: what the device says, not judged.
        let found = judge("worker-1", None, device(&[LB_A]));
        expect(&found, Verdict::Skip, &["on the peer of lb-a"]);
    }
}
