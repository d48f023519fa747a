//! The RFC 5798 §6.4 rules, one test each, driven by hand.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vipd_core::vrrp::{
    Accepted, Action, Advertisement, Auth, Centiseconds, Config, ConfigError, FaultReason,
    Instance, Reason, ReconfigureError, Rejected, State, Timestamp, Version, VersionFields,
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const PEER_LOW: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0));
const PEER_HIGH: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

fn ms(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn config(priority: u8) -> Config {
    Config {
        priority,
        // Tested on its own; keeps next_timeout() about the RFC timers.
        reannounce_after: None,
        ..Config::new(51, LOCAL, vec![VIP])
    }
}

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

fn advert(priority: u8, interval_cs: u16) -> Advertisement {
    Advertisement {
        vrid: 51,
        priority,
        addresses: vec![VIP],
        fields: VersionFields::V3 {
            max_advert_interval: Centiseconds(interval_cs),
        },
    }
}

fn started(priority: u8) -> Instance {
    let mut instance = Instance::new(config(priority)).unwrap();
    instance.startup(ms(0));
    drain(&mut instance);
    instance
}

fn master(priority: u8) -> Instance {
    let mut instance = started(priority);
    let due = instance.next_timeout().unwrap();
    instance.handle_timeout(due);
    assert_eq!(instance.state(), State::Master);
    drain(&mut instance);
    instance
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert(advert) => Some(advert.priority),
            _ => None,
        })
        .collect()
}

#[test]
fn startup_goes_to_backup_with_master_down_timer() {
    // RFC 5798 §6.4.1.
    let mut instance = Instance::new(config(100)).unwrap();
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(instance.next_timeout(), None);
    instance.startup(ms(1000));
    assert_eq!(
        drain(&mut instance),
        vec![Action::StateChanged {
            from: State::Initialize,
            to: State::Backup,
            reason: Reason::Startup
        }]
    );
    // 3 × 1 s + (256 − 100) / 256 s.
    assert_eq!(
        instance.master_down_interval(),
        Duration::from_micros(3_609_375)
    );
    assert_eq!(
        instance.next_timeout(),
        Some(ms(1000) + Duration::from_micros(3_609_375))
    );
}

#[test]
fn address_owner_starts_as_master() {
    // RFC 5798 §6.4.1: priority 255 goes straight to Master.
    let mut instance = Instance::new(config(255)).unwrap();
    instance.startup(ms(0));
    let actions = drain(&mut instance);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Initialize,
                to: State::Master,
                reason: Reason::AddressOwner
            },
            Action::AddVip(VIP),
            Action::SendAdvert(advert(255, 100)),
            Action::SendGratuitous(VIP),
        ]
    );
    assert_eq!(instance.next_timeout(), Some(ms(1000)));
}

#[test]
fn master_down_timer_makes_master_and_adverts_follow() {
    // RFC 5798 §6.4.2: Master_Down_Timer fires → Master; §6.4.3: adverts
    // every Advertisement_Interval.
    let mut instance = started(100);
    let due = instance.next_timeout().unwrap();
    instance.handle_timeout(due - Duration::from_millis(1));
    assert!(drain(&mut instance).is_empty(), "fired early");
    instance.handle_timeout(due);
    let actions = drain(&mut instance);
    assert_eq!(
        actions[0],
        Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterDownTimerExpired
        }
    );
    assert_eq!(
        Reason::MasterDownTimerExpired.to_string(),
        "master down timer expired"
    );
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert!(actions.contains(&Action::AddVip(VIP)));
    assert!(actions.contains(&Action::SendGratuitous(VIP)));
    assert_eq!(instance.next_timeout(), Some(due + Duration::from_secs(1)));
    instance.handle_timeout(due + Duration::from_secs(1));
    assert_eq!(sent_priorities(&drain(&mut instance)), vec![100]);
    assert_eq!(instance.next_timeout(), Some(due + Duration::from_secs(2)));
}

