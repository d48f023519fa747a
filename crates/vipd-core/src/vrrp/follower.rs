//! A mesh follower: which VIP holder is master right now, learned from the
//! adverts the holders send, so the IO shell can route the VIP to exactly
//! that holder.
//!
//! On a WireGuard mesh a packet to the VIP goes to the one peer whose
//! AllowedIPs hold the VIP's /32 (/128), and a packet from the VIP is
//! accepted only from that peer. A gratuitous ARP means nothing there, so
//! every node that runs vipd follows the master itself: the holders send
//! their adverts to every follower too (unicast, see
//! [`super::Config::followers`]), and each follower applies the rules a
//! VRRP backup applies to decide whose adverts to believe. The shell turns
//! [`FollowerAction::Route`] into one WireGuard change that moves the VIP
//! from the old peer to the new one.
//!
//! The rules, each a test in `tests/follower.rs`:
//!
//! - Only the holders named in the file are followed (a follower never
//!   routes the VIP to a node that is not a VIP holder), and only through
//!   the receive checks of RFC 5798 §7.1 (VRID, version, family, address
//!   list).
//! - Every holder heard advertising is a master (backups do not advertise,
//!   §6.4.2). Of two masters heard at once (holders partitioned from each
//!   other), the higher priority wins and a tie goes to the higher address
//!   (§6.4.3), the same answer on every follower.
//! - A master that missed its advert (none for one interval and a grace of
//!   a quarter of it) loses to a master that did not: when a backup takes
//!   over from a dead master it is usually lower in priority, and waiting
//!   out the dead one's full Master_Down_Interval would cost seconds.
//! - Priority 0 (§5.2.4, "master leaving") marks the holder as leaving: it
//!   keeps the VIP until its successor is heard (make before break), so the
//!   follower keeps routing to it until another holder advertises, then
//!   follows that one at once whatever its priority.
//! - A master silent for Master_Down_Interval (§6.1, of the interval the
//!   follower hears it at) is no longer trusted; with nobody trusted, the
//!   VIP is routed nowhere rather than to a dead holder.
//! - On a holder, [`Follower::set_local_master`] says this node holds the
//!   VIP itself: then it is routed to no peer.
//!
//! Sans-IO, like [`super::Instance`]: time comes in as [`Timestamp`]s, and
//! [`Follower::next_timeout`] says when to call [`Follower::handle_timeout`].

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::packet::{Advertisement, DecodeOptions, PRIORITY_STOP, Version};
use super::receive::Receiver;
use super::receive::Rejected;
use super::timer::{Timestamp, master_down_interval, skew_time_v3};

/// What a follower is configured with, from the cluster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerConfig {
    pub vrid: u8,
    pub version: Version,
    /// The addresses the master holds (§7.1 compares the advert's list).
    pub virtual_addresses: Vec<IpAddr>,
    /// The VIP holders' addresses: the only senders followed.
    pub holders: Vec<IpAddr>,
    /// How often the master is heard here: the follower interval on a
    /// follower, the VRRP advert interval on a holder (which hears its
    /// peers' adverts). An advert announcing a longer interval is judged by
    /// its own (a keepalived master sends every follower its advert_int).
    pub interval: Duration,
    /// This node's address when it is a holder itself: its own adverts
    /// are not followed.
    pub own_address: Option<IpAddr>,
}

/// Where the VIP is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// To this holder's WireGuard peer.
    Holder(IpAddr),
    /// To no peer: this node is the master and holds the VIP itself.
    Local,
    /// To no peer: no master is trusted (or none was heard yet).
    Nowhere,
}

impl Route {
    pub fn holder(self) -> Option<IpAddr> {
        match self {
            Route::Holder(address) => Some(address),
            Route::Local | Route::Nowhere => None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Holder(address) => write!(f, "holder {address}"),
            Route::Local => f.write_str("local (this node is master)"),
            Route::Nowhere => f.write_str("nowhere (no master trusted)"),
        }
    }
}

/// Why the route changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteReason {
    /// The first master heard (or the first after none was trusted).
    MasterHeard,
    /// §6.4.3 applied by the follower: a higher priority, or an equal one
    /// from a higher address, than the master followed so far.
    HigherPriority,
    /// The master followed so far missed its advert while this one did not.
    FormerMasterOverdue,
    /// The master followed so far sent priority 0 and this one advertised.
    FormerMasterLeft,
    /// The master followed so far was silent for Master_Down_Interval.
    MasterSilent,
    /// This node became master, or stopped being it.
    LocalState,
}

impl RouteReason {
    /// A stable name for logs and metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            RouteReason::MasterHeard => "master_heard",
            RouteReason::HigherPriority => "higher_priority",
            RouteReason::FormerMasterOverdue => "former_master_overdue",
            RouteReason::FormerMasterLeft => "former_master_left",
            RouteReason::MasterSilent => "master_silent",
            RouteReason::LocalState => "local_state",
        }
    }
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteReason::MasterHeard => "a master was heard",
            RouteReason::HigherPriority => "a master with a higher priority (or address) was heard",
            RouteReason::FormerMasterOverdue => "the former master missed its advert",
            RouteReason::FormerMasterLeft => "the former master left (priority 0)",
            RouteReason::MasterSilent => "the master was silent for Master_Down_Interval",
            RouteReason::LocalState => "this node's own VRRP state changed",
        })
    }
}

/// What the IO shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerAction {
    /// Route the VIP to `to` instead of `from`: one change that moves it
    /// (never on two peers at once).
    Route {
        from: Route,
        to: Route,
        reason: RouteReason,
    },
}

/// One holder heard advertising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    holder: IpAddr,
    priority: u8,
    last_heard: Timestamp,
    /// The interval it is judged by: the configured one or the advert's.
    interval: Duration,
}

