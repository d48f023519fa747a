//! `vipd import ansible` on the seed's fixture: both ansible-vault formats
//! and the clear copy give the same cluster file, which `vipd check`
//! accepts, and a vault holding exactly the seed's secrets. Bad input is a
//! clear error or a reported warning, never a panic, never a half-written
//! file.
//!
//! The fixture is tests/fixtures/seed-ansible/, a copy of the project's
//! shared/fixtures/seed-ansible/ (made by ansible-core for these tests; see
//! its README.md), so the tests run on a bare clone. `VIPD_SEED_FIXTURE=DIR`
//! runs them on another copy.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vipd::config::spec::{ClusterSpec, Role};
use vipd::import::ansible_vault;

fn fixture() -> Option<PathBuf> {
    let dir = std::env::var_os("VIPD_SEED_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-ansible")
        });
    assert!(
        dir.join("hosts_bay.ini").exists(),
        "no seed fixture at {}",
        dir.display()
    );
    Some(dir)
}

/// The copy in the repository is the shared fixture, byte for byte, where
/// the shared one is at hand.
#[test]
fn the_fixture_copy_matches_the_shared_one() {
    let shared = Path::new("/work/shared/fixtures/seed-ansible");
    if !shared.exists() {
        eprintln!("skipped: no {}", shared.display());
        return;
    }
    let copy = fixture().unwrap();
    for file in [
        "README.md",
        "hosts_bay.ini",
        "vault_pass.txt",
        "vault_secrets.v12.yml",
        "group_vars/all/vault_secrets.yml",
        "group_vars/all/vault_secrets.plain.yml",
    ] {
        assert_eq!(
            std::fs::read(shared.join(file)).unwrap(),
            std::fs::read(copy.join(file)).unwrap(),
            "{file}"
        );
    }
}

