//! The event loop of the DNAT datapath: one health checker per target, the
//! table reloaded on every change of the healthy set, removed on stop.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};
use vipd_core::health::{Health, Thresholds};

use super::apply::Nft;
use super::observe::{self, Observer, Tripped, Watched};
use super::ruleset::{self, FAMILY, TABLE};
use crate::config::resolve::{DnatPlan, DnatTarget};
use crate::health::checker::{self, Check, Checker, HealthEvent};
use crate::health::probe::Probe;
use crate::health::record::CheckRecord;

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
pub async fn run_with(plan: DnatPlan, nft: Nft, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let (_updates_tx, updates) = mpsc::channel(1);
    serve(plan, nft, SharedDnatStatus::default(), updates, stop).await
}

/// The daemon's DNAT datapath: [`run_with`], plus new plans from reloads
/// on `updates` and its state published in `status`.
///
/// A new plan replaces the table in one transaction; targets that stay
/// keep their health, new ones start healthy, and established flows keep
/// their conntrack entries whatever the rules become.
pub async fn serve(
    mut plan: DnatPlan,
    nft: Nft,
    status: SharedDnatStatus,
    mut updates: mpsc::Receiver<DnatPlan>,
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

    let (mut checkers, mut events) = start_checkers(checks, &status);
    let (mut observer, mut trips) = start_observer(&plan);
    let mut healthy = all_healthy.clone();
    let mut loaded = all_healthy;
    status.publish(&plan, &healthy, &loaded, false, None);
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
            Some(new_plan) = updates.recv() => {
                if new_plan == plan {
                    continue;
                }
                let carried = |new: &DnatTarget, of: &[bool]| {
                    plan.targets.iter().position(|old| old.address == new.address).is_none_or(|i| of[i])
                };
                let new_healthy: Vec<bool> = new_plan.targets.iter().map(|t| carried(t, &healthy)).collect();
                let new_checks: anyhow::Result<Vec<Check>> = new_plan
                    .targets
                    .iter()
                    .zip(&new_healthy)
                    .map(|(target, up)| {
                        let mut check = target_check(target)?;
                        check.initial = if *up { Health::Up } else { Health::Down };
                        Ok(check)
                    })
                    .collect();
                let new_checks = match new_checks {
                    Ok(checks) => checks,
                    Err(e) => {
                        error!(error = %e, "reloaded DNAT plan refused: keeping the running one");
                        continue;
                    }
                };
                let mut wanted = targets_to_load(&new_healthy, &new_healthy);
                if !wanted.contains(&true) {
                    // Fail open over the new set too: every target.
                    wanted = vec![true; new_plan.targets.len()];
                }
                let batch = match ruleset::replace_batch(&new_plan, &wanted) {
                    Ok(batch) => batch,
                    Err(e) => {
                        error!(error = %e, "reloaded DNAT plan refused: keeping the running one");
                        continue;
                    }
                };
                if let Err(e) = nft.load(&batch).await {
                    error!(error = %e, "cannot load the reloaded DNAT table: the old one stays");
                    status.publish(&plan, &healthy, &loaded, failing_open, Some(e.to_string()));
                    continue;
                }
                for checker in checkers.drain(..) {
                    checker.abort();
                }
                (checkers, events) = start_checkers(new_checks, &status);
                if let Some(task) = observer.take() {
                    task.abort();
                }
                (observer, trips) = start_observer(&new_plan);
                info!(targets = %describe(&new_plan, &wanted), firewall = new_plan.firewall.is_some(), "DNAT table reloaded");
                plan = new_plan;
                healthy = new_healthy;
                loaded = wanted;
                status.publish(&plan, &healthy, &loaded, failing_open, None);
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
            Some(tripped) = trips.recv() => {
                // The checker turns it into a health event, like a probe's.
                if let Some(checker) = checkers.get(tripped.target) {
                    checker.mark_down(tripped.reason);
                }
                if let Some(target) = plan.targets.get(tripped.target) {
                    status.count_observed_down(target.address.to_string());
                }
                continue;
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
            status.publish(&plan, &healthy, &loaded, failing_open, None);
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
                forget_unanswered(&plan, &loaded, &wanted, &status);
                loaded = wanted;
                retry_at = None;
                status.publish(&plan, &healthy, &loaded, failing_open, None);
            }
            Err(e) => {
                status.publish(&plan, &healthy, &loaded, failing_open, Some(e.to_string()));
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
    if let Some(task) = observer {
        task.abort();
    }
    drop(events);
    nft.remove_table()
        .await
        .with_context(|| format!("cannot remove the DNAT table {FAMILY} {TABLE}; remove it with `nft delete table {FAMILY} {TABLE}`"))?;
    info!("DNAT table {FAMILY} {TABLE} removed");
    outcome
}

fn start_checkers(
    checks: Vec<Check>,
    status: &SharedDnatStatus,
) -> (Vec<Checker>, mpsc::UnboundedReceiver<HealthEvent>) {
    let (events_tx, events) = mpsc::unbounded_channel::<HealthEvent>();
    let mut records = Vec::with_capacity(checks.len());
    let checkers = checks
        .into_iter()
        .enumerate()
        .map(|(index, mut check)| {
            let record = std::sync::Arc::new(CheckRecord::default());
            records.push(std::sync::Arc::clone(&record));
            check.record = Some(record);
            checker::spawn(index, check, events_tx.clone())
        })
        .collect();
    status.set_records(records);
    (checkers, events)
}

/// Starts the passive watch of `plan`'s targets (`[api] observe`). Without
/// conntrack events (no ctnetlink in this kernel) it says so and the
/// active checks alone decide.
fn start_observer(
    plan: &DnatPlan,
) -> (
    Option<tokio::task::JoinHandle<()>>,
    mpsc::UnboundedReceiver<Tripped>,
) {
    let (trips_tx, trips) = mpsc::unbounded_channel();
    if !plan.observe {
        return (None, trips);
    }
    let watched = plan
        .targets
        .iter()
        .map(|t| Watched {
            address: t.address,
            timeout: t.check.timeout.get(),
            limit: t.check.fall,
        })
        .collect();
    let observer = Observer::new(plan.destination, watched);
    let task = tokio::spawn(async move {
        if let Err(e) = observe::run(observer, trips_tx).await {
            warn!(error = %e, "cannot watch conntrack events: unanswered connections will not mark a DNAT target down, only the health checks will (`[api] observe = false` silences this)");
        }
    });
    (Some(task), trips)
}

/// For each target that just left the table: deletes the conntrack
/// entries of the flows it never answered, so the clients' next SYN
/// retransmissions are rewritten to a healthy target instead of following
/// the old entry to the dead one. In the background; logged.
fn forget_unanswered(plan: &DnatPlan, before: &[bool], after: &[bool], status: &SharedDnatStatus) {
    for (target, _) in plan
        .targets
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (was, is))| **was && !**is)
    {
        let (destination, address, node) = (plan.destination, target.address, target.node.clone());
        let status = status.clone();
        tokio::task::spawn_blocking(move || {
            match super::conntrack::forget_unanswered(destination, address) {
                Ok(0) => {}
                Ok(n) => {
                    status.count_forgotten(n as u64);
                    info!(target = %address, node, flows = n, "forgot the connections the target never answered: their next SYN goes to a healthy target");
                }
                Err(e) => {
                    warn!(target = %address, node, error = %e, "cannot delete the target's unanswered conntrack entries: their clients wait for conntrack to expire them")
                }
            }
        });
    }
}

