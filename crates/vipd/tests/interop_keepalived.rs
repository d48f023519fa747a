//! vipd and keepalived 2.2.7 in one VRID: one vipd node and one keepalived
//! node, each in its own network namespace on one bridge, elect the
//! higher-priority router whichever implementation it is, hand the VIP over
//! when either dies (SIGKILL) or stops (SIGTERM), and refuse each other when
//! they are misconfigured (VRRPv3 checksum convention, VRRP version).
//! Needs root and /usr/sbin/keepalived (CI runs it as root).
//!
//! keepalived quirks these tests work around (shared/lab-rules.md):
//! - it forks a VRRP child; the child gets SIGTERM when the parent dies
//!   (PR_SET_PDEATHSIG), so SIGKILL of the parent alone is a graceful stop.
//!   A real crash is simulated by stopping the parent (SIGSTOP, so it cannot
//!   respawn), then SIGKILL of the child, then of the parent;
//! - every instance gets its own pid files (`-p -r -c -b`), and nothing is
//!   restarted in a namespace until `ip netns pids` shows it empty;
//! - `state MASTER` is not honoured below priority 255, so it starts BACKUP;
//! - after SIGKILL it leaves the VIP on the interface.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vipd::lab::netns::{Netns, Topology, require_root};

const VIP: &str = "198.18.0.100";
const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// vipd runs on h1 (198.18.0.1), keepalived on h2 (198.18.0.2).
const VIPD: usize = 0;
const KA: usize = 1;
const ADDRESSES: [&str; 2] = ["198.18.0.1", "198.18.0.2"];
const PASSWORD: &str = "s3cr3t";

/// Generous bound for anything that is not itself a timing promise.
const GENEROUS: Duration = Duration::from_secs(10);

fn vipd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vipd")
}

/// The VRRP settings both implementations are given.
#[derive(Debug, Clone, Copy)]
struct Vrrp {
    version: u32,
    /// Advert interval in milliseconds (v2: whole seconds).
    interval_ms: u64,
    unicast: bool,
    /// VRRPv2 PASS authentication with [`PASSWORD`].
    pass: bool,
}

const V2_PASS: Vrrp = Vrrp {
    version: 2,
    interval_ms: 1000,
    unicast: false,
    pass: true,
};
const V3_MULTICAST: Vrrp = Vrrp {
    version: 3,
    interval_ms: 100,
    unicast: false,
    pass: false,
};
const V3_UNICAST: Vrrp = Vrrp {
    version: 3,
    interval_ms: 100,
    unicast: true,
    pass: false,
};

impl Vrrp {
    /// How long a graceful stop may take to hand over: priority 0 makes the
    /// backup take over after Skew_Time (under one advert interval), so a
    /// few intervals plus process start-up slack.
    fn handover_bound(&self) -> Duration {
        if self.interval_ms >= 1000 {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(2)
        }
    }
}

