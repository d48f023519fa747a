//! Deterministic multi-router simulations of the VRRP state machine.
//!
//! `random_scenarios` runs thousands of seeded scenarios (starts, kills,
//! graceful shutdowns, partitions and heals, loss bursts, tracker faults and
//! priority changes, a tracker lowering the master below a backup, a fault
//! tracker failing on the master), a quarter of them in unicast mode. A
//! failure prints its seed; replay it with a trace:
//!
//! ```text
//! VIPD_SIM_SEED=0x2a cargo test -p vipd-core --test simulation -- --nocapture
//! ```

mod sim;

use std::time::Duration;

use sim::{Link, Rng, RouterSpec, Sim, host_address};
use vipd_core::vrrp::timer::{master_down_interval, skew_time_v2, skew_time_v3};
use vipd_core::vrrp::{Centiseconds, ChecksumMode, Config, Instance, State, Timestamp, Version};

/// Scenarios per `cargo test` run; each is a few hundred events.
const SCENARIOS: u64 = 3000;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Parameters of one scenario, drawn from its seed.
struct Scenario {
    sim: Sim,
    version: Version,
    /// The longest advertisement interval of any router (VRRPv3 routers may
    /// differ; backups learn the master's).
    max_interval: Duration,
    /// Every router preempts, so the winner is determined by priority.
    all_preempt: bool,
}

impl Scenario {
    fn new(seed: u64) -> Scenario {
        Scenario::with_followers(seed, None)
    }

    /// `followers`: Some(true) always adds mesh followers, Some(false)
    /// never, None as the seed draws.
    fn with_followers(seed: u64, followers: Option<bool>) -> Scenario {
        let mut rng = Rng::new(seed);
        let version = if rng.chance(300) {
            Version::V2
        } else {
            Version::V3
        };
        let interval = match version {
            Version::V2 => Centiseconds(100),
            Version::V3 => Centiseconds(rng.range(10, 100) as u16),
        };
        let mixed_intervals = version == Version::V3 && rng.chance(300);
        // Delays up to a tenth of the shortest interval (100 ms); loss comes
        // in bursts.
        let max_delay = rng.duration(Duration::ZERO, Duration::from_millis(10));
        let link = Link {
            min_delay: max_delay / 4,
            max_delay,
            loss_per_mille: 0,
        };
        let checksum_mode = if rng.chance(500) {
            ChecksumMode::Keepalived
        } else {
            ChecksumMode::Rfc9568
        };
        let mut sim = Sim::new(rng.next_u64(), link, checksum_mode);
        let count = rng.range(2, 5) as usize;
        // Shuffled host numbers so router index says nothing about address.
        let mut hosts: Vec<u8> = (1..=20).collect();
        for i in (1..hosts.len()).rev() {
            hosts.swap(i, rng.below(i as u64 + 1) as usize);
        }
        // IPv6 needs VRRPv3 (RFC 3768 is IPv4 only).
        let ipv6 = version == Version::V3 && rng.chance(300);
        let ties = rng.chance(250);
        let all_preempt = rng.chance(850);
        for &host in hosts.iter().take(count) {
            let priority = if ties {
                rng.pick(&[100, 150])
            } else if rng.chance(50) {
                255
            } else {
                rng.range(1, 254) as u8
            };
            let spec = RouterSpec {
                address: host_address(ipv6, host),
                priority,
                preempt: all_preempt || rng.chance(500),
            };
            let interval = if mixed_intervals {
                Centiseconds(rng.range(10, 100) as u16)
            } else {
                interval
            };
            sim.add_router(spec, version, interval);
        }
        // A quarter of the scenarios run unicast, every router peering with
        // the others (decided by the seed, not drawn, so the other draws
        // stay as they were).
        if seed % 4 == 1 {
            sim.use_unicast();
        }
        let max_interval = sim
            .routers
            .iter()
            .map(|r| r.config.advert_interval())
            .max()
            .unwrap_or_default();
        let add_followers = rng.chance(600);
        if followers.unwrap_or(add_followers) {
            let follower_interval =
                rng.duration(Duration::from_millis(100), Duration::from_secs(1));
            sim.add_followers(rng.range(1, 4) as u8, 100, follower_interval);
            let (misroute, stale) = follower_bounds(&sim, follower_interval, max_interval);
            sim.misroute_bound = misroute;
            sim.stale_bound = stale;
        }
        Scenario {
            sim,
            version,
            max_interval,
            all_preempt,
        }
    }

