//! The configuration of one virtual router instance.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::packet::{Auth, ChecksumMode, Version};
use super::timer::Centiseconds;

/// One VRRP instance: a VRID on one interface, one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// RFC 5798 §5.2.3: 1-255.
    pub vrid: u8,
    pub version: Version,
    /// RFC 5798 §6.1: 255 for the owner of the virtual addresses, else
    /// 1-254. Trackers lower the effective priority at run time
    /// ([`super::Instance::set_priority`]); this is the starting value.
    pub priority: u8,
    /// RFC 5798 §6.1 Advertisement_Interval. For VRRPv2 it must be whole
    /// seconds (RFC 3768 §5.3.7), 1-255 s; for VRRPv3 1-4095 cs.
    pub advert_interval: Centiseconds,
    /// RFC 5798 §6.1 Preempt_Mode: whether a higher-priority backup takes
    /// over from a lower-priority master.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: after startup (and after leaving Fault)
    /// the instance accepts a lower-priority master for this long before it
    /// preempts, so a node that just booted does not grab the address before
    /// its services are warm. Zero disables it.
    pub preempt_delay: Duration,
    /// The address adverts are sent from; it breaks priority ties
    /// (RFC 5798 §6.4.3) and lets the instance recognise its own adverts.
    pub primary_address: IpAddr,
    /// RFC 5798 §5.2.9: the addresses the master holds, all of the family of
    /// `primary_address`.
    pub virtual_addresses: Vec<IpAddr>,
    /// VRRPv2 only (RFC 3768 §5.3.6).
    pub auth: Auth,
    /// VRRPv3 over IPv4 only; see [`ChecksumMode`].
    pub checksum_mode: ChecksumMode,
    /// When a master hears a lower-priority advert (two masters, e.g. after
    /// a partition heals), re-announce the virtual addresses as well as
    /// advertising at once. The other master gives up on our advert, but
    /// hosts and switches may have learned its MAC meanwhile; keepalived's
    /// `garp_lower_prio_repeat` exists for the same reason.
    pub announce_on_lower_priority: bool,
    /// This router is known to be the designated successor: the highest
    /// priority of every router of the group except the master's. Skew_Time
    /// (RFC 5798 §6.1) exists to let the best backup win a race with the
    /// others; when the configuration proves there is no better backup, the
    /// skew only delays the takeover, so the successor uses none: it takes
    /// over 3 advert intervals after the master falls silent, and at once on
    /// a priority 0 advert. Only while its priority is the configured one
    /// (a tracker that lowers it may make another backup the best).
    pub designated_successor: bool,
    /// A second round of gratuitous ARPs / NAs this long after becoming
    /// Master (keepalived's `garp_master_delay`, 5 s by default): a switch
    /// port still in STP learning, or a host that missed the first round,
    /// catches up without waiting for its cache to expire. `None` disables.
    pub reannounce_after: Option<Duration>,
    /// Unicast mode: the peers the adverts go to, the only senders heard
    /// (anyone else's advert is [`super::Rejected::NotAPeer`]). `None` in
    /// multicast mode, where any sender on the segment is heard.
    pub unicast_peers: Option<Vec<IpAddr>>,
    /// Mesh followers: nodes that never advertise but route the VIP to the
    /// master they hear ([`super::Follower`]). A master sends each one an
    /// advert at once on becoming master, `follower_burst` of them
    /// `follower_burst_spacing` apart, then one every
    /// [`Config::follower_period`]; and its priority 0 when it leaves.
    /// Empty on a LAN, where gratuitous ARP does this job.
    pub followers: Vec<IpAddr>,
    /// Between two adverts to the followers, after the burst.
    pub follower_interval: Duration,
    /// Adverts in the burst a new master sends the followers (at least 1).
    pub follower_burst: u32,
    pub follower_burst_spacing: Duration,
}

impl Config {
    /// An instance with keepalived's defaults: VRRPv3, priority 100, one
    /// second interval, preemption on, no delay.
    pub fn new(vrid: u8, primary_address: IpAddr, virtual_addresses: Vec<IpAddr>) -> Config {
        Config {
            vrid,
            version: Version::V3,
            priority: 100,
            advert_interval: Centiseconds(100),
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address,
            virtual_addresses,
            auth: Auth::None,
            checksum_mode: ChecksumMode::default(),
            announce_on_lower_priority: true,
            designated_successor: false,
            reannounce_after: Some(Duration::from_secs(5)),
            unicast_peers: None,
            followers: Vec::new(),
            follower_interval: Duration::from_millis(500),
            follower_burst: 5,
            follower_burst_spacing: Duration::from_millis(10),
        }
    }

