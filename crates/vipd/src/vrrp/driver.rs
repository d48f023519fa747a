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
    Accepted, Action, Advertisement, Assessment, Auth, Centiseconds, ChecksumMode, Config,
    FaultReason, Instance, Ipv4Header, State, Timestamp, TrackerState, Version, assess,
};

use super::counters::DropCounters;
use super::socket::{Datagram, VrrpSocket};
use super::status::{SharedVrrpStatus, TrackerStatus};
use crate::config::Secrets;
use crate::config::resolve::{NodePlan, TrackerPlan, VrrpPlan};
use crate::config::spec::{self, NotifySection, VrrpMode};
use crate::health::checker::{self, Check, HealthEvent};
use crate::health::probe::Probe;
use crate::health::record::CheckRecord;
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

/// What the instance is doing, published on a watch channel at every
/// change: the supervisor and the mesh follower react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalState {
    pub state: State,
    /// Whether the VIP is on the interface (vipd added it, nothing removed it).
    pub vip_on_interface: bool,
}

impl Default for LocalState {
    fn default() -> Self {
        LocalState {
            state: State::Initialize,
            vip_on_interface: false,
        }
    }
}

/// The sending side of the [`LocalState`] channel; one per daemon, handed
/// to every instance it starts (a restarted instance publishes on it too).
pub type StatePublisher = Arc<watch::Sender<LocalState>>;

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
    /// No other router can take over (`VrrpPlan::alone`): a stop gives the
    /// VIP up at once.
    pub alone: bool,
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
        core.followers = plan.followers.clone();
        core.follower_interval = plan.follower_interval.get();
        // The burst to the followers is the gratuitous-ARP burst of a LAN.
        core.follower_burst = plan.announce.count.max(1);
        core.follower_burst_spacing = plan.announce.interval.get();
        // In unicast mode only the peers the adverts go to are heard.
        core.unicast_peers = (plan.mode == VrrpMode::Unicast).then(|| plan.send_to.clone());
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
            alone: plan.alone,
            core,
        })
    }
}

impl DriverConfig {
    /// The field whose change needs a new instance (socket, identity on
    /// the wire), if any; everything else is changed in place.
    pub fn restart_needed_for(&self, new: &DriverConfig) -> Option<&'static str> {
        [
            ("interface", self.interface != new.interface),
            ("mode", self.mode != new.mode),
            ("prefix", self.prefix != new.prefix),
        ]
        .into_iter()
        .find_map(|(field, changed)| changed.then_some(field))
        .or_else(|| self.core.identity_change(&new.core))
    }
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
    status: SharedVrrpStatus,
    /// Set while stopping as master: the VIP stays until the successor is heard.
    handing_over: bool,
    deferred_removals: Vec<IpAddr>,
    /// Tracker states, in `config.trackers` order.
    tracker_health: Vec<Health>,
    trackers: Trackers,
    /// What was last handed to the instance, to hand over changes only.
    applied_priority: u8,
    applied_fault: Option<FaultReason>,
    hooks: tokio::task::JoinSet<()>,
    publisher: StatePublisher,
}

fn tracker_name(tracker: &TrackerPlan) -> String {
    let check = match tracker.check {
        spec::TrackedCheck::Apiserver => "apiserver",
        spec::TrackedCheck::Proxy => "proxy",
    };
    format!("{check} {}", tracker.target)
}

/// The tracker checkers of the current configuration.
struct Trackers {
    tasks: Vec<crate::health::checker::Checker>,
    events: tokio::sync::mpsc::UnboundedReceiver<HealthEvent>,
    records: Vec<Arc<CheckRecord>>,
}