    /// Skew_Time of a backup of `priority` following `master`.
    fn skew(&self, priority: u8, master: usize) -> Duration {
        match self.version {
            Version::V2 => skew_time_v2(priority),
            Version::V3 => skew_time_v3(priority, self.interval_of(master)),
        }
    }

    /// Master_Down_Interval of a backup of `priority` following `master`.
    fn master_down(&self, priority: u8, master: usize) -> Duration {
        master_down_interval(self.interval_of(master), self.skew(priority, master))
    }

    fn interval_of(&self, router: usize) -> Duration {
        self.sim.routers[router].config.advert_interval()
    }

    /// Long enough for any disturbance to resolve: a preemption takes one
    /// Master_Down_Interval, the loser steps down on the next advert.
    fn settle_time(&self) -> Duration {
        self.sim.max_master_down_interval() * 2
            + self.max_interval * 2
            + self.sim.link.max_delay * 2
    }

    fn settle(&mut self) {
        let until = self.sim.now + self.settle_time();
        self.sim.run_until(until);
    }

    /// After settling: exactly one master per component that has a router
    /// able to serve, and (when everyone preempts) one of top priority.
    fn check_converged(&self, context: &str) -> Result<(), String> {
        let components: Vec<u8> = {
            let mut c: Vec<u8> = self.sim.routers.iter().map(|r| r.component).collect();
            c.sort_unstable();
            c.dedup();
            c
        };
        for component in components {
            let candidates = self.sim.candidates_in(component);
            let masters = self.sim.masters_in(component);
            if candidates.is_empty() {
                ensure!(masters.is_empty(), "{context}: master without candidates");
                continue;
            }
            ensure!(
                masters.len() == 1,
                "{context}: component {component} has masters {masters:?}"
            );
            if self.all_preempt {
                let master = masters[0];
                let top = self.sim.top_priority(&candidates).unwrap_or(0);
                let prio = self.sim.routers[master].instance.priority();
                ensure!(
                    prio == top,
                    "{context}: master r{master} has priority {prio}, top is {top}"
                );
            }
        }
        Ok(())
    }

    /// The live, non-faulted router with the highest priority, then address:
    /// who must win when everyone contends at once.
    fn expected_winner(&self, candidates: &[usize]) -> Option<usize> {
        candidates.iter().copied().max_by_key(|&i| {
            let r = &self.sim.routers[i];
            (r.instance.priority(), r.address)
        })
    }

    fn live(&self) -> Vec<usize> {
        (0..self.sim.routers.len())
            .filter(|&i| self.sim.routers[i].alive)
            .collect()
    }

    fn dead(&self) -> Vec<usize> {
        (0..self.sim.routers.len())
            .filter(|&i| !self.sim.routers[i].alive)
            .collect()
    }

    /// The one master, and the backup of its component expected to win
    /// when it goes; None without exactly one master or a candidate backup.
    fn master_and_best_backup(&self) -> Option<(usize, usize)> {
        let masters = self.sim.masters();
        let [master] = masters[..] else {
            return None;
        };
        let backups: Vec<usize> = self
            .sim
            .candidates_in(self.sim.routers[master].component)
            .into_iter()
            .filter(|&i| i != master)
            .collect();
        Some((master, self.expected_winner(&backups)?))
    }

    /// Kill the master (no priority 0); a backup takes over within the
    /// Master_Down_Interval of the best backup plus delivery delay.
    fn kill_master(&mut self) -> Result<(), String> {
        let Some((master, best)) = self.master_and_best_backup() else {
            return Ok(());
        };
        self.sim.kill(master);
        let best_priority = self.sim.routers[best].instance.priority();
        let killed_at = self.sim.now;
        // The best backup's timer was reset by the last advert, sent before
        // the kill and received at most max_delay after it.
        let bound = self.master_down(best_priority, master) + self.sim.link.max_delay;
        let taken = self
            .sim
            .run_until_or(killed_at + bound, |s| !s.masters().is_empty());
        ensure!(
            taken.is_some(),
            "no master within {bound:?} of killing r{master}"
        );
        Ok(())
    }