/// The DNAT datapath as `vipd status` shows it (`dnat` in the document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnatStatus {
    /// VIP:port.
    pub destination: String,
    pub targets: Vec<DnatTargetStatus>,
    /// No target is healthy: the table keeps the last set.
    pub fail_open: bool,
    /// The last nft failure, while the old table stays in place.
    pub last_error: Option<String>,
    /// Times the target set or the table changed.
    pub changes: u64,
    /// Conntrack entries of unanswered connections deleted when their
    /// target left the set (their clients' next SYN went elsewhere).
    #[serde(default)]
    pub forgotten_flows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnatTargetStatus {
    pub node: String,
    pub address: String,
    /// What the health check says.
    pub healthy: bool,
    /// Whether the table sends new flows to it now.
    pub loaded: bool,
    pub last_check: Option<crate::health::record::LastCheck>,
    /// Times the passive watch took it down (`[api] observe`).
    #[serde(default)]
    pub observed_down: u64,
}

/// Written by the driver, read by the API.
#[derive(Debug, Clone, Default)]
pub struct SharedDnatStatus(std::sync::Arc<std::sync::Mutex<SharedInner>>);

#[derive(Debug, Default)]
struct SharedInner {
    status: DnatStatus,
    /// Each target's check record, in target order.
    records: Vec<std::sync::Arc<CheckRecord>>,
    /// Passive mark-downs by target address; kept across reloads.
    observed_down: std::collections::HashMap<String, u64>,
}

impl SharedDnatStatus {
    /// The status now, with each target's last check.
    pub fn snapshot(&self) -> DnatStatus {
        let inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut status = inner.status.clone();
        for (target, record) in status.targets.iter_mut().zip(&inner.records) {
            target.last_check = record.last();
        }
        for target in &mut status.targets {
            target.observed_down = inner
                .observed_down
                .get(&target.address)
                .copied()
                .unwrap_or(0);
        }
        status
    }

    fn count_observed_down(&self, target: String) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *inner.observed_down.entry(target).or_default() += 1;
    }

    fn count_forgotten(&self, flows: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .forgotten_flows += flows;
    }

    fn set_records(&self, records: Vec<std::sync::Arc<CheckRecord>>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).records = records;
    }

    fn publish(
        &self,
        plan: &DnatPlan,
        healthy: &[bool],
        loaded: &[bool],
        fail_open: bool,
        error: Option<String>,
    ) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let status = &mut inner.status;
        let targets: Vec<DnatTargetStatus> = plan
            .targets
            .iter()
            .zip(healthy.iter().zip(loaded))
            .map(|(target, (&healthy, &loaded))| DnatTargetStatus {
                node: target.node.clone(),
                address: target.address.to_string(),
                healthy,
                loaded,
                last_check: None,
                observed_down: 0,
            })
            .collect();
        let changed = status
            .targets
            .iter()
            .map(|t| (&t.address, t.loaded))
            .ne(targets.iter().map(|t| (&t.address, t.loaded)));
        if changed && !status.targets.is_empty() {
            status.changes += 1;
        }
        status.destination = plan.destination.to_string();
        status.targets = targets;
        status.fail_open = fail_open;
        status.last_error = error;
    }
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
        record: None,
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
