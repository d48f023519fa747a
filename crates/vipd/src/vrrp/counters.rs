//! Dropped packets, counted by reason. A flood of bad packets must not
//! flood the log: each reason is logged at most once a second, with the
//! number suppressed since its last line.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Reason {
    total: u64,
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// Drop counters of one VRRP instance.
#[derive(Debug, Default)]
pub struct DropCounters {
    reasons: BTreeMap<&'static str, Reason>,
}

impl DropCounters {
    /// Counts one drop; logs it unless this reason was logged less than a
    /// second ago.
    pub fn record(&mut self, reason: &'static str, now: Instant, detail: impl Display) {
        let entry = self.reasons.entry(reason).or_default();
        entry.total += 1;
        let due = entry
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY);
        if due {
            let suppressed = std::mem::take(&mut entry.suppressed);
            entry.last_logged = Some(now);
            tracing::warn!(
                reason,
                total = entry.total,
                suppressed,
                "dropped VRRP packet: {detail}"
            );
        } else {
            entry.suppressed += 1;
        }
    }

    /// How many packets were dropped for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        self.reasons.get(reason).map_or(0, |r| r.total)
    }

    /// Every reason with its count, in name order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.reasons
            .iter()
            .map(|(name, r)| (*name, r.total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_drop_and_logs_at_most_once_a_second() {
        let mut counters = DropCounters::default();
        let start = Instant::now();
        for i in 0..100u64 {
            counters.record("bad_checksum", start + Duration::from_millis(i), "x");
        }
        assert_eq!(counters.get("bad_checksum"), 100);
        let entry = &counters.reasons["bad_checksum"];
        assert_eq!(entry.last_logged, Some(start), "only the first was logged");
        assert_eq!(entry.suppressed, 99);
        counters.record("bad_checksum", start + Duration::from_millis(1000), "x");
        let entry = &counters.reasons["bad_checksum"];
        assert_eq!(entry.suppressed, 0, "the next line reported the 99");
        assert_eq!(counters.snapshot(), vec![("bad_checksum", 101)]);
        assert_eq!(counters.get("ttl_not_255"), 0);
    }
}
