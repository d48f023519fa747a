//! The event loop of one VRRP instance.
//!
//! It owns the socket, the link and the clock; the instance owns the rules.
//! Every wake-up is one of: a datagram, the instance's next timeout, a link
//! change, the stop signal. Each feeds the instance, then the loop carries
//! out the actions the instance queued, in order.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use vipd_core::vrrp::announce::{MacAddr, NaFlags, gratuitous_arp, unsolicited_na_frame};
use vipd_core::vrrp::{
    Accepted, Action, Advertisement, Auth, Centiseconds, ChecksumMode, Config, FaultReason,
    Instance, Ipv4Header, State, Timestamp, Version, check_ttl,
};

use super::counters::DropCounters;
use super::socket::{Datagram, VrrpSocket};
use crate::config::Secrets;
use crate::config::resolve::VrrpPlan;
use crate::config::spec::{self, VrrpMode};
use crate::netlink::{Link, LinkEvents, Netlink};

/// Gratuitous ARP / unsolicited NA on becoming master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceSettings {
    /// Frames per burst.
    pub count: u32,
    /// Between two frames of a burst.
    pub interval: Duration,
    /// A second burst this long after the first (zero: none), for switches
    /// and hosts that missed the first (keepalived's `garp_master_delay`).
    pub repeat_after: Duration,
}

impl Default for AnnounceSettings {
    fn default() -> Self {
        Self {
            count: 5,
            interval: Duration::from_millis(10),
            repeat_after: Duration::from_secs(5),
        }
    }
}

/// Everything the driver needs, resolved from the cluster file.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub interface: String,
    pub prefix: u8,
    pub mode: VrrpMode,
    /// Multicast: the group. Unicast: every peer.
    pub send_to: Vec<IpAddr>,
    pub announce: AnnounceSettings,
    pub core: Config,
}

impl DriverConfig {
    /// Builds the driver's configuration from a node's VRRP plan.
    pub fn from_plan(
        plan: &VrrpPlan,
        node_address: IpAddr,
        secrets: Option<&Secrets>,
    ) -> anyhow::Result<Self> {
        let vrid = u8::try_from(plan.vrid).context("VRID outside 1..=255")?;
        let priority = u8::try_from(plan.priority).context("priority outside 1..=255")?;
        let version = match plan.version {
            2 => Version::V2,
            3 => Version::V3,
            other => bail!("VRRP version {other}"),
        };
        let centiseconds = u16::try_from(plan.advert_interval.get().as_millis() / 10)
            .context("advert interval too long")?;
        let auth = match &plan.auth_pass_secret {
            None => Auth::None,
            Some(name) => {
                let value = secrets.and_then(|s| s.get(name)).with_context(|| {
                    format!("secret \"{name}\" (vip.auth_pass) is not in the secrets file")
                })?;
                Auth::simple_password(value.expose().as_bytes())
            }
        };
        let mut core = Config::new(vrid, node_address, vec![plan.vip.addr()]);
        core.version = version;
        core.priority = priority;
        core.advert_interval = Centiseconds(centiseconds);
        core.preempt = plan.preempt;
        core.preempt_delay = plan.preempt_delay.get();
        core.auth = auth;
        core.checksum_mode = match plan.checksum {
            Some(spec::ChecksumMode::Rfc9568) => ChecksumMode::Rfc9568,
            Some(spec::ChecksumMode::Keepalived) | None => ChecksumMode::Keepalived,
        };
        core.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            interface: plan.interface.clone(),
            prefix: plan.vip.prefix_len(),
            mode: plan.mode,
            send_to: plan.send_to.clone(),
            announce: AnnounceSettings::default(),
            core,
        })
    }
}

/// The state the driver exposes while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub master: Option<IpAddr>,
}

struct Driver {
    config: DriverConfig,
    instance: Instance,
    socket: VrrpSocket,
    netlink: Netlink,
    link: Link,
    epoch: Instant,
    drops: DropCounters,
    send_failures: DropCounters,
    /// Bumped when we stop being master, so a running announce burst stops.
    announce_generation: Arc<AtomicU64>,
    warned_no_arp: bool,
    status: watch::Sender<Status>,
}

