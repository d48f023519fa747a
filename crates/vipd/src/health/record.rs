//! What a checker remembers for the status and the metrics: the last
//! result, counts, and a latency histogram. Written by the checker once per
//! probe; read by `vipd status` and the metrics scrape.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};

/// Probe latency buckets, in seconds: a healthy apiserver answers /readyz
/// in about a millisecond on a LAN, tens over a WAN; a timeout is ~1 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The record of one check target.
#[derive(Debug)]
pub struct CheckRecord {
    last: Mutex<Option<LastCheck>>,
    pub passed: AtomicU64,
    pub failed: AtomicU64,
    /// Seconds per probe, successful or not.
    pub latency: Histogram,
}

impl Default for CheckRecord {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
            passed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// The last probe of a target, as `vipd status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    /// When it finished, in seconds since the Unix epoch.
    pub at: f64,
    pub ok: bool,
    /// `ok in 1.2ms`, or what failed.
    pub detail: String,
    pub latency_seconds: f64,
}

impl CheckRecord {
    /// Records one probe.
    pub fn record(&self, ok: bool, took: Duration, detail: &str) {
        let counter = if ok { &self.passed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took.as_secs_f64());
        let last = LastCheck {
            at: unix_now(),
            ok,
            detail: detail.to_owned(),
            latency_seconds: took.as_secs_f64(),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
    }

    pub fn last(&self) -> Option<LastCheck> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Seconds since the Unix epoch, as status timestamps carry them.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_result_and_counts_both_outcomes() {
        let record = CheckRecord::default();
        assert_eq!(record.last(), None);
        record.record(true, Duration::from_millis(2), "ok in 2ms");
        record.record(false, Duration::from_millis(250), "timed out");
        let last = record.last().unwrap();
        assert!(!last.ok);
        assert_eq!(last.detail, "timed out");
        assert!((last.latency_seconds - 0.25).abs() < 1e-9);
        assert_eq!(record.passed.load(Ordering::Relaxed), 1);
        assert_eq!(record.failed.load(Ordering::Relaxed), 1);
    }
}
