//! The seed's variables and inventory groups -> a cluster file and its
//! secrets, following the table in docs/config.md ("The seed's variables").
//!
//! Every variable is accounted for in the [`Report`]: used (and where it
//! went), ignored (and why), or unknown (a warning). Every value the seed
//! does not give and the importer had to pick is listed with the reason.
//! The cluster file is written as TOML text with a comment per field naming
//! the seed variable it came from, like examples/seed.toml.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::inventory::Inventory;
use crate::config::secrets::{SecretValue, Secrets};

/// Where a variable came from (for the report).
#[derive(Debug, Clone)]
pub struct Origin(pub String);

/// One parsed variables file.
#[derive(Debug)]
pub struct VarsFile {
    /// How the report names it.
    pub name: String,
    /// `ansible-vault 1.1`, `ansible-vault 1.2 (vault id bay)`, or `clear`.
    pub form: String,
    /// The top-level mapping.
    pub vars: serde_json::Map<String, Value>,
}

/// What the importer read.
#[derive(Debug)]
pub struct Sources {
    pub inventory_name: String,
    pub inventory: Inventory,
    pub vars_files: Vec<VarsFile>,
}

#[derive(Debug, Default)]
pub struct Options {
    /// `--name`; otherwise derived from the inventory's file name.
    pub cluster_name: Option<String>,
}

/// The report: nothing in it is a secret's value.
#[derive(Debug, Default)]
pub struct Report {
    /// (seed variable or group, where it went)
    pub used: Vec<(String, String)>,
    /// (field, value, why)
    pub chosen: Vec<(String, String, String)>,
    /// (variable, why)
    pub ignored: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    fn used(&mut self, var: impl Into<String>, dest: impl Into<String>) {
        self.used.push((var.into(), dest.into()));
    }
    fn chose(
        &mut self,
        field: impl Into<String>,
        value: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.chosen.push((field.into(), value.into(), why.into()));
    }
    fn ignore(&mut self, var: impl Into<String>, why: impl Into<String>) {
        self.ignored.push((var.into(), why.into()));
    }
    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
    fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = |rows: &mut dyn Iterator<Item = usize>| rows.max().unwrap_or(0).min(44);
        if !self.used.is_empty() {
            let w = width(&mut self.used.iter().map(|(v, _)| v.len()));
            let _ = writeln!(out, "used: seed variable -> cluster file");
            for (var, dest) in &self.used {
                let _ = writeln!(out, "  {var:<w$}  {dest}");
            }
        }
        if !self.chosen.is_empty() {
            let _ = writeln!(out, "chosen: values the seed does not give");
            for (field, value, why) in &self.chosen {
                let _ = writeln!(out, "  {field} = {value}\n      {why}");
            }
        }
        if !self.ignored.is_empty() {
            let w = width(&mut self.ignored.iter().map(|(v, _)| v.len()));
            let _ = writeln!(out, "ignored");
            for (var, why) in &self.ignored {
                let _ = writeln!(out, "  {var:<w$}  {why}");
            }
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }
}

/// The result: the cluster file's text (without `[cluster] vault`, which
/// the caller adds since it knows the paths) and the secrets.
#[derive(Debug)]
pub struct Imported {
    pub cluster_toml: String,
    pub secrets: Secrets,
    pub nodes: usize,
}

// ---------------------------------------------------------------------------
// Variables, merged across files with their origins.

struct Vars {
    values: BTreeMap<String, (Value, Origin)>,
    order: Vec<String>,
    consumed: BTreeSet<String>,
}

impl Vars {
    fn get(&mut self, name: &str) -> Option<(Value, Origin)> {
        let found = self.values.get(name).cloned();
        if found.is_some() {
            self.consumed.insert(name.to_owned());
        }
        found
    }
}

/// A scalar as text: YAML strings and numbers both ("51" and 51).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The seed's variables that the mapping reads, and the derived ones it
/// accounts for without reading (docs/config.md).
const DERIVED: &[(&str, &str)] = &[
    (
        "kubeadm_control_plane_endpoint",
        "derived by vipd: vip.address:api.port",
    ),
    (
        "kuber_join_control_plane_ip",
        "derived by vipd: vip.address",
    ),
    ("kuber_join_api_port", "derived by vipd: api.port"),
    (
        "kuber_join_control_plane_host",
        "derived by vipd: the VIP is the join endpoint",
    ),
];

const ROLE_GROUPS: &[(&str, &str)] = &[
    ("keepalived_hosts", "vip"),
    ("keepalived_vip_servers", "vip"),
    ("planes_all", "plane"),
    ("workers", "worker"),
];

#[derive(Debug, Clone)]
struct Peer {
    index: usize,
    name: String,
    host_group: Option<String>,
    allowed_ips: Vec<IpNet>,
    endpoint: Option<String>,
    public_key: Option<String>,
    private_key: Option<String>,
}

#[derive(Debug, Clone)]
struct Plane {
    index: usize,
    name: String,
    address: Option<IpAddr>,
    proxy_port: Option<u16>,
    apiserver_port: Option<u16>,
    priority: Option<u32>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    name: String,
    roles: BTreeSet<&'static str>,
    /// Which role groups put it there, for the comment.
    groups: Vec<String>,
    host: Option<String>,
    address: Option<IpAddr>,
    address_from: String,
    priority: Option<u32>,
    seed_priority: Option<u32>,
    peer: Option<Peer>,
    plane: Option<Plane>,
}

fn port(value: &Value) -> Option<u16> {
    scalar(value)?.parse::<u16>().ok().filter(|p| *p > 0)
}

