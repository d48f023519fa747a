//! WireGuard: a node's wg-quick file (the keys are in [`crate::config::keys`]).

use std::fmt::Write as _;

use ipnet::IpNet;

use super::RenderError;
use crate::config::NodePlan;
use crate::config::keys::public_key;
use crate::config::secrets::SecretValue;
use crate::config::spec::{ClusterSpec, NodeSpec, Role};

/// The keepalive a node without an endpoint (behind NAT) sends to the peers
/// it reaches, so its NAT mapping stays open: wg(8)'s suggested 25 s.
pub const NAT_KEEPALIVE_SECS: u32 = 25;

/// How the `PrivateKey` line is written.
#[derive(Debug, Clone, Copy)]
pub enum PrivateKey<'a> {
    /// A placeholder naming the secret: the file is not usable as it is,
    /// but shows everything else without revealing the key.
    Hidden,
    /// The key itself (`--show-secrets`, or a 0600 file with `-o`).
    Shown(&'a SecretValue),
}

/// The VIP holder that carries the VIP while it is up: the highest
/// priority, the higher address on a tie (RFC 5798 §6.4.3). None without holders.
pub fn preferred_holder(spec: &ClusterSpec) -> Option<&NodeSpec> {
    spec.nodes_with(Role::Vip)
        .max_by_key(|n| (n.priority.unwrap_or(0), n.address))
}

/// The wg-quick file of `plan`'s node. `private_key` says whether the key is
/// written; when it is, it must be the key of the node's `public_key`.
pub fn render(
    spec: &ClusterSpec,
    plan: &NodePlan,
    private_key: PrivateKey<'_>,
) -> Result<String, RenderError> {
    let Some(wg) = &plan.wireguard else {
        return Err(RenderError(format!(
            "the cluster file has no [mesh] section, so node \"{}\" has no WireGuard interface: add [mesh] with the interface and network",
            plan.node
        )));
    };
    let node = spec
        .node(&plan.node)
        .ok_or_else(|| RenderError(format!("no node \"{}\"", plan.node)))?;
    let own = node.wireguard.as_ref().ok_or_else(|| {
        RenderError(format!(
            "node \"{}\" has no [nodes.wireguard] entry: add its public_key and private_key = {{ secret = \"...\" }}",
            plan.node
        ))
    })?;
    let Some(secret) = &wg.private_key_secret else {
        return Err(RenderError(format!(
            "node \"{}\" names no private key: add private_key = {{ secret = \"NAME\" }} to its [nodes.wireguard] and the key to the secrets file",
            plan.node
        )));
    };
    let private_line = match private_key {
        PrivateKey::Hidden => format!("<secret {secret}: use --show-secrets or -o>"),
        PrivateKey::Shown(value) => {
            let derived = public_key(value.expose()).map_err(|_| {
                RenderError(format!(
                    "the secret \"{secret}\" is not a WireGuard private key (44 characters of base64): make one with `vipd wg genkey`"
                ))
            })?;
            if derived != own.public_key {
                return Err(RenderError(format!(
                    "the secret \"{secret}\" is not the private key of node \"{}\": its public key is {derived}, the cluster file says {}; fix one of them (`vipd wg pubkey` prints a key's public key)",
                    plan.node, own.public_key
                )));
            }
            value.expose().trim().to_owned()
        }
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# WireGuard interface {} of node {} (cluster {}), made by `vipd render wireguard`.",
        wg.interface, plan.node, plan.cluster
    );
    let _ = writeln!(
        out,
        "# Install as /etc/wireguard/{}.conf (mode 0600), then `wg-quick up {}`.",
        wg.interface, wg.interface
    );
    out.push_str("[Interface]\n");
    let _ = writeln!(out, "Address = {}", wg.address);
    let _ = writeln!(out, "ListenPort = {}", wg.listen_port);
    let _ = writeln!(out, "PrivateKey = {private_line}");

    let vip_route = vip_route(spec, plan);
    let behind_nat = own.endpoint.is_none();
    for peer in &wg.peers {
        let peer_node = spec.node(&peer.node);
        out.push('\n');
        let roles = peer_node
            .map(|n| {
                let mut roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
                roles.dedup();
                let mut text = roles.join(", ");
                if let (true, Some(p)) = (n.has_role(Role::Vip), n.priority) {
                    let _ = write!(text, ", priority {p}");
                }
                text
            })
            .unwrap_or_default();
        let _ = writeln!(out, "# {} ({roles})", peer.node);
        let mut allowed: Vec<IpNet> = peer.allowed_ips.clone();
        if let Some((holder, vip)) = &vip_route
            && *holder == peer.node
        {
            out.push_str(&vip_comment(spec, holder, vip));
            if !allowed.contains(vip) {
                allowed.push(*vip);
            }
        }
        out.push_str("[Peer]\n");
        let _ = writeln!(out, "PublicKey = {}", peer.public_key);
        match &peer.endpoint {
            Some(endpoint) => {
                let _ = writeln!(out, "Endpoint = {endpoint}");
            }
            None if behind_nat => out
                .push_str("# Neither side has an endpoint: no handshake can start between them.\n"),
            None => out.push_str("# No endpoint: it connects to this node.\n"),
        }
        let allowed: Vec<String> = allowed.iter().map(IpNet::to_string).collect();
        let _ = writeln!(out, "AllowedIPs = {}", allowed.join(", "));
        if behind_nat && peer.endpoint.is_some() {
            let _ = writeln!(
                out,
                "PersistentKeepalive = {NAT_KEEPALIVE_SECS}  # this node has no endpoint (NAT): keep its mapping open"
            );
        }
    }
    Ok(out)
}

