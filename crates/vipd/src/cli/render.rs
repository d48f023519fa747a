//! `vipd render`: what a node would load, printed instead of loaded.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{ClusterArgs, NodeArgs, RenderArgs, RenderSecretArgs};
use crate::config::NodePlan;
use crate::config::spec::{Datapath, Role};
use crate::nftables::ruleset;
use crate::render::{dns, kubeadm, static_pod, wireguard};

/// `vipd render nftables`: the DNAT table, every plane healthy.
pub fn nftables(args: &RenderArgs) -> ExitCode {
    let (plan, datapath) = match load_plan(args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(dnat) = &plan.dnat else {
        if !plan.roles.contains(&Role::Vip) {
            eprintln!(
                "error: node \"{}\" does not hold the VIP (its roles: {}): only a node with the `vip` role loads the DNAT table",
                plan.node,
                plan.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else if datapath == Datapath::Proxy {
            // What such a holder loads: the crash guard alone.
            if let Some(vip) = plan.vip_listener() {
                return print_rendered(Ok(crate::nftables::guard::replace_batch(vip)));
            }
            eprintln!(
                "error: {} sets api.datapath = \"proxy\": the VIP holder proxies VIP:port in user space and loads no DNAT table; set api.datapath = \"dnat\" for the kernel datapath",
                args.node.config.display()
            );
        } else {
            eprintln!("error: node \"{}\" has no DNAT datapath", plan.node);
        }
        return ExitCode::FAILURE;
    };
    let healthy = vec![true; dnat.targets.len()];
    print_rendered(ruleset::replace_batch(dnat, &healthy).map_err(|e| e.to_string()))
}

/// The checked cluster file's plan for `args.node.node`, with the datapath it chose.
fn load_plan(args: &RenderArgs) -> Result<(NodePlan, Datapath), ExitCode> {
    let (spec, plan) = super::load_node_plan(&args.node)?;
    Ok((plan, spec.api.datapath))
}

/// Where a renderer's text goes.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write to FILE instead of stdout: whole or not at all (a temporary file
    /// in the same directory, then renamed), mode 0600 when it holds a
    /// secret, 0644 otherwise.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WireguardArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Print the private key on stdout. Without it (and without `-o`) the
    /// `PrivateKey` line names the secret instead.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    /// The VIP's address (works without DNS).
    Address,
    /// The VIP's name, `[dns] vip_name` in `[dns] zone` (every node must resolve it).
    Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeadmApiArg {
    /// kubeadm.k8s.io/v1beta3 (kubeadm 1.22 to 1.30).
    V1beta3,
    /// kubeadm.k8s.io/v1beta4 (kubeadm 1.31 and later).
    V1beta4,
}

#[derive(Debug, Args)]
pub struct KubeadmArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// What controlPlaneEndpoint names.
    #[arg(long, value_enum, default_value_t = EndpointArg::Address)]
    pub endpoint: EndpointArg,
    /// The kubeadm configuration API version.
    #[arg(long, value_enum, default_value_t = KubeadmApiArg::V1beta4)]
    pub api_version: KubeadmApiArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DnsFormat {
    /// Zone-file lines (A / AAAA records), with `$ORIGIN` when `[dns] zone` is set.
    Zone,
    /// /etc/hosts lines.
    Hosts,
}

#[derive(Debug, Args)]
pub struct DnsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[arg(long, value_enum, default_value_t = DnsFormat::Zone)]
    pub format: DnsFormat,
}

#[derive(Debug, Args)]
pub struct StaticPodArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The container image with the vipd binary (and `nft` for the DNAT datapath).
    #[arg(long, value_name = "IMAGE", default_value = concat!("vipd:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The cluster file's absolute path on the node; its directory (and the
    /// secrets file's, when elsewhere) is mounted read-only at the same path.
    #[arg(long, value_name = "PATH", default_value = "/etc/vipd/cluster.toml")]
    pub node_config: PathBuf,
}

/// Prints `text`, or writes it with `-o` (0600 when it holds a secret).
fn emit(text: &str, output: &OutputArgs, secret: bool) -> ExitCode {
    let Some(path) = &output.output else {
        let mut stdout = std::io::stdout().lock();
        return match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write to stdout: {e}");
                ExitCode::FAILURE
            }
        };
    };
    let mode = if secret { 0o600 } else { 0o644 };
    match crate::render::write_file(path, text, mode) {
        Ok(()) => {
            eprintln!("wrote {} (mode {mode:04o})", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `vipd render wireguard`.
pub fn wireguard(args: &WireguardArgs) -> ExitCode {
    let (loaded, plan) = match super::load_node(&args.node) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let reveal = args.show_secrets || args.output.output.is_some();
    let secret_name = plan
        .wireguard
        .as_ref()
        .and_then(|w| w.private_key_secret.as_deref());
    let value = match (reveal, secret_name) {
        (true, Some(name)) => match loaded.secrets.as_ref().and_then(|s| s.get(name)) {
            Some(value) => Some(value),
            None => {
                let path = crate::config::secrets_path(
                    &args.node.config,
                    &loaded.spec,
                    args.node.secrets.as_deref(),
                );
                eprintln!(
                    "error: the private key of node \"{}\" is the secret \"{name}\", and {} does not hold it (the file is missing?): add it there, or give the secrets file with --secrets FILE",
                    plan.node,
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let key = match value {
        Some(value) => wireguard::PrivateKey::Shown(value),
        None => wireguard::PrivateKey::Hidden,
    };
    match wireguard::render(&loaded.spec, &plan, key) {
        Ok(text) => emit(&text, &args.output, value.is_some()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
/// `vipd render keepalived`: keepalived.conf for a VIP holder.
pub fn keepalived(args: &RenderSecretArgs) -> ExitCode {
    let (loaded, plan) = match super::load_node(&args.node) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    print_rendered(crate::render::keepalived::render(
        &loaded.spec,
        &plan,
        loaded.secrets.as_ref(),
        args.show_secrets,
    ))
}

/// `vipd render haproxy`: haproxy.cfg for a node that runs a proxy.
pub fn haproxy(args: &RenderArgs) -> ExitCode {
    let (spec, plan) = match super::load_node_plan(&args.node) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    print_rendered(crate::render::haproxy::render(&spec, &plan))
}

fn print_rendered(rendered: Result<String, String>) -> ExitCode {
    match rendered {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vipd render kubeadm`.
pub fn kubeadm(args: &KubeadmArgs) -> ExitCode {
    let loaded = match super::load_checked(&args.cluster.config, args.cluster.secrets_options()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let endpoint = match args.endpoint {
        EndpointArg::Address => kubeadm::Endpoint::Address,
        EndpointArg::Name => kubeadm::Endpoint::Name,
    };
    let version = match args.api_version {
        KubeadmApiArg::V1beta3 => kubeadm::ApiVersion::V1beta3,
        KubeadmApiArg::V1beta4 => kubeadm::ApiVersion::V1beta4,
    };
    emit(
        &kubeadm::render(&loaded.spec, version, endpoint),
        &args.output,
        false,
    )
}

/// `vipd render dns`.
pub fn dns(args: &DnsArgs) -> ExitCode {
    let loaded = match super::load_checked(&args.cluster.config, args.cluster.secrets_options()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let text = match args.format {
        DnsFormat::Zone => dns::zone(&loaded.spec),
        DnsFormat::Hosts => dns::hosts(&loaded.spec),
    };
    emit(&text, &args.output, false)
}

/// `vipd render static-pod`.
pub fn static_pod(args: &StaticPodArgs) -> ExitCode {
    if !args.node_config.is_absolute() {
        eprintln!(
            "error: --node-config {} is relative: give the cluster file's absolute path on the node (e.g. /etc/vipd/cluster.toml)",
            args.node_config.display()
        );
        return ExitCode::FAILURE;
    }
    let (loaded, plan) = match super::load_node(&args.node) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let options = static_pod::Options {
        image: args.image.clone(),
        config: args.node_config.clone(),
    };
    emit(
        &static_pod::render(&loaded.spec, &plan, &options),
        &args.output,
        false,
    )
}
