//! The mesh follower's rules (vipd_core::vrrp::follower), one test each,
//! and the master's side: the adverts it sends its followers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vipd_core::vrrp::{
    Action, Advertisement, Centiseconds, Config, ConfigError, Follower, FollowerAction,
    FollowerConfig, Instance, Rejected, Route, RouteReason, State, Timestamp, Version,
    VersionFields,
};

const HOLDER_A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1));
const HOLDER_B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2));
const WORKER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 20));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 99));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 100));
/// The follower interval of these tests.
const INTERVAL: Duration = Duration::from_millis(500);

fn ms(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn follower() -> Follower {
    Follower::new(FollowerConfig {
        vrid: 51,
        version: Version::V3,
        virtual_addresses: vec![VIP],
        holders: vec![HOLDER_A, HOLDER_B],
        interval: INTERVAL,
        own_address: None,
    })
}

/// A VRRPv3 advert at 100 ms, as a vipd holder sends it.
fn advert(priority: u8) -> Advertisement {
    Advertisement {
        vrid: 51,
        priority,
        addresses: vec![VIP],
        fields: VersionFields::V3 {
            max_advert_interval: Centiseconds(10),
        },
    }
}

fn routes(follower: &mut Follower) -> Vec<(Route, Route, RouteReason)> {
    std::iter::from_fn(|| follower.poll_action())
        .map(|FollowerAction::Route { from, to, reason }| (from, to, reason))
        .collect()
}

/// Feeds `follower` an advert from `holder` every `every` ms from `from`
/// to `until` (exclusive), firing its timers in between, as a driver would.
fn hear_every(
    follower: &mut Follower,
    holder: IpAddr,
    priority: u8,
    from: u64,
    until: u64,
    every: u64,
) {
    let mut t = from;
    while t < until {
        run_timers(follower, t);
        follower
            .handle_advert(ms(t), holder, &advert(priority))
            .unwrap();
        t += every;
    }
}

/// Fires every timer due up to `until`.
fn run_timers(follower: &mut Follower, until: u64) {
    while let Some(due) = follower.next_timeout() {
        if due > ms(until) {
            break;
        }
        follower.handle_timeout(due);
    }
}

#[test]
fn the_first_master_heard_gets_the_vip() {
    let mut f = follower();
    assert_eq!(f.route(), Route::Nowhere);
    f.handle_advert(ms(0), HOLDER_A, &advert(150)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
    assert_eq!(
        routes(&mut f),
        [(
            Route::Nowhere,
            Route::Holder(HOLDER_A),
            RouteReason::MasterHeard
        )]
    );
    // The same master again changes nothing.
    f.handle_advert(ms(500), HOLDER_A, &advert(150)).unwrap();
    assert!(routes(&mut f).is_empty());
}

#[test]
fn only_holders_of_the_file_are_followed() {
    let mut f = follower();
    assert_eq!(
        f.handle_advert(ms(0), STRANGER, &advert(254)),
        Err(Rejected::NotAHolder)
    );
    assert_eq!(Rejected::NotAHolder.reason(), "not_a_holder");
    assert_eq!(f.route(), Route::Nowhere);
    assert!(routes(&mut f).is_empty());
}

#[test]
fn the_receive_checks_of_rfc_5798_7_1_apply() {
    let mut f = follower();
    let mut wrong_vrid = advert(150);
    wrong_vrid.vrid = 52;
    assert_eq!(
        f.handle_advert(ms(0), HOLDER_A, &wrong_vrid),
        Err(Rejected::WrongVrid { received: 52 })
    );
    let mut wrong_list = advert(150);
    wrong_list.addresses = vec![STRANGER];
    assert_eq!(
        f.handle_advert(ms(0), HOLDER_A, &wrong_list),
        Err(Rejected::AddressListMismatch)
    );
    let v2 = Advertisement {
        fields: VersionFields::V2 {
            advert_interval_secs: 1,
            auth: vipd_core::vrrp::Auth::None,
        },
        ..advert(150)
    };
    assert_eq!(
        f.handle_advert(ms(0), HOLDER_A, &v2),
        Err(Rejected::WrongVersion {
            received: Version::V2
        })
    );
    assert_eq!(f.route(), Route::Nowhere);
}

#[test]
fn a_holder_does_not_follow_its_own_adverts() {
    let mut f = Follower::new(FollowerConfig {
        own_address: Some(HOLDER_A),
        ..follower().config().clone()
    });
    assert_eq!(
        f.handle_advert(ms(0), HOLDER_A, &advert(150)),
        Err(Rejected::OwnAdvert)
    );
}

#[test]
fn of_two_masters_the_higher_priority_wins_whatever_the_order() {
    for first in [HOLDER_A, HOLDER_B] {
        let mut f = follower();
        let (high, low) = (HOLDER_A, HOLDER_B);
        let priority = |h: IpAddr| if h == high { 200 } else { 100 };
        let second = if first == high { low } else { high };
        f.handle_advert(ms(0), first, &advert(priority(first)))
            .unwrap();
        f.handle_advert(ms(10), second, &advert(priority(second)))
            .unwrap();
        assert_eq!(f.route(), Route::Holder(high), "first heard: {first}");
        // Both keep advertising (a partition between the holders): the
        // answer stays.
        for t in (500..5000).step_by(500) {
            f.handle_advert(ms(t), low, &advert(100)).unwrap();
            f.handle_advert(ms(t + 5), high, &advert(200)).unwrap();
            run_timers(&mut f, t + 5);
            assert_eq!(f.route(), Route::Holder(high));
        }
    }
}

#[test]
fn equal_priorities_go_to_the_higher_address() {
    let mut f = follower();
    f.handle_advert(ms(0), HOLDER_B, &advert(150)).unwrap();
    f.handle_advert(ms(1), HOLDER_A, &advert(150)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_B));
    let mut f = follower();
    f.handle_advert(ms(0), HOLDER_A, &advert(150)).unwrap();
    f.handle_advert(ms(1), HOLDER_B, &advert(150)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_B));
    assert_eq!(
        routes(&mut f).last().map(|r| r.2),
        Some(RouteReason::HigherPriority)
    );
}

