//! A deterministic virtual LAN of VRRP routers for the simulation tests.
//!
//! One shared virtual clock, one seeded PRNG; every advert goes through the
//! real codec (encode, an IPv4 header, parse, TTL check, decode) and is
//! delivered to every other router in the same partition component after a
//! random delay, unless lost. Routers can be killed (stop dead, no priority
//! 0, the VIP stays on the dead box), shut down gracefully, restarted,
//! faulted and re-prioritised; faults and priorities go through trackers
//! and keepalived's weights ([`assess`]), as in the daemon.

#![allow(dead_code)] // each test binary uses part of the harness

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use vipd_core::vrrp::packet::{MULTICAST_V4, MULTICAST_V6, PROTOCOL};
use vipd_core::vrrp::{
    Action, Advertisement, Centiseconds, ChecksumMode, Config, Follower, FollowerConfig, Instance,
    Ipv4Header, Rejected, Route, State, Timestamp, TrackerState, Version, assess, check_ttl,
};

/// SplitMix64: tiny, fast, and good enough to drive scenarios.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_micros() as u64, hi.as_micros() as u64);
        Duration::from_micros(self.range(lo, hi))
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Link behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub loss_per_mille: u64,
}

#[derive(Debug)]
pub struct Router {
    pub address: IpAddr,
    pub config: Config,
    pub instance: Instance,
    /// False once killed or shut down.
    pub alive: bool,
    /// Whether the VIP is on this router's interface (a killed router keeps
    /// it, as keepalived does after SIGKILL).
    pub holds_vip: bool,
    /// Routers only hear routers of the same component.
    pub component: u8,
    /// A holder follows the master too (for its own connections to the
    /// VIP), fed the adverts it hears.
    pub follower: Option<Follower>,
    pub judge: Judge,
    /// Adverts dropped as [`Rejected::NotAPeer`]: from a router missing
    /// from this one's unicast peers.
    pub not_a_peer: u64,
    /// The priority the tracker weights start from: the configured one,
    /// or the one a scenario re-prioritised the router to.
    pub base_priority: u8,
    /// [`FAULT_TRACKER`] and [`WEIGHT_TRACKER`]; they outlive restarts (a
    /// daemon restart does not heal what a tracker checks).
    pub trackers: Vec<Tracker>,
}

/// One tracker of a router: a health check with keepalived's weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub name: &'static str,
    pub weight: i32,
    pub healthy: bool,
}

/// Index of the weight-0 tracker [`Sim::set_fault`] fails.
pub const FAULT_TRACKER: usize = 0;
/// Index of the tracker a scenario gives a weight to.
pub const WEIGHT_TRACKER: usize = 1;

/// A mesh follower: never sends, routes the VIP to the master it hears.
#[derive(Debug)]
pub struct MeshFollower {
    pub address: IpAddr,
    pub follower: Follower,
    pub component: u8,
    pub judge: Judge,
}

/// How long one follower has routed the VIP wrong, for the bound.
#[derive(Debug, Default, Clone, Copy)]
pub struct Judge {
    /// Since when the route has been wrong while a reachable master held
    /// the VIP.
    pub misrouted_since: Option<Timestamp>,
    /// Since when the route has pointed at a holder that is dead or
    /// unreachable while no reachable master exists (Nowhere is right then).
    pub stale_since: Option<Timestamp>,
    /// The longest of each seen so far.
    pub worst_misrouted: Duration,
    pub worst_stale: Duration,
}

/// Which node a packet is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Router(usize),
    Follower(usize),
}

struct InFlight {
    at: Timestamp,
    seq: u64,
    from: usize,
    to: Node,
    /// IPv4: the whole IP packet, as a raw socket returns it. IPv6: the VRRP
    /// message alone (raw IPv6 sockets strip the header; the hop limit
    /// arrives as ancillary data).
    packet: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed, so the BinaryHeap pops the earliest (then oldest) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

/// Router `host`'s primary address: 10.0.0.host, or fe80::host over IPv6
/// (RFC 5798 §5.1.2.1: IPv6 adverts come from the link-local address).
pub fn host_address(ipv6: bool, host: u8) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(host)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, host))
    }
}

