//! The VRRP state machine of RFC 5798 §6.4 (RFC 3768 §6.4 for VRRPv2), one
//! virtual router on one interface.
//!
//! Sans-IO: the IO shell feeds events in with the current time
//! ([`Instance::startup`], [`Instance::handle_advert`],
//! [`Instance::handle_timeout`], [`Instance::set_priority`],
//! [`Instance::set_fault`], [`Instance::shutdown`]), drains
//! [`Instance::poll_action`] after each, and calls
//! [`Instance::handle_timeout`] again at [`Instance::next_timeout`].
//!
//! Beyond the RFC's Initialize/Backup/Master there is keepalived's Fault: the
//! interface is down or a tracker says this node must not serve, so it
//! neither advertises nor holds the addresses nor takes over.
//!
//! Names follow RFC 5798 (Master, Master_Down_Timer, ...); RFC 9568 renamed
//! Master to "Active Router" without changing the rules, and its section
//! numbers are the same.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::config::{Config, ConfigError};
use super::packet::{
    Advertisement, DecodeOptions, PRIORITY_OWNER, PRIORITY_STOP, Version, VersionFields,
};
use super::receive::{Accepted, Receiver, Rejected};
use super::state::{FaultReason, State};
use super::timer::{Centiseconds, Timestamp, master_down_interval, skew_time_v2, skew_time_v3};

/// Why the state changed, for logs and events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// §6.4.1: started as Backup.
    Startup,
    /// §6.4.1: started with priority 255, the owner goes straight to Master.
    AddressOwner,
    /// §6.4.2: no advertisement for Master_Down_Interval.
    MasterDownTimerExpired,
    /// §6.4.2: the master announced it is leaving (priority 0), and
    /// Skew_Time passed with nobody else taking over.
    MasterLeft { from: IpAddr },
    /// §6.4.2: with preemption on, the master's adverts had a lower priority
    /// and were ignored until Master_Down_Interval passed.
    PreemptedLowerPriority { priority: u8, from: IpAddr },
    /// §6.4.3: a higher-priority advert reached the master.
    HigherPriority { priority: u8, from: IpAddr },
    /// §6.4.3: an equal-priority advert from a higher address.
    EqualPriorityHigherAddress { priority: u8, from: IpAddr },
    /// Stopped by the operator (§6.4.2/§6.4.3 Shutdown event).
    Shutdown,
    /// Entered Fault.
    Fault(FaultReason),
    /// Left Fault.
    FaultCleared,
}

impl Reason {
    /// A stable name without addresses, for metrics labels and counters.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::AddressOwner => "address_owner",
            Reason::MasterDownTimerExpired => "master_down_timer_expired",
            Reason::MasterLeft { .. } => "master_left",
            Reason::PreemptedLowerPriority { .. } => "preempted_lower_priority",
            Reason::HigherPriority { .. } => "higher_priority",
            Reason::EqualPriorityHigherAddress { .. } => "equal_priority_higher_address",
            Reason::Shutdown => "shutdown",
            Reason::Fault(FaultReason::InterfaceDown) => "fault_interface_down",
            Reason::Fault(FaultReason::Tracker(_)) => "fault_tracker",
            Reason::FaultCleared => "fault_cleared",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::AddressOwner => f.write_str("address owner (priority 255)"),
            Reason::MasterDownTimerExpired => f.write_str("master down timer expired"),
            Reason::MasterLeft { from } => write!(f, "priority 0 from master {from}"),
            Reason::PreemptedLowerPriority { priority, from } => {
                write!(f, "preempted lower priority {priority} from {from}")
            }
            Reason::HigherPriority { priority, from } => {
                write!(f, "higher priority {priority} from {from}")
            }
            Reason::EqualPriorityHigherAddress { priority, from } => {
                write!(f, "equal priority {priority} from higher address {from}")
            }
            Reason::Shutdown => f.write_str("shutdown"),
            Reason::Fault(reason) => reason.fmt(f),
            Reason::FaultCleared => f.write_str("fault cleared"),
        }
    }
}

/// Why [`Instance::reconfigure`] refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconfigureError {
    Invalid(ConfigError),
    /// The field identifies the router on the wire: restart the instance.
    NeedsRestart {
        field: &'static str,
    },
}

impl fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconfigureError::Invalid(e) => e.fmt(f),
            ReconfigureError::NeedsRestart { field } => {
                write!(f, "the {field} changed: the instance must restart")
            }
        }
    }
}

