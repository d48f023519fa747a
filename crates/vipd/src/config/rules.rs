//! The semantic rules of `vipd check`: everything a well-typed cluster file
//! can still get wrong. Each rule has a stable code (listed in [`RULES`] and
//! in docs/config.md) and a failing fixture under tests/fixtures/check/.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use base64::Engine as _;

use super::diag::{Diagnostic, Severity};
use super::secrets::SecretsSource;
use super::spec::{CheckKind, ClusterSpec, Datapath, NodeSpec, Role, VrrpMode};
use super::values::SecretField;

/// One rule of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

const fn rule(code: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        code,
        severity,
        summary,
    }
}

use Severity::{Error as E, Warning as W};

/// Every diagnostic code `vipd check` can print, with what it means.
pub const RULES: &[Rule] = &[
    rule("syntax", E, "the file is not valid TOML"),
    rule(
        "type",
        E,
        "a value has the wrong type or is out of its range",
    ),
    rule(
        "unknown-field",
        E,
        "a field or section vipd does not know (often a typo)",
    ),
    rule("missing-field", E, "a required field or section is absent"),
    rule(
        "invalid-name",
        E,
        "a cluster or node name is not a DNS label",
    ),
    rule("interface-name", E, "an interface name Linux would refuse"),
    rule("duplicate-node-name", E, "two nodes share a name"),
    rule("duplicate-node-address", E, "two nodes share an address"),
    rule("no-roles", E, "a node has no role"),
    rule("duplicate-role", W, "a node lists a role twice"),
    rule("no-vip-holder", E, "no node has the `vip` role"),
    rule(
        "single-vip-holder",
        W,
        "one VIP holder: a single point of failure",
    ),
    rule("no-planes", E, "no node has the `plane` role"),
    rule("vip-is-node-address", E, "the VIP is a node's own address"),
    rule(
        "vip-outside-mesh",
        E,
        "the VIP is on the WireGuard interface but outside the mesh network",
    ),
    rule(
        "node-outside-mesh",
        E,
        "a node address is outside the mesh network",
    ),
    rule(
        "follower-interval",
        E,
        "mesh.follower_interval is outside 10ms..=60s",
    ),
    rule(
        "follower-interval-slow",
        W,
        "mesh.follower_interval is so long that followers re-point late after a master crashes",
    ),
    rule(
        "address-family",
        E,
        "a VIP holder's address is not of the VIP's family",
    ),
    rule(
        "vip-prefix",
        E,
        "the VIP prefix length does not fit its family",
    ),
    rule("vrid-range", E, "the VRID is outside 1..=255"),
    rule("vrrp-version", E, "the VRRP version is neither 2 nor 3"),
    rule(
        "advert-interval",
        E,
        "the advert interval cannot be sent in this VRRP version",
    ),
    rule("priority-missing", E, "a VIP holder has no priority"),
    rule(
        "priority-range",
        E,
        "a priority outside 1..=254 (255 only for the address owner)",
    ),
    rule(
        "priority-ignored",
        W,
        "a priority on a node that does not hold the VIP",
    ),
    rule(
        "priority-tie",
        W,
        "two VIP holders with one priority: the higher address wins ties",
    ),
    rule(
        "auth-with-v3",
        E,
        "PASS authentication with VRRPv3, which has none",
    ),
    rule(
        "auth-too-long",
        E,
        "a PASS password longer than 8 bytes, or empty",
    ),
    rule(
        "multicast-on-wireguard",
        E,
        "multicast VRRP on WireGuard, which carries no multicast",
    ),
    rule(
        "unicast-peers-missing",
        E,
        "a VIP holder left out of vip.unicast_peers",
    ),
    rule(
        "unicast-peers-ignored",
        W,
        "vip.unicast_peers set in multicast mode",
    ),
    rule(
        "checksum-ignored",
        W,
        "vip.checksum set where there is only one convention",
    ),
    rule(
        "preempt-delay-ignored",
        W,
        "vip.preempt_delay set with preempt off",
    ),
    rule(
        "port-collision",
        E,
        "two listeners of one node on the same port",
    ),
    rule(
        "health-thresholds",
        E,
        "a health check rise, fall or interval of zero",
    ),
    rule(
        "health-timeout",
        W,
        "a health check timeout not shorter than its interval",
    ),
    rule(
        "health-tls",
        E,
        "an HTTPS check with neither ca_file nor insecure_skip_verify, or both",
    ),
    rule(
        "health-path",
        E,
        "an HTTPS check path that does not start with /",
    ),
    rule("inline-secret", E, "a secret written into the cluster file"),
    rule(
        "unknown-secret",
        E,
        "a secret reference the secrets file does not define",
    ),
    rule(
        "secrets-file",
        E,
        "the secrets file is unreadable, invalid, or open to others",
    ),
    rule(
        "secrets-file-missing",
        W,
        "the secrets file is absent: references not checked",
    ),
    rule(
        "plain-secrets",
        W,
        "secrets come from a plain file: development only, use the vault",
    ),
    rule(
        "vault",
        E,
        "the vault cannot be opened: corrupt, wrong key, open identity file",
    ),
    rule(
        "vault-locked",
        W,
        "no key to open the vault here: references not checked",
    ),
    rule(
        "wireguard-missing",
        E,
        "a node has no [nodes.wireguard] while [mesh] is set",
    ),
    rule(
        "wireguard-key",
        E,
        "a WireGuard public key that is not 32 bytes of base64",
    ),
    rule(
        "duplicate-wireguard-key",
        E,
        "two nodes share a WireGuard public key",
    ),
    rule(
        "wireguard-endpoint",
        E,
        "a WireGuard endpoint that is not host:port",
    ),
    rule(
        "wireguard-private-key",
        E,
        "a WireGuard private key secret that is not a key, or not the key of the node's public_key",
    ),
    rule("dns-zone", E, "[dns] zone is not a domain name"),
    rule(
        "dns-name-collision",
        E,
        "[dns] vip_name is also a node's name",
    ),
    rule(
        "wireguard-without-mesh",
        W,
        "[nodes.wireguard] without a [mesh] section",
    ),
    rule(
        "notify-command",
        E,
        "an empty notify command, or (warning) one without an absolute path",
    ),
    rule("track-weight", E, "a tracker weight outside -253..=253"),
    rule(
        "track-not-applicable",
        W,
        "a tracker that some VIP holders cannot run (they are not planes)",
    ),
];