/// Maps the sources. On errors, the report says why and nothing is returned.
pub fn map(sources: &Sources, options: &Options) -> (Option<Imported>, Report) {
    let mut report = Report::default();
    let mut vars = Vars {
        values: BTreeMap::new(),
        order: Vec::new(),
        consumed: BTreeSet::new(),
    };
    // Inventory variables first (lowest precedence), then the files in order:
    // a later file wins, as for ansible's files of one level.
    let inventory = &sources.inventory;
    for group in &inventory.groups {
        for var in &group.vars {
            let origin = Origin(format!(
                "{} [{}:vars] line {}",
                sources.inventory_name, group.name, var.line
            ));
            if !vars.values.contains_key(&var.key) {
                vars.order.push(var.key.clone());
            }
            vars.values
                .insert(var.key.clone(), (Value::String(var.value.clone()), origin));
        }
    }
    for host in &inventory.hosts {
        for var in &host.vars {
            let name = format!("{}@{}", var.key, host.name);
            if var.key.starts_with("ansible_") {
                // Read per host below (ansible_host); the rest is Ansible's own.
                if var.key != "ansible_host" {
                    report.ignore(
                        format!("{} (host {})", var.key, host.name),
                        "an Ansible connection variable",
                    );
                }
                continue;
            }
            report.warn(format!(
                "host variable {} of {} ({} line {}) is not read: seed variables live in the vars files",
                var.key, host.name, sources.inventory_name, var.line
            ));
            let _ = name;
        }
    }
    for file in &sources.vars_files {
        for (key, value) in &file.vars {
            if let Some((_, earlier)) = vars.values.get(key) {
                report.warn(format!(
                    "{key} is set in {} and again in {}: the last one wins",
                    earlier.0, file.name
                ));
            } else {
                vars.order.push(key.clone());
            }
            vars.values
                .insert(key.clone(), (value.clone(), Origin(file.name.clone())));
        }
    }

    let mut secrets = Secrets::default();
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Imported by `vipd import ansible` from {} and {}.\n# Each field names the seed variable it comes from (docs/config.md has the table).\n",
        sources.inventory_name,
        sources
            .vars_files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // -- [cluster]
    let name = match &options.cluster_name {
        Some(n) => {
            report.used("--name", format!("cluster.name = {}", toml_str(n)));
            n.clone()
        }
        None => {
            let stem = std::path::Path::new(&sources.inventory_name)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("cluster");
            let stem = stem
                .strip_prefix("hosts_")
                .or_else(|| stem.strip_prefix("hosts-"))
                .unwrap_or(stem);
            let mut n: String = stem
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            n = n.trim_matches('-').to_owned();
            if !is_dns_label(&n) || n == "hosts" || n == "inventory" {
                n = "cluster".to_owned();
            }
            report.chose(
                "cluster.name",
                toml_str(&n),
                format!(
                    "the seed has no cluster name; taken from the inventory's file name {} (--name sets another)",
                    sources.inventory_name
                ),
            );
            n
        }
    };
    let _ = writeln!(toml, "[cluster]\nname = {}", toml_str(&name));
    // The caller appends `vault = "..."` here.
    toml.push_str("#VAULT#\n");

    // -- [vip]
    let vip = vars.get("vault_keepalived_vip");
    let api_vip = vars.get("vault_k8s_api_vip");
    let parse_ip = |v: &(Value, Origin), var: &str, report: &mut Report| -> Option<IpAddr> {
        match scalar(&v.0).and_then(|s| s.parse::<IpAddr>().ok()) {
            Some(ip) => Some(ip),
            None => {
                report.error(format!("{var} ({}) is not an IP address", v.1.0));
                None
            }
        }
    };
    let vip_address = match (&vip, &api_vip) {
        (Some(a), Some(b)) => {
            let (x, y) = (
                parse_ip(a, "vault_keepalived_vip", &mut report),
                parse_ip(b, "vault_k8s_api_vip", &mut report),
            );
            if let (Some(x), Some(y)) = (x, y)
                && x != y
            {
                report.error(format!(
                    "vault_keepalived_vip ({x}) and vault_k8s_api_vip ({y}) differ: vipd has one VIP; make them agree"
                ));
            }
            if let Some(x) = x {
                report.used("vault_keepalived_vip", format!("vip.address = {x}"));
                report.used("vault_k8s_api_vip", "vip.address (the same VIP)");
            }
            x
        }
        (Some(a), None) | (None, Some(a)) => {
            let var = if vip.is_some() {
                "vault_keepalived_vip"
            } else {
                "vault_k8s_api_vip"
            };
            let x = parse_ip(a, var, &mut report);
            if let Some(x) = x {
                report.used(var, format!("vip.address = {x}"));
            }
            x
        }
        (None, None) => {
            report.error("neither vault_keepalived_vip nor vault_k8s_api_vip is set: vipd needs the VIP (vip.address)");
            None
        }
    };
    let prefix = vars.get("vault_keepalived_vip_cidr").and_then(|(v, o)| {
        let p = scalar(&v).and_then(|s| s.trim_start_matches('/').parse::<u32>().ok());
        if p.is_none() {
            report.error(format!(
                "vault_keepalived_vip_cidr ({}) is not a prefix length",
                o.0
            ));
        }
        p
    });
    let wg_interface = vars.get("vault_wg_interface").and_then(|(v, _)| scalar(&v));
    let interface = match vars.get("vault_keepalived_vip_interface") {
        Some((v, o)) => match scalar(&v) {
            Some(i) => {
                report.used(
                    "vault_keepalived_vip_interface",
                    format!("vip.interface = {}", toml_str(&i)),
                );
                Some(i)
            }
            None => {
                report.error(format!(
                    "vault_keepalived_vip_interface ({}) is not a string",
                    o.0
                ));
                None
            }
        },
        None => match &wg_interface {
            Some(i) => {
                report.chose(
                    "vip.interface",
                    toml_str(i),
                    "vault_keepalived_vip_interface is not set; the VIP goes on the WireGuard interface, as in the seed",
                );
                Some(i.clone())
            }
            None => {
                report.error("vault_keepalived_vip_interface is not set: vipd needs vip.interface");
                None
            }
        },
    };
    let vrid = match vars.get("vault_keepalived_router_id") {
        Some((v, o)) => match scalar(&v).and_then(|s| s.parse::<u32>().ok()) {
            Some(id) => {
                report.used("vault_keepalived_router_id", format!("vip.vrid = {id}"));
                Some(id)
            }
            None => {
                report.error(format!(
                    "vault_keepalived_router_id ({}) is not a number",
                    o.0
                ));
                None
            }
        },
        None => {
            report.error("vault_keepalived_router_id is not set: vipd needs vip.vrid (keepalived's virtual_router_id; it must match the running keepalived group)");
            None
        }
    };
    if let Some(p) = prefix {
        report.used("vault_keepalived_vip_cidr", format!("vip.prefix = {p}"));
    }
    let password = vars.get("vault_keepalived_password").and_then(|(v, o)| {
        let p = scalar(&v);
        if p.as_deref().is_none_or(str::is_empty) {
            report.error(format!(
                "vault_keepalived_password ({}) is empty or not a string",
                o.0
            ));
            return None;
        }
        p
    });
    let mut vip_toml = String::new();
    if let Some(a) = vip_address {
        let _ = writeln!(
            vip_toml,
            "address = {}    # vault_keepalived_vip (= vault_k8s_api_vip)",
            toml_str(&a.to_string())
        );
    }
    if let Some(p) = prefix {
        let _ = writeln!(vip_toml, "prefix = {p}    # vault_keepalived_vip_cidr");
    }
    if let Some(i) = &interface {
        let _ = writeln!(
            vip_toml,
            "interface = {}    # vault_keepalived_vip_interface",
            toml_str(i)
        );
    }
    if let Some(id) = vrid {
        let _ = writeln!(vip_toml, "vrid = {id}    # vault_keepalived_router_id");
    }
    let _ = writeln!(
        vip_toml,
        "version = 2    # keepalived's default protocol version"
    );
    report.chose(
        "vip.version",
        "2",
        "the seed's keepalived speaks VRRPv2 (its default) with PASS authentication, which only v2 has: vipd can join the running keepalived group during the migration. Once keepalived is gone, version 3 (without auth_pass) fails over in well under a second",
    );
    let _ = writeln!(
        vip_toml,
        "advert_interval = \"1s\"    # keepalived's default advert_int"
    );
    report.chose(
        "vip.advert_interval",
        "\"1s\"",
        "the seed sets no advert_int; keepalived's default is 1 s",
    );
    if let Some(mut pass) = password {
        if pass.len() > 8 {
            let mut cut = 8;
            while !pass.is_char_boundary(cut) {
                cut -= 1;
            }
            pass.truncate(cut);
            report.warn(format!(
                "vault_keepalived_password is longer than 8 bytes: VRRPv2 carries 8, and keepalived sent only the first {cut}; the vault keeps those, so vipd and keepalived still agree"
            ));
        }
        secrets.insert("vrrp_password", SecretValue::new(pass));
        report.used(
            "vault_keepalived_password",
            "vault: vrrp_password (vip.auth_pass = { secret = \"vrrp_password\" })",
        );
        let _ = writeln!(
            vip_toml,
            "auth_pass = {{ secret = \"vrrp_password\" }}    # vault_keepalived_password"
        );
    }

    // -- [api]
    let api_port = match vars.get("vault_k8s_api_port") {
        Some((v, o)) => match port(&v) {
            Some(p) => {
                report.used("vault_k8s_api_port", format!("api.port = {p}"));
                p
            }
            None => {
                report.error(format!("vault_k8s_api_port ({}) is not a port", o.0));
                6443
            }
        },
        None => {
            report.chose(
                "api.port",
                "6443",
                "vault_k8s_api_port is not set; 6443 is kubeadm's port",
            );
            6443
        }
    };
    report.chose(
        "api.datapath",
        "\"dnat\"",
        "the seed DNATs VIP:port to the planes' HAProxy ports with iptables; vipd does the same in its own nftables table, health-driven",
    );

    // -- control planes
    let planes = match vars.get("vault_k8s_control_planes") {
        Some((v, o)) => control_planes(&v, &o, &mut report),
        None => Vec::new(),
    };

    // -- WireGuard
    let wg_network = vars.get("vault_wg_network").and_then(|(v, o)| {
        let n = scalar(&v).and_then(|s| s.parse::<IpNet>().ok());
        if n.is_none() {
            report.error(format!(
                "vault_wg_network ({}) is not a network (like 198.19.0.0/24)",
                o.0
            ));
        }
        n
    });
    let wg_port = vars.get("vault_wg_listen_port").and_then(|(v, o)| {
        let p = port(&v);
        if p.is_none() {
            report.error(format!("vault_wg_listen_port ({}) is not a port", o.0));
        }
        p
    });
    let peers = match vars.get("vault_wg_peers") {
        Some((v, o)) => wg_peers(&v, &o, &mut report),
        None => Vec::new(),
    };
    let mesh = match (&wg_interface, wg_network) {
        (Some(i), Some(n)) => Some((i.clone(), n)),
        (None, None) if peers.is_empty() => None,
        _ => {
            report.error("the WireGuard mesh needs both vault_wg_interface and vault_wg_network");
            None
        }
    };
    if wg_interface.is_some() {
        vars.consumed.insert("vault_wg_interface".to_owned());
    }

    // -- inventory groups -> roles
    let mut host_roles: Vec<(String, BTreeSet<&'static str>, Vec<String>)> = Vec::new();
    for (group, role) in ROLE_GROUPS {
        let Some(found) = inventory.group(group) else {
            continue;
        };
        let hosts = inventory.hosts_of(&found.name);
        if hosts.is_empty() {
            report.warn(format!("inventory group [{group}] holds no host"));
        }
        for host in hosts {
            match host_roles.iter_mut().find(|(h, _, _)| *h == host) {
                Some((_, roles, groups)) => {
                    roles.insert(role);
                    groups.push((*group).to_owned());
                }
                None => host_roles.push((host, BTreeSet::from([*role]), vec![(*group).to_owned()])),
            }
        }
    }
    let vip_groups: Vec<&str> = ["keepalived_hosts", "keepalived_vip_servers"]
        .into_iter()
        .filter(|g| inventory.group(g).is_some())
        .collect();
    if vip_groups.is_empty() {
        report.error(format!(
            "{}: no inventory group keepalived_hosts or keepalived_vip_servers: the mapping needs one to know which nodes hold the VIP (role \"vip\")",
            sources.inventory_name
        ));
    }
    if inventory.group("planes_all").is_none() {
        report.error(format!(
            "{}: no inventory group planes_all: the mapping needs it to know the control planes (role \"plane\")",
            sources.inventory_name
        ));
    }
    if inventory.group("workers").is_none() {
        report.warn(format!(
            "{}: no inventory group workers: the cluster file gets no worker",
            sources.inventory_name
        ));
    }
    for (group, role) in ROLE_GROUPS {
        if let Some(g) = inventory.group(group) {
            report.used(format!("[{}]", g.name), format!("role \"{role}\""));
        }
    }

    // -- peers -> inventory hosts
    let mut host_peer: BTreeMap<String, usize> = BTreeMap::new();
    for (i, peer) in peers.iter().enumerate() {
        let at = format!("vault_wg_peers[{}] ({})", peer.index, peer.name);
        let Some(group) = &peer.host_group else {
            // No host group: a peer named like an inventory host or group.
            let hosts = inventory.hosts_of(&peer.name);
            if hosts.len() == 1 {
                host_peer.insert(hosts[0].clone(), i);
            } else if inventory.host(&peer.name).is_some() {
                host_peer.insert(peer.name.clone(), i);
            }
            continue;
        };
        let hosts = if inventory.group(group).is_some() {
            inventory.hosts_of(group)
        } else if inventory.host(group).is_some() {
            vec![group.clone()]
        } else {
            report.error(format!(
                "{at}: host_group \"{group}\" is not an inventory group or host: the mapping needs it to find the peer's host and roles"
            ));
            continue;
        };
        match hosts.as_slice() {
            [one] => {
                if let Some(&other) = host_peer.get(one) {
                    report.error(format!(
                        "{at} and vault_wg_peers[{}] ({}) both name host {one}",
                        peers[other].index, peers[other].name
                    ));
                } else {
                    host_peer.insert(one.clone(), i);
                }
            }
            [] => report.error(format!("{at}: inventory group [{group}] holds no host")),
            many => report.error(format!(
                "{at}: inventory group [{group}] holds {} hosts ({}); a peer is one machine",
                many.len(),
                many.join(", ")
            )),
        }
    }

    // -- nodes
    let mut nodes: Vec<Node> = Vec::new();
    for (host, roles, groups) in &host_roles {
        let inv_host = inventory.host(host);
        let ansible_host = inv_host.and_then(|h| {
            h.vars
                .iter()
                .rev()
                .find(|v| v.key == "ansible_host")
                .map(|v| v.value.clone())
        });
        let mut node = Node {
            roles: roles.clone(),
            groups: groups.clone(),
            host: Some(ansible_host.clone().unwrap_or_else(|| host.clone())),
            ..Node::default()
        };
        if let Some(&i) = host_peer.get(host) {
            node.name = peers[i].name.clone();
            node.peer = Some(peers[i].clone());
        } else {
            // A host group of one host names it (bay_plane1 -> bay-plane1), else the host name.
            let own: Vec<&str> = inventory
                .groups_holding(host)
                .into_iter()
                .filter(|g| {
                    inventory.hosts_of(g).len() == 1 && !ROLE_GROUPS.iter().any(|(r, _)| r == g)
                })
                .collect();
            let from_group = own
                .first()
                .map(|g| g.to_ascii_lowercase().replace('_', "-"));
            let candidate = from_group.clone().filter(|n| is_dns_label(n)).or_else(|| {
                Some(host.to_ascii_lowercase())
                    .filter(|n| is_dns_label(n) && host.parse::<IpAddr>().is_err())
            });
            match candidate {
                Some(n) => {
                    report.chose(
                        format!("nodes[{n}].name"),
                        toml_str(&n),
                        format!("inventory host {host} has no WireGuard peer entry to name it; named after {}", if from_group.is_some() { "its own inventory group" } else { "its inventory name" }),
                    );
                    node.name = n;
                }
                None => {
                    report.error(format!(
                        "inventory host {host}: no vault_wg_peers entry names it (host_group) and neither it nor a group of its own is a DNS name to call the node"
                    ));
                    continue;
                }
            }
        }
        if nodes.iter().any(|n| n.name == node.name) {
            report.error(format!("two inventory hosts become node {}", node.name));
            continue;
        }
        nodes.push(node);
    }
    for peer in &peers {
        let claimed = nodes
            .iter()
            .any(|n| n.peer.as_ref().is_some_and(|p| p.name == peer.name));
        if !claimed && !planes.iter().any(|p| p.name == peer.name) {
            report.ignore(
                format!("vault_wg_peers[{}] ({})", peer.index, peer.name),
                "its host is in none of the role groups (keepalived_hosts, keepalived_vip_servers, planes_all, workers): not a vipd node, so not in the mesh vipd describes; its key stays out of the vault",
            );
        }
    }
    for plane in &planes {
        match nodes.iter_mut().find(|n| n.name == plane.name) {
            Some(node) => {
                if !node.roles.contains("plane") {
                    report.warn(format!(
                        "vault_k8s_control_planes[{}] ({}) is not in [planes_all]; it is made a plane all the same",
                        plane.index, plane.name
                    ));
                    node.roles.insert("plane");
                }
                node.plane = Some(plane.clone());
            }
            None => {
                let peer = peers.iter().find(|p| p.name == plane.name).cloned();
                report.warn(format!(
                    "vault_k8s_control_planes[{}] ({}) is in no inventory role group; it is added as a plane",
                    plane.index, plane.name
                ));
                nodes.push(Node {
                    name: plane.name.clone(),
                    roles: BTreeSet::from(["plane"]),
                    peer,
                    plane: Some(plane.clone()),
                    ..Node::default()
                });
            }
        }
    }
    // Order: as the WireGuard peers list them (the seed's own order), then the rest.
    nodes.sort_by_key(|n| n.peer.as_ref().map_or(usize::MAX, |p| p.index));
    for node in nodes
        .iter()
        .filter(|n| n.roles.contains("plane") && n.plane.is_none())
    {
        report.warn(format!(
            "node {} is in [planes_all] but not in vault_k8s_control_planes: it gets the cluster-wide ports",
            node.name
        ));
    }

    // Addresses.
    for node in &mut nodes {
        let host_route = node.peer.as_ref().and_then(|p| {
            p.allowed_ips
                .iter()
                .find(|n| n.prefix_len() == n.max_prefix_len())
                .map(IpNet::addr)
        });
        let plane_ip = node.plane.as_ref().and_then(|p| p.address);
        match (plane_ip, host_route) {
            (Some(a), Some(b)) if a != b => report.error(format!(
                "node {}: vault_k8s_control_planes gives wireguard_ip {a} but its WireGuard peer's allowed_ips say {b}",
                node.name
            )),
            (Some(a), _) => {
                node.address = Some(a);
                node.address_from = format!("vault_k8s_control_planes[{}].wireguard_ip", node.plane.as_ref().map_or(0, |p| p.index));
            }
            (None, Some(b)) => {
                node.address = Some(b);
                node.address_from = format!("vault_wg_peers[{}].allowed_ips", node.peer.as_ref().map_or(0, |p| p.index));
            }
            (None, None) => {
                let inventory_ip = node.host.as_deref().and_then(|h| h.parse::<IpAddr>().ok());
                match inventory_ip {
                    Some(ip) if mesh.is_none() => {
                        node.address = Some(ip);
                        node.address_from = "its inventory address".to_owned();
                        report.chose(
                            format!("nodes[{}].address", node.name),
                            toml_str(&ip.to_string()),
                            "no mesh address in the seed: the inventory address",
                        );
                    }
                    _ => report.error(format!(
                        "node {}: no address: it has no vault_k8s_control_planes wireguard_ip and no WireGuard peer with a /32 in allowed_ips",
                        node.name
                    )),
                }
            }
        }
    }

    // Priorities of the holders.
    priorities(&mut nodes, &mut report);

    // Ports of the planes.
    type Ports = (Option<u16>, Option<u16>);
    let plane_ports: Vec<Ports> = nodes
        .iter()
        .filter_map(|n| n.plane.as_ref().map(|p| (p.proxy_port, p.apiserver_port)))
        .collect();
    let uniform = |pick: fn(&Ports) -> Option<u16>| -> Option<Option<u16>> {
        let first = plane_ports.first().map(pick)?;
        plane_ports
            .iter()
            .all(|p| pick(p) == first)
            .then_some(first)
    };
    let cluster_proxy = uniform(|p| p.0);
    let cluster_api = uniform(|p| p.1);

    // WireGuard checks and secrets.
    if let Some((_, network)) = &mesh {
        for node in &nodes {
            let Some(peer) = &node.peer else {
                report.error(format!(
                    "node {}: no vault_wg_peers entry, but the cluster runs over WireGuard",
                    node.name
                ));
                continue;
            };
            if peer.public_key.is_none() {
                report.error(format!(
                    "vault_wg_peers[{}] ({}) has no public_key",
                    peer.index, peer.name
                ));
            }
            if let Some(a) = node.address
                && !network.contains(&a)
            {
                report.error(format!(
                    "node {}: address {a} is outside vault_wg_network {network}",
                    node.name
                ));
            }
        }
    }
    for node in &nodes {
        if let Some(peer) = &node.peer
            && let Some(key) = &peer.private_key
        {
            let secret = format!("wg_{}", node.name.replace('-', "_"));
            secrets.insert(&secret, SecretValue::new(key.clone()));
        }
    }

    // -- DNS records
    let mut vip_name: Option<String> = None;
    let mut zone: Option<String> = None;
    if let Some((v, o)) = vars.get("vault_dns_records") {
        match v.as_array() {
            Some(records) => {
                for (index, record) in records.iter().enumerate() {
                    let at = format!("vault_dns_records[{index}]");
                    let Some(map) = record.as_object() else {
                        report.error(format!("{at} ({}) is not a mapping", o.0));
                        continue;
                    };
                    for key in map.keys() {
                        if !["type", "name", "ip", "ttl"].contains(&key.as_str()) {
                            report.warn(format!(
                                "{at}.{key}: not a field the seed's DNS records have; ignored"
                            ));
                        }
                    }
                    let kind = map
                        .get("type")
                        .and_then(scalar)
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let name = map.get("name").and_then(scalar).unwrap_or_default();
                    let ip = map
                        .get("ip")
                        .and_then(scalar)
                        .and_then(|s| s.parse::<IpAddr>().ok());
                    let label = name.split('.').next().unwrap_or("").to_owned();
                    let rest = name
                        .split_once('.')
                        .map(|(_, r)| r.to_owned())
                        .filter(|r| !r.is_empty());
                    if kind != "A" && kind != "AAAA" {
                        report.ignore(format!("{at} ({kind} {name})"), "only the A/AAAA records of the VIP and the nodes map to the cluster file");
                        continue;
                    }
                    if ip.is_some() && ip == vip_address {
                        if !is_dns_label(&label) {
                            report.error(format!(
                                "{at}: the VIP's name \"{name}\" does not start with a DNS label"
                            ));
                            continue;
                        }
                        report.used(
                            format!("{at} ({kind} {name})"),
                            format!("dns.vip_name = {}", toml_str(&label)),
                        );
                        vip_name = Some(label);
                        if let Some(r) = rest {
                            let z = if r.ends_with('.') { r } else { format!("{r}.") };
                            report.used(
                                format!("{at} ({kind} {name})"),
                                format!("dns.zone = {}", toml_str(&z)),
                            );
                            zone = Some(z);
                        }
                    } else if let Some(node) = nodes.iter().find(|n| n.name == label) {
                        if ip.is_some() && ip == node.address {
                            report.used(
                                format!("{at} ({kind} {name})"),
                                format!("derived: node {} and its address", node.name),
                            );
                        } else {
                            report.warn(format!(
                                "{at}: {name} -> {} but node {} has address {}: vipd publishes the node's address",
                                ip.map_or("?".to_owned(), |i| i.to_string()),
                                node.name,
                                node.address.map_or("?".to_owned(), |a| a.to_string())
                            ));
                        }
                    } else {
                        report.ignore(format!("{at} ({kind} {name})"), "names neither the VIP nor a node: vipd does not publish it; keep it in your DNS");
                    }
                }
            }
            None => report.error(format!("vault_dns_records ({}) is not a list", o.0)),
        }
    }

    // -- everything else
    for key in vars.order.clone() {
        if vars.consumed.contains(&key) {
            continue;
        }
        let origin = vars
            .values
            .get(&key)
            .map(|(_, o)| o.0.clone())
            .unwrap_or_default();
        if let Some((_, why)) = DERIVED.iter().find(|(k, _)| *k == key) {
            vars.consumed.insert(key.clone());
            report.ignore(format!("{key} ({origin})"), *why);
        } else if key.starts_with("ansible_") {
            report.ignore(
                format!("{key} ({origin})"),
                "an Ansible connection variable",
            );
        } else {
            report.warn(format!(
                "{key} ({origin}) is not a seed variable vipd knows (docs/config.md, \"The seed's variables\"): ignored; carry it over by hand if it matters"
            ));
        }
    }

    if !report.errors.is_empty() {
        return (None, report);
    }

    // -- the text
    let _ = writeln!(toml, "\n[vip]\n{vip_toml}");
    let _ = writeln!(
        toml,
        "[api]\nport = {api_port}    # vault_k8s_api_port\ndatapath = \"dnat\"    # the seed's iptables DNAT to the planes' HAProxy\n"
    );
    let mut plane_toml = String::new();
    if let Some(Some(p)) = cluster_proxy {
        let _ = writeln!(
            plane_toml,
            "proxy_port = {p}    # vault_k8s_control_planes[*].backend_port"
        );
        report.used(
            "vault_k8s_control_planes[*].backend_port",
            format!("plane.proxy_port = {p}"),
        );
    }
    if let Some(Some(p)) = cluster_api {
        let _ = writeln!(
            plane_toml,
            "apiserver_port = {p}    # vault_k8s_control_planes[*].api_port"
        );
        report.used(
            "vault_k8s_control_planes[*].api_port",
            format!("plane.apiserver_port = {p}"),
        );
    }
    let _ = writeln!(toml, "[plane]\n{plane_toml}");
    let _ = writeln!(
        toml,
        "[plane.health]\nca_file = \"/etc/kubernetes/pki/ca.crt\"    # kubeadm's cluster CA\n"
    );
    report.chose(
        "plane.health",
        "https /readyz, ca_file = \"/etc/kubernetes/pki/ca.crt\"",
        "the seed's keepalived only checked that ports were open; vipd asks each kube-apiserver /readyz over TLS, verified against kubeadm's cluster CA",
    );
    if let Some((interface, network)) = &mesh {
        let _ = writeln!(
            toml,
            "[mesh]\ninterface = {}    # vault_wg_interface\nnetwork = {}    # vault_wg_network",
            toml_str(interface),
            toml_str(&network.to_string())
        );
        report.used(
            "vault_wg_interface",
            format!("mesh.interface = {}", toml_str(interface)),
        );
        report.used(
            "vault_wg_network",
            format!("mesh.network = {}", toml_str(&network.to_string())),
        );
        if let Some(p) = wg_port {
            let _ = writeln!(toml, "listen_port = {p}    # vault_wg_listen_port");
            report.used("vault_wg_listen_port", format!("mesh.listen_port = {p}"));
        }
        toml.push('\n');
    } else if let Some(p) = wg_port {
        report.ignore(
            "vault_wg_listen_port",
            format!("{p}: no WireGuard mesh in the seed variables"),
        );
    }
    let mut dns_toml = String::new();
    if let Some(z) = &zone {
        let _ = writeln!(dns_toml, "zone = {}", toml_str(z));
    }
    match &vip_name {
        Some(n) => {
            let _ = writeln!(
                dns_toml,
                "vip_name = {}    # vault_dns_records: the VIP's A record",
                toml_str(n)
            );
        }
        None => report.chose(
            "dns.vip_name",
            "\"k8s-api\"",
            "no record of vault_dns_records names the VIP; vipd's default",
        ),
    }
    if !dns_toml.is_empty() {
        let _ = writeln!(toml, "[dns]\n{dns_toml}");
    }
    for node in &nodes {
        let roles: Vec<String> = ["vip", "plane", "worker"]
            .iter()
            .filter(|r| node.roles.contains(*r))
            .map(|r| toml_str(r))
            .collect();
        let mut comment = Vec::new();
        if !node.groups.is_empty() {
            comment.push(format!("inventory group(s) {}", node.groups.join(", ")));
        }
        if let Some(p) = &node.plane {
            comment.push(format!("vault_k8s_control_planes[{}]", p.index));
        }
        if let Some(p) = &node.peer {
            comment.push(format!("vault_wg_peers[{}]", p.index));
        }
        let _ = writeln!(toml, "# {}\n[[nodes]]", comment.join("; "));
        let _ = writeln!(toml, "name = {}", toml_str(&node.name));
        let _ = writeln!(toml, "roles = [{}]", roles.join(", "));
        if let Some(a) = node.address {
            let _ = writeln!(
                toml,
                "address = {}    # {}",
                toml_str(&a.to_string()),
                node.address_from
            );
        }
        if let Some(p) = node.priority {
            let _ = writeln!(toml, "priority = {p}");
        }
        if let Some(h) = &node.host {
            let _ = writeln!(toml, "host = {}    # the inventory address", toml_str(h));
        }
        let mut overrides = Vec::new();
        if let Some(plane) = &node.plane {
            if cluster_proxy.is_none()
                && let Some(p) = plane.proxy_port
            {
                overrides.push(format!("proxy_port = {p}"));
                report.used(
                    format!("vault_k8s_control_planes[{}].backend_port", plane.index),
                    format!("nodes[{}].plane.proxy_port = {p}", node.name),
                );
            }
            if cluster_api.is_none()
                && let Some(p) = plane.apiserver_port
            {
                overrides.push(format!("apiserver_port = {p}"));
                report.used(
                    format!("vault_k8s_control_planes[{}].api_port", plane.index),
                    format!("nodes[{}].plane.apiserver_port = {p}", node.name),
                );
            }
            report.used(
                format!("vault_k8s_control_planes[{}].name", plane.index),
                format!("nodes[{}] (role plane)", node.name),
            );
            if plane.address.is_some() {
                report.used(
                    format!("vault_k8s_control_planes[{}].wireguard_ip", plane.index),
                    format!("nodes[{}].address", node.name),
                );
            }
        }
        if !overrides.is_empty() {
            let _ = writeln!(toml, "plane = {{ {} }}", overrides.join(", "));
        }
        if mesh.is_some()
            && let Some(peer) = &node.peer
        {
            let at = format!("vault_wg_peers[{}]", peer.index);
            report.used(format!("{at}.name"), format!("nodes[{}].name", node.name));
            if let Some(g) = &peer.host_group {
                report.used(
                    format!("{at}.host_group"),
                    format!("nodes[{}]: inventory group [{g}] (roles, host)", node.name),
                );
            }
            let mut parts = Vec::new();
            if let Some(k) = &peer.public_key {
                parts.push(format!("public_key = {}", toml_str(k)));
                report.used(
                    format!("{at}.public_key"),
                    format!("nodes[{}].wireguard.public_key", node.name),
                );
            }
            if let Some(e) = &peer.endpoint {
                parts.push(format!("endpoint = {}", toml_str(e)));
                report.used(
                    format!("{at}.endpoint"),
                    format!("nodes[{}].wireguard.endpoint", node.name),
                );
            }
            if peer.private_key.is_some() {
                let secret = format!("wg_{}", node.name.replace('-', "_"));
                parts.push(format!(
                    "private_key = {{ secret = {} }}",
                    toml_str(&secret)
                ));
                report.used(
                    format!("{at}.private_key"),
                    format!(
                        "vault: {secret} (nodes[{}].wireguard.private_key)",
                        node.name
                    ),
                );
            } else {
                report.warn(format!(
                    "{at} ({}) has no private_key: the node brings its own",
                    peer.name
                ));
            }
            let extra: Vec<String> = peer
                .allowed_ips
                .iter()
                .filter(|n| Some(n.addr()) != node.address || n.prefix_len() != n.max_prefix_len())
                .map(|n| toml_str(&n.to_string()))
                .collect();
            report.used(
                format!("{at}.allowed_ips"),
                if extra.is_empty() {
                    format!(
                        "nodes[{}].address (its own host route is implied)",
                        node.name
                    )
                } else {
                    format!(
                        "nodes[{}].address + nodes[{}].wireguard.allowed_ips",
                        node.name, node.name
                    )
                },
            );
            if !extra.is_empty() {
                parts.push(format!("allowed_ips = [{}]", extra.join(", ")));
            }
            let _ = writeln!(toml, "wireguard = {{ {} }}", parts.join(", "));
        }
        toml.push('\n');
    }
    if !peers.is_empty() {
        report.used(
            "vault_wg_peers",
            "the nodes' [nodes.wireguard] entries: every node derives its peers from the node list",
        );
    }
    let count = nodes.len();
    (
        Some(Imported {
            cluster_toml: toml,
            secrets,
            nodes: count,
        }),
        report,
    )
}

/// `vault_k8s_control_planes`: one entry per plane.
fn control_planes(v: &Value, o: &Origin, report: &mut Report) -> Vec<Plane> {
    let mut planes: Vec<Plane> = Vec::new();
    match v.as_array() {
        Some(items) => {
            for (index, item) in items.iter().enumerate() {
                let at = format!("vault_k8s_control_planes[{index}]");
                let Some(map) = item.as_object() else {
                    report.error(format!("{at} ({}) is not a mapping", o.0));
                    continue;
                };
                let Some(name) = map.get("name").and_then(scalar) else {
                    report.error(format!("{at} has no name"));
                    continue;
                };
                let mut plane = Plane {
                    index,
                    name: name.clone(),
                    address: None,
                    proxy_port: None,
                    apiserver_port: None,
                    priority: None,
                };
                for (key, value) in map {
                    match key.as_str() {
                        "name" => {}
                        "wireguard_ip" => match scalar(value).and_then(|s| s.parse().ok()) {
                            Some(ip) => plane.address = Some(ip),
                            None => report.error(format!("{at}.wireguard_ip is not an IP address")),
                        },
                        "backend_port" => match port(value) {
                            Some(p) => plane.proxy_port = Some(p),
                            None => report.error(format!("{at}.backend_port is not a port")),
                        },
                        "api_port" => match port(value) {
                            Some(p) => plane.apiserver_port = Some(p),
                            None => report.error(format!("{at}.api_port is not a port")),
                        },
                        "priority" => match scalar(value).and_then(|s| s.parse().ok()) {
                            Some(p) => plane.priority = Some(p),
                            None => report.error(format!("{at}.priority is not a number")),
                        },
                        other => report.warn(format!(
                            "{at}.{other}: not a field the seed's control-plane entries have; ignored"
                        )),
                    }
                }
                if planes.iter().any(|p| p.name == name) {
                    report.error(format!("{at}: a second control plane named {name}"));
                    continue;
                }
                planes.push(plane);
            }
        }
        None => report.error(format!("vault_k8s_control_planes ({}) is not a list", o.0)),
    }
    planes
}

/// `vault_wg_peers`: one entry per machine of the mesh.
fn wg_peers(v: &Value, o: &Origin, report: &mut Report) -> Vec<Peer> {
    let mut peers: Vec<Peer> = Vec::new();
    match v.as_array() {
        Some(items) => {
            for (index, item) in items.iter().enumerate() {
                let at = format!("vault_wg_peers[{index}]");
                let Some(map) = item.as_object() else {
                    report.error(format!("{at} ({}) is not a mapping", o.0));
                    continue;
                };
                let Some(name) = map.get("name").and_then(scalar) else {
                    report.error(format!("{at} has no name"));
                    continue;
                };
                let mut peer = Peer {
                    index,
                    name,
                    host_group: None,
                    allowed_ips: Vec::new(),
                    endpoint: None,
                    public_key: None,
                    private_key: None,
                };
                for (key, value) in map {
                    match key.as_str() {
                        "name" => {}
                        "host_group" => peer.host_group = scalar(value),
                        "allowed_ips" => {
                            let text = match value {
                                Value::Array(list) => {
                                    list.iter().filter_map(scalar).collect::<Vec<_>>().join(",")
                                }
                                other => scalar(other).unwrap_or_default(),
                            };
                            for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                                match part
                                    .parse::<IpNet>()
                                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                                {
                                    Ok(net) => peer.allowed_ips.push(net),
                                    Err(_) => report.error(format!(
                                        "{at}.allowed_ips: \"{part}\" is not a network"
                                    )),
                                }
                            }
                        }
                        "endpoint" => peer.endpoint = scalar(value).filter(|s| !s.is_empty()),
                        "public_key" => peer.public_key = scalar(value),
                        "private_key" => peer.private_key = scalar(value).filter(|s| !s.is_empty()),
                        other => report.warn(format!(
                            "{at}.{other}: not a field the seed's WireGuard peers have; ignored"
                        )),
                    }
                }
                if peers.iter().any(|p| p.name == peer.name) {
                    report.error(format!("{at}: a second peer named {}", peer.name));
                    continue;
                }
                peers.push(peer);
            }
        }
        None => report.error(format!("vault_wg_peers ({}) is not a list", o.0)),
    }
    peers
}

