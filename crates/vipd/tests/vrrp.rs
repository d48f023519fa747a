//! The VRRP speaker on real sockets: vipd nodes in network namespaces on one
//! bridge elect a master, hand the VIP over when it dies or stops, and take
//! it back when it returns. Needs root (CI runs it as root).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use nix::sys::signal::Signal;
use socket2::{Domain, Protocol, Socket, Type};
use vipd::lab::netns::{Netns, Topology, require_root};
use vipd_core::vrrp::{Advertisement, Auth, Centiseconds, ChecksumMode, VersionFields};

const VIP: &str = "198.18.0.100";

fn vipd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vipd")
}

/// A cluster file for two holders and one plane on `eth0`.
fn cluster(mode: &str, version: u32, interval: &str, extra_vip: &str) -> String {
    format!(
        r#"[cluster]
name = "vrrp-test"

[vip]
address = "{VIP}"
interface = "eth0"
vrid = 51
version = {version}
advert_interval = "{interval}"
mode = "{mode}"
{extra_vip}

[plane.health]
insecure_skip_verify = true

[[nodes]]
name = "h1"
roles = ["vip"]
address = "198.18.0.1"
priority = 150

[[nodes]]
name = "h2"
roles = ["vip"]
address = "198.18.0.2"
priority = 100

[[nodes]]
name = "p1"
roles = ["plane"]
address = "198.18.0.11"
"#
    )
}

struct Lab {
    topo: Topology,
    hosts: Vec<Netns>,
    dir: tempfile::TempDir,
    pids: Vec<Option<u32>>,
}

impl Lab {
    fn new(cluster_text: &str, secrets: Option<&str>) -> Lab {
        Self::with_hosts(cluster_text, secrets, 2)
    }