pub struct Sim {
    pub now: Timestamp,
    pub rng: Rng,
    pub link: Link,
    pub routers: Vec<Router>,
    pub followers: Vec<MeshFollower>,
    /// While false, follower routes are not held to the bounds (a loss
    /// burst may silence any master for a while).
    pub judging: bool,
    /// The bounds the followers are held to (see [`Judge`]).
    pub misroute_bound: Duration,
    pub stale_bound: Duration,
    pub checksum_mode: ChecksumMode,
    in_flight: BinaryHeap<InFlight>,
    seq: u64,
    /// Latest arrival scheduled per (from, to): one sender's packets on one
    /// path never overtake each other, as on a real segment.
    last_arrival: HashMap<(usize, Node), Timestamp>,
    /// Set when a router misbehaved; the scenario reports it.
    pub violation: Option<String>,
    /// Human-readable log, kept only when `verbose`.
    pub trace: String,
    pub verbose: bool,
    pub delivered: u64,
}

/// What a router is configured with in a scenario.
#[derive(Debug, Clone, Copy)]
pub struct RouterSpec {
    pub address: IpAddr,
    pub priority: u8,
    pub preempt: bool,
}

impl Sim {
    pub fn new(seed: u64, link: Link, checksum_mode: ChecksumMode) -> Sim {
        Sim {
            now: Timestamp::ZERO,
            rng: Rng::new(seed),
            link,
            routers: Vec::new(),
            followers: Vec::new(),
            judging: true,
            misroute_bound: Duration::MAX,
            stale_bound: Duration::MAX,
            checksum_mode,
            in_flight: BinaryHeap::new(),
            seq: 0,
            last_arrival: HashMap::new(),
            violation: None,
            trace: String::new(),
            verbose: false,
            delivered: 0,
        }
    }

    /// Adds a router in Initialize; it runs once [`Sim::start`]ed.
    pub fn add_router(&mut self, spec: RouterSpec, version: Version, interval: Centiseconds) {
        let vip = match spec.address {
            IpAddr::V4(_) => IpAddr::V4(VIP4),
            IpAddr::V6(_) => IpAddr::V6(VIP6),
        };
        let config = Config {
            version,
            priority: spec.priority,
            preempt: spec.preempt,
            advert_interval: interval,
            checksum_mode: self.checksum_mode,
            ..Config::new(51, spec.address, vec![vip])
        };
        let instance = Instance::new(config.clone()).expect("valid config");
        self.routers.push(Router {
            address: spec.address,
            config,
            instance,
            alive: false,
            holds_vip: false,
            component: 0,
            follower: None,
            judge: Judge::default(),
            not_a_peer: 0,
            base_priority: spec.priority,
            trackers: vec![
                Tracker {
                    name: "proxy",
                    weight: 0,
                    healthy: true,
                },
                Tracker {
                    name: "apiserver",
                    weight: 0,
                    healthy: true,
                },
            ],
        });
    }

    /// Puts every router in unicast mode with the others as its peers, as
    /// the cluster file's holders are. Call before [`Sim::start`].
    pub fn use_unicast(&mut self) {
        let addresses: Vec<IpAddr> = self.routers.iter().map(|r| r.address).collect();
        for router in &mut self.routers {
            let peers = addresses
                .iter()
                .copied()
                .filter(|&a| a != router.address)
                .collect();
            router.config.unicast_peers = Some(peers);
        }
    }