    /// Graceful shutdown of the master: a backup takes over within the best
    /// backup's Skew_Time plus delay (RFC 5798 §6.4.2, priority 0).
    fn shutdown_master(&mut self) -> Result<(), String> {
        let Some((master, best)) = self.master_and_best_backup() else {
            return Ok(());
        };
        self.sim.shutdown(master);
        let skew = self.skew(self.sim.routers[best].instance.priority(), master);
        let bound = skew + self.sim.link.max_delay;
        let start = self.sim.now;
        let taken = self
            .sim
            .run_until_or(start + bound, |s| !s.masters().is_empty());
        ensure!(
            taken.is_some(),
            "no master within {bound:?} (skew + delay) of shutting down r{master}"
        );
        ensure!(
            !self.sim.routers[master].holds_vip,
            "r{master} kept the VIP after a graceful shutdown"
        );
        Ok(())
    }

    /// A tracker with a negative weight fails on the master and lowers it
    /// below the best backup: with preemption, that backup takes over
    /// once its Master_Down_Timer (reset by the master's last advert at its
    /// old priority) runs out, and the master steps down on its advert.
    fn tracker_lowers_master(&mut self) -> Result<(), String> {
        let Some((master, best)) = self.master_and_best_backup() else {
            return Ok(());
        };
        let best_priority = self.sim.routers[best].instance.priority();
        // The weight replaces the tracker's former one: counted from the base.
        let base = self.sim.routers[master].base_priority;
        let below = i32::from(base) - i32::from(best_priority) + 1;
        let weight = -(below.max(1) + self.sim.rng.range(0, 20) as i32);
        self.sim
            .set_tracker(master, sim::WEIGHT_TRACKER, weight, false);
        let lowered = self.sim.routers[master].instance.priority();
        if base == 255 {
            // The owner keeps 255 whatever the weights (RFC 5798 §6.1).
            ensure!(lowered == 255, "the owner r{master} lowered to {lowered}");
            return Ok(());
        }
        ensure!(
            lowered < best_priority || lowered == 1,
            "r{master} at {lowered} after weight {weight}, best backup at {best_priority}"
        );
        if !self.all_preempt || lowered >= best_priority {
            return Ok(());
        }
        let bound = self.master_down(best_priority, master) + self.sim.link.max_delay * 3;
        let start = self.sim.now;
        // Of equal-priority backups, the first to time out wins (the other
        // accepts its advert, §6.4.2): any backup of the best priority.
        let taken = self.sim.run_until_or(start + bound, |s| {
            let masters = s.masters();
            masters.len() == 1
                && masters[0] != master
                && s.routers[masters[0]].instance.priority() == best_priority
        });
        ensure!(
            taken.is_some(),
            "no backup of priority {best_priority} preempted r{master} (lowered to {lowered}) within {bound:?}: masters {:?}",
            self.sim.masters()
        );
        Ok(())
    }

    /// A weight-0 tracker fails on the master: it sends priority 0 and
    /// releases the VIP at once; a backup takes over within its Skew_Time
    /// plus delay, as after a graceful stop.
    fn fault_tracker_fails_on_master(&mut self) -> Result<(), String> {
        let Some((master, best)) = self.master_and_best_backup() else {
            return Ok(());
        };
        self.sim.set_fault(master);
        ensure!(
            self.sim.routers[master].instance.state() == State::Fault,
            "r{master} in {} after its fault tracker failed",
            self.sim.routers[master].instance.state()
        );
        ensure!(
            !self.sim.routers[master].holds_vip,
            "r{master} kept the VIP in Fault"
        );
        let skew = self.skew(self.sim.routers[best].instance.priority(), master);
        let bound = skew + self.sim.link.max_delay;
        let start = self.sim.now;
        let taken = self
            .sim
            .run_until_or(start + bound, |s| !s.masters().is_empty());
        ensure!(
            taken.is_some(),
            "no master within {bound:?} (skew + delay) of r{master}'s fault tracker failing"
        );
        Ok(())
    }

