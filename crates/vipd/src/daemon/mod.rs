//! The daemon of one node: starts the subsystems its plan asks for,
//! supervises them, reloads them in place, and stops them in order.
//!
//! - [`Daemon::start`]: listeners are bound first (a port that is taken
//!   fails the start before VRRP claims the VIP for a node that cannot
//!   serve it), then the DNAT table, then VRRP, then the control socket and
//!   the metrics listener.
//! - Reload (SIGHUP, or `POST /v1/reload` from `vipd reload`): [`reload`]
//!   checks the file as `vipd check` does and works out the difference; a
//!   refused file changes nothing.
//! - Stop (SIGTERM, SIGINT): VRRP first, which hands the VIP over while
//!   the proxies and the DNAT table still serve; then the rest drains. A
//!   second signal exits at once.
//!
//! A subsystem that fails stops the others and the daemon exits 1, so
//! systemd sees it.

pub mod reload;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::FutureExt as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::api::server::{self, ReloadRequest};
use crate::api::{self, State};
use crate::config::resolve::{DnatPlan, FollowPlan, Frontend as FrontendPlan, NodePlan};
use crate::config::spec::ClusterSpec;
use crate::mesh::follow::{self, SharedFollowStatus};
use crate::nftables::SharedDnatStatus;
use crate::proxy::frontend::{self, Frontend, FrontendUpdate, Listeners, Workers};
use crate::vrrp::driver::{self, DriverConfig, LocalState, StatePublisher};
use crate::vrrp::status::SharedVrrpStatus;
use vipd_core::vrrp::State as VrrpState;

/// Where the daemon finds its configuration, and its control socket.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub node: String,
    pub secrets: Option<PathBuf>,
    /// The age identity that opens the vault (`[cluster] vault`).
    pub identity: Option<PathBuf>,
    pub socket: PathBuf,
    /// The threads the proxy frontends' sessions run on.
    pub workers: Arc<Workers>,
}

/// Called once everything is up (systemd's READY=1), and on each reload.
pub type Notify = Box<dyn Fn(Event) + Send + Sync>;

/// What the daemon tells its service manager (systemd: crate::service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Up, with a one-line summary (`node lb-a: VRRP master, ...`).
    Ready(String),
    Reloading,
    /// A reload ended (applied or refused: the daemon runs either way).
    Reloaded(String),
    /// The summary changed (a VRRP transition, a backend down).
    Status(String),
    Stopping,
}

type Outcome = (String, anyhow::Result<()>);

struct FrontendTask {
    key: String,
    config: FrontendUpdate,
    updates: mpsc::Sender<FrontendUpdate>,
    stop: watch::Sender<bool>,
    shared: Arc<Frontend>,
    handle: JoinHandle<()>,
}

/// A subsystem task that takes its configuration `C` in place on reload
/// and publishes its status `S`.
struct Task<C, S> {
    key: String,
    config: C,
    updates: mpsc::Sender<C>,
    stop: watch::Sender<bool>,
    status: S,
    handle: JoinHandle<()>,
}

type DnatTask = Task<DnatPlan, SharedDnatStatus>;
type VrrpTask = Task<DriverConfig, SharedVrrpStatus>;
type FollowTask = Task<FollowPlan, SharedFollowStatus>;

