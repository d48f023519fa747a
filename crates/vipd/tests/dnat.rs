//! The DNAT datapath on real sockets: a VIP holder, three planes and clients
//! in namespaces on one bridge (198.18.0.0/24, outsiders in 198.18.1.0/24).
//! The holder runs `vipd::nftables::run`; each plane serves a small TCP
//! service on its proxy port that names itself and echoes lines. Needs root
//! (CI runs it as root).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::sync::watch;
use vipd::config::resolve::DnatPlan;
use vipd::lab::netns::{Netns, Topology, require_root};
use vipd::nftables::{Nft, NftError, ruleset};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const API_PORT: u16 = 6443;
const PROXY_PORT: u16 = 16443;
/// Client source addresses 198.18.0.20..=59: enough that jhash spreads them
/// over every bucket.
const CLIENT_SOURCES: std::ops::RangeInclusive<u8> = 20..=59;
/// How long a plane's removal or return may take: the check (100 ms
/// interval, fall 2, rise 2) needs about 0.2 s; the rest is slack.
const REMOVAL_BOUND: Duration = Duration::from_secs(5);

fn cluster_text() -> String {
    format!(
        r#"[cluster]
name = "dnat-test"

[vip]
address = "{VIP}"
interface = "eth0"
vrid = 62

[api]
port = {API_PORT}
datapath = "dnat"

[plane]
proxy_port = {PROXY_PORT}

[plane.health]
kind = "tcp"
interval = "100ms"
timeout = "80ms"
rise = 2
fall = 2

[firewall]
enabled = true
allow = ["198.18.0.0/24", "198.18.1.32/27"]

[[nodes]]
name = "lb-a"
roles = ["vip"]
address = "198.18.0.10"
priority = 150

[[nodes]]
name = "cp-1"
roles = ["plane"]
address = "198.18.0.11"

[[nodes]]
name = "cp-2"
roles = ["plane"]
address = "198.18.0.12"

[[nodes]]
name = "cp-3"
roles = ["plane"]
address = "198.18.0.13"
"#
    )
}

fn dnat_plan() -> DnatPlan {
    let checked = vipd::config::check_text(
        "dnat-test.toml",
        &cluster_text(),
        Path::new("dnat-test.toml"),
        None,
    );
    assert_eq!(checked.errors(), 0, "{}", checked.render());
    checked.spec.unwrap().plan("lb-a").unwrap().dnat.unwrap()
}

/// A plane's proxy stand-in: on accept it sends its name and a newline,
/// then echoes lines. `serving` closes and reopens the listener.
struct PlaneService {
    serving: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl PlaneService {
    fn start(host: &Netns, name: &str, address: SocketAddr) -> Self {
        let serving = Arc::new(AtomicBool::new(true));
        let quit = Arc::new(AtomicBool::new(false));
        let (serving_flag, quit_flag, name) = (serving.clone(), quit.clone(), name.to_owned());
        let thread = host
            .spawn_thread(move || {
                // Bounded: the test ends well within this.
                let deadline = Instant::now() + Duration::from_secs(180);
                let mut listener: Option<TcpListener> = None;
                while !quit_flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let serving = serving_flag.load(Ordering::Relaxed);
                    if !serving {
                        listener = None;
                    } else if listener.is_none() {
                        let bound = TcpListener::bind(address).unwrap();
                        bound.set_nonblocking(true).unwrap();
                        listener = Some(bound);
                    }
                    match listener.as_ref().map(TcpListener::accept) {
                        Some(Ok((stream, _))) => {
                            let name = name.clone();
                            std::thread::spawn(move || serve_connection(stream, &name));
                        }
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .unwrap();
        Self {
            serving,
            quit,
            thread: Some(thread),
        }
    }

    fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }
}

impl Drop for PlaneService {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection(mut stream: TcpStream, name: &str) {
    let _ = stream.set_nonblocking(false);
    // Bounded: an idle connection ends by itself.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    while let Ok(line) = read_line(&mut stream) {
        if stream.write_all(line.as_bytes()).is_err() {
            return;
        }
    }
}

/// One `\n`-terminated line, newline included.
fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 1024 {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return String::from_utf8(line).map_err(io::Error::other);
        }
    }
    Err(io::Error::other("line too long"))
}

/// Connects to VIP:port from `source` (None: the kernel picks), returns
/// the stream and the plane that answered. Call inside a namespace.
fn connect(source: Option<IpAddr>, timeout: Duration) -> io::Result<(TcpStream, String)> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.connect_timeout(&SocketAddr::new(VIP.into(), API_PORT).into(), timeout)?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let name = read_line(&mut stream)?.trim_end().to_owned();
    Ok((stream, name))
}