/// What the rules look at.
#[derive(Debug)]
pub struct Context<'a> {
    pub spec: &'a ClusterSpec,
    /// For each entry of `spec.nodes`, its index in the file.
    pub node_indices: &'a [usize],
    pub secrets: &'a SecretsSource,
}

impl Context<'_> {
    fn node_path(&self, position: usize) -> String {
        format!(
            "nodes[{}]",
            self.node_indices.get(position).copied().unwrap_or(position)
        )
    }

    fn nodes(&self) -> impl Iterator<Item = (String, &NodeSpec)> {
        self.spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (self.node_path(i), n))
    }
}

/// Runs every rule; findings are appended in file order within each rule.
pub fn check(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    names(ctx, out);
    interfaces(ctx, out);
    duplicates(ctx, out);
    roles(ctx, out);
    addresses(ctx, out);
    vrrp_settings(ctx, out);
    priorities(ctx, out);
    authentication(ctx, out);
    peers(ctx, out);
    ports(ctx, out);
    health_checks(ctx, out);
    secrets(ctx, out);
    wireguard(ctx, out);
    notify(ctx, out);
    trackers(ctx, out);
}

fn notify(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let n = &ctx.spec.vip.notify;
    let hooks = [
        ("master", &n.master),
        ("backup", &n.backup),
        ("fault", &n.fault),
        ("stop", &n.stop),
        ("any", &n.any),
    ];
    for (name, command) in hooks {
        let Some(command) = command else { continue };
        let path = format!("vip.notify.{name}");
        match command.first() {
            None => out.push(
                Diagnostic::error("notify-command", path, format!("notify.{name} is an empty command"))
                    .help("give the program and its arguments: [\"/usr/local/bin/on-vip\", \"master\"], or remove it"),
            ),
            Some(program) if !program.starts_with('/') => out.push(
                Diagnostic::warning(
                    "notify-command",
                    path,
                    format!("notify.{name} runs \"{program}\" by a relative name; services get a minimal PATH"),
                )
                .help("use the program's absolute path"),
            ),
            Some(_) => {}
        }
    }
}

fn trackers(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let holders_not_planes: Vec<&str> = ctx
        .spec
        .nodes_with(Role::Vip)
        .filter(|n| !n.has_role(Role::Plane))
        .map(|n| n.name.as_str())
        .collect();
    for (i, tracker) in ctx.spec.vip.track.iter().enumerate() {
        let path = format!("vip.track[{i}]");
        if !(-253..=253).contains(&tracker.weight) {
            out.push(
                Diagnostic::error(
                    "track-weight",
                    format!("{path}.weight"),
                    format!("tracker weight {} is outside -253..=253", tracker.weight),
                )
                .help("use 0 to fault the holder while the check fails, or a weight from -253 to 253 to move its priority"),
            );
        }
        if tracker.rise == 0 || tracker.fall == 0 {
            let field = if tracker.rise == 0 { "rise" } else { "fall" };
            out.push(
                Diagnostic::error(
                    "health-thresholds",
                    format!("{path}.{field}"),
                    format!("tracker {field} is 0"),
                )
                .help("rise and fall count consecutive results and must be at least 1"),
            );
        }
        if tracker.interval.get().is_zero() {
            out.push(
                Diagnostic::error(
                    "health-thresholds",
                    format!("{path}.interval"),
                    "tracker interval is 0",
                )
                .help("use an interval like \"1s\""),
            );
        } else if tracker.timeout >= tracker.interval {
            out.push(
                Diagnostic::warning(
                    "health-timeout",
                    format!("{path}.timeout"),
                    format!(
                        "tracker timeout {} is not shorter than its interval {}",
                        tracker.timeout, tracker.interval
                    ),
                )
                .help("make the timeout shorter than the interval"),
            );
        }
        if !holders_not_planes.is_empty() {
            out.push(
                Diagnostic::warning(
                    "track-not-applicable",
                    format!("{path}.check"),
                    format!(
                        "this tracker watches the holder's own kube-apiserver or proxy; it is ignored on {}, which {}",
                        holders_not_planes.join(", "),
                        if holders_not_planes.len() == 1 { "is not a plane" } else { "are not planes" }
                    ),
                )
                .help("trackers suit the stacked topology, where every VIP holder is also a plane"),
            );
        }
    }
}