    /// Split the live routers in two, let each side elect, heal, and expect
    /// one master again within Master_Down_Interval plus delay.
    fn partition_and_heal(&mut self) -> Result<(), String> {
        let live = self.live();
        if live.len() < 2 {
            return Ok(());
        }
        loop {
            for &i in &live {
                self.sim.routers[i].component = self.sim.rng.below(2) as u8;
            }
            let side = |c| {
                live.iter()
                    .filter(|&&i| self.sim.routers[i].component == c)
                    .count()
            };
            if side(0) > 0 && side(1) > 0 {
                break;
            }
        }
        self.settle();
        self.check_converged("during partition")?;
        let sides_masters = self.sim.masters();
        for router in &mut self.sim.routers {
            router.component = 0;
        }
        let healed_at = self.sim.now;
        // Each master hears the other within its interval; the loser steps
        // down at once. Master_Down_Interval (of the slowest) bounds that.
        let bound = self.max_interval * 3 + self.sim.link.max_delay;
        let single = self
            .sim
            .run_until_or(healed_at + bound, |s| s.masters().len() <= 1);
        ensure!(
            single.is_some(),
            "still {:?} masters {bound:?} after the partition healed",
            self.sim.masters()
        );
        self.settle();
        self.check_converged("after heal")?;
        if self.all_preempt {
            // Each side's master had its side's top priority, so the best of
            // them is the global top; two masters of equal priority meet and
            // the higher address stays (RFC 5798 §6.4.3).
            let expected = self.expected_winner(&sides_masters);
            let masters = self.sim.masters();
            ensure!(
                masters.first().copied() == expected,
                "after heal: masters {masters:?}, expected r{expected:?} of {sides_masters:?}"
            );
        }
        Ok(())
    }

    fn loss_burst(&mut self) {
        self.sim.link.loss_per_mille = self.sim.rng.range(50, 400);
        // Heavy loss can silence any master for a while: the followers'
        // bounds hold again from the end of the burst.
        self.sim.judging = false;
        let until = self.sim.now + self.settle_time();
        self.sim.run_until(until);
        self.sim.link.loss_per_mille = 0;
        self.sim.judging = true;
    }

    fn run(&mut self) -> Result<(), String> {
        // Start everyone at random times within two intervals.
        let count = self.sim.routers.len();
        let mut starts: Vec<(Timestamp, usize)> = (0..count)
            .map(|i| {
                let at = self.sim.rng.duration(Duration::ZERO, self.max_interval * 2);
                (Timestamp::from_duration(at), i)
            })
            .collect();
        starts.sort();
        for (at, i) in starts {
            self.sim.run_until(at);
            self.sim.start(i);
        }
        self.settle();
        self.check_converged("after startup")?;

        let events = self.sim.rng.range(3, 8);
        for n in 0..events {
            let event = self.sim.rng.below(10);
            let live = self.live();
            match event {
                0 if live.len() > 1 => self.kill_master()?,
                1 if live.len() > 1 => self.shutdown_master()?,
                2 => self.partition_and_heal()?,
                3 => {
                    if let Some(&i) = self.dead().first() {
                        self.sim.start(i);
                    }
                }
                4 => self.loss_burst(),
                5 => {
                    let i = self.sim.rng.pick(&live);
                    let priority = self.sim.rng.range(1, 254) as u8;
                    self.sim.set_priority(i, priority);
                }
                6 => {
                    let i = self.sim.rng.pick(&live);
                    if self.sim.routers[i].instance.state() == State::Fault {
                        self.sim.clear_fault(i);
                    } else if self.sim.candidates_in(0).len() > 1 {
                        self.sim.set_fault(i);
                    }
                }
                8 if live.len() > 1 => self.tracker_lowers_master()?,
                9 if live.len() > 1 => self.fault_tracker_fails_on_master()?,
                _ => {
                    // Every tracker healthy again: the cluster heals.
                    for i in live {
                        self.sim.heal_trackers(i);
                    }
                }
            }
            if let Some(v) = self.sim.violation.take() {
                return Err(format!("event {n}: {v}"));
            }
            self.settle();
            self.check_converged(&format!("after event {n} ({event})"))?;
        }
        if let Some(v) = self.sim.violation.take() {
            return Err(v);
        }
        Ok(())
    }
}

