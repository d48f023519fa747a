//! Reload: re-read the cluster file, check it as `vipd check` does, and
//! apply only the difference.
//!
//! - A frontend whose address stays keeps its listening socket and its
//!   sessions; its backends, checks and settings change in place.
//! - A new frontend address is bound before anything else changes: a port
//!   that is taken refuses the whole reload.
//! - The DNAT table is replaced in one nft transaction; established flows
//!   keep their conntrack entries.
//! - VRRP changes (priority, interval, preemption, trackers, notify, auth,
//!   peers) are made in place and a master stays master. A change of what
//!   identifies the router (interface, VRID, version, VIP, node address)
//!   restarts the instance: a master hands the VIP over first.
//!
//! A refused file changes nothing, and the outcome says why.

use std::collections::BTreeSet;

use crate::api::schema::ReloadOutcome;
use crate::config::{self, Severity};
use crate::health::record::unix_now;
use crate::vrrp::driver::DriverConfig;

use super::Daemon;

/// Reads, checks and applies the cluster file.
pub(super) async fn reload(daemon: &mut Daemon, trigger: &'static str) -> ReloadOutcome {
    let mut outcome = ReloadOutcome {
        at: unix_now(),
        ok: false,
        trigger: trigger.to_owned(),
        errors: Vec::new(),
        changes: Vec::new(),
    };
    let options = daemon.options.clone();
    let secrets_options = config::SecretsOptions {
        secrets: options.secrets.as_deref(),
        identity: options.identity.as_deref(),
    };
    let checked = match config::check_file_with(&options.config, secrets_options) {
        Ok(checked) => checked,
        Err(e) => {
            outcome
                .errors
                .push(format!("cannot read {}: {e}", options.config.display()));
            return outcome;
        }
    };
    let spec = match (&checked.spec, checked.errors()) {
        (Some(spec), 0) => spec.clone(),
        _ => {
            outcome.errors = checked
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| {
                    let place = checked
                        .source
                        .locate(d)
                        .map(|span| {
                            let (line, col) = checked.source.line_col(span.start);
                            format!("{}:{line}:{col}: ", options.config.display())
                        })
                        .unwrap_or_default();
                    let path = if d.path.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", d.path)
                    };
                    format!("{place}error[{}]{path}: {}", d.code, d.message)
                })
                .collect();
            return outcome;
        }
    };
    let Some(plan) = spec.plan(&options.node) else {
        outcome.errors.push(format!(
            "node \"{}\" is no longer in {}",
            options.node,
            options.config.display()
        ));
        return outcome;
    };
    let secrets = checked.secrets.as_ref().and_then(|s| s.secrets());
    let vrrp = match &plan.vrrp {
        Some(vrrp) => match DriverConfig::from_plan(&plan, vrrp, secrets) {
            Ok(config) => Some(config),
            Err(e) => {
                outcome.errors.push(format!("VRRP: {e:#}"));
                return outcome;
            }
        },
        None => None,
    };
    if spec.metrics != daemon.spec.metrics {
        outcome.errors.push(
            "[metrics] changed: the metrics listener is set at start; restart vipd to move it"
                .to_owned(),
        );
        return outcome;
    }

    // Bind what is new before changing anything: a taken port refuses all.
    let mut new_listeners = Vec::new();
    for frontend in &plan.frontends {
        if !daemon.frontends.contains_key(&frontend.listen) {
            match super::bind(&spec, frontend, &daemon.options.workers) {
                Ok(listener) => new_listeners.push((frontend.clone(), listener)),
                Err(e) => {
                    outcome.errors.push(format!("{e:#}"));
                    return outcome;
                }
            }
        }
    }

    let changes = &mut outcome.changes;
    daemon.spec = spec.clone();

    // Frontends.
    let wanted: BTreeSet<_> = plan.frontends.iter().map(|f| f.listen).collect();
    let removed: Vec<_> = daemon
        .frontends
        .keys()
        .filter(|listen| !wanted.contains(listen))
        .copied()
        .collect();
    for listen in removed {
        if let Some(task) = daemon.frontends.remove(&listen) {
            changes.push(format!(
                "frontend {} {listen} removed: it stops accepting and drains",
                task.config.plan.name
            ));
            daemon.retired.insert(task.key.clone());
            task.stop.send_replace(true);
        }
    }
    for frontend in &plan.frontends {
        let Some(task) = daemon.frontends.get_mut(&frontend.listen) else {
            continue;
        };
        let update = crate::proxy::frontend::FrontendUpdate {
            plan: frontend.clone(),
            settings: spec.proxy.clone(),
        };
        if update.plan == task.config.plan && update.settings == task.config.settings {
            continue;
        }
        changes.extend(describe_frontend(&task.config, &update));
        task.config = update.clone();
        if task.updates.send(update).await.is_err() {
            changes.push(format!("frontend {} had stopped", frontend.name));
        }
    }
    for (frontend, listener) in new_listeners {
        changes.push(format!(
            "frontend {} {} added with {} backends",
            frontend.name,
            frontend.listen,
            frontend.backends.len()
        ));
        daemon.spawn_frontend(frontend, listener);
    }

    // DNAT.
    match (daemon.dnat.as_mut(), plan.dnat.clone()) {
        (Some(task), Some(new)) if task.config != new => {
            let old_targets: Vec<_> = task.config.targets.iter().map(|t| t.address).collect();
            let new_targets: Vec<_> = new.targets.iter().map(|t| t.address).collect();
            if old_targets != new_targets {
                changes.push(format!(
                    "DNAT targets {} -> {}",
                    list(&old_targets),
                    list(&new_targets)
                ));
            } else {
                changes.push("DNAT table settings changed".to_owned());
            }
            task.config = new.clone();
            let _ = task.updates.send(new).await;
        }
        (Some(_), Some(_)) => {}
        (Some(_), None) => {
            if let Some(task) = daemon.dnat.take() {
                changes.push("DNAT datapath removed: its table goes".to_owned());
                daemon.retired.insert(task.key.clone());
                task.stop.send_replace(true);
            }
        }
        (None, Some(new)) => {
            changes.push(format!(
                "DNAT datapath added for {} with {} targets",
                new.destination,
                new.targets.len()
            ));
            daemon.spawn_dnat(new);
        }
        (None, None) => {}
    }

    // VRRP.
    match (daemon.vrrp.as_mut(), vrrp) {
        (Some(task), Some(new)) => {
            if let Some(field) = task.config.restart_needed_for(&new) {
                changes.push(format!(
                    "VRRP {field} changed: the instance restarts (a master hands the VIP over first)"
                ));
                if let Some(old) = daemon.vrrp.take() {
                    daemon.retired.insert(old.key.clone());
                    old.stop.send_replace(true);
                    let _ = old.handle.await;
                }
                daemon.spawn_vrrp(new);
            } else if task.config.core != new.core
                || task.config.trackers != new.trackers
                || task.config.send_to != new.send_to
                || task.config.notify != new.notify
                || task.config.announce != new.announce
            {
                changes.extend(describe_vrrp(&task.config, &new));
                task.config = new.clone();
                let _ = task.updates.send(new).await;
            }
        }
        (Some(_), None) => {
            if let Some(old) = daemon.vrrp.take() {
                changes.push(
                    "VRRP removed (the node lost the vip role): the VIP is handed over".to_owned(),
                );
                daemon.retired.insert(old.key.clone());
                old.stop.send_replace(true);
                let _ = old.handle.await;
            }
        }
        (None, Some(new)) => {
            changes.push(format!(
                "VRRP added: VRID {} on {}",
                new.core.vrid, new.interface
            ));
            daemon.spawn_vrrp(new);
        }
        (None, None) => {}
    }

    // The mesh follower.
    match (daemon.follow.as_mut(), plan.follow.clone()) {
        (Some(task), Some(new)) if task.config.interface == new.interface => {
            if task.config != new {
                changes.push(format!(
                    "follower: holders {}, interval {}",
                    new.holders
                        .iter()
                        .map(|h| h.node.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    new.interval
                ));
                task.config = new.clone();
                let _ = task.updates.send(new).await;
            }
        }
        (Some(_), new) => {
            if let Some(old) = daemon.follow.take() {
                daemon.retired.insert(old.key.clone());
                old.stop.send_replace(true);
                let _ = old.handle.await;
            }
            match new {
                Some(new) => {
                    changes.push(format!("follower restarted on {}", new.interface));
                    daemon.spawn_follow(new);
                }
                None => changes.push(
                    "follower stopped (no VIP on the mesh, or mesh.follow = false)".to_owned(),
                ),
            }
        }
        (None, Some(new)) => {
            changes.push(format!("follower started on {}", new.interface));
            daemon.spawn_follow(new);
        }
        (None, None) => {}
    }

    daemon.plan = plan;
    if let Some(change) = daemon.set_guard(daemon.plan.vip_listener()).await {
        changes.push(change);
    }
    daemon.publish();
    outcome.ok = true;
    outcome
}