#[test]
fn backup_accepts_higher_and_learns_the_interval() {
    // RFC 5798 §6.4.2: priority ≥ local → learn Master_Adver_Interval, reset
    // Master_Down_Timer to the recomputed Master_Down_Interval.
    let mut instance = started(100);
    let result = instance.handle_advert(ms(500), PEER_HIGH, &advert(150, 10));
    assert_eq!(result, Ok(Accepted::Clean));
    // 3 × 100 ms + 156/256 × 100 ms.
    assert_eq!(
        instance.master_down_interval(),
        Duration::from_micros(360_937) + Duration::from_nanos(500)
    );
    assert_eq!(
        instance.next_timeout(),
        Some(ms(500) + instance.master_down_interval())
    );
    let master = instance.master().unwrap();
    assert_eq!((master.address, master.priority), (PEER_HIGH, 150));
}

#[test]
fn backup_priority_zero_sets_skew_time() {
    // RFC 5798 §6.4.2: priority 0 → Master_Down_Timer = Skew_Time.
    let mut instance = started(100);
    instance
        .handle_advert(ms(500), PEER_HIGH, &advert(150, 100))
        .unwrap();
    instance
        .handle_advert(ms(900), PEER_HIGH, &advert(0, 100))
        .unwrap();
    let due = instance.next_timeout().unwrap();
    assert_eq!(due, ms(900) + Duration::from_micros(609_375));
    instance.handle_timeout(due);
    let actions = drain(&mut instance);
    assert_eq!(
        actions[0],
        Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterLeft { from: PEER_HIGH }
        }
    );
    assert_eq!(
        Reason::MasterLeft { from: PEER_HIGH }.to_string(),
        "priority 0 from master 198.18.0.2"
    );
}

#[test]
fn backup_with_preempt_ignores_a_lower_master() {
    // RFC 5798 §6.4.2: Preempt_Mode true and lower priority → discard.
    let mut instance = started(100);
    let due = instance.next_timeout().unwrap();
    instance
        .handle_advert(ms(1000), PEER_HIGH, &advert(50, 100))
        .unwrap();
    assert_eq!(
        instance.next_timeout(),
        Some(due),
        "timer must not be reset"
    );
    instance.handle_timeout(due);
    assert_eq!(
        drain(&mut instance)[0],
        Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: Reason::PreemptedLowerPriority {
                priority: 50,
                from: PEER_HIGH
            }
        }
    );
}

#[test]
fn backup_without_preempt_follows_a_lower_master() {
    // RFC 5798 §6.4.2: Preempt_Mode false → accept any priority.
    let mut instance = Instance::new(Config {
        preempt: false,
        ..config(200)
    })
    .unwrap();
    instance.startup(ms(0));
    instance
        .handle_advert(ms(1000), PEER_LOW, &advert(50, 100))
        .unwrap();
    assert_eq!(
        instance.next_timeout(),
        Some(ms(1000) + instance.master_down_interval())
    );
}

#[test]
fn preempt_delay_holds_off_preemption_after_startup() {
    // keepalived's preempt_delay: a lower master is followed until the delay
    // since startup has passed, then preempted.
    let mut instance = Instance::new(Config {
        preempt_delay: Duration::from_secs(10),
        ..config(200)
    })
    .unwrap();
    instance.startup(ms(0));
    for t in (0..10_000).step_by(1000) {
        instance
            .handle_advert(ms(t), PEER_LOW, &advert(100, 100))
            .unwrap();
        instance.handle_timeout(ms(t));
        assert_eq!(instance.state(), State::Backup, "preempted at {t} ms");
    }
    // From 10 s on the adverts are discarded and the timer runs out.
    let mut t = 10_000;
    while instance.state() == State::Backup && t < 20_000 {
        instance
            .handle_advert(ms(t), PEER_LOW, &advert(100, 100))
            .unwrap();
        instance.handle_timeout(ms(t));
        t += 100;
    }
    // Last accepted advert at 9 s, Master_Down_Interval = 3.21875 s.
    assert!(t > 12_200 && t <= 12_400, "took over at {t} ms");
}