/// The bounds every follower is held to (see `sim::Judge`), from the
/// follower module's rules:
/// - misrouted (a reachable master holds the VIP, the follower routes it
///   elsewhere): a takeover from a dead master needs the holders'
///   Master_Down_Interval, and the follower needs the dead master overdue
///   (1.25 follower periods after its last advert); each after a delivery.
/// - stale (no reachable master, the follower still routes to a dead or
///   cut-off holder): Master_Down_Interval of the follower period, at most
///   4 periods, after the last delivery.
fn follower_bounds(
    sim: &Sim,
    follower_interval: Duration,
    max_interval: Duration,
) -> (Duration, Duration) {
    let period = follower_interval.max(max_interval);
    let delay = sim.link.max_delay;
    let misroute = sim.max_master_down_interval().max(period * 5 / 4) + delay * 2;
    let stale = period * 4 + delay * 2;
    (misroute, stale)
}

fn run_seed(seed: u64, verbose: bool) -> Result<u64, (String, String)> {
    run_scenario(Scenario::new(seed), verbose)
}

fn run_scenario(mut scenario: Scenario, verbose: bool) -> Result<u64, (String, String)> {
    scenario.sim.verbose = verbose;
    match scenario.run() {
        Ok(()) => Ok(scenario.sim.delivered),
        Err(e) => {
            let state = format!("{}{}", scenario.sim.describe(), scenario.sim.trace);
            Err((e, state))
        }
    }
}

#[test]
fn random_scenarios() {
    if let Ok(seed) = std::env::var("VIPD_SIM_SEED") {
        let seed = seed.trim_start_matches("0x");
        let seed = u64::from_str_radix(seed, 16).expect("VIPD_SIM_SEED is hex");
        match run_seed(seed, true) {
            Ok(delivered) => println!("seed {seed:#x} passed ({delivered} adverts delivered)"),
            Err((e, state)) => panic!("seed {seed:#x}: {e}\n{state}"),
        }
        return;
    }
    let mut delivered = 0;
    for seed in 0..SCENARIOS {
        match run_seed(seed, false) {
            Ok(n) => delivered += n,
            Err((e, state)) => panic!(
                "seed {seed:#x} failed: {e}\n{state}\nreplay: VIPD_SIM_SEED={seed:#x} \
                 cargo test -p vipd-core --test simulation random_scenarios -- --nocapture"
            ),
        }
    }
    assert!(
        delivered > SCENARIOS * 100,
        "suspiciously few adverts: {delivered}"
    );
}

/// Every scenario with mesh followers: kills, graceful stops, partitions,
/// loss, faults and priority changes; no follower (nor holder) routes the
/// VIP wrong for longer than the bounds of `follower_bounds`. Prints the
/// longest wrong routes seen, the figures docs/benchmarks.md quotes.
#[test]
fn followers_route_to_the_master_within_the_bound() {
    let (mut worst_misrouted, mut worst_stale) = (Duration::ZERO, Duration::ZERO);
    let (mut worst_misrouted_ratio, mut wrong_routes) = (0.0f64, 0u32);
    for seed in 0..1000 {
        let scenario = Scenario::with_followers(seed, Some(true));
        let bound = scenario.sim.misroute_bound;
        let mut scenario = scenario;
        let result = scenario.run();
        if let Err(e) = result {
            panic!(
                "seed {seed:#x} with followers failed: {e}\n{}",
                scenario.sim.describe()
            );
        }
        let (misrouted, stale) = scenario.sim.worst_routes();
        wrong_routes += u32::from(misrouted > Duration::ZERO);
        worst_misrouted = worst_misrouted.max(misrouted);
        worst_stale = worst_stale.max(stale);
        worst_misrouted_ratio =
            worst_misrouted_ratio.max(misrouted.as_secs_f64() / bound.as_secs_f64());
    }
    println!(
        "followers: longest misroute {worst_misrouted:?} ({:.0}% of its bound), longest stale route {worst_stale:?}, {wrong_routes} of 1000 scenarios had one",
        worst_misrouted_ratio * 100.0
    );
    // The judge saw failovers (a test that could not fail would see none).
    assert!(
        wrong_routes > 100,
        "only {wrong_routes} scenarios moved a follower"
    );
}

