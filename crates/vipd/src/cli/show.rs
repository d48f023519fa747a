//! `vipd config show`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::ShowArgs;
use crate::config::resolve::{HealthCheck, NodePlan};
use crate::config::spec::{CheckKind, VrrpMode};

pub fn run(args: &ShowArgs) -> ExitCode {
    let (plan, secrets) = match super::load_node_plan_with_secrets(&args.node) {
        Ok((_, plan, secrets)) => (plan, secrets),
        Err(code) => return code,
    };
    // Only with --show-secrets, and only the secrets this node uses.
    let mut shown = Vec::new();
    if args.show_secrets {
        let names = plan
            .vrrp
            .as_ref()
            .and_then(|v| v.auth_pass_secret.clone())
            .into_iter()
            .chain(
                plan.wireguard
                    .as_ref()
                    .and_then(|w| w.private_key_secret.clone()),
            );
        for name in names {
            match secrets.as_ref().and_then(|s| s.get(&name)) {
                Some(value) => shown.push((name, value.expose().to_owned())),
                None => {
                    eprintln!(
                        "error: --show-secrets: secret \"{name}\" cannot be read (see `vipd check`: the vault or secrets file, and --identity)"
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if args.json {
        let mut value = serde_json::to_value(&plan).expect("JSON of plain values");
        if args.show_secrets {
            value["secrets"] = shown
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::from(v.as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON of plain values")
        );
    } else {
        print!("{}", render_text(&plan));
        if args.show_secrets {
            println!("\nsecrets (shown on request)");
            for (name, value) in &shown {
                println!("  {name} = {value:?}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn describe_check(check: &HealthCheck) -> String {
    let mut text = match check.kind {
        CheckKind::Https => format!("https {}", check.path.as_deref().unwrap_or("/")),
        CheckKind::Tcp => "tcp connect".to_owned(),
    };
    let _ = write!(
        text,
        " every {} (timeout {}, rise {}, fall {})",
        check.interval, check.timeout, check.rise, check.fall
    );
    if check.kind == CheckKind::Https {
        match (&check.ca_file, check.insecure_skip_verify) {
            (_, true) => text.push_str(", certificate not verified"),
            (Some(ca), false) => {
                let _ = write!(text, ", CA {}", ca.display());
            }
            (None, false) => {}
        }
        if let Some(name) = &check.server_name {
            let _ = write!(text, ", SNI {name}");
        }
    }
    text
}

/// The text view: one block per subsystem, aligned for reading.
pub fn render_text(plan: &NodePlan) -> String {
    let mut out = String::new();
    let roles: Vec<&str> = plan.roles.iter().map(|r| r.as_str()).collect();
    let _ = writeln!(out, "node {} (cluster {})", plan.node, plan.cluster);
    let _ = writeln!(out, "  address       {}", plan.address);
    let _ = writeln!(out, "  roles         {}", roles.join(", "));
    let _ = writeln!(out, "  api endpoint  {}", plan.api_endpoint);
    if let Some(vrrp) = &plan.vrrp {
        let _ = writeln!(out, "\nvrrp");
        let _ = writeln!(out, "  vip           {} on {}", vrrp.vip, vrrp.interface);
        let _ = writeln!(out, "  vrid          {} (VRRPv{})", vrrp.vrid, vrrp.version);
        let _ = writeln!(out, "  priority      {}", vrrp.priority);
        let _ = writeln!(out, "  advert        every {}", vrrp.advert_interval);
        let peers: Vec<String> = vrrp.send_to.iter().map(ToString::to_string).collect();
        let mode = match vrrp.mode {
            VrrpMode::Unicast => "unicast",
            VrrpMode::Multicast => "multicast",
        };
        let peers = if peers.is_empty() {
            "nobody".to_owned()
        } else {
            peers.join(", ")
        };
        let _ = writeln!(out, "  mode          {mode}, to {peers}");
        if vrrp.designated_successor {
            let _ = writeln!(
                out,
                "  successor     designated: takes over without Skew_Time"
            );
        }
        if vrrp.preempt {
            let _ = writeln!(out, "  preempt       yes, after {}", vrrp.preempt_delay);
        } else {
            let _ = writeln!(out, "  preempt       no");
        }
        match &vrrp.auth_pass_secret {
            Some(name) => {
                let _ = writeln!(out, "  auth          PASS, password from secret \"{name}\"");
            }
            None => {
                let _ = writeln!(out, "  auth          none");
            }
        }
        if let Some(checksum) = vrrp.checksum {
            let _ = writeln!(
                out,
                "  checksum      {}",
                serde_json::to_value(checksum)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?")
            );
        }
    }
    for frontend in &plan.frontends {
        let _ = writeln!(
            out,
            "\nfrontend {} listening on {}",
            frontend.name, frontend.listen
        );
        for backend in &frontend.backends {
            let local = if backend.local { " (local)" } else { "" };
            let _ = writeln!(out, "  backend {}{local} {}", backend.node, backend.address);
            let _ = writeln!(out, "    check {}", describe_check(&backend.check));
        }
    }
    if let Some(dnat) = &plan.dnat {
        let _ = writeln!(out, "\ndnat {} to the healthy planes", dnat.destination);
        for target in &dnat.targets {
            let _ = writeln!(out, "  target {} {}", target.node, target.address);
            let _ = writeln!(out, "    check {}", describe_check(&target.check));
        }
    }
    if let Some(wg) = &plan.wireguard {
        let _ = writeln!(
            out,
            "\nwireguard {} address {} port {}",
            wg.interface, wg.address, wg.listen_port
        );
        match &wg.private_key_secret {
            Some(name) => {
                let _ = writeln!(out, "  private key   from secret \"{name}\"");
            }
            None => {
                let _ = writeln!(out, "  private key   not configured");
            }
        }
        for peer in &wg.peers {
            let allowed: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "  peer {} key {}", peer.node, peer.public_key);
            let _ = writeln!(
                out,
                "    endpoint {}, allowed {}",
                peer.endpoint
                    .as_deref()
                    .unwrap_or("(none: it connects to us)"),
                allowed.join(", ")
            );
        }
    }
    out
}