/// A running daemon.
pub struct Daemon {
    options: Options,
    spec: ClusterSpec,
    plan: NodePlan,
    state: Arc<State>,
    frontends: BTreeMap<SocketAddr, FrontendTask>,
    dnat: Option<DnatTask>,
    vrrp: Option<VrrpTask>,
    follow: Option<FollowTask>,
    /// The VIP listener the crash guard (`nftables::guard`) is loaded for.
    guard: Option<SocketAddr>,
    /// Since when this holder, not master, has had sessions on its VIP
    /// frontend (see `close_orphans`).
    orphans_since: Option<std::time::Instant>,
    /// The control socket and the metrics listener.
    services: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
    done_tx: mpsc::UnboundedSender<Outcome>,
    done_rx: mpsc::UnboundedReceiver<Outcome>,
    /// Tasks stopped on purpose (a reload removed them): their end is no failure.
    retired: HashSet<String>,
    next_id: u64,
    reload_tx: mpsc::Sender<ReloadRequest>,
    reload_rx: mpsc::Receiver<ReloadRequest>,
    /// The VRRP instance's state, whichever instance runs (a restart keeps
    /// the channel): read by the supervisor and the mesh follower.
    vrrp_state: StatePublisher,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("node", &self.plan.node)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts every subsystem of `plan`. An error leaves nothing running.
    pub async fn start(
        options: Options,
        spec: ClusterSpec,
        plan: NodePlan,
        vrrp: Option<DriverConfig>,
    ) -> anyhow::Result<Self> {
        let roles = plan.roles.iter().map(|r| r.as_str().to_owned()).collect();
        let state = Arc::new(State::new(
            &plan.cluster,
            &plan.node,
            roles,
            &options.config.display().to_string(),
        ));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let mut daemon = Daemon {
            options,
            spec,
            plan,
            state,
            frontends: BTreeMap::new(),
            dnat: None,
            vrrp: None,
            follow: None,
            guard: None,
            orphans_since: None,
            services: Vec::new(),
            done_tx,
            done_rx,
            retired: HashSet::new(),
            next_id: 0,
            reload_tx,
            reload_rx,
            vrrp_state: Arc::new(watch::channel(LocalState::default()).0),
        };
        if let Err(e) = daemon.start_subsystems(vrrp).await {
            daemon.shutdown().await;
            return Err(e);
        }
        Ok(daemon)
    }

    async fn start_subsystems(&mut self, vrrp: Option<DriverConfig>) -> anyhow::Result<()> {
        let mut listeners = Vec::new();
        for plan in &self.plan.frontends {
            listeners.push((plan.clone(), self.bind(plan)?));
        }
        // The control socket before anything changes the system: a second
        // daemon on the same node fails here.
        let control = server::bind_socket(&self.options.socket)
            .with_context(|| format!("control socket {}", self.options.socket.display()))?;
        let metrics = match self.spec.metrics.enabled {
            true => Some(
                tokio::net::TcpListener::bind(self.spec.metrics.listen)
                    .await
                    .with_context(|| {
                        format!(
                            "metrics.listen {}: the port is taken (set [metrics] listen, or enabled = false)",
                            self.spec.metrics.listen
                        )
                    })?,
            ),
            false => None,
        };
        for (plan, listener) in listeners {
            self.spawn_frontend(plan, listener);
        }
        // On every VIP holder, master or backup: on a backup only the
        // holder's own connections to the VIP meet the rules, and a
        // takeover needs no reload.
        if let Some(plan) = self.plan.dnat.clone() {
            self.spawn_dnat(plan);
        }
        // Before VRRP can take the VIP.
        self.set_guard(self.plan.vip_listener()).await;
        if let Some(config) = vrrp {
            self.spawn_vrrp(config);
        }
        if let Some(plan) = self.plan.follow.clone() {
            self.spawn_follow(plan);
        }
        self.publish();
        let (stop, stop_rx) = watch::channel(false);
        let (state, reload) = (Arc::clone(&self.state), self.reload_tx.clone());
        let handle = self.spawn("control socket".to_owned(), async move {
            server::serve_socket(control, state, reload, stop_rx)
                .await
                .context("control socket")
        });
        self.services.push((stop, handle));
        if let Some(listener) = metrics {
            let (stop, stop_rx) = watch::channel(false);
            let state = Arc::clone(&self.state);
            let address = self.spec.metrics.listen;
            let handle = self.spawn("metrics".to_owned(), async move {
                server::serve_metrics(listener, state, stop_rx)
                    .await
                    .with_context(|| format!("metrics listener {address}"))
            });
            self.services.push((stop, handle));
            info!(listen = %address, "metrics at http://{address}/metrics");
        }
        info!(socket = %self.options.socket.display(), "control socket ready (`vipd status`)");
        Ok(())
    }

    /// The shared state of the daemon (for tests and the CLI).
    pub fn state(&self) -> Arc<State> {
        Arc::clone(&self.state)
    }

