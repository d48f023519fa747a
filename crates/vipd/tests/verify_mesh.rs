//! `vipd verify` on a node that follows the VRRP master over the WireGuard
//! mesh, without root: `VIPD_WG` points at a script that prints a canned
//! `wg show wg7 allowed-ips`, and a thread of the test answers on the
//! control socket with a canned status document. The cluster lives on
//! loopback addresses (127.77.7.0/24), so the network checks verify also
//! makes (VIP:port, each plane) stay on this machine.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vipd::api::schema::{ConfigStatus, FollowStatus, StatusDocument};

const LB_A: &str = "4ItZFbWa9Lm8DuQeZ0+vuHs27tL32x2WBd5VF9VdzGU=";
const LB_B: &str = "KbjMJRJ/AHz7AH6pW0hG8y3LyDDXWSziteOJp1Dwqy4=";
const CP_1: &str = "2H2jx2ju1TvQheTEiu8V66cjjcQL3EPrljRNsGEKyCk=";
const WORKER: &str = "GNd2x86GMhZ5nTRpsgVRnyQjjOxXEhW4utNo9d51Si4=";

fn cluster() -> String {
    format!(
        r#"[cluster]
name = "verify"

[vip]
address = "127.77.7.100"
interface = "wg7"
vrid = 42
advert_interval = "100ms"

[mesh]
interface = "wg7"
network = "127.77.7.0/24"

[plane.health]
kind = "tcp"

[[nodes]]
name = "lb-a"
roles = ["vip"]
address = "127.77.7.1"
priority = 150
wireguard = {{ public_key = "{LB_A}", endpoint = "127.0.0.1:51001" }}

[[nodes]]
name = "lb-b"
roles = ["vip"]
address = "127.77.7.2"
priority = 100
wireguard = {{ public_key = "{LB_B}", endpoint = "127.0.0.1:51002" }}

[[nodes]]
name = "cp-1"
roles = ["plane"]
address = "127.77.7.11"
wireguard = {{ public_key = "{CP_1}", endpoint = "127.0.0.1:51011" }}

[[nodes]]
name = "worker-1"
roles = ["worker"]
address = "127.77.7.21"
wireguard = {{ public_key = "{WORKER}" }}
"#
    )
}

/// `wg show wg7 allowed-ips` of the worker with the VIP on `vip_on`.
fn allowed_ips(vip_on: &[&str]) -> String {
    let mut text = String::new();
    for (key, own) in [
        (LB_A, "127.77.7.1/32"),
        (LB_B, "127.77.7.2/32"),
        (CP_1, "127.77.7.11/32"),
    ] {
        let vip = if vip_on.contains(&key) {
            " 127.77.7.100/32"
        } else {
            ""
        };
        text.push_str(&format!("{key}\t{own}{vip}\n"));
    }
    text
}