impl std::error::Error for ReconfigureError {}

/// What the IO shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Log it, export it, run notify hooks. Comes before the actions the
    /// change causes.
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
    /// Add a virtual address to the interface.
    AddVip(IpAddr),
    /// Remove a virtual address from the interface.
    RemoveVip(IpAddr),
    /// Encode (with [`Config::checksum_mode`]) and send to the VRRP group or
    /// the unicast peers, TTL / hop limit 255.
    SendAdvert(Advertisement),
    /// Encode and send to every mesh follower ([`Config::followers`]),
    /// unicast, TTL / hop limit 255.
    SendToFollowers(Advertisement),
    /// Announce a virtual address: gratuitous ARP (IPv4) or unsolicited
    /// Neighbor Advertisement (IPv6), see [`super::announce`].
    SendGratuitous(IpAddr),
}

/// The master a backup last accepted an advert from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterInfo {
    pub address: IpAddr,
    pub priority: u8,
    pub advert_interval: Duration,
}

/// What the running Master_Down_Timer means, so its expiry can be logged
/// with the real cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownTimerCause {
    /// Reset by the last accepted advert (or startup): the master went quiet.
    MasterSilent,
    /// §6.4.2: shortened to Skew_Time by a priority 0 advert.
    MasterLeft { from: IpAddr },
    /// §6.4.2: a lower-priority master is being ignored, so we will preempt.
    PreemptingLower { priority: u8, from: IpAddr },
}

/// One VRRP virtual router. See the module docs.
#[derive(Debug)]
pub struct Instance {
    config: Config,
    state: State,
    /// The priority we advertise and compare with: the configured one,
    /// lowered by trackers.
    priority: u8,
    fault: Option<FaultReason>,
    /// §6.1: the interval of the current master (learned in VRRPv3, the
    /// configured one in VRRPv2 and until a master is heard).
    master_adver_interval: Duration,
    /// §6.2: Backup only.
    master_down_timer: Option<Timestamp>,
    down_timer_cause: DownTimerCause,
    /// §6.2: Master only.
    adver_timer: Option<Timestamp>,
    /// Master only: the second round of announcements
    /// ([`Config::reannounce_after`]).
    reannounce_timer: Option<Timestamp>,
    /// Master with followers only: the next advert to the followers, and
    /// how many of the burst are left to send before the slower period.
    follower_timer: Option<Timestamp>,
    follower_burst_left: u32,
    /// Preempt_Delay: lower-priority masters are accepted before this.
    preempt_allowed_from: Timestamp,
    master: Option<MasterInfo>,
    receiver: Receiver,
    actions: VecDeque<Action>,
}

impl Instance {
    /// An instance in Initialize. Nothing happens until [`Instance::startup`].
    pub fn new(config: Config) -> Result<Instance, ConfigError> {
        config.validate()?;
        Ok(Instance {
            receiver: Receiver::new(config.vrid, config.version, &config.virtual_addresses),
            priority: config.priority,
            master_adver_interval: config.advert_interval(),
            state: State::Initialize,
            fault: None,
            master_down_timer: None,
            down_timer_cause: DownTimerCause::MasterSilent,
            adver_timer: None,
            reannounce_timer: None,
            follower_timer: None,
            follower_burst_left: 0,
            preempt_allowed_from: Timestamp::ZERO,
            master: None,
            actions: VecDeque::new(),
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority (configured, lowered by trackers).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn fault(&self) -> Option<&FaultReason> {
        self.fault.as_ref()
    }

    /// In Backup, the master last heard from.
    pub fn master(&self) -> Option<MasterInfo> {
        self.master
    }

    /// The options to decode this instance's packets with.
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            checksum_mode: self.config.checksum_mode,
            auth: match self.config.version {
                Version::V2 => Some(self.config.auth),
                Version::V3 => None,
            },
        }
    }

    /// RFC 5798 §6.1 Skew_Time for the current priority and master interval;
    /// zero for the designated successor at its configured priority once it
    /// has heard the master it succeeds (see [`Config::designated_successor`]).
    /// Before that (just started, or out of a fault) it keeps the RFC skew:
    /// when both start at once the better router, whose skew is shorter,
    /// must win the first round instead of being preempted back a skew later.
    pub fn skew_time(&self) -> Duration {
        if self.config.designated_successor
            && self.priority == self.config.priority
            && self.master.is_some()
        {
            return Duration::ZERO;
        }
        match self.config.version {
            Version::V2 => skew_time_v2(self.priority),
            Version::V3 => skew_time_v3(self.priority, self.master_adver_interval),
        }
    }

    /// RFC 5798 §6.1 Master_Down_Interval.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.master_adver_interval, self.skew_time())
    }