    /// Turns the routers into holders on a mesh with `count` followers at
    /// `host_base + i`: the holders send them adverts every
    /// `follower_interval` (after a burst on becoming master), the
    /// followers and the holders themselves follow the master. Call after
    /// the last [`Sim::add_router`], before [`Sim::start`].
    pub fn add_followers(&mut self, count: u8, host_base: u8, follower_interval: Duration) {
        let ipv6 = self.routers[0].address.is_ipv6();
        let addresses: Vec<IpAddr> = (0..count)
            .map(|i| host_address(ipv6, host_base + i))
            .collect();
        let holders: Vec<IpAddr> = self.routers.iter().map(|r| r.address).collect();
        let template = |router: &Router, interval: Duration, own: Option<IpAddr>| FollowerConfig {
            vrid: router.config.vrid,
            version: router.config.version,
            virtual_addresses: router.config.virtual_addresses.clone(),
            holders: holders.clone(),
            interval,
            own_address: own,
        };
        let first = &self.routers[0];
        let followers: Vec<MeshFollower> = addresses
            .iter()
            .map(|&address| MeshFollower {
                address,
                follower: Follower::new(template(first, follower_interval, None)),
                component: 0,
                judge: Judge::default(),
            })
            .collect();
        self.followers = followers;
        for i in 0..self.routers.len() {
            let config = template(
                &self.routers[i],
                self.routers[i].config.advert_interval(),
                Some(self.routers[i].address),
            );
            let router = &mut self.routers[i];
            router.config.followers = addresses.clone();
            router.config.follower_interval = follower_interval;
            router.follower = Some(Follower::new(config));
        }
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.verbose {
            let line = line();
            let _ = writeln!(self.trace, "{} {line}", self.now);
        }
    }

    /// Starts (or restarts after a kill/shutdown) router `i` with a fresh
    /// instance, as a restarted daemon would be.
    pub fn start(&mut self, i: usize) {
        let router = &mut self.routers[i];
        router.instance = Instance::new(router.config.clone()).expect("valid config");
        if let Some(follower) = &mut router.follower {
            *follower = Follower::new(follower.config().clone());
        }
        router.alive = true;
        // A reboot clears the interface; a daemon restart would delete
        // leftover VIPs at startup.
        router.holds_vip = false;
        // As the driver does: the trackers are judged before startup.
        self.reassess(i);
        let now = self.now;
        self.routers[i].instance.startup(now);
        self.log(|| format!("r{i} start"));
        self.drain(i);
    }

    /// SIGKILL: the router stops dead. No priority 0, the VIP stays.
    pub fn kill(&mut self, i: usize) {
        self.routers[i].alive = false;
        self.log(|| format!("r{i} killed"));
    }

