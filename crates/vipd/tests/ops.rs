//! The operator's surface on a live node, in network namespaces: a VIP
//! holder running `vipd run` (proxy datapath) in front of plane stand-ins
//! (TCP echo servers), a client that never stops connecting, and a script
//! of events: `vipd verify` on the healthy cluster, a reload that adds a
//! plane and changes VRRP and proxy settings, a reload of a broken file, a
//! plane dying. After it: no connect failed, no long-lived stream was lost,
//! and `vipd status --json` and the metrics show the numbers the script
//! produced. Needs root (CI runs it as root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vipd::lab::netns::{Netns, Topology, require_root};

const VIP: &str = "198.18.0.100";

fn vipd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vipd"))
}

fn cluster(planes: &[u8], priority: u32, idle: &str) -> String {
    let mut text = format!(
        r#"[cluster]
name = "ops"

[vip]
address = "{VIP}"
interface = "eth0"
vrid = 61
advert_interval = "100ms"

[api]
datapath = "proxy"

[plane.health]
kind = "tcp"
interval = "100ms"
timeout = "80ms"
rise = 2
fall = 2

[proxy]
connect_timeout = "200ms"
idle_timeout = "{idle}"
drain_timeout = "2s"

[[nodes]]
name = "holder"
roles = ["vip"]
address = "198.18.0.1"
priority = {priority}
"#
    );
    for i in planes {
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"p{i}\"\nroles = [\"plane\"]\naddress = \"198.18.0.1{i}\"\n"
        ));
    }
    text
}