#[test]
fn master_steps_down_for_higher_priority_and_learns_interval() {
    // RFC 5798 §6.4.3.
    let mut instance = master(100);
    instance
        .handle_advert(ms(9000), PEER_LOW, &advert(150, 50))
        .unwrap();
    let actions = drain(&mut instance);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                reason: Reason::HigherPriority {
                    priority: 150,
                    from: PEER_LOW
                }
            },
            Action::RemoveVip(VIP),
        ]
    );
    assert_eq!(
        Reason::HigherPriority {
            priority: 150,
            from: PEER_LOW
        }
        .to_string(),
        "higher priority 150 from 198.18.0.0"
    );
    // Master_Adver_Interval learned: 3 × 500 ms + 156/256 × 500 ms.
    assert_eq!(
        instance.next_timeout(),
        Some(
            ms(9000)
                + Duration::from_millis(1500)
                + Duration::from_micros(304_687)
                + Duration::from_nanos(500)
        )
    );
}

#[test]
fn master_tie_breaks_on_the_primary_address() {
    // RFC 5798 §6.4.3: equal priority, higher address wins.
    let mut instance = master(100);
    instance
        .handle_advert(ms(9000), PEER_LOW, &advert(100, 100))
        .unwrap();
    assert_eq!(instance.state(), State::Master);
    instance
        .handle_advert(ms(9000), PEER_HIGH, &advert(100, 100))
        .unwrap();
    assert_eq!(instance.state(), State::Backup);
    assert!(matches!(
        drain(&mut instance)[..],
        [
            ..,
            Action::StateChanged {
                reason: Reason::EqualPriorityHigherAddress { .. },
                ..
            },
            Action::RemoveVip(_)
        ]
    ));
}

#[test]
fn master_answers_a_lower_priority_master_at_once() {
    // RFC 9568 §6.4.3: lower priority → discard, send an advert now; and
    // re-announce the addresses.
    let mut instance = master(100);
    instance
        .handle_advert(ms(9000), PEER_HIGH, &advert(50, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        vec![
            Action::SendAdvert(advert(100, 100)),
            Action::SendGratuitous(VIP)
        ]
    );
    assert_eq!(instance.next_timeout(), Some(ms(10_000)));
}

#[test]
fn master_answers_priority_zero_with_an_advert() {
    // RFC 5798 §6.4.3: priority 0 → send an advert, reset the Adver_Timer.
    let mut instance = master(100);
    instance
        .handle_advert(ms(9000), PEER_HIGH, &advert(0, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        vec![Action::SendAdvert(advert(100, 100))]
    );
    assert_eq!(instance.next_timeout(), Some(ms(10_000)));
}

#[test]
fn shutdown_from_master_sends_priority_zero_and_releases() {
    // RFC 5798 §6.4.3: Shutdown → advert with priority 0, Initialize.
    let mut instance = master(100);
    instance.shutdown(ms(9000));
    assert_eq!(
        drain(&mut instance),
        vec![
            Action::SendAdvert(advert(0, 100)),
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::Shutdown
            },
            Action::RemoveVip(VIP),
        ]
    );
    assert_eq!(instance.next_timeout(), None);
    // Restartable.
    instance.startup(ms(10_000));
    assert_eq!(instance.state(), State::Backup);
}

#[test]
fn shutdown_from_backup_stops_the_timer() {
    // RFC 5798 §6.4.2.
    let mut instance = started(100);
    instance.shutdown(ms(1));
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(instance.next_timeout(), None);
    assert_eq!(
        instance.handle_advert(ms(2), PEER_HIGH, &advert(150, 100)),
        Err(Rejected::NotListening {
            state: State::Initialize
        })
    );
}

#[test]
fn tracker_fault_on_master_hands_over_and_clearing_returns_to_backup() {
    let mut instance = master(100);
    instance.set_fault(ms(9000), FaultReason::Tracker("apiserver".into()));
    let actions = drain(&mut instance);
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert(advert(0, 100)),
            Action::StateChanged {
                from: State::Master,
                to: State::Fault,
                reason: Reason::Fault(FaultReason::Tracker("apiserver".into()))
            },
            Action::RemoveVip(VIP),
        ]
    );
    assert_eq!(instance.next_timeout(), None);
    assert_eq!(
        instance
            .handle_advert(ms(9500), PEER_HIGH, &advert(50, 100))
            .unwrap_err()
            .reason(),
        "not_listening"
    );
    instance.clear_fault(ms(10_000));
    assert_eq!(
        drain(&mut instance),
        vec![Action::StateChanged {
            from: State::Fault,
            to: State::Backup,
            reason: Reason::FaultCleared
        }]
    );
    assert_eq!(
        instance.next_timeout(),
        Some(ms(10_000) + instance.master_down_interval())
    );
}