/// RFC 1123 host name label: what a node name must be to serve as a hostname.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn names(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let label_help =
        "use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'";
    if !is_dns_label(&ctx.spec.cluster.name) {
        out.push(
            Diagnostic::error(
                "invalid-name",
                "cluster.name",
                format!(
                    "cluster name \"{}\" is not a DNS label",
                    ctx.spec.cluster.name
                ),
            )
            .help(label_help),
        );
    }
    for (path, node) in ctx.nodes() {
        if !is_dns_label(&node.name) {
            out.push(
                Diagnostic::error(
                    "invalid-name",
                    format!("{path}.name"),
                    format!(
                        "node name \"{}\" is not a DNS label (it names the host)",
                        node.name
                    ),
                )
                .help(label_help),
            );
        }
    }
    if !is_dns_label(&ctx.spec.dns.vip_name) {
        out.push(
            Diagnostic::error(
                "invalid-name",
                "dns.vip_name",
                format!("VIP name \"{}\" is not a DNS label", ctx.spec.dns.vip_name),
            )
            .help(label_help),
        );
    }
    if let Some(zone) = &ctx.spec.dns.zone
        && !is_domain_name(zone)
    {
        out.push(
            Diagnostic::error(
                "dns-zone",
                "dns.zone",
                format!("zone \"{zone}\" is not a domain name"),
            )
            .help("write it as DNS labels joined by dots, like \"prod.example.\" (the final dot is optional)"),
        );
    }
    if let Some((path, node)) = ctx.nodes().find(|(_, n)| n.name == ctx.spec.dns.vip_name) {
        out.push(
            Diagnostic::error(
                "dns-name-collision",
                "dns.vip_name",
                format!(
                    "the VIP's name \"{}\" is also the name of {path} ({}): `vipd render dns` would give one name two addresses",
                    ctx.spec.dns.vip_name, node.address
                ),
            )
            .help("give the VIP a name of its own, like vip_name = \"k8s-api\""),
        );
    }
}