/// vipd's cluster file: h1 is the vipd node, h2 stands for the keepalived
/// router (so unicast peers and priorities are derived as for any holder).
fn vipd_cluster(v: Vrrp, vipd_priority: u8, ka_priority: u8, checksum: Option<&str>) -> String {
    let interval = if v.interval_ms.is_multiple_of(1000) {
        format!("{}s", v.interval_ms / 1000)
    } else {
        format!("{}ms", v.interval_ms)
    };
    let mode = if v.unicast { "unicast" } else { "multicast" };
    let auth = if v.pass {
        "auth_pass = { secret = \"vrrp\" }\n"
    } else {
        ""
    };
    let checksum = checksum
        .map(|c| format!("checksum = \"{c}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[cluster]
name = "interop-keepalived"

[vip]
address = "{VIP}"
interface = "eth0"
vrid = 51
version = {version}
advert_interval = "{interval}"
mode = "{mode}"
{auth}{checksum}
[plane.health]
insecure_skip_verify = true

[[nodes]]
name = "h1"
roles = ["vip"]
address = "{a1}"
priority = {vipd_priority}

[[nodes]]
name = "h2"
roles = ["vip"]
address = "{a2}"
priority = {ka_priority}

[[nodes]]
name = "p1"
roles = ["plane"]
address = "198.18.0.11"
"#,
        version = v.version,
        a1 = ADDRESSES[VIPD],
        a2 = ADDRESSES[KA],
    )
}

/// keepalived's configuration for the same VRID on h2.
fn keepalived_conf(v: Vrrp, priority: u8) -> String {
    let advert = if v.interval_ms.is_multiple_of(1000) {
        format!("{}", v.interval_ms / 1000)
    } else {
        format!("{}", v.interval_ms as f64 / 1000.0)
    };
    let unicast = if v.unicast {
        format!(
            "    unicast_src_ip {}\n    unicast_peer {{\n        {}\n    }}\n",
            ADDRESSES[KA], ADDRESSES[VIPD]
        )
    } else {
        String::new()
    };
    let auth = if v.pass {
        format!(
            "    authentication {{\n        auth_type PASS\n        auth_pass {PASSWORD}\n    }}\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"global_defs {{
    router_id interop_ka
    vrrp_version {version}
    vrrp_garp_master_delay 0
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {advert}
{unicast}{auth}    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
}}
"#,
        version = v.version,
    )
}

/// Processes of a namespace that are still running (zombies excluded).
fn live_pids(netns: &Netns) -> Vec<i32> {
    let out = Command::new("ip")
        .args(["netns", "pids", netns.name()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| stat_state(&s) != Some('Z'))
                .unwrap_or(false)
        })
        .collect()
}

/// The state letter of a /proc/PID/stat line (after the `(comm)` field).
fn stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn has_vip(host: &Netns) -> bool {
    let out = host
        .run("ip", &["-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One vipd node (h1) and one keepalived node (h2) on a bridge.
struct Lab {
    topo: Topology,
    hosts: Vec<Netns>,
    dir: tempfile::TempDir,
    vipd_pid: Option<u32>,
    ka_pid: Option<u32>,
    ka_starts: u32,
}

impl Lab {
    fn new(cluster: &str, keepalived: &str) -> Lab {
        assert!(
            Path::new(KEEPALIVED).exists(),
            "{KEEPALIVED} is needed for the interop tests"
        );
        let mut topo = Topology::new().unwrap();
        let mut hosts = Vec::new();
        for (i, name) in ["h1", "h2"].iter().enumerate() {
            let host = topo.add_host(name).unwrap();
            topo.plug(
                &host,
                "eth0",
                &[format!("{}/24", ADDRESSES[i]).parse().unwrap()],
            )
            .unwrap();
            hosts.push(host);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.toml"), cluster).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("secrets.toml");
            std::fs::write(&path, format!("vrrp = \"{PASSWORD}\"\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(&conf, keepalived).unwrap();
        let test = Command::new(KEEPALIVED)
            .arg(format!(
                "--config-test={}",
                dir.path().join("test.log").display()
            ))
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "keepalived -t refuses the configuration:\n{keepalived}\n{}{}",
            read(&dir.path().join("test.log")),
            String::from_utf8_lossy(&test.stderr)
        );
        Lab {
            topo,
            hosts,
            dir,
            vipd_pid: None,
            ka_pid: None,
            ka_starts: 0,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn vipd_log(&self) -> String {
        read(&self.file("vipd.log"))
    }

    fn ka_log(&self) -> String {
        read(&self.file("keepalived.log"))
    }

    fn name(i: usize) -> &'static str {
        if i == VIPD { "vipd" } else { "keepalived" }
    }

    fn has_vip(&self, i: usize) -> bool {
        has_vip(&self.hosts[i])
    }

    fn holders(&self) -> Vec<&'static str> {
        (0..2)
            .filter(|&i| self.has_vip(i))
            .map(Self::name)
            .collect()
    }

    /// Panics with the state of both hosts and both logs.
    fn fail(&self, what: &str) -> ! {
        let addrs: String = self
            .hosts
            .iter()
            .map(|h| {
                let out = h.run("ip", &["-o", "-4", "addr", "show"]).unwrap();
                format!("{}:\n{}", h.name(), String::from_utf8_lossy(&out.stdout))
            })
            .collect();
        panic!(
            "{what}\nVIP holders now: {:?}\n{addrs}\n--- vipd log ({}) ---\n{}\n--- keepalived log ({}) ---\n{}",
            self.holders(),
            self.file("vipd.log").display(),
            self.vipd_log(),
            self.file("keepalived.log").display(),
            self.ka_log()
        );
    }

    /// Waits (bounded) until `condition` holds, or fails with the logs.
    fn expect(&self, within: Duration, what: &str, mut condition: impl FnMut(&Lab) -> bool) {
        if !Topology::wait_for(within, Duration::from_millis(10), || condition(self)) {
            self.fail(&format!("{what} (waited {within:?})"));
        }
    }

    fn expect_holders(&self, expected: &[usize], within: Duration, what: &str) {
        let expected: Vec<&str> = expected.iter().map(|&i| Self::name(i)).collect();
        self.expect(
            within,
            &format!("{what}: expected holders {expected:?}"),
            |lab| lab.holders() == expected,
        );
    }

    /// Waits until nothing runs in host `i`'s namespace any more.
    fn wait_namespace_empty(&self, i: usize, what: &str) {
        let host = &self.hosts[i];
        self.expect(
            GENEROUS,
            &format!("{what}: namespace still has processes"),
            |_| live_pids(host).is_empty(),
        );
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(name))
            .unwrap()
    }

    fn start(&mut self, i: usize) {
        // A process still exiting in this namespace (keepalived's VRRP child
        // in particular) would interfere with the new one.
        self.wait_namespace_empty(i, &format!("before starting {}", Self::name(i)));
        if i == VIPD {
            let log = self.log_file("vipd.log");
            let mut command = self.hosts[VIPD].command(vipd_bin());
            command
                .args(["run", "-c"])
                .arg(self.file("cluster.toml"))
                .args(["--node", "h1"])
                .arg("--socket")
                .arg(self.file("vipd.sock"))
                .env("VIPD_LOG", "debug")
                .stdout(Stdio::null())
                .stderr(log);
            self.vipd_pid = Some(self.topo.spawn(command).unwrap());
        } else {
            let log = self.log_file("keepalived.log");
            let err = log.try_clone().unwrap();
            // Fresh pid files for every start: the parent killed earlier is
            // a zombie until the topology reaps it, and keepalived would
            // take its pid file for a running daemon.
            self.ka_starts += 1;
            let n = self.ka_starts;
            let mut command = self.hosts[KA].command(KEEPALIVED);
            // Foreground, console log, VRRP only, no respawn, no syslog;
            // pid files of its own.
            command
                .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
                .args(["--dont-respawn", "--no-syslog", "-f"])
                .arg(self.file("keepalived.conf"))
                .arg("-p")
                .arg(self.file(&format!("keepalived-{n}.pid")))
                .arg("-r")
                .arg(self.file(&format!("vrrp-{n}.pid")))
                .arg("-c")
                .arg(self.file(&format!("checkers-{n}.pid")))
                .arg("-b")
                .arg(self.file(&format!("bfd-{n}.pid")))
                .stdout(log)
                .stderr(err);
            self.ka_pid = Some(self.topo.spawn(command).unwrap());
        }
    }

    /// SIGKILL: the process vanishes without a word.
    fn kill(&mut self, i: usize) {
        if i == VIPD {
            let pid = self.vipd_pid.take().unwrap();
            self.topo.signal(pid, Signal::SIGKILL).unwrap();
        } else {
            let parent = self.ka_pid.take().unwrap();
            // The VRRP child must be running, or this is not a crash of the
            // router (the child is what holds the VRRP state).
            let host = &self.hosts[KA];
            self.expect(GENEROUS, "keepalived has its VRRP child", |_| {
                live_pids(host).iter().any(|&p| p != parent as i32)
            });
            // Stop the parent first: killed alone, it would take the child
            // down gracefully (PDEATHSIG) or respawn it.
            self.topo.signal(parent, Signal::SIGSTOP).unwrap();
            for pid in live_pids(&self.hosts[KA]) {
                if pid != parent as i32 && comm(pid) == "keepalived" {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            self.topo.signal(parent, Signal::SIGKILL).unwrap();
        }
        self.wait_namespace_empty(i, &format!("{} after SIGKILL", Self::name(i)));
    }

    /// SIGTERM: a graceful stop (priority 0, VIP removed).
    fn terminate(&mut self, i: usize) {
        let pid = if i == VIPD {
            self.vipd_pid.take()
        } else {
            self.ka_pid.take()
        };
        self.topo.signal(pid.unwrap(), Signal::SIGTERM).unwrap();
    }
}

impl Drop for Lab {
    /// `INTEROP_LOGS=1` prints both logs of a passing test too (with
    /// `--nocapture`); a failing one always carries them in its panic.
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var("INTEROP_LOGS").is_ok_and(|v| v == "1") {
            eprintln!(
                "--- vipd log ---\n{}\n--- keepalived log ---\n{}",
                self.vipd_log(),
                self.ka_log()
            );
        }
    }
}

/// The whole exchange for one VRRP setting, with vipd or keepalived as the
/// higher-priority router.
fn interop(v: Vrrp, vipd_high: bool) {
    let (vipd_priority, ka_priority) = if vipd_high { (150, 100) } else { (100, 150) };
    let (high, low) = if vipd_high { (VIPD, KA) } else { (KA, VIPD) };
    let mut lab = Lab::new(
        &vipd_cluster(v, vipd_priority, ka_priority, None),
        &keepalived_conf(v, ka_priority),
    );
    let (high_name, low_name) = (Lab::name(high), Lab::name(low));

    // The lower-priority router alone becomes master after Master_Down_Interval.
    lab.start(low);
    lab.expect_holders(
        &[low],
        GENEROUS,
        &format!("{low_name} alone becomes master"),
    );

    // The higher-priority router preempts, whichever implementation it is.
    lab.start(high);
    lab.expect_holders(
        &[high],
        GENEROUS,
        &format!("{high_name} (higher priority) preempts {low_name}"),
    );
    // And it stays so: no flapping over a few advert intervals.
    std::thread::sleep(Duration::from_millis(v.interval_ms * 3));
    if lab.holders() != [high_name] {
        lab.fail(&format!("{high_name} stays the only master"));
    }

    // SIGKILL of the master: the backup takes over on its own. The dead
    // router may leave the VIP behind (both do): only the survivor is checked.
    let before_kill = lab.vipd_log().len();
    lab.kill(high);
    lab.expect(
        GENEROUS,
        &format!("{low_name} takes over after SIGKILL of {high_name}"),
        |lab| lab.has_vip(low),
    );
    if low == VIPD {
        // A crash, not a stop: keepalived sent no priority 0, vipd waited
        // out Master_Down_Interval.
        let since = lab.vipd_log()[before_kill..].to_owned();
        if !since.contains("reason=master down timer expired") || since.contains("priority 0") {
            lab.fail("vipd took over by Master_Down_Interval after keepalived's SIGKILL");
        }
    }

    // Restarted, the higher priority takes the VIP back and the other lets go
    // (each removes a VIP a crashed run left at start).
    lab.start(high);
    lab.expect_holders(
        &[high],
        GENEROUS,
        &format!("restarted {high_name} takes the VIP back"),
    );

    // SIGTERM of the master: priority 0, a prompt handover, the VIP leaves it.
    let stopped_at = Instant::now();
    lab.terminate(high);
    lab.expect(
        v.handover_bound(),
        &format!("{low_name} takes over promptly after SIGTERM of {high_name}, which lets go"),
        |lab| lab.has_vip(low) && !lab.has_vip(high),
    );
    let handover = stopped_at.elapsed();
    lab.wait_namespace_empty(high, &format!("{high_name} exits after SIGTERM"));
    if high == KA {
        let log = lab.vipd_log();
        if !log.contains(&format!("priority 0 from master {}", ADDRESSES[KA])) {
            lab.fail("vipd saw keepalived's priority-0 advert");
        }
    } else {
        if !lab.vipd_log().contains("VRRP instance stopped") {
            lab.fail("vipd stopped cleanly");
        }
        if !lab
            .ka_log()
            .contains("Backup received priority 0 advertisement")
        {
            lab.fail("keepalived saw vipd's priority-0 advert");
        }
    }
    eprintln!("{high_name} -> {low_name} graceful handover: {handover:?}");

    // The survivor stays master alone.
    lab.expect_holders(&[low], GENEROUS, &format!("{low_name} holds the VIP alone"));
}

#[test]
fn v2_pass_auth_vipd_high() {
    if !require_root("v2_pass_auth_vipd_high") {
        return;
    }
    interop(V2_PASS, true);
}

#[test]
fn v2_pass_auth_keepalived_high() {
    if !require_root("v2_pass_auth_keepalived_high") {
        return;
    }
    interop(V2_PASS, false);
}

#[test]
fn v3_multicast_vipd_high() {
    if !require_root("v3_multicast_vipd_high") {
        return;
    }
    interop(V3_MULTICAST, true);
}

#[test]
fn v3_multicast_keepalived_high() {
    if !require_root("v3_multicast_keepalived_high") {
        return;
    }
    interop(V3_MULTICAST, false);
}

#[test]
fn v3_unicast_vipd_high() {
    if !require_root("v3_unicast_vipd_high") {
        return;
    }
    interop(V3_UNICAST, true);
}

#[test]
fn v3_unicast_keepalived_high() {
    if !require_root("v3_unicast_keepalived_high") {
        return;
    }
    interop(V3_UNICAST, false);
}

/// Both routers hold the VIP, and keep holding it for `hold`.
fn expect_split_brain(lab: &Lab, hold: Duration, what: &str) {
    lab.expect_holders(&[VIPD, KA], GENEROUS, what);
    std::thread::sleep(hold);
    if lab.holders() != ["vipd", "keepalived"] {
        lab.fail(&format!("{what}: both stay master"));
    }
}

/// vipd set to RFC 9568's checksum (no pseudo-header) against a keepalived
/// with its default (pseudo-header): neither accepts the other's adverts, so
/// both become master. vipd counts the drops and names keepalived's convention.
#[test]
fn v3_checksum_rfc9568_against_default_keepalived_is_not_obeyed() {
    if !require_root("v3_checksum_rfc9568_against_default_keepalived_is_not_obeyed") {
        return;
    }
    // keepalived higher: if vipd accepted its adverts it would stay backup.
    let mut lab = Lab::new(
        &vipd_cluster(V3_MULTICAST, 100, 150, Some("rfc9568")),
        &keepalived_conf(V3_MULTICAST, 150),
    );
    lab.start(KA);
    lab.expect_holders(&[KA], GENEROUS, "keepalived alone becomes master");
    lab.start(VIPD);
    expect_split_brain(
        &lab,
        Duration::from_secs(1),
        "vipd (rfc9568) ignores keepalived's pseudo-header checksums",
    );
    lab.expect(GENEROUS, "vipd logs the checksum drops", |lab| {
        lab.vipd_log().contains("dropped VRRP packet")
    });
    let log = lab.vipd_log();
    let drops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropped VRRP packet"))
        .collect();
    // The reason names the convention the peer uses.
    if !drops
        .iter()
        .any(|l| l.contains("bad_checksum_peer_uses_pseudo_header") && l.contains(ADDRESSES[KA]))
    {
        lab.fail("vipd's drop log names keepalived's pseudo-header convention");
    }
    if drops.iter().any(|l| !l.contains("bad_checksum")) {
        lab.fail("vipd drops keepalived's adverts for their checksum only");
    }
    // And keepalived refuses vipd's: the misconfiguration is symmetric.
    lab.expect(
        GENEROUS,
        "keepalived logs vipd's checksums as invalid",
        |lab| lab.ka_log().contains("Invalid VRRPv3 checksum"),
    );
    // Counted, not logged per packet: a later line carries a total above 1.
    lab.expect(GENEROUS, "vipd counts the drops (total > 1)", |lab| {
        lab.vipd_log().lines().any(|l| {
            l.contains("bad_checksum_peer_uses_pseudo_header")
                && l.split_whitespace()
                    .filter_map(|w| w.strip_prefix("total="))
                    .any(|n| n.parse::<u64>().is_ok_and(|n| n > 1))
        })
    });
}

/// vipd on v3 and keepalived on v2 in one VRID: vipd drops (and counts)
/// keepalived's v2 adverts instead of obeying them, so both are master.
///
/// vipd advertises every second here, like keepalived: at 100 ms, vipd's
/// adverts keep re-arming keepalived's advert timer (each packet, even one
/// it rejects for its version, wakes its read loop), so a keepalived v2
/// master stops advertising altogether and vipd, once master, hears nothing
/// to drop. Seen with tcpdump: 0 adverts from keepalived in 4 s while vipd
/// sent at 100 ms; 1 a second without vipd.
#[test]
fn mixed_versions_vipd_v3_drops_keepalived_v2() {
    if !require_root("mixed_versions_vipd_v3_drops_keepalived_v2") {
        return;
    }
    let vipd_v3 = Vrrp {
        version: 3,
        interval_ms: 1000,
        unicast: false,
        pass: false,
    };
    let keepalived_v2 = Vrrp {
        pass: false,
        ..V2_PASS
    };
    // keepalived higher: if vipd accepted its adverts it would stay backup.
    let mut lab = Lab::new(
        &vipd_cluster(vipd_v3, 100, 150, None),
        &keepalived_conf(keepalived_v2, 150),
    );
    lab.start(KA);
    lab.expect_holders(&[KA], GENEROUS, "keepalived (v2) alone becomes master");
    lab.start(VIPD);
    // vipd listens for Master_Down_Interval (about 3.6 s): keepalived's
    // adverts (one a second) arrive all that time, and must not hold it back.
    expect_split_brain(
        &lab,
        Duration::from_secs(2),
        "vipd (v3) ignores keepalived's v2 adverts",
    );
    let log = lab.vipd_log();
    let drops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropped VRRP packet"))
        .collect();
    if !drops
        .iter()
        .any(|l| l.contains("wrong_version") && l.contains(ADDRESSES[KA]))
    {
        lab.fail("vipd logs keepalived's adverts as dropped for their version");
    }
    // Counted: a later line (at most one a second) carries a total above 1.
    let counted = drops.iter().any(|l| {
        l.contains("wrong_version")
            && l.split_whitespace()
                .filter_map(|w| w.strip_prefix("total="))
                .any(|n| n.parse::<u64>().is_ok_and(|n| n > 1))
    });
    if !counted {
        lab.fail("vipd counts the wrong_version drops (a total above 1)");
    }
    if log.contains("reason=higher priority") {
        lab.fail("vipd never yields to keepalived's v2 adverts");
    }
}