/// Runs one VRRP instance until `stop` turns true; then sends priority 0
/// (if master), removes the VIP and returns.
pub async fn run(
    config: DriverConfig,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<Status>,
) -> anyhow::Result<()> {
    let netlink = Netlink::connect()?;
    let link = netlink
        .link(&config.interface)
        .await
        .with_context(|| format!("VRRP interface {}", config.interface))?;
    let vip = config.core.virtual_addresses[0];
    // A VIP left by a crashed run would make two holders answer for it: drop
    // it now; if we become master we add it back.
    if netlink.remove_address(link.index, vip).await? {
        warn!(%vip, interface = %link.name, "removed the VIP an earlier run left on the interface");
    }
    let multicast = config.mode == VrrpMode::Multicast;
    let socket = VrrpSocket::open(
        &link.name,
        link.index,
        config.core.primary_address,
        multicast,
    )
    .with_context(|| format!("opening the VRRP socket on {}", link.name))?;
    let mut link_events = LinkEvents::subscribe()?;
    let instance = Instance::new(config.core.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    info!(
        vrid = config.core.vrid,
        interface = %link.name,
        priority = config.core.priority,
        version = %config.core.version,
        mode = ?config.mode,
        peers = ?config.send_to,
        "VRRP instance starting"
    );
    let mut driver = Driver {
        config,
        instance,
        socket,
        netlink,
        link,
        epoch: Instant::now(),
        drops: DropCounters::default(),
        send_failures: DropCounters::default(),
        announce_generation: Arc::new(AtomicU64::new(0)),
        warned_no_arp: false,
        status,
    };
    if !driver.link.usable() {
        let now = driver.now();
        driver.instance.set_fault(now, FaultReason::InterfaceDown);
    }
    let now = driver.now();
    driver.instance.startup(now);
    driver.carry_out().await;

    let mut buf = vec![0u8; 65536];
    loop {
        let deadline = driver.instance.next_timeout().map(|t| driver.instant(t));
        tokio::select! {
            biased;
            _ = stop.changed() => {
                let now = driver.now();
                driver.instance.shutdown(now);
                driver.carry_out().await;
                info!("VRRP instance stopped");
                return Ok(());
            }
            () = sleep_until(deadline) => {
                let now = driver.now();
                driver.instance.handle_timeout(now);
            }
            received = driver.socket.recv(&mut buf) => match received {
                Ok(datagram) => driver.receive(datagram),
                Err(e) => warn!(error = %e, "reading the VRRP socket"),
            },
            Some(link) = link_events.next() => driver.link_changed(link),
        }
        driver.carry_out().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.epoch + t.since_epoch()
    }

    /// One datagram through the receive checks of RFC 5798 §7.1, then the
    /// instance. Every drop is counted by its reason.
    fn receive(&mut self, datagram: Datagram<'_>) {
        let wall = Instant::now();
        let (src, dst, ttl, payload) = match datagram {
            Datagram::V4(packet) => match Ipv4Header::parse(packet) {
                Ok((header, payload)) => (
                    IpAddr::V4(header.src),
                    IpAddr::V4(header.dst),
                    header.ttl,
                    payload,
                ),
                Err(e) => return self.drops.record(e.reason(), wall, e),
            },
            Datagram::V6 {
                src,
                dst,
                hop_limit,
                payload,
            } => (IpAddr::V6(src), IpAddr::V6(dst), hop_limit, payload),
        };
        // §7.1: the TTL / hop limit MUST be 255: the packet was not routed.
        if let Err(e) = check_ttl(ttl) {
            return self
                .drops
                .record(e.reason(), wall, format_args!("from {src}: {e}"));
        }
        // In unicast mode only the configured peers may speak.
        if self.config.mode == VrrpMode::Unicast && !self.config.send_to.contains(&src) {
            return self.drops.record(
                "not_a_peer",
                wall,
                format_args!("from {src}: not a configured unicast peer"),
            );
        }
        let advert = match Advertisement::decode(payload, src, dst, &self.instance.decode_options())
        {
            Ok(advert) => advert,
            Err(e) => {
                return self
                    .drops
                    .record(e.reason(), wall, format_args!("from {src}: {e}"));
            }
        };
        let now = self.now();
        match self.instance.handle_advert(now, src, &advert) {
            Ok(Accepted::Clean) => debug!(%src, priority = advert.priority, "advert"),
            Ok(Accepted::AddressListMismatchFromOwner) => {
                warn!(%src, "the address owner advertises other virtual addresses than ours: check both configurations");
            }
            Err(rejected) => self.drops.record(
                rejected.reason(),
                wall,
                format_args!("from {src}: {rejected}"),
            ),
        }
    }

    fn link_changed(&mut self, link: Link) {
        if link.index != self.link.index {
            return;
        }
        let was_usable = self.link.usable();
        let usable = link.usable();
        self.link = link;
        let now = self.now();
        if was_usable && !usable {
            warn!(interface = %self.link.name, "interface down: VRRP goes to fault");
            self.instance.set_fault(now, FaultReason::InterfaceDown);
        } else if !was_usable && usable {
            info!(interface = %self.link.name, "interface up again");
            self.instance.clear_fault(now);
        }
    }

    /// Carries out the instance's actions, in order.
    async fn carry_out(&mut self) {
        while let Some(action) = self.instance.poll_action() {
            match action {
                Action::StateChanged { from, to, reason } => {
                    info!(vrid = self.config.core.vrid, %from, %to, %reason, "VRRP state changed");
                    if from == State::Master {
                        self.announce_generation.fetch_add(1, Ordering::Relaxed);
                    }
                    let master = self.instance.master().map(|m| m.address);
                    self.status.send_replace(Status { state: to, master });
                }
                Action::AddVip(vip) => match self
                    .netlink
                    .add_address(self.link.index, vip, self.config.prefix)
                    .await
                {
                    Ok(true) => info!(%vip, interface = %self.link.name, "VIP added"),
                    Ok(false) => info!(%vip, "VIP was already on the interface"),
                    Err(e) => error!(%vip, error = %e, "cannot add the VIP"),
                },
                Action::RemoveVip(vip) => {
                    match self.netlink.remove_address(self.link.index, vip).await {
                        Ok(true) => info!(%vip, interface = %self.link.name, "VIP removed"),
                        Ok(false) => debug!(%vip, "VIP was not on the interface"),
                        Err(e) => error!(%vip, error = %e, "cannot remove the VIP"),
                    }
                }
                Action::SendAdvert(advert) => self.send_advert(&advert).await,
                Action::SendGratuitous(vip) => self.announce(vip),
            }
        }
        let master = self.instance.master().map(|m| m.address);
        self.status.send_if_modified(|status| {
            let changed = status.master != master;
            status.master = master;
            changed
        });
    }

    async fn send_advert(&mut self, advert: &Advertisement) {
        let source = self.config.core.primary_address;
        for &dst in &self.config.send_to {
            let message = match advert.encode(source, dst, self.config.core.checksum_mode) {
                Ok(message) => message,
                Err(e) => {
                    error!(error = ?e, "cannot encode an advert");
                    return;
                }
            };
            if let Err(e) = self.socket.send(dst, &message).await {
                self.send_failures.record(
                    "send_failed",
                    Instant::now(),
                    format_args!("advert to {dst}: {e}"),
                );
            }
        }
    }

    /// Starts a gratuitous ARP / unsolicited NA burst (and its repeat) on a
    /// task of its own, so the state machine never waits on it.
    fn announce(&mut self, vip: IpAddr) {
        let Some(mac) = self.link.mac.filter(|_| self.link.arp) else {
            if !self.warned_no_arp {
                info!(interface = %self.link.name, "the interface has no ARP (WireGuard, tun): no gratuitous ARP / NA is sent there");
                self.warned_no_arp = true;
            }
            return;
        };
        let frame: Vec<u8> = match (vip, self.config.core.primary_address) {
            (IpAddr::V4(vip), _) => gratuitous_arp(MacAddr(mac), vip).to_vec(),
            (IpAddr::V6(vip), IpAddr::V6(source)) => {
                unsolicited_na_frame(source, vip, MacAddr(mac), NaFlags::SERVICE_ADDRESS).to_vec()
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => return,
        };
        let socket = match crate::sys::packet_socket(self.link.index) {
            Ok(socket) => socket,
            Err(e) => {
                warn!(error = %e, "cannot open a packet socket for gratuitous ARP");
                return;
            }
        };
        let settings = self.config.announce;
        let generation = Arc::clone(&self.announce_generation);
        let started = generation.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let bursts = if settings.repeat_after.is_zero() {
                1
            } else {
                2
            };
            for burst in 0..bursts {
                if burst == 1 {
                    tokio::time::sleep(settings.repeat_after).await;
                }
                for i in 0..settings.count {
                    if generation.load(Ordering::Relaxed) != started {
                        return; // no longer master
                    }
                    if i > 0 {
                        tokio::time::sleep(settings.interval).await;
                    }
                    if let Err(e) = socket.send(&frame) {
                        warn!(%vip, error = %e, "gratuitous announcement failed");
                        return;
                    }
                }
            }
            debug!(%vip, "gratuitous announcements sent");
        });
    }
}
