//! Failure drills against a running lab.
//!
//! Each [`Scenario`] runs the same way, whatever the stack:
//!
//! ```text
//! baseline   the top-priority holder alone holds the VIP, every plane answers (bounded wait)
//! t=0        the load client and the VIP watch start
//! pre        (1 s) steady state
//! fault      the scenario's fault is injected            -> fault_ms
//! observe    (--observe) the cluster copes
//! heal       the fault is undone (restart, link up, ...) -> heal_ms
//! settle     (--settle) the cluster returns to its initial state
//! end        the client and the watch stop; checks are judged from what they recorded
//! ```
//!
//! Measured: the VIP takeover (fault -> a holder other than the master has
//! it), the convergence after the heal (heal -> exactly one holder from then
//! on), the client-observed outage (first failed request -> first
//! successful one after it, per phase), failed requests, long-lived streams
//! lost. Checked: the end state of each phase (see [`Scenario`]); a failed
//! check fails the scenario, and the drill exits non-zero.
//!
//! On the WireGuard mesh (`--mesh wireguard`) the drill also reads, just
//! before the heal and at the end, where every node's WireGuard device
//! routes the VIP (`wg show wg99 allowed-ips`, in the node's namespaces),
//! and judges it: every node that does not hold the VIP routes it to the
//! one holder that does, on exactly one peer. That is what decides whether
//! a client on the mesh is served; two holders with the VIP on their own
//! `wg99` do not disturb each other there (there is no ARP), so on the mesh
//! a cut-off master keeping the VIP is not judged as a split. With the vipd
//! stack it also takes each follower's re-point time from the statuses: the
//! new master's transition (its burst of adverts starts then) to the
//! follower's route change plus its device write. The links the faults cut
//! are the underlay's (`eth0`, which carries WireGuard's UDP).
//!
//! Adding a scenario: a variant, its name and description, its fault and
//! heal in [`Drill::apply`] / [`Drill::heal`], its checks in [`Drill::judge`].

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;

use super::client::{Attempt, Client, ClientConfig, ClientLog, Spans, VipWatch};
use super::netns::Netns;
use super::stack::{self, Paths, Stack};
use super::state::LabState;
use super::topology::Network;
use crate::config::ClusterSpec;

/// A drill scenario. Names are stable (`--scenario NAME`, the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The VIP master's daemon is killed (SIGKILL); heal: started again.
    MasterKill,
    /// The VIP master's daemon is stopped (SIGTERM); heal: started again.
    MasterStop,
    /// The VIP master's link goes down; heal: up again.
    MasterLinkDown,
    /// The VIP master's daemon is restarted (SIGTERM, gone, started).
    MasterRestart,
    /// A plane's apiserver turns unhealthy (/readyz 500); heal: healthy.
    PlaneUnhealthy,
    /// A plane's apiserver is killed; heal: started again.
    PlaneKill,
    /// A plane's link goes down; heal: up again.
    PlaneLinkDown,
    /// Every plane's link but the last one's goes down; heal: up again.
    PlanesDownButOne,
    /// The two top VIP holders cannot hear each other; heal: they can.
    HolderPartition,
    /// Every daemon reloads an edited cluster file under load (vipd: the
    /// master's priority and the proxies' settings change, `vipd reload`
    /// on every node; classic: keepalived SIGHUP, HAProxy `-sf`); heal: the
    /// original file, reloaded again.
    ConfigReload,
    /// On the mesh: the VIP master's wireguard-go is killed (its `wg99`
    /// goes, with the VIP on it) while its VIP daemon lives; heal: started
    /// and configured again.
    MasterWgKill,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::MasterKill,
        Scenario::MasterStop,
        Scenario::MasterLinkDown,
        Scenario::MasterRestart,
        Scenario::PlaneUnhealthy,
        Scenario::PlaneKill,
        Scenario::PlaneLinkDown,
        Scenario::PlanesDownButOne,
        Scenario::HolderPartition,
        Scenario::ConfigReload,
        Scenario::MasterWgKill,
    ];

    /// Whether the scenario can run on `network`.
    pub fn runs_on(self, network: Network) -> bool {
        self != Scenario::MasterWgKill || network == Network::Wireguard
    }

    /// Every scenario that runs on `network`, in order.
    pub fn all_on(network: Network) -> Vec<Scenario> {
        Self::ALL
            .into_iter()
            .filter(|s| s.runs_on(network))
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::MasterKill => "master-kill",
            Scenario::MasterStop => "master-stop",
            Scenario::MasterLinkDown => "master-link-down",
            Scenario::MasterRestart => "master-restart",
            Scenario::PlaneUnhealthy => "plane-unhealthy",
            Scenario::PlaneKill => "plane-kill",
            Scenario::PlaneLinkDown => "plane-link-down",
            Scenario::PlanesDownButOne => "planes-down-but-one",
            Scenario::HolderPartition => "holder-partition",
            Scenario::ConfigReload => "config-reload",
            Scenario::MasterWgKill => "master-wg-kill",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::MasterKill => "VIP master's daemon SIGKILLed, then started again",
            Scenario::MasterStop => "VIP master's daemon stopped (SIGTERM), then started again",
            Scenario::MasterLinkDown => "VIP master's link down, then up",
            Scenario::MasterRestart => "VIP master's daemon restarted (SIGTERM, then start)",
            Scenario::PlaneUnhealthy => "plane-1's apiserver unhealthy (/readyz 500), then healthy",
            Scenario::PlaneKill => "plane-1's apiserver killed, then started again",
            Scenario::PlaneLinkDown => "plane-1's link down, then up",
            Scenario::PlanesDownButOne => "every plane's link but the last down, then up",
            Scenario::HolderPartition => "holder-1 and holder-2 partitioned, then healed",
            Scenario::ConfigReload => {
                "every daemon reloads an edited cluster file under load, then the original"
            }
            Scenario::MasterWgKill => {
                "VIP master's wireguard-go SIGKILLed (its daemon lives), then started again"
            }
        }
    }

    fn needs_backup(self) -> bool {
        matches!(
            self,
            Scenario::MasterKill
                | Scenario::MasterStop
                | Scenario::MasterLinkDown
                | Scenario::MasterRestart
                | Scenario::HolderPartition
                | Scenario::MasterWgKill
        )
    }
}

/// How a drill runs.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    pub scenarios: Vec<Scenario>,
    pub pre: Duration,
    pub observe: Duration,
    pub settle: Duration,
    pub every: Duration,
    pub streams: usize,
}

impl Default for DrillConfig {
    fn default() -> Self {
        Self {
            scenarios: Scenario::ALL.to_vec(),
            pre: Duration::from_secs(1),
            observe: Duration::from_secs(4),
            settle: Duration::from_secs(4),
            every: Duration::from_millis(5),
            streams: 6,
        }
    }
}

