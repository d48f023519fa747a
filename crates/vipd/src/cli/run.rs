//! `vipd run`: the daemon for one node.

use std::process::ExitCode;

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::RunArgs;
use crate::config::{self, Severity};
use crate::vrrp::driver::{self, DriverConfig, Status};

pub fn run(args: &RunArgs) -> ExitCode {
    let checked = match config::check_file(&args.config, args.secrets.as_deref()) {
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
    let Some(vrrp) = &plan.vrrp else {
        error!(
            node = %args.node,
            "this node has no role `vipd run` runs yet: the VIP role runs today; the plane proxy and the worker role come with the L4 proxy"
        );
        return ExitCode::FAILURE;
    };
    let secrets = checked.secrets.as_ref().and_then(|s| s.secrets());
    let driver_config = match DriverConfig::from_plan(&plan, vrrp, secrets) {
        Ok(config) => config,
        Err(e) => {
            error!("cannot configure VRRP: {e:#}");
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
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (status_tx, _status_rx) = watch::channel(Status {
            state: vipd_core::vrrp::State::Initialize,
            master: None,
        });
        tokio::spawn(stop_on_signal(stop_tx));
        info!(node = %plan.node, cluster = %plan.cluster, "vipd starting");
        match driver::run(driver_config, stop_rx, status_tx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
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