#[test]
fn interface_down_sends_nothing() {
    let mut instance = master(100);
    instance.set_fault(ms(9000), FaultReason::InterfaceDown);
    let actions = drain(&mut instance);
    assert!(sent_priorities(&actions).is_empty());
    assert!(actions.contains(&Action::RemoveVip(VIP)));
    assert_eq!(
        Reason::Fault(FaultReason::InterfaceDown).to_string(),
        "interface down"
    );
}

#[test]
fn fault_before_startup_starts_in_fault() {
    let mut instance = Instance::new(config(255)).unwrap();
    instance.set_fault(ms(0), FaultReason::InterfaceDown);
    instance.startup(ms(0));
    assert_eq!(instance.state(), State::Fault);
    instance.clear_fault(ms(5));
    // §6.4.1 logic on leaving Fault: the owner goes straight to Master.
    assert_eq!(instance.state(), State::Master);
}

#[test]
fn lowered_priority_is_carried_by_the_next_advert() {
    let mut instance = master(200);
    instance.set_priority(ms(9000), 90);
    let due = instance.next_timeout().unwrap();
    instance.handle_timeout(due);
    assert_eq!(sent_priorities(&drain(&mut instance)), vec![90]);
    // Priority 0 is reserved; trackers cannot send it by accident.
    instance.set_priority(ms(9000), 0);
    assert_eq!(instance.priority(), 1);
}

#[test]
fn receive_filters_have_distinct_reasons() {
    // RFC 5798 §7.1.
    let mut instance = started(100);
    let wrong_vrid = Advertisement {
        vrid: 52,
        ..advert(150, 100)
    };
    let v2 = Advertisement {
        fields: VersionFields::V2 {
            advert_interval_secs: 1,
            auth: Auth::None,
        },
        ..advert(150, 100)
    };
    let other_list = Advertisement {
        addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200))],
        ..advert(150, 100)
    };
    let cases = [
        (PEER_HIGH, wrong_vrid, "wrong_vrid"),
        (PEER_HIGH, v2, "wrong_version"),
        (PEER_HIGH, other_list, "address_list_mismatch"),
        (LOCAL, advert(150, 100), "own_advert"),
        (
            "2001:db8::1".parse().unwrap(),
            advert(150, 100),
            "wrong_address_family",
        ),
    ];
    let timer = instance.next_timeout();
    for (src, packet, reason) in cases {
        let err = instance.handle_advert(ms(1), src, &packet).unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
    }
    assert_eq!(
        instance.next_timeout(),
        timer,
        "a dropped advert reset the timer"
    );
}