/// The worker's status document, following `holder` (name, key).
fn status(holder: Option<(&str, &str)>, applied: bool) -> StatusDocument {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    StatusDocument {
        schema: 1,
        vipd_version: env!("CARGO_PKG_VERSION").into(),
        cluster: "verify".into(),
        node: "worker-1".into(),
        roles: vec!["worker".into()],
        pid: 1,
        started_at: now - 60.0,
        config: ConfigStatus {
            file: "cluster.toml".into(),
            loaded_at: now - 60.0,
            generation: 1,
        },
        last_reload: None,
        vrrp: None,
        frontends: Vec::new(),
        dnat: None,
        follow: Some(FollowStatus {
            interface: "wg7".into(),
            vip: "127.77.7.100/32".into(),
            holders: vec!["lb-a".into(), "lb-b".into()],
            route: if holder.is_some() {
                "holder"
            } else {
                "nowhere"
            }
            .into(),
            holder: holder.map(|(name, _)| name.to_owned()),
            peer: holder.map(|(_, key)| key.to_owned()),
            since: now - 30.0,
            reason: "master_heard".into(),
            changes: 1,
            applied,
            error: (!applied).then(|| "wg set wg7: Operation not permitted".to_owned()),
            ..FollowStatus::default()
        }),
    }
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.toml"), cluster()).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `wg` that answers `show wg7 allowed-ips` with `device` (or fails
    /// like wg on a missing interface when `device` is None) and refuses
    /// any other command, so a wrong call shows in the report.
    fn fake_wg(&self, device: Option<&str>) -> PathBuf {
        let canned = self.path("allowed-ips");
        std::fs::write(&canned, device.unwrap_or_default()).unwrap();
        let answer = match device {
            Some(_) => format!("cat '{}'", canned.display()),
            None => "echo 'Unable to access interface: No such device' >&2; exit 1".to_owned(),
        };
        let script = self.path("wg");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nif [ \"$*\" = 'show wg7 allowed-ips' ]; then\n  {answer}\nelse\n  echo \"unexpected: wg $*\" >&2; exit 2\nfi\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    /// `vipd verify --node worker-1 --json` with the fake `wg` and a control
    /// socket that answers `document`. Returns the mesh-route check.
    fn verify(&self, device: Option<&str>, document: &StatusDocument) -> serde_json::Value {
        let socket = self.path("vipd.sock");
        let _ = std::fs::remove_file(&socket);
        let server = serve_once(&socket, serde_json::to_vec(document).unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
            .args([
                "verify",
                "--json",
                "--timeout",
                "300ms",
                "--node",
                "worker-1",
                "-c",
            ])
            .arg(self.path("cluster.toml"))
            .arg("--socket")
            .arg(&socket)
            .env("VIPD_WG", self.fake_wg(device))
            .output()
            .unwrap();
        let served = server.join().unwrap();
        assert!(
            served,
            "verify never asked the control socket for the status"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        // The planes are not running here: verify fails whatever the mesh says.
        assert!(!out.status.success());
        let checks = report["checks"].as_array().unwrap();
        let daemon = checks.iter().find(|c| c["check"] == "daemon").unwrap();
        assert_eq!(daemon["verdict"], "pass", "{report:#}");
        checks
            .iter()
            .find(|c| c["check"] == "mesh-route")
            .unwrap_or_else(|| panic!("no mesh-route check in {report:#}"))
            .clone()
    }
}

/// Answers one request on `socket` with `body` as the status, within 10 s.
/// The thread returns whether a request came.
fn serve_once(socket: &Path, body: Vec<u8>) -> std::thread::JoinHandle<bool> {
    let listener = UnixListener::bind(socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    assert!(
                        request.starts_with(b"GET /v1/status "),
                        "{}",
                        String::from_utf8_lossy(&request)
                    );
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(&body).unwrap();
                    return true;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        false
    })
}

#[track_caller]
fn expect(check: &serde_json::Value, verdict: &str, words: &[&str]) {
    assert_eq!(check["verdict"], verdict, "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    for word in words {
        assert!(detail.contains(word), "{word:?} not in: {detail}");
    }
}

#[test]
fn the_vip_on_the_followed_masters_peer_passes() {
    let setup = Setup::new();
    let check = setup.verify(
        Some(&allowed_ips(&[LB_B])),
        &status(Some(("lb-b", LB_B)), true),
    );
    expect(&check, "pass", &["on the peer of lb-b", LB_B, "30.0s ago"]);
}

#[test]
fn the_vip_elsewhere_than_the_followed_master_fails() {
    let setup = Setup::new();
    let followed = status(Some(("lb-b", LB_B)), true);
    // Another holder's peer (the rendered file's start value after a
    // `wg syncconf`), a plane's peer, two peers, no peer.
    let check = setup.verify(Some(&allowed_ips(&[LB_A])), &followed);
    expect(
        &check,
        "fail",
        &["to the peer of lb-b", "on the peer of lb-a"],
    );
    let check = setup.verify(Some(&allowed_ips(&[CP_1])), &followed);
    expect(&check, "fail", &["cp-1", "not a VIP holder"]);
    let check = setup.verify(Some(&allowed_ips(&[LB_A, LB_B])), &followed);
    expect(&check, "fail", &["2 peers"]);
    let check = setup.verify(Some(&allowed_ips(&[])), &followed);
    expect(&check, "fail", &["on no peer of wg7"]);
}

#[test]
fn a_route_not_applied_or_a_device_not_there_fails() {
    let setup = Setup::new();
    let check = setup.verify(
        Some(&allowed_ips(&[LB_B])),
        &status(Some(("lb-b", LB_B)), false),
    );
    expect(&check, "fail", &["not applied", "Operation not permitted"]);
    let check = setup.verify(None, &status(Some(("lb-b", LB_B)), true));
    expect(&check, "fail", &["No such device", "wg-quick up wg7"]);
}
