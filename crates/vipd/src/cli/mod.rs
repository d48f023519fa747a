//! The command line: one binary for the daemon and the operator's tools,
//! the way `haproxy -c` and Sozu's `sozu ctl` live beside their daemons.

mod check;
mod generate;
mod import;
mod lab;
mod render;
mod run;
mod show;
pub mod status;
mod vault;
mod verify;
mod wg;

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
    /// prints one node's generated configuration (kubeadm and dns: the
    /// cluster's) on stdout; where offered, `-o FILE` writes a file instead,
    /// mode 0600 when it holds a secret. Secrets appear only with `-o` or
    /// `--show-secrets`.
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
    /// Show what a running daemon is doing, from its control socket.
    ///
    /// The VRRP state with configured and effective priority (and which
    /// tracker moved it), the master, whether the VIP is on the interface,
    /// recent transitions; each proxy frontend's backends with health, last
    /// check and connection counts; the DNAT target set; the last reload.
    /// `--json` prints the whole document (a stable, documented schema).
    Status(StatusArgs),
    /// Make a running daemon re-read its cluster file (as SIGHUP does) and
    /// print what changed.
    ///
    /// The file is checked first; if it does not pass `vipd check` the
    /// daemon keeps its running configuration, the errors are printed and
    /// the exit code is 1. Unchanged listeners keep their sockets and
    /// sessions; backends and DNAT targets change in place; VRRP settings
    /// change without giving up mastership where the change allows it.
    Reload(SocketArgs),
    /// Check a live cluster: PASS, FAIL or SKIP per check, exit 1 if any failed.
    ///
    /// From anywhere: VIP:port accepts TCP, every plane's proxy port
    /// accepts TCP, every apiserver answers /readyz (with the planes'
    /// health-check settings). With `--node` naming the node it runs on:
    /// its daemon answers on the control socket, the VIP is on its interface
    /// exactly when it is master, its DNAT table sends new flows to the
    /// planes it finds healthy, and an ARP probe on the VIP's link counts
    /// the hosts that answer for the VIP (exactly one, or it is a split
    /// brain). Replaces the manual "Test 1..5" of the keepalived+HAProxy
    /// recipe.
    Verify(VerifyArgs),
    /// WireGuard keys, as `wg genkey` and `wg pubkey` make them.
    #[command(subcommand)]
    Wg(wg::WgCommand),
    /// Write the man pages or the shell completions, generated from this command line.
    ///
    /// For packaging (scripts/package.sh): the pages and completions always
    /// match the binary that made them. Hidden from the help.
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
    /// Keep secrets in an age-encrypted vault (interoperable with `age` and `rage`).
    ///
    /// The vault's plaintext is the secrets file's text (`name = "value"`
    /// lines). It is locked with a passphrase or to x25519 recipients (one key
    /// per node, each node opening it with its own identity file); the
    /// recipients are listed in FILE.recipients beside it. Every write is
    /// atomic. Set `[cluster] vault` to have the daemon and every command read it.
    Vault(vault::VaultArgs),
    /// Import an existing setup into a cluster file and a vault.
    #[command(subcommand)]
    Import(ImportCommand),
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

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// The seed's Ansible project: an INI inventory and YAML variables (clear or ansible-vault).
    ///
    /// Maps the seed's variables (docs/config.md, "The seed's variables") to a
    /// cluster file, puts the secrets into a vault, and prints a report:
    /// every variable used and where it went, every one ignored and why,
    /// every value it had to choose. Nothing is written unless the result
    /// passes `vipd check`.
    Ansible(import::AnsibleArgs),
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Man pages (section 1): vipd(1) and one per subcommand, e.g. vipd-run(1).
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The completion script of SHELL, on stdout or into DIR (as vipd.bash, _vipd, vipd.fish, ...).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// The directory to write it to (created if missing); stdout if not given.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The cluster file.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The node this runs on, for the checks only it can make.
    #[arg(short, long, value_name = "NAME")]
    pub node: Option<String>,
    /// The secrets file (as for `vipd check`).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// The age identity file that opens the vault (`[cluster] vault`).
    #[arg(long, value_name = "FILE", default_value = crate::vault::DEFAULT_IDENTITY)]
    pub identity: PathBuf,
    /// The local daemon's control socket (with `--node`).
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// How long each network check may take.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub timeout: crate::config::values::Interval,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
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
    /// The node's age identity file, to open the vault (`[cluster] vault`).
    #[arg(long, value_name = "FILE", default_value = crate::vault::DEFAULT_IDENTITY)]
    pub identity: PathBuf,
}

