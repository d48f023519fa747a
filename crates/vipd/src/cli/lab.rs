//! `vipd lab`: a whole HA cluster in network namespaces on this machine,
//! failure drills against it, and the report. `vipd lab` alone runs up,
//! drill, report and down in one go; the steps also run one by one.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::spec::Datapath;
use crate::lab::drill::{Drill, DrillConfig, Scenario, ScenarioResult};
use crate::lab::stack::{self, Paths, Stack};
use crate::lab::state::{self, LabState, NodeState, Phase};
use crate::lab::topology::{self, Counts, Network};
use crate::lab::{pki::LabCa, report};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: Option<LabCommand>,
    #[command(flatten)]
    pub all: AllArgs,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab: namespaces on a bridge, a CA, stand-in apiservers, and the stack on every node.
    ///
    /// Refuses to run over an existing (or half-made) lab in the same
    /// directory: `vipd lab down` first.
    Up(UpArgs),
    /// Run failure scenarios against the lab under load; print the report.
    ///
    /// Exits 1 when a scenario ends in a wrong state.
    Drill(DrillArgs),
    /// Show the lab: its nodes, their processes and who holds the VIP.
    Status(DirArgs),
    /// Remove every namespace, link, process and file the lab made.
    Down(DownArgs),
    /// The stand-in kube-apiserver of one plane (run by `up` inside the plane's namespace).
    ///
    /// SIGUSR1 makes /readyz, /livez and /healthz fail (500), SIGUSR2 heals
    /// them; SIGTERM stops it.
    #[command(hide = true)]
    Apiserver(ApiserverArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DirArgs {
    /// The lab's state directory.
    #[arg(long, value_name = "DIR", default_value = state::DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Keep DIR/logs (the per-node logs); the rest is removed.
    #[arg(long)]
    pub keep_logs: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TopologyArgs {
    /// VIP holders (198.18.0.1, .2, ...; holder-1 has the top priority).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub holders: u8,
    /// Control planes, each with a stand-in kube-apiserver (198.18.0.11, ...).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub planes: u8,
    /// Workers (198.18.0.21, ...); the load client runs on the first.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: u8,
    /// `api.datapath` of the lab's cluster file: `dnat` (holders DNAT to the
    /// plane proxies; examples/lab.toml) or `proxy` (holders proxy to the apiservers).
    #[arg(long, value_enum, default_value_t = DatapathArg::Dnat)]
    pub datapath: DatapathArg,
    /// Build the cluster on a WireGuard mesh over the bridge, as the seed
    /// runs it: wireguard-go on `wg99` in every node (198.19.0.0/24), the VIP
    /// 198.19.0.100 on it, VRRP unicast through the tunnels. Without it the
    /// cluster is on the bridge (198.18.0.0/24).
    #[arg(long, value_enum, value_name = "KIND")]
    pub mesh: Option<MeshArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MeshArg {
    /// Userspace WireGuard (wireguard-go), configured from `vipd render wireguard`.
    Wireguard,
}

impl TopologyArgs {
    fn network(&self) -> Network {
        match self.mesh {
            Some(MeshArg::Wireguard) => Network::Wireguard,
            None => Network::Lan,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatapathArg {
    Dnat,
    Proxy,
}

impl From<DatapathArg> for Datapath {
    fn from(d: DatapathArg) -> Self {
        match d {
            DatapathArg::Dnat => Datapath::Dnat,
            DatapathArg::Proxy => Datapath::Proxy,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// What runs on the nodes: vipd, or keepalived + HAProxy configured by `vipd render`.
    #[arg(long, value_enum, default_value_t = Stack::Vipd)]
    pub stack: Stack,
}

#[derive(Debug, Clone, Args)]
pub struct DrillOptions {
    /// A scenario to run (repeat for several; default: all, in order).
    #[arg(long = "scenario", value_enum, value_name = "NAME")]
    pub scenarios: Vec<Scenario>,
    /// How long each fault lasts before it is healed.
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_duration)]
    pub observe: Duration,
    /// How long after the heal the end state is judged.
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_duration)]
    pub settle: Duration,
    /// A new client connection this often.
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = parse_duration)]
    pub every: Duration,
    /// Long-lived streams the client holds open through each scenario.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub streams: usize,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Where the SVG timeline goes.
    #[arg(long, value_name = "FILE", default_value = "vipd-lab-report.svg")]
    pub svg: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub drill: DrillOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StackChoice {
    Vipd,
    Classic,
    /// vipd, then classic, in one report.
    Both,
}

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// Which stack(s) to drill; `both` runs vipd then classic and reports them
    /// side by side (then only vipd's end states decide the exit status).
    #[arg(long, value_enum, default_value_t = StackChoice::Vipd)]
    pub stack: StackChoice,
    #[command(flatten)]
    pub drill: DrillOptions,
    /// Leave the (last) lab up afterwards, for a look around; `vipd lab down` removes it.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ApiserverArgs {
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Named in the X-Lab-Node header of every response.
    #[arg(long)]
    pub name: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::values::parse_interval(text)
}

pub fn run(args: &LabArgs) -> ExitCode {
    match &args.command {
        Some(LabCommand::Apiserver(a)) => apiserver(a),
        Some(LabCommand::Up(a)) => {
            if !root() {
                return ExitCode::FAILURE;
            }
            crate::lab::catch_interrupts();
            match up(
                &a.dir.dir,
                counts(&a.topology),
                a.topology.datapath.into(),
                a.topology.network(),
                a.stack,
            ) {
                Ok(state) => {
                    println!(
                        "lab {} is up ({} stack, {} nodes, {}); `vipd lab drill` to drill it, `vipd lab down` to remove it",
                        state.run_id,
                        state.stack.as_str(),
                        state.nodes.len(),
                        state.network.describe()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Some(LabCommand::Drill(a)) => {
            if !root() {
                return ExitCode::FAILURE;
            }
            crate::lab::catch_interrupts();
            match drill(&a.dir.dir, &a.drill) {
                Ok(results) => {
                    let stacks: Vec<Stack> = results.iter().map(|r| r.stack).collect();
                    finish(&results, &a.drill, &stacks)
                }
                Err(e) => fail(&e),
            }
        }
        Some(LabCommand::Status(a)) => match status(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Some(LabCommand::Down(a)) => {
            if !root() {
                return ExitCode::FAILURE;
            }
            match down(&a.dir.dir, a.keep_logs) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    println!("no lab in {}", a.dir.dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        None => all(&args.all),
    }
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("error: vipd lab needs root (network namespaces): run it with sudo");
    false
}

fn fail(e: &io::Error) -> ExitCode {
    eprintln!("error: {e}");
    if e.kind() == io::ErrorKind::Interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    }
}

fn counts(t: &TopologyArgs) -> Counts {
    Counts {
        holders: t.holders,
        planes: t.planes,
        workers: t.workers,
    }
}

/// A progress line on stderr, with the UTC time.
pub fn progress(text: &str) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eprintln!(
        "{:02}:{:02}:{:02} {text}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    );
}

fn vipd_binary() -> io::Result<PathBuf> {
    std::env::current_exe()
}

/// DER -> PEM.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn interrupted_error() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted")
}

/// Fails when `tool` cannot be started.
fn need_tool(tool: &str, arg: &str, why: &str) -> io::Result<()> {
    let found = std::process::Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if found {
        Ok(())
    } else {
        Err(io::Error::other(format!("{why} needs {tool}")))
    }
}

/// `vipd lab up`.
pub fn up(
    dir: &Path,
    counts: Counts,
    datapath: Datapath,
    network: Network,
    stack: Stack,
) -> io::Result<LabState> {
    counts.validate().map_err(io::Error::other)?;
    if let Some(existing) = LabState::load(dir)? {
        return Err(io::Error::other(format!(
            "a lab ({}, {}) is already in {}: run `vipd lab down --dir {}` first",
            existing.run_id,
            match existing.phase {
                Phase::Building => "half-made",
                Phase::Up => "up",
            },
            dir.display(),
            dir.display()
        )));
    }
    if stack == Stack::Classic {
        for tool in ["keepalived", "haproxy"] {
            need_tool(
                tool,
                "-v",
                "--stack classic (apt-get install keepalived haproxy)",
            )?;
        }
    }
    if network == Network::Wireguard {
        let why = "--mesh wireguard (apt-get install --no-install-recommends wireguard-go wireguard-tools)";
        need_tool("wireguard-go", "--version", why)?;
        need_tool("wg", "--version", why)?;
        need_tool("wg-quick", "-h", why)?;
        need_tool("nsenter", "--version", "--mesh wireguard (util-linux)")?;
    }
    let created_dir = !dir.exists();
    std::fs::create_dir_all(dir)?;
    let run_id = state::new_run_id();
    let mut state = LabState {
        run_id: run_id.clone(),
        phase: Phase::Building,
        stack,
        network,
        created_dir,
        namespaces: Vec::new(),
        nodes: topology::nodes(counts, network)
            .into_iter()
            .map(|n| NodeState {
                name: n.name,
                roles: vec![n.role.to_owned()],
                namespace: String::new(),
                address: std::net::IpAddr::V4(n.address),
                underlay: (n.underlay != n.address).then_some(std::net::IpAddr::V4(n.underlay)),
                pids: Default::default(),
            })
            .collect(),
        files: [
            "cluster.toml",
            "ca.crt",
            "pki",
            "logs",
            "classic",
            "run",
            "secrets.toml",
            "mesh",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    };
    state.save(dir)?;
    progress(&format!(
        "lab {run_id}: {} holders, {} planes, {} workers, {} stack, {}, in {}",
        counts.holders,
        counts.planes,
        counts.workers,
        stack.as_str(),
        network.describe(),
        dir.display()
    ));
    match build(dir, &mut state, counts, datapath) {
        Ok(()) => {
            state.phase = Phase::Up;
            state.save(dir)?;
            Ok(state)
        }
        Err(e) => {
            progress(&format!(
                "lab {run_id}: up failed ({e}); removing what it made"
            ));
            let _ = state.save(dir);
            let _ = down(dir, true);
            Err(e)
        }
    }
}

fn build(dir: &Path, state: &mut LabState, counts: Counts, datapath: Datapath) -> io::Result<()> {
    for sub in ["logs", "pki", "classic"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    // The CA and one certificate per plane: `kubernetes`, its address and the VIP.
    let ca = LabCa::new("vipd lab CA").map_err(io::Error::other)?;
    let ca_file = dir.join("ca.crt");
    state::write_atomic(&ca_file, ca.certificate_pem().as_bytes())?;
    let paths = Paths {
        dir: dir.to_owned(),
        vipd: vipd_binary()?,
        network: state.network,
    };
    let keys = match state.network {
        Network::Lan => None,
        Network::Wireguard => {
            let keys = state
                .nodes
                .iter()
                .map(|_| crate::lab::mesh::NodeKeys::generate())
                .collect::<Result<Vec<_>, _>>()
                .map_err(io::Error::other)?;
            let secrets = paths.secrets();
            std::fs::write(&secrets, "")?;
            std::fs::set_permissions(
                &secrets,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )?;
            std::fs::write(&secrets, topology::secrets_text(counts, &keys))?;
            Some(keys)
        }
    };
    let text = topology::cluster_text(counts, datapath, &ca_file, keys.as_deref())
        .map_err(io::Error::other)?;
    let cluster = dir.join("cluster.toml");
    state::write_atomic(&cluster, text.as_bytes())?;
    let secrets = keys.as_ref().map(|_| paths.secrets());
    let checked = crate::config::check_file(&cluster, secrets.as_deref())?;
    let Some(spec) = checked.spec.as_ref().filter(|_| checked.errors() == 0) else {
        return Err(io::Error::other(format!(
            "the generated cluster file does not pass `vipd check`:\n{}",
            checked.render()
        )));
    };
    for node in state.nodes.iter().filter(|n| n.has_role("plane")) {
        let certificate = ca
            .server_certificate(&["kubernetes"], &[node.address, spec.vip.address])
            .map_err(io::Error::other)?;
        let pki = dir.join("pki");
        state::write_atomic(
            &pki.join(format!("{}.crt", node.name)),
            pem("CERTIFICATE", &certificate.certificate).as_bytes(),
        )?;
        state::write_atomic(
            &pki.join(format!("{}.key", node.name)),
            pem("PRIVATE KEY", &certificate.key_pkcs8_der).as_bytes(),
        )?;
    }
    if crate::lab::interrupted() {
        return Err(interrupted_error());
    }
    // The network. The run id goes into the state first, so a crash here
    // still leaves `down` the names to remove.
    state.namespaces = topology::build(&state.run_id, &mut state.nodes)?;
    state.save(dir)?;
    progress(&format!(
        "lab {}: {} namespaces on bridge br0",
        state.run_id,
        state.namespaces.len()
    ));
    if state.network == Network::Wireguard {
        for i in 0..state.nodes.len() {
            let plain = crate::lab::mesh::render(
                &paths.vipd,
                &cluster,
                &paths.secrets(),
                &state.nodes[i].name,
                &paths.mesh(),
            )?;
            let started = stack::start_mesh(&paths, &mut state.nodes[i], &plain);
            // The pids first: `down` must find them also when this failed.
            state.save(dir)?;
            started?;
        }
        progress(&format!(
            "lab {}: wireguard-go on {} in every node, configured from `vipd render wireguard`",
            state.run_id,
            crate::lab::mesh::INTERFACE
        ));
    }
    if state.stack == Stack::Classic {
        write_classic(dir, spec, state)?;
    }
    for node in state.nodes.iter_mut().filter(|n| n.has_role("plane")) {
        let port = spec
            .node(&node.name)
            .map(|n| spec.plane_ports(n).apiserver_port.get())
            .unwrap_or(6443);
        stack::start_apiserver(&paths, node, port)?;
    }
    // Planes first (their proxies), then holders, top priority first, then
    // the workers (on the mesh they follow the VIP).
    let stack_kind = state.stack;
    for role in ["plane", "vip", "worker"] {
        for node in state.nodes.iter_mut().filter(|n| n.has_role(role)) {
            stack::start_node(&paths, stack_kind, node)?;
        }
    }
    state.save(dir)?;
    std::thread::sleep(Duration::from_millis(300));
    for node in &state.nodes {
        for (what, &pid) in &node.pids {
            if !stack::alive_in(pid, &node.namespace) {
                let log = stack::log_path(dir, &node.name, what);
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(8).collect();
                return Err(io::Error::other(format!(
                    "{what} on {} exited at start; {}:\n{}",
                    node.name,
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
        }
    }
    progress(&format!(
        "lab {}: processes started; waiting for the VIP and the planes",
        state.run_id
    ));
    let mut drill = Drill::new(
        dir,
        state.clone(),
        spec.clone(),
        paths.vipd.clone(),
        DrillConfig::default(),
        Box::new(|_| {}),
    );
    drill.wait_baseline(Duration::from_secs(60))?;
    progress(&format!(
        "lab {}: ready: VIP {} on {}, every apiserver answering",
        state.run_id,
        spec.vip.address,
        drill.current_holders().join(", ")
    ));
    Ok(())
}

/// Writes the classic stack's configs (from `vipd render`), and loads the
/// static DNAT table on the holders with the `dnat` datapath.
fn write_classic(
    dir: &Path,
    spec: &crate::config::ClusterSpec,
    state: &LabState,
) -> io::Result<()> {
    let classic = dir.join("classic");
    for node in &state.nodes {
        let Some(plan) = spec.plan(&node.name) else {
            continue;
        };
        if plan.vrrp.is_some() {
            let text = crate::render::keepalived::render(spec, &plan, None, false)
                .map_err(io::Error::other)?;
            state::write_atomic(
                &classic.join(format!("{}.keepalived.conf", node.name)),
                text.as_bytes(),
            )?;
        }
        if !plan.frontends.is_empty() {
            let text = crate::render::haproxy::render(spec, &plan).map_err(io::Error::other)?;
            state::write_atomic(
                &classic.join(format!("{}.haproxy.cfg", node.name)),
                text.as_bytes(),
            )?;
        }
        if let Some(dnat) = &plan.dnat {
            let text =
                crate::nftables::ruleset::replace_batch(dnat, &vec![true; dnat.targets.len()])
                    .map_err(io::Error::other)?;
            let file = classic.join(format!("{}.nft", node.name));
            state::write_atomic(&file, text.as_bytes())?;
            let ns = crate::lab::netns::Netns::existing(&node.namespace);
            let out = ns.run("nft", &["-f", &file.display().to_string()])?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "nft -f {} in {}: {}",
                    file.display(),
                    node.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    Ok(())
}

/// `vipd lab down`. Returns false when there was no lab.
pub fn down(dir: &Path, keep_logs: bool) -> io::Result<bool> {
    let Some(state) = LabState::load(dir)? else {
        return Ok(false);
    };
    stack::kill_all(&state);
    // Every namespace of this run, also one `up` made but did not record.
    let prefix = format!("{}-", state.run_id);
    let mut namespaces = state.namespaces.clone();
    for ns in crate::lab::netns::list_namespaces()? {
        if ns.starts_with(&prefix) && !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    let mut left = Vec::new();
    for ns in namespaces.iter().rev() {
        for pid in stack::pids_in(ns) {
            stack::signal_in(pid, ns, nix::sys::signal::Signal::SIGKILL);
        }
        let out = std::process::Command::new("ip")
            .args(["netns", "del", ns])
            .output()?;
        if !out.status.success() && crate::lab::netns::list_namespaces()?.contains(ns) {
            left.push(format!(
                "{ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    stack::reap();
    if !left.is_empty() {
        return Err(io::Error::other(format!(
            "could not remove namespaces (state kept in {}): {}",
            dir.display(),
            left.join("; ")
        )));
    }
    for file in &state.files {
        if keep_logs && file == Path::new("logs") {
            continue;
        }
        let path = dir.join(file);
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
    std::fs::remove_file(LabState::path(dir))?;
    if state.created_dir && !keep_logs {
        // Only if empty: anything else there is not ours.
        let _ = std::fs::remove_dir(dir);
    }
    progress(&format!(
        "lab {}: removed {} namespaces, its processes and files",
        state.run_id,
        namespaces.len()
    ));
    Ok(true)
}

fn status(args: &DirArgs) -> io::Result<()> {
    let Some(state) = LabState::load(&args.dir)? else {
        println!("no lab in {}", args.dir.display());
        return Ok(());
    };
    println!(
        "lab {} ({:?}), {} stack, {}, in {}",
        state.run_id,
        state.phase,
        state.stack.as_str(),
        state.network.describe(),
        args.dir.display()
    );
    let vip = lab_spec(&args.dir, &state)
        .ok()
        .map(|s| s.vip.address.to_string());
    for node in &state.nodes {
        let ns = crate::lab::netns::Netns::existing(&node.namespace);
        let holds = vip.as_ref().is_some_and(|vip| {
            ns.run("ip", &["-o", "addr", "show"])
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .any(|w| w.split('/').next() == Some(vip.as_str()))
                })
                .unwrap_or(false)
        });
        let processes: Vec<String> = node
            .pids
            .iter()
            .map(|(what, &pid)| {
                let alive = stack::alive_in(pid, &node.namespace);
                format!("{what} {pid} {}", if alive { "running" } else { "GONE" })
            })
            .collect();
        println!(
            "  {:<10} {:<12} {:<15} {}{}",
            node.name,
            node.roles.join(","),
            node.address,
            processes.join(", "),
            if holds { "  [holds the VIP]" } else { "" }
        );
    }
    println!("  logs: {}", args.dir.join("logs").display());
    Ok(())
}

/// The lab's checked cluster file (with its secrets on the mesh).
fn lab_spec(dir: &Path, state: &LabState) -> io::Result<crate::config::ClusterSpec> {
    let secrets = (state.network == Network::Wireguard).then(|| dir.join("secrets.toml"));
    let checked = crate::config::check_file(&dir.join("cluster.toml"), secrets.as_deref())?;
    checked
        .spec
        .clone()
        .filter(|_| checked.errors() == 0)
        .ok_or_else(|| io::Error::other(checked.render()))
}

fn drill_config(options: &DrillOptions, network: Network) -> DrillConfig {
    DrillConfig {
        scenarios: if options.scenarios.is_empty() {
            Scenario::all_on(network)
        } else {
            options.scenarios.clone()
        },
        observe: options.observe,
        settle: options.settle,
        every: options.every,
        streams: options.streams,
        ..DrillConfig::default()
    }
}

/// `vipd lab drill`.
pub fn drill(dir: &Path, options: &DrillOptions) -> io::Result<Vec<ScenarioResult>> {
    let Some(state) = LabState::load(dir)? else {
        return Err(io::Error::other(format!(
            "no lab in {}: `vipd lab up` first",
            dir.display()
        )));
    };
    if state.phase != Phase::Up {
        return Err(io::Error::other(format!(
            "the lab in {} is half-made: `vipd lab down` and `up` again",
            dir.display()
        )));
    }
    let spec = lab_spec(dir, &state)?;
    let network = state.network;
    let mut drill = Drill::new(
        dir,
        state,
        spec,
        vipd_binary()?,
        drill_config(options, network),
        Box::new(progress),
    );
    let results = drill.run();
    if crate::lab::interrupted() {
        drill.unwind();
    }
    drill.state.save(dir)?;
    let results = results?;
    if crate::lab::interrupted() {
        return Err(interrupted_error());
    }
    Ok(results)
}

/// Prints the report, writes the SVG; exit 1 if a scenario of a judged
/// stack ended in a wrong state. With `--stack both` only vipd is judged:
/// the classic stack is the reference, its wrong end states are findings.
fn finish(results: &[ScenarioResult], options: &DrillOptions, judged: &[Stack]) -> ExitCode {
    let svg = report::svg(results);
    let svg_ok = match state::write_atomic(&options.svg, svg.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", options.svg.display());
            false
        }
    };
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(results)).unwrap_or_default()
        );
    } else {
        print!("{}", report::table(results));
    }
    if svg_ok {
        progress(&format!("timeline: {}", options.svg.display()));
    }
    let passed = results
        .iter()
        .filter(|r| judged.contains(&r.stack))
        .all(|r| r.passed);
    if passed && svg_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `vipd lab`: up, drill, down for each stack, then the report.
fn all(args: &AllArgs) -> ExitCode {
    if !root() {
        return ExitCode::FAILURE;
    }
    crate::lab::catch_interrupts();
    let stacks: Vec<Stack> = match args.stack {
        StackChoice::Vipd => vec![Stack::Vipd],
        StackChoice::Classic => vec![Stack::Classic],
        StackChoice::Both => vec![Stack::Vipd, Stack::Classic],
    };
    let dir = &args.dir.dir;
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut failure = None;
    for (i, stack) in stacks.iter().enumerate() {
        let last = i + 1 == stacks.len();
        if let Err(e) = up(
            dir,
            counts(&args.topology),
            args.topology.datapath.into(),
            args.topology.network(),
            *stack,
        ) {
            failure = Some(e);
            break;
        }
        let outcome = drill(dir, &args.drill);
        if (!(args.keep && last) || crate::lab::interrupted())
            && let Err(e) = down(dir, false)
        {
            eprintln!("error: {e}");
        }
        match outcome {
            Ok(r) => {
                if let Ok(mut all) = results.lock() {
                    all.extend(r);
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failure {
        // What was measured before the failure is still reported.
        let partial = results.lock().map(|r| r.clone()).unwrap_or_default();
        if !partial.is_empty() {
            let _ = finish(&partial, &args.drill, &[]);
        }
        return fail(&e);
    }
    let results = results.lock().map(|r| r.clone()).unwrap_or_default();
    let judged = match args.stack {
        StackChoice::Both => vec![Stack::Vipd],
        _ => stacks,
    };
    finish(&results, &args.drill, &judged)
}

/// `vipd lab apiserver`: the stand-in, until SIGTERM.
fn apiserver(args: &ApiserverArgs) -> ExitCode {
    use crate::lab::apiserver::{Behaviour, StandIn};
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let tls = (|| -> Result<Arc<rustls::ServerConfig>, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&args.cert)
            .map_err(|e| format!("{}: {e}", args.cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", args.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&args.key)
            .map_err(|e| format!("{}: {e}", args.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    })();
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let server = match StandIn::serve_named(listener, tls, Some(args.name.clone())) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (Ok(mut usr1), Ok(mut usr2), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("error: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        progress(&format!("stand-in apiserver {} on https://{}", args.name, args.listen));
        loop {
            tokio::select! {
                _ = usr1.recv() => { server.set(Behaviour::Unhealthy); progress("unhealthy (SIGUSR1)"); }
                _ = usr2.recv() => { server.set(Behaviour::Healthy); progress("healthy (SIGUSR2)"); }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        progress("stopping");
        ExitCode::SUCCESS
    })
}
