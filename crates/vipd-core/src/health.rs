//! Rise/fall thresholds: a target flips only after enough consecutive results.
//!
//! HAProxy's `rise`/`fall` and keepalived's tracker `rise`/`fall` behave this
//! way: one lost probe never takes a backend out, one lucky probe never brings
//! a dead one back. Every health check in vipd (proxy backends, DNAT targets,
//! VRRP trackers) feeds its results through [`HealthState::record`].

/// How many consecutive results it takes to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes that bring a down target up. At least 1.
    pub rise: u32,
    /// Consecutive failures that take an up target down. At least 1.
    pub fall: u32,
}

impl Thresholds {
    /// Thresholds with `rise` and `fall` clamped to at least 1 (a threshold of
    /// 0 would flip on no evidence at all; the config check rejects it first).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }
}

/// The state a target is in, as far as the checks can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Down,
}

/// A change of state that a result caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
    /// How many consecutive results of the new kind caused it.
    pub after: u32,
}

/// The threshold logic for one target.
#[derive(Debug, Clone)]
pub struct HealthState {
    thresholds: Thresholds,
    health: Health,
    /// Consecutive results that disagree with `health`, counting toward a flip.
    streak: u32,
}

impl HealthState {
    /// A target starting in `initial`. Proxies usually start targets `Up` so
    /// traffic flows before the first check completes; trackers that must not
    /// claim health they have not seen start `Down`.
    pub fn new(thresholds: Thresholds, initial: Health) -> Self {
        Self {
            thresholds,
            health: initial,
            streak: 0,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn is_up(&self) -> bool {
        self.health == Health::Up
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Changes the thresholds (on reload) without forgetting the state or
    /// the streak so far.
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = Thresholds::new(thresholds.rise, thresholds.fall);
    }

    /// Feeds one check result; returns the transition if this result completed one.
    pub fn record(&mut self, success: bool) -> Option<Transition> {
        let (agrees, needed, next) = match self.health {
            Health::Up => (success, self.thresholds.fall, Health::Down),
            Health::Down => (!success, self.thresholds.rise, Health::Up),
        };
        if agrees {
            // A result that confirms the current state breaks any streak.
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < needed {
            return None;
        }
        let transition = Transition {
            from: self.health,
            to: next,
            after: self.streak,
        };
        self.health = next;
        self.streak = 0;
        Some(transition)
    }
}

impl HealthState {
    /// Takes the target down at once on passive evidence (traffic it failed,
    /// see [`ErrorLimit`]), as HAProxy's `on-error mark-down` does; only
    /// `rise` consecutive successful checks bring it back. None if it was
    /// already down.
    pub fn mark_down(&mut self) -> Option<Transition> {
        if self.health == Health::Down {
            // Evidence against a down target breaks any streak toward up.
            self.streak = 0;
            return None;
        }
        self.health = Health::Down;
        self.streak = 0;
        Some(Transition {
            from: Health::Up,
            to: Health::Down,
            after: 1,
        })
    }
}

/// Passive health: consecutive errors seen in live traffic (connects a
/// target left unanswered) against a limit, reset by any success.
///
/// HAProxy's `observe layer4` with `error-limit` works this way. Unlike
/// [`HealthState`] it only ever says "too many": bringing a target back is
/// the active checks' job.
#[derive(Debug, Clone)]
pub struct ErrorLimit {
    limit: u32,
    streak: u32,
}

impl ErrorLimit {
    /// `limit` consecutive errors trip it; at least 1.
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            streak: 0,
        }
    }

    /// Counts one error; true when this one reaches the limit (the streak
    /// then starts again, so a target that stays bad trips it every
    /// `limit` errors).
    pub fn error(&mut self) -> bool {
        self.streak += 1;
        if self.streak >= self.limit {
            self.streak = 0;
            return true;
        }
        false
    }

    /// A success breaks the streak.
    pub fn success(&mut self) {
        self.streak = 0;
    }

    pub fn streak(&self) -> u32 {
        self.streak
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(rise: u32, fall: u32, initial: Health) -> HealthState {
        HealthState::new(Thresholds::new(rise, fall), initial)
    }

    #[test]
    fn goes_down_after_exactly_fall_failures() {
        let mut s = state(2, 3, Health::Up);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(false), None);
        let t = s.record(false).expect("third failure flips");
        assert_eq!((t.from, t.to, t.after), (Health::Up, Health::Down, 3));
        assert!(!s.is_up());
    }

    #[test]
    fn a_success_in_between_resets_the_failure_streak() {
        let mut s = state(2, 3, Health::Up);
        s.record(false);
        s.record(false);
        s.record(true);
        s.record(false);
        s.record(false);
        assert!(s.is_up(), "only two consecutive failures since the success");
        assert!(s.record(false).is_some());
    }

    #[test]
    fn comes_back_after_exactly_rise_successes() {
        let mut s = state(2, 3, Health::Down);
        assert_eq!(s.record(true), None);
        let t = s.record(true).expect("second success flips");
        assert_eq!((t.from, t.to), (Health::Down, Health::Up));
    }

    #[test]
    fn zero_thresholds_are_treated_as_one() {
        let mut s = state(0, 0, Health::Up);
        assert!(s.record(false).is_some());
        assert!(s.record(true).is_some());
    }

    #[test]
    fn new_thresholds_keep_the_streak() {
        let mut s = state(1, 5, Health::Up);
        s.record(false);
        s.record(false);
        s.set_thresholds(Thresholds::new(1, 3));
        assert!(s.record(false).is_some(), "third failure under fall = 3");
    }

    #[test]
    fn mark_down_is_immediate_and_rise_brings_it_back() {
        let mut s = state(2, 3, Health::Up);
        s.record(false);
        let t = s.mark_down().expect("up -> down at once");
        assert_eq!((t.from, t.to), (Health::Up, Health::Down));
        assert_eq!(s.mark_down(), None, "already down");
        assert_eq!(s.record(true), None);
        s.mark_down();
        assert_eq!(
            s.record(true),
            None,
            "the evidence restarted the rise streak"
        );
        assert!(s.record(true).is_some());
        assert!(s.is_up());
    }

    #[test]
    fn error_limit_trips_on_consecutive_errors_only() {
        let mut e = ErrorLimit::new(3);
        assert!(!e.error());
        assert!(!e.error());
        e.success();
        assert!(!e.error());
        assert!(!e.error());
        assert!(e.error(), "third in a row");
        assert_eq!(e.streak(), 0);
        assert!(ErrorLimit::new(0).error(), "a limit of 0 is 1");
    }

    proptest! {
        /// Whatever the sequence, the state only changes at the end of a run of
        /// `fall` failures (from up) or `rise` successes (from down).
        #[test]
        fn flips_only_after_a_full_streak(
            rise in 1u32..6, fall in 1u32..6,
            results in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let mut s = state(rise, fall, Health::Up);
            for (i, &ok) in results.iter().enumerate() {
                let before = s.health();
                let t = s.record(ok);
                let needed = if before == Health::Up { fall } else { rise } as usize;
                let streak_of_opposite = results[..=i]
                    .iter()
                    .rev()
                    .take_while(|&&r| r == (before == Health::Down))
                    .count();
                prop_assert_eq!(t.is_some(), streak_of_opposite == needed);
                match t {
                    Some(t) => prop_assert_eq!((t.from, s.health()), (before, t.to)),
                    None => prop_assert_eq!(s.health(), before),
                }
            }
        }
    }
}
