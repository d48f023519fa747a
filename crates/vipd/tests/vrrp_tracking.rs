//! Trackers and notify hooks on real sockets: stacked holders (each also a
//! plane) track their own stand-in kube-apiserver; an unhealthy apiserver
//! hands the VIP over, its recovery takes it back, and every change runs the
//! notify command. Needs root (CI runs it as root).

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use vipd::lab::apiserver::{Behaviour, InNamespace};
use vipd::lab::netns::{Netns, Topology, require_root};
use vipd::lab::pki::LabCa;

const VIP: &str = "198.18.0.100";

fn has_vip(host: &Netns) -> bool {
    let out = host
        .run("ip", &["-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
}

#[test]
fn an_unhealthy_apiserver_moves_the_vip_and_notify_runs() {
    if !require_root("an_unhealthy_apiserver_moves_the_vip_and_notify_runs") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::new("tracking test CA").unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.certificate_pem()).unwrap();
    let notify_log = dir.path().join("notify.log");
    let cluster = format!(
        r#"[cluster]
name = "tracking"

[vip]
address = "{VIP}"
interface = "eth0"
vrid = 52
advert_interval = "100ms"
announce = {{ count = 2, interval = "10ms", repeat_after = "0s" }}

[vip.notify]
any = ["/bin/sh", "-c", "echo \"$VIPD_NODE $VIPD_PREVIOUS_STATE->$VIPD_STATE $VIPD_VIP\" >> {log}"]

[[vip.track]]
check = "apiserver"
weight = 0
interval = "100ms"
timeout = "80ms"
rise = 2
fall = 2

[plane.health]
ca_file = "{ca}"

[[nodes]]
name = "cp-1"
roles = ["vip", "plane"]
address = "198.18.0.1"
priority = 150

[[nodes]]
name = "cp-2"
roles = ["vip", "plane"]
address = "198.18.0.2"
priority = 100
"#,
        log = notify_log.display(),
        ca = ca_path.display(),
    );
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster).unwrap();

    let mut hosts = Vec::new();
    let mut apiservers = Vec::new();
    for i in 1..=2 {
        let host = topo.add_host(&format!("cp{i}")).unwrap();
        topo.plug(
            &host,
            "eth0",
            &[format!("198.18.0.{i}/24").parse().unwrap()],
        )
        .unwrap();
        let address = SocketAddr::new(format!("198.18.0.{i}").parse::<IpAddr>().unwrap(), 6443);
        apiservers.push(InNamespace::start(&host, &ca, address).unwrap());
        hosts.push(host);
    }
    let logs: Vec<_> = (1..=2)
        .map(|i| dir.path().join(format!("cp-{i}.log")))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let mut command = host.command(env!("CARGO_BIN_EXE_vipd"));
        command
            .args(["run", "-c"])
            .arg(&config)
            .args(["--node", &format!("cp-{}", i + 1)])
            .arg("--socket")
            .arg(dir.path().join(format!("cp-{}.sock", i + 1)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logs[i]).unwrap());
        topo.spawn(command).unwrap();
    }
    let dump = || {
        logs.iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
            + "\n--- notify ---\n"
            + &std::fs::read_to_string(&notify_log).unwrap_or_default()
    };
    let wait = |what: &str, condition: &dyn Fn() -> bool| {
        let ok = Topology::wait_for(
            Duration::from_secs(10),
            Duration::from_millis(10),
            condition,
        );
        assert!(ok, "{what}\n{}", dump());
    };
    wait("cp-1 (higher priority, healthy) holds the VIP", &|| {
        has_vip(&hosts[0]) && !has_vip(&hosts[1])
    });

    apiservers[0].switch().set(Behaviour::Unhealthy);
    wait("cp-1's apiserver fails: cp-2 takes over", &|| {
        has_vip(&hosts[1]) && !has_vip(&hosts[0])
    });
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(
        log.contains("tracker apiserver 198.18.0.1:6443 is down"),
        "{log}"
    );
    assert!(log.contains("to=fault"), "{log}");

    apiservers[0].switch().set(Behaviour::Healthy);
    wait("cp-1 recovers and preempts", &|| {
        has_vip(&hosts[0]) && !has_vip(&hosts[1])
    });

    let notified = std::fs::read_to_string(&notify_log).unwrap_or_default();
    for line in [
        "cp-1 backup->master 198.18.0.100",
        "cp-1 master->fault 198.18.0.100",
        "cp-2 backup->master 198.18.0.100",
        "cp-2 master->backup 198.18.0.100",
    ] {
        assert!(
            notified.lines().any(|l| l == line),
            "missing notify line {line:?}\n{}",
            dump()
        );
    }

    drop(topo);
    drop(apiservers);
}