#[test]
fn a_lower_master_takes_over_once_the_former_one_misses_its_advert() {
    let mut f = follower();
    hear_every(&mut f, HOLDER_A, 200, 0, 1001, 500);
    // A dies right after its advert at 1000 ms; B took over at 1300 ms
    // (its VRRP Master_Down_Interval) and sends its burst.
    f.handle_advert(ms(1300), HOLDER_B, &advert(100)).unwrap();
    assert_eq!(
        f.route(),
        Route::Holder(HOLDER_A),
        "A is not overdue yet: it may be alive (holders partitioned)"
    );
    // A's advert was due at 1500 ms; with a quarter interval of grace it
    // is overdue at 1625 ms, and B wins then.
    let due = f.next_timeout().unwrap();
    assert_eq!(due, ms(1625));
    f.handle_timeout(due);
    assert_eq!(f.route(), Route::Holder(HOLDER_B));
    assert_eq!(
        routes(&mut f).last().copied(),
        Some((
            Route::Holder(HOLDER_A),
            Route::Holder(HOLDER_B),
            RouteReason::FormerMasterOverdue
        ))
    );
    // A comes back as master (preempting): the higher priority wins at once.
    f.handle_advert(ms(4000), HOLDER_A, &advert(200)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
}

#[test]
fn a_lost_advert_alone_moves_nothing() {
    let mut f = follower();
    f.handle_advert(ms(0), HOLDER_A, &advert(200)).unwrap();
    // The advert at 500 ms is lost; nobody else advertises.
    run_timers(&mut f, 999);
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
    f.handle_advert(ms(1000), HOLDER_A, &advert(200)).unwrap();
    assert_eq!(routes(&mut f).len(), 1, "only the first route");
}

#[test]
fn priority_zero_keeps_the_vip_on_the_leaving_master_until_the_next_advert() {
    let mut f = follower();
    hear_every(&mut f, HOLDER_A, 200, 0, 1001, 500);
    routes(&mut f);
    f.handle_advert(ms(1100), HOLDER_A, &advert(0)).unwrap();
    assert_eq!(
        f.route(),
        Route::Holder(HOLDER_A),
        "make before break: the leaving master keeps the VIP until its successor is heard"
    );
    assert!(routes(&mut f).is_empty());
    // The successor, lower in priority, takes over Skew_Time later.
    f.handle_advert(ms(1150), HOLDER_B, &advert(100)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_B));
    assert_eq!(
        routes(&mut f),
        [(
            Route::Holder(HOLDER_A),
            Route::Holder(HOLDER_B),
            RouteReason::FormerMasterLeft
        )]
    );
}

