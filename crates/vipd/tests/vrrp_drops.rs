//! Every VRRP packet a holder drops is counted the same way, whatever the
//! reason: in the log, in `vipd status --json` (`vrrp.dropped`) and in the
//! metrics (`vipd_vrrp_packets_dropped_total{reason}`). In namespaces
//! (root): h1 runs vipd as the VIP master, unicast VRRPv3 with h2 as its
//! peer; h2 (no vipd) and h3 (not a peer) send it one bad advert per
//! reason from raw sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vipd::lab::netns::{Netns, Topology, require_root};
use vipd_core::vrrp::{Advertisement, Centiseconds, ChecksumMode, VersionFields};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const H3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

const CLUSTER: &str = r#"[cluster]
name = "drops"

[vip]
address = "198.18.0.100"
interface = "eth0"
vrid = 51
version = 3
advert_interval = "100ms"
mode = "unicast"

[plane.health]
kind = "tcp"

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
"#;

fn advert(vrid: u8, vip: Ipv4Addr, fields: VersionFields) -> Advertisement {
    Advertisement {
        vrid,
        priority: 120,
        addresses: vec![IpAddr::V4(vip)],
        fields,
    }
}

const V3: VersionFields = VersionFields::V3 {
    max_advert_interval: Centiseconds(10),
};

/// A valid advert from `src` to h1, as h1's instance checks it (VRRPv3
/// over IPv4, the pseudo-header in the checksum: vipd's default).
fn good(src: Ipv4Addr) -> Vec<u8> {
    advert(51, VIP, V3)
        .encode(IpAddr::V4(src), IpAddr::V4(H1), ChecksumMode::Keepalived)
        .unwrap()
}

/// Sends `payload` as protocol 112 from `ns` (bound to `src`) to h1.
fn send(ns: &Netns, src: Ipv4Addr, ttl: u32, payload: Vec<u8>) {
    ns.enter(move || -> std::io::Result<()> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
        socket.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(src), 0)))?;
        socket.set_ttl_v4(ttl)?;
        socket.send_to(
            &payload,
            &SockAddr::from(SocketAddr::new(IpAddr::V4(H1), 0)),
        )?;
        Ok(())
    })
    .unwrap()
    .unwrap();
}

#[test]
fn every_drop_reason_reaches_the_log_the_status_and_the_metrics() {
    if !require_root("every_drop_reason_reaches_the_log_the_status_and_the_metrics") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let mut hosts = Vec::new();
    for (name, address) in [("h1", H1), ("h2", H2), ("h3", H3)] {
        let host = topo.add_host(name).unwrap();
        topo.plug(&host, "eth0", &[format!("{address}/24").parse().unwrap()])
            .unwrap();
        hosts.push(host);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, CLUSTER).unwrap();
    let socket = dir.path().join("h1.sock");
    let log_path = dir.path().join("h1.log");
    let mut command = hosts[0].command(env!("CARGO_BIN_EXE_vipd"));
    command
        .args(["run", "-c"])
        .arg(&config)
        .args(["--node", "h1", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    topo.spawn(command).unwrap();
    let status = || -> serde_json::Value {
        vipd::api::client::request(&socket, "GET", "/v1/status")
            .ok()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let master = Topology::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        status()["vrrp"]["state"] == "master"
    });
    assert!(master, "h1 did not become master\n{}", log());

    let (h2, h3) = (&hosts[1], &hosts[2]);
    let mut bad_checksum = good(H2);
    bad_checksum[6] ^= 0xff;
    let v2 = |interval: u8| {
        advert(
            51,
            VIP,
            VersionFields::V2 {
                advert_interval_secs: interval,
                auth: vipd_core::vrrp::Auth::None,
            },
        )
        .encode(IpAddr::V4(H2), IpAddr::V4(H1), ChecksumMode::Keepalived)
        .unwrap()
    };
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good(H2);
        f(&mut p);
        p
    };
    // (reason, sender, source, TTL, payload)
    let cases: Vec<(&str, &Netns, Ipv4Addr, u32, Vec<u8>)> = vec![
        ("ttl_not_255", h2, H2, 254, good(H2)),
        ("not_a_peer", h3, H3, 255, good(H3)),
        ("too_short", h2, H2, 255, vec![0x31, 51, 120, 1]),
        ("bad_version", h2, H2, 255, with(&|p| p[0] = 0x11)),
        ("bad_type", h2, H2, 255, with(&|p| p[0] = 0x32)),
        ("no_addresses", h2, H2, 255, with(&|p| p[3] = 0)),
        ("truncated", h2, H2, 255, with(&|p| p[3] = 2)),
        ("length_mismatch", h2, H2, 255, with(&|p| p.extend([0; 4]))),
        ("bad_checksum", h2, H2, 255, bad_checksum),
        (
            "bad_checksum_peer_omits_pseudo_header",
            h2,
            H2,
            255,
            advert(51, VIP, V3)
                .encode(IpAddr::V4(H2), IpAddr::V4(H1), ChecksumMode::Rfc9568)
                .unwrap(),
        ),
        ("zero_advert_interval", h2, H2, 255, v2(0)),
        ("wrong_version", h2, H2, 255, v2(1)),
        (
            "wrong_vrid",
            h2,
            H2,
            255,
            advert(52, VIP, V3)
                .encode(IpAddr::V4(H2), IpAddr::V4(H1), ChecksumMode::Keepalived)
                .unwrap(),
        ),
        (
            "address_list_mismatch",
            h2,
            H2,
            255,
            advert(51, Ipv4Addr::new(198, 18, 0, 101), V3)
                .encode(IpAddr::V4(H2), IpAddr::V4(H1), ChecksumMode::Keepalived)
                .unwrap(),
        ),
    ];
    for (_, ns, src, ttl, payload) in &cases {
        send(ns, *src, *ttl, payload.clone());
    }
    let reasons: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let counted = Topology::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        let dropped = &status()["vrrp"]["dropped"];
        reasons.iter().all(|r| dropped[*r] == 1)
    });
    let dropped = status()["vrrp"]["dropped"].clone();
    assert!(counted, "status: {dropped:#}\n{}", log());
    // Nothing else was dropped: each packet was refused for its own reason.
    assert_eq!(
        dropped.as_object().unwrap().len(),
        reasons.len(),
        "{dropped:#}"
    );
    let metrics = vipd::api::client::request(&socket, "GET", "/metrics").unwrap();
    let metrics = String::from_utf8(metrics.body).unwrap();
    let log = log();
    for reason in &reasons {
        let series =
            format!("vipd_vrrp_packets_dropped_total{{vrid=\"51\",reason=\"{reason}\"}} 1");
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} missing:\n{metrics}"
        );
        assert!(
            log.lines().any(|l| l.contains("dropped VRRP packet")
                && l.contains(&format!("reason=\"{reason}\""))),
            "no log line for {reason}:\n{log}"
        );
    }
    // The master kept the VIP through all of it.
    assert_eq!(status()["vrrp"]["state"], "master");
}