fn list(addresses: &[std::net::SocketAddr]) -> String {
    if addresses.is_empty() {
        return "(none)".to_owned();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_frontend(
    old: &crate::proxy::frontend::FrontendUpdate,
    new: &crate::proxy::frontend::FrontendUpdate,
) -> Vec<String> {
    let name = new.plan.name;
    let mut out = Vec::new();
    for backend in &new.plan.backends {
        match old.plan.backends.iter().find(|b| b.node == backend.node) {
            None => out.push(format!(
                "frontend {name}: backend {} {} added",
                backend.node, backend.address
            )),
            Some(before) if before != backend => out.push(format!(
                "frontend {name}: backend {} changed ({} -> {})",
                backend.node, before.address, backend.address
            )),
            Some(_) => {}
        }
    }
    for backend in &old.plan.backends {
        if !new.plan.backends.iter().any(|b| b.node == backend.node) {
            out.push(format!(
                "frontend {name}: backend {} {} removed (its sessions run to their end)",
                backend.node, backend.address
            ));
        }
    }
    if old.settings != new.settings {
        out.push(format!(
            "frontend {name}: [proxy] settings changed (new sessions use them)"
        ));
    }
    out
}

fn describe_vrrp(old: &DriverConfig, new: &DriverConfig) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (&old.core, &new.core);
    if a.priority != b.priority {
        out.push(format!("VRRP priority {} -> {}", a.priority, b.priority));
    }
    if a.advert_interval != b.advert_interval {
        out.push(format!(
            "VRRP advert interval {:?} -> {:?}",
            a.advert_interval(),
            b.advert_interval()
        ));
    }
    if a.preempt != b.preempt || a.preempt_delay != b.preempt_delay {
        out.push(format!(
            "VRRP preempt {} (delay {:?}) -> {} (delay {:?})",
            a.preempt, a.preempt_delay, b.preempt, b.preempt_delay
        ));
    }
    if a.auth != b.auth {
        out.push("VRRP authentication changed".to_owned());
    }
    if old.trackers != new.trackers {
        out.push(format!(
            "VRRP trackers: {} -> {}",
            old.trackers.len(),
            new.trackers.len()
        ));
    }
    if old.send_to != new.send_to {
        out.push(format!("VRRP peers {:?} -> {:?}", old.send_to, new.send_to));
    }
    if old.notify != new.notify || old.announce != new.announce {
        out.push("VRRP notify / announce settings changed".to_owned());
    }
    if out.is_empty() {
        out.push("VRRP settings changed".to_owned());
    }
    out
}