#[test]
fn a_master_silent_for_master_down_interval_is_no_longer_trusted() {
    let mut f = follower();
    f.handle_advert(ms(0), HOLDER_A, &advert(200)).unwrap();
    routes(&mut f);
    // §6.1: 3 × 500 ms + Skew_Time ((256 - 200) / 256 of 500 ms).
    let master_down = Timestamp::from_duration(INTERVAL * 3 + INTERVAL * 56 / 256);
    f.handle_timeout(master_down - Duration::from_micros(1));
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
    f.handle_timeout(master_down);
    assert_eq!(f.route(), Route::Nowhere);
    assert_eq!(
        routes(&mut f),
        [(
            Route::Holder(HOLDER_A),
            Route::Nowhere,
            RouteReason::MasterSilent
        )]
    );
    assert!(f.next_timeout().is_none());
}

#[test]
fn a_leaving_master_with_no_successor_expires_too() {
    let mut f = follower();
    f.handle_advert(ms(0), HOLDER_A, &advert(200)).unwrap();
    f.handle_advert(ms(100), HOLDER_A, &advert(0)).unwrap();
    run_timers(&mut f, 10_000);
    assert_eq!(f.route(), Route::Nowhere);
}

#[test]
fn a_slower_master_is_judged_by_its_own_interval() {
    // keepalived, advert_int 1 s, during a migration: it sends every
    // follower its ordinary adverts.
    let mut f = follower();
    let slow = Advertisement {
        fields: VersionFields::V3 {
            max_advert_interval: Centiseconds(100),
        },
        ..advert(200)
    };
    for t in (0..10_000).step_by(1000) {
        run_timers(&mut f, t);
        f.handle_advert(ms(t), HOLDER_A, &slow).unwrap();
        assert_eq!(f.route(), Route::Holder(HOLDER_A));
    }
    assert_eq!(routes(&mut f).len(), 1);
}