    fn with_hosts(cluster_text: &str, secrets: Option<&str>, count: usize) -> Lab {
        let mut topo = Topology::new().unwrap();
        let mut hosts = Vec::new();
        for (i, name) in ["h1", "h2", "h3"].iter().take(count).enumerate() {
            let host = topo.add_host(name).unwrap();
            topo.plug(
                &host,
                "eth0",
                &[format!("198.18.0.{}/24", i + 1).parse().unwrap()],
            )
            .unwrap();
            hosts.push(host);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.toml"), cluster_text).unwrap();
        if let Some(secrets) = secrets {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("secrets.toml");
            std::fs::write(&path, secrets).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Lab {
            topo,
            hosts,
            dir,
            pids: vec![None, None],
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{}.log", i + 1))
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let mut command = self.hosts[i].command(vipd_bin());
        command
            .args(["run", "-c"])
            .arg(self.dir.path().join("cluster.toml"))
            .args(["--node", &format!("h{}", i + 1)])
            .arg("--socket")
            .arg(self.dir.path().join(format!("h{}.sock", i + 1)))
            .env("VIPD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        self.pids[i] = Some(self.topo.spawn(command).unwrap());
    }

    fn signal(&mut self, i: usize, signal: Signal) {
        self.topo.signal(self.pids[i].unwrap(), signal).unwrap();
    }

    /// Waits for the process to exit (bounded) and returns whether it did.
    fn wait_exit(&mut self, i: usize) -> bool {
        let pid = self.pids[i].unwrap();
        let gone = Topology::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            // A zombie still has /proc/PID; its state is Z.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true)
        });
        self.pids[i] = None;
        gone
    }

    fn has_vip(&self, i: usize) -> bool {
        has_vip(&self.hosts[i])
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.hosts.len()).filter(|&i| self.has_vip(i)).collect()
    }

    /// Waits until exactly `expected` holds the VIP; panics with the logs if not.
    fn expect_holders(&self, expected: &[usize], within: Duration, what: &str) {
        let ok = Topology::wait_for(within, Duration::from_millis(10), || {
            self.holders() == expected
        });
        if !ok {
            panic!(
                "{what}: holders {:?}, expected {expected:?}\n{}",
                self.holders(),
                self.logs()
            );
        }
    }

    fn logs(&self) -> String {
        (0..self.hosts.len())
            .map(|i| {
                format!(
                    "--- h{} ---\n{}",
                    i + 1,
                    std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
                )
            })
            .collect()
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }
}

fn has_vip(host: &Netns) -> bool {
    let out = host
        .run("ip", &["-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
}

fn failover_scenarios(
    mode: &str,
    version: u32,
    interval: &str,
    extra: &str,
    secrets: Option<&str>,
) {
    let mut lab = Lab::new(&cluster(mode, version, interval, extra), secrets);
    let generous = Duration::from_secs(10);
    lab.start(1);
    lab.expect_holders(
        &[1],
        generous,
        "a lone backup takes over after Master_Down_Interval",
    );
    lab.start(0);
    lab.expect_holders(&[0], generous, "the higher priority preempts");

    // SIGKILL: the master vanishes without a word; it leaves the VIP behind
    // (as keepalived does), the backup takes over on its own.
    lab.signal(0, Signal::SIGKILL);
    assert!(lab.wait_exit(0));
    let ok = Topology::wait_for(generous, Duration::from_millis(10), || lab.has_vip(1));
    assert!(ok, "backup takes over after SIGKILL\n{}", lab.logs());

    // Restart: the stale VIP is removed at start, then h1 preempts again.
    lab.start(0);
    lab.expect_holders(
        &[0],
        generous,
        "restarted master takes the VIP back, backup lets go",
    );
    assert!(
        lab.log(0).contains("removed the VIP an earlier run left"),
        "{}",
        lab.log(0)
    );

    // SIGTERM: priority 0, the backup takes over at once (Skew_Time), the VIP leaves h1.
    lab.signal(0, Signal::SIGTERM);
    lab.expect_holders(&[1], generous, "graceful stop hands over");
    assert!(lab.wait_exit(0), "h1 exits after SIGTERM");
    let log = lab.log(1);
    assert!(
        log.contains("priority 0 from master 198.18.0.1"),
        "the backup saw the stop advert:\n{log}"
    );
    assert!(
        lab.log(0).contains("VRRP instance stopped"),
        "{}",
        lab.log(0)
    );
    // Make before break: h1 gave the VIP up only once it heard h2.
    assert!(
        lab.log(0)
            .contains("the successor took over: giving the VIP up"),
        "{}",
        lab.log(0)
    );
    // The password never reaches a log line, even at debug level.
    if let Some(secrets) = secrets {
        let value = secrets.split('"').nth(1).unwrap();
        assert!(
            !lab.logs().contains(value),
            "a secret in the logs:\n{}",
            lab.logs()
        );
    }
}

/// The seed's own topology: one VIP holder. A stop cannot hand the VIP to
/// a successor (there is none), so it gives it up at once instead of
/// waiting 3 intervals for an advert that cannot come.
#[test]
fn a_lone_holder_gives_the_vip_up_at_once_on_stop() {
    if !require_root("a_lone_holder_gives_the_vip_up_at_once_on_stop") {
        return;
    }
    let h2 =
        "[[nodes]]\nname = \"h2\"\nroles = [\"vip\"]\naddress = \"198.18.0.2\"\npriority = 100\n";
    let text = cluster("multicast", 3, "1s", "");
    assert!(text.contains(h2), "{text}");
    let mut lab = Lab::with_hosts(&text.replace(h2, ""), None, 1);
    lab.start(0);
    lab.expect_holders(
        &[0],
        Duration::from_secs(10),
        "the lone holder takes the VIP",
    );
    let stopped = std::time::Instant::now();
    lab.signal(0, Signal::SIGTERM);
    assert!(lab.wait_exit(0), "h1 exits after SIGTERM");
    let took = stopped.elapsed();
    assert!(!lab.has_vip(0), "the VIP left with the daemon");
    let log = lab.log(0);
    // Waiting for a successor would take 3 intervals and 100 ms (3.1 s).
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after SIGTERM\n{log}"
    );
    assert!(
        log.contains("no other VIP holder in the cluster file: giving the VIP up at once"),
        "{log}"
    );
    assert!(
        !log.contains("no successor advertised"),
        "it waited:\n{log}"
    );
}

#[test]
fn vrrp_v3_multicast_failover() {
    if !require_root("vrrp_v3_multicast_failover") {
        return;
    }
    failover_scenarios("multicast", 3, "100ms", "", None);
}

#[test]
fn vrrp_v3_unicast_failover() {
    if !require_root("vrrp_v3_unicast_failover") {
        return;
    }
    failover_scenarios("unicast", 3, "100ms", "", None);
}

#[test]
fn vrrp_v2_pass_auth_failover() {
    if !require_root("vrrp_v2_pass_auth_failover") {
        return;
    }
    failover_scenarios(
        "multicast",
        2,
        "1s",
        "auth_pass = { secret = \"vrrp\" }",
        Some("vrrp = \"s3cr3t\"\n"),
    );
}

#[test]
fn link_down_is_a_fault_and_the_backup_takes_over() {
    if !require_root("link_down_is_a_fault_and_the_backup_takes_over") {
        return;
    }
    let mut lab = Lab::new(&cluster("multicast", 3, "100ms", ""), None);
    lab.start(0);
    lab.start(1);
    lab.expect_holders(&[0], Duration::from_secs(10), "h1 is master");
    lab.hosts[0].ip(&["link", "set", "eth0", "down"]).unwrap();
    let ok = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        lab.has_vip(1) && !lab.has_vip(0)
    });
    assert!(ok, "h2 takes over, h1 drops the VIP\n{}", lab.logs());
    assert!(lab.log(0).contains("interface down"), "{}", lab.log(0));
    lab.hosts[0].ip(&["link", "set", "eth0", "up"]).unwrap();
    lab.expect_holders(&[0], Duration::from_secs(10), "h1 comes back and preempts");
}