/// What the VIP's entry above `holder`'s peer means for this node.
fn vip_comment(spec: &ClusterSpec, holder: &str, vip: &IpNet) -> String {
    let vip = vip.addr();
    if !spec.mesh_follows() {
        return format!(
            "# The VIP {vip} is routed to {holder}, the preferred holder (the highest\n\
             # priority): WireGuard routes an address to one peer only, and with\n\
             # mesh.follow = false nothing moves this entry. After a failover this node\n\
             # still sends the VIP's traffic to {holder}: it reaches the API through the\n\
             # VIP only once {holder} is back. With mesh.follow = true, vipd on every node\n\
             # moves the entry to the master.\n"
        );
    }
    // Where a node without vipd still finds the API after a failover.
    let instead = match spec.nodes_with(Role::Plane).next() {
        Some(plane) => {
            let proxy =
                std::net::SocketAddr::new(plane.address, spec.plane_ports(plane).proxy_port.get());
            format!(
                "# back; such a node should use a plane's proxy instead of the VIP\n\
                 # ({proxy}, which forwards to every healthy apiserver).\n"
            )
        }
        None => "# back; such a node should use a plane's proxy instead of the VIP.\n".to_owned(),
    };
    format!(
        "# The VIP {vip} starts on {holder}, the preferred holder (the highest\n\
         # priority): WireGuard routes an address to one peer only. vipd on this\n\
         # node moves the entry to the current VRRP master's peer on every failover.\n\
         # A node that cannot run vipd (an admin laptop) keeps it on {holder}, so\n\
         # after a failover it reaches the API through the VIP only once {holder} is\n\
         {instead}"
    )
}

/// When the VIP lives on the mesh interface: the peer that gets the VIP's
/// host route in its AllowedIPs (the preferred holder), unless that is the
/// node itself.
fn vip_route(spec: &ClusterSpec, plan: &NodePlan) -> Option<(String, IpNet)> {
    if !spec.vip_on_mesh() {
        return None;
    }
    let holder = preferred_holder(spec)?;
    if holder.name == plan.node {
        return None;
    }
    Some((holder.name.clone(), IpNet::from(spec.vip.address)))
}
