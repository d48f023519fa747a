//! The states an instance is in (RFC 5798 §6.4, plus Fault) and why it
//! faults: shared by the instance, the receive checks and the trackers.

use std::fmt;

/// RFC 5798 §6.4, plus Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// §6.4.1: not started, or shut down.
    Initialize,
    /// §6.4.2: watching the master, ready to take over.
    Backup,
    /// §6.4.3: holding the virtual addresses and advertising.
    Master,
    /// Not an RFC state: unable or unfit to serve (see [`FaultReason`]).
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        })
    }
}

/// Why an instance is in Fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FaultReason {
    /// The interface lost its link or was set down.
    InterfaceDown,
    /// A tracker (health check, tracked interface) reported a fault.
    Tracker(String),
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultReason::InterfaceDown => f.write_str("interface down"),
            FaultReason::Tracker(name) => write!(f, "tracker {name} failed"),
        }
    }
}
