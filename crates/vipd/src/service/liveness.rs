//! Heartbeats of the daemon's loops, for the watchdog: each loop holds a
//! [`Pulse`] and beats it when it goes round; [`Liveness::check`] fails
//! when a pulse has been silent for longer than its limit. A loop that may
//! sleep for long (waiting for packets) beats from a timer arm of its
//! `select!`, so a beat proves the loop is not stuck, not that it is busy.
//! A pulse that is dropped (its loop ended) no longer counts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// The pulses of the daemon's loops. Clones share them.
#[derive(Debug, Clone)]
pub struct Liveness {
    epoch: Instant,
    pulses: Arc<Mutex<Vec<Weak<PulseState>>>>,
}

/// One loop's heartbeat: [`Pulse::beat`] each time round.
#[derive(Debug)]
pub struct Pulse {
    state: Arc<PulseState>,
    epoch: Instant,
}

#[derive(Debug)]
struct PulseState {
    name: String,
    limit: Duration,
    /// Microseconds from the epoch to the last beat.
    last_beat: AtomicU64,
}

/// A loop that has not gone round within its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    pub name: String,
    pub silent_for: Duration,
    pub limit: Duration,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} loop has not gone round for {:?} (limit {:?})",
            self.name, self.silent_for, self.limit
        )
    }
}

impl std::error::Error for Stalled {}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            pulses: Arc::default(),
        }
    }

    /// A new pulse named `name` (for the log), counted as beaten now; it
    /// stalls when silent for longer than `limit`.
    pub fn pulse(&self, name: impl Into<String>, limit: Duration) -> Pulse {
        let state = Arc::new(PulseState {
            name: name.into(),
            limit,
            last_beat: AtomicU64::new(micros(self.epoch.elapsed())),
        });
        let mut pulses = self.pulses.lock().unwrap_or_else(|e| e.into_inner());
        pulses.retain(|p| p.strong_count() > 0);
        pulses.push(Arc::downgrade(&state));
        Pulse {
            state,
            epoch: self.epoch,
        }
    }

    /// `Ok` when every live pulse beat within its limit; else the one
    /// silent the longest past its limit.
    pub fn check(&self) -> Result<(), Stalled> {
        let now = micros(self.epoch.elapsed());
        let pulses = self.pulses.lock().unwrap_or_else(|e| e.into_inner());
        let mut worst: Option<Stalled> = None;
        for state in pulses.iter().filter_map(Weak::upgrade) {
            let silent_for =
                Duration::from_micros(now.saturating_sub(state.last_beat.load(Ordering::Relaxed)));
            let over = silent_for.saturating_sub(state.limit);
            if over > Duration::ZERO
                && worst
                    .as_ref()
                    .is_none_or(|w| over > w.silent_for.saturating_sub(w.limit))
            {
                worst = Some(Stalled {
                    name: state.name.clone(),
                    silent_for,
                    limit: state.limit,
                });
            }
        }
        worst.map_or(Ok(()), Err)
    }
}

impl Pulse {
    /// The loop went round.
    pub fn beat(&self) {
        self.state
            .last_beat
            .store(micros(self.epoch.elapsed()), Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_pulse_stalls_after_its_limit_and_a_beat_clears_it() {
        let liveness = Liveness::new();
        let vrrp = liveness.pulse("vrrp", Duration::from_secs(3));
        let proxy = liveness.pulse("proxy", Duration::from_secs(10));
        assert_eq!(liveness.check(), Ok(()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(liveness.check(), Ok(()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stalled = liveness.check().unwrap_err();
        assert_eq!(stalled.name, "vrrp");
        assert_eq!(stalled.silent_for, Duration::from_secs(4));
        assert!(stalled.to_string().contains("vrrp loop"), "{stalled}");
        vrrp.beat();
        assert_eq!(liveness.check(), Ok(()));
        // Both silent: the one furthest past its limit is named.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(liveness.check().unwrap_err().name, "vrrp");
        proxy.beat();
        assert_eq!(liveness.check().unwrap_err().name, "vrrp");
        drop(vrrp);
        assert_eq!(liveness.check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn no_pulse_is_alive() {
        let liveness = Liveness::new();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(liveness.check(), Ok(()));
    }
}