#[test]
fn unicast_hears_only_the_configured_peers() {
    let stranger = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9));
    let unicast = Config {
        unicast_peers: Some(vec![PEER_HIGH]),
        ..config(100)
    };
    let mut instance = Instance::new(unicast).unwrap();
    // Checked before the state: a stranger is not a peer even unheard.
    assert_eq!(
        instance.handle_advert(ms(0), stranger, &advert(150, 100)),
        Err(Rejected::NotAPeer)
    );
    instance.startup(ms(0));
    drain(&mut instance);
    let timer = instance.next_timeout();
    let err = instance
        .handle_advert(ms(1), stranger, &advert(150, 100))
        .unwrap_err();
    assert_eq!(err, Rejected::NotAPeer);
    assert_eq!(err.reason(), "not_a_peer");
    assert_eq!(err.to_string(), "not a configured unicast peer");
    assert_eq!(instance.check_source(stranger), Err(Rejected::NotAPeer));
    assert_eq!(instance.master(), None);
    assert_eq!(instance.next_timeout(), timer, "a stranger reset the timer");
    // The peer is heard.
    assert_eq!(instance.check_source(PEER_HIGH), Ok(()));
    assert_eq!(
        instance.handle_advert(ms(2), PEER_HIGH, &advert(150, 100)),
        Ok(Accepted::Clean)
    );
    assert_eq!(instance.master().map(|m| m.address), Some(PEER_HIGH));

    // A master does not step down for a stranger's higher priority.
    let mut master = Instance::new(Config {
        unicast_peers: Some(vec![PEER_LOW]),
        ..config(100)
    })
    .unwrap();
    master.startup(ms(0));
    let due = master.next_timeout().unwrap();
    master.handle_timeout(due);
    drain(&mut master);
    assert_eq!(
        master.handle_advert(due, PEER_HIGH, &advert(200, 100)),
        Err(Rejected::NotAPeer)
    );
    assert_eq!(master.state(), State::Master);
    assert!(drain(&mut master).is_empty());

    // Multicast (no peer list): anyone on the segment is heard.
    let mut multicast = started(100);
    assert_eq!(multicast.check_source(stranger), Ok(()));
    assert_eq!(
        multicast.handle_advert(ms(1), stranger, &advert(150, 100)),
        Ok(Accepted::Clean)
    );
}

#[test]
fn address_list_mismatch_from_the_owner_is_processed() {
    // RFC 5798 §7.1: mismatch → drop unless the sender is the owner.
    let mut instance = master(100);
    let owner = Advertisement {
        addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200)), VIP],
        ..advert(255, 100)
    };
    assert_eq!(
        instance.handle_advert(ms(9000), PEER_LOW, &owner),
        Ok(Accepted::AddressListMismatchFromOwner)
    );
    assert_eq!(instance.state(), State::Backup);
}

#[test]
fn v2_checks_the_interval_and_uses_fixed_skew() {
    // RFC 3768 §7.1: the interval must match; §6.1: Skew_Time is
    // (256 − Priority)/256 s whatever the interval.
    let config = Config {
        version: Version::V2,
        advert_interval: Centiseconds(200),
        auth: Auth::simple_password(b"s3cr3t"),
        ..config(100)
    };
    let mut instance = Instance::new(config).unwrap();
    instance.startup(ms(0));
    assert_eq!(
        instance.master_down_interval(),
        Duration::from_secs(6) + Duration::from_micros(609_375)
    );
    let v2 = |secs| Advertisement {
        fields: VersionFields::V2 {
            advert_interval_secs: secs,
            auth: Auth::simple_password(b"s3cr3t"),
        },
        ..advert(150, 100)
    };
    assert_eq!(
        instance
            .handle_advert(ms(1), PEER_HIGH, &v2(1))
            .unwrap_err()
            .reason(),
        "advert_interval_mismatch"
    );
    assert_eq!(
        instance.handle_advert(ms(1), PEER_HIGH, &v2(2)),
        Ok(Accepted::Clean)
    );
    assert_eq!(
        instance.decode_options().auth,
        Some(Auth::simple_password(b"s3cr3t"))
    );
    let sent = instance.advertisement(100);
    assert_eq!(
        sent.fields,
        VersionFields::V2 {
            advert_interval_secs: 2,
            auth: Auth::simple_password(b"s3cr3t")
        }
    );
}

#[test]
fn bad_configs_are_refused() {
    let bad = [
        (
            Config {
                vrid: 0,
                ..config(100)
            },
            ConfigError::VridZero,
        ),
        (
            Config {
                priority: 0,
                ..config(100)
            },
            ConfigError::PriorityZero,
        ),
        (
            Config {
                virtual_addresses: vec![],
                ..config(100)
            },
            ConfigError::NoVirtualAddresses,
        ),
        (
            Config {
                virtual_addresses: vec!["2001:db8::1".parse().unwrap()],
                ..config(100)
            },
            ConfigError::AddressFamilyMismatch,
        ),
        (
            Config {
                version: Version::V2,
                advert_interval: Centiseconds(150),
                ..config(100)
            },
            ConfigError::BadAdvertInterval,
        ),
        (
            Config {
                auth: Auth::simple_password(b"x"),
                ..config(100)
            },
            ConfigError::AuthWithV3,
        ),
    ];
    for (config, error) in bad {
        assert_eq!(Instance::new(config).unwrap_err(), error);
    }
}