    /// Runs until `stop` turns true or a subsystem fails, reloading on
    /// SIGHUP and on API requests; then stops everything in order.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        notify: &Notify,
    ) -> anyhow::Result<()> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let outcome = match self.wait_up(&mut stop).await {
            Ok(()) => {
                let summary = self.summary();
                info!("up: {summary}");
                notify(Event::Ready(summary));
                self.serve(stop, &mut hangup, notify).await
            }
            Err(e) => Err(e),
        };
        notify(Event::Stopping);
        if let Err(e) = &outcome {
            error!("{e:#}: stopping");
        }
        self.shutdown().await;
        outcome
    }

    /// Waits for the first bring-up: the DNAT table loaded, the VRRP
    /// instance out of Initialize. A subsystem failing first is the error.
    async fn wait_up(&mut self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let dnat_up = self
                .dnat
                .as_ref()
                .is_none_or(|d| !d.status.snapshot().destination.is_empty());
            let vrrp_up =
                self.vrrp.is_none() || self.vrrp_state.borrow().state != VrrpState::Initialize;
            if dnat_up && vrrp_up {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                warn!("not all subsystems came up within 30 s: reporting ready anyway");
                return Ok(());
            }
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                Some((key, result)) = self.done_rx.recv() => {
                    return Err(match result {
                        Err(e) => e.context(format!("{key} failed")),
                        Ok(()) => anyhow::anyhow!("{key} ended on its own"),
                    });
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
            }
        }
    }

    /// One line for `systemctl status`: what the node does right now.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(vrrp) = &self.vrrp {
            let status = vrrp.status.lock();
            let vip = if status.vip_on_interface {
                ", VIP here"
            } else {
                ""
            };
            parts.push(format!("VRRP {}{vip}", status.state));
        }
        if let Some(dnat) = &self.dnat {
            let status = dnat.status.snapshot();
            let loaded = status.targets.iter().filter(|t| t.loaded).count();
            parts.push(format!("DNAT {loaded}/{} planes", status.targets.len()));
        }
        for frontend in self.frontends.values() {
            let members = frontend.shared.pool.members();
            let up = members.backends.iter().filter(|b| b.is_healthy()).count();
            parts.push(format!(
                "proxy {} {up}/{} up",
                frontend.shared.name,
                members.backends.len()
            ));
        }
        format!("node {}: {}", self.plan.node, parts.join(", "))
    }

    async fn serve(
        &mut self,
        mut stop: watch::Receiver<bool>,
        hangup: &mut tokio::signal::unix::Signal,
        notify: &Notify,
    ) -> anyhow::Result<()> {
        let liveness = crate::service::Liveness::new();
        let watchdog = crate::service::watchdog_interval().map(|interval| {
            let liveness = liveness.clone();
            tokio::spawn(crate::service::watchdog(interval, move || liveness.check()))
        });
        // The supervisor's own loop proves the runtime goes round: a
        // runtime blocked for this long stops the watchdog pings.
        let pulse = liveness.pulse("supervisor", std::time::Duration::from_secs(5));
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut summary = self.summary();
        let outcome = loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break Ok(()),
                _ = tick.tick() => {
                    pulse.beat();
                    self.close_orphans();
                    let now = self.summary();
                    if now != summary {
                        notify(Event::Status(now.clone()));
                        summary = now;
                    }
                }
                Some((key, result)) = self.done_rx.recv() => {
                    if self.retired.remove(&key) {
                        continue;
                    }
                    match result {
                        Err(e) => break Err(e.context(format!("{key} failed"))),
                        Ok(()) => break Err(anyhow::anyhow!("{key} ended on its own")),
                    }
                }
                _ = hangup.recv() => {
                    info!("SIGHUP: reloading {}", self.options.config.display());
                    notify(Event::Reloading);
                    let outcome = self.reload("signal").await;
                    let line = reload_line(&outcome, &self.summary());
                    self.state.record_reload(outcome);
                    notify(Event::Reloaded(line));
                }
                Some(request) = self.reload_rx.recv() => {
                    info!(trigger = request.trigger, "reloading {}", self.options.config.display());
                    notify(Event::Reloading);
                    let outcome = self.reload(request.trigger).await;
                    let line = reload_line(&outcome, &self.summary());
                    self.state.record_reload(outcome.clone());
                    if let Some(reply) = request.reply {
                        let _ = reply.send(outcome);
                    }
                    notify(Event::Reloaded(line));
                }
            }
        };
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        outcome
    }

    /// VRRP first (it hands the VIP over while the datapath still serves),
    /// then the proxies drain and the DNAT table goes, then the API.
    async fn shutdown(&mut self) {
        if let Some(vrrp) = self.vrrp.take() {
            vrrp.stop.send_replace(true);
            let _ = vrrp.handle.await;
        }
        // The device keeps the last route: the master this node followed
        // still holds the VIP, whatever happens to this node's vipd.
        if let Some(follow) = self.follow.take() {
            follow.stop.send_replace(true);
            let _ = follow.handle.await;
        }
        let mut handles = Vec::new();
        for (_, task) in std::mem::take(&mut self.frontends) {
            task.stop.send_replace(true);
            handles.push(task.handle);
        }
        if let Some(dnat) = self.dnat.take() {
            dnat.stop.send_replace(true);
            handles.push(dnat.handle);
        }
        for handle in handles {
            let _ = handle.await;
        }
        // The VIP is gone (VRRP stopped first): nothing left to guard.
        self.set_guard(None).await;
        for (stop, handle) in self.services.drain(..) {
            stop.send_replace(true);
            let _ = handle.await;
        }
        // Leave no socket file for the next start to wonder about.
        let _ = std::fs::remove_file(&self.options.socket);
        while let Ok((key, result)) = self.done_rx.try_recv() {
            match result {
                Ok(()) => info!(subsystem = key, "stopped"),
                Err(e) if !self.retired.contains(&key) => error!(subsystem = key, "{e:#}"),
                Err(_) => {}
            }
        }
    }

    /// Spawns `future` as subsystem `key`; its end (or panic) is reported
    /// on the daemon's channel.
    fn spawn(
        &mut self,
        key: String,
        future: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> JoinHandle<()> {
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = match std::panic::AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("panicked")),
            };
            let _ = done.send((key, result));
        })
    }

    fn key(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("{what} #{}", self.next_id)
    }

    fn bind(&self, plan: &FrontendPlan) -> anyhow::Result<Listeners> {
        bind(&self.spec, plan, &self.options.workers)
    }

    fn spawn_frontend(&mut self, plan: FrontendPlan, listeners: Listeners) {
        let key = self.key(&format!("proxy {} {}", plan.name, plan.listen));
        let shared = Arc::new(Frontend::new(&plan, self.spec.proxy.balance));
        let config = FrontendUpdate {
            plan: plan.clone(),
            settings: self.spec.proxy.clone(),
        };
        let (updates, updates_rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let (initial, task_shared) = (config.clone(), Arc::clone(&shared));
        let workers = Arc::clone(&self.options.workers);
        let handle = self.spawn(key.clone(), async move {
            frontend::serve(
                initial,
                listeners,
                task_shared,
                updates_rx,
                stop_rx,
                &workers,
            )
            .await
        });
        self.frontends.insert(
            plan.listen,
            FrontendTask {
                key,
                config,
                updates,
                stop,
                shared,
                handle,
            },
        );
    }

    /// On a `proxy` holder that is not master, the VIP frontend's sessions
    /// are left over from when it was (the VIP is on another holder now, and
    /// their clients reach that one after its gratuitous ARPs). After the
    /// frontend's `drain_timeout` they are closed: left open they would hold
    /// their apiserver connections and count for least-conn until TCP gives
    /// up on the client leg, minutes later.
    fn close_orphans(&mut self) {
        let master = self.vrrp.is_none() || self.vrrp_state.borrow().state == VrrpState::Master;
        let vip = self.frontends.values().find(|f| f.shared.name == "vip");
        let Some(task) = vip.filter(|t| !master && t.shared.stats.active.get() > 0) else {
            self.orphans_since = None;
            return;
        };
        let since = *self
            .orphans_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= task.config.settings.drain_timeout.get() {
            self.orphans_since = None;
            info!(
                frontend = "vip",
                sessions = task.shared.stats.active.get(),
                "the VIP is on another holder: closing the sessions still open here"
            );
            task.shared.close_sessions();
        }
    }

    /// Loads, replaces or removes the crash guard so that it matches
    /// `want`, and says what it did (`None`: nothing to do). A failure is
    /// logged and leaves the daemon running: the guard only shortens the
    /// window after a crash.
    async fn set_guard(&mut self, want: Option<SocketAddr>) -> Option<String> {
        use crate::nftables::guard::GUARD_TABLE;
        if want == self.guard {
            return None;
        }
        let done = match crate::nftables::guard::set(&crate::nftables::Nft::default(), want).await {
            Ok(()) => {
                self.guard = want;
                match want {
                    Some(vip) => format!(
                        "crash guard for {vip} loaded (table inet {GUARD_TABLE}): if this daemon dies, SYNs to the VIP get no reset"
                    ),
                    None => format!("crash guard removed (table inet {GUARD_TABLE})"),
                }
            }
            Err(e) => {
                warn!("crash guard (table inet {GUARD_TABLE}) not changed: {e}");
                return Some(format!("crash guard not changed: {e}"));
            }
        };
        info!("{done}");
        Some(done)
    }

    fn spawn_dnat(&mut self, plan: DnatPlan) {
        let key = self.key("dnat");
        let status = SharedDnatStatus::default();
        let (updates, updates_rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let (task_plan, task_status) = (plan.clone(), status.clone());
        let handle = self.spawn(key.clone(), async move {
            crate::nftables::serve(
                task_plan,
                crate::nftables::Nft::default(),
                task_status,
                updates_rx,
                stop_rx,
            )
            .await
        });
        self.dnat = Some(DnatTask {
            key,
            config: plan,
            updates,
            stop,
            status,
            handle,
        });
    }

    fn spawn_vrrp(&mut self, config: DriverConfig) {
        let key = self.key("vrrp");
        let status = SharedVrrpStatus::default();
        let (updates, updates_rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let (task_config, task_status) = (config.clone(), status.clone());
        let publisher = Arc::clone(&self.vrrp_state);
        let handle = self.spawn(key.clone(), async move {
            driver::run(task_config, stop_rx, task_status, updates_rx, publisher).await
        });
        self.vrrp = Some(VrrpTask {
            key,
            config,
            updates,
            stop,
            status,
            handle,
        });
    }

    fn spawn_follow(&mut self, plan: FollowPlan) {
        let key = self.key("follow");
        let status = SharedFollowStatus::default();
        let (updates, updates_rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        // A holder's follower knows whether this node is master itself.
        let local = plan.holder.then(|| self.vrrp_state.subscribe());
        let (task_plan, task_status, own) = (plan.clone(), status.clone(), self.plan.address);
        let handle = self.spawn(key.clone(), async move {
            follow::run(task_plan, own, local, stop_rx, task_status, updates_rx).await
        });
        self.follow = Some(FollowTask {
            key,
            config: plan,
            updates,
            stop,
            status,
            handle,
        });
    }

    /// Tells the API which subsystems run now.
    fn publish(&self) {
        self.state
            .set_follow(self.follow.as_ref().map(|f| f.status.clone()));
        self.state.set_subsystems(
            self.frontends
                .values()
                .map(|f| Arc::clone(&f.shared))
                .collect(),
            self.vrrp.as_ref().map(|v| v.status.clone()),
            self.dnat.as_ref().map(|d| d.status.clone()),
        );
    }

    async fn reload(&mut self, trigger: &'static str) -> api::schema::ReloadOutcome {
        let outcome = reload::reload(self, trigger).await;
        if outcome.ok {
            if outcome.changes.is_empty() {
                info!("reload: nothing changed");
            }
            for change in &outcome.changes {
                info!("reload: {change}");
            }
        } else {
            for e in &outcome.errors {
                warn!("reload refused, the running configuration stays: {e}");
            }
        }
        outcome
    }
}

/// The status line after a reload.
fn reload_line(outcome: &api::schema::ReloadOutcome, summary: &str) -> String {
    if outcome.ok {
        format!("{summary} (reloaded)")
    } else {
        format!("{summary} (last reload REFUSED: the running configuration stays)")
    }
}

/// Binds a frontend's listener as `spec` asks: the VIP with freebind (VRRP
/// adds it later), the backlog as deep as the connection limit.
fn bind(spec: &ClusterSpec, plan: &FrontendPlan, workers: &Workers) -> anyhow::Result<Listeners> {
    let freebind = plan.listen.ip() == spec.vip.address;
    let backlog = i32::try_from(spec.proxy.max_connections)
        .unwrap_or(i32::MAX)
        .max(1024);
    frontend::bind_shards(plan.listen, backlog, freebind, workers.listeners())
        .with_context(|| format!("frontend {}", plan.name))
}

/// Stops the daemon on SIGTERM or SIGINT; a second one exits at once.
pub async fn stop_on_signal(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
    stop.send_replace(true);
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    warn!("second signal: exiting now");
    std::process::exit(1);
}
