//! What a running VRRP instance shows `vipd status` and the metrics: kept
//! by the driver as things happen, read by the API at any time.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::health::record::{CheckRecord, LastCheck, unix_now};

/// Transitions kept for the status; older ones only count.
pub const TRANSITIONS_KEPT: usize = 16;

/// The state of one VRRP instance (`vrrp` in the status document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub vrid: u8,
    pub interface: String,
    /// The VIP with its prefix, e.g. `198.18.0.100/32`.
    pub vip: String,
    pub version: u8,
    /// `initialize`, `backup`, `master` or `fault`.
    pub state: String,
    /// The node's priority in the cluster file.
    pub configured_priority: u8,
    /// The priority advertised now: configured, moved by tracker weights.
    pub effective_priority: u8,
    /// Why the two differ, one entry per tracker that moved it.
    pub priority_reasons: Vec<String>,
    /// Why the instance is in Fault, if it is.
    pub fault: Option<String>,
    /// The master: this node's address while master, the last one heard
    /// from while backup.
    pub master: Option<IpAddr>,
    /// Whether the VIP is on the interface (vipd added it and nothing removed it).
    pub vip_on_interface: bool,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Packets dropped, by reason (`bad_checksum`, `ttl_not_255`, ...).
    pub dropped: BTreeMap<String, u64>,
    /// The last transitions, oldest first.
    pub transitions: VecDeque<Transition>,
    /// Every transition since start, counted by `to_state:reason`.
    pub transitions_total: BTreeMap<String, u64>,
    pub trackers: Vec<TrackerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub from: String,
    pub to: String,
    /// A stable label (`master_down_timer_expired`, `higher_priority`, ...).
    pub reason: String,
    /// The same, with addresses and priorities, for people.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerStatus {
    pub name: String,
    pub weight: i32,
    pub healthy: bool,
    pub last_check: Option<LastCheck>,
}

/// The shared handle: the driver writes, the API reads.
#[derive(Debug, Clone, Default)]
pub struct SharedVrrpStatus(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    status: Mutex<VrrpStatus>,
    /// The trackers' check records, in `trackers` order.
    tracker_records: Mutex<Vec<Arc<CheckRecord>>>,
}

impl SharedVrrpStatus {
    pub fn lock(&self) -> MutexGuard<'_, VrrpStatus> {
        self.0.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_tracker_records(&self, records: Vec<Arc<CheckRecord>>) {
        *self
            .0
            .tracker_records
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = records;
    }

    pub fn tracker_records(&self) -> Vec<Arc<CheckRecord>> {
        self.0
            .tracker_records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The status now, with each tracker's last check.
    pub fn snapshot(&self) -> VrrpStatus {
        let mut status = self.lock().clone();
        for (tracker, record) in status.trackers.iter_mut().zip(self.tracker_records()) {
            tracker.last_check = record.last();
        }
        status
    }
}

impl VrrpStatus {
    /// Records a state change.
    pub fn transition(&mut self, from: &str, to: &str, reason: &str, detail: String) {
        *self
            .transitions_total
            .entry(format!("{to}:{reason}"))
            .or_default() += 1;
        if self.transitions.len() == TRANSITIONS_KEPT {
            self.transitions.pop_front();
        }
        self.transitions.push_back(Transition {
            at: unix_now(),
            from: from.to_owned(),
            to: to.to_owned(),
            reason: reason.to_owned(),
            detail,
        });
        self.state = to.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_transitions_and_counts_all() {
        let mut status = VrrpStatus::default();
        for i in 0..(TRANSITIONS_KEPT + 4) {
            let (from, to) = if i % 2 == 0 {
                ("backup", "master")
            } else {
                ("master", "backup")
            };
            status.transition(from, to, "higher_priority", format!("#{i}"));
        }
        assert_eq!(status.transitions.len(), TRANSITIONS_KEPT);
        assert_eq!(status.transitions[0].detail, "#4");
        assert_eq!(status.transitions_total["master:higher_priority"], 10);
        assert_eq!(status.transitions_total["backup:higher_priority"], 10);
        assert_eq!(status.state, "backup");
    }
}
