//! The event loop of a mesh follower: the IO shell around
//! `vipd_core::vrrp::Follower`.
//!
//! It owns a receive-only VRRP socket on every interface (so an advert
//! that arrives off the mesh interface is seen, counted and dropped), the
//! clock, and the WireGuard device. Every wake-up is one of: a datagram,
//! the follower's next timeout, this node's own VRRP state (on a holder),
//! a link change of the mesh interface, a reload, the stop signal. The
//! follower decides where the VIP goes; this loop makes the device say so
//! and keeps it saying so: a change that failed (the interface gone, `wg`
//! missing) is retried, a recreated interface (its routes as the
//! rendered file has them) is re-programmed, and a device that carries the
//! route is read again every few seconds, so a change made outside vipd
//! (`wg syncconf` of the rendered file, a `wg set` by hand) is undone.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use vipd_core::vrrp::{
    Advertisement, ChecksumMode, Follower, FollowerAction, FollowerConfig, Route, State, Timestamp,
    Version,
};

use super::wireguard::Device;
use crate::api::schema::FollowStatus;
use crate::config::resolve::FollowPlan;
use crate::config::spec;
use crate::health::record::unix_now;
use crate::netlink::{LinkEvents, Netlink};
use crate::vrrp::counters::DropCounters;
use crate::vrrp::driver::LocalState;
use crate::vrrp::socket::ListenSocket;

/// Between two attempts to program a device that refused a change.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Between two reads of a device that carries the route. `wg syncconf`
/// of the rendered file puts the VIP back on the preferred holder's peer;
/// this bounds how long such a change outside vipd lasts. One read is one
/// `wg show` (a few ms).
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// The shared handle: the loop writes, the API reads.
#[derive(Debug, Clone, Default)]
pub struct SharedFollowStatus(Arc<Mutex<FollowStatus>>);

impl SharedFollowStatus {
    pub fn lock(&self) -> MutexGuard<'_, FollowStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> FollowStatus {
        self.lock().clone()
    }
}

/// The follower's configuration in the core's terms, from a node's plan.
pub fn core_config(plan: &FollowPlan, own_address: IpAddr) -> anyhow::Result<FollowerConfig> {
    Ok(FollowerConfig {
        vrid: u8::try_from(plan.vrid).context("VRID outside 1..=255")?,
        version: match plan.version {
            2 => Version::V2,
            _ => Version::V3,
        },
        virtual_addresses: vec![plan.vip.addr()],
        holders: plan.holders.iter().map(|h| h.address).collect(),
        interval: plan.interval.get(),
        own_address: plan.holder.then_some(own_address),
    })
}

fn checksum_mode(plan: &FollowPlan) -> ChecksumMode {
    match plan.checksum {
        Some(spec::ChecksumMode::Rfc9568) => ChecksumMode::Rfc9568,
        Some(spec::ChecksumMode::Keepalived) | None => ChecksumMode::Keepalived,
    }
}

struct Loop {
    plan: FollowPlan,
    follower: Follower,
    device: Device,
    /// The mesh interface's index now (0 while it does not exist).
    ifindex: u32,
    epoch: Instant,
    drops: DropCounters,
    status: SharedFollowStatus,
    /// The route the device carries, as far as we know (`None`: unknown or
    /// a change failed: program it again).
    applied: Option<Route>,
    /// When the device was last read and found carrying `applied`.
    checked_at: Instant,
    /// Until this instant a device routing the VIP somewhere is left as it
    /// is while no master is heard: a restarted follower must not cut the
    /// VIP off before it had a chance to hear the master.
    settle_until: Instant,
}

