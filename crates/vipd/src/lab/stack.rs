//! The per-node processes of a lab, for either stack:
//!
//! - `vipd`: `vipd run --node N` on every holder and plane; on the mesh on
//!   the workers too (they follow the VIP's master); on the LAN workers run
//!   nothing (the lab's spec has no `worker_local` proxy);
//! - `classic`: keepalived on every holder (`vipd render keepalived`), and
//!   HAProxy (`vipd render haproxy`) wherever vipd would run a proxy: on
//!   every plane, and on the holders with the `proxy` datapath; with the
//!   `dnat` datapath the holders load a static nftables DNAT table once
//!   (`vipd render nftables`, every plane in it: the hand-written rule of
//!   the seed, which follows no health);
//! - on every plane, for both, the stand-in kube-apiserver
//!   (`vipd lab apiserver`);
//! - on the mesh, for both, the node's anchor and wireguard-go
//!   ([`start_mesh`], lab::mesh): the classic stack keeps the AllowedIPs
//!   `vipd render wireguard` wrote, the VIP pinned to the first holder.
//!
//! Processes run inside their node's namespace (`ip netns exec`, or on the
//! mesh `nsenter` into the node's anchor; both exec, so the pid is the
//! program's), in a process group of their own (a
//! Ctrl-C at the terminal reaches only `vipd lab`), with stdout and stderr
//! appended to `DIR/logs/NODE.PROGRAM.log`. They are signalled by pid only,
//! after checking that the pid still runs the expected program inside the
//! expected namespace.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::mesh;
pub use super::state::Stack;
use super::state::{LabState, NodeState};
use super::topology::Network;

/// Children this process started, kept to reap them (no zombies in a long drill).
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Reaps children that exited.
pub fn reap() {
    if let Ok(mut children) = CHILDREN.lock() {
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }
}

/// The log file of `program` on `node`.
pub fn log_path(dir: &Path, node: &str, program: &str) -> PathBuf {
    dir.join("logs").join(format!("{node}.{program}.log"))
}

/// `program` inside `node`: in its network namespace, and on the mesh in
/// its anchor's mount namespace too.
pub fn node_command(node: &NodeState, program: &Path) -> Command {
    match node.pids.get(ANCHOR) {
        Some(&anchor) => mesh::in_node_command(anchor, &node.namespace, program),
        None => {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &node.namespace])
                .arg(program);
            command
        }
    }
}

/// What the node's anchor is called in [`NodeState::pids`].
pub const ANCHOR: &str = "anchor";
/// What wireguard-go is called there.
pub const WIREGUARD_GO: &str = "wireguard-go";

/// Starts `program args` inside `node`, logging to `log`. Returns the pid.
pub fn spawn_in(
    node: &NodeState,
    program: &Path,
    args: &[String],
    log: &Path,
    env: &[(&str, &str)],
) -> io::Result<u32> {
    let mut command = node_command(node, program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    spawn(command, log)
}

/// Starts `command` (which execs into its program, keeping the pid) in a
/// process group of its own, logging to `log`. Returns the pid.
pub fn spawn(mut command: Command, log: &Path) -> io::Result<u32> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    let child = command.spawn()?;
    let pid = child.id();
    if let Ok(mut children) = CHILDREN.lock() {
        children.push(child);
    }
    Ok(pid)
}

/// The network namespace inode of a named namespace.
fn ns_inode(namespace: &str) -> Option<u64> {
    std::fs::metadata(format!("/run/netns/{namespace}"))
        .ok()
        .map(|m| m.ino())
}

/// True when `pid` runs (not a zombie) inside `namespace`.
pub fn alive_in(pid: u32, namespace: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    if state.is_some_and(|s| s.starts_with('Z')) {
        return false;
    }
    let own = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino());
    own.is_some() && own == ns_inode(namespace)
}

/// Sends `signal` to `pid` if it still lives inside `namespace` (a reused
/// pid elsewhere is never signalled). Returns whether it was sent.
pub fn signal_in(pid: u32, namespace: &str, signal: Signal) -> bool {
    if !alive_in(pid, namespace) {
        return false;
    }
    kill(Pid::from_raw(pid as i32), signal).is_ok()
}

/// The live processes inside `namespace` (all of them ours: the lab made it).
pub fn pids_in(namespace: &str) -> Vec<u32> {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| alive_in(p, namespace))
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Waits (bounded) until no process named `name` is left in `namespace`.
pub fn wait_gone(namespace: &str, name: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        reap();
        if !pids_in(namespace).iter().any(|&p| comm(p) == name) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `pid` has exited.
pub fn wait_pid_gone(pid: u32, namespace: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        reap();
        if !alive_in(pid, namespace) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything `start_*` needs.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub vipd: PathBuf,
    pub network: Network,
}

impl Paths {
    pub fn cluster(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }
    /// The nodes' WireGuard keys (on the mesh).
    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.toml")
    }
    /// The rendered WireGuard files.
    pub fn mesh(&self) -> PathBuf {
        self.dir.join("mesh")
    }
    /// A node's control socket (`vipd status --socket ...`): one per node,
    /// since the namespaces share one file system.
    pub fn socket(&self, node: &str) -> PathBuf {
        self.dir.join("run").join(format!("{node}.sock"))
    }
    pub fn classic(&self) -> PathBuf {
        self.dir.join("classic")
    }
}