impl NodeArgs {
    pub fn secrets_options(&self) -> crate::config::SecretsOptions<'_> {
        crate::config::SecretsOptions {
            secrets: self.secrets.as_deref(),
            identity: Some(&self.identity),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Proxy threads, each with its own event loop and listening socket
    /// (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// The control socket (`vipd status`, `vipd reload` talk to it).
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Where a running daemon's control socket is.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The daemon's control socket (as given to `vipd run --socket`).
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print the status document as JSON (schema in docs/operations.md).
    #[arg(long)]
    pub json: bool,
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
    /// The age identity file that opens the vault (`[cluster] vault`).
    #[arg(long, value_name = "FILE", default_value = crate::vault::DEFAULT_IDENTITY)]
    pub identity: PathBuf,
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
    /// loads it by hand. The node must hold the VIP. With `api.datapath =
    /// "proxy"` it prints the crash guard instead (table `inet
    /// vipd_guard`), the only table such a holder loads.
    Nftables(RenderArgs),
    /// A node's wg-quick file: its interface, private key and every peer.
    ///
    /// The private key is written only to a file (`-o`, mode 0600) or with
    /// `--show-secrets`; otherwise its line names the secret. With the VIP on
    /// the mesh interface, the VIP's /32 starts in the AllowedIPs of the
    /// holder with the highest priority; vipd on each node moves it to the
    /// master's peer (the file's comment says what a node without vipd does).
    Wireguard(render::WireguardArgs),
    /// The kubeadm ClusterConfiguration fragment: controlPlaneEndpoint is the
    /// VIP, certSANs has the VIP, its name and every plane; join commands as comments.
    Kubeadm(render::KubeadmArgs),
    /// DNS records of the VIP name and every node: zone-file lines, or /etc/hosts lines.
    Dns(render::DnsArgs),
    /// A kubelet static Pod running `vipd run` for a node (for /etc/kubernetes/manifests).
    ///
    /// hostNetwork, capabilities NET_ADMIN, NET_RAW and NET_BIND_SERVICE
    /// only, the cluster file's directory mounted read-only,
    /// system-node-critical. A static Pod runs only once the kubelet runs:
    /// see docs/operations.md for what that means for `kubeadm init`.
    StaticPod(render::StaticPodArgs),
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
    /// Also print the values of the secrets this node uses.
    #[arg(long)]
    pub show_secrets: bool,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Config(ConfigCommand::Show(args)) => show::run(&args),
        Command::Render(RenderCommand::Nftables(args)) => render::nftables(&args),
        Command::Status(args) => status::status(&args),
        Command::Reload(args) => status::reload(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Render(RenderCommand::Wireguard(args)) => render::wireguard(&args),
        Command::Render(RenderCommand::Kubeadm(args)) => render::kubeadm(&args),
        Command::Render(RenderCommand::Dns(args)) => render::dns(&args),
        Command::Render(RenderCommand::StaticPod(args)) => render::static_pod(&args),
        Command::Wg(command) => wg::run(&command),
        Command::Generate(command) => generate::run(&command),
        Command::Vault(args) => vault::run(&args),
        Command::Import(ImportCommand::Ansible(args)) => import::ansible(&args),
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

/// The cluster file and the secrets: what whole-cluster commands take.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The cluster file.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The secrets file (as for `vipd check`).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// The age identity file that opens the vault (`[cluster] vault`).
    #[arg(long, value_name = "FILE", default_value = crate::vault::DEFAULT_IDENTITY)]
    pub identity: PathBuf,
}

impl ClusterArgs {
    pub fn secrets_options(&self) -> crate::config::SecretsOptions<'_> {
        crate::config::SecretsOptions {
            secrets: self.secrets.as_deref(),
            identity: Some(&self.identity),
        }
    }
}

/// A cluster file that passes `vipd check`, with its secrets when they could be read.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub spec: crate::config::ClusterSpec,
    /// The one place commands get secret values from.
    pub secrets: Option<crate::config::Secrets>,
}

/// For commands that need a valid cluster file: reads and checks it. Errors
/// are printed with their source excerpt, and the command exits 1.
pub(crate) fn load_checked(
    config: &std::path::Path,
    options: crate::config::SecretsOptions<'_>,
) -> Result<Loaded, ExitCode> {
    use crate::config::Severity;
    let checked = crate::config::check_file_with(config, options).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", config.display());
        ExitCode::FAILURE
    })?;
    match (checked.spec.as_ref(), checked.errors()) {
        (Some(spec), 0) => Ok(Loaded {
            spec: spec.clone(),
            secrets: checked.secrets.as_ref().and_then(|s| s.secrets()).cloned(),
        }),
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
            Err(ExitCode::FAILURE)
        }
    }
}

/// For commands that need a valid cluster file and a node: [`load_checked`],
/// and the plan of `args.node`.
pub(crate) fn load_node_plan(
    args: &NodeArgs,
) -> Result<(crate::config::ClusterSpec, crate::config::NodePlan), ExitCode> {
    load_node(args).map(|(loaded, plan)| (loaded.spec, plan))
}

/// [`load_node_plan`], with the secrets when they could be read (for
/// `--show-secrets` and commands that need a value).
pub(crate) fn load_node_plan_with_secrets(
    args: &NodeArgs,
) -> Result<
    (
        crate::config::ClusterSpec,
        crate::config::NodePlan,
        Option<crate::config::Secrets>,
    ),
    ExitCode,
> {
    load_node(args).map(|(loaded, plan)| (loaded.spec, plan, loaded.secrets))
}

/// [`load_node_plan`] with the secrets.
pub(crate) fn load_node(args: &NodeArgs) -> Result<(Loaded, crate::config::NodePlan), ExitCode> {
    let (config, node) = (args.config.as_path(), args.node.as_str());
    let loaded = load_checked(config, args.secrets_options())?;
    let Some(plan) = loaded.spec.plan(node) else {
        let names: Vec<&str> = loaded.spec.nodes.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "error: no node \"{node}\" in {}; the nodes are: {}",
            config.display(),
            names.join(", ")
        );
        return Err(ExitCode::FAILURE);
    };
    Ok((loaded, plan))
}