/// Runs the follower of `plan` until `stop` turns true. `local` is this
/// node's own VRRP state, on a holder.
pub async fn run(
    plan: FollowPlan,
    own_address: IpAddr,
    mut local: Option<watch::Receiver<LocalState>>,
    mut stop: watch::Receiver<bool>,
    status: SharedFollowStatus,
    mut updates: mpsc::Receiver<FollowPlan>,
) -> anyhow::Result<()> {
    let netlink = Netlink::connect()?;
    let socket = ListenSocket::open(plan.vip.addr().is_ipv6())
        .context("opening the follower's VRRP socket")?;
    let mut link_events = LinkEvents::subscribe()?;
    let ifindex = match netlink.link(&plan.interface).await {
        Ok(link) => link.index,
        Err(e) => {
            warn!(interface = %plan.interface, error = %e, "the mesh interface is not there yet: following once it is");
            0
        }
    };
    let config = core_config(&plan, own_address)?;
    // A master is heard within one interval; three of them (the follower's
    // Master_Down_Interval, without skew) are the grace of a fresh start.
    let settle = plan.interval.get() * 3;
    let mut this = Loop {
        follower: Follower::new(config),
        device: Device::new(&plan.interface),
        ifindex,
        epoch: Instant::now(),
        drops: DropCounters::default(),
        status,
        applied: None,
        checked_at: Instant::now(),
        settle_until: Instant::now() + settle,
        plan,
    };
    this.publish_config();
    info!(
        interface = %this.plan.interface,
        holders = ?this.plan.holders.iter().map(|h| &h.node).collect::<Vec<_>>(),
        interval = ?this.plan.interval.get(),
        "following the VRRP master on the mesh"
    );
    if let Some(local) = &mut local {
        let master = local.borrow_and_update().state == State::Master;
        let now = this.now();
        this.follower.set_local_master(now, master);
    }
    this.carry_out().await;
    let mut buf = vec![0u8; 65536];
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = this.follower.next_timeout().map(|t| this.instant(t));
        tokio::select! {
            biased;
            _ = stop.changed() => {
                info!("follower stopped");
                return Ok(());
            }
            Some(plan) = updates.recv() => this.reconfigure(plan, own_address),
            () = sleep_until(deadline) => {
                let now = this.now();
                this.follower.handle_timeout(now);
            }
            received = socket.recv(&mut buf) => match received {
                Ok((ifindex, datagram)) => this.receive(ifindex, datagram),
                Err(e) => warn!(error = %e, "reading the follower's VRRP socket"),
            },
            Ok(()) = async { local.as_mut().expect("guarded").changed().await }, if local.is_some() => {
                let master = local.as_ref().expect("guarded").borrow().state == State::Master;
                let now = this.now();
                this.follower.set_local_master(now, master);
            }
            Some(link) = link_events.next() => {
                if link.name == this.plan.interface && link.index != this.ifindex {
                    info!(interface = %link.name, index = link.index, "the mesh interface is (back) up: programming the VIP's route");
                    this.ifindex = link.index;
                    this.applied = None;
                }
            }
            _ = retry.tick() => {}
        }
        this.carry_out().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

impl Loop {
    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.epoch + t.since_epoch()
    }

    fn reconfigure(&mut self, plan: FollowPlan, own_address: IpAddr) {
        match core_config(&plan, own_address) {
            Ok(config) => {
                let now = self.now();
                self.follower.reconfigure(now, config);
                self.plan = plan;
                self.applied = None;
                self.publish_config();
                info!("follower configuration reloaded in place");
            }
            Err(e) => error!(error = %e, "follower configuration refused: keeping the running one"),
        }
    }

    /// One datagram through the checks a follower makes: the mesh
    /// interface, the TTL (RFC 5798 §7.1), the codec, then the core.
    fn receive(&mut self, ifindex: u32, datagram: crate::vrrp::socket::Datagram<'_>) {
        let wall = Instant::now();
        let packet = match datagram.open() {
            Ok(packet) => packet,
            Err(dropped) => return self.drop_packet(dropped.reason, wall, dropped.detail),
        };
        let src = packet.src;
        if ifindex == 0 || ifindex != self.ifindex {
            // Only the mesh interface authenticates the sender (its
            // WireGuard key); the same address elsewhere could be anyone.
            return self.drop_packet(
                "off_mesh_interface",
                wall,
                format!(
                    "from {src}: arrived on interface index {ifindex}, not on {}",
                    self.plan.interface
                ),
            );
        }
        let options = self.follower.decode_options(checksum_mode(&self.plan));
        let advert = match Advertisement::decode(packet.payload, src, packet.dst, &options) {
            Ok(advert) => advert,
            Err(e) => return self.drop_packet(e.reason(), wall, format!("from {src}: {e}")),
        };
        let now = self.now();
        match self.follower.handle_advert(now, src, &advert) {
            Ok(()) => {
                self.status.lock().adverts_received += 1;
                debug!(%src, priority = advert.priority, "advert followed");
            }
            Err(rejected) => {
                self.drop_packet(rejected.reason(), wall, format!("from {src}: {rejected}"))
            }
        }
    }

    /// Counts and logs a dropped packet, and shows the count in the status
    /// (and so in the metrics, which read the status).
    fn drop_packet(&mut self, reason: &'static str, now: Instant, detail: impl std::fmt::Display) {
        self.drops.record(reason, now, detail);
        let total = self.drops.get(reason);
        self.status.lock().dropped.insert(reason.to_owned(), total);
    }

    /// The core's route changes, then the device brought in line with the
    /// route the core holds now.
    async fn carry_out(&mut self) {
        while let Some(FollowerAction::Route { from, to, reason }) = self.follower.poll_action() {
            let holder = |route: Route| self.describe(route);
            info!(from = %holder(from), to = %holder(to), %reason, "VIP route changed");
            let mut status = self.status.lock();
            status.changes += 1;
            status.since = unix_now();
            status.reason = reason.label().to_owned();
        }
        let route = self.follower.route();
        self.publish_route(route);
        let recheck = self.applied == Some(route);
        if recheck && self.checked_at.elapsed() < RECHECK_EVERY {
            return;
        }
        if route == Route::Nowhere && self.applied.is_none() && Instant::now() < self.settle_until {
            return; // just started: give the master a chance to be heard
        }
        let peer = route.holder().and_then(|a| self.peer_of(a));
        match self.device.route(self.plan.vip, peer.as_deref()).await {
            Ok(applied) => {
                let repaired = recheck && !applied.written.is_empty();
                if repaired {
                    warn!(vip = %self.plan.vip, to = %self.describe(route), "the WireGuard device had the VIP's entry elsewhere (changed outside vipd: `wg syncconf`, `wg set`): put it back");
                } else if !applied.written.is_empty() {
                    info!(vip = %self.plan.vip, to = %self.describe(route), took = ?applied.took, "WireGuard route of the VIP set");
                }
                self.applied = Some(route);
                self.checked_at = Instant::now();
                let mut status = self.status.lock();
                status.repairs += u64::from(repaired);
                status.applied = true;
                status.error = None;
                if !applied.written.is_empty() {
                    status.last_change_ms = Some(applied.took.as_secs_f64() * 1000.0);
                }
            }
            Err(e) => {
                if self.status.lock().error.as_deref() != Some(e.as_str()) {
                    error!(error = %e, "cannot route the VIP on the WireGuard device: retrying every {RETRY_EVERY:?}");
                }
                self.applied = None;
                let mut status = self.status.lock();
                status.applied = false;
                status.error = Some(e);
            }
        }
    }

    fn peer_of(&self, address: IpAddr) -> Option<String> {
        self.plan
            .holders
            .iter()
            .find(|h| h.address == address)
            .map(|h| h.public_key.clone())
    }

    fn describe(&self, route: Route) -> String {
        match route {
            Route::Holder(address) => match self.plan.holders.iter().find(|h| h.address == address)
            {
                Some(h) => format!("{} ({address})", h.node),
                None => address.to_string(),
            },
            other => other.to_string(),
        }
    }

    fn publish_route(&self, route: Route) {
        let holder = route
            .holder()
            .and_then(|a| self.plan.holders.iter().find(|h| h.address == a));
        let priority = self.follower.followed_priority();
        let mut status = self.status.lock();
        status.route = match route {
            Route::Holder(_) => "holder",
            Route::Local => "local",
            Route::Nowhere => "nowhere",
        }
        .to_owned();
        status.holder = holder.map(|h| h.node.clone());
        status.holder_address = holder.map(|h| h.address);
        status.peer = holder.map(|h| h.public_key.clone());
        status.holder_priority = priority;
    }

    fn publish_config(&self) {
        let mut status = self.status.lock();
        status.interface = self.plan.interface.clone();
        status.vip = self.plan.vip.to_string();
        status.holders = self.plan.holders.iter().map(|h| h.node.clone()).collect();
        if status.since == 0.0 {
            status.since = unix_now();
            status.reason = "startup".to_owned();
        }
    }
}