fn two_routers(first: RouterSpec, second: RouterSpec, link: Link) -> Sim {
    let mut sim = Sim::new(7, link, ChecksumMode::Keepalived);
    for spec in [first, second] {
        sim.add_router(spec, Version::V3, Centiseconds(100));
    }
    sim
}

fn spec(host: u8, priority: u8) -> RouterSpec {
    RouterSpec {
        address: host_address(false, host),
        priority,
        preempt: true,
    }
}

const LAN: Link = Link {
    min_delay: Duration::from_micros(100),
    max_delay: Duration::from_micros(300),
    loss_per_mille: 0,
};

#[test]
fn equal_priorities_starting_together_elect_the_higher_address() {
    // RFC 5798 §6.4.3: two masters of equal priority, the higher address
    // stays. Started at the same instant, both time out together.
    let mut sim = two_routers(spec(9, 100), spec(20, 100), LAN);
    sim.start(0);
    sim.start(1);
    sim.run_until(Timestamp::from_millis(20_000));
    assert_eq!(sim.masters(), vec![1]);
}

#[test]
fn a_designated_successor_starting_with_the_master_does_not_win_the_first_round() {
    // The designated successor skips Skew_Time only once it has heard the
    // master it succeeds: started at the same instant as a better router,
    // it keeps the RFC skew, the better router's shorter one expires
    // first, and the successor never becomes master (no flap of the VIP).
    let mut sim = two_routers(spec(9, 150), spec(20, 100), LAN);
    let successor = Config {
        designated_successor: true,
        ..sim.routers[1].config.clone()
    };
    sim.routers[1].instance = Instance::new(successor.clone()).unwrap();
    sim.routers[1].config = successor;
    sim.start(0);
    sim.start(1);
    let flapped = sim.run_until_or(Timestamp::from_millis(10_000), |sim| {
        sim.routers[1].instance.state() == State::Master
    });
    assert_eq!(flapped, None, "the successor took the VIP at start");
    assert_eq!(sim.masters(), vec![0]);
    // Once it has heard the master, the shortcut is on: a crash of the
    // master is taken over within 3 intervals, with no skew.
    assert_eq!(sim.routers[1].instance.skew_time(), Duration::ZERO);
    sim.kill(0);
    let killed = Timestamp::from_millis(10_000);
    let took = sim
        .run_until_or(Timestamp::from_millis(20_000), |sim| sim.masters() == [1])
        .expect("the successor takes over");
    let after = took.saturating_duration_since(killed);
    assert!(
        after <= Duration::from_millis(3_000),
        "took {after:?}, more than 3 intervals after the last advert"
    );
}

#[test]
fn an_equal_priority_master_keeps_the_role() {
    // RFC 5798 §6.4.2: a backup accepts adverts of priority >= its own, so
    // the address tie-break only applies when two masters meet.
    let mut sim = two_routers(spec(9, 100), spec(20, 100), LAN);
    sim.start(0);
    sim.run_until(Timestamp::from_millis(5_000));
    sim.start(1);
    sim.run_until(Timestamp::from_millis(20_000));
    assert_eq!(sim.masters(), vec![0]);
}

/// Failover times comparable with keepalived's measured ones (README of the
/// vectors: v3, 1 s adverts: SIGKILL → 3.37 s, SIGTERM → 0.61 s).
#[test]
fn failover_times_match_the_rfc_arithmetic() {
    let mut sim = two_routers(spec(1, 150), spec(2, 100), LAN);
    sim.start(0);
    sim.start(1);
    sim.run_until(Timestamp::from_millis(10_000));
    assert_eq!(sim.masters(), vec![0]);

    // SIGKILL: Master_Down_Interval of the backup, 3 s + 156/256 s, counted
    // from the last advert it heard (up to one interval before the kill).
    sim.kill(0);
    let killed = sim.now;
    let taken = sim
        .run_until_or(killed + Duration::from_secs(5), |s| !s.masters().is_empty())
        .expect("backup took over");
    let took = taken - killed;
    assert!(
        took > Duration::from_millis(2_600) && took <= Duration::from_millis(3_610),
        "{took:?}"
    );

    // Restart r0 (priority 150): it preempts r1 within its own
    // Master_Down_Interval, 3 s + 106/256 s.
    sim.start(0);
    let started = sim.now;
    let taken = sim
        .run_until_or(started + Duration::from_secs(5), |s| s.masters() == vec![0])
        .expect("r0 preempted");
    assert!(
        taken - started <= Duration::from_millis(3_500),
        "{:?}",
        taken - started
    );

    // SIGTERM: priority 0, the backup waits only its Skew_Time, 156/256 s.
    sim.run_until(sim.now + Duration::from_secs(3));
    sim.shutdown(0);
    let stopped = sim.now;
    let taken = sim
        .run_until_or(stopped + Duration::from_secs(5), |s| {
            !s.masters().is_empty()
        })
        .expect("backup took over");
    let took = taken - stopped;
    assert!(
        took >= Duration::from_millis(609) && took <= Duration::from_millis(610),
        "{took:?}"
    );
}