    /// How often the followers hear a master between transitions: the
    /// follower interval, but never more often than the advert interval.
    pub fn follower_period(&self) -> Duration {
        self.follower_interval.max(self.advert_interval())
    }

    /// RFC 5798 §6.1: Advertisement_Interval as a duration.
    pub fn advert_interval(&self) -> Duration {
        self.advert_interval.to_duration()
    }

    /// The first field that differs in `new` among those that identify the
    /// router on the wire, or `None`: what [`super::Instance::reconfigure`]
    /// cannot change in place.
    pub fn identity_change(&self, new: &Config) -> Option<&'static str> {
        let owner = |c: &Config| c.priority == super::packet::PRIORITY_OWNER;
        [
            ("vrid", self.vrid != new.vrid),
            ("version", self.version != new.version),
            ("node address", self.primary_address != new.primary_address),
            ("vip", self.virtual_addresses != new.virtual_addresses),
            // The owner skips Backup entirely (§6.4.1): not a change to make live.
            (
                "address ownership (priority 255)",
                owner(self) != owner(new),
            ),
        ]
        .into_iter()
        .find_map(|(field, changed)| changed.then_some(field))
    }

    /// Checks the rules the protocol imposes on a configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::VridZero);
        }
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero);
        }
        if self.virtual_addresses.is_empty() {
            return Err(ConfigError::NoVirtualAddresses);
        }
        if !self.followers.is_empty()
            && (self.follower_interval.is_zero() || self.follower_burst == 0)
        {
            return Err(ConfigError::BadFollowerSchedule);
        }
        if self.virtual_addresses.len() > 255 {
            return Err(ConfigError::TooManyVirtualAddresses);
        }
        let mut sorted = self.virtual_addresses.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateVirtualAddress);
        }
        let ipv6 = self.primary_address.is_ipv6();
        if self.virtual_addresses.iter().any(|a| a.is_ipv6() != ipv6) {
            return Err(ConfigError::AddressFamilyMismatch);
        }
        match self.version {
            Version::V2 => {
                if ipv6 {
                    return Err(ConfigError::V2OverIpv6);
                }
                let cs = self.advert_interval.0;
                if cs == 0 || !cs.is_multiple_of(100) || cs / 100 > 255 {
                    return Err(ConfigError::BadAdvertInterval);
                }
            }
            Version::V3 => {
                if self.advert_interval.0 == 0 || self.advert_interval > Centiseconds::MAX {
                    return Err(ConfigError::BadAdvertInterval);
                }
                if self.auth != Auth::None {
                    return Err(ConfigError::AuthWithV3);
                }
            }
        }
        Ok(())
    }
}

/// A configuration the protocol cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    VridZero,
    /// Priority 0 is reserved for "master leaving" (RFC 5798 §5.2.4).
    PriorityZero,
    NoVirtualAddresses,
    TooManyVirtualAddresses,
    DuplicateVirtualAddress,
    AddressFamilyMismatch,
    V2OverIpv6,
    BadAdvertInterval,
    /// RFC 5798 §9 removed authentication from VRRPv3.
    AuthWithV3,
    /// Followers need a non-zero interval and a burst of at least one.
    BadFollowerSchedule,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::VridZero => "VRID must be 1-255",
            ConfigError::PriorityZero => "priority must be 1-255 (0 means 'master leaving')",
            ConfigError::NoVirtualAddresses => "at least one virtual address is required",
            ConfigError::TooManyVirtualAddresses => "at most 255 virtual addresses fit an advert",
            ConfigError::DuplicateVirtualAddress => "a virtual address is listed twice",
            ConfigError::AddressFamilyMismatch => {
                "virtual addresses must be of the primary address's family"
            }
            ConfigError::V2OverIpv6 => "VRRPv2 is IPv4 only; use VRRPv3 for IPv6",
            ConfigError::BadAdvertInterval => {
                "advertisement interval must be 1-255 whole seconds (v2) or 10ms-40.95s in 10ms steps (v3)"
            }
            ConfigError::AuthWithV3 => "VRRPv3 has no authentication",
            ConfigError::BadFollowerSchedule => {
                "the follower interval must be above zero and the burst at least one advert"
            }
        })
    }
}

impl std::error::Error for ConfigError {}