#[test]
fn drop_reasons_are_distinct_snake_case_labels() {
    use vipd_core::vrrp::{ChecksumMode, DecodeError, Ipv4HeaderError, TtlNot255};
    let checksum = |peer| DecodeError::ChecksumMismatch {
        received: 0,
        computed: 1,
        peer_seems_to_use: peer,
    };
    let reasons = [
        DecodeError::TooShort { len: 0 }.reason(),
        DecodeError::BadVersion { version: 4 }.reason(),
        DecodeError::BadType { kind: 2 }.reason(),
        DecodeError::V2OverIpv6.reason(),
        DecodeError::NoAddresses.reason(),
        DecodeError::Truncated {
            expected: 1,
            actual: 0,
        }
        .reason(),
        DecodeError::LengthMismatch {
            expected: 0,
            actual: 1,
        }
        .reason(),
        checksum(None).reason(),
        checksum(Some(ChecksumMode::Keepalived)).reason(),
        checksum(Some(ChecksumMode::Rfc9568)).reason(),
        DecodeError::ZeroAdvertInterval.reason(),
        DecodeError::UnsupportedAuthType { auth_type: 2 }.reason(),
        DecodeError::AuthTypeMismatch {
            expected: 0,
            received: 1,
        }
        .reason(),
        DecodeError::BadPassword.reason(),
        DecodeError::EndpointFamilyMismatch.reason(),
        Ipv4HeaderError::TooShort { len: 0 }.reason(),
        Ipv4HeaderError::BadVersion { version: 6 }.reason(),
        Ipv4HeaderError::BadHeaderLength { ihl: 4 }.reason(),
        Ipv4HeaderError::BadTotalLength {
            total_len: 0,
            received: 0,
        }
        .reason(),
        Ipv4HeaderError::NotVrrp { protocol: 17 }.reason(),
        TtlNot255 { ttl: 1 }.reason(),
        Rejected::NotListening {
            state: State::Fault,
        }
        .reason(),
        Rejected::WrongVrid { received: 1 }.reason(),
        Rejected::WrongVersion {
            received: Version::V2,
        }
        .reason(),
        Rejected::WrongAddressFamily.reason(),
        Rejected::OwnAdvert.reason(),
        Rejected::AdvertIntervalMismatch {
            received: Duration::ZERO,
        }
        .reason(),
        Rejected::AddressListMismatch.reason(),
        Rejected::NotAHolder.reason(),
        Rejected::NotAPeer.reason(),
    ];
    let mut unique = reasons.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        reasons.len(),
        "duplicate label in {reasons:?}"
    );
    for reason in reasons {
        assert!(
            reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{reason}"
        );
    }
}

#[test]
fn a_new_master_announces_again_after_the_reannounce_delay() {
    // keepalived's garp_master_delay: a second round 5 s after takeover.
    let mut instance = Instance::new(Config::new(51, LOCAL, vec![VIP])).unwrap();
    instance.startup(ms(0));
    let became_master = instance.next_timeout().unwrap();
    instance.handle_timeout(became_master);
    drain(&mut instance);
    let mut announced_at = Vec::new();
    let mut now = became_master;
    while now < became_master + Duration::from_secs(12) {
        now = instance.next_timeout().unwrap();
        instance.handle_timeout(now);
        if drain(&mut instance).contains(&Action::SendGratuitous(VIP)) {
            announced_at.push(now - became_master);
        }
    }
    assert_eq!(announced_at, vec![Duration::from_secs(5)]);
}