impl Trackers {
    /// Starts one checker per tracker; `initial` is assumed until each
    /// one's first verdict.
    fn start(trackers: &[TrackerPlan], initial: &[Health]) -> anyhow::Result<Self> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel::<HealthEvent>();
        let mut tasks = Vec::new();
        let mut records = Vec::new();
        for (index, tracker) in trackers.iter().enumerate() {
            let record = Arc::new(CheckRecord::default());
            let check = Check {
                name: format!("tracker {}", tracker_name(tracker)),
                probe: Probe::from_check(tracker.target, &tracker.probe)?,
                interval: tracker.probe.interval.get(),
                timeout: tracker.probe.timeout.get(),
                thresholds: Thresholds::new(tracker.probe.rise, tracker.probe.fall),
                initial: initial[index],
                record: Some(Arc::clone(&record)),
            };
            records.push(record);
            tasks.push(checker::spawn(index, check, tx.clone()));
        }
        Ok(Self {
            tasks,
            events,
            records,
        })
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// Runs one VRRP instance until `stop` turns true; then, if master, sends
/// priority 0 and hands the VIP over (see [`Driver::hand_over`]).
/// Configurations arriving on `updates` are applied in place; the caller
/// restarts the instance instead when [`DriverConfig::restart_needed_for`]
/// says so.
pub async fn run(
    config: DriverConfig,
    mut stop: watch::Receiver<bool>,
    status: SharedVrrpStatus,
    mut updates: tokio::sync::mpsc::Receiver<DriverConfig>,
    publisher: StatePublisher,
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
    // A tracker claims no health it has not seen: a node whose apiserver
    // is not checked yet must not win the VIP with the full priority.
    let trackers = Trackers::start(&config.trackers, &vec![Health::Down; config.trackers.len()])?;
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
        handing_over: false,
        deferred_removals: Vec::new(),
        tracker_health: Vec::new(),
        trackers,
        applied_priority: 0,
        applied_fault: None,
        hooks: tokio::task::JoinSet::new(),
        publisher,
    };
    driver.tracker_health = vec![Health::Down; driver.config.trackers.len()];
    driver.applied_priority = driver.config.core.priority;
    driver.publish_config();
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
                driver.hand_over(&mut buf).await;
                driver.trackers.stop();
                driver.finish_hooks().await;
                info!("VRRP instance stopped");
                return Ok(());
            }
            Some(update) = updates.recv() => driver.reconfigure(update),
            () = sleep_until(deadline) => {
                let now = driver.now();
                driver.instance.handle_timeout(now);
            }
            received = driver.socket.recv(&mut buf) => match received {
                Ok(datagram) => driver.receive(datagram),
                Err(e) => warn!(error = %e, "reading the VRRP socket"),
            },
            Some(link) = link_events.next() => driver.link_changed(link),
            Some(event) = driver.trackers.events.recv() => driver.tracker_changed(event),
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
        let packet = match datagram.open() {
            Ok(packet) => packet,
            Err(dropped) => return self.drop_packet(dropped.reason, wall, dropped.detail),
        };
        let (src, dst, payload) = (packet.src, packet.dst, packet.payload);
        // Before decoding, so a stranger's packet counts as not_a_peer
        // whatever it holds; handle_advert checks it again.
        if let Err(rejected) = self.instance.check_source(src) {
            return self.drop_packet(
                rejected.reason(),
                wall,
                format_args!("from {src}: {rejected}"),
            );
        }
        let advert = match Advertisement::decode(payload, src, dst, &self.instance.decode_options())
        {
            Ok(advert) => advert,
            Err(e) => return self.drop_packet(e.reason(), wall, format_args!("from {src}: {e}")),
        };
        let now = self.now();
        let accepted = self.instance.handle_advert(now, src, &advert);
        if accepted.is_ok() {
            self.status.lock().adverts_received += 1;
        }
        match accepted {
            Ok(Accepted::Clean) => debug!(%src, priority = advert.priority, "advert"),
            Ok(Accepted::AddressListMismatchFromOwner) => {
                warn!(%src, "the address owner advertises other virtual addresses than ours: check both configurations");
            }
            Err(rejected) => self.drop_packet(
                rejected.reason(),
                wall,
                format_args!("from {src}: {rejected}"),
            ),
        }
    }

    fn link_changed(&mut self, link: Link) {
        if link.index != self.link.index {
            if link.name == self.link.name {
                self.link_recreated(link);
            }
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

    /// The interface came back under a new index (a userspace WireGuard
    /// restarted, a VLAN made again): the socket is bound to the old one,
    /// so it is opened again on the new one, and the link's state judged.
    /// If that fails, the old (gone) link stays, so the instance stays in
    /// fault, and the next event of the new link tries again.
    fn link_recreated(&mut self, link: Link) {
        let multicast = self.config.mode == VrrpMode::Multicast;
        match VrrpSocket::open(
            &link.name,
            link.index,
            self.config.core.primary_address,
            multicast,
        ) {
            Ok(socket) => {
                info!(interface = %link.name, index = link.index, "interface made again: VRRP socket opened on it");
                self.socket = socket;
                let usable = link.usable();
                self.link = link;
                if usable {
                    info!(interface = %self.link.name, "interface up again");
                }
                let now = self.now();
                self.reassess(now);
            }
            Err(e) => {
                warn!(interface = %link.name, index = link.index, error = %e, "interface made again, but the VRRP socket cannot be opened on it: staying in fault")
            }
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
    /// ([`vipd_core::vrrp::track`]: keepalived's weights) and hands the
    /// instance what changed.
    fn reassess(&mut self, now: Timestamp) {
        let base = self.config.core.priority;
        let names: Vec<String> = self.config.trackers.iter().map(tracker_name).collect();
        let trackers: Vec<TrackerState<'_>> = self
            .config
            .trackers
            .iter()
            .zip(&self.tracker_health)
            .zip(&names)
            .map(|((tracker, health), name)| TrackerState {
                name,
                weight: tracker.weight,
                healthy: *health == Health::Up,
            })
            .collect();
        let Assessment {
            priority,
            fault,
            reasons,
        } = assess(base, &trackers, self.link.usable());
        if priority != self.applied_priority {
            info!(priority, base, because = %reasons.join(", "), "effective priority changed");
            self.instance.set_priority(now, priority);
            self.applied_priority = priority;
        }
        {
            let mut status = self.status.lock();
            status.effective_priority = priority;
            status.priority_reasons = reasons;
            for (entry, health) in status.trackers.iter_mut().zip(&self.tracker_health) {
                entry.healthy = *health == Health::Up;
            }
        }
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
                    let mut status = self.status.lock();
                    status.transition(
                        &from.to_string(),
                        &to.to_string(),
                        reason.label(),
                        reason.to_string(),
                    );
                    status.fault = self.instance.fault().map(ToString::to_string);
                }
                Action::AddVip(vip) => match self
                    .netlink
                    .add_address(self.link.index, vip, self.config.prefix)
                    .await
                {
                    Ok(added) => {
                        match added {
                            true => info!(%vip, interface = %self.link.name, "VIP added"),
                            false => info!(%vip, "VIP was already on the interface"),
                        }
                        self.status.lock().vip_on_interface = true;
                    }
                    Err(e) => error!(%vip, error = %e, "cannot add the VIP"),
                },
                Action::RemoveVip(vip) if self.handing_over => self.deferred_removals.push(vip),
                Action::RemoveVip(vip) => self.remove_vip(vip).await,
                Action::SendAdvert(advert) => self.send_advert(&advert, false).await,
                Action::SendToFollowers(advert) => self.send_advert(&advert, true).await,
                Action::SendGratuitous(vip) => self.announce(vip),
            }
        }
        let master = match self.instance.state() {
            State::Master => Some(self.config.core.primary_address),
            _ => self.instance.master().map(|m| m.address),
        };
        let vip_on_interface = {
            let mut status = self.status.lock();
            status.master = master;
            status.vip_on_interface
        };
        let now = LocalState {
            state: self.instance.state(),
            vip_on_interface,
        };
        self.publisher.send_if_modified(|published| {
            let changed = *published != now;
            *published = now;
            changed
        });
    }

    async fn remove_vip(&mut self, vip: IpAddr) {
        match self.netlink.remove_address(self.link.index, vip).await {
            Ok(removed) => {
                match removed {
                    true => info!(%vip, interface = %self.link.name, "VIP removed"),
                    false => debug!(%vip, "VIP was not on the interface"),
                }
                self.status.lock().vip_on_interface = false;
            }
            Err(e) => error!(%vip, error = %e, "cannot remove the VIP"),
        }
    }

    /// Counts and logs a dropped packet, and shows the count in the status.
    fn drop_packet(&mut self, reason: &'static str, now: Instant, detail: impl std::fmt::Display) {
        self.drops.record(reason, now, detail);
        let total = self.drops.get(reason);
        self.status.lock().dropped.insert(reason.to_owned(), total);
    }

    /// The configuration part of the status.
    fn publish_config(&self) {
        let config = &self.config;
        let mut status = self.status.lock();
        status.vrid = config.core.vrid;
        status.interface = config.interface.clone();
        status.vip = format!("{}/{}", config.core.virtual_addresses[0], config.prefix);
        status.version = match config.core.version {
            Version::V2 => 2,
            Version::V3 => 3,
        };
        status.configured_priority = config.core.priority;
        status.effective_priority = self.applied_priority;
        status.state = self.instance.state().to_string();
        status.trackers = config
            .trackers
            .iter()
            .zip(&self.tracker_health)
            .map(|(tracker, health)| TrackerStatus {
                name: tracker_name(tracker),
                weight: tracker.weight,
                healthy: *health == Health::Up,
                last_check: None,
            })
            .collect();
        drop(status);
        self.status
            .set_tracker_records(self.trackers.records.clone());
    }

    /// A reload's configuration, applied without leaving the current
    /// state. Trackers that stay keep their health; new ones are assumed
    /// up until their first verdict (a reload must not drop a master's
    /// priority on a check that has not run yet).
    fn reconfigure(&mut self, new: DriverConfig) {
        if let Some(field) = self.config.restart_needed_for(&new) {
            // The daemon restarts the instance for these; never sent here.
            error!(field, "VRRP change needs a restart: ignored");
            return;
        }
        let now = self.now();
        if let Err(e) = self.instance.reconfigure(now, new.core.clone()) {
            error!(error = %e, "VRRP configuration refused: keeping the running one");
            return;
        }
        if new.trackers != self.config.trackers {
            let health: Vec<Health> = new
                .trackers
                .iter()
                .map(|t| {
                    self.config
                        .trackers
                        .iter()
                        .position(|old| old == t)
                        .map_or(Health::Up, |i| self.tracker_health[i])
                })
                .collect();
            match Trackers::start(&new.trackers, &health) {
                Ok(trackers) => {
                    self.trackers.stop();
                    self.trackers = trackers;
                    self.tracker_health = health;
                }
                Err(e) => {
                    error!(error = %e, "cannot start the new trackers: keeping the running configuration");
                    return;
                }
            }
        }
        self.config = new;
        // reconfigure() reset the instance to the configured priority.
        self.applied_priority = self.config.core.priority;
        self.publish_config();
        self.reassess(now);
        info!(
            priority = self.config.core.priority,
            interval = ?self.config.core.advert_interval(),
            preempt = self.config.core.preempt,
            trackers = self.config.trackers.len(),
            "VRRP configuration reloaded in place"
        );
    }

    /// The Shutdown event, make-before-break. A master sends priority 0
    /// (RFC 5798 §6.4.3) but keeps the VIP until it hears the successor's
    /// advert and one more interval has let the successor's gratuitous ARP
    /// land, so a client never finds the VIP on no one. Bounded: with no
    /// successor it gives the VIP up after a few intervals.
    async fn hand_over(&mut self, buf: &mut [u8]) {
        let was_master = self.instance.state() == State::Master;
        self.handing_over = was_master;
        let now = self.now();
        self.instance.shutdown(now);
        self.carry_out().await;
        self.handing_over = false;
        let removals = std::mem::take(&mut self.deferred_removals);
        if removals.is_empty() {
            return;
        }
        if self.config.alone {
            // Make-before-break needs a successor; the file has none.
            info!("no other VIP holder in the cluster file: giving the VIP up at once");
            for vip in removals {
                self.remove_vip(vip).await;
            }
            return;
        }
        let interval = self.config.core.advert_interval();
        let started = Instant::now();
        let deadline = Instant::now()
            + (interval * 3 + Duration::from_millis(100)).min(Duration::from_secs(4));
        let vrid = self.config.core.vrid;
        let own = self.config.core.primary_address;
        let options = self.instance.decode_options();
        let successor = loop {
            let received = tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => break None,
                received = self.socket.recv(buf) => received,
            };
            let Ok(datagram) = received else { continue };
            let (src, dst, payload) = match datagram {
                Datagram::V4(packet) => match Ipv4Header::parse(packet) {
                    Ok((header, payload)) => {
                        (IpAddr::V4(header.src), IpAddr::V4(header.dst), payload)
                    }
                    Err(_) => continue,
                },
                Datagram::V6 {
                    src, dst, payload, ..
                } => (IpAddr::V6(src), IpAddr::V6(dst), payload),
            };
            if src == own {
                continue;
            }
            if let Ok(advert) = Advertisement::decode(payload, src, dst, &options)
                && advert.vrid == vrid
                && advert.priority > 0
            {
                break Some(src);
            }
        };
        match successor {
            Some(successor) => {
                info!(%successor, "the successor took over: giving the VIP up");
                tokio::time::sleep(interval.min(Duration::from_millis(200))).await;
            }
            None => warn!(
                "no successor advertised within {:?}: giving the VIP up",
                started.elapsed()
            ),
        }
        for vip in removals {
            self.remove_vip(vip).await;
        }
    }

    /// Sends `advert` to each unicast peer (or the group), or with
    /// `to_followers` to each mesh follower.
    async fn send_advert(&mut self, advert: &Advertisement, to_followers: bool) {
        let config = &self.config;
        let destinations = match to_followers {
            false => &config.send_to,
            true => &config.core.followers,
        };
        let source = config.core.primary_address;
        let mut failures = Vec::new();
        for &dst in destinations {
            let message = match advert.encode(source, dst, config.core.checksum_mode) {
                Ok(message) => message,
                Err(e) => {
                    error!(error = ?e, "cannot encode an advert");
                    return;
                }
            };
            match self.socket.send(dst, &message).await {
                Ok(()) => self.status.lock().adverts_sent += 1,
                Err(e) => failures.push((dst, e)),
            }
        }
        for (dst, e) in failures {
            self.send_failures.record(
                "send_failed",
                Instant::now(),
                format_args!("advert to {dst}: {e}"),
            );
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
