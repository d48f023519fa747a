//! The proxy as the daemon runs it, in network namespaces: three planes
//! with stand-in kube-apiservers (HTTPS, a lab CA), a worker running
//! `vipd run` in node-local mode (127.0.0.1:6443). A client on the worker
//! keeps making HTTPS requests through it while a plane's apiserver dies and
//! while a plane's link goes down: no request may fail, and the dead plane
//! must be marked down. Needs root (CI runs it as root).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use vipd::health::probe::{HttpsProbe, Probe};
use vipd::health::tls::client_config;
use vipd::lab::apiserver::InNamespace;
use vipd::lab::netns::{Netns, Topology, require_root};
use vipd::lab::pki::LabCa;

/// A failed request: when it started, when it ended, why.
type Failure = (Instant, Instant, String);

/// HTTPS GET /readyz through the worker's local proxy, every few ms, until
/// told to stop; counts successes and keeps the failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<Failure>>>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

fn load(worker: &Netns, ca_path: std::path::PathBuf) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failures));
    let thread = worker
        .spawn_thread(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let probe = Probe::Https(HttpsProbe {
                    address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6443),
                    path: "/readyz".into(),
                    server_name: ServerName::try_from("kubernetes").unwrap(),
                    tls: client_config(Some(&ca_path)).unwrap(),
                });
                let deadline = Instant::now() + Duration::from_secs(90);
                while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    match probe.run(Duration::from_secs(5)).await {
                        Ok(_) => {
                            o.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            f.lock()
                                .unwrap()
                                .push((started, Instant::now(), err.to_string()));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        })
        .unwrap();
    Load {
        stop,
        ok,
        failures,
        thread,
    }
}

#[test]
fn a_dying_plane_costs_no_request_through_the_node_local_proxy() {
    if !require_root("a_dying_plane_costs_no_request_through_the_node_local_proxy") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new("proxy e2e CA").unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.certificate_pem()).unwrap();
    let cluster = format!(
        r#"[cluster]
name = "proxy-e2e"

[vip]
address = "198.18.0.100"
interface = "eth0"
vrid = 53

[proxy]
worker_local = true
connect_timeout = "200ms"

[plane.health]
ca_file = "{ca}"
server_name = "kubernetes"
interval = "100ms"
timeout = "80ms"
rise = 2
fall = 2

[[nodes]]
name = "holder"
roles = ["vip"]
address = "198.18.0.1"
priority = 100

[[nodes]]
name = "plane-1"
roles = ["plane"]
address = "198.18.0.11"

[[nodes]]
name = "plane-2"
roles = ["plane"]
address = "198.18.0.12"

[[nodes]]
name = "plane-3"
roles = ["plane"]
address = "198.18.0.13"

[[nodes]]
name = "worker-1"
roles = ["worker"]
address = "198.18.0.21"
"#,
        ca = ca_path.display()
    );
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster).unwrap();

    let mut planes = Vec::new();
    let mut plane_hosts = Vec::new();
    for i in 1..=3 {
        let host = topo.add_host(&format!("plane{i}")).unwrap();
        topo.plug(
            &host,
            "eth0",
            &[format!("198.18.0.1{i}/24").parse().unwrap()],
        )
        .unwrap();
        let address = SocketAddr::new(format!("198.18.0.1{i}").parse().unwrap(), 6443);
        planes.push(InNamespace::start(&host, &ca, address).unwrap());
        plane_hosts.push(host);
    }
    let worker = topo.add_host("worker").unwrap();
    topo.plug(&worker, "eth0", &["198.18.0.21/24".parse().unwrap()])
        .unwrap();
    let log = dir.path().join("worker.log");
    let mut command = worker.command(env!("CARGO_BIN_EXE_vipd"));
    command
        .args(["run", "-c"])
        .arg(&config)
        .args(["--node", "worker-1", "--threads", "2"])
        .arg("--socket")
        .arg(dir.path().join("worker.sock"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    topo.spawn(command).unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let listening = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        read_log().matches("proxy frontend listening").count() == 2
    });
    assert!(listening, "{}", read_log());

    let load = load(&worker, ca_path.clone());
    let wait_ok = |at_least: u64| {
        let ok = Topology::wait_for(Duration::from_secs(20), Duration::from_millis(10), || {
            load.ok.load(Ordering::Relaxed) >= at_least
        });
        assert!(
            ok,
            "requests stalled at {}\n{}",
            load.ok.load(Ordering::Relaxed),
            read_log()
        );
    };
    wait_ok(50);

    // plane-1's apiserver dies: connections to it are refused.
    let killed_at = Instant::now();
    planes[0].kill();
    // Each fault from the moment its command starts to the moment it returns.
    let mut faults = vec![(killed_at, Instant::now())];
    let marked = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        read_log().contains("backend plane-1 is down")
    });
    assert!(marked, "{}", read_log());
    // interval 100 ms x fall 2, plus a probe timeout and scheduling slack.
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "marked down after {:?}",
        killed_at.elapsed()
    );
    let before = load.ok.load(Ordering::Relaxed);
    wait_ok(before + 50);

    // plane-2's link goes down: connects to it time out.
    let cut_at = Instant::now();
    plane_hosts[1].ip(&["link", "set", "eth0", "down"]).unwrap();
    faults.push((cut_at, Instant::now()));
    let marked = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        read_log().contains("backend plane-2 is down")
    });
    assert!(marked, "{}", read_log());
    let before = load.ok.load(Ordering::Relaxed);
    wait_ok(before + 50);

    load.stop.store(true, Ordering::Relaxed);
    load.thread.join().unwrap().unwrap();
    // The one request in flight while a plane dies may have its backend
    // connection on that plane already: no L4 proxy can move it. Every
    // request that started after a fault took effect (or ended before it)
    // must succeed: connects to the dead plane are retried on another.
    let failures = load.failures.lock().unwrap();
    let (in_flight, failed): (Vec<&Failure>, Vec<&Failure>) =
        failures.iter().partition(|(started, ended, _)| {
            faults
                .iter()
                .any(|(from, to)| started <= to && ended >= from)
        });
    assert!(
        in_flight.len() <= faults.len(),
        "{} failures in flight at {} faults",
        in_flight.len(),
        faults.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed (besides {} in flight at a fault): {:?}\n{}",
        failed.len(),
        load.ok.load(Ordering::Relaxed) + failures.len() as u64,
        in_flight.len(),
        failed
            .iter()
            .map(|(started, ended, why)| format!(
                "{why} (started {:?} after the first fault, took {:?}; faults at {:?})",
                started.saturating_duration_since(faults[0].0),
                ended.duration_since(*started),
                faults
                    .iter()
                    .map(|(from, to)| (
                        from.saturating_duration_since(faults[0].0),
                        to.saturating_duration_since(faults[0].0)
                    ))
                    .collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>(),
        read_log()
    );
    drop(topo);
}
