//! `vipd run`: the daemon for one node. It starts what the node's plan
//! asks for, each subsystem a task sharing one stop signal:
//!
//! - VRRP, on VIP holders;
//! - the DNAT table, on VIP holders with the `dnat` datapath;
//! - the proxy frontends: the plane proxy, the VIP proxy (`proxy`
//!   datapath), the node-local worker proxy.
//!
//! A subsystem that fails at start (a port taken, an interface missing)
//! stops the others and the daemon exits 1, so systemd sees it.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::RunArgs;
use crate::config::resolve::NodePlan;
use crate::config::spec::ClusterSpec;
use crate::config::{self, Severity};
use crate::proxy::frontend;
use crate::vrrp::driver::{self, DriverConfig, Status};

pub fn run(run_args: &RunArgs) -> ExitCode {
    let args = &run_args.node;
    let checked = match config::check_file_with(&args.config, args.secrets_options()) {
        Ok(checked) => checked,
        Err(e) => {
            error!("cannot read {}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let spec = match (&checked.spec, checked.errors()) {
        (Some(spec), 0) => spec,
        _ => {
            eprint!("{}", checked.render());
            error!(
                "{} does not pass `vipd check`: not starting",
                args.config.display()
            );
            return ExitCode::FAILURE;
        }
    };
    for d in checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
    {
        warn!(code = d.code, path = %d.path, "{}", d.message);
    }
    let Some(plan) = spec.plan(&args.node) else {
        error!(node = %args.node, "no such node in {}", args.config.display());
        return ExitCode::FAILURE;
    };
    if plan.vrrp.is_none() && plan.frontends.is_empty() {
        error!(
            node = %args.node,
            "this node has nothing for vipd to run: it holds no VIP and runs no proxy (a worker runs one with [proxy] worker_local = true)"
        );
        return ExitCode::FAILURE;
    }
    let secrets = checked.secrets.as_ref().and_then(|s| s.secrets());
    // A secret the node needs, and a vault or file that could not be read:
    // say why (the check only warned: it may run where no key is).
    if secrets.is_none()
        && plan
            .vrrp
            .as_ref()
            .is_some_and(|v| v.auth_pass_secret.is_some())
        && let Some(source) = &checked.secrets
    {
        error!(
            "the VRRP password is in {}, which cannot be read here: {}",
            source.path().display(),
            source.unreadable_reason()
        );
        return ExitCode::FAILURE;
    }
    let vrrp = match &plan.vrrp {
        Some(vrrp) => match DriverConfig::from_plan(&plan, vrrp, secrets) {
            Ok(config) => Some(config),
            Err(e) => {
                error!("cannot configure VRRP: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = run_args.threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spec = spec.clone();
    runtime.block_on(async move {
        match serve(spec, plan, vrrp).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn serve(
    spec: ClusterSpec,
    plan: NodePlan,
    vrrp: Option<DriverConfig>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop_tx.clone()));
    info!(node = %plan.node, cluster = %plan.cluster, roles = ?plan.roles, "vipd starting");
    let mut tasks: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    // Listeners first: a port that is taken fails the start before VRRP
    // claims the VIP for a node that cannot serve it.
    for frontend_plan in plan.frontends.clone() {
        let freebind = frontend_plan.listen.ip() == spec.vip.address;
        let backlog = i32::try_from(spec.proxy.max_connections)
            .unwrap_or(i32::MAX)
            .max(1024);
        let listener = frontend::bind(frontend_plan.listen, backlog, freebind)
            .with_context(|| format!("frontend {}", frontend_plan.name))?;
        let settings = spec.proxy.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            let balance = settings.balance;
            frontend::run(frontend_plan, listener, &settings, balance, stop).await?;
            Ok("proxy")
        });
    }
    // On every VIP holder, master or backup: on a backup only the holder's
    // own connections to the VIP meet the rules, and a takeover needs no reload.
    if let Some(dnat) = plan.dnat.clone() {
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            crate::nftables::run(dnat, stop).await?;
            Ok("dnat")
        });
    }
    if let Some(config) = vrrp {
        let (status_tx, _status_rx) = watch::channel(Status {
            state: vipd_core::vrrp::State::Initialize,
            master: None,
        });
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            driver::run(config, stop, status_tx).await?;
            Ok("vrrp")
        });
    }
    // The first subsystem to end (an error, or the stop) stops the rest.
    let mut outcome = Ok(());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(name)) => info!(subsystem = name, "stopped"),
            Ok(Err(e)) => {
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
            Err(e) => {
                if outcome.is_ok() {
                    outcome = Err(anyhow::anyhow!("a subsystem panicked: {e}"));
                }
            }
        }
        stop_tx.send_replace(true);
    }
    outcome
}

/// SIGTERM or SIGINT stops gracefully; a second one exits at once.
async fn stop_on_signal(stop: watch::Sender<bool>) {
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