    /// The next action for the IO shell, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Instance::handle_timeout`] must be called next.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        [
            self.master_down_timer,
            self.adver_timer,
            self.reannounce_timer,
            self.follower_timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// RFC 5798 §6.4.1: the Startup event.
    pub fn startup(&mut self, now: Timestamp) {
        if self.state != State::Initialize {
            return;
        }
        self.preempt_allowed_from = now + self.config.preempt_delay;
        if let Some(reason) = self.fault.clone() {
            self.change_state(State::Fault, Reason::Fault(reason));
            return;
        }
        self.enter_service(now, Reason::Startup);
    }

    /// RFC 5798 §6.4.2/§6.4.3: the Shutdown event.
    pub fn shutdown(&mut self, _now: Timestamp) {
        match self.state {
            State::Initialize => {}
            State::Master => {
                // §6.4.3: cancel the Adver_Timer, send an ADVERTISEMENT with
                // priority 0, transition to Initialize. The priority-0 advert
                // goes out first so backups start their Skew_Time at once.
                self.adver_timer = None;
                self.send_advert(PRIORITY_STOP);
                self.send_to_followers(PRIORITY_STOP);
                self.change_state(State::Initialize, Reason::Shutdown);
                self.stop_serving();
            }
            State::Backup | State::Fault => {
                // §6.4.2: cancel the Master_Down_Timer, go to Initialize.
                self.master_down_timer = None;
                self.master = None;
                self.change_state(State::Initialize, Reason::Shutdown);
            }
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.state {
            State::Backup => {
                // §6.4.2: Master_Down_Timer fires -> become Master.
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    let reason = match self.down_timer_cause {
                        DownTimerCause::MasterSilent => Reason::MasterDownTimerExpired,
                        DownTimerCause::MasterLeft { from } => Reason::MasterLeft { from },
                        DownTimerCause::PreemptingLower { priority, from } => {
                            Reason::PreemptedLowerPriority { priority, from }
                        }
                    };
                    self.become_master(now, reason);
                }
            }
            State::Master => {
                // §6.4.3: Adver_Timer fires -> send an ADVERTISEMENT, reset
                // the timer to Advertisement_Interval.
                if self.adver_timer.is_some_and(|t| t <= now) {
                    self.send_advert(self.priority);
                    self.adver_timer = Some(now + self.config.advert_interval());
                }
                if self.reannounce_timer.is_some_and(|t| t <= now) {
                    self.reannounce_timer = None;
                    self.announce_addresses();
                }
                if self.follower_timer.is_some_and(|t| t <= now) {
                    self.send_to_followers(self.priority);
                    self.schedule_followers(now);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// Processes a decoded advertisement received from `src` (the IP source
    /// address). TTL, checksum and authentication were checked by the codec.
    pub fn handle_advert(
        &mut self,
        now: Timestamp,
        src: IpAddr,
        advert: &Advertisement,
    ) -> Result<Accepted, Rejected> {
        let accepted = self.check_advert(src, advert)?;
        match self.state {
            State::Backup => self.backup_receive(now, src, advert),
            State::Master => self.master_receive(now, src, advert),
            State::Initialize | State::Fault => {}
        }
        Ok(accepted)
    }

    /// In unicast mode only the configured peers may speak: a packet from
    /// anyone else is [`Rejected::NotAPeer`] whatever it holds and whatever
    /// our state. [`Instance::handle_advert`] checks it first; an IO shell
    /// may check it before decoding too, so a stranger's packet is counted
    /// as what it is rather than as a bad checksum or password.
    pub fn check_source(&self, src: IpAddr) -> Result<(), Rejected> {
        match &self.config.unicast_peers {
            Some(peers) if !peers.contains(&src) => Err(Rejected::NotAPeer),
            _ => Ok(()),
        }
    }

    /// RFC 5798 §7.1's receive checks that need the configuration.
    fn check_advert(&self, src: IpAddr, advert: &Advertisement) -> Result<Accepted, Rejected> {
        self.check_source(src)?;
        if matches!(self.state, State::Initialize | State::Fault) {
            return Err(Rejected::NotListening { state: self.state });
        }
        self.receiver.check(src, advert)?;
        if src == self.config.primary_address {
            return Err(Rejected::OwnAdvert);
        }
        // RFC 3768 §7.1: MUST verify that the Adver Interval matches ours.
        if let VersionFields::V2 { .. } = advert.fields
            && advert.advert_interval() != self.config.advert_interval()
        {
            return Err(Rejected::AdvertIntervalMismatch {
                received: advert.advert_interval(),
            });
        }
        self.receiver.check_addresses(advert)
    }

    /// RFC 5798 §6.4.2: an ADVERTISEMENT received in Backup.
    fn backup_receive(&mut self, now: Timestamp, src: IpAddr, advert: &Advertisement) {
        if advert.priority == PRIORITY_STOP {
            // §6.4.2: priority 0 -> set the Master_Down_Timer to Skew_Time.
            self.master_down_timer = Some(now + self.skew_time());
            self.down_timer_cause = DownTimerCause::MasterLeft { from: src };
            self.master = None;
            return;
        }
        let lower = advert.priority < self.priority;
        // Preempt_Delay: right after startup, follow a lower-priority master
        // as if preemption were off.
        let may_preempt = self.config.preempt && now >= self.preempt_allowed_from;
        if !lower || !may_preempt {
            // §6.4.2: priority >= local, or Preempt_Mode false: accept.
            if self.config.version == Version::V3 {
                // §6.4.2: set Master_Adver_Interval to the advert's,
                // recompute Skew_Time and Master_Down_Interval.
                self.master_adver_interval = advert.advert_interval();
            }
            self.master = Some(MasterInfo {
                address: src,
                priority: advert.priority,
                advert_interval: advert.advert_interval(),
            });
            // §6.4.2: reset the Master_Down_Timer to Master_Down_Interval.
            self.master_down_timer = Some(now + self.master_down_interval());
            self.down_timer_cause = DownTimerCause::MasterSilent;
        } else {
            // §6.4.2: preempting a lower priority -> discard the advert; the
            // Master_Down_Timer runs out and we take over.
            self.down_timer_cause = DownTimerCause::PreemptingLower {
                priority: advert.priority,
                from: src,
            };
        }
    }

    /// RFC 5798 §6.4.3: an ADVERTISEMENT received in Master.
    fn master_receive(&mut self, now: Timestamp, src: IpAddr, advert: &Advertisement) {
        if advert.priority == PRIORITY_STOP {
            // §6.4.3: priority 0 (another master leaving, or a stale one) ->
            // send an ADVERTISEMENT at once and reset the Adver_Timer, so the
            // backups that just armed Skew_Time hear us first.
            self.send_advert(self.priority);
            self.adver_timer = Some(now + self.config.advert_interval());
            return;
        }
        // §6.4.3: greater priority, or equal priority and a greater primary
        // address (compared as unsigned integers in network byte order, which
        // is how Ipv4Addr/Ipv6Addr order) -> step down.
        let reason = if advert.priority > self.priority {
            Some(Reason::HigherPriority {
                priority: advert.priority,
                from: src,
            })
        } else if advert.priority == self.priority && src > self.config.primary_address {
            Some(Reason::EqualPriorityHigherAddress {
                priority: advert.priority,
                from: src,
            })
        } else {
            None
        };
        match reason {
            Some(reason) => {
                // §6.4.3: cancel the Adver_Timer, (v3) learn the interval,
                // set the Master_Down_Timer to Master_Down_Interval, go to
                // Backup.
                self.adver_timer = None;
                if self.config.version == Version::V3 {
                    self.master_adver_interval = advert.advert_interval();
                }
                self.master = Some(MasterInfo {
                    address: src,
                    priority: advert.priority,
                    advert_interval: advert.advert_interval(),
                });
                self.change_state(State::Backup, reason);
                self.stop_serving();
                self.master_down_timer = Some(now + self.master_down_interval());
                self.down_timer_cause = DownTimerCause::MasterSilent;
            }
            None => {
                // §6.4.3: lower priority -> discard. RFC 9568 §6.4.3 adds:
                // send an ADVERTISEMENT immediately, so the other master
                // yields now rather than at our next interval, and (as
                // keepalived does) re-announce the addresses, which the
                // other master's gratuitous ARPs may have pulled away.
                self.send_advert(self.priority);
                self.adver_timer = Some(now + self.config.advert_interval());
                if self.config.announce_on_lower_priority {
                    self.announce_addresses();
                }
                // Followers that followed the other master (a partition
                // between the holders healing) hear us now, not a follower
                // period after that master yields.
                self.send_to_followers(self.priority);
            }
        }
    }

    /// Sets the effective priority (trackers add and subtract weights).
    ///
    /// Clamped to 1-255: priority 0 means "leaving" on the wire, and a node
    /// that must not serve at all belongs in Fault. A master carries the new
    /// priority in its next advert; whether a backup preempts is decided by
    /// the peers' §6.4.2 rules. A backup recomputes Skew_Time, and with it
    /// Master_Down_Interval, from the next advert on (§6.1 ties both to
    /// Priority).
    ///
    /// A lowered master is preempted only once the backup's
    /// Master_Down_Timer runs out (it ignores lower adverts, §6.4.2). To
    /// hand over at once, use [`Instance::set_fault`], which sends priority 0
    /// so the backup waits only Skew_Time.
    pub fn set_priority(&mut self, _now: Timestamp, priority: u8) {
        let priority = priority.max(1);
        let changed = priority != self.priority;
        self.priority = priority;
        // Followers rank masters by priority: tell them now, so none keeps
        // following this master on a priority it no longer has.
        if changed && self.state == State::Master {
            self.send_to_followers(priority);
        }
    }

    /// Enters Fault (interface down, tracker fault): stop advertising, drop
    /// the addresses, do not take over.
    ///
    /// A master that still has a link sends a priority-0 advert first, so
    /// the backups take over after Skew_Time instead of
    /// Master_Down_Interval (keepalived does the same). With the interface
    /// down it would only fail to send.
    pub fn set_fault(&mut self, _now: Timestamp, reason: FaultReason) {
        if self.fault.as_ref() == Some(&reason) {
            return;
        }
        self.fault = Some(reason.clone());
        match self.state {
            State::Initialize => {}
            State::Fault => {}
            State::Master => {
                self.adver_timer = None;
                if reason != FaultReason::InterfaceDown {
                    self.send_advert(PRIORITY_STOP);
                    self.send_to_followers(PRIORITY_STOP);
                }
                self.change_state(State::Fault, Reason::Fault(reason));
                self.stop_serving();
            }
            State::Backup => {
                self.master_down_timer = None;
                self.master = None;
                self.change_state(State::Fault, Reason::Fault(reason));
            }
        }
    }

    /// Leaves Fault. The instance restarts as at §6.4.1 Startup: owner to
    /// Master, anyone else to Backup, waiting a full Master_Down_Interval
    /// to hear the current master before taking over.
    pub fn clear_fault(&mut self, now: Timestamp) {
        if self.fault.take().is_none() {
            return;
        }
        if self.state == State::Fault {
            self.preempt_allowed_from = now + self.config.preempt_delay;
            self.enter_service(now, Reason::FaultCleared);
        }
    }

    /// Applies a new configuration without leaving the current state: a
    /// master stays master, a backup keeps its master and timers.
    ///
    /// What identifies the router on the wire (VRID, version, primary
    /// address, virtual addresses) cannot change in place: the caller must
    /// shut the instance down and start a new one, and this returns
    /// [`ReconfigureError::NeedsRestart`] naming the field. The effective
    /// priority is reset to the new configured one; the caller re-applies
    /// its tracker weights with [`Instance::set_priority`].
    pub fn reconfigure(&mut self, now: Timestamp, config: Config) -> Result<(), ReconfigureError> {
        config.validate().map_err(ReconfigureError::Invalid)?;
        if let Some(field) = self.config.identity_change(&config) {
            return Err(ReconfigureError::NeedsRestart { field });
        }
        let interval_changed = self.config.advert_interval != config.advert_interval;
        let preempt_delay_changed = self.config.preempt_delay != config.preempt_delay;
        self.priority = config.priority;
        if preempt_delay_changed && now < self.preempt_allowed_from {
            // A delay still running is re-measured from now with the new length.
            self.preempt_allowed_from = now + config.preempt_delay;
        }
        self.config = config;
        match self.state {
            State::Master => {
                if interval_changed {
                    // §6.4.2 (v3): backups learn the interval from our
                    // adverts; send one now so they do at once.
                    self.send_advert(self.priority);
                    self.adver_timer = Some(now + self.config.advert_interval());
                }
                self.master_adver_interval = self.config.advert_interval();
                // Followers added or removed: the new ones hear us at once.
                match (self.config.followers.is_empty(), self.follower_timer) {
                    (true, _) => self.follower_timer = None,
                    (false, None) => {
                        self.send_to_followers(self.priority);
                        self.schedule_followers(now);
                    }
                    (false, Some(_)) => {}
                }
            }
            State::Backup => {
                if self.master.is_none() {
                    // No master heard yet: our own interval stands in for its.
                    self.master_adver_interval = self.config.advert_interval();
                }
            }
            State::Initialize | State::Fault => {
                self.master_adver_interval = self.config.advert_interval();
            }
        }
        Ok(())
    }

    /// The advertisement this instance sends, with `priority`.
    pub fn advertisement(&self, priority: u8) -> Advertisement {
        let fields = match self.config.version {
            Version::V2 => VersionFields::V2 {
                // Config::validate guarantees whole seconds below 256.
                advert_interval_secs: u8::try_from(self.config.advert_interval.0 / 100)
                    .unwrap_or(u8::MAX),
                auth: self.config.auth,
            },
            Version::V3 => VersionFields::V3 {
                max_advert_interval: Centiseconds(self.config.advert_interval.0),
            },
        };
        Advertisement {
            vrid: self.config.vrid,
            priority,
            addresses: self.config.virtual_addresses.clone(),
            fields,
        }
    }

    /// RFC 5798 §6.4.1 from Initialize (or Fault): owner to Master, else
    /// Backup.
    fn enter_service(&mut self, now: Timestamp, backup_reason: Reason) {
        self.master_adver_interval = self.config.advert_interval();
        self.master = None;
        if self.priority == PRIORITY_OWNER {
            self.become_master(now, Reason::AddressOwner);
        } else {
            // §6.4.1: Master_Adver_Interval = Advertisement_Interval,
            // Master_Down_Timer = Master_Down_Interval, go to Backup.
            self.master_down_timer = Some(now + self.master_down_interval());
            self.down_timer_cause = DownTimerCause::MasterSilent;
            self.change_state(State::Backup, backup_reason);
        }
    }

    /// §6.4.1/§6.4.2: send an ADVERTISEMENT, announce the addresses, set
    /// the Adver_Timer, transition to Master.
    fn become_master(&mut self, now: Timestamp, reason: Reason) {
        self.master_down_timer = None;
        self.master = None;
        self.change_state(State::Master, reason);
        for address in self.config.virtual_addresses.clone() {
            self.actions.push_back(Action::AddVip(address));
        }
        self.send_advert(self.priority);
        self.announce_addresses();
        self.adver_timer = Some(now + self.config.advert_interval());
        self.reannounce_timer = self.config.reannounce_after.map(|delay| now + delay);
        // The followers learn of the new master at once, with a burst
        // against loss (like the gratuitous ARPs of a LAN).
        if !self.config.followers.is_empty() {
            self.send_to_followers(self.priority);
            self.follower_burst_left = self.config.follower_burst.saturating_sub(1);
            self.schedule_followers(now);
        }
    }

    /// The next advert to the followers: the rest of the burst, then the
    /// follower period.
    fn schedule_followers(&mut self, now: Timestamp) {
        if self.follower_burst_left > 0 {
            self.follower_burst_left -= 1;
            self.follower_timer = Some(now + self.config.follower_burst_spacing);
        } else {
            self.follower_timer = Some(now + self.config.follower_period());
        }
    }

    fn send_to_followers(&mut self, priority: u8) {
        if !self.config.followers.is_empty() {
            let advert = self.advertisement(priority);
            self.actions.push_back(Action::SendToFollowers(advert));
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = self.advertisement(priority);
        self.actions.push_back(Action::SendAdvert(advert));
    }

    fn announce_addresses(&mut self) {
        for address in self.config.virtual_addresses.clone() {
            self.actions.push_back(Action::SendGratuitous(address));
        }
    }

    /// Leaving Master: its timers stop and the addresses go.
    fn stop_serving(&mut self) {
        self.adver_timer = None;
        self.reannounce_timer = None;
        self.follower_timer = None;
        self.follower_burst_left = 0;
        for address in self.config.virtual_addresses.clone() {
            self.actions.push_back(Action::RemoveVip(address));
        }
    }

    fn change_state(&mut self, to: State, reason: Reason) {
        let from = self.state;
        self.state = to;
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }
}