/// A domain name of DNS labels joined by dots, with an optional final dot;
/// at most 253 characters. Letters of either case, digits and '-'.
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Linux `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white space.
fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

fn interfaces(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let mut check = |path: String, name: &str| {
        if !is_interface_name(name) {
            out.push(
                Diagnostic::error(
                    "interface-name",
                    path,
                    format!("\"{name}\" is not a valid Linux interface name"),
                )
                .help(
                    "use 1 to 15 bytes without '/', ':' or spaces (ip link show lists the names)",
                ),
            );
        }
    };
    check("vip.interface".into(), &ctx.spec.vip.interface);
    if let Some(mesh) = &ctx.spec.mesh {
        check("mesh.interface".into(), &mesh.interface);
    }
    for (path, node) in ctx.nodes() {
        if let Some(interface) = &node.interface {
            check(format!("{path}.interface"), interface);
        }
    }
}

fn duplicates(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut addresses: HashMap<IpAddr, String> = HashMap::new();
    for (path, node) in ctx.nodes() {
        if let Some(first) = names.get(node.name.as_str()) {
            out.push(
                Diagnostic::error(
                    "duplicate-node-name",
                    format!("{path}.name"),
                    format!("node name \"{}\" is already used by {first}", node.name),
                )
                .help("every node needs a name of its own: rename one of them"),
            );
        } else {
            names.insert(&node.name, path.clone());
        }
        if let Some(first) = addresses.get(&node.address) {
            out.push(
                Diagnostic::error(
                    "duplicate-node-address",
                    format!("{path}.address"),
                    format!("address {} is already the address of {first}", node.address),
                )
                .help("each node has its own address on the mesh; if this is one machine, give it one entry with several roles"),
            );
        } else {
            addresses.insert(node.address, path);
        }
    }
}

fn roles(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    for (path, node) in ctx.nodes() {
        if node.roles.is_empty() {
            out.push(
                Diagnostic::error(
                    "no-roles",
                    format!("{path}.roles"),
                    format!("node \"{}\" has no role", node.name),
                )
                .help("give it at least one of \"vip\", \"plane\", \"worker\""),
            );
        }
        for (i, role) in node.roles.iter().enumerate() {
            if node.roles[..i].contains(role) {
                out.push(
                    Diagnostic::warning(
                        "duplicate-role",
                        format!("{path}.roles[{i}]"),
                        format!("role \"{}\" is listed twice", role.as_str()),
                    )
                    .help("list each role once"),
                );
            }
        }
    }
    let holders = ctx.spec.nodes_with(Role::Vip).count();
    if holders == 0 {
        out.push(
            Diagnostic::error("no-vip-holder", "nodes", "no node holds the VIP")
                .help("add \"vip\" to the roles of at least two nodes (planes can hold it too: the stacked topology)"),
        );
    } else if holders == 1 {
        let (path, node) = ctx
            .nodes()
            .find(|(_, n)| n.has_role(Role::Vip))
            .expect("one holder");
        out.push(
            Diagnostic::warning(
                "single-vip-holder",
                format!("{path}.roles"),
                format!("\"{}\" is the only VIP holder: when it fails, the API endpoint is gone (a single point of failure)", node.name),
            )
            .help("give a second node the \"vip\" role with a lower priority"),
        );
    }
    if ctx.spec.nodes_with(Role::Plane).next().is_none() {
        out.push(
            Diagnostic::error(
                "no-planes",
                "nodes",
                "no node is a control plane: the VIP would lead nowhere",
            )
            .help("add \"plane\" to the roles of the nodes that run a kube-apiserver"),
        );
    }
}

fn addresses(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let spec = ctx.spec;
    let vip = spec.vip.address;
    let max_prefix = if vip.is_ipv4() { 32 } else { 128 };
    if let Some(prefix) = spec.vip.prefix
        && !(1..=max_prefix).contains(&prefix)
    {
        out.push(
            Diagnostic::error(
                "vip-prefix",
                "vip.prefix",
                format!(
                    "prefix /{prefix} does not fit an IPv{} address",
                    if vip.is_ipv4() { 4 } else { 6 }
                ),
            )
            .help(format!(
                "use 1..={max_prefix}; /{max_prefix} adds the VIP alone, without a route"
            )),
        );
    }
    for (path, node) in ctx.nodes() {
        if node.address == vip {
            let owner = node.has_role(Role::Vip) && node.priority == Some(255);
            if !owner {
                out.push(
                    Diagnostic::error(
                        "vip-is-node-address",
                        format!("{path}.address"),
                        format!("the VIP {vip} is node \"{}\"'s own address", node.name),
                    )
                    .help("pick a free address for the VIP; only an address owner (role \"vip\", priority 255) may share it"),
                );
            }
        }
        if node.has_role(Role::Vip) && node.address.is_ipv4() != vip.is_ipv4() {
            out.push(
                Diagnostic::error(
                    "address-family",
                    format!("{path}.address"),
                    format!("VIP holder \"{}\" has address {} but the VIP {vip} is of the other family", node.name, node.address),
                )
                .help("VRRP runs one address family per instance: give holders an address of the VIP's family"),
            );
        }
    }
    let Some(mesh) = &spec.mesh else { return };
    if let Some(interval) = mesh.follower_interval {
        let follower_interval = interval.get();
        let advert = spec.vip.advert_interval.get();
        let prompt = advert.mul_f64(crate::config::spec::FOLLOWER_INTERVAL_PROMPT_ADVERTS);
        if follower_interval < std::time::Duration::from_millis(10)
            || follower_interval > std::time::Duration::from_secs(60)
        {
            out.push(
                Diagnostic::error(
                    "follower-interval",
                    "mesh.follower_interval",
                    format!("a master advertises to the followers every {interval}: that is outside 10ms..=60s"),
                )
                .help("leave it out for the default, 1.5 × vip.advert_interval (a follower trusts a master for 3 intervals)"),
            );
        } else if spec.vip_on_mesh() && follower_interval > prompt {
            // A crashed master's last advert to a follower is overdue
            // 1.25 intervals after it; the backup takes over about 2 advert
            // intervals after it at the earliest.
            let late = follower_interval.mul_f64(1.25).saturating_sub(advert * 2);
            out.push(
                Diagnostic::warning(
                    "follower-interval-slow",
                    "mesh.follower_interval",
                    format!(
                        "with adverts every {} to the followers, a follower may keep routing the VIP to a crashed master for up to {} ms after the new master's first advert (until the old one's advert is 1.25 intervals overdue)",
                        interval,
                        late.as_millis()
                    ),
                )
                .help(format!(
                    "use at most {} ms (1.6 × vip.advert_interval), or leave it out for 1.5 × vip.advert_interval; each follower then costs the master {:.1} adverts a second",
                    prompt.as_millis(),
                    1.0 / prompt.as_secs_f64()
                )),
            );
        }
    }
    if spec.vip_on_mesh() && !mesh.network.contains(&vip) {
        out.push(
            Diagnostic::error(
                "vip-outside-mesh",
                "vip.address",
                format!("the VIP {vip} is on the WireGuard interface {} but outside the mesh network {}", mesh.interface, mesh.network),
            )
            .help(format!("pick a free address inside {}: WireGuard only routes what its AllowedIPs cover", mesh.network)),
        );
    }
    for (path, node) in ctx.nodes() {
        if !mesh.network.contains(&node.address) {
            out.push(
                Diagnostic::error(
                    "node-outside-mesh",
                    format!("{path}.address"),
                    format!("node \"{}\" address {} is outside the mesh network {}", node.name, node.address, mesh.network),
                )
                .help("a node's address is its address on the mesh; the inventory address goes in `host`"),
            );
        }
    }
}

fn vrrp_settings(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let vip = &ctx.spec.vip;
    if !(1..=255).contains(&vip.vrid) {
        out.push(
            Diagnostic::error(
                "vrid-range",
                "vip.vrid",
                format!("VRID {} is outside 1..=255", vip.vrid),
            )
            .help("pick a VRID from 1 to 255 that no other VRRP router on this network uses"),
        );
    }
    let interval = vip.advert_interval.get();
    match vip.version {
        2 => {
            // RFC 3768 §5.3.7: Adver Int is a whole number of seconds in one byte.
            let whole = interval.subsec_nanos() == 0;
            if !whole || interval.as_secs() == 0 || interval.as_secs() > 255 {
                out.push(
                    Diagnostic::error(
                        "advert-interval",
                        "vip.advert_interval",
                        format!("VRRPv2 sends the advert interval in whole seconds from 1 to 255; {} cannot be sent", vip.advert_interval),
                    )
                    .help("use a whole number of seconds (\"1s\"), or version = 3 for sub-second adverts"),
                );
            }
        }
        3 => {
            // RFC 5798 §5.2.7: Max Adver Int is 12 bits of centiseconds.
            let micros = interval.as_micros();
            if !micros.is_multiple_of(10_000) || micros == 0 || micros > 4095 * 10_000 {
                out.push(
                    Diagnostic::error(
                        "advert-interval",
                        "vip.advert_interval",
                        format!("VRRPv3 sends the advert interval in centiseconds from 10ms to 40.95s; {} cannot be sent", vip.advert_interval),
                    )
                    .help("use a multiple of 10ms between \"10ms\" and \"40950ms\" (\"100ms\" fails over in about 0.35 s)"),
                );
            }
        }
        other => out.push(
            Diagnostic::error(
                "vrrp-version",
                "vip.version",
                format!("VRRP version {other} does not exist here"),
            )
            .help("use 3 (RFC 5798), or 2 (RFC 3768) to join an old keepalived group"),
        ),
    }
    if vip.checksum.is_some() && (vip.version != 3 || vip.address.is_ipv6()) {
        out.push(
            Diagnostic::warning(
                "checksum-ignored",
                "vip.checksum",
                "vip.checksum only matters for VRRPv3 over IPv4; it is ignored here",
            )
            .help("remove it"),
        );
    }
    if !vip.preempt && !vip.preempt_delay.get().is_zero() {
        out.push(
            Diagnostic::warning(
                "preempt-delay-ignored",
                "vip.preempt_delay",
                "preempt_delay has no effect with preempt = false",
            )
            .help("remove preempt_delay, or set preempt = true"),
        );
    }
}

fn priorities(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let vip = ctx.spec.vip.address;
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    for (path, node) in ctx.nodes() {
        let holder = node.has_role(Role::Vip);
        match (holder, node.priority) {
            (true, None) => out.push(
                Diagnostic::error(
                    "priority-missing",
                    &path,
                    format!("VIP holder \"{}\" has no priority", node.name),
                )
                .help("add `priority = N` (1..=254); the highest live priority holds the VIP"),
            ),
            (false, Some(_)) => out.push(
                Diagnostic::warning(
                    "priority-ignored",
                    format!("{path}.priority"),
                    format!(
                        "node \"{}\" does not hold the VIP; its priority is ignored",
                        node.name
                    ),
                )
                .help("remove it, or add \"vip\" to its roles"),
            ),
            (true, Some(priority)) => {
                let owner = node.address == vip;
                let problem = match priority {
                    0 => Some("0 is reserved for the advert a master sends when it stops"),
                    255 if !owner => Some(
                        "255 is reserved for the VIP's address owner, and the VIP is not this node's address",
                    ),
                    256.. => Some("VRRP priorities are one byte"),
                    _ => None,
                };
                if let Some(problem) = problem {
                    out.push(
                        Diagnostic::error(
                            "priority-range",
                            format!("{path}.priority"),
                            format!("priority {priority} cannot be used: {problem}"),
                        )
                        .help("use 1..=254 (RFC 5798 §5.2.4)"),
                    );
                } else if let Some(first) = seen.get(&priority) {
                    out.push(
                        Diagnostic::warning(
                            "priority-tie",
                            format!("{path}.priority"),
                            format!("priority {priority} is also the priority of {first}: the tie goes to the higher address"),
                        )
                        .help("give each VIP holder its own priority so the preferred master is explicit"),
                    );
                } else {
                    seen.insert(priority, path.clone());
                }
            }
            (false, None) => {}
        }
    }
}

fn authentication(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let vip = &ctx.spec.vip;
    let Some(pass) = &vip.auth_pass else { return };
    if vip.version == 3 {
        out.push(
            Diagnostic::error(
                "auth-with-v3",
                "vip.auth_pass",
                "VRRPv3 has no authentication (RFC 5798 §9): auth_pass cannot be used with version = 3",
            )
            .help("remove auth_pass, or use version = 2 to match a keepalived group that uses PASS"),
        );
        return;
    }
    let (SecretField::Ref(name), Some(secrets)) = (pass, ctx.secrets.secrets()) else {
        return;
    };
    if let Some(value) = secrets.get(name) {
        let len = value.expose().len();
        if len == 0 || len > 8 {
            out.push(
                Diagnostic::error(
                    "auth-too-long",
                    "vip.auth_pass",
                    format!("the PASS password (secret \"{name}\") is {len} bytes; VRRPv2 carries 1 to 8"),
                )
                .help("use a password of 1 to 8 bytes: longer ones are cut to 8 on the wire, so peers that do not cut would disagree"),
            );
        }
    }
}

fn peers(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let spec = ctx.spec;
    let mode = spec.vrrp_mode();
    if mode == VrrpMode::Multicast && spec.vip_on_mesh() {
        out.push(
            Diagnostic::error(
                "multicast-on-wireguard",
                "vip.mode",
                format!("{} is a WireGuard interface, which carries no multicast: VRRP adverts would never arrive", spec.vip.interface),
            )
            .help("set mode = \"unicast\" (or leave it out: unicast is the default on the mesh)"),
        );
    }
    let Some(listed) = &spec.vip.unicast_peers else {
        return;
    };
    if mode == VrrpMode::Multicast {
        out.push(
            Diagnostic::warning(
                "unicast-peers-ignored",
                "vip.unicast_peers",
                "unicast_peers is ignored in multicast mode",
            )
            .help("remove it, or set mode = \"unicast\""),
        );
        return;
    }
    for (path, node) in ctx.nodes() {
        if node.has_role(Role::Vip) && !listed.contains(&node.address) {
            out.push(
                Diagnostic::error(
                    "unicast-peers-missing",
                    "vip.unicast_peers",
                    format!("VIP holder \"{}\" ({}, {path}) is not in vip.unicast_peers: the others would never hear its adverts, and it would become a second master", node.name, node.address),
                )
                .help(format!("add \"{}\" to vip.unicast_peers, or remove the list: by default every VIP holder is a peer", node.address)),
            );
        }
    }
}

/// A socket a node listens on, and the config path that put it there.
struct Listener {
    /// `None` is the wildcard address (kube-apiserver binds 0.0.0.0 by default).
    address: Option<IpAddr>,
    port: u16,
    what: &'static str,
    path: String,
}

fn ports(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let spec = ctx.spec;
    for (path, node) in ctx.nodes() {
        let mut listeners = Vec::new();
        if node.has_role(Role::Plane) {
            let ports = spec.plane_ports(node);
            listeners.push(Listener {
                address: None,
                port: ports.apiserver_port.get(),
                what: "the kube-apiserver (all addresses)",
                path: plane_field_path(
                    node,
                    &path,
                    "apiserver_port",
                    spec.plane.apiserver_port.is_some(),
                ),
            });
            listeners.push(Listener {
                address: Some(node.address),
                port: ports.proxy_port.get(),
                what: "the plane proxy",
                path: plane_field_path(node, &path, "proxy_port", spec.plane.proxy_port.is_some()),
            });
        }
        if node.has_role(Role::Worker) && spec.proxy.worker_local {
            listeners.push(Listener {
                address: Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
                port: spec.proxy.worker_port.get(),
                what: "the node-local worker proxy",
                path: "proxy.worker_port".into(),
            });
        }
        if node.has_role(Role::Vip) && spec.api.datapath == Datapath::Proxy {
            listeners.push(Listener {
                address: Some(spec.vip.address),
                port: spec.api.port.get(),
                what: "the VIP proxy",
                path: "api.port".into(),
            });
        }
        for (i, later) in listeners.iter().enumerate() {
            let clash = listeners[..i].iter().find(|earlier| {
                earlier.port == later.port
                    && (earlier.address.is_none()
                        || later.address.is_none()
                        || earlier.address == later.address)
            });
            if let Some(earlier) = clash {
                out.push(
                    Diagnostic::error(
                        "port-collision",
                        later.path.clone(),
                        format!(
                            "on node \"{}\", {} and {} would both listen on port {}",
                            node.name, earlier.what, later.what, later.port
                        ),
                    )
                    .help("give one of them another port (the kubeadm HA guide puts the VIP on 8443 when planes hold it and use the proxy datapath)"),
                );
            }
        }
    }
}

/// The path of a plane field: the node's own override if it has one, else
/// `[plane]` if set there, else the node (the built-in default applies).
fn plane_field_path(
    node: &NodeSpec,
    node_path: &str,
    field: &str,
    cluster_sets_it: bool,
) -> String {
    let node_sets_it = node.plane.as_ref().is_some_and(|p| match field {
        "proxy_port" => p.proxy_port.is_some(),
        _ => p.apiserver_port.is_some(),
    });
    if node_sets_it {
        format!("{node_path}.plane.{field}")
    } else if cluster_sets_it {
        format!("plane.{field}")
    } else {
        node_path.to_owned()
    }
}

fn health_checks(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let spec = ctx.spec;
    // Judge the cluster-wide table once, then each node's overrides where
    // they change the outcome, so one mistake is reported once.
    let mut places: Vec<(String, Option<&NodeSpec>)> = vec![("plane.health".to_owned(), None)];
    for (path, node) in ctx.nodes() {
        if node.has_role(Role::Plane) && node.plane.is_some() {
            places.push((format!("{path}.plane.health"), Some(node)));
        }
    }
    let mut reported: Vec<String> = Vec::new();
    for (path, node) in places {
        if node.is_none() && spec.nodes_with(Role::Plane).next().is_none() {
            continue;
        }
        let check = spec
            .plane_ports_with(node.and_then(|n| n.plane.as_ref()))
            .health;
        let mut findings: Vec<Diagnostic> = Vec::new();
        if check.rise == 0 || check.fall == 0 {
            let field = if check.rise == 0 { "rise" } else { "fall" };
            findings.push(
                Diagnostic::error("health-thresholds", format!("{path}.{field}"), format!("health check {field} is 0"))
                    .help("rise and fall count consecutive results and must be at least 1 (HAProxy's defaults are rise 2, fall 3)"),
            );
        }
        if check.interval.get().is_zero() {
            findings.push(
                Diagnostic::error(
                    "health-thresholds",
                    format!("{path}.interval"),
                    "health check interval is 0",
                )
                .help("use an interval like \"2s\""),
            );
        } else if check.timeout >= check.interval {
            findings.push(
                Diagnostic::warning(
                    "health-timeout",
                    format!("{path}.timeout"),
                    format!("health check timeout {} is not shorter than its interval {}: checks would overlap", check.timeout, check.interval),
                )
                .help("make the timeout shorter than the interval"),
            );
        }
        if check.kind == CheckKind::Https {
            match (&check.ca_file, check.insecure_skip_verify) {
                (None, false) => findings.push(
                    Diagnostic::error(
                        "health-tls",
                        path.clone(),
                        "the HTTPS health check has no CA to verify the kube-apiserver against",
                    )
                    .help("set ca_file = \"/etc/kubernetes/pki/ca.crt\" (kubeadm's cluster CA), or insecure_skip_verify = true"),
                ),
                (Some(_), true) => findings.push(
                    Diagnostic::error(
                        "health-tls",
                        format!("{path}.insecure_skip_verify"),
                        "the HTTPS health check has both ca_file and insecure_skip_verify = true",
                    )
                    .help("keep ca_file and remove insecure_skip_verify"),
                ),
                _ => {}
            }
            if let Some(p) = &check.path
                && !p.starts_with('/')
            {
                findings.push(
                    Diagnostic::error(
                        "health-path",
                        format!("{path}.path"),
                        format!("health check path \"{p}\" does not start with /"),
                    )
                    .help("use \"/readyz\", \"/livez\" or \"/healthz\""),
                );
            }
        }
        for finding in findings {
            // A node inherits the cluster-wide check: report a shared mistake once.
            let key = format!("{}:{}", finding.code, finding.message);
            if !reported.contains(&key) {
                reported.push(key);
                out.push(finding);
            }
        }
    }
}

/// Every secret reference in the spec, with its path.
fn secret_fields<'a>(ctx: &'a Context<'_>) -> Vec<(String, &'a SecretField)> {
    let mut fields = Vec::new();
    if let Some(pass) = &ctx.spec.vip.auth_pass {
        fields.push(("vip.auth_pass".to_owned(), pass));
    }
    for (position, node) in ctx.spec.nodes.iter().enumerate() {
        if let Some(key) = node.wireguard.as_ref().and_then(|w| w.private_key.as_ref()) {
            fields.push((
                format!("{}.wireguard.private_key", ctx.node_path(position)),
                key,
            ));
        }
    }
    fields
}

fn secrets(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let fields = secret_fields(ctx);
    for (path, field) in &fields {
        if matches!(field, SecretField::Inline) {
            let suggested = path.replace(['[', ']', '.'], "_").replace("__", "_");
            out.push(
                Diagnostic::error(
                    "inline-secret",
                    path.clone(),
                    format!("{path} holds a secret in clear; the cluster file only names secrets"),
                )
                .help(format!(
                    "move the value to {} as {suggested} = \"...\" and write {{ secret = \"{suggested}\" }} here",
                    ctx.secrets.path().display()
                ))
                .conceal(),
            );
        }
    }
    let references: Vec<(&String, &str)> = fields
        .iter()
        .filter_map(|(path, field)| field.name().map(|name| (path, name)))
        .collect();
    if references.is_empty() {
        return;
    }
    let file = ctx.secrets.path().display();
    let not_checked = || {
        format!(
            "{} secret reference(s) not checked ({})",
            references.len(),
            references
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if let SecretsSource::Loaded { .. } = ctx.secrets {
        out.push(
            Diagnostic::warning(
                "plain-secrets",
                "cluster.secrets_file",
                format!("secrets come from the plain file {file}: fine for development, not for production"),
            )
            .help(format!(
                "encrypt it: `vipd vault init --file secrets.age --from {file} --recipient age1...` (one recipient per node), then set [cluster] vault = \"secrets.age\" and delete {file}"
            )),
        );
    }
    match ctx.secrets {
        SecretsSource::Unlocked { secrets, .. } => {
            for (path, name) in &references {
                if secrets.get(name).is_none() {
                    out.push(
                        Diagnostic::error(
                            "unknown-secret",
                            (*path).clone(),
                            format!("secret \"{name}\" is not in the vault {file}"),
                        )
                        .help(format!("add it: `vipd vault --file {file} set {name}` (the value on stdin)")),
                    );
                }
            }
        }
        SecretsSource::VaultMissing { .. } => out.push(
            Diagnostic::warning(
                "secrets-file-missing",
                "cluster.vault",
                format!("vault {file} not found: {}", not_checked()),
            )
            .help(format!(
                "create it with `vipd vault init --file {file} --recipient age1...`; `vipd run` needs it"
            )),
        ),
        SecretsSource::Locked { reason, .. } => out.push(
            Diagnostic::warning(
                "vault-locked",
                "cluster.vault",
                format!("vault {file} cannot be opened here: {reason}: {}", not_checked()),
            )
            .help("give the node's identity file with --identity FILE (default /etc/vipd/identity); `vipd run` needs it"),
        ),
        SecretsSource::VaultInvalid { reason, .. } => out.push(
            Diagnostic::error(
                "vault",
                "cluster.vault",
                format!("the vault cannot be used: {reason}"),
            )
            .help("check the file (`vipd vault list`), the identity file (mode 0600, one of the vault's recipients) and `vipd vault rekey`"),
        ),
        SecretsSource::Loaded { secrets, .. } => {
            for (path, name) in &references {
                if secrets.get(name).is_none() {
                    out.push(
                        Diagnostic::error(
                            "unknown-secret",
                            (*path).clone(),
                            format!("secret \"{name}\" is not defined in {file}"),
                        )
                        .help(format!("add {name} = \"...\" to {file}")),
                    );
                }
            }
        }
        SecretsSource::Missing { .. } => out.push(
            Diagnostic::warning(
                "secrets-file-missing",
                "cluster.secrets_file",
                format!(
                    "secrets file {file} not found: {} secret reference(s) not checked ({})",
                    references.len(),
                    references
                        .iter()
                        .map(|(p, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .help(format!(
                "create {file} with mode 0600, or pass --secrets PATH; `vipd run` needs it"
            )),
        ),
        SecretsSource::TooOpen { mode, .. } => out.push(
            Diagnostic::error(
                "secrets-file",
                "cluster.secrets_file",
                format!("secrets file {file} has mode {mode:04o}: others can read it"),
            )
            .help(format!("chmod 600 {file}")),
        ),
        SecretsSource::Invalid { reason, .. } => out.push(
            Diagnostic::error(
                "secrets-file",
                "cluster.secrets_file",
                format!("secrets file {file} cannot be used: {reason}"),
            )
            .help("it holds lines like name = \"value\", one per secret"),
        ),
    }
}

fn wireguard(ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let mesh = ctx.spec.mesh.as_ref();
    let mut keys: HashMap<&str, String> = HashMap::new();
    for (path, node) in ctx.nodes() {
        let Some(wg) = &node.wireguard else {
            if let Some(mesh) = mesh {
                out.push(
                    Diagnostic::error(
                        "wireguard-missing",
                        &path,
                        format!("node \"{}\" has no [nodes.wireguard] entry but the cluster runs over {}", node.name, mesh.interface),
                    )
                    .help("add its public key (`wg pubkey`) and endpoint under [nodes.wireguard]"),
                );
            }
            continue;
        };
        if mesh.is_none() {
            out.push(
                Diagnostic::warning(
                    "wireguard-without-mesh",
                    format!("{path}.wireguard"),
                    "[nodes.wireguard] is ignored without a [mesh] section",
                )
                .help("add [mesh] with the interface and network, or remove the entry"),
            );
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(&wg.public_key);
        let key_ok = matches!(decoded, Ok(ref bytes) if bytes.len() == 32);
        if !key_ok {
            out.push(
                Diagnostic::error(
                    "wireguard-key",
                    format!("{path}.wireguard.public_key"),
                    format!(
                        "\"{}\" is not a WireGuard public key (44 characters of base64, 32 bytes)",
                        wg.public_key
                    ),
                )
                .help("copy the output of `wg pubkey < private.key` on that node"),
            );
        } else if let Some(first) = keys.get(wg.public_key.as_str()) {
            out.push(
                Diagnostic::error(
                    "duplicate-wireguard-key",
                    format!("{path}.wireguard.public_key"),
                    format!("this public key is already the key of {first}"),
                )
                .help("every node has its own key pair: run `wg genkey` on this node"),
            );
        } else {
            keys.insert(&wg.public_key, path.clone());
        }
        if let (Some(name), Some(secrets), true) = (
            wg.private_key.as_ref().and_then(SecretField::name),
            ctx.secrets.secrets(),
            key_ok,
        ) && let Some(value) = secrets.get(name)
        {
            match super::keys::public_key(value.expose()) {
                Err(_) => out.push(
                    Diagnostic::error(
                        "wireguard-private-key",
                        format!("{path}.wireguard.private_key"),
                        format!("secret \"{name}\" is not a WireGuard private key (44 characters of base64, 32 bytes)"),
                    )
                    .help("make a key pair with `vipd wg genkey` (or `wg genkey`) and put the private key there"),
                ),
                Ok(derived) if derived != wg.public_key => out.push(
                    Diagnostic::error(
                        "wireguard-private-key",
                        format!("{path}.wireguard.private_key"),
                        format!(
                            "secret \"{name}\" is the private key of {derived}, not of this node's public_key {}",
                            wg.public_key
                        ),
                    )
                    .help("fix the public key (`vipd wg pubkey` reads the private key on stdin) or the secret"),
                ),
                Ok(_) => {}
            }
        }
        if let Some(endpoint) = &wg.endpoint
            && !is_endpoint(endpoint)
        {
            out.push(
                Diagnostic::error(
                    "wireguard-endpoint",
                    format!("{path}.wireguard.endpoint"),
                    format!("endpoint \"{endpoint}\" is not host:port"),
                )
                .help("write it like \"203.0.113.5:51820\", \"[2001:db8::5]:51820\" or \"node.example.net:51820\""),
            );
        }
    }
}

/// `host:port`, `[v6]:port` or `name:port`, as wg(8) reads an endpoint.
fn is_endpoint(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && !host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for good in [
            "198.18.0.1:51820",
            "[2001:db8::1]:51820",
            "wg.example.net:1",
        ] {
            assert!(is_endpoint(good), "{good}");
        }
        for bad in [
            "198.18.0.1",
            "198.18.0.1:0",
            "2001:db8::1:51820",
            ":51820",
            "a b:1",
        ] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn domain_names() {
        for good in ["prod.example.", "prod.example", "a", "Example.COM", "x-1.y"] {
            assert!(is_domain_name(good), "{good}");
        }
        for bad in ["", ".", "a..b", "-a.b", "a_b.c", "a b", &"a".repeat(64)] {
            assert!(!is_domain_name(bad), "{bad}");
        }
    }

    #[test]
    fn interface_names_follow_linux() {
        assert!(is_interface_name("wg99"));
        assert!(is_interface_name("enp0s31f6.100"));
        assert!(!is_interface_name("a-very-long-name0"));
        assert!(!is_interface_name("eth0:1"));
        assert!(!is_interface_name(""));
    }

    #[test]
    fn every_rule_code_is_unique() {
        let mut codes: Vec<_> = RULES.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len());
    }
}
