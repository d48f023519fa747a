//! The lab's life: `vipd lab up` builds it ([`up`]), `drill` drives it
//! ([`drill`]), `status` shows it, `down` removes it ([`down`]). Each step
//! is a process of its own, so what they share is the state directory
//! (lab::state). The command line (cli/lab.rs) only parses and prints.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::drill::{Drill, DrillConfig, ScenarioResult};
use super::pki::LabCa;
use super::stack::{self, Paths, Stack};
use super::state::{self, LabState, NodeState, Phase};
use super::topology::{self, Counts, Network};
use crate::config::spec::Datapath;

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

/// `vipd lab status`: the lab's nodes, their processes and who holds the
/// VIP, on stdout.
pub fn status(dir: &Path) -> io::Result<()> {
    let Some(state) = LabState::load(dir)? else {
        println!("no lab in {}", dir.display());
        return Ok(());
    };
    println!(
        "lab {} ({:?}), {} stack, {}, in {}",
        state.run_id,
        state.phase,
        state.stack.as_str(),
        state.network.describe(),
        dir.display()
    );
    let vip = lab_spec(dir, &state)
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
    println!("  logs: {}", dir.join("logs").display());
    Ok(())
}

/// The lab's checked cluster file (with its secrets on the mesh).
pub fn lab_spec(dir: &Path, state: &LabState) -> io::Result<crate::config::ClusterSpec> {
    let secrets = (state.network == Network::Wireguard).then(|| dir.join("secrets.toml"));
    let checked = crate::config::check_file(&dir.join("cluster.toml"), secrets.as_deref())?;
    checked
        .spec
        .clone()
        .filter(|_| checked.errors() == 0)
        .ok_or_else(|| io::Error::other(checked.render()))
}

/// `vipd lab drill`: `config` makes the drill's settings for the lab's
/// network (its default scenarios depend on it).
pub fn drill(
    dir: &Path,
    config: impl FnOnce(Network) -> DrillConfig,
) -> io::Result<Vec<ScenarioResult>> {
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
        config(network),
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
