//! Time as the state machine sees it: values handed in by the caller.
//!
//! The core never reads a clock. The IO shell turns its monotonic clock into
//! a [`Timestamp`] (time since an epoch it picks, e.g. process start) and a
//! simulation uses a virtual clock the same way.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: the time elapsed since an epoch the caller chooses.
///
/// Only differences between timestamps mean anything, so every timestamp fed
/// to one instance must come from the same clock and epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    pub const fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(since_epoch)
    }

    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(Duration::from_millis(millis))
    }

    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(Duration::from_micros(micros))
    }

    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0 + rhs)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates at the epoch.
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(rhs))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    /// Saturates at zero: timestamps from one clock are ordered, and a
    /// negative duration would only come from a caller bug.
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0.as_secs_f64())
    }
}

/// A VRRPv3 time interval: RFC 5798 §5.2.7 counts in centiseconds, 12 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centiseconds(pub u16);

impl Centiseconds {
    /// RFC 5798 §5.2.7: the field is 12 bits wide.
    pub const MAX: Centiseconds = Centiseconds(0x0fff);

    pub const fn to_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }
}

impl fmt::Display for Centiseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}cs", self.0)
    }
}

/// RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
///
/// Computed exactly in nanoseconds rather than in whole centiseconds: the
/// RFC gives the unit, not a rounding, and truncating to centiseconds would
/// make skews of neighbouring priorities collide at short intervals.
pub fn skew_time_v3(priority: u8, master_adver_interval: Duration) -> Duration {
    master_adver_interval * (256 - u32::from(priority)) / 256
}

/// RFC 3768 §6.1: Skew_Time = (256 - Priority) / 256 seconds, whatever the
/// advertisement interval.
pub fn skew_time_v2(priority: u8) -> Duration {
    Duration::from_secs(1) * (256 - u32::from(priority)) / 256
}

/// RFC 5798 §6.1 / RFC 3768 §6.1:
/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(master_adver_interval: Duration, skew_time: Duration) -> Duration {
    master_adver_interval * 3 + skew_time
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_and_master_down_match_the_rfc_examples() {
        // Priority 100, 1 s: (156 * 1 s) / 256 = 609.375 ms.
        let skew = skew_time_v3(100, Duration::from_secs(1));
        assert_eq!(skew, Duration::from_micros(609_375));
        assert_eq!(
            master_down_interval(Duration::from_secs(1), skew),
            Duration::from_micros(3_609_375)
        );
        // v2 skew ignores the interval.
        assert_eq!(skew_time_v2(100), Duration::from_micros(609_375));
        // The owner (255) has the smallest possible skew: 1/256 of the interval.
        assert_eq!(
            skew_time_v3(255, Duration::from_millis(100)),
            Duration::from_micros(390_625) / 1000
        );
    }

    #[test]
    fn centiseconds_convert() {
        assert_eq!(Centiseconds(100).to_duration(), Duration::from_secs(1));
        assert_eq!(
            Centiseconds::MAX.to_duration(),
            Duration::from_millis(40_950)
        );
    }
}
