//! The periodic check of one target: probe every interval, count results
//! through rise/fall, report transitions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use vipd_core::health::{Health, HealthState, Thresholds};

use super::probe::Probe;
use super::record::CheckRecord;

/// One target's check.
#[derive(Debug, Clone)]
pub struct Check {
    /// For logs: `tracker apiserver`, `backend cp-1`.
    pub name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// The state assumed before the first verdict.
    pub initial: Health,
    /// Where every probe's result goes, for the status and the metrics.
    pub record: Option<Arc<CheckRecord>>,
}

/// A target changed state (or the first result confirmed the initial one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The index the caller gave this check.
    pub index: usize,
    pub health: Health,
    /// The last probe's result, for logs and status.
    pub detail: String,
}

/// A running check: its task, and the way to feed it passive evidence.
#[derive(Debug)]
pub struct Checker {
    task: JoinHandle<()>,
    mark_down: mpsc::UnboundedSender<String>,
}

impl Checker {
    /// Takes the target down now (passive evidence, the reason for the
    /// logs); it comes back after `rise` successful checks.
    pub fn mark_down(&self, reason: String) {
        // The task only ends when the events receiver is gone.
        let _ = self.mark_down.send(reason);
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `check` until the receiver of `events` is dropped (or the returned
/// [`Checker`] is). An event is sent on every transition, whether a probe
/// or [`Checker::mark_down`] caused it.
pub fn spawn(index: usize, check: Check, events: mpsc::UnboundedSender<HealthEvent>) -> Checker {
    let (mark_down, mut marks) = mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        let mut state = HealthState::new(check.thresholds, check.initial);
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Passive evidence is taken at once, even while a probe runs
            // (that probe is then dropped).
            let started = tokio::select! {
                _ = ticker.tick() => Instant::now(),
                Some(reason) = marks.recv() => {
                    if !marked_down(&check, &mut state, index, reason, &events, &mut ticker) {
                        return;
                    }
                    continue;
                }
            };
            let result = tokio::select! {
                result = check.probe.run(check.timeout) => result,
                Some(reason) = marks.recv() => {
                    if !marked_down(&check, &mut state, index, reason, &events, &mut ticker) {
                        return;
                    }
                    continue;
                }
            };
            let detail = match &result {
                Ok(took) => format!("ok in {took:.1?}"),
                Err(e) => e.to_string(),
            };
            if let Some(record) = &check.record {
                let took = *result.as_ref().unwrap_or(&started.elapsed());
                record.record(result.is_ok(), took, &detail);
            }
            debug!(check = %check.name, target = %check.probe.target(), result = %detail, "health check");
            if let Some(transition) = state.record(result.is_ok()) {
                match transition.to {
                    Health::Up => {
                        info!(check = %check.name, after = transition.after, "{} is up: {detail}", check.name)
                    }
                    Health::Down => {
                        warn!(check = %check.name, after = transition.after, "{} is down: {detail}", check.name)
                    }
                }
                let event = HealthEvent {
                    index,
                    health: transition.to,
                    detail,
                };
                if events.send(event).is_err() {
                    return;
                }
            } else if events.is_closed() {
                return;
            }
        }
    });
    Checker { task, mark_down }
}

/// Applies passive evidence; false when nobody listens any more.
fn marked_down(
    check: &Check,
    state: &mut HealthState,
    index: usize,
    reason: String,
    events: &mpsc::UnboundedSender<HealthEvent>,
    ticker: &mut tokio::time::Interval,
) -> bool {
    if state.mark_down().is_none() {
        return !events.is_closed();
    }
    warn!(check = %check.name, "{} is down: {reason}", check.name);
    // The next probe is an interval away: the target earns its way back
    // with `rise` probes.
    ticker.reset();
    events
        .send(HealthEvent {
            index,
            health: Health::Down,
            detail: reason,
        })
        .is_ok()
}
