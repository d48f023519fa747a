//! The command line: help texts, `vipd config show`, and what every node
//! derives from the node list.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vipd::config;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vipd(args: &[&str]) -> (String, String, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run vipd");
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        output.status.code().unwrap(),
    )
}

#[test]
fn help_names_every_command_and_option() {
    let (top, _, code) = vipd(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        top.contains("highly available Kubernetes API endpoint"),
        "{top}"
    );
    for command in ["check", "config"] {
        assert!(top.contains(command), "{command} missing from:\n{top}");
    }
    let (check, _, code) = vipd(&["check", "--help"]);
    assert_eq!(code, 0);
    for option in [
        "--config",
        "--secrets",
        "--strict",
        "--format",
        "--list-rules",
        "file:line:col",
    ] {
        assert!(check.contains(option), "{option} missing from:\n{check}");
    }
    let (show, _, code) = vipd(&["config", "show", "--help"]);
    assert_eq!(code, 0);
    for option in [
        "--config",
        "--node",
        "--json",
        "--secrets",
        "Secrets are shown by name only",
    ] {
        assert!(show.contains(option), "{option} missing from:\n{show}");
    }
    let (version, _, code) = vipd(&["--version"]);
    assert_eq!(code, 0);
    assert!(version.starts_with("vipd "), "{version}");
}

