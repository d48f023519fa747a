//! The namespace topology helper: it connects hosts, leaves the root
//! namespace alone, and removes everything it made, also on panic.
//! Needs root (CI runs it as root; elsewhere it prints `skipped: needs root`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use vipd::lab::netns::{Topology, require_root};

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn root_links_and_addresses() -> String {
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let addrs = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .unwrap();
    // Counters change all the time; names, states and addresses must not.
    let strip = |s: &[u8]| {
        String::from_utf8_lossy(s)
            .lines()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!("{}\n{}", strip(&links.stdout), strip(&addrs.stdout))
}

#[test]
fn hosts_on_the_bridge_reach_each_other_over_v4_and_v6() {
    if !require_root("hosts_on_the_bridge_reach_each_other_over_v4_and_v6") {
        return;
    }
    let root_before = root_links_and_addresses();
    let mut topo = Topology::new().unwrap();
    let a = topo.add_host("a").unwrap();
    let b = topo.add_host("b").unwrap();
    topo.plug(
        &a,
        "eth0",
        &[
            "198.18.0.1/24".parse().unwrap(),
            "2001:db8::1/64".parse().unwrap(),
        ],
    )
    .unwrap();
    topo.plug(
        &b,
        "eth0",
        &[
            "198.18.0.2/24".parse().unwrap(),
            "2001:db8::2/64".parse().unwrap(),
        ],
    )
    .unwrap();

    for server in ["198.18.0.2:7000", "[2001:db8::2]:7001"] {
        let server: SocketAddr = server.parse().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let b = &b;
            let accepted = scope.spawn(move || {
                b.enter(move || {
                    let listener = TcpListener::bind(server).unwrap();
                    ready_tx.send(()).unwrap();
                    let (mut stream, peer) = listener.accept().unwrap();
                    let mut buf = [0u8; 5];
                    stream.read_exact(&mut buf).unwrap();
                    stream.write_all(b"world").unwrap();
                    (peer.ip(), buf)
                })
                .unwrap()
            });
            ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let reply = a
                .enter(move || {
                    let mut stream =
                        TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
                    stream.write_all(b"hello").unwrap();
                    let mut buf = [0u8; 5];
                    stream.read_exact(&mut buf).unwrap();
                    buf
                })
                .unwrap();
            assert_eq!(&reply, b"world");
            let (peer, request) = accepted.join().unwrap();
            assert_eq!(&request, b"hello");
            let expected: std::net::IpAddr = if server.is_ipv4() {
                "198.18.0.1".parse().unwrap()
            } else {
                "2001:db8::1".parse().unwrap()
            };
            assert_eq!(peer, expected);
        });
    }
    // Nothing of the lab shows in the root namespace, even while it runs.
    assert_eq!(
        root_links_and_addresses(),
        root_before,
        "root namespace untouched"
    );

    let run_id = topo.run_id().to_owned();
    let ours = |n: &String| n.starts_with(&format!("{run_id}-"));
    assert_eq!(
        namespaces().iter().filter(|n| ours(n)).count(),
        3,
        "a, b and the hub"
    );
    drop(topo);
    assert!(!namespaces().iter().any(ours), "namespaces removed");
    assert_eq!(
        root_links_and_addresses(),
        root_before,
        "root namespace untouched"
    );
}

#[test]
fn a_panicking_test_still_cleans_up() {
    if !require_root("a_panicking_test_still_cleans_up") {
        return;
    }
    let (id_tx, id_rx) = mpsc::channel();
    let result = std::thread::spawn(move || {
        let mut topo = Topology::new().unwrap();
        let host = topo.add_host("doomed").unwrap();
        topo.plug(&host, "eth0", &["198.18.1.1/24".parse().unwrap()])
            .unwrap();
        id_tx.send(topo.run_id().to_owned()).unwrap();
        panic!("the test fails half-way");
    })
    .join();
    assert!(result.is_err());
    let run_id = id_rx.recv().unwrap();
    assert!(
        !namespaces()
            .iter()
            .any(|n| n.starts_with(&format!("{run_id}-"))),
        "{run_id} left behind"
    );
}

#[test]
fn processes_started_inside_are_killed_on_drop() {
    if !require_root("processes_started_inside_are_killed_on_drop") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let host = topo.add_host("proc").unwrap();
    let mut sleeper = host.command("sleep");
    sleeper.arg("600");
    let pid = topo.spawn(sleeper).unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(topo);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} survived"
    );
}

#[test]
fn namespaces_of_dead_runs_are_reaped() {
    if !require_root("namespaces_of_dead_runs_are_reaped") {
        return;
    }
    // A pid that has certainly exited: a child we waited for.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("vt{dead}x0-stale");
    assert!(
        Command::new("ip")
            .args(["netns", "add", &stale])
            .status()
            .unwrap()
            .success()
    );
    let _topo = Topology::new().unwrap(); // reaps on creation
    assert!(!namespaces().contains(&stale), "{stale} was not reaped");
}