#[test]
fn preempt_off_keeps_the_current_master() {
    let mut low = spec(1, 100);
    low.preempt = false;
    let mut high = spec(2, 200);
    high.preempt = false;
    let mut sim = two_routers(low, high, LAN);
    sim.start(0);
    sim.run_until(Timestamp::from_millis(5_000));
    assert_eq!(sim.masters(), vec![0]);
    sim.start(1);
    sim.run_until(Timestamp::from_millis(30_000));
    assert_eq!(sim.masters(), vec![0], "a non-preempting backup took over");
}

#[test]
fn dueling_masters_resolve_on_the_first_exchange() {
    // RFC 9568 §6.4.3: the higher master answers a lower one at once, so a
    // healed partition resolves on the lower master's next advert (0.1 s
    // here), not the higher master's (5 s).
    let mut sim = Sim::new(7, LAN, ChecksumMode::Keepalived);
    sim.add_router(spec(1, 150), Version::V3, Centiseconds(500));
    sim.add_router(spec(2, 100), Version::V3, Centiseconds(10));
    sim.routers[1].component = 1;
    sim.start(0);
    sim.start(1);
    sim.run_until(Timestamp::from_millis(30_000));
    assert_eq!(sim.masters(), vec![0, 1]);
    sim.routers[1].component = 0;
    let healed = sim.now;
    let single = sim
        .run_until_or(healed + Duration::from_secs(10), |s| s.masters() == vec![0])
        .expect("resolved");
    assert!(
        single - healed <= Duration::from_millis(100) + LAN.max_delay * 2,
        "{:?}",
        single - healed
    );
}

#[test]
fn unicast_routers_ignore_a_router_missing_from_their_peers() {
    let three = || {
        let mut sim = Sim::new(7, LAN, ChecksumMode::Keepalived);
        for (host, priority) in [(1, 150), (2, 100), (3, 200)] {
            sim.add_router(spec(host, priority), Version::V3, Centiseconds(100));
        }
        sim.use_unicast();
        sim
    };
    // All peers of each other: the highest priority wins.
    let mut sim = three();
    (0..3).for_each(|i| sim.start(i));
    sim.run_until(Timestamp::from_millis(20_000));
    assert_eq!(sim.masters(), vec![2]);

    // r2 is missing from r0's and r1's peers: they never hear it, elect
    // r0 among themselves, and r2 (hearing only lower priorities) stays
    // master on its own.
    let mut sim = three();
    let r2 = sim.routers[2].address;
    for i in 0..2 {
        let peers = sim.routers[i].config.unicast_peers.as_mut().unwrap();
        peers.retain(|&a| a != r2);
    }
    (0..3).for_each(|i| sim.start(i));
    sim.run_until(Timestamp::from_millis(20_000));
    assert_eq!(sim.violation, None);
    assert_eq!(sim.masters(), vec![0, 2]);
    let r1_master = sim.routers[1].instance.master().map(|m| m.address);
    assert_eq!(r1_master, Some(sim.routers[0].address));
    assert!(
        sim.routers[0].not_a_peer > 10,
        "{}",
        sim.routers[0].not_a_peer
    );
    assert!(
        sim.routers[1].not_a_peer > 10,
        "{}",
        sim.routers[1].not_a_peer
    );
    assert_eq!(sim.routers[2].not_a_peer, 0);
}