/// One judged fact about a scenario's state.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// A change of a node's condition, for the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ms: f64,
    pub node: String,
    pub state: String,
}

/// A scenario's outcome: measurements, checks and the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub stack: Stack,
    pub scenario: Scenario,
    pub description: String,
    /// Why it did not run (too few holders or planes), if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub fault_ms: f64,
    pub heal_ms: f64,
    pub end_ms: f64,
    /// Fault -> a holder other than the master holds the VIP.
    pub takeover_ms: Option<f64>,
    /// Heal -> exactly one holder from then to the end.
    pub converge_ms: Option<f64>,
    /// Client-observed outage from the fault to the heal: each run of
    /// disrupted requests (failed, or connected only after a SYN
    /// retransmission) from its first to the next request served, summed.
    pub outage_ms: f64,
    /// The same from the heal to the end.
    pub heal_outage_ms: f64,
    /// From the fault to the heal: first disrupted request -> first request
    /// served after the last disruption (partial failures and blips
    /// included).
    pub disrupted_ms: f64,
    pub requests: usize,
    pub failed: usize,
    /// Failed requests whose TCP connect failed (refused, timed out); the
    /// others failed after connecting (a reset mid-request, a timeout).
    pub failed_connects: usize,
    /// Successful requests whose connect needed a SYN retransmission (took
    /// 1 s or more): served, but late.
    pub slow_connects: usize,
    pub failed_after_heal: usize,
    pub streams: usize,
    pub streams_lost: usize,
    /// On the mesh with vipd: each follower's re-point time (ms) for every
    /// master change seen before the heal and by the end: the new master's
    /// transition to the follower's route change plus its device write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repoint_ms: Vec<f64>,
    /// Failed requests by error (`connect timed out`, `HTTP 500`, ...).
    pub failures: BTreeMap<String, usize>,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub holders: Vec<(String, Spans)>,
    /// On the mesh: where each node's device routed the VIP just before the
    /// heal and at the end (node -> the holders whose peer has it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<[BTreeMap<String, Vec<String>>; 2]>,
    /// Every plane, for the timeline (their conditions are in `events`).
    pub planes: Vec<String>,
    pub events: Vec<Event>,
    /// Compact: (start ms, ok, slow connect) per request.
    pub requests_timeline: Vec<(f64, bool, bool)>,
    #[serde(skip)]
    pub log: ClientLog,
}

impl ScenarioResult {
    /// One line per finished scenario, for the progress output.
    pub fn progress_line(&self) -> String {
        let r = self;
        if let Some(why) = &r.skipped {
            return format!(
                "{} {}: skipped ({why})",
                r.stack.as_str(),
                r.scenario.name()
            );
        }
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect();
        format!(
            "{} {}: {} (takeover {}, outage {:.0} ms, {}/{} failed, {} slow, {}/{} streams lost){}",
            r.stack.as_str(),
            r.scenario.name(),
            if r.passed { "PASS" } else { "FAIL" },
            r.takeover_ms
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms")),
            r.outage_ms,
            r.failed,
            r.requests,
            r.slow_connects,
            r.streams_lost,
            r.streams,
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", failed.join("; "))
            }
        )
    }
}

/// A lab loaded for drilling.
pub struct Drill {
    dir: PathBuf,
    pub state: LabState,
    spec: ClusterSpec,
    paths: Paths,
    config: DrillConfig,
    progress: Box<dyn FnMut(&str)>,
}

impl std::fmt::Debug for Drill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drill")
            .field("dir", &self.dir)
            .field("run_id", &self.state.run_id)
            .finish_non_exhaustive()
    }
}

/// What was done, to undo it.
enum Applied {
    None,
    DaemonDown(String),
    LinksDown(Vec<String>),
    Unhealthy(String),
    ApiserverDown(String),
    Partition(String, String),
    /// The cluster file before the edit, to put back and reload.
    Reloaded(String),
    /// A node whose wireguard-go was killed.
    WireguardDown(String),
}

/// What the drill reads from the mesh at one moment.
#[derive(Debug, Clone, Default)]
struct MeshSample {
    /// Node -> the holders whose peer has the VIP on its device (nodes
    /// whose device cannot be read, e.g. without wireguard-go, are left out).
    routes: BTreeMap<String, Vec<String>>,
    /// (node, route change time) -> its re-point time, ms.
    repoints: BTreeMap<(String, u64), f64>,
}

const PARTITION_TABLE: &str = "vipd_lab_partition";