#[test]
fn a_usage_mistake_is_reported_by_clap_with_exit_2() {
    let (_, stderr, code) = vipd(&["check"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn config_show_text_for_a_vip_holder_over_wireguard() {
    let (out, _, code) = vipd(&["config", "show", "-c", "examples/ha.toml", "--node", "lb-a"]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "node lb-a (cluster prod)",
        "  roles         vip",
        "  api endpoint  198.19.0.100:6443",
        "  vip           198.19.0.100/32 on wg99",
        "  priority      150",
        "  advert        every 100ms",
        "  mode          unicast, to 198.19.0.2",
        "  preempt       yes, after 5s",
        "dnat 198.19.0.100:6443 to the healthy planes",
        "  target cp-1 198.19.0.11:16443",
        "  target cp-3 198.19.0.13:16443",
        "  private key   from secret \"wg_lb_a\"",
        "    endpoint 198.18.20.6:51820, allowed 198.19.0.2/32",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing line {line:?} in:\n{out}"
        );
    }
    assert!(
        !out.contains("frontend"),
        "a dnat holder has no proxy frontend:\n{out}"
    );
}

#[test]
fn config_show_json_for_a_stacked_plane() {
    let (out, _, code) = vipd(&[
        "config",
        "show",
        "-c",
        "examples/stacked.toml",
        "--node",
        "cp-1",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["roles"], serde_json::json!(["vip", "plane"]));
    assert_eq!(plan["vrrp"]["send_to"], serde_json::json!(["224.0.0.18"]));
    assert_eq!(plan["vrrp"]["mode"], "multicast");
    assert_eq!(plan["vrrp"]["vip"], "192.0.2.100/24");
    let frontends = plan["frontends"].as_array().unwrap();
    assert_eq!(frontends.len(), 2, "plane proxy and VIP proxy");
    assert_eq!(frontends[0]["name"], "plane");
    assert_eq!(frontends[0]["listen"], "192.0.2.11:16443");
    assert_eq!(frontends[1]["name"], "vip");
    assert_eq!(frontends[1]["listen"], "192.0.2.100:8443");
    let backends = frontends[1]["backends"].as_array().unwrap();
    let addresses: Vec<&str> = backends
        .iter()
        .map(|b| b["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"]
    );
    let local: Vec<bool> = backends
        .iter()
        .map(|b| b["local"].as_bool().unwrap())
        .collect();
    assert_eq!(local, [true, false, false]);
    assert_eq!(backends[0]["check"]["path"], "/readyz");
    assert_eq!(backends[0]["check"]["rise"], 2);
    assert!(plan.get("dnat").is_none());
}

#[test]
fn config_show_refuses_unknown_nodes_and_broken_files() {
    let (_, stderr, code) = vipd(&["config", "show", "-c", "examples/ha.toml", "--node", "nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no node \"nope\""), "{stderr}");
    assert!(stderr.contains("lb-a, lb-b, cp-1"), "{stderr}");
    let (_, stderr, code) = vipd(&[
        "config",
        "show",
        "-c",
        "crates/vipd/tests/fixtures/check/priority-range.toml",
        "--node",
        "holder-1",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error[priority-range]"), "{stderr}");
    assert!(stderr.contains("does not pass `vipd check`"), "{stderr}");
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn secrets_are_shown_by_name_never_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.toml");
    // Real key pairs: `vipd check` verifies each private key against its public key.
    let mut text = std::fs::read_to_string(repo().join("examples/seed.toml")).unwrap();
    let mut secrets = String::from("vrrp_password = \"Pw-7f3a\"\n");
    let mut private_keys = Vec::new();
    for (name, public) in [
        (
            "wg_haproxy_spb",
            "tS7WLnjGJEf4GvJ/GF3Js2QN12TeZYS3WEd7tsugW1k=",
        ),
        (
            "wg_bay_plane1",
            "jCA8RTp/J3eBRDeg8Nrs8BaBBZwCm5F8NbKwiy0CtCo=",
        ),
        (
            "wg_bay_worker1",
            "YKBhDjr7INFl0E/V79OAP2WsEnlOGP6FmPv6Bj/tiDo=",
        ),
    ] {
        let private = vipd::config::keys::generate_private_key().unwrap();
        let derived = vipd::config::keys::public_key(&private).unwrap();
        assert!(text.contains(public));
        text = text.replace(public, &derived);
        secrets.push_str(&format!("{name} = \"{private}\"\n"));
        private_keys.push(private);
    }
    std::fs::write(&cluster, text).unwrap();
    write_private(&dir.path().join("secrets.toml"), &secrets);
    let cluster = cluster.to_str().unwrap();
    let (check, _, code) = vipd(&["check", "-c", cluster]);
    assert_eq!(code, 0, "{check}");
    assert!(
        !check.contains("secrets-file-missing"),
        "the secrets file is found:\n{check}"
    );
    for args in [
        vec!["config", "show", "-c", cluster, "--node", "haproxy-spb"],
        vec![
            "config",
            "show",
            "-c",
            cluster,
            "--node",
            "haproxy-spb",
            "--json",
        ],
    ] {
        let (out, err, code) = vipd(&args);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("vrrp_password"), "the secret is named:\n{out}");
        assert!(
            !out.contains("Pw-7f3a") && private_keys.iter().all(|k| !out.contains(k.as_str())),
            "a secret leaked:\n{out}"
        );
    }
}

/// Multi-plane is "add one entry": a fourth plane appears in every holder's
/// DNAT targets and every plane's backends without any other change.
#[test]
fn adding_a_plane_is_one_entry() {
    let base = std::fs::read_to_string(repo().join("examples/ha.toml")).unwrap();
    let extra = r#"
[[nodes]]
name = "cp-4"
roles = ["plane"]
address = "198.19.0.14"
wireguard = { public_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", endpoint = "198.18.10.14:51820" }
"#;
    let checked = config::check_text(
        "ha+1.toml",
        &format!("{base}{extra}"),
        Path::new("ha+1.toml"),
        None,
    );
    assert_eq!(checked.errors(), 0, "{}", checked.render());
    let spec = checked.spec.unwrap();
    let holder = spec.plan("lb-b").unwrap();
    let targets: Vec<String> = holder
        .dnat
        .unwrap()
        .targets
        .iter()
        .map(|t| t.address.to_string())
        .collect();
    assert_eq!(
        targets,
        [
            "198.19.0.11:16443",
            "198.19.0.12:16443",
            "198.19.0.13:16443",
            "198.19.0.14:16443"
        ]
    );
    let plane = spec.plan("cp-2").unwrap();
    assert_eq!(plane.frontends[0].backends.len(), 4);
    assert_eq!(
        plane.frontends[0].backends[3].address.to_string(),
        "198.19.0.14:6443"
    );
    let worker = spec.plan("worker-1").unwrap();
    let peers: Vec<&str> = worker
        .wireguard
        .as_ref()
        .unwrap()
        .peers
        .iter()
        .map(|p| p.node.as_str())
        .collect();
    assert!(peers.contains(&"cp-4"), "{peers:?}");
}

/// A node's `[nodes.plane]` overrides one field and inherits the rest.
#[test]
fn plane_overrides_are_field_by_field() {
    let text = std::fs::read_to_string(repo().join("examples/lab.toml"))
        .unwrap()
        .replace(
            "name = \"plane-3\"\nroles = [\"plane\"]\naddress = \"198.18.0.13\"\n",
            "name = \"plane-3\"\nroles = [\"plane\"]\naddress = \"198.18.0.13\"\nplane = { proxy_port = 17443, health = { path = \"/livez\" } }\n",
        );
    let checked = config::check_text("lab.toml", &text, Path::new("lab.toml"), None);
    assert_eq!(checked.errors(), 0, "{}", checked.render());
    let spec = checked.spec.unwrap();
    let plan = spec.plan("holder-1").unwrap();
    let targets = plan.dnat.unwrap().targets;
    assert_eq!(targets[2].address.to_string(), "198.18.0.13:17443");
    assert_eq!(targets[2].check.path.as_deref(), Some("/livez"));
    assert_eq!(
        targets[2].check.interval.to_string(),
        "500ms",
        "inherited from [plane.health]"
    );
    assert_eq!(targets[1].address.to_string(), "198.18.0.12:16443");
    assert_eq!(targets[1].check.path.as_deref(), Some("/readyz"));
}