struct Out {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn vipd(dir: &Path, args: &[&str]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vipd");
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    Out {
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
        code: output.status.code().unwrap_or(-1),
    }
}

/// The secrets of the clear copy: the keepalived password and every
/// WireGuard private key, by value.
fn seed_secrets(fixture: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(fixture.join("group_vars/all/vault_secrets.plain.yml")).unwrap();
    let vars: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mut secrets = vec![
        vars["vault_keepalived_password"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for peer in vars["vault_wg_peers"].as_array().unwrap() {
        secrets.push(peer["private_key"].as_str().unwrap().to_owned());
    }
    secrets
}

/// A node key in `dir`; returns its recipient.
fn key(dir: &Path) -> String {
    let out = vipd(dir, &["vault", "keygen", "-o", "node.key"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout.trim().to_owned()
}

fn import(dir: &Path, vars: &Path, password: Option<String>, out: &str) -> Out {
    let fixture = fixture().unwrap();
    let recipient = key_once(dir);
    let inventory = fixture.join("hosts_bay.ini");
    let mut args = vec![
        "import".to_owned(),
        "ansible".to_owned(),
        "--inventory".to_owned(),
        inventory.display().to_string(),
        "--vars".to_owned(),
        vars.display().to_string(),
        "-o".to_owned(),
        format!("{out}.toml"),
        "--vault-out".to_owned(),
        format!("{out}.age"),
        "-r".to_owned(),
        recipient,
    ];
    if let Some(p) = password {
        args.push("--vault-password-file".to_owned());
        args.push(p);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    vipd(dir, &args)
}

fn key_once(dir: &Path) -> String {
    if !dir.join("node.key").exists() {
        return key(dir);
    }
    let text = std::fs::read_to_string(dir.join("node.key")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned()
}

/// The cluster file without its first comment lines and its vault line,
/// which name the files it came from and went to.
fn body(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("# Imported by") && !l.starts_with("vault = "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn both_vault_formats_decrypt_to_the_clear_copy() {
    let Some(f) = fixture() else { return };
    let clear = std::fs::read_to_string(f.join("group_vars/all/vault_secrets.plain.yml")).unwrap();
    let password =
        ansible_vault::read_password_file(&f.join("vault_pass.txt").display().to_string()).unwrap();
    for (file, label) in [
        ("group_vars/all/vault_secrets.yml", None),
        ("vault_secrets.v12.yml", Some("bay")),
    ] {
        let text = std::fs::read_to_string(f.join(file)).unwrap();
        assert_eq!(ansible_vault::label(&text).as_deref(), label);
        let plain = ansible_vault::decrypt(&text, std::slice::from_ref(&password)).unwrap();
        assert_eq!(plain.as_str(), clear, "{file}");
        // A wrong password is an error, never garbage.
        let wrong = ansible_vault::Password {
            label: None,
            secret: "not the password".to_owned().into(),
        };
        let err = ansible_vault::decrypt(&text, &[wrong]).unwrap_err();
        assert!(err.to_string().starts_with("wrong vault password"), "{err}");
    }
}

#[test]
fn the_fixture_imports_to_a_cluster_file_check_accepts_and_a_vault_of_its_secrets() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pass = f.join("vault_pass.txt").display().to_string();
    let runs = [
        (
            "v11",
            f.join("group_vars/all/vault_secrets.yml"),
            Some(pass.clone()),
        ),
        (
            "v12",
            f.join("vault_secrets.v12.yml"),
            Some(format!("bay@{pass}")),
        ),
        (
            "clear",
            f.join("group_vars/all/vault_secrets.plain.yml"),
            None,
        ),
    ];
    let secrets = seed_secrets(&f);
    let mut bodies = Vec::new();
    for (name, vars, password) in &runs {
        let out = import(d, vars, password.clone(), name);
        assert_eq!(out.code, 0, "{name}:\n{}", out.all());
        for secret in &secrets {
            assert!(
                !out.all().contains(secret.as_str()),
                "{name}: the report leaks a secret:\n{}",
                out.all()
            );
        }
        let report = &out.stdout;
        for expected in [
            "vault_keepalived_vip ",
            "vip.address = 198.19.0.100",
            "vault_keepalived_password ",
            "vault: vrrp_password",
            "vault_wg_peers[5].private_key",
            "vault: wg_bay_worker2",
            "ansible_user",
            "an Ansible connection variable",
            "nodes[*].priority = haproxy-spb 150, haproxy-msk 140, bay-plane1 130 (seed 100), bay-plane2 120 (seed 100)",
            "vip.version = 2",
            "wrote ",
        ] {
            assert!(
                report.contains(expected),
                "{name}: no \"{expected}\" in\n{report}"
            );
        }
        let cluster = d.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&cluster).unwrap();
        assert!(text.contains(&format!("vault = \"{name}.age\"")), "{text}");
        bodies.push(body(&text));
        // vipd check, with the node's key: clean.
        let check = vipd(
            d,
            &[
                "check",
                "-c",
                &format!("{name}.toml"),
                "--identity",
                "node.key",
                "--strict",
            ],
        );
        assert_eq!(check.code, 0, "{name}:\n{}", check.all());
        assert_eq!(check.stdout, format!("{name}.toml: ok\n"));
        // The vault holds exactly the seed's secrets.
        let list = vipd(
            d,
            &[
                "vault",
                "-f",
                &format!("{name}.age"),
                "-i",
                "node.key",
                "list",
            ],
        );
        assert_eq!(list.code, 0, "{}", list.all());
        assert_eq!(
            list.stdout.lines().collect::<Vec<_>>(),
            [
                "vrrp_password",
                "wg_bay_plane1",
                "wg_bay_plane2",
                "wg_bay_worker1",
                "wg_bay_worker2",
                "wg_haproxy_msk",
                "wg_haproxy_spb"
            ]
        );
        let mut values = Vec::new();
        for secret in list.stdout.lines() {
            let got = vipd(
                d,
                &[
                    "vault",
                    "-f",
                    &format!("{name}.age"),
                    "-i",
                    "node.key",
                    "get",
                    secret,
                ],
            );
            values.push(got.stdout.trim_end().to_owned());
        }
        let mut expected = secrets.clone();
        expected.sort();
        values.sort();
        assert_eq!(values, expected, "{name}");
        assert_eq!(
            std::fs::metadata(d.join(format!("{name}.age")))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert_eq!(bodies[0], bodies[1], "1.1 and 1.2 give the same file");
    assert_eq!(bodies[0], bodies[2], "the clear copy gives the same file");

    // What it holds: the fixture's holders, planes, workers, peers, VIP,
    // ports and DNS names.
    let text = std::fs::read_to_string(d.join("v11.toml")).unwrap();
    let spec: ClusterSpec = toml::from_str(&text).unwrap();
    assert_eq!(spec.cluster.name, "bay");
    assert_eq!(spec.vip.address.to_string(), "198.19.0.100");
    assert_eq!(spec.vip.prefix, Some(32));
    assert_eq!(spec.vip.interface, "wg99");
    assert_eq!(spec.vip.vrid, 51);
    assert_eq!(spec.vip.version, 2);
    assert_eq!(spec.api.port.0, 6443);
    assert_eq!(spec.plane.proxy_port.map(|p| p.0), Some(16443));
    assert_eq!(spec.plane.apiserver_port.map(|p| p.0), Some(6443));
    let mesh = spec.mesh.as_ref().unwrap();
    assert_eq!(mesh.interface, "wg99");
    assert_eq!(mesh.network.to_string(), "198.19.0.0/24");
    assert_eq!(mesh.listen_port.0, 51820);
    assert_eq!(spec.dns.vip_name, "k8s-api");
    let with = |role: Role| -> Vec<&str> {
        spec.nodes
            .iter()
            .filter(|n| n.has_role(role))
            .map(|n| n.name.as_str())
            .collect()
    };
    assert_eq!(
        with(Role::Vip),
        ["haproxy-spb", "haproxy-msk", "bay-plane1", "bay-plane2"]
    );
    assert_eq!(with(Role::Plane), ["bay-plane1", "bay-plane2"]);
    assert_eq!(with(Role::Worker), ["bay-worker1", "bay-worker2"]);
    let plain: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(f.join("group_vars/all/vault_secrets.plain.yml")).unwrap(),
    )
    .unwrap();
    let peers = plain["vault_wg_peers"].as_array().unwrap();
    assert_eq!(spec.nodes.len(), peers.len());
    for peer in peers {
        let node = spec
            .nodes
            .iter()
            .find(|n| n.name == peer["name"].as_str().unwrap())
            .unwrap();
        let wg = node.wireguard.as_ref().unwrap();
        assert_eq!(wg.public_key, peer["public_key"].as_str().unwrap());
        assert_eq!(wg.endpoint.as_deref(), peer["endpoint"].as_str());
        assert_eq!(
            format!("{}/32", node.address),
            peer["allowed_ips"].as_str().unwrap(),
            "{}",
            node.name
        );
        let host = peer["endpoint"]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert_eq!(node.host.as_deref(), Some(host), "the inventory address");
    }
    // The planes' addresses are the seed's wireguard_ip.
    for plane in plain["vault_k8s_control_planes"].as_array().unwrap() {
        let node = spec
            .nodes
            .iter()
            .find(|n| n.name == plane["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            node.address.to_string(),
            plane["wireguard_ip"].as_str().unwrap()
        );
    }
    // config show on the result names the secrets and prints none.
    let show = vipd(
        d,
        &[
            "config",
            "show",
            "-c",
            "v11.toml",
            "--node",
            "bay-plane1",
            "--identity",
            "node.key",
        ],
    );
    assert_eq!(show.code, 0, "{}", show.all());
    assert!(show.stdout.contains("wg_bay_plane1"), "{}", show.stdout);
    for secret in &secrets {
        assert!(!show.all().contains(secret.as_str()));
    }
}

/// Runs an import that must fail, and checks that nothing was written.
fn fails(dir: &Path, args: &[&str], expected: &str) -> Out {
    let out = vipd(dir, args);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains(expected),
        "no \"{expected}\" in\n{}",
        out.all()
    );
    assert!(!out.all().contains("panicked"), "{}", out.all());
    for file in ["out.toml", "out.age", "out.age.recipients"] {
        assert!(!dir.join(file).exists(), "{file} was written");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vipd"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).unwrap();
    name.to_owned()
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipient = key(d);
    let inventory = f.join("hosts_bay.ini").display().to_string();
    let v11 = f
        .join("group_vars/all/vault_secrets.yml")
        .display()
        .to_string();
    let clear = f
        .join("group_vars/all/vault_secrets.plain.yml")
        .display()
        .to_string();
    let base = |inventory: &str, vars: &str| -> Vec<String> {
        [
            "import",
            "ansible",
            "--inventory",
            inventory,
            "--vars",
            vars,
            "-o",
            "out.toml",
            "--vault-out",
            "out.age",
            "-r",
            &recipient,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let run = |args: Vec<String>, expected: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(d, &args, expected)
    };

    // A wrong vault password.
    let wrong = write(d, "wrong.txt", "hunter2\n");
    let mut args = base(&inventory, &v11);
    args.extend(["--vault-password-file".to_owned(), wrong]);
    run(args, "wrong vault password");
    // No password for an encrypted file.
    run(base(&inventory, &v11), "no vault password given");
    // A corrupt vault: cut short, and with a stray character.
    let text = std::fs::read_to_string(&v11).unwrap();
    let cut = write(d, "cut.yml", &text[..text.len() / 2]);
    let mut args = base(&inventory, &cut);
    args.extend([
        "--vault-password-file".to_owned(),
        f.join("vault_pass.txt").display().to_string(),
    ]);
    run(args, "corrupt vault data");
    let stray = write(d, "stray.yml", &text.replacen('3', "x", 3));
    let mut args = base(&inventory, &stray);
    args.extend([
        "--vault-password-file".to_owned(),
        f.join("vault_pass.txt").display().to_string(),
    ]);
    run(args, "corrupt vault data");
    // An inventory without the groups the mapping needs.
    let no_planes = write(
        d,
        "no-planes.ini",
        &std::fs::read_to_string(&inventory)
            .unwrap()
            .replace("[planes_all:children]", "[other:children]"),
    );
    run(base(&no_planes, &clear), "no inventory group planes_all");
    let no_vip = write(
        d,
        "no-vip.ini",
        &std::fs::read_to_string(&inventory)
            .unwrap()
            .replace("[keepalived_hosts:children]", "[a:children]")
            .replace("[keepalived_vip_servers:children]", "[b:children]"),
    );
    run(
        base(&no_vip, &clear),
        "no inventory group keepalived_hosts or keepalived_vip_servers",
    );
    // A peer whose host group the inventory lacks.
    let no_group = write(
        d,
        "no-group.ini",
        &std::fs::read_to_string(&inventory)
            .unwrap()
            .replace("[bay_worker2]", "[bay_worker9]"),
    );
    run(
        base(&no_group, &clear),
        "inventory group [bay_worker2] holds no host",
    );
    let renamed = write(
        d,
        "renamed.yml",
        &std::fs::read_to_string(&clear)
            .unwrap()
            .replace("host_group: bay_worker2", "host_group: bay_worker7"),
    );
    run(
        base(&inventory, &renamed),
        "host_group \"bay_worker7\" is not an inventory group or host",
    );
    // The two VIP variables disagree.
    let split = write(
        d,
        "split.yml",
        &std::fs::read_to_string(&clear).unwrap().replace(
            "vault_k8s_api_vip: \"198.19.0.100\"",
            "vault_k8s_api_vip: \"198.19.0.101\"",
        ),
    );
    run(base(&inventory, &split), "differ: vipd has one VIP");
    // Not YAML; not INI; not text at all.
    let bad_yaml = write(d, "bad.yml", "vault_wg_peers: [1, 2\n");
    run(base(&inventory, &bad_yaml), "not valid YAML");
    let bad_ini = write(d, "bad.ini", "[planes_all\nhost\n");
    run(base(&bad_ini, &clear), "line 1:");
    std::fs::write(d.join("binary.yml"), [0xff, 0xfe, 0x00, 0x9c, 0x80]).unwrap();
    run(base(&inventory, "binary.yml"), "binary.yml");
    let list = write(d, "list.yml", "- a\n- b\n");
    run(base(&inventory, &list), "the top level is not a mapping");
    // A result vipd check refuses is not written either: a VIP outside the mesh.
    let outside = write(
        d,
        "outside.yml",
        &std::fs::read_to_string(&clear)
            .unwrap()
            .replace("198.19.0.100", "198.18.99.100"),
    );
    run(base(&inventory, &outside), "does not pass `vipd check`");
    // Existing outputs are not replaced without --force.
    std::fs::write(d.join("taken.toml"), "keep me").unwrap();
    let args = [
        "import",
        "ansible",
        "--inventory",
        &inventory,
        "--vars",
        &clear,
        "-o",
        "taken.toml",
        "--vault-out",
        "out.age",
        "-r",
        &recipient,
    ];
    let out = vipd(d, &args);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("exists"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(d.join("taken.toml")).unwrap(),
        "keep me"
    );
    // Nowhere to lock the vault to.
    let args = [
        "import",
        "ansible",
        "--inventory",
        &inventory,
        "--vars",
        &clear,
        "-o",
        "out.toml",
        "--vault-out",
        "out.age",
    ];
    fails(d, &args, "--recipient");
}

#[test]
fn unknown_and_extra_variables_are_reported_not_fatal() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let extra = write(
        d,
        "extra.yml",
        "vault_keepalived_new_knob: 7\nkubeadm_control_plane_endpoint: \"{{ vault_k8s_api_vip }}:6443\"\nvault_dns_records:\n  - type: \"A\"\n    name: \"k8s-api.prod.example\"\n    ip: \"198.19.0.100\"\n  - type: \"CNAME\"\n    name: \"api\"\n    ip: \"k8s-api\"\n  - type: \"A\"\n    name: \"bay-plane1\"\n    ip: \"198.19.0.99\"\n",
    );
    let recipient = key(d);
    let inventory = f.join("hosts_bay.ini").display().to_string();
    let clear = f
        .join("group_vars/all/vault_secrets.plain.yml")
        .display()
        .to_string();
    let out = vipd(
        d,
        &[
            "import",
            "ansible",
            "--inventory",
            &inventory,
            "--vars",
            &clear,
            "--vars",
            &extra,
            "-o",
            "out.toml",
            "--vault-out",
            "out.age",
            "-r",
            &recipient,
            "--name",
            "prod",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    for expected in [
        "warning: vault_keepalived_new_knob (extra.yml) is not a seed variable vipd knows",
        "kubeadm_control_plane_endpoint (extra.yml)",
        "derived by vipd: vip.address:api.port",
        "warning: vault_dns_records is set in",
        "dns.zone = \"prod.example.\"",
        "vault_dns_records[1] (CNAME api)",
        "warning: vault_dns_records[2]: bay-plane1 -> 198.19.0.99 but node bay-plane1 has address 198.19.0.11",
        "cluster.name = \"prod\"",
    ] {
        assert!(
            out.stdout.contains(expected),
            "no \"{expected}\" in\n{}",
            out.stdout
        );
    }
    let spec: ClusterSpec =
        toml::from_str(&std::fs::read_to_string(d.join("out.toml")).unwrap()).unwrap();
    assert_eq!(spec.dns.zone.as_deref(), Some("prod.example."));
    assert_eq!(spec.cluster.name, "prod");
}

#[test]
fn inline_vault_values_are_decrypted_with_the_password() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An `encrypt_string`-style value: the password of the clear copy,
    // encrypted on its own, in the fixture's own vault (re-used: a whole
    // file's ciphertext is a valid inline value for its text).
    let encrypted = std::fs::read_to_string(f.join("group_vars/all/vault_secrets.yml")).unwrap();
    let indented: String = encrypted.lines().map(|l| format!("  {l}\n")).collect();
    let extra = write(
        d,
        "inline.yml",
        &format!("vault_wrapped: !vault |\n{indented}"),
    );
    let recipient = key(d);
    let inventory = f.join("hosts_bay.ini").display().to_string();
    let clear = f
        .join("group_vars/all/vault_secrets.plain.yml")
        .display()
        .to_string();
    let pass = f.join("vault_pass.txt").display().to_string();
    let out = vipd(
        d,
        &[
            "import",
            "ansible",
            "--inventory",
            &inventory,
            "--vars",
            &clear,
            "--vars",
            &extra,
            "--vault-password-file",
            &pass,
            "-o",
            "out.toml",
            "--vault-out",
            "out.age",
            "-r",
            &recipient,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("vault_wrapped (inline.yml) is not a seed variable"),
        "{}",
        out.stdout
    );
    // Without the password: an error naming the variable.
    let out = vipd(
        d,
        &[
            "import",
            "ansible",
            "--inventory",
            &inventory,
            "--vars",
            &clear,
            "--vars",
            &extra,
            "-o",
            "out2.toml",
            "--vault-out",
            "out2.age",
            "-r",
            &recipient,
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("inline.yml: vault_wrapped (an inline !vault value): no vault password"),
        "{}",
        out.stderr
    );
}

/// Every seed variable, and every field of the list entries, given a value
/// of the wrong shape: the mapping reports it and never panics.
#[test]
fn wrong_shapes_never_panic() {
    use vipd::import::{mapping, read_ansible};
    let f = fixture().unwrap();
    let sources = read_ansible(
        &f.join("hosts_bay.ini"),
        &[&f.join("group_vars/all/vault_secrets.plain.yml")],
        &[],
    )
    .unwrap();
    let bad: Vec<serde_json::Value> = serde_json::from_str(
        r#"[null, 0, -1, 99999999999, 1.5, "", "garbage", "1.2.3.4/99", true, [], {}, [1, 2],
            {"a": 1}, [{"name": 5}], [{"name": "x", "host_group": "nope"}], [null], ["a"],
            [{"name": "bay-plane1", "wireguard_ip": "::1", "backend_port": "0", "priority": "x"}]]"#,
    )
    .unwrap();
    let base = sources.vars_files[0].vars.clone();
    let mut keys: Vec<String> = base.keys().cloned().collect();
    keys.extend([
        "vault_wg_peers.0".to_owned(),
        "vault_k8s_control_planes.0".to_owned(),
    ]);
    let mut sources = sources;
    let mut outcomes = (0, 0);
    for key in &keys {
        for value in &bad {
            let mut vars = base.clone();
            match key.split_once('.') {
                Some((list, _)) => {
                    // Each field of the first entry, in turn.
                    let fields: Vec<String> =
                        vars[list][0].as_object().unwrap().keys().cloned().collect();
                    for field in fields {
                        let mut vars = base.clone();
                        vars[list][0][&field] = value.clone();
                        sources.vars_files[0].vars = vars;
                        let (done, report) = mapping::map(&sources, &mapping::Options::default());
                        assert!(done.is_some() || !report.errors.is_empty());
                    }
                    continue;
                }
                None => {
                    vars.insert(key.clone(), value.clone());
                }
            }
            sources.vars_files[0].vars = vars;
            let (done, report) = mapping::map(&sources, &mapping::Options::default());
            match done {
                Some(_) => outcomes.0 += 1,
                None => {
                    assert!(!report.errors.is_empty());
                    outcomes.1 += 1;
                }
            }
            let _ = report.render();
        }
    }
    // Both outcomes happen: some shapes are reported and refused.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

/// A directory stands for its YAML files in name order (group_vars/all/).
#[test]
fn a_vars_directory_is_read_file_by_file() {
    let f = fixture().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipient = key(d);
    let all = f.join("group_vars/all").display().to_string();
    let out = vipd(
        d,
        &[
            "import",
            "ansible",
            "--inventory",
            &f.join("hosts_bay.ini").display().to_string(),
            "--vars",
            &all,
            "--vault-password-file",
            &f.join("vault_pass.txt").display().to_string(),
            "-o",
            "out.toml",
            "--vault-out",
            "out.age",
            "-r",
            &recipient,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    // The encrypted file and its clear copy both: every variable twice, the later wins.
    assert!(
        out.stdout.contains("vault_secrets.plain.yml (clear), "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("vault_secrets.yml (ansible-vault 1.1)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("warning: vault_keepalived_vip is set in"),
        "{}",
        out.stdout
    );
    let empty = tempfile::tempdir().unwrap();
    let out = vipd(
        d,
        &[
            "import",
            "ansible",
            "--inventory",
            &f.join("hosts_bay.ini").display().to_string(),
            "--vars",
            &empty.path().display().to_string(),
            "-o",
            "out2.toml",
            "--vault-out",
            "out2.age",
            "-r",
            &recipient,
        ],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("holds no *.yml"), "{}", out.stderr);
}

/// When every holder has its own seed priority, they are kept as they are.
#[test]
fn distinct_seed_priorities_are_kept() {
    let f = fixture().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipient = key(d);
    // The planes alone hold the VIP, with 100 and 90.
    let inventory = std::fs::read_to_string(f.join("hosts_bay.ini"))
        .unwrap()
        .replace("[keepalived_hosts:children]", "[lb_hosts:children]");
    write(d, "hosts.ini", &inventory);
    let clear = std::fs::read_to_string(f.join("group_vars/all/vault_secrets.plain.yml")).unwrap();
    let at = clear.rfind("priority: 100").unwrap();
    let vars = format!(
        "{}priority: 90{}",
        &clear[..at],
        &clear[at + "priority: 100".len()..]
    );
    write(d, "vars.yml", &vars);
    let out = vipd(
        d,
        &[
            "import",
            "ansible",
            "--inventory",
            "hosts.ini",
            "--vars",
            "vars.yml",
            "-o",
            "out.toml",
            "--vault-out",
            "out.age",
            "-r",
            &recipient,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("nodes[bay-plane1].priority = 100"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("nodes[bay-plane2].priority = 90"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("nodes[*].priority"), "{}", out.stdout);
    // haproxy-spb and -msk hold no role now: reported, not imported.
    assert!(
        out.stdout.contains("vault_wg_peers[0] (haproxy-spb)"),
        "{}",
        out.stdout
    );
    let spec: ClusterSpec =
        toml::from_str(&std::fs::read_to_string(d.join("out.toml")).unwrap()).unwrap();
    assert_eq!(spec.nodes.len(), 4);
    let check = vipd(d, &["check", "-c", "out.toml", "--identity", "node.key"]);
    assert_eq!(check.code, 0, "{}", check.all());
}
