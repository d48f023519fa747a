//! keepalived's tracker weights: the priority and the fault a node's
//! trackers and its link give an instance.
//!
//! Pure: the IO shell runs the checks and watches the link, calls
//! [`assess`] with what it knows, and hands the instance what changed
//! ([`super::Instance::set_priority`], [`super::Instance::set_fault`],
//! [`super::Instance::clear_fault`]). The rules are keepalived's
//! `track_script` weights:
//!
//! - weight 0: the tracker down puts the instance in Fault;
//! - negative weight: subtracted while the tracker is down;
//! - positive weight: added while the tracker is up;
//! - the link not usable puts the instance in Fault, before any tracker;
//! - the result stays a valid backup priority, 1-254, except the address
//!   owner's 255, which no weight changes (RFC 5798 §6.1).

use super::packet::PRIORITY_OWNER;
use super::state::FaultReason;

/// One tracker as the weights see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerState<'a> {
    /// Shown in the reasons and in [`FaultReason::Tracker`].
    pub name: &'a str,
    /// keepalived's weight: 0 faults, negative lowers on failure, positive
    /// raises on success.
    pub weight: i32,
    pub healthy: bool,
}

/// What the trackers and the link make of the configured priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The effective priority: the configured one plus the weights, 1-254
    /// (255 for the owner).
    pub priority: u8,
    /// The link down, or else the first failing tracker of weight 0.
    pub fault: Option<FaultReason>,
    /// Each weight applied, in tracker order: "apiserver 10.0.0.1:6443
    /// down (-20)", "proxy 127.0.0.1:8443 up (+5)".
    pub reasons: Vec<String>,
}

/// Applies the weights of `trackers` to `base` (the configured priority)
/// and judges the fault. See the module docs for the rules.
pub fn assess(base: u8, trackers: &[TrackerState<'_>], link_usable: bool) -> Assessment {
    let mut priority = i32::from(base);
    let mut failing_fault_tracker = None;
    let mut reasons = Vec::new();
    for tracker in trackers {
        match (tracker.weight, tracker.healthy) {
            (0, false) => {
                failing_fault_tracker.get_or_insert(tracker.name);
            }
            (weight, false) if weight < 0 => {
                priority += weight;
                reasons.push(format!("{} down ({weight})", tracker.name));
            }
            (weight, true) if weight > 0 => {
                priority += weight;
                reasons.push(format!("{} up (+{weight})", tracker.name));
            }
            _ => {}
        }
    }
    // The owner keeps 255; everyone else stays a valid backup priority.
    let priority = if base == PRIORITY_OWNER {
        PRIORITY_OWNER
    } else {
        priority.clamp(1, 254) as u8
    };
    let fault = if !link_usable {
        Some(FaultReason::InterfaceDown)
    } else {
        failing_fault_tracker.map(|name| FaultReason::Tracker(name.to_owned()))
    };
    Assessment {
        priority,
        fault,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(name: &str, weight: i32, healthy: bool) -> TrackerState<'_> {
        TrackerState {
            name,
            weight,
            healthy,
        }
    }

    #[test]
    fn no_trackers_keep_the_configured_priority() {
        let assessment = assess(100, &[], true);
        assert_eq!(
            assessment,
            Assessment {
                priority: 100,
                fault: None,
                reasons: Vec::new(),
            }
        );
    }

    #[test]
    fn a_weight_zero_tracker_down_faults_without_changing_the_priority() {
        let trackers = [
            tracker("proxy 127.0.0.1:8443", 0, true),
            tracker("apiserver 10.0.0.1:6443", 0, false),
            tracker("apiserver 10.0.0.2:6443", 0, false),
        ];
        let assessment = assess(100, &trackers, true);
        // The first failing one names the fault.
        assert_eq!(
            assessment.fault,
            Some(FaultReason::Tracker("apiserver 10.0.0.1:6443".into()))
        );
        assert_eq!(assessment.priority, 100);
        assert!(assessment.reasons.is_empty(), "{:?}", assessment.reasons);
        // Up, it does nothing.
        let up = assess(100, &[tracker("proxy 127.0.0.1:8443", 0, true)], true);
        assert_eq!(up.fault, None);
    }

    #[test]
    fn a_negative_weight_is_subtracted_while_down() {
        let trackers = [
            tracker("apiserver 10.0.0.1:6443", -20, false),
            tracker("proxy 127.0.0.1:8443", -30, true),
        ];
        let assessment = assess(100, &trackers, true);
        assert_eq!(assessment.priority, 80);
        assert_eq!(assessment.fault, None);
        assert_eq!(assessment.reasons, ["apiserver 10.0.0.1:6443 down (-20)"]);
    }

    #[test]
    fn a_positive_weight_is_added_while_up() {
        let trackers = [
            tracker("apiserver 10.0.0.1:6443", 15, true),
            tracker("proxy 127.0.0.1:8443", 30, false),
        ];
        let assessment = assess(100, &trackers, true);
        assert_eq!(assessment.priority, 115);
        assert_eq!(assessment.fault, None);
        assert_eq!(assessment.reasons, ["apiserver 10.0.0.1:6443 up (+15)"]);
    }

    #[test]
    fn the_priority_never_falls_below_1() {
        let trackers = [
            tracker("apiserver 10.0.0.1:6443", -60, false),
            tracker("proxy 127.0.0.1:8443", -60, false),
        ];
        let assessment = assess(100, &trackers, true);
        assert_eq!(assessment.priority, 1);
        assert_eq!(
            assessment.reasons,
            [
                "apiserver 10.0.0.1:6443 down (-60)",
                "proxy 127.0.0.1:8443 down (-60)"
            ]
        );
    }

    #[test]
    fn the_priority_never_rises_above_254() {
        let assessment = assess(250, &[tracker("proxy 127.0.0.1:8443", 10, true)], true);
        assert_eq!(assessment.priority, 254);
        assert_eq!(assessment.reasons, ["proxy 127.0.0.1:8443 up (+10)"]);
    }

    #[test]
    fn the_address_owner_keeps_255_whatever_the_weights() {
        let down = assess(255, &[tracker("apiserver 10.0.0.1:6443", -50, false)], true);
        assert_eq!(down.priority, 255);
        // The weight is still shown: it is what the tracker would do.
        assert_eq!(down.reasons, ["apiserver 10.0.0.1:6443 down (-50)"]);
        let up = assess(255, &[tracker("proxy 127.0.0.1:8443", 10, true)], true);
        assert_eq!(up.priority, 255);
        // A fault tracker still faults the owner.
        let fault = assess(255, &[tracker("proxy 127.0.0.1:8443", 0, false)], true);
        assert_eq!(
            fault.fault,
            Some(FaultReason::Tracker("proxy 127.0.0.1:8443".into()))
        );
    }

    #[test]
    fn the_link_down_faults_before_any_tracker() {
        let trackers = [
            tracker("apiserver 10.0.0.1:6443", 0, false),
            tracker("proxy 127.0.0.1:8443", -20, false),
        ];
        let assessment = assess(100, &trackers, false);
        assert_eq!(assessment.fault, Some(FaultReason::InterfaceDown));
        // The weights still apply, for the status.
        assert_eq!(assessment.priority, 80);
        let alone = assess(100, &[], false);
        assert_eq!(alone.fault, Some(FaultReason::InterfaceDown));
    }
}