/// A TCP echo server on `address` in `host`, until `stop`.
fn echo_server(host: &Netns, address: SocketAddr, stop: Arc<AtomicBool>) {
    host.spawn_thread(move || {
        let listener = TcpListener::bind(address).unwrap();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = stream.read(&mut buf) {
                            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        // The listener closes here: new connects are refused.
    })
    .unwrap();
}

/// One round trip on a fresh connection.
fn echo_once(address: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"ping\n")?;
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf)?;
    if &buf != b"ping\n" {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    streams_lost: AtomicU64,
    stream_rounds: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// New connections every few ms, and three long-lived streams pinging.
fn client_load(
    client: &Netns,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Vec<std::thread::JoinHandle<std::io::Result<()>>> {
    let address: SocketAddr = format!("{VIP}:6443").parse().unwrap();
    let mut threads = Vec::new();
    let (s, c) = (Arc::clone(&stop), Arc::clone(&counts));
    threads.push(
        client
            .spawn_thread(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match echo_once(address) {
                        Ok(()) => c.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            c.first_error.lock().unwrap().get_or_insert(e.to_string());
                            c.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .unwrap(),
    );
    for _ in 0..3 {
        let (s, c) = (Arc::clone(&stop), Arc::clone(&counts));
        threads.push(
            client
                .spawn_thread(move || {
                    let run = || -> std::io::Result<()> {
                        let mut stream =
                            TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
                        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
                        let deadline = Instant::now() + Duration::from_secs(90);
                        let mut buf = [0u8; 6];
                        while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                            stream.write_all(b"alive\n")?;
                            stream.read_exact(&mut buf)?;
                            c.stream_rounds.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(())
                    };
                    if let Err(e) = run() {
                        c.first_error
                            .lock()
                            .unwrap()
                            .get_or_insert(format!("stream: {e}"));
                        c.streams_lost.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap(),
        );
    }
    threads
}

fn status(socket: &Path) -> serde_json::Value {
    let out = vipd()
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metrics(socket: &Path) -> String {
    let response = vipd::api::client::request(socket, "GET", "/metrics").unwrap();
    assert_eq!(response.status, 200);
    String::from_utf8(response.body).unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn backend<'a>(document: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    document["frontends"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {document:#}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `vipd run --node holder` in `holder` with its control socket at
/// `socket` and its log in `log`, and waits until it holds the VIP.
/// Returns its pid and a reader of its log.
fn start_holder(
    topo: &mut Topology,
    holder: &Netns,
    node: &str,
    config: &Path,
    socket: &Path,
    log: PathBuf,
) -> (u32, impl Fn() -> String + use<>) {
    let mut command = holder.command(env!("CARGO_BIN_EXE_vipd"));
    command
        .args(["run", "-c"])
        .arg(config)
        .args(["--node", node, "--socket"])
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let pid = topo.spawn(command).unwrap();
    let read_log = move || std::fs::read_to_string(&log).unwrap_or_default();
    let master = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        read_log().contains("VIP added")
    });
    assert!(master, "{}", read_log());
    (pid, read_log)
}

#[test]
fn reload_status_metrics_and_verify_under_load() {
    if !require_root("reload_status_metrics_and_verify_under_load") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("cluster.toml");
    let socket = dir.path().join("holder.sock");
    std::fs::write(&config, cluster(&[1, 2], 150, "1h")).unwrap();

    let servers: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    for i in 1..=3u8 {
        let host = topo.add_host(&format!("p{i}")).unwrap();
        topo.plug(
            &host,
            "eth0",
            &[format!("198.18.0.1{i}/24").parse().unwrap()],
        )
        .unwrap();
        // The apiserver, and the plane proxy vipd would run there.
        for port in [6443, 16443] {
            let address: SocketAddr = format!("198.18.0.1{i}:{port}").parse().unwrap();
            echo_server(&host, address, Arc::clone(&servers[usize::from(i - 1)]));
        }
    }
    let holder = topo.add_host("holder").unwrap();
    topo.plug(&holder, "eth0", &["198.18.0.1/24".parse().unwrap()])
        .unwrap();
    let client = topo.add_host("client").unwrap();
    topo.plug(&client, "eth0", &["198.18.0.31/24".parse().unwrap()])
        .unwrap();

    let (_, read_log) = start_holder(
        &mut topo,
        &holder,
        "holder",
        &config,
        &socket,
        dir.path().join("holder.log"),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let threads = client_load(&client, Arc::clone(&stop), Arc::clone(&counts));
    let wait_ok = |more: u64| {
        let target = counts.ok.load(Ordering::Relaxed) + more;
        let ok = Topology::wait_for(Duration::from_secs(20), Duration::from_millis(10), || {
            counts.ok.load(Ordering::Relaxed) >= target
        });
        assert!(ok, "connections stalled\n{}", read_log());
    };
    wait_ok(50);

    // `vipd verify` on the holder: everything passes.
    // `vipd verify` connects to VIP:port once per run that gets that far.
    let verify_connects = AtomicU64::new(0);
    let verify = |expect_success: bool| {
        let out = holder
            .command(env!("CARGO_BIN_EXE_vipd"))
            .args(["verify", "-c"])
            .arg(&config)
            .args(["--node", "holder", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            expect_success,
            "{}\n{}",
            text(&out),
            read_log()
        );
        if text(&out).contains("PASS  vip-port") {
            verify_connects.fetch_add(1, Ordering::Relaxed);
        }
        text(&out)
    };
    let report = verify(true);
    assert!(report.contains("PASS  vip-holders"), "{report}");
    assert!(
        report.contains("exactly one host: this node (holder)"),
        "{report}"
    );
    assert!(report.contains("PASS  vip-local"), "{report}");
    assert!(report.contains("PASS  apiserver p2"), "{report}");
    assert!(
        report.contains("PASS  crash-guard") && report.contains(&format!("guards {VIP}:6443")),
        "{report}"
    );

    // Reload: a third plane, a new priority, a new idle timeout.
    std::fs::write(&config, cluster(&[1, 2, 3], 160, "2h")).unwrap();
    let out = vipd()
        .args(["reload", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), read_log());
    let changes = text(&out);
    assert!(
        changes.contains("frontend vip: backend p3 198.18.0.13:6443 added"),
        "{changes}"
    );
    assert!(changes.contains("VRRP priority 150 -> 160"), "{changes}");
    assert!(changes.contains("[proxy] settings changed"), "{changes}");
    // The new plane takes connections; the master stayed master.
    let p3_used = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        backend(&status(&socket), "p3")["total"]
            .as_u64()
            .unwrap_or(0)
            > 5
    });
    assert!(p3_used, "{:#}", status(&socket));
    let document = status(&socket);
    assert_eq!(document["vrrp"]["state"], "master");
    assert_eq!(document["vrrp"]["configured_priority"], 160);
    assert_eq!(document["config"]["generation"], 2);

    // A broken file is refused; everything keeps running as before.
    std::fs::write(&config, cluster(&[1, 2, 3], 300, "2h")).unwrap();
    let out = vipd()
        .args(["reload", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reload refused"), "{}", text(&out));
    assert!(text(&out).contains("nodes[0].priority"), "{}", text(&out));
    let document = status(&socket);
    assert_eq!(document["config"]["generation"], 2);
    assert_eq!(document["last_reload"]["ok"], false);
    assert_eq!(document["vrrp"]["configured_priority"], 160);
    wait_ok(50);
    let report = verify(false);
    assert!(report.contains("FAIL  config"), "{report}");

    // Plane p2 dies: marked down, no client notices.
    servers[1].store(true, Ordering::Relaxed);
    let down = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        backend(&status(&socket), "p2")["healthy"] == false
    });
    assert!(down, "{:#}", status(&socket));
    wait_ok(50);
    // Repair the file so verify judges only the plane.
    std::fs::write(&config, cluster(&[1, 2, 3], 160, "2h")).unwrap();
    let out = vipd()
        .args(["reload", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing changed"), "{}", text(&out));
    let report = verify(false);
    assert!(report.contains("FAIL  apiserver p2"), "{report}");
    assert!(report.contains("PASS  apiserver p3"), "{report}");

    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    let (ok, failed) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} connects failed, first: {:?}\n{}",
        ok + failed,
        counts.first_error.lock().unwrap(),
        read_log()
    );
    assert_eq!(
        counts.streams_lost.load(Ordering::Relaxed),
        0,
        "{:?}",
        counts.first_error.lock().unwrap()
    );
    assert!(counts.stream_rounds.load(Ordering::Relaxed) > 30);

    // The numbers: every client connection (short ones, the three streams,
    // verify's) was accepted once; reloads 2 ok, 1 refused.
    let ok = ok + verify_connects.load(Ordering::Relaxed);
    let document = status(&socket);
    let frontend = &document["frontends"][0];
    assert_eq!(
        frontend["accepted"].as_u64().unwrap(),
        ok + 3,
        "{frontend:#}"
    );
    assert_eq!(frontend["refused"], 0);
    let per_backend: u64 = frontend["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_u64().unwrap())
        .sum();
    assert_eq!(per_backend, ok + 3);
    assert_eq!(document["config"]["generation"], 3);
    let m = metrics(&socket);
    assert_eq!(
        sample(&m, r#"vipd_vrrp_state{vrid="61",state="master"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"vipd_vrrp_state{vrid="61",state="backup"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"vipd_vrrp_priority{vrid="61",kind="configured"}"#),
        Some(160.0)
    );
    assert_eq!(sample(&m, r#"vipd_reloads_total{result="ok"}"#), Some(2.0));
    assert_eq!(
        sample(&m, r#"vipd_reloads_total{result="failed"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&m, r#"vipd_config_generation"#), Some(3.0));
    assert_eq!(
        sample(&m, r#"vipd_frontend_connections_total{frontend="vip"}"#),
        Some((ok + 3) as f64)
    );
    assert_eq!(
        sample(
            &m,
            r#"vipd_backend_up{frontend="vip",backend="p2",address="198.18.0.12:6443"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"vipd_backend_up{frontend="vip",backend="p3",address="198.18.0.13:6443"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"vipd_vrrp_transitions_total{vrid="61",to="master",reason="master_down_timer_expired"}"#
        ),
        Some(1.0),
        "{m}"
    );
    let sent = sample(&m, r#"vipd_vrrp_adverts_sent_total{vrid="61"}"#).unwrap();
    assert!(sent > 10.0, "{sent}");
    for server in &servers {
        server.store(true, Ordering::Relaxed);
    }
}

/// Whether the crash guard's table is loaded in `host`.
fn guard_loaded(host: &Netns) -> bool {
    host.run("nft", &["list", "table", "inet", "vipd_guard"])
        .unwrap()
        .status
        .success()
}

/// A connect from `client` to VIP:6443 that gives up after 1.5 s.
fn connect_vip(client: &Netns) -> std::io::Result<TcpStream> {
    let address: SocketAddr = format!("{VIP}:6443").parse().unwrap();
    client
        .enter(|| TcpStream::connect_timeout(&address, Duration::from_millis(1500)))
        .unwrap()
}

/// One plane (echo servers as apiserver and plane proxy), a holder and a
/// client on one bridge, and `cluster_text` written as the cluster file.
struct OnePlane {
    topo: Topology,
    dir: tempfile::TempDir,
    config: PathBuf,
    holder: Netns,
    client: Netns,
    stop: Arc<AtomicBool>,
}

impl OnePlane {
    fn new(cluster_text: &str) -> Self {
        let mut topo = Topology::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, cluster_text).unwrap();
        let plane = topo.add_host("p1").unwrap();
        topo.plug(&plane, "eth0", &["198.18.0.11/24".parse().unwrap()])
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        for port in [6443, 16443] {
            let address: SocketAddr = format!("198.18.0.11:{port}").parse().unwrap();
            echo_server(&plane, address, Arc::clone(&stop));
        }
        let holder = topo.add_host("holder").unwrap();
        topo.plug(&holder, "eth0", &["198.18.0.1/24".parse().unwrap()])
            .unwrap();
        let client = topo.add_host("client").unwrap();
        topo.plug(&client, "eth0", &["198.18.0.31/24".parse().unwrap()])
            .unwrap();
        Self {
            topo,
            dir,
            config,
            holder,
            client,
            stop,
        }
    }
}

#[test]
fn a_killed_proxy_holder_leaves_no_reset_behind() {
    if !require_root("a_killed_proxy_holder_leaves_no_reset_behind") {
        return;
    }
    use nix::sys::signal::Signal;
    let OnePlane {
        mut topo,
        dir,
        config,
        holder,
        client,
        stop,
    } = OnePlane::new(&cluster(&[1], 150, "1h"));
    let start = |topo: &mut Topology, run: &str| {
        start_holder(
            topo,
            &holder,
            "holder",
            &config,
            &dir.path().join(format!("holder-{run}.sock")),
            dir.path().join(format!("holder-{run}.log")),
        )
    };

    // A stop removes the guard, after the VIP.
    let (pid, read_log) = start(&mut topo, "stopped");
    assert!(guard_loaded(&holder), "{}", read_log());
    connect_vip(&client).expect("the proxy answers");
    topo.signal(pid, Signal::SIGTERM).unwrap();
    let gone = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        !guard_loaded(&holder)
    });
    assert!(gone, "the guard outlived a stop\n{}", read_log());

    // A kill leaves the VIP and the guard: connects go unanswered, not refused.
    let (pid, read_log) = start(&mut topo, "killed");
    assert!(guard_loaded(&holder), "{}", read_log());
    connect_vip(&client).expect("the proxy answers");
    topo.signal(pid, Signal::SIGKILL).unwrap();
    let vip_stays = || {
        let out = holder
            .run("ip", &["-o", "addr", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    };
    let unanswered = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        connect_vip(&client).is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    });
    assert!(unanswered, "no timeout after the kill\n{}", read_log());
    assert!(
        vip_stays(),
        "the VIP left with the process: nothing to guard"
    );
    let counter = holder
        .run(
            "nft",
            &["list", "counter", "inet", "vipd_guard", "resets_dropped"],
        )
        .unwrap();
    let counter = String::from_utf8_lossy(&counter.stdout).into_owned();
    assert!(
        counter.contains("packets ") && !counter.contains("packets 0 "),
        "the guard counted no reset: {counter}"
    );

    // Without the guard the same connect is refused at once: the guard is
    // what made the difference.
    let removed = holder
        .run("nft", &["delete", "table", "inet", "vipd_guard"])
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let refused = connect_vip(&client).expect_err("nothing listens on the VIP");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(vip_stays());
    // And `vipd verify` says the guard is missing.
    let out = holder
        .command(env!("CARGO_BIN_EXE_vipd"))
        .args(["verify", "-c"])
        .arg(&config)
        .args(["--node", "holder", "--socket"])
        .arg(dir.path().join("holder-killed.sock"))
        .output()
        .unwrap();
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("FAIL  crash-guard") && report.contains("vipd_guard is missing"),
        "{report}"
    );
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_holder_the_vip_left_closes_its_sessions() {
    if !require_root("a_holder_the_vip_left_closes_its_sessions") {
        return;
    }
    // A second holder with a higher priority, started later: it preempts.
    let OnePlane {
        mut topo,
        dir,
        config,
        holder,
        client,
        stop,
    } = OnePlane::new(
        &(cluster(&[1], 150, "1h")
            + "\n[[nodes]]\nname = \"holder2\"\nroles = [\"vip\"]\naddress = \"198.18.0.2\"\npriority = 200\n"),
    );
    let holder2 = topo.add_host("holder2").unwrap();
    topo.plug(&holder2, "eth0", &["198.18.0.2/24".parse().unwrap()])
        .unwrap();

    let socket = dir.path().join("holder.sock");
    let (_, read_log) = start_holder(
        &mut topo,
        &holder,
        "holder",
        &config,
        &socket,
        dir.path().join("holder.log"),
    );
    // A session through the first holder, kept open.
    let mut stream = connect_vip(&client).expect("the proxy answers");
    stream.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.read_exact(&mut buf).unwrap();
    let active = || {
        status(&socket)["frontends"][0]["active"]
            .as_u64()
            .unwrap_or(99)
    };
    assert_eq!(active(), 1, "{}", read_log());

    // The second holder takes the VIP over (start_holder waits for it).
    let (_, read_log2) = start_holder(
        &mut topo,
        &holder2,
        "holder2",
        &config,
        &dir.path().join("holder2.sock"),
        dir.path().join("holder2.log"),
    );
    // drain_timeout (2 s) after the VIP left, the session is closed here.
    let closed = Topology::wait_for(Duration::from_secs(8), Duration::from_millis(50), || {
        active() == 0
    });
    assert!(
        closed,
        "the session outlived the VIP\n{}\nholder2:\n{}",
        read_log(),
        read_log2()
    );
    assert!(
        read_log().contains("the VIP is on another holder: closing the sessions still open here"),
        "{}",
        read_log()
    );
    stop.store(true, Ordering::Relaxed);
}
