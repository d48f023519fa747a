//! `vipd run`: checks the cluster file, builds the runtime and hands the
//! node's plan to [`crate::daemon`], which runs it:
//!
//! - VRRP, on VIP holders;
//! - the DNAT table, on VIP holders with the `dnat` datapath;
//! - the proxy frontends: the plane proxy, the VIP proxy (`proxy`
//!   datapath), the node-local worker proxy;
//! - the control socket and the metrics listener.

use std::process::ExitCode;

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::RunArgs;
use crate::config::{self, Severity};
use crate::daemon::Daemon;
use crate::proxy::workers::Workers;
use crate::vrrp::driver::DriverConfig;

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
    if plan.vrrp.is_none() && plan.frontends.is_empty() && plan.follow.is_none() {
        error!(
            node = %args.node,
            "this node has nothing for vipd to run: it holds no VIP, runs no proxy (a worker runs one with [proxy] worker_local = true) and follows no VIP on a mesh ([mesh] follow = true with the VIP on the mesh interface)"
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
    // The proxy's sessions run on their own threads, one runtime each
    // (`proxy::workers`); the daemon's own work (VRRP, health checks, the
    // control socket) is light and runs on this thread.
    let threads = run_args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let workers = match Workers::start(threads) {
        Ok(workers) => workers,
        Err(e) => {
            error!("cannot start the proxy threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = crate::daemon::Options {
        config: args.config.clone(),
        node: args.node.clone(),
        secrets: args.secrets.clone(),
        identity: Some(args.identity.clone()),
        socket: run_args.socket.clone(),
        workers,
    };
    let spec = spec.clone();
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(crate::daemon::stop_on_signal(stop_tx));
        info!(node = %plan.node, cluster = %plan.cluster, roles = ?plan.roles, "vipd starting");
        let daemon = match Daemon::start(options, spec, plan, vrrp).await {
            Ok(daemon) => daemon,
            Err(e) => {
                error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        // systemd's service protocol (a no-op without NOTIFY_SOCKET).
        let notify: crate::daemon::Notify = Box::new(|event| {
            use crate::daemon::Event;
            use crate::service;
            match event {
                Event::Ready(line) | Event::Reloaded(line) => service::ready(&line),
                Event::Reloading => service::reloading(),
                Event::Status(line) => service::status(&line),
                Event::Stopping => service::stopping(),
            }
        });
        match daemon.run(stop_rx, &notify).await {
            Ok(()) => {
                info!("vipd stopped");
                ExitCode::SUCCESS
            }
            Err(_) => ExitCode::FAILURE,
        }
    })
}
