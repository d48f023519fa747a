//! The event loop of the DNAT datapath: one health checker per target, the
//! table reloaded on every change of the healthy set, removed on stop.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};
use vipd_core::health::{Health, Thresholds};

use super::apply::Nft;
use super::ruleset::{self, FAMILY, TABLE};
use crate::config::resolve::{DnatPlan, DnatTarget};
use crate::health::checker::{self, Check, HealthEvent};
use crate::health::probe::Probe;

/// After a failed reload, how long until the next attempt (a health event
/// also triggers one).
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Runs the DNAT datapath of `plan` until `stop` turns true (or its sender
/// is dropped), with the system's `nft`. See [`run_with`].
pub async fn run(plan: DnatPlan, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    run_with(plan, Nft::default(), stop).await
}

/// Loads the `inet vipd` table with every target (a stale table of a
/// crashed run is replaced in the same transaction), checks each target's
/// plane proxy port with the plane's health check, reloads the table when
/// the healthy set changes, and removes the table when `stop` turns true.
///
/// With no target healthy it keeps the last set (fail open: a plane the
/// checks cannot reach may still serve, and dropping every connection
/// helps no one). Errors: a plan no ruleset can express, a health check
/// that cannot be set up, a first load nft refuses, a removal that fails.
/// A reload that fails later is logged and retried; the old table stays.
pub async fn run_with(
    plan: DnatPlan,
    nft: Nft,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let all_healthy = vec![true; plan.targets.len()];
    let first = ruleset::replace_batch(&plan, &all_healthy)
        .context("cannot build the DNAT ruleset from the cluster file")?;
    let mut checks = Vec::with_capacity(plan.targets.len());
    for target in &plan.targets {
        checks.push(target_check(target)?);
    }
    if *stop.borrow_and_update() {
        return Ok(());
    }
    warn_if_not_forwarding(plan.destination.ip());

    let stale = nft
        .list_table()
        .await
        .context("cannot read the nftables ruleset")?
        .is_some();
    nft.load(&first)
        .await
        .with_context(|| format!("cannot load the DNAT table {FAMILY} {TABLE}"))?;
    if stale {
        warn!("replaced the table {FAMILY} {TABLE} an earlier run left behind");
    }
    info!(
        vip = %plan.destination,
        targets = %describe(&plan, &all_healthy),
        firewall = plan.firewall.is_some(),
        "DNAT table {FAMILY} {TABLE} loaded"
    );

    let (events_tx, mut events) = mpsc::unbounded_channel::<HealthEvent>();
    let checkers: Vec<_> = checks
        .into_iter()
        .enumerate()
        .map(|(index, check)| checker::spawn(index, check, events_tx.clone()))
        .collect();
    drop(events_tx);

    let mut healthy = all_healthy.clone();
    let mut loaded = all_healthy;
    let mut failing_open = false;
    let mut retry_at: Option<Instant> = None;
    let outcome = loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break Ok(());
                }
                continue;
            }
            Some(event) = events.recv() => {
                // Changes that arrived together make one transaction.
                let mut next = Some(event);
                while let Some(event) = next {
                    if let Some(entry) = healthy.get_mut(event.index) {
                        *entry = event.health == Health::Up;
                    }
                    next = events.try_recv().ok();
                }
            }
            () = sleep_until(retry_at) => retry_at = None,
        }
        let wanted = targets_to_load(&healthy, &loaded);
        let fail_open = !healthy.contains(&true);
        if fail_open && !failing_open {
            warn!(
                kept = %describe(&plan, &loaded),
                "no DNAT target is healthy: keeping the last set (fail open) until one recovers"
            );
        } else if !fail_open && failing_open {
            info!("a DNAT target is healthy again: fail-open ends");
        }
        failing_open = fail_open;
        if wanted == loaded {
            continue;
        }
        let batch = match ruleset::refill_batch(&plan, &wanted) {
            Ok(batch) => batch,
            // The plan was validated at start; only a bug gets here.
            Err(e) => break Err(anyhow::Error::new(e).context("cannot rebuild the DNAT ruleset")),
        };
        match nft.load(&batch).await {
            Ok(()) => {
                info!(targets = %describe(&plan, &wanted), "DNAT targets changed");
                loaded = wanted;
                retry_at = None;
            }
            Err(e) => {
                error!(
                    error = %e,
                    kept = %describe(&plan, &loaded),
                    "cannot reload the DNAT table: the old one stays; retrying in {RETRY_AFTER:?}"
                );
                retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    };
    for checker in checkers {
        checker.abort();
    }
    nft.remove_table()
        .await
        .with_context(|| format!("cannot remove the DNAT table {FAMILY} {TABLE}; remove it with `nft delete table {FAMILY} {TABLE}`"))?;
    info!("DNAT table {FAMILY} {TABLE} removed");
    outcome
}

/// The targets the table should hold: the healthy ones, or with none
/// healthy the ones it holds (fail open).
fn targets_to_load(healthy: &[bool], loaded: &[bool]) -> Vec<bool> {
    if healthy.contains(&true) {
        healthy.to_vec()
    } else {
        loaded.to_vec()
    }
}

/// The periodic check of one target: the plane's health check, aimed at
/// its proxy port, since that is where the rewritten traffic goes.
fn target_check(target: &DnatTarget) -> anyhow::Result<Check> {
    Ok(Check {
        name: format!("dnat target {} {}", target.node, target.address),
        probe: Probe::from_check(target.address, &target.check)
            .with_context(|| format!("health check of DNAT target {}", target.node))?,
        interval: target.check.interval.get(),
        timeout: target.check.timeout.get(),
        thresholds: Thresholds::new(target.check.rise, target.check.fall),
        // Traffic flows to every plane before the first verdict.
        initial: Health::Up,
    })
}

/// `cp-1 198.18.0.11:16443, cp-3 198.18.0.13:16443` for the targets loaded.
fn describe(plan: &DnatPlan, healthy: &[bool]) -> String {
    plan.targets
        .iter()
        .zip(healthy)
        .filter(|(_, up)| **up)
        .map(|(target, _)| format!("{} {}", target.node, target.address))
        .collect::<Vec<_>>()
        .join(", ")
}

/// DNATed flows from other hosts are forwarded; vipd changes nothing outside
/// its table, so it only says when forwarding is off.
fn warn_if_not_forwarding(vip: IpAddr) {
    let (sysctl, path) = match vip {
        IpAddr::V4(_) => ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        IpAddr::V6(_) => (
            "net.ipv6.conf.all.forwarding",
            "/proc/sys/net/ipv6/conf/all/forwarding",
        ),
    };
    match std::fs::read_to_string(path) {
        Ok(value) if value.trim() == "0" => warn!(
            "{sysctl} is 0: connections to the VIP from other hosts are rewritten but not forwarded; set {sysctl}=1 (sysctl, and a file in /etc/sysctl.d/)"
        ),
        Ok(_) => {}
        Err(e) => warn!("cannot read {path} to see whether {sysctl} is on: {e}"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_healthy_targets_are_loaded() {
        assert_eq!(
            targets_to_load(&[true, false, true], &[true, true, true]),
            [true, false, true]
        );
        assert_eq!(
            targets_to_load(&[false, true, false], &[false, false, true]),
            [false, true, false]
        );
    }

    #[test]
    fn with_nothing_healthy_the_last_set_stays() {
        assert_eq!(
            targets_to_load(&[false, false, false], &[false, true, false]),
            [false, true, false]
        );
    }
}
