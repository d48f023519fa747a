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
use crate::config::resolve::{NodePlan, TrackerPlan, VrrpPlan};
use crate::config::spec::{self, NotifySection, VrrpMode};
use crate::health::checker::{self, Check, HealthEvent};
use crate::health::probe::Probe;
use crate::netlink::{Link, LinkEvents, Netlink};
use vipd_core::health::{Health, Thresholds};

/// One burst of gratuitous ARP / unsolicited NA. The instance asks for a
/// burst on becoming master and again `announce.repeat_after` later
/// (`Config::reannounce_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceSettings {
    /// Frames per burst.
    pub count: u32,
    /// Between two frames of a burst.
    pub interval: Duration,
}

/// Everything the driver needs, resolved from the cluster file.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub cluster: String,
    pub node: String,
    pub interface: String,
    pub prefix: u8,
    pub mode: VrrpMode,
    /// Multicast: the group. Unicast: every peer.
    pub send_to: Vec<IpAddr>,
    pub announce: AnnounceSettings,
    pub notify: NotifySection,
    pub trackers: Vec<TrackerPlan>,
    pub core: Config,
}

impl DriverConfig {
    /// Builds the driver's configuration from a node's VRRP plan.
    pub fn from_plan(
        node: &NodePlan,
        plan: &VrrpPlan,
        secrets: Option<&Secrets>,
    ) -> anyhow::Result<Self> {
        let node_address = node.address;
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
        core.designated_successor = plan.designated_successor;
        let repeat = plan.announce.repeat_after.get();
        core.reannounce_after = (!repeat.is_zero()).then_some(repeat);
        core.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            cluster: node.cluster.clone(),
            node: node.node.clone(),
            interface: plan.interface.clone(),
            prefix: plan.vip.prefix_len(),
            mode: plan.mode,
            send_to: plan.send_to.clone(),
            announce: AnnounceSettings {
                count: plan.announce.count,
                interval: plan.announce.interval.get(),
            },
            notify: plan.notify.clone(),
            trackers: plan.trackers.clone(),
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
    /// Tracker states, in `config.trackers` order.
    tracker_health: Vec<Health>,
    /// What was last handed to the instance, to hand over changes only.
    applied_priority: u8,
    applied_fault: Option<FaultReason>,
    hooks: tokio::task::JoinSet<()>,
}

fn tracker_name(tracker: &TrackerPlan) -> String {
    let check = match tracker.check {
        spec::TrackedCheck::Apiserver => "apiserver",
        spec::TrackedCheck::Proxy => "proxy",
    };
    format!("{check} {}", tracker.target)
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
    let (health_tx, mut health_events) = tokio::sync::mpsc::unbounded_channel::<HealthEvent>();
    for (index, tracker) in config.trackers.iter().enumerate() {
        let check = Check {
            name: format!("tracker {}", tracker_name(tracker)),
            probe: Probe::from_check(tracker.target, &tracker.probe)?,
            interval: tracker.probe.interval.get(),
            timeout: tracker.probe.timeout.get(),
            thresholds: Thresholds::new(tracker.probe.rise, tracker.probe.fall),
            // A tracker claims no health it has not seen.
            initial: Health::Down,
        };
        checker::spawn(index, check, health_tx.clone());
    }
    drop(health_tx);
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
        tracker_health: Vec::new(),
        applied_priority: 0,
        applied_fault: None,
        hooks: tokio::task::JoinSet::new(),
    };
    driver.tracker_health = vec![Health::Down; driver.config.trackers.len()];
    driver.applied_priority = driver.config.core.priority;
    let now = driver.now();
    driver.reassess(now);
    if let Some(fault) = &driver.applied_fault {
        info!(%fault, "starting in fault until it clears");
    }
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
                driver.finish_hooks().await;
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
            Some(event) = health_events.recv() => driver.tracker_changed(event),
            Some(_) = driver.hooks.join_next(), if !driver.hooks.is_empty() => {}
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
        self.link = link;
        if was_usable != self.link.usable() {
            match self.link.usable() {
                true => info!(interface = %self.link.name, "interface up again"),
                false => warn!(interface = %self.link.name, "interface down"),
            }
            let now = self.now();
            self.reassess(now);
        }
    }

    fn tracker_changed(&mut self, event: HealthEvent) {
        if let Some(health) = self.tracker_health.get_mut(event.index) {
            *health = event.health;
            let now = self.now();
            self.reassess(now);
        }
    }

    /// Derives the priority and the fault from the link and the trackers
    /// (keepalived's weights: 0 faults, negative lowers on failure, positive
    /// raises on success) and hands the instance what changed.
    fn reassess(&mut self, now: Timestamp) {
        let base = self.config.core.priority;
        let mut priority = i32::from(base);
        let mut failing_fault_tracker = None;
        let mut why = Vec::new();
        for (tracker, health) in self.config.trackers.iter().zip(&self.tracker_health) {
            match (tracker.weight, health) {
                (0, Health::Down) => {
                    failing_fault_tracker.get_or_insert_with(|| tracker_name(tracker));
                }
                (weight, Health::Down) if weight < 0 => {
                    priority += weight;
                    why.push(format!("{} down ({weight})", tracker_name(tracker)));
                }
                (weight, Health::Up) if weight > 0 => {
                    priority += weight;
                    why.push(format!("{} up (+{weight})", tracker_name(tracker)));
                }
                _ => {}
            }
        }
        // The owner keeps 255; everyone else stays a valid backup priority.
        let priority = if base == 255 {
            255
        } else {
            priority.clamp(1, 254) as u8
        };
        if priority != self.applied_priority {
            info!(priority, base, because = %why.join(", "), "effective priority changed");
            self.instance.set_priority(now, priority);
            self.applied_priority = priority;
        }
        let fault = if !self.link.usable() {
            Some(FaultReason::InterfaceDown)
        } else {
            failing_fault_tracker.map(FaultReason::Tracker)
        };
        match (&self.applied_fault, &fault) {
            (None, Some(reason)) => self.instance.set_fault(now, reason.clone()),
            (Some(_), None) => self.instance.clear_fault(now),
            _ => {}
        }
        self.applied_fault = fault;
    }

    /// Runs the notify commands for a state change, without waiting for them.
    fn notify(&mut self, from: State, to: State, reason: &str) {
        let notify = &self.config.notify;
        let own = match to {
            State::Master => &notify.master,
            State::Backup => &notify.backup,
            State::Fault => &notify.fault,
            State::Initialize => &notify.stop,
        };
        let state = match to {
            State::Initialize => "stop".to_owned(),
            other => other.to_string(),
        };
        let vip = self.config.core.virtual_addresses[0].to_string();
        let env = [
            ("VIPD_STATE", state),
            ("VIPD_PREVIOUS_STATE", from.to_string()),
            ("VIPD_REASON", reason.to_owned()),
            ("VIPD_VIP", vip),
            ("VIPD_VRID", self.config.core.vrid.to_string()),
            ("VIPD_PRIORITY", self.applied_priority.to_string()),
            ("VIPD_INTERFACE", self.config.interface.clone()),
            ("VIPD_NODE", self.config.node.clone()),
            ("VIPD_CLUSTER", self.config.cluster.clone()),
        ];
        let timeout = notify.timeout.get();
        for command in [own, &notify.any].into_iter().flatten() {
            let Some((program, args)) = command.split_first() else {
                continue;
            };
            let mut child = tokio::process::Command::new(program);
            child
                .args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .kill_on_drop(true);
            let shown = command.join(" ");
            match child.spawn() {
                Ok(mut child) => {
                    self.hooks.spawn(async move {
                        match tokio::time::timeout(timeout, child.wait()).await {
                            Ok(Ok(status)) if status.success() => debug!(command = %shown, "notify command done"),
                            Ok(Ok(status)) => warn!(command = %shown, %status, "notify command failed"),
                            Ok(Err(e)) => warn!(command = %shown, error = %e, "notify command"),
                            Err(_) => {
                                warn!(command = %shown, ?timeout, "notify command timed out: killed");
                                let _ = child.kill().await;
                            }
                        }
                    });
                }
                Err(e) => warn!(command = %shown, error = %e, "cannot run notify command"),
            }
        }
    }

    /// Waits for running notify commands (each bounded by its timeout).
    async fn finish_hooks(&mut self) {
        while self.hooks.join_next().await.is_some() {}
    }

    /// Carries out the instance's actions, in order.
    async fn carry_out(&mut self) {
        while let Some(action) = self.instance.poll_action() {
            match action {
                Action::StateChanged { from, to, reason } => {
                    info!(vrid = self.config.core.vrid, %from, %to, %reason, "VRRP state changed");
                    self.notify(from, to, &reason.to_string());
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
            (IpAddr::V4(vip), _) => {
                // Ethernet's minimum frame is 60 bytes before the FCS; an
                // AF_PACKET socket sends what it is given, so pad here.
                let mut frame = gratuitous_arp(MacAddr(mac), vip).to_vec();
                frame.resize(60, 0);
                frame
            }
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
            debug!(%vip, count = settings.count, "gratuitous announcements sent");
        });
    }
}
