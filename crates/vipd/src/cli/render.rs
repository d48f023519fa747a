//! `vipd render`: what a node would load, printed instead of loaded.

use std::process::ExitCode;

use super::{RenderArgs, RenderSecretArgs};
use crate::config::NodePlan;
use crate::config::spec::{Datapath, Role};
use crate::nftables::ruleset;

/// `vipd render nftables`: the DNAT table, every plane healthy.
pub fn nftables(args: &RenderArgs) -> ExitCode {
    let (plan, datapath) = match load_plan(args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(dnat) = &plan.dnat else {
        if !plan.roles.contains(&Role::Vip) {
            eprintln!(
                "error: node \"{}\" does not hold the VIP (its roles: {}): only a node with the `vip` role loads the DNAT table",
                plan.node,
                plan.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else if datapath == Datapath::Proxy {
            eprintln!(
                "error: {} sets api.datapath = \"proxy\": the VIP holder proxies VIP:port in user space and loads no DNAT table; set api.datapath = \"dnat\" for the kernel datapath",
                args.node.config.display()
            );
        } else {
            eprintln!("error: node \"{}\" has no DNAT datapath", plan.node);
        }
        return ExitCode::FAILURE;
    };
    let healthy = vec![true; dnat.targets.len()];
    match ruleset::replace_batch(dnat, &healthy) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The checked cluster file's plan for `args.node.node`, with the datapath it chose.
fn load_plan(args: &RenderArgs) -> Result<(NodePlan, Datapath), ExitCode> {
    let (spec, plan) = super::load_node_plan(&args.node)?;
    Ok((plan, spec.api.datapath))
}

/// `vipd render keepalived`: keepalived.conf for a VIP holder.
pub fn keepalived(args: &RenderSecretArgs) -> ExitCode {
    let (spec, plan) = match super::load_node_plan(&args.node) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let secrets = crate::config::check_file(&args.node.config, args.node.secrets.as_deref())
        .ok()
        .and_then(|c| c.secrets)
        .and_then(|s| s.secrets().cloned());
    print_rendered(crate::render::keepalived::render(
        &spec,
        &plan,
        secrets.as_ref(),
        args.show_secrets,
    ))
}

/// `vipd render haproxy`: haproxy.cfg for a node that runs a proxy.
pub fn haproxy(args: &RenderArgs) -> ExitCode {
    let (spec, plan) = match super::load_node_plan(&args.node) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    print_rendered(crate::render::haproxy::render(&spec, &plan))
}

fn print_rendered(rendered: Result<String, String>) -> ExitCode {
    match rendered {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
