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

/// Runs `check` until the receiver of `events` is dropped. An event is sent
/// on every transition.
pub fn spawn(
    index: usize,
    check: Check,
    events: mpsc::UnboundedSender<HealthEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = HealthState::new(check.thresholds, check.initial);
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let started = Instant::now();
            let result = check.probe.run(check.timeout).await;
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
    })
}