/// Starts the stand-in apiserver of a plane.
pub fn start_apiserver(paths: &Paths, node: &mut NodeState, port: u16) -> io::Result<()> {
    let pki = paths.dir.join("pki");
    let args = vec![
        "lab".to_owned(),
        "apiserver".to_owned(),
        "--listen".to_owned(),
        format!("{}:{port}", node.address),
        "--cert".to_owned(),
        pki.join(format!("{}.crt", node.name)).display().to_string(),
        "--key".to_owned(),
        pki.join(format!("{}.key", node.name)).display().to_string(),
        "--name".to_owned(),
        node.name.clone(),
    ];
    let log = log_path(&paths.dir, &node.name, "apiserver");
    let pid = spawn_in(node, &paths.vipd, &args, &log, &[])?;
    node.pids.insert("apiserver".into(), pid);
    Ok(())
}

/// Starts a node's WireGuard: its anchor (once), wireguard-go, and the
/// device configured from the stripped file `plain` with the node's mesh
/// address.
pub fn start_mesh(paths: &Paths, node: &mut NodeState, plain: &Path) -> io::Result<()> {
    let anchor = match node.pids.get(ANCHOR) {
        Some(&pid) if alive_in(pid, &node.namespace) => pid,
        _ => {
            let log = log_path(&paths.dir, &node.name, ANCHOR);
            let pid = spawn(mesh::anchor_command(&node.namespace), &log)?;
            node.pids.insert(ANCHOR.into(), pid);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !mesh::anchor_ready(pid) {
                if Instant::now() >= deadline {
                    return Err(io::Error::other(format!(
                        "the mount namespace of {} did not come up; see {}",
                        node.name,
                        log.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            pid
        }
    };
    let log = log_path(&paths.dir, &node.name, WIREGUARD_GO);
    let args: Vec<String> = mesh::WIREGUARD_GO_ARGS
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    let pid = spawn_in(node, Path::new(WIREGUARD_GO), &args, &log, &[])?;
    node.pids.insert(WIREGUARD_GO.into(), pid);
    let address: ipnet::IpNet = format!("{}/24", node.address)
        .parse()
        .map_err(io::Error::other)?;
    let mut addresses = vec![address];
    if node.name == "worker-1" {
        addresses.extend(
            super::topology::client_sources(Network::Wireguard)
                .into_iter()
                .map(ipnet::IpNet::from),
        );
    }
    mesh::configure(
        anchor,
        &node.namespace,
        plain,
        &addresses,
        Duration::from_secs(10),
    )
}

/// Starts the node's daemon(s) of `stack`. On the LAN workers run nothing.
pub fn start_node(paths: &Paths, stack: Stack, node: &mut NodeState) -> io::Result<()> {
    match stack {
        Stack::Vipd => {
            let on_mesh = paths.network == Network::Wireguard;
            if !on_mesh && !node.has_role("vip") && !node.has_role("plane") {
                return Ok(());
            }
            let mut args = vec![
                "run".to_owned(),
                "-c".to_owned(),
                paths.cluster().display().to_string(),
                "--node".to_owned(),
                node.name.clone(),
                "--socket".to_owned(),
                paths.socket(&node.name).display().to_string(),
            ];
            if on_mesh {
                args.push("--secrets".to_owned());
                args.push(paths.secrets().display().to_string());
            }
            let log = log_path(&paths.dir, &node.name, "vipd");
            let pid = spawn_in(node, &paths.vipd, &args, &log, &[("VIPD_LOG", "info")])?;
            node.pids.insert("vipd".into(), pid);
        }
        Stack::Classic => {
            let classic = paths.classic();
            let haproxy = classic.join(format!("{}.haproxy.cfg", node.name));
            if haproxy.exists() {
                let args = vec![
                    "-db".to_owned(),
                    "-f".to_owned(),
                    haproxy.display().to_string(),
                ];
                let log = log_path(&paths.dir, &node.name, "haproxy");
                let pid = spawn_in(node, Path::new("haproxy"), &args, &log, &[])?;
                node.pids.insert("haproxy".into(), pid);
            }
            if node.has_role("vip") {
                start_keepalived(paths, node)?;
            }
        }
    }
    Ok(())
}

/// keepalived in the foreground, VRRP only, no respawn, with its own pid
/// files (lab-rules: the default pid file is shared by every namespace).
pub fn start_keepalived(paths: &Paths, node: &mut NodeState) -> io::Result<()> {
    let classic = paths.classic();
    let run = classic.join("run");
    std::fs::create_dir_all(&run)?;
    let p = |ext: &str| {
        run.join(format!("{}.{ext}", node.name))
            .display()
            .to_string()
    };
    let args = vec![
        "--dont-fork".to_owned(),
        "--log-console".to_owned(),
        "--vrrp".to_owned(),
        "--dont-respawn".to_owned(),
        "--no-syslog".to_owned(),
        "-f".to_owned(),
        classic
            .join(format!("{}.keepalived.conf", node.name))
            .display()
            .to_string(),
        "-p".to_owned(),
        p("pid"),
        "-r".to_owned(),
        p("vrrp.pid"),
        "-c".to_owned(),
        p("checkers.pid"),
        "-b".to_owned(),
        p("bfd.pid"),
    ];
    let log = log_path(&paths.dir, &node.name, "keepalived");
    let pid = spawn_in(node, Path::new("keepalived"), &args, &log, &[])?;
    node.pids.insert("keepalived".into(), pid);
    Ok(())
}

/// The VIP daemon of a holder: `vipd` or `keepalived`.
/// Reloads a node's classic daemons the way their packages do: keepalived
/// re-reads its file on SIGHUP; HAProxy starts a new process that takes
/// the listeners and tells the old one to finish its sessions (`-sf`).
/// Returns whether the node runs any.
pub fn reload_classic(paths: &Paths, node: &mut NodeState) -> io::Result<bool> {
    let mut reloaded = false;
    if let Some(&pid) = node.pids.get("keepalived") {
        reloaded |= signal_in(pid, &node.namespace, Signal::SIGHUP);
    }
    if let Some(&old) = node.pids.get("haproxy") {
        let config = paths.classic().join(format!("{}.haproxy.cfg", node.name));
        let args = vec![
            "-db".to_owned(),
            "-f".to_owned(),
            config.display().to_string(),
            "-sf".to_owned(),
            old.to_string(),
        ];
        let log = log_path(&paths.dir, &node.name, "haproxy");
        let pid = spawn_in(node, Path::new("haproxy"), &args, &log, &[])?;
        node.pids.insert("haproxy".into(), pid);
        reloaded = true;
    }
    Ok(reloaded)
}

pub fn vip_daemon(stack: Stack) -> &'static str {
    match stack {
        Stack::Vipd => "vipd",
        Stack::Classic => "keepalived",
    }
}

/// Crashes a holder's VIP daemon with SIGKILL. keepalived's VRRP child
/// would stop gracefully if its parent died first, and the parent respawns
/// it if it died first: stop the parent, kill the children, kill the parent.
pub fn kill_vip_daemon(stack: Stack, node: &mut NodeState) -> bool {
    let daemon = vip_daemon(stack);
    let Some(pid) = node.pids.remove(daemon) else {
        return false;
    };
    let ns = node.namespace.clone();
    match stack {
        Stack::Vipd => signal_in(pid, &ns, Signal::SIGKILL),
        Stack::Classic => {
            let sent = signal_in(pid, &ns, Signal::SIGSTOP);
            for child in pids_in(&ns) {
                if child != pid && comm(child) == "keepalived" {
                    signal_in(child, &ns, Signal::SIGKILL);
                }
            }
            signal_in(pid, &ns, Signal::SIGKILL);
            sent
        }
    }
}

/// Stops a holder's VIP daemon with SIGTERM and waits (bounded) until it
/// and any child of it are gone.
pub fn stop_vip_daemon(stack: Stack, node: &mut NodeState) -> bool {
    let daemon = vip_daemon(stack);
    let Some(pid) = node.pids.remove(daemon) else {
        return false;
    };
    signal_in(pid, &node.namespace, Signal::SIGTERM)
}

/// Waits until a holder's VIP daemon is gone from its namespace (keepalived
/// children included: restarted too early, a late child disturbs the new
/// instance).
pub fn wait_vip_daemon_gone(stack: Stack, node: &NodeState, limit: Duration) -> bool {
    wait_gone(&node.namespace, vip_daemon(stack), limit)
}

/// Starts a holder's VIP daemon again.
pub fn start_vip_daemon(paths: &Paths, stack: Stack, node: &mut NodeState) -> io::Result<()> {
    match stack {
        Stack::Vipd => start_node(paths, stack, node),
        Stack::Classic => start_keepalived(paths, node),
    }
}

/// Kills every process of the lab: the recorded pids first, then whatever
/// still runs inside its namespaces (all started by the lab). Bounded.
pub fn kill_all(state: &LabState) {
    for node in &state.nodes {
        for &pid in node.pids.values() {
            signal_in(pid, &node.namespace, Signal::SIGKILL);
        }
    }
    for ns in &state.namespaces {
        for _ in 0..50 {
            let left = pids_in(ns);
            if left.is_empty() {
                break;
            }
            for pid in left {
                signal_in(pid, ns, Signal::SIGKILL);
            }
            reap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    reap();
}