impl Claim {
    fn leaving(&self) -> bool {
        self.priority == PRIORITY_STOP
    }

    /// Missed its advert: one interval and a quarter of one for jitter.
    fn overdue_at(&self) -> Timestamp {
        self.last_heard + self.interval + self.interval / 4
    }

    /// §6.1 Master_Down_Interval, with the Skew_Time of its priority.
    fn expires_at(&self) -> Timestamp {
        let skew = skew_time_v3(self.priority, self.interval);
        self.last_heard + master_down_interval(self.interval, skew)
    }
}

/// The follower of one VRID. See the module docs.
#[derive(Debug)]
pub struct Follower {
    config: FollowerConfig,
    receiver: Receiver,
    claims: Vec<Claim>,
    route: Route,
    local_master: bool,
    /// When the rules last ran: deadlines up to here are judged.
    decided_at: Timestamp,
    actions: VecDeque<FollowerAction>,
}

impl Follower {
    pub fn new(config: FollowerConfig) -> Follower {
        Follower {
            receiver: Receiver::new(config.vrid, config.version, &config.virtual_addresses),
            config,
            claims: Vec::new(),
            route: Route::Nowhere,
            local_master: false,
            decided_at: Timestamp::ZERO,
            actions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &FollowerConfig {
        &self.config
    }

    /// Where the VIP is routed now.
    pub fn route(&self) -> Route {
        self.route
    }

    /// The priority the followed master advertised last.
    pub fn followed_priority(&self) -> Option<u8> {
        let holder = self.route.holder()?;
        self.claims
            .iter()
            .find(|c| c.holder == holder)
            .map(|c| c.priority)
    }

    /// Followers do not check VRRPv2's password: the mesh authenticates
    /// the sender (its WireGuard key), and a follower need not know the
    /// holders' secret.
    pub fn decode_options(&self, checksum_mode: super::ChecksumMode) -> DecodeOptions {
        DecodeOptions {
            checksum_mode,
            auth: None,
        }
    }

    /// Applies a new configuration (a reload): claims of holders no longer
    /// in the file are forgotten at once.
    pub fn reconfigure(&mut self, now: Timestamp, config: FollowerConfig) {
        self.receiver = Receiver::new(config.vrid, config.version, &config.virtual_addresses);
        self.claims.retain(|c| config.holders.contains(&c.holder));
        self.config = config;
        self.decide(now);
    }

    pub fn poll_action(&mut self) -> Option<FollowerAction> {
        self.actions.pop_front()
    }

    /// When [`Follower::handle_timeout`] must be called next: the next
    /// claim to fall overdue or to expire.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.claims
            .iter()
            .flat_map(|c| [c.overdue_at(), c.expires_at()])
            .filter(|&deadline| deadline > self.decided_at)
            .min()
    }

    /// A decoded advert from `src`, arriving on the mesh interface with TTL
    /// 255 (the shell checked both).
    pub fn handle_advert(
        &mut self,
        now: Timestamp,
        src: IpAddr,
        advert: &Advertisement,
    ) -> Result<(), Rejected> {
        if !self.config.holders.contains(&src) {
            return Err(Rejected::NotAHolder);
        }
        if self.config.own_address == Some(src) {
            return Err(Rejected::OwnAdvert);
        }
        self.receiver.check(src, advert)?;
        self.receiver.check_addresses(advert)?;
        let claim = Claim {
            holder: src,
            priority: advert.priority,
            last_heard: now,
            interval: self.config.interval.max(advert.advert_interval()),
        };
        match self.claims.iter_mut().find(|c| c.holder == src) {
            Some(existing) => *existing = claim,
            None => self.claims.push(claim),
        }
        self.decide(now);
        Ok(())
    }

    /// Forgets the masters silent for too long, re-judges the overdue ones.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.decide(now);
    }

    /// On a holder: whether this node is master (holds the VIP) itself.
    pub fn set_local_master(&mut self, now: Timestamp, master: bool) {
        if self.local_master != master {
            self.local_master = master;
            self.decide(now);
        }
    }

    /// Picks the route by the rules in the module docs, and queues the
    /// change.
    fn decide(&mut self, now: Timestamp) {
        self.decided_at = self.decided_at.max(now);
        let before = self.route.holder();
        let followed_expired = before.is_some_and(|h| {
            self.claims
                .iter()
                .find(|c| c.holder == h)
                .is_none_or(|c| c.expires_at() <= now)
        });
        self.claims.retain(|c| c.expires_at() > now);
        let best = self
            .claims
            .iter()
            .max_by_key(|c| (!c.leaving(), c.overdue_at() > now, c.priority, c.holder));
        let (to, reason) = if self.local_master {
            (Route::Local, RouteReason::LocalState)
        } else {
            match best {
                None => (Route::Nowhere, RouteReason::MasterSilent),
                Some(best) => {
                    let reason = match before
                        .and_then(|h| self.claims.iter().find(|c| c.holder == h))
                    {
                        None if followed_expired => RouteReason::MasterSilent,
                        None => RouteReason::MasterHeard,
                        Some(old) if old.leaving() => RouteReason::FormerMasterLeft,
                        Some(old) if old.overdue_at() <= now => RouteReason::FormerMasterOverdue,
                        Some(_) => RouteReason::HigherPriority,
                    };
                    (Route::Holder(best.holder), reason)
                }
            }
        };
        if to != self.route {
            let reason = match (self.route, to) {
                (Route::Local, _) => RouteReason::LocalState,
                _ => reason,
            };
            self.actions.push_back(FollowerAction::Route {
                from: self.route,
                to,
                reason,
            });
            self.route = to;
        }
    }
}
