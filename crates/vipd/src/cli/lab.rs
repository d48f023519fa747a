//! `vipd lab`: a whole HA cluster in network namespaces on this machine,
//! failure drills against it, and the report. `vipd lab` alone runs up,
//! drill, report and down in one go; the steps also run one by one.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::spec::Datapath;
use crate::lab::drill::{DrillConfig, Scenario, ScenarioResult};
use crate::lab::lifecycle::{down, drill, progress, status, up};
use crate::lab::report;
use crate::lab::stack::Stack;
use crate::lab::state::{self, Network};
use crate::lab::topology::Counts;

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
            match drill(&a.dir.dir, |network| drill_config(&a.drill, network)) {
                Ok(results) => {
                    let stacks: Vec<Stack> = results.iter().map(|r| r.stack).collect();
                    finish(&results, &a.drill, &stacks)
                }
                Err(e) => fail(&e),
            }
        }
        Some(LabCommand::Status(a)) => match status(&a.dir) {
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
        let outcome = drill(dir, |network| drill_config(&args.drill, network));
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
    match crate::lab::apiserver::run(args.listen, &args.cert, &args.key, &args.name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