/// A VRRP advert of VRID 51 for the VIP, as a misbehaving peer would build it.
fn advert(
    version: u32,
    vrid: u8,
    priority: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    checksum: ChecksumMode,
) -> Vec<u8> {
    let fields = if version == 2 {
        VersionFields::V2 {
            advert_interval_secs: 1,
            auth: Auth::None,
        }
    } else {
        VersionFields::V3 {
            max_advert_interval: Centiseconds(10),
        }
    };
    let advert = Advertisement {
        vrid,
        priority,
        addresses: vec![VIP.parse().unwrap()],
        fields,
    };
    advert
        .encode(IpAddr::V4(src), IpAddr::V4(dst), checksum)
        .unwrap()
}

/// Sends raw VRRP payloads from `host` to `dst` with the given TTL.
fn send_raw(host: &Netns, dst: Ipv4Addr, ttl: u32, payloads: Vec<Vec<u8>>) {
    host.enter(move || {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
        socket.bind_device(Some(b"eth0")).unwrap();
        socket.set_ttl_v4(ttl).unwrap();
        socket.set_multicast_ttl_v4(ttl).unwrap();
        let to = SocketAddr::new(IpAddr::V4(dst), 0).into();
        for payload in payloads {
            socket.send_to(&payload, &to).unwrap();
        }
    })
    .unwrap();
}

#[test]
fn bad_packets_are_dropped_counted_and_never_obeyed() {
    if !require_root("bad_packets_are_dropped_counted_and_never_obeyed") {
        return;
    }
    let mut lab = Lab::new(&cluster("multicast", 3, "100ms", ""), None);
    lab.start(0);
    lab.expect_holders(&[0], Duration::from_secs(10), "h1 alone becomes master");
    let group: Ipv4Addr = "224.0.0.18".parse().unwrap();
    let h2: Ipv4Addr = "198.18.0.2".parse().unwrap();
    let keepalived = ChecksumMode::Keepalived;
    // Every one of these would make h1 step down if it were obeyed: priority 254.
    let good = advert(3, 51, 254, h2, group, keepalived);
    send_raw(&lab.hosts[1], group, 64, vec![good.clone()]);
    let mut bad_checksum = good.clone();
    bad_checksum[6] ^= 0xff;
    let mut bad_type = good.clone();
    bad_type[0] = 0x32;
    send_raw(
        &lab.hosts[1],
        group,
        255,
        vec![
            advert(3, 52, 254, h2, group, keepalived),
            advert(2, 51, 254, h2, group, keepalived),
            bad_checksum,
            advert(3, 51, 254, h2, group, ChecksumMode::Rfc9568),
            good[..4].to_vec(),
            bad_type,
            good[..good.len() - 2].to_vec(),
        ],
    );
    let reasons = [
        "ttl_not_255",
        "wrong_vrid",
        "wrong_version",
        "reason=\"bad_checksum\"",
        "bad_checksum_peer_omits_pseudo_header",
        "too_short",
        "bad_type",
        "truncated",
    ];
    let logged = Topology::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        let log = lab.log(0);
        reasons.iter().all(|r| log.contains(r))
    });
    let log = lab.log(0);
    assert!(logged, "every drop reason is logged:\n{log}");
    assert!(
        log.contains("set the checksum mode to rfc9568"),
        "the log says how to fix it:\n{log}"
    );
    // None of it was obeyed: h1 is still the master, and still running.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.holders(), vec![0], "{log}");
    assert!(!log.contains("from=master"), "h1 never left master:\n{log}");
}

#[test]
fn in_unicast_mode_only_peers_are_heard() {
    if !require_root("in_unicast_mode_only_peers_are_heard") {
        return;
    }
    let mut lab = Lab::with_hosts(&cluster("unicast", 3, "100ms", ""), None, 3);
    lab.start(0);
    lab.expect_holders(&[0], Duration::from_secs(10), "h1 alone becomes master");
    // h3 is not a VIP holder: a valid, higher-priority advert from it is ignored.
    let h1: Ipv4Addr = "198.18.0.1".parse().unwrap();
    let h3: Ipv4Addr = "198.18.0.3".parse().unwrap();
    let intruder = advert(3, 51, 254, h3, h1, ChecksumMode::Keepalived);
    send_raw(&lab.hosts[2], h1, 255, vec![intruder; 3]);
    let logged = Topology::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        lab.log(0).contains("not_a_peer")
    });
    assert!(logged, "{}", lab.log(0));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.holders(), vec![0], "{}", lab.log(0));
}