fn client_source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

/// The plane each client source reaches with a new connection.
fn planes_by_source(client: &Netns) -> BTreeMap<u8, String> {
    client
        .enter(|| {
            CLIENT_SOURCES
                .map(|last| {
                    let (_, plane) = connect(Some(client_source(last)), Duration::from_secs(2))
                        .unwrap_or_else(|e| panic!("connect from 198.18.0.{last}: {e}"));
                    (last, plane)
                })
                .collect()
        })
        .unwrap()
}

/// Sends a line over an established connection and expects it back.
fn echo(stream: &mut TcpStream, text: &str) {
    stream
        .write_all(format!("{text}\n").as_bytes())
        .unwrap_or_else(|e| panic!("{text}: write: {e}"));
    let back = read_line(stream).unwrap_or_else(|e| panic!("{text}: read: {e}"));
    assert_eq!(back, format!("{text}\n"));
}

fn nft_in(host: &Netns, args: &[&str]) -> (bool, String) {
    let output = host.run("nft", args).unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn dnat_chain(holder: &Netns) -> String {
    nft_in(
        holder,
        &["list", "chain", "inet", "vipd", "dnat_prerouting"],
    )
    .1
}

fn table_exists(holder: &Netns) -> bool {
    nft_in(holder, &["list", "tables"])
        .1
        .contains("table inet vipd")
}

/// Sends `true` on drop, so a failing test still stops the datapath thread.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// A thread inside `holder` running the datapath on a runtime of its own.
fn start_datapath(
    holder: &Netns,
    plan: DnatPlan,
    nft: Nft,
) -> (StopOnDrop, JoinHandle<io::Result<anyhow::Result<()>>>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let thread = holder
        .spawn_thread(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_test_writer()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            let _log = tracing::subscriber::set_default(subscriber);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(vipd::nftables::run_with(plan, nft, stop_rx))
        })
        .unwrap();
    (StopOnDrop(stop_tx), thread)
}

/// The holder with its VIP, routes to the outsiders' network, forwarding on.
fn add_holder(topo: &mut Topology) -> Netns {
    let holder = topo.add_host("holder").unwrap();
    topo.plug(&holder, "eth0", &["198.18.0.10/24".parse().unwrap()])
        .unwrap();
    Topology::add_address(&holder, "eth0", VIP.into(), 32).unwrap();
    holder
        .ip(&["route", "add", "198.18.1.0/24", "dev", "eth0"])
        .unwrap();
    let sysctl = holder
        .run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    assert!(sysctl.status.success(), "{sysctl:?}");
    holder
}

