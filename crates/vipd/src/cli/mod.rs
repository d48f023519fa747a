//! The command line: one binary for the daemon and the operator's tools,
//! the way `haproxy -c` and Sozu's `sozu ctl` live beside their daemons.

mod check;
mod lab;
mod render;
mod run;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A highly available Kubernetes API endpoint in one binary.
///
/// vipd holds a floating virtual IP with VRRP (wire-compatible with
/// keepalived), balances kube-apiserver traffic with health checks (what
/// HAProxy does in the classic recipe), and can DNAT VIP:port to the healthy
/// control planes in the kernel. One cluster file describes it all and is
/// checked before anything runs.
#[derive(Debug, Parser)]
#[command(name = "vipd", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr: `human` lines, or `json` objects (one per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cluster file: report every problem at once, exit 1 if any is an error.
    ///
    /// Syntax and type errors are reported as file:line:col; semantic errors
    /// also name the config path (`nodes[2].priority`). Each finding has a
    /// stable code (`--list-rules` prints them) and says how to fix it.
    /// Warnings do not fail the check unless `--strict` is given.
    Check(CheckArgs),
    /// Inspect a cluster file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print what a node would load into the kernel or a peer program, without running anything.
    ///
    /// Each renderer reads the cluster file (it must pass `vipd check`) and
    /// prints one node's generated configuration on stdout, the way the
    /// daemon generates it.
    #[command(subcommand)]
    Render(RenderCommand),
    /// Run the daemon for one node of the cluster file.
    ///
    /// The file must pass `vipd check` (warnings are logged). A node with the
    /// `vip` role runs its VRRP instance: it holds the VIP while master, sends
    /// gratuitous ARP / unsolicited NA on taking over. A plane runs its proxy
    /// in front of the kube-apiservers, a VIP holder with the `proxy`
    /// datapath one on VIP:port, a worker with `[proxy] worker_local` one on
    /// 127.0.0.1 and [::1]. On SIGTERM or SIGINT it sends a priority 0
    /// advert, removes the VIP, stops accepting and drains sessions before
    /// exiting (a second signal exits at once). Logs go to stderr; `VIPD_LOG` sets
    /// the level (default `info`, e.g. `VIPD_LOG=debug`).
    Run(RunArgs),
    /// A whole HA cluster in network namespaces on this machine, with failure drills (root).
    ///
    /// `vipd lab` alone builds the lab (2 VIP holders, 3 planes with
    /// stand-in kube-apiservers, 1 worker, from examples/lab.toml), runs
    /// every drill scenario under load, prints the report (a table, `--json`,
    /// an SVG timeline) and removes the lab; `--stack classic` drills
    /// keepalived + HAProxy configured by `vipd render`, `--stack both` the
    /// two side by side. The steps run one by one with `up`, `drill`,
    /// `status` and `down`. Exits 1 when a scenario ends in a wrong state.
    Lab(lab::LabArgs),
}

/// The cluster file, the node and the secrets: what every per-node command takes.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The cluster file.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// This node's name in the cluster file.
    #[arg(short, long, value_name = "NAME")]
    pub node: String,
    /// The secrets file (as for `vipd check`).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Worker threads for the proxy (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The cluster file.
    #[arg(
        short,
        long,
        value_name = "FILE",
        required_unless_present = "list_rules"
    )]
    pub config: Option<PathBuf>,
    /// The secrets file (default: `cluster.secrets_file`, else secrets.toml beside the cluster file).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Print every rule code with its severity and meaning, then exit.
    #[arg(long)]
    pub list_rules: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// rustc-style blocks with the source line.
    Human,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// The nftables ruleset of a VIP holder's DNAT datapath (table `inet vipd`).
    ///
    /// Printed as if every plane were healthy, as the daemon loads it at
    /// start. The file replaces the table in one transaction, so
    /// `vipd render nftables ... | nft -c -f -` checks it and `| nft -f -`
    /// loads it by hand. The node must hold the VIP with `api.datapath =
    /// "dnat"`.
    Nftables(RenderArgs),
    /// keepalived.conf for a VIP holder: the same VRRP instance vipd runs.
    ///
    /// For the classic stack and for a gradual migration (a keepalived
    /// holder and a vipd holder of one file join one virtual router). The
    /// PASS password is printed only with `--show-secrets`. Check it with
    /// `keepalived -t -f FILE`.
    Keepalived(RenderSecretArgs),
    /// haproxy.cfg for a node that runs a proxy: TCP frontends with
    /// health-checked kube-apiserver backends, as vipd would run them.
    ///
    /// Planes, VIP holders with `api.datapath = "proxy"` and workers with
    /// `[proxy] worker_local`. Check it with `haproxy -c -f FILE`.
    Haproxy(RenderArgs),
}

#[derive(Debug, Args)]
pub struct RenderSecretArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print secret values (the VRRP password) instead of a placeholder.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show what one node does, resolved from the node list.
    ///
    /// Its roles, its VRRP instance with the peers it derives, its proxy
    /// frontends and backends with their health checks, its DNAT targets and
    /// its WireGuard peers. Secrets are shown by name only. The file must
    /// pass `vipd check` (warnings allowed).
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Config(ConfigCommand::Show(args)) => show::run(&args),
        Command::Render(RenderCommand::Nftables(args)) => render::nftables(&args),
        Command::Render(RenderCommand::Keepalived(args)) => render::keepalived(&args),
        Command::Render(RenderCommand::Haproxy(args)) => render::haproxy(&args),
        Command::Lab(args) => lab::run(&args),
    }
}

/// Logs to stderr (journald picks it up), filtered by `VIPD_LOG`.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VIPD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal; journald and files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// For commands that need a valid cluster file: reads and checks it, and
/// returns the plan of `node` with the spec. Errors are printed with their
/// source excerpt, and the command exits 1.
pub(crate) fn load_node_plan(
    args: &NodeArgs,
) -> Result<(crate::config::ClusterSpec, crate::config::NodePlan), ExitCode> {
    use crate::config::Severity;
    let (config, secrets, node) = (
        args.config.as_path(),
        args.secrets.as_deref(),
        args.node.as_str(),
    );
    let checked = crate::config::check_file(config, secrets).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", config.display());
        ExitCode::FAILURE
    })?;
    let spec = match (checked.spec.as_ref(), checked.errors()) {
        (Some(spec), 0) => spec,
        _ => {
            for d in checked
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
            {
                eprint!("{}", checked.source.render(d));
            }
            eprintln!(
                "error: {} does not pass `vipd check`; fix the errors above first",
                config.display()
            );
            return Err(ExitCode::FAILURE);
        }
    };
    let Some(plan) = spec.plan(node) else {
        let names: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "error: no node \"{node}\" in {}; the nodes are: {}",
            config.display(),
            names.join(", ")
        );
        return Err(ExitCode::FAILURE);
    };
    Ok((spec.clone(), plan))
}
