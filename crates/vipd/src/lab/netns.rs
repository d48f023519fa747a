//! Network-namespace topologies that clean up after themselves.
//!
//! The rules (shared/lab-rules.md) this module enforces by construction:
//!
//! - nothing is made in the root namespace: the bridge lives in a hub
//!   namespace of its own, and every veth is created inside a namespace;
//! - every name carries a run id (`vt<pid>x<n>`), so parallel tests never
//!   collide, and the pid in it lets a later run remove what a killed run
//!   left behind ([`reap_stale`]);
//! - [`Topology`]'s `Drop` kills the processes it started (by pid, never by
//!   name) and deletes its namespaces, also when a test panics.
//!
//! It drives iproute2's `ip`, which every test machine has.

use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prefix of every namespace this module makes.
const PREFIX: &str = "vt";

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// True when the tests that need root can run. Without root it prints
/// `skipped: needs root` where the terminal shows it (test output capture
/// does not hide it); with `CI=true` it panics instead, so CI never passes
/// by skipping.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root, and CI=true: failing instead of skipping");
    }
    // Written to the stderr handle directly, past libtest's capture.
    let _ = writeln!(io::stderr(), "skipped: needs root ({test})");
    false
}

fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The namespaces on this machine.
pub fn list_namespaces() -> io::Result<Vec<String>> {
    let output = Command::new("ip").args(["netns", "list"]).output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The pid encoded in one of our namespace names: `vt<pid>x<n>-<host>`.
fn creator_pid(namespace: &str) -> Option<i32> {
    let rest = namespace.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    let (run, _host) = rest.split_once('-')?;
    run.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Deletes namespaces left by runs whose process no longer exists (a test
/// killed by a timeout never runs its `Drop`). Namespaces of live runs, and
/// any not made by this module, are left alone.
pub fn reap_stale() -> io::Result<usize> {
    let mut reaped = 0;
    for namespace in list_namespaces()? {
        let Some(pid) = creator_pid(&namespace) else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive && ip(&["netns", "del", &namespace]).is_ok() {
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// A namespace of a topology, by its full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A namespace made earlier (by a lab's `up`), by its full name.
    pub fn existing(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside this namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `program args...` inside the namespace and waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Runs `ip args...` inside the namespace; an error carries ip's message.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `f` on a thread that has entered this namespace, and returns
    /// its result. Sockets opened in `f` belong to the namespace.
    pub fn enter<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || -> io::Result<R> {
                    // Only this thread moves; the process stays where it was.
                    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Netns {
    /// Starts a thread that enters this namespace and runs `f` there; for
    /// servers that live as long as a test. The thread must end by itself
    /// (give `f` a way to be told to stop).
    pub fn spawn_thread<F, R>(&self, f: F) -> io::Result<std::thread::JoinHandle<io::Result<R>>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name))?;
        Ok(std::thread::spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        }))
    }
}

/// A set of namespaces, links and processes, all removed on drop.
#[derive(Debug)]
pub struct Topology {
    run_id: String,
    namespaces: Vec<Netns>,
    hub: Option<Netns>,
    /// Ports on the hub bridge, to name the hub-side veths.
    hub_ports: u32,
    children: Vec<Child>,
}

impl Topology {
    /// An empty topology with a fresh run id. Reaps what killed runs left.
    pub fn new() -> io::Result<Self> {
        reap_stale()?;
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            run_id: format!("{PREFIX}{}x{run}", std::process::id()),
            namespaces: Vec::new(),
            hub: None,
            hub_ports: 0,
            children: Vec::new(),
        })
    }

    /// An empty topology whose names start with `run_id` (the lab's own
    /// prefix, which [`reap_stale`] never touches). Nothing is reaped.
    pub fn with_run_id(run_id: String) -> Self {
        Self {
            run_id,
            namespaces: Vec::new(),
            hub: None,
            hub_ports: 0,
            children: Vec::new(),
        }
    }

    /// Disarms the guard: the namespaces and links stay after this value
    /// is gone (the lab's `up` hands them to `down`). Processes started
    /// with [`Self::spawn`] are left running.
    pub fn keep(mut self) -> Vec<Netns> {
        self.children.clear();
        self.hub = None;
        std::mem::take(&mut self.namespaces)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn namespaces(&self) -> &[Netns] {
        &self.namespaces
    }

    fn create(&mut self, host: &str) -> io::Result<Netns> {
        let name = format!("{}-{host}", self.run_id);
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        // Register first, so a failure below still removes it on drop.
        self.namespaces.push(netns.clone());
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Adds a host: a namespace with its loopback up.
    pub fn add_host(&mut self, host: &str) -> io::Result<Netns> {
        self.create(host)
    }

    /// The hub namespace holding bridge `br0` (made on first use). Multicast
    /// snooping is off so VRRP multicast reaches every port.
    pub fn hub(&mut self) -> io::Result<Netns> {
        if let Some(hub) = &self.hub {
            return Ok(hub.clone());
        }
        let hub = self.create("hub")?;
        hub.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        hub.ip(&["link", "set", "br0", "up"])?;
        self.hub = Some(hub.clone());
        Ok(hub)
    }

    /// Plugs `host` into the hub bridge with a veth named `ifname` inside
    /// `host`, and gives it `addresses`. Returns the hub-side port name.
    pub fn plug(&mut self, host: &Netns, ifname: &str, addresses: &[IpNet]) -> io::Result<String> {
        let hub = self.hub()?;
        self.hub_ports += 1;
        let port = format!("p{}", self.hub_ports);
        // Created inside the host and peered straight into the hub: the
        // root namespace never sees either end.
        host.ip(&[
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            hub.name(),
        ])?;
        hub.ip(&["link", "set", &port, "master", "br0"])?;
        hub.ip(&["link", "set", &port, "up"])?;
        for address in addresses {
            let address = address.to_string();
            // nodad: the address is usable at once, not after IPv6 DAD.
            if address.contains(':') {
                host.ip(&["addr", "add", &address, "dev", ifname, "nodad"])?;
            } else {
                host.ip(&["addr", "add", &address, "dev", ifname])?;
            }
        }
        host.ip(&["link", "set", ifname, "up"])?;
        Ok(port)
    }

    /// A direct veth link between two hosts.
    pub fn link(&mut self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
        a.ip(&[
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ])?;
        a.ip(&["link", "set", a_if, "up"])?;
        b.ip(&["link", "set", b_if, "up"])
    }

    /// Starts `command` (built with [`Netns::command`]) and keeps its pid to
    /// kill on drop. Returns the pid.
    pub fn spawn(&mut self, mut command: Command) -> io::Result<u32> {
        let child = command.stdin(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Kills one process started by [`Self::spawn`] with `signal`; a process
    /// that already exited is not an error.
    pub fn signal(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
        let known = self.children.iter().any(|c| c.id() == pid);
        if !known {
            return Err(io::Error::other(format!(
                "pid {pid} was not started by this topology"
            )));
        }
        match kill(Pid::from_raw(pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until `condition` holds, checking every `step`, for at most
    /// `limit`. Bounded, as every loop of a test must be.
    pub fn wait_for(limit: Duration, step: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if condition() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(step);
        }
    }

    /// Adds an address to an interface of a host (for VIPs and the like).
    pub fn add_address(host: &Netns, ifname: &str, address: IpAddr, prefix: u8) -> io::Result<()> {
        host.ip(&["addr", "add", &format!("{address}/{prefix}"), "dev", ifname])
    }

    fn teardown(&mut self) {
        for child in &mut self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        self.children.clear();
        // `ip netns exec` children may have forked: kill whatever is left
        // inside each namespace, by pid, before deleting it.
        for netns in self.namespaces.iter().rev() {
            if let Ok(output) = Command::new("ip")
                .args(["netns", "pids", &netns.name])
                .output()
            {
                for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            let _ = ip(&["netns", "del", &netns.name]);
        }
        self.namespaces.clear();
        self.hub = None;
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_pid_reads_only_our_names() {
        assert_eq!(creator_pid("vt1234x0-holder-1"), Some(1234));
        assert_eq!(creator_pid("vt1234x17-hub"), Some(1234));
        assert_eq!(creator_pid("vtx0-hub"), None);
        assert_eq!(creator_pid("vt12x-hub"), None);
        assert_eq!(creator_pid("other-ns"), None);
        assert_eq!(creator_pid("vt12"), None);
    }
}