#[test]
fn vrrp_v3_ipv6_failover() {
    if !require_root("vrrp_v3_ipv6_failover") {
        return;
    }
    let vip6 = "2001:db8::100";
    let text = cluster("multicast", 3, "100ms", "")
        .replace(VIP, vip6)
        .replace("\"198.18.0.1\"", "\"2001:db8::1\"")
        .replace("\"198.18.0.2\"", "\"2001:db8::2\"")
        .replace("\"198.18.0.11\"", "\"2001:db8::11\"");
    let mut topo = Topology::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), &text).unwrap();
    let mut hosts = Vec::new();
    let mut pids = Vec::new();
    for i in 1..=2 {
        let host = topo.add_host(&format!("h{i}")).unwrap();
        topo.plug(
            &host,
            "eth0",
            &[format!("2001:db8::{i}/64").parse().unwrap()],
        )
        .unwrap();
        hosts.push(host);
    }
    let logs: Vec<PathBuf> = (1..=2)
        .map(|i| dir.path().join(format!("h{i}.log")))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let mut command = host.command(vipd_bin());
        command
            .args(["run", "-c"])
            .arg(dir.path().join("cluster.toml"))
            .args(["--node", &format!("h{}", i + 1)])
            .arg("--socket")
            .arg(dir.path().join(format!("h{}.sock", i + 1)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logs[i]).unwrap());
        pids.push(topo.spawn(command).unwrap());
    }
    let holds = |host: &Netns| {
        let out = host
            .run("ip", &["-o", "-6", "addr", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet6 {vip6}/"))
    };
    let dump = || {
        logs.iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let ok = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        holds(&hosts[0]) && !holds(&hosts[1])
    });
    assert!(ok, "h1 is master over IPv6\n{}", dump());
    // The VIP is usable at once: added without duplicate address detection.
    let out = hosts[0]
        .run("ip", &["-o", "-6", "addr", "show", "dev", "eth0"])
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let vip_line = out
        .lines()
        .find(|l| l.contains(&format!("inet6 {vip6}/")))
        .unwrap();
    assert!(
        vip_line.contains("nodad") && !vip_line.contains("tentative"),
        "{vip_line}"
    );
    topo.signal(pids[0], Signal::SIGTERM).unwrap();
    let ok = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        holds(&hosts[1]) && !holds(&hosts[0])
    });
    assert!(ok, "h2 takes over after h1 stops\n{}", dump());
    assert!(
        std::fs::read_to_string(&logs[1])
            .unwrap()
            .contains("priority 0 from master 2001:db8::1"),
        "{}",
        dump()
    );
}

/// A graceful stop under load: a client keeps opening connections to
/// VIP:7000 (a listener on each holder) every 2 ms while the master stops;
/// no connect may fail. Connects use a 3 s timeout, as real clients have
/// one; a SYN lost in the handover is retransmitted by the kernel.
#[test]
fn a_graceful_handover_fails_no_connect() {
    if !require_root("a_graceful_handover_fails_no_connect") {
        return;
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut lab = Lab::with_hosts(&cluster("multicast", 3, "100ms", ""), None, 3);
    // Each holder accepts on every address at port 7000 (the VIP included).
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for host in &lab.hosts[..2] {
        let stop = Arc::clone(&stop);
        servers.push(
            host.spawn_thread(move || {
                let listener = std::net::TcpListener::bind("0.0.0.0:7000").unwrap();
                listener.set_nonblocking(true).unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => drop(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
            .unwrap(),
        );
    }
    lab.start(0);
    lab.start(1);
    lab.expect_holders(&[0], Duration::from_secs(10), "h1 is master");
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        lab.hosts[2]
            .spawn_thread(move || {
                let vip: SocketAddr = format!("{VIP}:7000").parse().unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match std::net::TcpStream::connect_timeout(&vip, Duration::from_secs(3)) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
            .unwrap()
    };
    let wait_ok = |at_least: u64| {
        Topology::wait_for(Duration::from_secs(10), Duration::from_millis(5), || {
            ok.load(Ordering::Relaxed) >= at_least
        })
    };
    assert!(wait_ok(100), "no traffic through the VIP\n{}", lab.logs());
    lab.signal(0, Signal::SIGTERM);
    lab.expect_holders(&[1], Duration::from_secs(10), "graceful handover");
    let after = ok.load(Ordering::Relaxed);
    assert!(
        wait_ok(after + 200),
        "traffic did not resume\n{}",
        lab.logs()
    );
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap().unwrap();
    for server in servers {
        server.join().unwrap().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} of {} connects failed\n{}",
        failed.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
        lab.logs()
    );
}