    /// Graceful stop: priority 0 out, VIP removed, then the process exits.
    pub fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.routers[i].instance.shutdown(now);
        self.log(|| format!("r{i} shutdown"));
        self.drain(i);
        self.routers[i].alive = false;
    }

    /// Re-prioritises router `i`: the new base of its tracker weights.
    pub fn set_priority(&mut self, i: usize, priority: u8) {
        self.routers[i].base_priority = priority;
        self.log(|| format!("r{i} priority {priority}"));
        self.reassess(i);
    }

    /// Fails router `i`'s weight-0 tracker: it goes to Fault.
    pub fn set_fault(&mut self, i: usize) {
        self.log(|| format!("r{i} fault"));
        self.set_tracker(i, FAULT_TRACKER, 0, false);
    }

    /// Heals router `i`'s weight-0 tracker.
    pub fn clear_fault(&mut self, i: usize) {
        self.log(|| format!("r{i} fault cleared"));
        self.set_tracker(i, FAULT_TRACKER, 0, true);
    }

    /// Sets tracker `t` of router `i` to `weight` and `healthy`, and hands
    /// the instance what changed.
    pub fn set_tracker(&mut self, i: usize, t: usize, weight: i32, healthy: bool) {
        let tracker = &mut self.routers[i].trackers[t];
        tracker.weight = weight;
        tracker.healthy = healthy;
        self.log(|| format!("r{i} tracker {t} weight {weight} healthy {healthy}"));
        self.reassess(i);
    }

    /// Heals every tracker of router `i`.
    pub fn heal_trackers(&mut self, i: usize) {
        for tracker in &mut self.routers[i].trackers {
            tracker.healthy = true;
        }
        self.log(|| format!("r{i} trackers healed"));
        self.reassess(i);
    }

    /// The driver's reassess: keepalived's weights over the trackers (the
    /// link is always up here), the changes handed to the instance.
    fn reassess(&mut self, i: usize) {
        let now = self.now;
        let router = &mut self.routers[i];
        let trackers: Vec<TrackerState<'_>> = router
            .trackers
            .iter()
            .map(|t| TrackerState {
                name: t.name,
                weight: t.weight,
                healthy: t.healthy,
            })
            .collect();
        let assessment = assess(router.base_priority, &trackers, true);
        if assessment.priority != router.instance.priority() {
            router.instance.set_priority(now, assessment.priority);
        }
        match (router.instance.fault().is_some(), assessment.fault) {
            (false, Some(reason)) => router.instance.set_fault(now, reason),
            (true, None) => router.instance.clear_fault(now),
            _ => {}
        }
        self.drain(i);
    }

    /// Carries out router `i`'s actions.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.routers[i].instance.poll_action() {
            match action {
                Action::StateChanged { from, to, reason } => {
                    self.log(|| format!("r{i} {from} -> {to}: {reason}"));
                }
                Action::AddVip(_) => {
                    if self.routers[i].holds_vip {
                        self.violate(format!("r{i} added the VIP twice"));
                    }
                    self.routers[i].holds_vip = true;
                }
                Action::RemoveVip(_) => {
                    if !self.routers[i].holds_vip {
                        self.violate(format!("r{i} removed a VIP it did not hold"));
                    }
                    self.routers[i].holds_vip = false;
                }
                Action::SendAdvert(advert) => self.broadcast(i, &advert, false),
                Action::SendToFollowers(advert) => self.broadcast(i, &advert, true),
                Action::SendGratuitous(_) => {}
            }
        }
        let now = self.now;
        let master = self.routers[i].instance.state() == State::Master;
        if let Some(follower) = &mut self.routers[i].follower {
            follower.set_local_master(now, master);
            while follower.poll_action().is_some() {}
        }
        let router = &self.routers[i];
        if router.alive && router.holds_vip != (router.instance.state() == State::Master) {
            let state = router.instance.state();
            self.violate(format!(
                "r{i} in {state} but holds_vip={}",
                router.holds_vip
            ));
        }
    }

    fn violate(&mut self, what: String) {
        self.log(|| format!("VIOLATION {what}"));
        if self.violation.is_none() {
            self.violation = Some(format!("{} {what}", self.now));
        }
    }

    /// Sends `advert` from router `from` to the other routers (the group)
    /// or, with `to_followers`, to every follower.
    fn broadcast(&mut self, from: usize, advert: &Advertisement, to_followers: bool) {
        let src = self.routers[from].address;
        let packet = match src {
            IpAddr::V4(src4) => {
                let payload = advert
                    .encode(src, IpAddr::V4(MULTICAST_V4), self.checksum_mode)
                    .expect("encodable advert");
                let header = Ipv4Header {
                    header_len: 20,
                    tos: 0xc0,
                    total_len: (20 + payload.len()) as u16,
                    identification: 0,
                    flags_fragment: 0,
                    ttl: 255,
                    protocol: PROTOCOL,
                    header_checksum: 0,
                    src: src4,
                    dst: MULTICAST_V4,
                };
                let mut packet = header.encode().to_vec();
                packet.extend_from_slice(&payload);
                packet
            }
            IpAddr::V6(_) => advert
                .encode(src, IpAddr::V6(MULTICAST_V6), self.checksum_mode)
                .expect("encodable advert"),
        };
        let audience = if to_followers { "followers" } else { "routers" };
        self.log(|| format!("r{from} sends priority {} to {audience}", advert.priority));
        let targets: Vec<Node> = if to_followers {
            (0..self.followers.len()).map(Node::Follower).collect()
        } else {
            (0..self.routers.len())
                .filter(|&to| to != from)
                .map(Node::Router)
                .collect()
        };
        for to in targets {
            if self.component_of(to) != self.routers[from].component {
                continue;
            }
            if self.rng.chance(self.link.loss_per_mille) {
                continue;
            }
            let delay = self.rng.duration(self.link.min_delay, self.link.max_delay);
            let last = self.last_arrival.entry((from, to)).or_default();
            let at = (self.now + delay).max(*last);
            *last = at;
            self.seq += 1;
            self.in_flight.push(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                packet: packet.clone(),
            });
        }
    }

    fn component_of(&self, node: Node) -> u8 {
        match node {
            Node::Router(i) => self.routers[i].component,
            Node::Follower(i) => self.followers[i].component,
        }
    }

    fn deliver(&mut self, from: usize, to: Node, packet: &[u8]) {
        // A partition that formed while the packet was in flight drops it.
        if self.routers[from].component != self.component_of(to) {
            return;
        }
        let to = match to {
            Node::Router(to) if self.routers[to].alive => to,
            Node::Router(_) => return,
            Node::Follower(f) => return self.deliver_to_follower(from, f, packet),
        };
        // The receive path of the IO shell.
        let (src, dst, hop_limit, payload) = match self.routers[from].address {
            IpAddr::V4(_) => match Ipv4Header::parse(packet) {
                Ok((h, payload)) => (IpAddr::V4(h.src), IpAddr::V4(h.dst), h.ttl, payload),
                Err(e) => return self.violate(format!("r{to} IPv4 header: {e}")),
            },
            IpAddr::V6(_) => {
                let src = self.routers[from].address;
                (src, IpAddr::V6(MULTICAST_V6), 255, packet)
            }
        };
        if let Err(e) = check_ttl(hop_limit) {
            return self.violate(format!("r{to}: {e}"));
        }
        let options = self.routers[to].instance.decode_options();
        let advert = match Advertisement::decode(payload, src, dst, &options) {
            Ok(advert) => advert,
            Err(e) => return self.violate(format!("r{to} decode: {e}")),
        };
        self.delivered += 1;
        self.log(|| format!("r{to} hears priority {} from {src}", advert.priority));
        let now = self.now;
        if let Some(follower) = &mut self.routers[to].follower
            && let Err(e) = follower.handle_advert(now, src, &advert)
        {
            self.violate(format!(
                "r{to}'s follower rejected an advert from {src}: {e}"
            ));
        }
        let stranger = self.routers[to]
            .config
            .unicast_peers
            .as_ref()
            .is_some_and(|peers| !peers.contains(&src));
        match self.routers[to].instance.handle_advert(now, src, &advert) {
            Ok(_) | Err(Rejected::NotListening { .. }) if !stranger => {}
            Err(Rejected::NotAPeer) if stranger => self.routers[to].not_a_peer += 1,
            Ok(_) => self.violate(format!("r{to} heard {src}, not one of its peers")),
            Err(e) => self.violate(format!("r{to} rejected an advert from {src}: {e}")),
        }
        self.drain(to);
    }

    /// A follower's receive path: the IPv4 header and TTL, the codec
    /// (without the VRRPv2 password), then the follower.
    fn deliver_to_follower(&mut self, from: usize, to: usize, packet: &[u8]) {
        let (src, dst, payload) = match self.routers[from].address {
            IpAddr::V4(_) => match Ipv4Header::parse(packet) {
                Ok((h, payload)) => {
                    if let Err(e) = check_ttl(h.ttl) {
                        return self.violate(format!("f{to}: {e}"));
                    }
                    (IpAddr::V4(h.src), IpAddr::V4(h.dst), payload)
                }
                Err(e) => return self.violate(format!("f{to} IPv4 header: {e}")),
            },
            IpAddr::V6(_) => (self.routers[from].address, IpAddr::V6(MULTICAST_V6), packet),
        };
        let options = self.followers[to]
            .follower
            .decode_options(self.checksum_mode);
        let advert = match Advertisement::decode(payload, src, dst, &options) {
            Ok(advert) => advert,
            Err(e) => return self.violate(format!("f{to} decode: {e}")),
        };
        self.delivered += 1;
        let now = self.now;
        if let Err(e) = self.followers[to].follower.handle_advert(now, src, &advert) {
            return self.violate(format!("f{to} rejected an advert from {src}: {e}"));
        }
        while let Some(action) = self.followers[to].follower.poll_action() {
            self.log(|| format!("f{to} {action:?}"));
        }
    }

    /// The next event: a delivery or the earliest router timer.
    fn next_event(&self) -> Option<Timestamp> {
        let packet = self.in_flight.peek().map(|p| p.at);
        let timer = self
            .routers
            .iter()
            .filter(|r| r.alive)
            .flat_map(|r| {
                let follower = r.follower.as_ref().and_then(Follower::next_timeout);
                [r.instance.next_timeout(), follower]
            })
            .chain(self.followers.iter().map(|f| f.follower.next_timeout()))
            .flatten()
            .min();
        match (packet, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs events up to `until` (inclusive), then sets the clock to it.
    pub fn run_until(&mut self, until: Timestamp) {
        self.run_until_or(until, |_| false);
    }

    /// Runs events up to `until`, stopping early as soon as `done` holds
    /// after an event. Returns the time it first held, if it did.
    pub fn run_until_or(
        &mut self,
        until: Timestamp,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Timestamp> {
        if done(self) {
            return Some(self.now);
        }
        while let Some(at) = self.next_event() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            // Deliveries due now first, then timers, in router order: a
            // fixed order keeps runs reproducible.
            if self.in_flight.peek().is_some_and(|p| p.at <= self.now) {
                let packet = self.in_flight.pop().expect("peeked");
                self.deliver(packet.from, packet.to, &packet.packet);
            } else {
                for i in 0..self.routers.len() {
                    let router = &mut self.routers[i];
                    if router.alive && router.instance.next_timeout().is_some_and(|t| t <= at) {
                        router.instance.handle_timeout(at);
                        self.drain(i);
                    }
                    let alive = self.routers[i].alive;
                    if let Some(follower) = &mut self.routers[i].follower
                        && alive
                        && follower.next_timeout().is_some_and(|t| t <= at)
                    {
                        follower.handle_timeout(at);
                        while follower.poll_action().is_some() {}
                    }
                }
                for f in 0..self.followers.len() {
                    if self.followers[f]
                        .follower
                        .next_timeout()
                        .is_some_and(|t| t <= at)
                    {
                        self.followers[f].follower.handle_timeout(at);
                        while let Some(action) = self.followers[f].follower.poll_action() {
                            self.log(|| format!("f{f} {action:?}"));
                        }
                    }
                }
            }
            self.judge();
            if done(self) {
                return Some(self.now);
            }
        }
        self.now = self.now.max(until);
        self.judge();
        None
    }

    /// Holds every follower (the mesh's and the holders' own) to the
    /// bounds: while a reachable master holds the VIP, a wrong route lasts
    /// at most `misroute_bound`; while none does, a route to a dead or
    /// unreachable holder lasts at most `stale_bound`.
    pub fn judge(&mut self) {
        if !self.judging {
            for judge in self.judges_mut() {
                judge.misrouted_since = None;
                judge.stale_since = None;
            }
            return;
        }
        let now = self.now;
        let masters = |sim: &Sim, component: u8| -> Vec<IpAddr> {
            sim.routers
                .iter()
                .filter(|r| r.alive && r.holds_vip && r.component == component)
                .map(|r| r.address)
                .collect()
        };
        let mut verdicts = Vec::new();
        for (i, f) in self.followers.iter().enumerate() {
            verdicts.push((
                Node::Follower(i),
                f.follower.route(),
                masters(self, f.component),
                false,
            ));
        }
        for (i, r) in self.routers.iter().enumerate() {
            if let Some(follower) = r.follower.as_ref().filter(|_| r.alive) {
                let master = r.holds_vip;
                verdicts.push((
                    Node::Router(i),
                    follower.route(),
                    masters(self, r.component),
                    master,
                ));
            }
        }
        let (misroute_bound, stale_bound) = (self.misroute_bound, self.stale_bound);
        for (node, route, masters, local_master) in verdicts {
            let right = match route {
                Route::Holder(h) => masters.contains(&h),
                Route::Local => local_master,
                Route::Nowhere => masters.is_empty(),
            };
            let judge = match node {
                Node::Follower(i) => &mut self.followers[i].judge,
                Node::Router(i) => &mut self.routers[i].judge,
            };
            let misrouted = !right && !masters.is_empty();
            let stale = !right && masters.is_empty();
            let mut worst = None;
            for (wrong, since, longest, bound, what) in [
                (
                    misrouted,
                    &mut judge.misrouted_since,
                    &mut judge.worst_misrouted,
                    misroute_bound,
                    "misrouted",
                ),
                (
                    stale,
                    &mut judge.stale_since,
                    &mut judge.worst_stale,
                    stale_bound,
                    "stale",
                ),
            ] {
                match (wrong, *since) {
                    (true, None) => *since = Some(now),
                    (true, Some(start)) => {
                        let lasted = now - start;
                        *longest = (*longest).max(lasted);
                        if lasted > bound {
                            worst = Some(format!(
                                "{node:?} {what} for {lasted:?} ({route}; masters {masters:?}), bound {bound:?}"
                            ));
                        }
                    }
                    (false, Some(start)) => {
                        *longest = (*longest).max(now - start);
                        *since = None;
                    }
                    (false, None) => {}
                }
            }
            if let Some(what) = worst {
                self.violate(what);
            }
        }
    }

    fn judges_mut(&mut self) -> impl Iterator<Item = &mut Judge> {
        self.followers
            .iter_mut()
            .map(|f| &mut f.judge)
            .chain(self.routers.iter_mut().map(|r| &mut r.judge))
    }

    /// The longest wrong route any follower had: (misrouted, stale).
    pub fn worst_routes(&self) -> (Duration, Duration) {
        let judges = self
            .followers
            .iter()
            .map(|f| f.judge)
            .chain(self.routers.iter().map(|r| r.judge));
        judges.fold((Duration::ZERO, Duration::ZERO), |(m, s), j| {
            (m.max(j.worst_misrouted), s.max(j.worst_stale))
        })
    }

    /// Live routers in Master, by component.
    pub fn masters_in(&self, component: u8) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| {
                let r = &self.routers[i];
                r.alive && r.component == component && r.instance.state() == State::Master
            })
            .collect()
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].alive && self.routers[i].instance.state() == State::Master)
            .collect()
    }

    /// Live routers able to serve (not in Fault) in a component.
    pub fn candidates_in(&self, component: u8) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| {
                let r = &self.routers[i];
                r.alive && r.component == component && r.instance.state() != State::Fault
            })
            .collect()
    }

    /// The highest effective priority among `routers`.
    pub fn top_priority(&self, routers: &[usize]) -> Option<u8> {
        routers
            .iter()
            .map(|&i| self.routers[i].instance.priority())
            .max()
    }

    /// The largest Master_Down_Interval any router can have.
    pub fn max_master_down_interval(&self) -> Duration {
        self.routers
            .iter()
            .map(|r| {
                let interval = r.config.advert_interval();
                interval * 3 + interval.max(Duration::from_secs(1))
            })
            .max()
            .unwrap_or_default()
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.routers.iter().enumerate() {
            let _ = writeln!(
                out,
                "  r{i} {} prio {} (configured {}) preempt {} alive {} component {} state {} vip {}",
                r.address,
                r.instance.priority(),
                r.config.priority,
                r.config.preempt,
                r.alive,
                r.component,
                r.instance.state(),
                r.holds_vip
            );
        }
        out
    }
}