fn sleep_checked(d: Duration) -> io::Result<()> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if super::interrupted() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        std::thread::sleep((deadline - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

impl Drill {
    pub fn new(
        dir: &Path,
        state: LabState,
        spec: ClusterSpec,
        vipd: PathBuf,
        config: DrillConfig,
        progress: Box<dyn FnMut(&str)>,
    ) -> Self {
        let network = state.network;
        Self {
            dir: dir.to_owned(),
            state,
            spec,
            paths: Paths {
                dir: dir.to_owned(),
                vipd,
                network,
            },
            config,
            progress,
        }
    }

    fn say(&mut self, text: &str) {
        (self.progress)(text);
    }

    fn stack(&self) -> Stack {
        self.state.stack
    }

    fn ns(&self, node: &str) -> Netns {
        Netns::existing(
            &self
                .state
                .node(node)
                .map(|n| n.namespace.clone())
                .unwrap_or_default(),
        )
    }

    fn holders(&self) -> Vec<String> {
        self.state
            .with_role("vip")
            .map(|n| n.name.clone())
            .collect()
    }

    fn planes(&self) -> Vec<String> {
        self.state
            .with_role("plane")
            .map(|n| n.name.clone())
            .collect()
    }

    /// The holder that should be master: the highest priority.
    fn top_holder(&self) -> Option<String> {
        self.spec
            .nodes_with(crate::config::spec::Role::Vip)
            .max_by_key(|n| n.priority.unwrap_or(0))
            .map(|n| n.name.clone())
    }

    fn second_holder(&self) -> Option<String> {
        let top = self.top_holder()?;
        self.spec
            .nodes_with(crate::config::spec::Role::Vip)
            .filter(|n| n.name != top)
            .max_by_key(|n| n.priority.unwrap_or(0))
            .map(|n| n.name.clone())
    }

    fn vip(&self) -> IpAddr {
        self.spec.vip.address
    }

    fn client_config(&self, streams: usize, limit: Duration) -> ClientConfig {
        ClientConfig {
            target: SocketAddr::new(self.vip(), self.spec.api.port.get()),
            sources: super::topology::client_sources(self.state.network),
            ca_file: self.dir.join("ca.crt"),
            every: self.config.every,
            // Room for one SYN retransmission (at 1 s), as a real client
            // has; such a connect is counted as slow, not as served.
            connect_timeout: Duration::from_millis(3000),
            request_timeout: Duration::from_millis(5000),
            streams,
            stall: Duration::from_secs(2),
            limit,
        }
    }

    fn worker(&self) -> Netns {
        self.ns("worker-1")
    }

    /// Which holders have the VIP right now.
    pub fn current_holders(&self) -> Vec<String> {
        let vip = self.vip();
        self.holders()
            .into_iter()
            .filter(|h| {
                self.ns(h)
                    .run("ip", &["-o", "addr", "show"])
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .any(|w| w.split('/').next() == Some(&vip.to_string()))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Waits (bounded) for the initial state: the top holder alone has the
    /// VIP, every plane's apiserver answers /readyz (asked directly), and a
    /// burst of requests through the VIP all succeed. (Which planes answer
    /// through the VIP is not required: with least-conn balancing, sessions
    /// a fault left half-open skew the choice until keepalive ends them.)
    pub fn wait_baseline(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        let top = self.top_holder();
        let planes = self.planes();
        let ca = self.dir.join("ca.crt");
        let mut last = String::new();
        let started = Instant::now();
        let mut told = false;
        while Instant::now() < deadline {
            if !told && started.elapsed() > Duration::from_secs(10) {
                told = true;
                let line = format!("still waiting for the initial state: {last}");
                self.say(&line);
            }
            if super::interrupted() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            let holders = self.current_holders();
            let unhealthy: Vec<&String> = planes
                .iter()
                .filter(|p| {
                    let address = self.state.node(p).map(|n| n.address);
                    !address.is_some_and(|a| {
                        super::client::probe_once(
                            &self.worker(),
                            SocketAddr::new(a, self.apiserver_port(p)),
                            &ca,
                        )
                    })
                })
                .collect();
            if top.as_ref().is_none_or(|t| holders != [t.clone()]) {
                last = format!("VIP holders {holders:?}, expected only {top:?}");
            } else if !unhealthy.is_empty() {
                last = format!("apiservers not answering: {unhealthy:?}");
            } else {
                let mut config = self.client_config(0, Duration::from_secs(5));
                config.every = Duration::from_millis(15);
                let client = Client::start(&self.worker(), Instant::now(), config)?;
                std::thread::sleep(Duration::from_millis(700));
                let log = client.finish()?;
                let failed = log.attempts.iter().filter(|a| !a.ok).count();
                if failed == 0 && !log.attempts.is_empty() {
                    return Ok(());
                }
                last = format!(
                    "{failed} of {} requests through the VIP failed",
                    log.attempts.len()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(io::Error::other(format!(
            "the lab did not reach its initial state in {} s: {last}",
            limit.as_secs()
        )))
    }

    /// Runs every configured scenario; stops early when interrupted.
    pub fn run(&mut self) -> io::Result<Vec<ScenarioResult>> {
        let mut results = Vec::new();
        for scenario in self.config.scenarios.clone() {
            if super::interrupted() {
                break;
            }
            let result = self.run_one(scenario);
            self.state.save(&self.dir)?;
            match result {
                Ok(r) => {
                    let line = r.progress_line();
                    self.say(&line);
                    results.push(r);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => {
                    // The scenario could not run to its end: a failed
                    // scenario, then the lab is put back for the next one.
                    let mut r = self.skipped(scenario, String::new());
                    r.skipped = None;
                    r.passed = false;
                    r.checks.push(Check {
                        what: "the scenario ran to its end".into(),
                        ok: false,
                        detail: e.to_string(),
                    });
                    self.say(&r.progress_line());
                    results.push(r);
                    self.unwind();
                    self.repair();
                    self.state.save(&self.dir)?;
                }
            }
        }
        Ok(results)
    }

    /// Starts whatever should run and does not (after a scenario that
    /// failed half-way): each node's daemons of the stack and its apiserver.
    pub fn repair(&mut self) {
        let stack = self.stack();
        let paths = self.paths.clone();
        let limit = self.exit_limit();
        let names: Vec<String> = self.state.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            let port = self.apiserver_port(&name);
            let Some(node) = self.state.node_mut(&name) else {
                continue;
            };
            let dead = |node: &super::state::NodeState, what: &str| {
                node.pids
                    .get(what)
                    .is_none_or(|&pid| !stack::alive_in(pid, &node.namespace))
            };
            if paths.network == Network::Wireguard && dead(node, stack::WIREGUARD_GO) {
                node.pids.remove(stack::WIREGUARD_GO);
                let plain = paths.mesh().join(format!("{name}.wg"));
                let _ = stack::start_mesh(&paths, node, &plain);
            }
            if node.has_role("plane") && dead(node, "apiserver") {
                node.pids.remove("apiserver");
                let _ = stack::start_apiserver(&paths, node, port);
            }
            if node.has_role("vip") && dead(node, stack::vip_daemon(stack)) {
                node.pids.remove(stack::vip_daemon(stack));
                if stack::wait_vip_daemon_gone(stack, node, limit) {
                    let _ = stack::start_vip_daemon(&paths, stack, node);
                }
            }
            let runs_vipd = node.has_role("plane")
                || (paths.network == Network::Wireguard && node.has_role("worker"));
            if stack == Stack::Vipd && runs_vipd && dead(node, "vipd") {
                node.pids.remove("vipd");
                let _ = stack::start_node(&paths, stack, node);
            }
        }
    }

    /// How long a stopped daemon may take to exit: its sessions' drain, and
    /// some slack.
    fn exit_limit(&self) -> Duration {
        self.spec.proxy.drain_timeout.get() + Duration::from_secs(10)
    }

    fn skipped(&self, scenario: Scenario, why: String) -> ScenarioResult {
        ScenarioResult {
            stack: self.stack(),
            scenario,
            description: scenario.describe().to_owned(),
            skipped: Some(why),
            fault_ms: 0.0,
            heal_ms: 0.0,
            end_ms: 0.0,
            takeover_ms: None,
            converge_ms: None,
            outage_ms: 0.0,
            heal_outage_ms: 0.0,
            disrupted_ms: 0.0,
            requests: 0,
            failed: 0,
            failed_connects: 0,
            slow_connects: 0,
            failed_after_heal: 0,
            streams: 0,
            streams_lost: 0,
            repoint_ms: Vec::new(),
            routes: None,
            failures: BTreeMap::new(),
            checks: Vec::new(),
            passed: true,
            holders: Vec::new(),
            planes: Vec::new(),
            events: Vec::new(),
            requests_timeline: Vec::new(),
            log: ClientLog::default(),
        }
    }

    fn run_one(&mut self, scenario: Scenario) -> io::Result<ScenarioResult> {
        if !scenario.runs_on(self.state.network) {
            return Ok(self.skipped(scenario, "needs --mesh wireguard".into()));
        }
        if scenario.needs_backup() && self.holders().len() < 2 {
            return Ok(self.skipped(scenario, "needs two VIP holders".into()));
        }
        if !scenario.needs_backup() && self.planes().len() < 2 {
            return Ok(self.skipped(scenario, "needs two planes".into()));
        }
        let stack = self.stack().as_str();
        self.say(&format!(
            "{stack} {}: waiting for the initial state",
            scenario.name()
        ));
        self.wait_baseline(Duration::from_secs(60))?;
        let total = self.config.pre + self.config.observe + self.config.settle;
        let epoch = Instant::now();
        let holders: Vec<(String, Netns)> = self
            .holders()
            .into_iter()
            .map(|h| {
                let ns = self.ns(&h);
                (h, ns)
            })
            .collect();
        let watch = VipWatch::start(
            &holders,
            self.vip(),
            epoch,
            Duration::from_millis(5),
            total + Duration::from_secs(60),
        )?;
        let client = Client::start(
            &self.worker(),
            epoch,
            self.client_config(self.config.streams, total + Duration::from_secs(60)),
        )?;
        let started_at = unix_now();
        let mut events = Vec::new();
        let outcome = (|| -> io::Result<(f64, f64, Applied)> {
            sleep_checked(self.config.pre)?;
            let fault_ms = epoch.elapsed().as_secs_f64() * 1000.0;
            let applied = self.apply(scenario, epoch, &mut events)?;
            self.say(&format!("{stack} {}: fault injected", scenario.name()));
            sleep_checked(self.config.observe).map(|()| (fault_ms, 0.0, applied))
        })();
        let before_heal = self.sample_mesh(started_at);
        let (fault_ms, heal_ms, applied_ok) = match outcome {
            Ok((fault_ms, _, applied)) => {
                let heal_ms = epoch.elapsed().as_secs_f64() * 1000.0;
                self.heal(applied, epoch, &mut events)?;
                self.say(&format!("{stack} {}: healed", scenario.name()));
                (fault_ms, heal_ms, true)
            }
            Err(e) => {
                // Interrupted (or the fault failed): stop measuring; the
                // caller's clean-up (or the next `down`) removes the lab.
                let _ = client.finish();
                let _ = watch.finish(0.0);
                return Err(e);
            }
        };
        debug_assert!(applied_ok);
        let settled = sleep_checked(self.config.settle);
        let at_end = self.sample_mesh(started_at);
        let end_ms = epoch.elapsed().as_secs_f64() * 1000.0;
        let log = client.finish()?;
        let holders = watch.finish(end_ms);
        settled?;
        let mesh = before_heal.zip(at_end);
        Ok(self.judge(
            scenario, fault_ms, heal_ms, end_ms, log, holders, events, mesh,
        ))
    }

    /// On the mesh: where every node's device routes the VIP now, and (with
    /// vipd) the re-point times of the route changes since `since` (Unix s).
    fn sample_mesh(&self, since: f64) -> Option<MeshSample> {
        if self.state.network != Network::Wireguard {
            return None;
        }
        let vip = ipnet::IpNet::from(self.vip());
        let owner: BTreeMap<String, String> = self
            .spec
            .nodes
            .iter()
            .filter_map(|n| Some((n.wireguard.as_ref()?.public_key.clone(), n.name.clone())))
            .collect();
        let mut sample = MeshSample::default();
        for node in &self.state.nodes {
            let Some(&anchor) = node.pids.get(stack::ANCHOR) else {
                continue;
            };
            if let Ok(peers) = super::mesh::vip_peers(anchor, &node.namespace, vip) {
                let holders = peers
                    .iter()
                    .map(|k| owner.get(k).cloned().unwrap_or_else(|| format!("key {k}")))
                    .collect();
                sample.routes.insert(node.name.clone(), holders);
            }
        }
        if self.stack() == Stack::Vipd {
            sample.repoints = self.repoints(since);
        }
        Some(sample)
    }

    /// Each vipd node's last route change to a holder that became master
    /// after `since` (Unix s): the time from that transition to the change,
    /// plus the device write (ms). Nodes that do not answer are left out.
    fn repoints(&self, since: f64) -> BTreeMap<(String, u64), f64> {
        let statuses: Vec<crate::api::schema::StatusDocument> = self
            .state
            .nodes
            .iter()
            .filter(|n| n.pids.contains_key("vipd"))
            .filter_map(|n| {
                let response =
                    crate::api::client::request(&self.paths.socket(&n.name), "GET", "/v1/status")
                        .ok()?;
                serde_json::from_slice(&response.body).ok()
            })
            .collect();
        let mastered: BTreeMap<&str, f64> = statuses
            .iter()
            .filter_map(|s| {
                let at = s
                    .vrrp
                    .as_ref()?
                    .transitions
                    .iter()
                    .rev()
                    .find(|t| t.to == "master")?
                    .at;
                Some((s.node.as_str(), at))
            })
            .collect();
        let mut out = BTreeMap::new();
        for status in &statuses {
            let Some(follow) = &status.follow else {
                continue;
            };
            let (Some(holder), true, Some(write_ms)) =
                (&follow.holder, follow.applied, follow.last_change_ms)
            else {
                continue;
            };
            let Some(&at) = mastered.get(holder.as_str()) else {
                continue;
            };
            // Only a change after a transition in this scenario: a master
            // that stayed master (heard again after a cut) is no new one.
            if at < since || follow.since < at {
                continue;
            }
            let repoint = (follow.since - at) * 1000.0 + write_ms;
            out.insert((status.node.clone(), (follow.since * 1e6) as u64), repoint);
        }
        out
    }

    fn event(events: &mut Vec<Event>, epoch: Instant, node: &str, state: &str) {
        events.push(Event {
            at_ms: epoch.elapsed().as_secs_f64() * 1000.0,
            node: node.to_owned(),
            state: state.to_owned(),
        });
    }

    fn link(&self, node: &str, up: bool) -> io::Result<()> {
        self.ns(node)
            .ip(&["link", "set", "eth0", if up { "up" } else { "down" }])
    }

    fn apply(
        &mut self,
        scenario: Scenario,
        epoch: Instant,
        events: &mut Vec<Event>,
    ) -> io::Result<Applied> {
        let stack = self.stack();
        let master = self.top_holder().unwrap_or_default();
        let plane = self.planes().first().cloned().unwrap_or_default();
        Ok(match scenario {
            Scenario::MasterKill => {
                let node = self.state.node_mut(&master).ok_or_else(no_node)?;
                stack::kill_vip_daemon(stack, node);
                Self::event(events, epoch, &master, "killed");
                Applied::DaemonDown(master)
            }
            Scenario::MasterStop => {
                let node = self.state.node_mut(&master).ok_or_else(no_node)?;
                stack::stop_vip_daemon(stack, node);
                Self::event(events, epoch, &master, "stopped");
                Applied::DaemonDown(master)
            }
            Scenario::MasterRestart => {
                let node = self.state.node_mut(&master).ok_or_else(no_node)?;
                stack::stop_vip_daemon(stack, node);
                Self::event(events, epoch, &master, "stopped");
                self.restart_vip_daemon(&master)?;
                Self::event(events, epoch, &master, "running");
                Applied::None
            }
            Scenario::MasterLinkDown => {
                self.link(&master, false)?;
                Self::event(events, epoch, &master, "link down");
                Applied::LinksDown(vec![master])
            }
            Scenario::MasterWgKill => {
                let node = self.state.node_mut(&master).ok_or_else(no_node)?;
                let pid = node.pids.remove(stack::WIREGUARD_GO).unwrap_or(0);
                if !stack::signal_in(pid, &node.namespace, Signal::SIGKILL) {
                    return Err(io::Error::other(format!(
                        "the wireguard-go of {master} is not running"
                    )));
                }
                Self::event(events, epoch, &master, "wireguard killed");
                Applied::WireguardDown(master)
            }
            Scenario::PlaneUnhealthy => {
                let node = self.state.node(&plane).ok_or_else(no_node)?;
                let pid = node.pids.get("apiserver").copied().unwrap_or(0);
                if !stack::signal_in(pid, &node.namespace, Signal::SIGUSR1) {
                    return Err(io::Error::other(format!(
                        "the apiserver of {plane} is not running"
                    )));
                }
                Self::event(events, epoch, &plane, "unhealthy");
                Applied::Unhealthy(plane)
            }
            Scenario::PlaneKill => {
                let node = self.state.node_mut(&plane).ok_or_else(no_node)?;
                if let Some(pid) = node.pids.remove("apiserver") {
                    stack::signal_in(pid, &node.namespace, Signal::SIGKILL);
                }
                Self::event(events, epoch, &plane, "killed");
                Applied::ApiserverDown(plane)
            }
            Scenario::PlaneLinkDown => {
                self.link(&plane, false)?;
                Self::event(events, epoch, &plane, "link down");
                Applied::LinksDown(vec![plane])
            }
            Scenario::PlanesDownButOne => {
                let mut planes = self.planes();
                planes.pop();
                for p in &planes {
                    self.link(p, false)?;
                    Self::event(events, epoch, p, "link down");
                }
                Applied::LinksDown(planes)
            }
            Scenario::ConfigReload => {
                let original = std::fs::read_to_string(self.paths.cluster())?;
                let edited = edited_cluster(&original, &master)?;
                std::fs::write(self.paths.cluster(), edited)?;
                self.reload_all(epoch, events)?;
                Applied::Reloaded(original)
            }
            Scenario::HolderPartition => {
                let other = self.second_holder().ok_or_else(no_node)?;
                // The underlay: on the mesh this cuts the tunnel between them.
                let addr = |n: &str| {
                    self.state
                        .node(n)
                        .map(|n| n.underlay().to_string())
                        .unwrap_or_default()
                };
                for (here, peer) in [(&master, addr(&other)), (&other, addr(&master))] {
                    let ns = self.ns(here);
                    for args in [
                        vec!["add", "table", "inet", PARTITION_TABLE],
                        vec![
                            "add",
                            "chain",
                            "inet",
                            PARTITION_TABLE,
                            "input",
                            "{ type filter hook input priority -10 ; }",
                        ],
                        vec![
                            "add",
                            "rule",
                            "inet",
                            PARTITION_TABLE,
                            "input",
                            "ip",
                            "saddr",
                            &peer,
                            "drop",
                        ],
                    ] {
                        run_ok(&ns, "nft", &args)?;
                    }
                    Self::event(events, epoch, here, "partitioned");
                }
                Applied::Partition(master, other)
            }
        })
    }

    /// Starts a holder's VIP daemon once the old one is gone.
    fn restart_vip_daemon(&mut self, holder: &str) -> io::Result<()> {
        let stack = self.stack();
        let paths = self.paths.clone();
        let limit = self.exit_limit();
        let node = self.state.node_mut(holder).ok_or_else(no_node)?;
        if !stack::wait_vip_daemon_gone(stack, node, limit) {
            return Err(io::Error::other(format!(
                "the {} of {holder} did not exit in {} s",
                stack::vip_daemon(stack),
                limit.as_secs()
            )));
        }
        stack::start_vip_daemon(&paths, stack, node)
    }

    fn heal(
        &mut self,
        applied: Applied,
        epoch: Instant,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        match applied {
            Applied::None => {}
            Applied::DaemonDown(holder) => {
                self.restart_vip_daemon(&holder)?;
                Self::event(events, epoch, &holder, "running");
            }
            Applied::LinksDown(nodes) => {
                for node in nodes {
                    self.link(&node, true)?;
                    Self::event(events, epoch, &node, "running");
                }
            }
            Applied::Unhealthy(plane) => {
                let node = self.state.node(&plane).ok_or_else(no_node)?;
                let pid = node.pids.get("apiserver").copied().unwrap_or(0);
                stack::signal_in(pid, &node.namespace, Signal::SIGUSR2);
                Self::event(events, epoch, &plane, "running");
            }
            Applied::ApiserverDown(plane) => {
                let port = self.apiserver_port(&plane);
                let paths = self.paths.clone();
                let node = self.state.node_mut(&plane).ok_or_else(no_node)?;
                stack::start_apiserver(&paths, node, port)?;
                Self::event(events, epoch, &plane, "running");
            }
            Applied::Reloaded(original) => {
                std::fs::write(self.paths.cluster(), original)?;
                self.reload_all(epoch, events)?;
            }
            Applied::WireguardDown(holder) => {
                let paths = self.paths.clone();
                let node = self.state.node_mut(&holder).ok_or_else(no_node)?;
                if !stack::wait_gone(&node.namespace, stack::WIREGUARD_GO, Duration::from_secs(5)) {
                    return Err(io::Error::other(format!(
                        "the wireguard-go of {holder} did not exit"
                    )));
                }
                let plain = paths.mesh().join(format!("{holder}.wg"));
                stack::start_mesh(&paths, node, &plain)?;
                Self::event(events, epoch, &holder, "running");
            }
            Applied::Partition(a, b) => {
                for here in [&a, &b] {
                    let _ = run_ok(
                        &self.ns(here),
                        "nft",
                        &["delete", "table", "inet", PARTITION_TABLE],
                    );
                    Self::event(events, epoch, here, "running");
                }
            }
        }
        Ok(())
    }

    /// Reloads every daemon of the stack, one node after the other (as an
    /// operator's `systemctl reload` loop would).
    fn reload_all(&mut self, epoch: Instant, events: &mut Vec<Event>) -> io::Result<()> {
        let stack = self.stack();
        let names: Vec<String> = self.state.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            let paths = self.paths.clone();
            let node = self.state.node_mut(&name).ok_or_else(no_node)?;
            let reloaded = match stack {
                Stack::Vipd => {
                    if !node.pids.contains_key("vipd") {
                        continue;
                    }
                    let out = std::process::Command::new(&paths.vipd)
                        .args(["reload", "--socket"])
                        .arg(paths.socket(&name))
                        .output()?;
                    if !out.status.success() {
                        return Err(io::Error::other(format!(
                            "vipd reload on {name}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        )));
                    }
                    true
                }
                Stack::Classic => stack::reload_classic(&paths, node)?,
            };
            if reloaded {
                Self::event(events, epoch, &name, "reloaded");
            }
        }
        Ok(())
    }

    fn apiserver_port(&self, plane: &str) -> u16 {
        self.spec
            .node(plane)
            .map(|n| self.spec.plane_ports(n).apiserver_port.get())
            .unwrap_or(6443)
    }

    /// Undoes whatever a scenario left (an interrupted drill): links up,
    /// partitions removed, apiservers healthy. Best effort, for `down` and
    /// Ctrl-C.
    pub fn unwind(&mut self) {
        for node in self.state.nodes.clone() {
            let ns = Netns::existing(&node.namespace);
            let _ = ns.ip(&["link", "set", "eth0", "up"]);
            let _ = run_ok(&ns, "nft", &["delete", "table", "inet", PARTITION_TABLE]);
            if let Some(&pid) = node.pids.get("apiserver") {
                stack::signal_in(pid, &node.namespace, Signal::SIGUSR2);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        scenario: Scenario,
        fault_ms: f64,
        heal_ms: f64,
        end_ms: f64,
        log: ClientLog,
        holders: Vec<(String, Spans)>,
        events: Vec<Event>,
        mesh: Option<(MeshSample, MeshSample)>,
    ) -> ScenarioResult {
        let master = self.top_holder().unwrap_or_default();
        let victim_plane = self.planes().first().cloned().unwrap_or_default();
        let mut checks = Vec::new();
        let mut check =
            |what: String, ok: bool, detail: String| checks.push(Check { what, ok, detail });
        let at = |t: f64| holders_at(&holders, t);
        let window = |from: f64, to: f64| -> Vec<&Attempt> {
            log.attempts
                .iter()
                .filter(|a| a.at_ms >= from && a.at_ms < to)
                .collect()
        };
        let served = |from: f64, to: f64| served_in(&log.attempts, from, to);
        // Late in a phase: its last 1.5 s (judged after the client stopped,
        // which waits for every attempt up to its timeout).
        let late_fault = (heal_ms - 1500.0).max(fault_ms);
        let late_end = (end_ms - 1500.0).max(heal_ms);
        let takeover_ms = holders
            .iter()
            .filter(|(h, _)| *h != master)
            .flat_map(|(_, spans)| spans.iter())
            .filter(|(_, to)| *to > fault_ms)
            .map(|(from, _)| from.max(fault_ms) - fault_ms)
            .min_by(f64::total_cmp);
        let converge_ms = converged_since(&holders, heal_ms, end_ms).map(|t| t - heal_ms);
        let at_heal = at(heal_ms - 1.0);
        let at_end = at(end_ms - 1.0);
        let on_mesh = mesh.is_some();
        match scenario {
            Scenario::MasterKill
            | Scenario::MasterStop
            | Scenario::MasterLinkDown
            | Scenario::MasterWgKill => {
                let others: Vec<&String> = at_heal.iter().filter(|h| **h != master).collect();
                check(
                    "another holder took the VIP".into(),
                    others.len() == 1,
                    format!("VIP on {at_heal:?} before the heal"),
                );
                if let (Some((before, _)), [new]) = (&mesh, others.as_slice()) {
                    let (ok, detail) = routed_to(&before.routes, new, &[&master, new]);
                    check(
                        format!("every node routes the VIP to {new} during the fault"),
                        ok,
                        detail,
                    );
                }
                // A cut-off master keeping the VIP on its own wg99 is no
                // split on the mesh: nobody routes to it (judged above).
                let split_matters = !(on_mesh && scenario == Scenario::MasterLinkDown);
                if !matches!(scenario, Scenario::MasterKill | Scenario::MasterWgKill)
                    && split_matters
                {
                    check(
                        "exactly one holder during the fault".into(),
                        at_heal.len() == 1,
                        format!("VIP on {at_heal:?}"),
                    );
                }
                let (ok, detail) = served(late_fault, heal_ms);
                check("client served during the fault".into(), ok, detail);
            }
            Scenario::MasterRestart | Scenario::HolderPartition => {}
            Scenario::ConfigReload => {
                let failed = window(fault_ms - 1.0, end_ms)
                    .iter()
                    .filter(|a| !a.ok)
                    .count();
                check(
                    "no request failed across both reloads".into(),
                    failed == 0,
                    format!("{failed} failed"),
                );
                let lost = log.streams.iter().filter(|s| s.lost_ms.is_some()).count();
                check(
                    "no long-lived stream lost".into(),
                    lost == 0,
                    format!("{lost} lost"),
                );
                check(
                    format!("{master} stayed master through both reloads"),
                    holders
                        .iter()
                        .filter(|(h, _)| *h != master)
                        .all(|(_, spans)| spans.iter().all(|(_, to)| *to <= fault_ms)),
                    format!("VIP on {at_heal:?} before the heal"),
                );
            }
            Scenario::PlaneUnhealthy
            | Scenario::PlaneKill
            | Scenario::PlaneLinkDown
            | Scenario::PlanesDownButOne => {
                let victims: Vec<String> = if scenario == Scenario::PlanesDownButOne {
                    let mut p = self.planes();
                    p.pop();
                    p
                } else {
                    vec![victim_plane.clone()]
                };
                // Answered before the heal: a connect started during the
                // fault may complete after it (a SYN retransmitted then).
                let late = window(late_fault, heal_ms);
                let from_victims = late
                    .iter()
                    .filter(|a| a.at_ms + a.took_ms < heal_ms)
                    .filter(|a| a.plane.as_ref().is_some_and(|p| victims.contains(p)))
                    .count();
                check(
                    format!("{} out of rotation", victims.join(", ")),
                    from_victims == 0,
                    format!("{from_victims} late requests answered by them"),
                );
                let (ok, detail) = served(late_fault, heal_ms);
                check("client served during the fault".into(), ok, detail);
                let late = window(late_end, end_ms);
                let back = victims
                    .iter()
                    .filter(|v| late.iter().any(|a| a.ok && a.plane.as_ref() == Some(v)))
                    .count();
                check(
                    "back in rotation after the heal".into(),
                    back == victims.len(),
                    format!("{back} of {} answered again", victims.len()),
                );
                {
                    // A stream is "to" the apiserver that serves it; the
                    // plane proxies prefer their own apiserver, so a stream
                    // through a dead plane's proxy is to that plane.
                    let lost_elsewhere = log
                        .streams
                        .iter()
                        .filter(|s| s.lost_ms.is_some())
                        .filter(|s| s.plane.as_ref().is_some_and(|p| !victims.contains(p)))
                        .count();
                    check(
                        "streams to the other planes survive".into(),
                        lost_elsewhere == 0,
                        format!("{lost_elsewhere} lost"),
                    );
                }
            }
        }
        check(
            format!("exactly one VIP holder at the end: {master}"),
            at_end == [master.clone()],
            format!("VIP on {at_end:?}"),
        );
        if let Some((before, end)) = &mesh {
            let (ok, detail) = routed_to(&end.routes, &master, &[&master]);
            check(
                format!("every node routes the VIP to {master} at the end"),
                ok,
                detail,
            );
            let doubled: Vec<&String> = [&before.routes, &end.routes]
                .iter()
                .flat_map(|r| r.iter())
                .filter(|(_, holders)| holders.len() > 1)
                .map(|(node, _)| node)
                .collect();
            check(
                "the VIP never on two peers of a device".into(),
                doubled.is_empty(),
                format!("on two peers: {doubled:?}"),
            );
        }
        if scenario == Scenario::HolderPartition {
            check(
                "one master again after the heal".into(),
                converge_ms.is_some(),
                match converge_ms {
                    Some(ms) => format!("after {ms:.0} ms"),
                    None => "never".into(),
                },
            );
        }
        let (ok, detail) = served(late_end, end_ms);
        check("client served at the end".into(), ok, detail);

        let fail_spans = outage(&log.attempts, fault_ms - 2000.0, heal_ms);
        let heal_spans = outage(&log.attempts, heal_ms, end_ms);
        let failed = log.attempts.iter().filter(|a| !a.ok).count();
        let failed_connects = log
            .attempts
            .iter()
            .filter(|a| !a.ok && a.error.as_deref().is_some_and(|e| e.starts_with("connect")))
            .count();
        let slow_connects = log.attempts.iter().filter(|a| a.ok && a.slow()).count();
        let failed_after_heal = log
            .attempts
            .iter()
            .filter(|a| !a.ok && a.at_ms >= heal_ms)
            .count();
        let streams = log.streams.iter().filter(|s| s.plane.is_some()).count();
        let streams_lost = log.streams.iter().filter(|s| s.lost_ms.is_some()).count();
        let passed = checks.iter().all(|c| c.ok);
        let mut failures = BTreeMap::new();
        for a in log.attempts.iter().filter(|a| !a.ok) {
            let error = a.error.clone().unwrap_or_else(|| "failed".to_owned());
            *failures.entry(error).or_default() += 1;
        }
        ScenarioResult {
            stack: self.stack(),
            scenario,
            description: scenario.describe().to_owned(),
            skipped: None,
            fault_ms,
            heal_ms,
            end_ms,
            takeover_ms,
            converge_ms,
            outage_ms: fail_spans,
            heal_outage_ms: heal_spans,
            disrupted_ms: disrupted(&log.attempts, fault_ms - 2000.0, heal_ms),
            requests: log.attempts.len(),
            failed,
            failed_connects,
            slow_connects,
            failed_after_heal,
            streams,
            streams_lost,
            repoint_ms: mesh
                .as_ref()
                .map(|(before, end)| {
                    let mut all = before.repoints.clone();
                    all.extend(end.repoints.clone());
                    all.into_values().collect()
                })
                .unwrap_or_default(),
            routes: mesh.map(|(before, end)| [before.routes, end.routes]),
            failures,
            checks,
            passed,
            holders,
            planes: self.planes(),
            events,
            requests_timeline: log
                .attempts
                .iter()
                .map(|a| (a.at_ms, a.ok, a.slow()))
                .collect(),
            log,
        }
    }
}

/// The lab's cluster file with what a reload should change in place: the
/// master's priority one higher, the proxies' connect timeout and idle
/// timeout, the planes' health-check interval.
fn edited_cluster(original: &str, master: &str) -> io::Result<String> {
    let mut table: toml::Table = original
        .parse()
        .map_err(|e| io::Error::other(format!("the lab's cluster file: {e}")))?;
    let proxy = table
        .entry("proxy")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(proxy) = proxy.as_table_mut() {
        proxy.insert("connect_timeout".into(), "900ms".into());
        proxy.insert("idle_timeout".into(), "2h".into());
    }
    if let Some(nodes) = table.get_mut("nodes").and_then(|n| n.as_array_mut()) {
        for node in nodes.iter_mut().filter_map(|n| n.as_table_mut()) {
            if node.get("name").and_then(|n| n.as_str()) == Some(master)
                && let Some(priority) = node.get("priority").and_then(|p| p.as_integer())
            {
                node.insert("priority".into(), (priority + 1).into());
            }
        }
    }
    toml::to_string(&table).map_err(|e| io::Error::other(e.to_string()))
}

/// Whether every node of `routes` but `except` routes the VIP to `holder`
/// alone, with the ones that do not.
fn routed_to(
    routes: &BTreeMap<String, Vec<String>>,
    holder: &str,
    except: &[&String],
) -> (bool, String) {
    let wrong: Vec<String> = routes
        .iter()
        .filter(|(node, _)| !except.contains(node))
        .filter(|(_, holders)| holders.as_slice() != [holder])
        .map(|(node, holders)| format!("{node} -> {holders:?}"))
        .collect();
    let judged = routes.keys().filter(|n| !except.contains(n)).count();
    if judged == 0 {
        return (false, "no device could be read".into());
    }
    if wrong.is_empty() {
        (true, format!("{judged} nodes"))
    } else {
        (false, wrong.join(", "))
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn no_node() -> io::Error {
    io::Error::other("the lab state misses a node the scenario needs")
}

fn run_ok(ns: &Netns, program: &str, args: &[&str]) -> io::Result<()> {
    let out = ns.run(program, args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {} in {}: {}",
            args.join(" "),
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The holders with the VIP at `t`.
pub fn holders_at(holders: &[(String, Spans)], t: f64) -> Vec<String> {
    holders
        .iter()
        .filter(|(_, spans)| spans.iter().any(|&(from, to)| from <= t && t < to))
        .map(|(h, _)| h.clone())
        .collect()
}

/// The earliest time in `[from, end]` from which exactly one holder (the
/// same one) has the VIP until `end`; None if that never happens.
pub fn converged_since(holders: &[(String, Spans)], from: f64, end: f64) -> Option<f64> {
    let mut points: Vec<f64> = holders
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|&(a, b)| [a, b]))
        .filter(|&t| t > from && t < end)
        .collect();
    points.push(from);
    points.sort_by(f64::total_cmp);
    points.dedup();
    let mut since = None;
    let mut who: Option<Vec<String>> = None;
    for (i, &start) in points.iter().enumerate() {
        let stop = points.get(i + 1).copied().unwrap_or(end);
        let now = holders_at(holders, (start + stop) / 2.0);
        if now.len() == 1 {
            if who.as_ref() != Some(&now) {
                since = Some(start);
                who = Some(now);
            }
        } else {
            since = None;
            who = None;
        }
    }
    since
}

/// The client-observed outage of the requests started in `[from, to)`:
/// each run of failed requests (in start order) lasts from its first
/// failure to the start of the first successful request after it (to `to`
/// if none succeeded); the outage is the sum of the runs. 0 without failures.
pub fn outage(attempts: &[Attempt], from: f64, to: f64) -> f64 {
    let mut total = 0.0;
    let mut run_start: Option<f64> = None;
    for a in attempts.iter().filter(|a| a.at_ms >= from && a.at_ms < to) {
        match (a.served(), run_start) {
            (false, None) => run_start = Some(a.at_ms),
            (true, Some(start)) => {
                total += a.at_ms - start;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        total += to - start;
    }
    total
}

/// How long the requests started in `[from, to)` were disturbed: from the
/// first failure to the first success after the last failure (to `to` if
/// none). Unlike [`outage`] it spans partial failures (some requests fail,
/// others do not) and separate blips. 0 without failures.
pub fn disrupted(attempts: &[Attempt], from: f64, to: f64) -> f64 {
    let inside: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.at_ms >= from && a.at_ms < to)
        .collect();
    let Some(first) = inside.iter().find(|a| !a.served()) else {
        return 0.0;
    };
    let last_fail = inside
        .iter()
        .rev()
        .find(|a| !a.served())
        .map_or(first.at_ms, |a| a.at_ms);
    let recovered = inside
        .iter()
        .find(|a| a.served() && a.at_ms > last_fail)
        .map_or(to, |a| a.at_ms);
    recovered - first.at_ms
}

/// Whether the client was served from `from` to `to` (ms): at least one
/// request answered and none failed or slow, with the counts. Slow counts
/// against: with a 3 s connect timeout a request whose SYN went to a dead
/// plane late in the fault is answered after the heal, which is no service.
pub fn served_in(attempts: &[Attempt], from: f64, to: f64) -> (bool, String) {
    let inside = attempts.iter().filter(|a| a.at_ms >= from && a.at_ms < to);
    let (mut ok, mut slow, mut failed) = (0, 0, 0);
    for a in inside {
        match (a.ok, a.slow()) {
            (true, false) => ok += 1,
            (true, true) => slow += 1,
            (false, _) => failed += 1,
        }
    }
    (
        ok > 0 && failed == 0 && slow == 0,
        format!(
            "{ok} ok, {slow} slow, {failed} failed in the last {:.1} s",
            (to - from) / 1000.0
        ),
    )
}

/// Per-plane answers, for the report.
pub fn answers_by_plane(log: &ClientLog) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for a in &log.attempts {
        if let (true, Some(p)) = (a.ok, &a.plane) {
            *by.entry(p.clone()).or_default() += 1;
        }
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(at_ms: f64, ok: bool) -> Attempt {
        Attempt {
            at_ms,
            took_ms: 1.0,
            connect_ms: Some(0.5),
            ok,
            plane: None,
            error: None,
        }
    }

    #[test]
    fn outage_runs_from_the_first_failure_to_the_recovery() {
        let a = [
            attempt(0.0, true),
            attempt(10.0, false),
            attempt(20.0, true),
            attempt(30.0, false),
            attempt(40.0, true),
        ];
        assert_eq!(outage(&a, 0.0, 100.0), 20.0);
        assert_eq!(outage(&a[..1], 0.0, 100.0), 0.0);
        assert_eq!(outage(&a[..4], 0.0, 100.0), 80.0);
        assert_eq!(disrupted(&a, 0.0, 100.0), 30.0);
        assert_eq!(disrupted(&a[..4], 0.0, 100.0), 90.0);
    }

    #[test]
    fn a_connect_that_needed_a_retransmission_is_a_disruption() {
        let mut slow = attempt(10.0, true);
        slow.connect_ms = Some(1012.0);
        assert!(slow.slow() && !slow.served());
        let a = [attempt(0.0, true), slow, attempt(20.0, true)];
        assert_eq!(outage(&a, 0.0, 100.0), 10.0);
        assert_eq!(disrupted(&a, 0.0, 100.0), 10.0);
        let mut never = attempt(30.0, false);
        never.connect_ms = None;
        assert!(!never.slow() && !never.served());
    }

    #[test]
    fn a_slow_answer_is_no_service() {
        let mut slow = attempt(20.0, true);
        slow.connect_ms = Some(1003.0);
        let fine = [attempt(0.0, true), attempt(10.0, true)];
        assert_eq!(
            served_in(&fine, 0.0, 1500.0),
            (true, "2 ok, 0 slow, 0 failed in the last 1.5 s".to_owned())
        );
        let late = [attempt(0.0, true), slow.clone()];
        assert_eq!(
            served_in(&late, 0.0, 1500.0),
            (false, "1 ok, 1 slow, 0 failed in the last 1.5 s".to_owned())
        );
        assert!(!served_in(&[attempt(0.0, false)], 0.0, 1500.0).0);
        assert!(!served_in(&[], 0.0, 1500.0).0, "nothing answered");
        assert!(served_in(&late, 0.0, 15.0).0, "the slow one is outside");
    }

    #[test]
    fn convergence_needs_one_holder_to_the_end() {
        let holders = vec![
            ("h1".to_owned(), vec![(0.0, 100.0), (150.0, 300.0)]),
            ("h2".to_owned(), vec![(50.0, 160.0)]),
        ];
        assert_eq!(holders_at(&holders, 60.0), vec!["h1", "h2"]);
        assert_eq!(converged_since(&holders, 0.0, 300.0), Some(160.0));
        let split = vec![
            ("h1".to_owned(), vec![(0.0, 300.0)]),
            ("h2".to_owned(), vec![(0.0, 300.0)]),
        ];
        assert_eq!(converged_since(&split, 0.0, 300.0), None);
    }
}