/// The designated successor (the configuration proves no better backup
/// exists) skips Skew_Time: at once on priority 0, after exactly 3
/// intervals of silence. A tracker that lowers its priority restores it.
#[test]
fn designated_successor_takes_over_without_skew() {
    let successor = |priority| {
        let mut instance = Instance::new(Config {
            designated_successor: true,
            ..config(priority)
        })
        .unwrap();
        instance.startup(ms(0));
        drain(&mut instance);
        instance
    };
    let mut instance = successor(100);
    instance
        .handle_advert(ms(500), PEER_HIGH, &advert(150, 100))
        .unwrap();
    assert_eq!(instance.skew_time(), Duration::ZERO);
    assert_eq!(instance.master_down_interval(), Duration::from_secs(3));
    instance
        .handle_advert(ms(900), PEER_HIGH, &advert(0, 100))
        .unwrap();
    assert_eq!(
        instance.next_timeout(),
        Some(ms(900)),
        "no skew after priority 0"
    );

    let mut silent = successor(100);
    silent
        .handle_advert(ms(500), PEER_HIGH, &advert(150, 100))
        .unwrap();
    assert_eq!(
        silent.next_timeout(),
        Some(ms(3500)),
        "3 x interval, no skew"
    );

    // Just started, no master heard yet: the RFC skew, so that when both
    // routers start at once the better one (shorter skew) wins the first
    // round and is not preempted back after it.
    let fresh = successor(100);
    assert_eq!(fresh.skew_time(), Duration::from_micros(609_375));
    assert_eq!(
        fresh.next_timeout(),
        Some(ms(3609) + Duration::from_micros(375)),
        "3 x interval + skew from startup"
    );

    // A tracker lowered the priority: the RFC skew is back.
    let mut lowered = successor(100);
    lowered.set_priority(ms(100), 60);
    lowered
        .handle_advert(ms(500), PEER_HIGH, &advert(150, 100))
        .unwrap();
    assert_eq!(lowered.skew_time(), Duration::from_micros(765_625));
}

#[test]
fn reconfigure_keeps_a_master_master_and_announces_a_new_interval() {
    let mut instance = master(150);
    let mut changed = config(120);
    changed.advert_interval = Centiseconds(50);
    changed.preempt = false;
    instance.reconfigure(ms(5000), changed).unwrap();
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.priority(), 120);
    let actions = drain(&mut instance);
    // No state change, no VIP removal: one advert at once with the new interval.
    assert_eq!(sent_priorities(&actions), vec![120]);
    assert!(
        actions.iter().all(|a| matches!(a, Action::SendAdvert(_))),
        "{actions:?}"
    );
    match &actions[0] {
        Action::SendAdvert(advert) => {
            assert_eq!(advert.advert_interval(), Duration::from_millis(500))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(instance.next_timeout(), Some(ms(5500)));
}

#[test]
fn reconfigure_keeps_a_backup_following_its_master() {
    let mut instance = started(100);
    instance
        .handle_advert(ms(100), PEER_HIGH, &advert(200, 100))
        .unwrap();
    drain(&mut instance);
    let timer = instance.next_timeout();
    instance.reconfigure(ms(200), config(90)).unwrap();
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(instance.master().unwrap().address, PEER_HIGH);
    assert_eq!(instance.next_timeout(), timer, "the running timer is kept");
    assert!(drain(&mut instance).is_empty());
}

#[test]
fn reconfigure_refuses_what_identifies_the_router() {
    let mut instance = master(150);
    let mut other_vrid = config(150);
    other_vrid.vrid = 52;
    assert_eq!(
        instance.reconfigure(ms(10), other_vrid),
        Err(ReconfigureError::NeedsRestart { field: "vrid" })
    );
    let mut owner = config(255);
    owner.priority = 255;
    assert!(matches!(
        instance.reconfigure(ms(10), owner),
        Err(ReconfigureError::NeedsRestart { .. })
    ));
    let mut invalid = config(150);
    invalid.auth = Auth::simple_password(b"x");
    assert_eq!(
        instance.reconfigure(ms(10), invalid),
        Err(ReconfigureError::Invalid(ConfigError::AuthWithV3))
    );
    // Nothing changed.
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.config().vrid, 51);
    assert!(drain(&mut instance).is_empty());
}

#[test]
fn reason_labels_are_stable_and_address_free() {
    let from = PEER_HIGH;
    assert_eq!(Reason::MasterLeft { from }.label(), "master_left");
    assert_eq!(
        Reason::Fault(FaultReason::Tracker("apiserver".into())).label(),
        "fault_tracker"
    );
}