/// Waits for `condition`, echoing over `survivors` meanwhile so they carry
/// traffic through the change. Returns how long it took.
fn wait_with_traffic(
    what: &str,
    survivors: &mut [(String, TcpStream)],
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    let mut round = 0;
    while !condition() {
        assert!(
            started.elapsed() < REMOVAL_BOUND,
            "{what}: not within {REMOVAL_BOUND:?}"
        );
        for (plane, stream) in survivors.iter_mut() {
            echo(stream, &format!("{what} {round} via {plane}"));
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn dnat_follows_plane_health_and_the_firewall_drops_outsiders() {
    if !require_root("dnat_follows_plane_health_and_the_firewall_drops_outsiders") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let holder = add_holder(&mut topo);
    let mut services = BTreeMap::new();
    for i in 1..=3u8 {
        let host = topo.add_host(&format!("cp{i}")).unwrap();
        let address = format!("198.18.0.{}", 10 + i);
        topo.plug(&host, "eth0", &[format!("{address}/24").parse().unwrap()])
            .unwrap();
        let listen = SocketAddr::new(address.parse().unwrap(), PROXY_PORT);
        let name = format!("cp-{i}");
        services.insert(name.clone(), PlaneService::start(&host, &name, listen));
    }
    let client = topo.add_host("client").unwrap();
    let client_addresses: Vec<_> = CLIENT_SOURCES
        .map(|last| format!("198.18.0.{last}/24").parse().unwrap())
        .collect();
    topo.plug(&client, "eth0", &client_addresses).unwrap();
    let mut outsiders = Vec::new();
    // 198.18.1.20 is outside the allowed sources; 198.18.1.40 is inside 198.18.1.32/27.
    for (name, address) in [("outsider", "198.18.1.20/24"), ("guest", "198.18.1.40/24")] {
        let host = topo.add_host(name).unwrap();
        topo.plug(&host, "eth0", &[address.parse().unwrap()])
            .unwrap();
        host.ip(&["route", "add", "198.18.0.0/24", "dev", "eth0"])
            .unwrap();
        outsiders.push(host);
    }

    // A table a crashed run left behind, with a chain vipd never makes.
    for command in [
        &["add", "table", "inet", "vipd"][..],
        &["add", "chain", "inet", "vipd", "stale_leftover"],
    ] {
        let (ok, text) = nft_in(&holder, command);
        assert!(ok, "{text}");
    }

    let (stop, datapath) = start_datapath(&holder, dnat_plan(), Nft::default());
    let loaded = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        dnat_chain(&holder).contains("jhash")
    });
    let table = nft_in(&holder, &["list", "table", "inet", "vipd"]).1;
    assert!(loaded, "the table was not loaded:\n{table}");
    assert!(
        !table.contains("stale_leftover"),
        "the stale table was not replaced:\n{table}"
    );

    // Every plane gets clients, each source sticks to one plane.
    let first_map = planes_by_source(&client);
    let reached: BTreeSet<&String> = first_map.values().collect();
    assert_eq!(
        reached.len(),
        3,
        "not every plane was reached: {first_map:?}"
    );
    assert_eq!(
        first_map,
        planes_by_source(&client),
        "a source changed plane"
    );

    // The holder itself reaches a plane through the VIP (the output chain).
    let (_, from_holder) = holder
        .enter(|| connect(None, Duration::from_secs(2)))
        .unwrap()
        .expect("a connection from the holder to the VIP");
    assert!(services.contains_key(&from_holder), "{from_holder}");

    // One long-lived connection on each plane that stays up.
    let victim = "cp-2";
    let mut survivors: Vec<(String, TcpStream)> = Vec::new();
    for plane in ["cp-1", "cp-3"] {
        let (&last, _) = first_map.iter().find(|(_, p)| *p == plane).unwrap();
        let (stream, answered) = client
            .enter(|| connect(Some(client_source(last)), Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        assert_eq!(answered, plane);
        survivors.push((answered, stream));
    }
    for (plane, stream) in &mut survivors {
        echo(stream, &format!("before via {plane}"));
    }

    // The victim stops listening: out of the set within interval x fall + slack.
    services[victim].set_serving(false);
    let took = wait_with_traffic("removal", &mut survivors, || {
        !dnat_chain(&holder).contains("198.18.0.12")
    });
    eprintln!("{victim} left the DNAT set after {took:?}");
    let without_victim = planes_by_source(&client);
    for (last, plane) in &without_victim {
        assert_ne!(plane, victim, "198.18.0.{last} still reached {victim}");
        if first_map[last] != victim {
            assert_eq!(
                plane, &first_map[last],
                "198.18.0.{last} moved off a healthy plane"
            );
        }
    }

    // The victim returns and takes back exactly its own clients.
    services[victim].set_serving(true);
    let took = wait_with_traffic("return", &mut survivors, || {
        dnat_chain(&holder).contains("198.18.0.12")
    });
    eprintln!("{victim} was back in the DNAT set after {took:?}");
    assert_eq!(
        planes_by_source(&client),
        first_map,
        "the spread after the return"
    );
    for (plane, stream) in &mut survivors {
        echo(stream, &format!("after via {plane}"));
    }

    // The firewall: an allowed source outside the mesh gets in, others are
    // dropped (a timeout, not a refusal) and counted.
    let (_, guest_plane) = outsiders[1]
        .enter(|| connect(None, Duration::from_secs(2)))
        .unwrap()
        .expect("198.18.1.40 is allowed");
    assert!(services.contains_key(&guest_plane), "{guest_plane}");
    let refused = outsiders[0]
        .enter(|| connect(None, Duration::from_millis(1500)))
        .unwrap();
    match refused {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}"),
        Ok((_, plane)) => panic!("198.18.1.20 reached {plane} through the firewall"),
    }
    let counter = nft_in(
        &holder,
        &["list", "counter", "inet", "vipd", "firewall_dropped"],
    )
    .1;
    let dropped: u64 = counter
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in:\n{counter}"));
    assert!(dropped >= 1, "{counter}");

    // Every plane down: the last set stays loaded (fail open) and steady,
    // well past fall x interval.
    for service in services.values() {
        service.set_serving(false);
    }
    std::thread::sleep(Duration::from_secs(1));
    let kept = dnat_chain(&holder);
    assert!(
        kept.contains("dnat ip to") && kept.contains("198.18.0.1"),
        "fail open emptied the set:\n{kept}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        dnat_chain(&holder),
        kept,
        "the set changed with nothing healthy"
    );

    // A clean stop removes the table.
    drop(stop);
    let outcome = datapath.join().unwrap().unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(!table_exists(&holder), "the table outlived a clean stop");
    drop(survivors);
    drop(services);
}

#[test]
fn a_refused_ruleset_leaves_the_old_table() {
    if !require_root("a_refused_ruleset_leaves_the_old_table") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let holder = add_holder(&mut topo);
    let plan = dnat_plan();
    let all = [true, true, true];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let nft = Nft::default();
    holder
        .enter(|| runtime.block_on(nft.load(&ruleset::replace_batch(&plan, &all).unwrap())))
        .unwrap()
        .unwrap();
    let before = nft_in(&holder, &["list", "table", "inet", "vipd"]).1;

    // A ruleset nft cannot parse: refused at the check, nothing changes.
    let broken = ruleset::refill_batch(&plan, &[true, false, true])
        .unwrap()
        .replacen("policy accept;", "policy accept;\n\t\tnot an nft rule", 1);
    let refused = holder
        .enter(|| runtime.block_on(nft.load(&broken)))
        .unwrap();
    assert!(
        matches!(refused, Err(NftError::CheckFailed { .. })),
        "{refused:?}"
    );
    assert_eq!(
        nft_in(&holder, &["list", "table", "inet", "vipd"]).1,
        before
    );

    // An nft that passes the check and fails the load (simulated): the
    // datapath refuses to start, and the table is untouched.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("nft");
    std::fs::write(
        &fake,
        "#!/bin/sh\n# Fails every load; checks and listings go to the real nft.\ncase \"$1\" in\n  -f) echo 'simulated failure' >&2; exit 1 ;;\n  *) exec nft \"$@\" ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_stop, datapath) = start_datapath(&holder, plan, Nft::new(&fake));
    let outcome = datapath.join().unwrap().unwrap();
    let error = format!("{:#}", outcome.expect_err("the load was refused"));
    assert!(error.contains("simulated failure"), "{error}");
    assert_eq!(
        nft_in(&holder, &["list", "table", "inet", "vipd"]).1,
        before
    );
}

/// A plane whose link goes down swallows SYNs. With checks too slow to
/// notice (a 10 s interval), the passive watch must take it out of the set
/// (its SYNs stay unanswered past the 200 ms timeout), and the conntrack
/// entries of those SYNs must go, or every retransmission follows them to
/// the dead plane. Clients whose SYN went there connect to another plane
/// on a retransmission; none fails.
#[test]
fn a_silent_plane_is_observed_down_and_its_clients_retransmit_elsewhere() {
    if !require_root("a_silent_plane_is_observed_down_and_its_clients_retransmit_elsewhere") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let holder = add_holder(&mut topo);
    let mut services = BTreeMap::new();
    let mut hosts = BTreeMap::new();
    for i in 1..=3u8 {
        let host = topo.add_host(&format!("cp{i}")).unwrap();
        let address = format!("198.18.0.{}", 10 + i);
        topo.plug(&host, "eth0", &[format!("{address}/24").parse().unwrap()])
            .unwrap();
        let listen = SocketAddr::new(address.parse().unwrap(), PROXY_PORT);
        let name = format!("cp-{i}");
        services.insert(name.clone(), PlaneService::start(&host, &name, listen));
        hosts.insert(name, host);
    }
    let client = topo.add_host("client").unwrap();
    let client_addresses: Vec<_> = CLIENT_SOURCES
        .map(|last| format!("198.18.0.{last}/24").parse().unwrap())
        .collect();
    topo.plug(&client, "eth0", &client_addresses).unwrap();

    let mut plan = dnat_plan();
    for target in &mut plan.targets {
        target.check.interval = vipd::config::values::Interval::from_secs(10);
        target.check.timeout = vipd::config::values::Interval::from_millis(200);
    }
    let (stop, datapath) = start_datapath(&holder, plan, Nft::default());
    let loaded = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        dnat_chain(&holder).contains("jhash")
    });
    assert!(loaded, "the table was not loaded");
    let map = planes_by_source(&client);
    let victim = "cp-2";
    let victims: Vec<u8> = map
        .iter()
        .filter(|(_, p)| *p == victim)
        .map(|(last, _)| *last)
        .collect();
    assert!(victims.len() >= 3, "too few sources on {victim}: {map:?}");

    hosts[victim].ip(&["link", "set", "eth0", "down"]).unwrap();
    let started = Instant::now();
    // Every source that was on the victim connects at once, each with a
    // timeout a real client would have (client-go waits 30 s).
    let attempts: Vec<_> = victims
        .iter()
        .map(|&last| {
            client
                .spawn_thread(move || {
                    let started = Instant::now();
                    let result = connect(Some(client_source(last)), Duration::from_secs(8));
                    (last, result.map(|(_, plane)| plane), started.elapsed())
                })
                .unwrap()
        })
        .collect();
    let removed = Topology::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        !dnat_chain(&holder).contains("198.18.0.12")
    });
    let removed_after = started.elapsed();
    assert!(
        removed,
        "{victim} was not taken out within 5 s; the checks alone would need 20 s:\n{}",
        dnat_chain(&holder)
    );
    eprintln!("{victim} left the set {removed_after:?} after its link went down");
    for attempt in attempts {
        let (last, result, took) = attempt.join().unwrap().unwrap();
        let plane = result.unwrap_or_else(|e| {
            panic!("198.18.0.{last} (was on {victim}) failed after {took:?}: {e}")
        });
        assert_ne!(plane, victim, "198.18.0.{last}");
        eprintln!("198.18.0.{last}: {plane} after {took:?}");
    }
    drop(stop);
    datapath.join().unwrap().unwrap().unwrap();
}