#[test]
fn on_a_holder_the_local_master_routes_the_vip_to_no_peer() {
    let mut f = Follower::new(FollowerConfig {
        own_address: Some(HOLDER_B),
        interval: Duration::from_millis(100),
        ..follower().config().clone()
    });
    f.handle_advert(ms(0), HOLDER_A, &advert(200)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
    f.set_local_master(ms(400), true);
    assert_eq!(f.route(), Route::Local);
    // Adverts heard while master (a partition heals) do not move it.
    f.handle_advert(ms(500), HOLDER_A, &advert(200)).unwrap();
    assert_eq!(f.route(), Route::Local);
    f.set_local_master(ms(510), false);
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
    let all = routes(&mut f);
    assert_eq!(
        all.iter().map(|r| r.2).collect::<Vec<_>>(),
        [
            RouteReason::MasterHeard,
            RouteReason::LocalState,
            RouteReason::LocalState
        ]
    );
}

#[test]
fn a_reload_that_removes_a_holder_stops_following_it() {
    let mut f = follower();
    f.handle_advert(ms(0), HOLDER_B, &advert(200)).unwrap();
    f.handle_advert(ms(1), HOLDER_A, &advert(100)).unwrap();
    assert_eq!(f.route(), Route::Holder(HOLDER_B));
    let config = FollowerConfig {
        holders: vec![HOLDER_A],
        ..f.config().clone()
    };
    f.reconfigure(ms(2), config);
    assert_eq!(f.route(), Route::Holder(HOLDER_A));
}

// ---- the master's side -------------------------------------------------

fn holder_config(priority: u8) -> Config {
    Config {
        priority,
        advert_interval: Centiseconds(10),
        reannounce_after: None,
        followers: vec![WORKER],
        follower_interval: INTERVAL,
        follower_burst: 3,
        follower_burst_spacing: Duration::from_millis(10),
        ..Config::new(51, HOLDER_A, vec![VIP])
    }
}

/// Runs `instance` alone until `until`, returning when each advert to the
/// followers went out and with which priority.
fn follower_adverts(instance: &mut Instance, until: u64) -> Vec<(u64, u8)> {
    let mut sent = Vec::new();
    let mut now = ms(0);
    loop {
        while let Some(action) = instance.poll_action() {
            if let Action::SendToFollowers(advert) = action {
                sent.push((now.since_epoch().as_millis() as u64, advert.priority));
            }
        }
        match instance.next_timeout() {
            Some(due) if due <= ms(until) => {
                now = due;
                instance.handle_timeout(due);
            }
            _ => return sent,
        }
    }
}

#[test]
fn a_new_master_bursts_to_its_followers_then_slows_down() {
    let mut instance = Instance::new(holder_config(150)).unwrap();
    instance.startup(ms(0));
    let sent = follower_adverts(&mut instance, 2000);
    assert_eq!(instance.state(), State::Master);
    let took_over = sent[0].0;
    let times: Vec<u64> = sent.iter().map(|(t, _)| t - took_over).collect();
    // The burst of 3, 10 ms apart, then every 500 ms.
    assert_eq!(&times[..5], [0, 10, 20, 520, 1020]);
    assert!(sent.iter().all(|&(_, p)| p == 150));
}

#[test]
fn the_follower_period_is_never_shorter_than_the_advert_interval() {
    let config = Config {
        advert_interval: Centiseconds(100),
        follower_interval: Duration::from_millis(200),
        ..holder_config(150)
    };
    assert_eq!(config.follower_period(), Duration::from_secs(1));
}

#[test]
fn a_stopping_master_tells_its_followers() {
    let mut instance = Instance::new(holder_config(150)).unwrap();
    instance.startup(ms(0));
    follower_adverts(&mut instance, 1000);
    instance.shutdown(ms(1000));
    let actions: Vec<Action> = std::iter::from_fn(|| instance.poll_action()).collect();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::SendToFollowers(adv) if adv.priority == 0)),
        "{actions:?}"
    );
    assert_eq!(instance.next_timeout(), None);
}

#[test]
fn without_followers_nothing_is_sent_to_them() {
    let mut instance = Instance::new(Config {
        followers: Vec::new(),
        ..holder_config(150)
    })
    .unwrap();
    instance.startup(ms(0));
    assert!(follower_adverts(&mut instance, 3000).is_empty());
}

#[test]
fn a_zero_follower_schedule_is_refused() {
    let config = Config {
        follower_interval: Duration::ZERO,
        ..holder_config(150)
    };
    assert_eq!(config.validate(), Err(ConfigError::BadFollowerSchedule));
}

#[test]
fn a_backup_sends_its_followers_nothing() {
    let mut instance = Instance::new(holder_config(100)).unwrap();
    instance.startup(ms(0));
    // A master is heard at once and keeps advertising.
    let master_advert = Advertisement {
        priority: 200,
        ..advert(200)
    };
    let mut sent = 0;
    for t in (0..2000).step_by(100) {
        instance
            .handle_advert(ms(t), HOLDER_B, &master_advert)
            .unwrap();
        while let Some(action) = instance.poll_action() {
            sent += usize::from(matches!(action, Action::SendToFollowers(_)));
        }
    }
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(sent, 0);
}