/// The VRRP priorities of the VIP holders: the seed's when each holder has
/// its own, else a ladder (reported as a choice).
fn priorities(nodes: &mut [Node], report: &mut Report) {
    let holders: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].roles.contains("vip"))
        .collect();
    for &i in &holders {
        nodes[i].seed_priority = nodes[i].plane.as_ref().and_then(|p| p.priority);
    }
    for node in nodes.iter().filter(|n| !n.roles.contains("vip")) {
        if let Some(p) = node.plane.as_ref().and_then(|p| p.priority) {
            report.ignore(
                format!(
                    "vault_k8s_control_planes[{}].priority ({})",
                    node.plane.as_ref().map_or(0, |p| p.index),
                    node.name
                ),
                format!(
                    "{p}: {} does not hold the VIP, so it has no VRRP priority",
                    node.name
                ),
            );
        }
    }
    let seeded: Vec<u32> = holders
        .iter()
        .filter_map(|&i| nodes[i].seed_priority)
        .collect();
    let distinct: BTreeSet<u32> = seeded.iter().copied().collect();
    let keep = seeded.len() == holders.len()
        && distinct.len() == seeded.len()
        && seeded.iter().all(|p| (1..=254).contains(p));
    if keep {
        for &i in &holders {
            nodes[i].priority = nodes[i].seed_priority;
            report.used(
                format!(
                    "vault_k8s_control_planes[{}].priority",
                    nodes[i].plane.as_ref().map_or(0, |p| p.index)
                ),
                format!(
                    "nodes[{}].priority = {}",
                    nodes[i].name,
                    nodes[i].priority.unwrap_or(0)
                ),
            );
        }
    } else if !holders.is_empty() {
        // The seed's keepalived hosts held the VIP first: they stay first.
        let mut order = holders.clone();
        order.sort_by_key(|&i| {
            let first = nodes[i].groups.iter().any(|g| g == "keepalived_hosts");
            (
                !first,
                std::cmp::Reverse(nodes[i].seed_priority.unwrap_or(0)),
                i,
            )
        });
        let why_base = {
            let missing: Vec<&str> = holders
                .iter()
                .filter(|&&i| nodes[i].seed_priority.is_none())
                .map(|&i| nodes[i].name.as_str())
                .collect();
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!(
                    "the seed gives no priority to {}",
                    missing.join(", ")
                ));
            }
            if distinct.len() < seeded.len() {
                parts.push("the seed's control-plane priorities tie".to_owned());
            }
            if seeded.iter().any(|p| !(1..=254).contains(p)) {
                parts.push("a seed priority is outside 1..=254".to_owned());
            }
            format!(
                "{}, and vipd wants one priority per holder. A ladder from 150 down: the [keepalived_hosts] first (they held the VIP in the seed), then by seed priority, then in the seed's order",
                parts.join(" and ")
            )
        };
        // Distinct values for any number of holders: steps of 10 while they fit.
        let step = (140 / u32::try_from(order.len()).unwrap_or(140)).clamp(1, 10);
        let mut ladder = Vec::new();
        for (rank, &i) in order.iter().enumerate() {
            let value = 150u32
                .saturating_sub(step * u32::try_from(rank).unwrap_or(149))
                .max(1);
            nodes[i].priority = Some(value);
            let seed = match nodes[i].seed_priority {
                Some(p) => format!(" (seed {p})"),
                None => String::new(),
            };
            ladder.push(format!("{} {value}{seed}", nodes[i].name));
            if let Some(plane) = &nodes[i].plane
                && plane.priority.is_some()
            {
                report.used(
                    format!("vault_k8s_control_planes[{}].priority", plane.index),
                    format!("nodes[{}].priority: ranked by it", nodes[i].name),
                );
            }
        }
        report.chose("nodes[*].priority", ladder.join(", "), why_base);
    }
}
