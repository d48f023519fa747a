//! `vipd render` (wireguard, kubeadm, dns, static-pod) and `vipd wg`:
//! golden files, and the programs that read the output.
//!
//! Each renderer's output is pinned in tests/fixtures/render/. Regenerate on
//! purpose with `VIPD_BLESS=1 cargo test -p vipd --test render` and review the
//! diff like code.
//!
//! Consumer checks: `wg-quick strip` and `wg setconf` on a userspace
//! WireGuard interface (wireguard-go, inside a namespace: root) for the
//! wg-quick files, `wg genkey` / `wg pubkey` for the keys, `named-checkzone`
//! for the zone lines. kubeadm is not packaged for Debian, so the kubeadm
//! fragment and the Pod manifest are checked as YAML here (and with
//! `kubeadm config validate` when kubeadm is on PATH). A missing tool skips
//! its test with a message, and fails it under CI=true.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

const FIXTURES: &str = "tests/fixtures/render";
const MESH: &str = "tests/fixtures/render/mesh.toml";
const LAN6: &str = "tests/fixtures/render/lan6.toml";
const MESH_NODES: [&str; 5] = ["lb-a", "lb-b", "cp-1", "cp-2", "worker-1"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixtures' secrets files come out of git as 0644; vipd refuses those.
fn prepare_secrets() {
    for name in ["mesh.secrets.toml", "mismatch.secrets.toml"] {
        let path = crate_dir().join(FIXTURES).join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn vipd_with_stdin(args: &[&str], stdin: &str) -> (String, String, i32) {
    prepare_secrets();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .current_dir(crate_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vipd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        output.status.code().expect("exit code"),
    )
}

fn vipd(args: &[&str]) -> (String, String, i32) {
    vipd_with_stdin(args, "")
}

/// Runs vipd and returns its stdout, failing the test on a non-zero exit.
fn render(args: &[&str]) -> String {
    let (stdout, stderr, code) = vipd(args);
    assert_eq!(code, 0, "vipd {}:\n{stderr}", args.join(" "));
    stdout
}

/// Whether `tool` is on PATH. Missing: skipped with a message, or a failure
/// under CI=true (scripts/test.sh installs every tool these tests use).
fn require_tool(tool: &str, package: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs {tool} (package {package}), and CI=true: failing instead of skipping");
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test} needs {tool} (apt-get install {package})"
    );
    false
}

fn secret_values(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(crate_dir().join(FIXTURES).join(file)).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    table
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// (golden file, vipd arguments)
fn golden_cases() -> Vec<(String, Vec<String>)> {
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |name: &str, args: &[&str]| {
        cases.push((
            name.to_owned(),
            args.iter().map(|s| (*s).to_owned()).collect(),
        ));
    };
    for node in ["lb-a", "lb-b", "cp-2", "worker-1"] {
        add(
            &format!("mesh.wireguard-{node}.conf"),
            &["render", "wireguard", "-c", MESH, "--node", node],
        );
    }
    add(
        "mesh.wireguard-cp-1-shown.conf",
        &[
            "render",
            "wireguard",
            "-c",
            MESH,
            "--node",
            "cp-1",
            "--show-secrets",
        ],
    );
    add("mesh.kubeadm.yaml", &["render", "kubeadm", "-c", MESH]);
    add(
        "mesh.kubeadm-name-v1beta3.yaml",
        &[
            "render",
            "kubeadm",
            "-c",
            MESH,
            "--endpoint",
            "name",
            "--api-version",
            "v1beta3",
        ],
    );
    add("mesh.dns.zone", &["render", "dns", "-c", MESH]);
    add(
        "mesh.dns.hosts",
        &["render", "dns", "-c", MESH, "--format", "hosts"],
    );
    add(
        "mesh.static-pod-lb-a.yaml",
        &["render", "static-pod", "-c", MESH, "--node", "lb-a"],
    );
    add(
        "mesh.static-pod-worker-1.yaml",
        &[
            "render",
            "static-pod",
            "-c",
            MESH,
            "--node",
            "worker-1",
            "--image",
            "registry.example/vipd:0.1.0",
            "--node-config",
            "/srv/vipd/golden.toml",
        ],
    );
    add("lan6.kubeadm.yaml", &["render", "kubeadm", "-c", LAN6]);
    add("lan6.dns.zone", &["render", "dns", "-c", LAN6]);
    add(
        "lan6.dns.hosts",
        &["render", "dns", "-c", LAN6, "--format", "hosts"],
    );
    add(
        "lan6.static-pod-cp-1.yaml",
        &["render", "static-pod", "-c", LAN6, "--node", "cp-1"],
    );
    cases
}

#[test]
fn every_renderer_gives_its_golden_file() {
    let bless = std::env::var_os("VIPD_BLESS").is_some();
    let mut mismatches = Vec::new();
    for (golden, args) in golden_cases() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let actual = render(&args);
        let path = crate_dir().join(FIXTURES).join(&golden);
        if bless {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run with VIPD_BLESS=1", path.display()));
        if expected != actual {
            mismatches.push(format!(
                "--- {}\n+++ vipd {}\n{actual}",
                path.display(),
                args.join(" ")
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Every golden file in the directory belongs to a case (none is stale).
#[test]
fn no_golden_file_is_left_over() {
    let cases: Vec<String> = golden_cases().into_iter().map(|(g, _)| g).collect();
    for entry in std::fs::read_dir(crate_dir().join(FIXTURES)).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        // The cluster files, and the classic stack's configs, which
        // tests/render_classic.rs owns.
        if name.ends_with(".toml")
            || name.ends_with(".keepalived.conf")
            || name.ends_with(".haproxy.cfg")
        {
            continue;
        }
        assert!(cases.contains(&name), "{name} belongs to no case");
    }
}

#[test]
fn no_secret_leaks_without_the_flag() {
    let secrets = secret_values("mesh.secrets.toml");
    assert_eq!(secrets.len(), 5);
    let mut outputs = Vec::new();
    for node in MESH_NODES {
        let (stdout, stderr, code) = vipd(&["render", "wireguard", "-c", MESH, "--node", node]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("PrivateKey = <secret wg_")
                && stdout.contains(": use --show-secrets or -o>"),
            "{stdout}"
        );
        outputs.push(stdout);
        outputs.push(stderr);
        let (stdout, stderr, _) = vipd(&["render", "static-pod", "-c", MESH, "--node", node]);
        outputs.extend([stdout, stderr]);
        let (stdout, stderr, _) = vipd(&["config", "show", "-c", MESH, "--node", node]);
        outputs.extend([stdout, stderr]);
    }
    for args in [
        &["render", "kubeadm", "-c", MESH][..],
        &["render", "dns", "-c", MESH],
        &["render", "dns", "-c", MESH, "--format", "hosts"],
    ] {
        let (stdout, stderr, _) = vipd(args);
        outputs.extend([stdout, stderr]);
    }
    // A key that does not match: the error names the secret, not its value.
    let (stdout, stderr, code) = vipd(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--secrets",
        "tests/fixtures/render/mismatch.secrets.toml",
        "--node",
        "lb-a",
        "--show-secrets",
    ]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("error[wireguard-private-key]: secret \"wg_lb_a\" is the private key of"),
        "{stderr}"
    );
    outputs.extend([stdout, stderr]);
    let wrong = secret_values("mismatch.secrets.toml");
    for out in &outputs {
        for secret in secrets.iter().chain(&wrong) {
            assert!(!out.contains(secret.as_str()), "a secret leaked:\n{out}");
        }
    }
    // With the flag, it is there.
    let shown = render(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--node",
        "lb-a",
        "--show-secrets",
    ]);
    assert!(
        shown.contains(&format!("PrivateKey = {}\n", secrets[0])),
        "{shown}"
    );
}

#[test]
fn output_files_are_whole_with_the_right_mode() {
    let dir = tempfile::tempdir().unwrap();
    let wg = dir.path().join("wg7.conf");
    let kubeadm = dir.path().join("kubeadm.yaml");
    let (_, stderr, code) = vipd(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--node",
        "cp-1",
        "-o",
        wg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(mode 0600)"), "{stderr}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&wg), 0o600);
    let text = std::fs::read_to_string(&wg).unwrap();
    let cp1_key = "QPWN62zYpqaZXjA6FHt9T3rk1RZGkU7AmE+0q8TdkVE=";
    assert!(
        text.contains(&format!("PrivateKey = {cp1_key}\n")),
        "{text}"
    );
    // Everything else is public: 0644 whatever the umask.
    let (_, stderr, code) = vipd(&[
        "render",
        "kubeadm",
        "-c",
        MESH,
        "-o",
        kubeadm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mode(&kubeadm), 0o644);
    assert_eq!(
        std::fs::read_to_string(&kubeadm).unwrap(),
        render(&["render", "kubeadm", "-c", MESH])
    );
    // Only the two files: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // A directory that does not exist: an error, and no file.
    let missing = dir.path().join("nope/wg7.conf");
    let (_, stderr, code) = vipd(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--node",
        "cp-1",
        "-o",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error: cannot write"), "{stderr}");
    // -o with no secrets file to take the key from: an error naming the fix.
    let (_, stderr, code) = vipd(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--secrets",
        dir.path().join("none.toml").to_str().unwrap(),
        "--node",
        "cp-1",
        "-o",
        dir.path().join("other.conf").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("secret \"wg_cp_1\""), "{stderr}");
    assert!(!dir.path().join("other.conf").exists());
}

#[test]
fn wireguard_needs_a_mesh() {
    let (stdout, stderr, code) = vipd(&["render", "wireguard", "-c", LAN6, "--node", "cp-1"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("no [mesh] section"), "{stderr}");
}

/// The VIP's entry says who moves it: vipd on every node (the default), or
/// nothing with `mesh.follow = false`; and where a node without vipd finds
/// the API after a failover.
#[test]
fn the_vip_entry_says_who_moves_it() {
    let following = render(&["render", "wireguard", "-c", MESH, "--node", "worker-1"]);
    let comment = |text: &str| -> String {
        text.lines()
            .skip_while(|l| !l.starts_with("# The VIP "))
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let text = comment(&following);
    assert!(text.contains("starts on lb-a"), "{following}");
    assert!(
        text.contains("moves the entry to the current VRRP master's peer"),
        "{text}"
    );
    assert!(text.contains("198.19.7.11:16443"), "{text}");
    assert!(!text.contains("follow = false"), "{text}");
    // The preferred holder routes the VIP to nobody: no entry, no comment.
    let holder = render(&["render", "wireguard", "-c", MESH, "--node", "lb-a"]);
    assert!(comment(&holder).is_empty(), "{holder}");

    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(crate_dir().join(MESH)).unwrap();
    let pinned = source.replace(
        "listen_port = 51821\n",
        "listen_port = 51821\nfollow = false\n",
    );
    assert_ne!(pinned, source);
    let config = dir.path().join("mesh.toml");
    std::fs::write(&config, pinned).unwrap();
    let secrets = dir.path().join("mesh.secrets.toml");
    std::fs::copy(
        crate_dir().join(FIXTURES).join("mesh.secrets.toml"),
        &secrets,
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = config.display().to_string();
    let not_following = render(&["render", "wireguard", "-c", &config, "--node", "worker-1"]);
    let text = comment(&not_following);
    assert!(
        text.contains("mesh.follow = false nothing moves this entry"),
        "{text}"
    );
    assert!(text.contains("only once lb-a is back"), "{text}");
    assert!(!text.contains("current VRRP master"), "{text}");
}

/// The keys are wg's: `vipd wg pubkey` of a `wg genkey` key and `wg pubkey`
/// of a `vipd wg genkey` key agree, and vipd's private keys are clamped.
#[test]
fn wg_keys_match_wireguard_tools() {
    if !require_tool("wg", "wireguard-tools", "wg_keys_match_wireguard_tools") {
        return;
    }
    let wg = |args: &[&str], stdin: &str| -> String {
        let mut child = Command::new("wg")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "wg {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for _ in 0..8 {
        let (ours, _, code) = vipd(&["wg", "genkey"]);
        assert_eq!(code, 0);
        assert_eq!(ours.len(), 45, "{ours:?}");
        let (our_pub, _, code) = vipd_with_stdin(&["wg", "pubkey"], &ours);
        assert_eq!(code, 0);
        assert_eq!(our_pub, wg(&["pubkey"], &ours));
        let theirs = wg(&["genkey"], "");
        let (our_pub, _, _) = vipd_with_stdin(&["wg", "pubkey"], &theirs);
        assert_eq!(our_pub, wg(&["pubkey"], &theirs));
    }
    // An unclamped key: both clamp it the same way.
    let raw = "//////////////////////////////////////////8=";
    let (our_pub, _, _) = vipd_with_stdin(&["wg", "pubkey"], raw);
    assert_eq!(our_pub, wg(&["pubkey"], raw));
    // The fixture's keys are what its cluster file says.
    let (shown, _, _) = vipd(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--node",
        "lb-b",
        "--show-secrets",
    ]);
    let private = shown
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .unwrap();
    assert_eq!(
        wg(&["pubkey"], private).trim(),
        "KbjMJRJ/AHz7AH6pW0hG8y3LyDDXWSziteOJp1Dwqy4="
    );
    // Garbage: an error, no output.
    let (stdout, stderr, code) = vipd_with_stdin(&["wg", "pubkey"], "not a key\n");
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("not a WireGuard key"), "{stderr}");
}

/// One `[Section]` of a wg(8) configuration with its `Key = value` lines.
type Section = (String, Vec<(String, String)>);

/// Parses what `wg-quick strip` prints, refusing anything `wg setconf` does
/// not know (wg(8), CONFIGURATION FILE FORMAT).
fn parse_wg_config(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(name == "Interface" || name == "Peer", "section [{name}]");
            sections.push((name.to_owned(), Vec::new()));
            continue;
        }
        let (key, value) = line.split_once('=').expect("Key = value");
        let (key, value) = (key.trim(), value.trim());
        let section = sections.last_mut().expect("a key before any section");
        let known: &[&str] = if section.0 == "Interface" {
            &["PrivateKey", "ListenPort", "FwMark"]
        } else {
            &[
                "PublicKey",
                "PresharedKey",
                "AllowedIPs",
                "Endpoint",
                "PersistentKeepalive",
            ]
        };
        assert!(known.contains(&key), "{key} in [{}]", section.0);
        section.1.push((key.to_owned(), value.to_owned()));
    }
    sections
}

fn field<'a>(section: &'a Section, key: &str) -> Option<&'a str> {
    section
        .1
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `wg-quick strip` accepts every node's file; what it leaves is the setconf
/// syntax with the right keys, peers and AllowedIPs.
#[test]
fn wg_quick_accepts_every_wireguard_file() {
    if !require_tool(
        "wg-quick",
        "wireguard-tools",
        "wg_quick_accepts_every_wireguard_file",
    ) {
        return;
    }
    let secrets = secret_values("mesh.secrets.toml");
    let dir = tempfile::tempdir().unwrap();
    for node in MESH_NODES {
        let path = dir.path().join("wg7.conf");
        let (_, stderr, code) = vipd(&[
            "render",
            "wireguard",
            "-c",
            MESH,
            "--node",
            node,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let out = Command::new("wg-quick")
            .args(["strip", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stripped = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "wg-quick strip refused {node}'s file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sections = parse_wg_config(&stripped);
        assert_eq!(sections[0].0, "Interface");
        let private = field(&sections[0], "PrivateKey").unwrap();
        assert!(secrets.iter().any(|s| s == private), "{node}: not its key");
        assert_eq!(field(&sections[0], "ListenPort"), Some("51821"));
        let peers = &sections[1..];
        assert_eq!(peers.len(), MESH_NODES.len() - 1, "{node}: {stripped}");
        let all_allowed: Vec<&str> = peers
            .iter()
            .flat_map(|p| field(p, "AllowedIPs").unwrap().split(", "))
            .collect();
        // The VIP goes to lb-a, from every node but lb-a.
        let vip_routes = all_allowed
            .iter()
            .filter(|a| **a == "198.19.7.100/32")
            .count();
        assert_eq!(
            vip_routes,
            usize::from(node != "lb-a"),
            "{node}: {stripped}"
        );
        // No AllowedIPs twice: WireGuard would keep only the last.
        let mut unique = all_allowed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all_allowed.len(), "{node}: {stripped}");
        // worker-1 has no endpoint: the others wait for it, it keeps its NAT open.
        for peer in peers {
            let is_worker =
                field(peer, "PublicKey") == Some("GNd2x86GMhZ5nTRpsgVRnyQjjOxXEhW4utNo9d51Si4=");
            assert_eq!(
                field(peer, "Endpoint").is_none(),
                is_worker,
                "{node}: {stripped}"
            );
            assert_eq!(
                field(peer, "PersistentKeepalive").is_some(),
                node == "worker-1",
                "{node}: {stripped}"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}

/// `wg setconf` loads a rendered file into a real (userspace) WireGuard
/// interface, and `wg showconf` gives back the same peers.
#[test]
fn wg_setconf_loads_a_wireguard_file() {
    if !vipd::lab::netns::require_root("wg_setconf_loads_a_wireguard_file")
        || !require_tool(
            "wg-quick",
            "wireguard-tools",
            "wg_setconf_loads_a_wireguard_file",
        )
        || !require_tool(
            "wireguard-go",
            "wireguard-go",
            "wg_setconf_loads_a_wireguard_file",
        )
    {
        return;
    }
    let mut topology = vipd::lab::netns::Topology::new().unwrap();
    let host = topology.add_host("wg").unwrap();
    // The control socket (/var/run/wireguard/NAME.sock) is shared by every
    // namespace: the name carries the run id.
    let ifname = format!("w{}", topology.run_id());
    assert!(ifname.len() <= 15, "{ifname}");
    let socket = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    // wireguard-go removes its socket on SIGTERM; after a SIGKILL (the
    // topology's clean-up on a panic) this guard does.
    let _socket_guard = RemoveOnDrop(socket.clone());
    let mut command = host.command("wireguard-go");
    command
        .args(["-f", &ifname])
        .env("WG_PROCESS_FOREGROUND", "1");
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let pid = topology.spawn(command).unwrap();
    assert!(
        vipd::lab::netns::Topology::wait_for(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || socket.exists()
        ),
        "wireguard-go did not start"
    );

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join(format!("{ifname}.conf"));
    let (_, stderr, code) = vipd(&[
        "render",
        "wireguard",
        "-c",
        MESH,
        "--node",
        "lb-b",
        "-o",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let stripped = Command::new("wg-quick")
        .args(["strip", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(stripped.status.success());
    let plain = dir.path().join("plain.conf");
    std::fs::write(&plain, &stripped.stdout).unwrap();
    let set = host
        .run("wg", &["setconf", &ifname, plain.to_str().unwrap()])
        .unwrap();
    assert!(
        set.status.success(),
        "wg setconf: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    let shown = host.run("wg", &["showconf", &ifname]).unwrap();
    assert!(shown.status.success());
    let shown = String::from_utf8(shown.stdout).unwrap();
    let sections = parse_wg_config(&shown);
    assert_eq!(field(&sections[0], "ListenPort"), Some("51821"));
    assert_eq!(
        field(&sections[0], "PrivateKey"),
        Some("IBkkdX5XOnOm5wt2pVZdpRsalGtvvSv6qwNXe5QFJFg=")
    );
    let peers = &sections[1..];
    assert_eq!(peers.len(), 4, "{shown}");
    let lb_a = peers
        .iter()
        .find(|p| field(p, "PublicKey") == Some("4ItZFbWa9Lm8DuQeZ0+vuHs27tL32x2WBd5VF9VdzGU="))
        .expect("lb-a is a peer");
    let mut allowed: Vec<&str> = field(lb_a, "AllowedIPs").unwrap().split(", ").collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["198.19.7.1/32", "198.19.7.100/32"]);
    assert_eq!(field(lb_a, "Endpoint"), Some("198.18.70.1:51821"));
    let cp_2 = peers
        .iter()
        .find(|p| field(p, "PublicKey") == Some("7G/J9wBpdD94VQCrYYn45ahrSIeY/k2JwZQmwqKiQQM="))
        .expect("cp-2 is a peer");
    let mut allowed: Vec<&str> = field(cp_2, "AllowedIPs").unwrap().split(", ").collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["10.244.2.0/24", "198.19.7.12/32"]);

    topology
        .signal(pid, nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert!(
        vipd::lab::netns::Topology::wait_for(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || !socket.exists()
        ),
        "wireguard-go did not stop"
    );
}

/// Removes a file when dropped, also when the test panics.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// named-checkzone loads the zone lines `$INCLUDE`d into a zone, and the
/// records are the VIP's and every node's.
#[test]
fn named_checkzone_accepts_the_zone_lines() {
    if !require_tool(
        "named-checkzone",
        "bind9-utils",
        "named_checkzone_accepts_the_zone_lines",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (config, zone, expected) in [
        (
            MESH,
            "golden.example",
            vec![
                "api.golden.example. 300 IN A 198.19.7.100",
                "lb-a.golden.example. 300 IN A 198.19.7.1",
                "lb-b.golden.example. 300 IN A 198.19.7.2",
                "cp-1.golden.example. 300 IN A 198.19.7.11",
                "cp-2.golden.example. 300 IN A 198.19.7.12",
                "worker-1.golden.example. 300 IN A 198.19.7.21",
            ],
        ),
        // No [dns] zone: the names take the including zone's origin.
        (
            LAN6,
            "lan6.example",
            vec![
                "k8s-api.lan6.example. 300 IN AAAA 2001:db8:6::100",
                "cp-1.lan6.example. 300 IN AAAA 2001:db8:6::11",
                "cp-2.lan6.example. 300 IN AAAA 2001:db8:6::12",
                "cp-3.lan6.example. 300 IN AAAA 2001:db8:6::13",
            ],
        ),
    ] {
        let records = dir.path().join(format!("{zone}.records"));
        std::fs::write(&records, render(&["render", "dns", "-c", config])).unwrap();
        let zone_file = dir.path().join(format!("{zone}.zone"));
        std::fs::write(
            &zone_file,
            format!(
                "$TTL 300\n$ORIGIN {zone}.\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 198.18.0.53\n$INCLUDE {}\n",
                records.display()
            ),
        )
        .unwrap();
        let out = Command::new("named-checkzone")
            .args(["-D", "-o", "-", zone, zone_file.to_str().unwrap()])
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "named-checkzone refused {config}:\n{dump}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = dump
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        for record in expected {
            assert!(
                lines.iter().any(|l| l == record),
                "{record} missing from:\n{dump}"
            );
        }
        // The VIP and the nodes, and nothing else besides SOA, NS and ns.
        let address_records = lines
            .iter()
            .filter(|l| l.contains(" IN A ") || l.contains(" IN AAAA "))
            .count();
        let nodes = if config == MESH { 5 } else { 3 };
        assert_eq!(address_records, 1 + nodes + 1, "{dump}");
    }
}

#[test]
fn hosts_lines_name_every_address() {
    for (config, fqdn) in [(MESH, true), (LAN6, false)] {
        let text = render(&["render", "dns", "-c", config, "--format", "hosts"]);
        let mut count = 0;
        for line in text.lines() {
            let line = line.split('#').next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let address = fields.next().unwrap();
            assert!(address.parse::<std::net::IpAddr>().is_ok(), "{line}");
            let names: Vec<&str> = fields.collect();
            assert_eq!(names.len(), if fqdn { 2 } else { 1 }, "{line}");
            if fqdn {
                assert_eq!(names[0], format!("{}.golden.example", names[1]));
            }
            count += 1;
        }
        assert_eq!(count, if config == MESH { 6 } else { 4 });
    }
}

fn yaml(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).expect("valid YAML");
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

fn strings(value: &Yaml) -> Vec<&str> {
    value
        .as_vec()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

/// kubeadm is not packaged for Debian: the fragment is checked as YAML with
/// the fields kubeadm reads, and with `kubeadm config validate` when it is installed.
#[test]
fn kubeadm_fragment_has_the_endpoint_and_every_san() {
    for (config, endpoint, sans) in [
        (
            MESH,
            "198.19.7.100:6443",
            vec![
                "198.19.7.100",
                "api",
                "api.golden.example",
                "198.19.7.11",
                "198.19.7.12",
            ],
        ),
        (
            LAN6,
            "[2001:db8:6::100]:443",
            vec![
                "2001:db8:6::100",
                "k8s-api",
                "2001:db8:6::11",
                "2001:db8:6::12",
                "2001:db8:6::13",
            ],
        ),
    ] {
        let text = render(&["render", "kubeadm", "-c", config]);
        let doc = yaml(&text);
        assert_eq!(doc["apiVersion"].as_str(), Some("kubeadm.k8s.io/v1beta4"));
        assert_eq!(doc["kind"].as_str(), Some("ClusterConfiguration"));
        assert_eq!(doc["controlPlaneEndpoint"].as_str(), Some(endpoint));
        assert_eq!(strings(&doc["apiServer"]["certSANs"]), sans);
        let keys: Vec<&str> = doc
            .as_hash()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["apiVersion", "kind", "controlPlaneEndpoint", "apiServer"]
        );
        assert!(
            text.contains(&format!("#     kubeadm join {endpoint} --token <token>")),
            "{text}"
        );
        if which("kubeadm") {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("kubeadm.yaml");
            std::fs::write(&file, &text).unwrap();
            let out = Command::new("kubeadm")
                .args(["config", "validate", "--config", file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "kubeadm config validate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let named = yaml(&render(&[
        "render",
        "kubeadm",
        "-c",
        MESH,
        "--endpoint",
        "name",
    ]));
    assert_eq!(
        named["controlPlaneEndpoint"].as_str(),
        Some("api.golden.example:6443")
    );
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

#[test]
fn static_pod_runs_vipd_with_three_capabilities() {
    for node in MESH_NODES {
        let doc = yaml(&render(&[
            "render",
            "static-pod",
            "-c",
            MESH,
            "--node",
            node,
        ]));
        assert_eq!(doc["apiVersion"].as_str(), Some("v1"));
        assert_eq!(doc["kind"].as_str(), Some("Pod"));
        assert_eq!(doc["metadata"]["namespace"].as_str(), Some("kube-system"));
        let spec = &doc["spec"];
        assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
        assert_eq!(
            spec["priorityClassName"].as_str(),
            Some("system-node-critical")
        );
        // [proxy] drain_timeout = "20s", plus the margin.
        assert_eq!(spec["terminationGracePeriodSeconds"].as_i64(), Some(25));
        let containers = spec["containers"].as_vec().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(
            strings(&c["command"]),
            [
                "vipd",
                "run",
                "--config",
                "/etc/vipd/cluster.toml",
                "--node",
                node
            ]
        );
        let security = &c["securityContext"];
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(
            strings(&security["capabilities"]["add"]),
            ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"]
        );
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert!(security["privileged"].is_badvalue(), "not privileged");
        let mounts = c["volumeMounts"].as_vec().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0]["mountPath"].as_str(), Some("/etc/vipd"));
        assert_eq!(mounts[0]["readOnly"].as_bool(), Some(true));
        let volumes = spec["volumes"].as_vec().unwrap();
        assert_eq!(volumes[0]["hostPath"]["path"].as_str(), Some("/etc/vipd"));
        assert!(c["livenessProbe"].is_badvalue());
    }
    // The secrets file elsewhere: its directory is mounted too, read-only.
    let doc = yaml(&render(&[
        "render",
        "static-pod",
        "-c",
        LAN6,
        "--node",
        "cp-2",
    ]));
    let mounts = doc["spec"]["containers"][0]["volumeMounts"]
        .as_vec()
        .unwrap();
    let paths: Vec<&str> = mounts
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/etc/vipd", "/etc/vipd-secrets"]);
    assert!(mounts.iter().all(|m| m["readOnly"].as_bool() == Some(true)));
    // A relative path on the node is refused.
    let (_, stderr, code) = vipd(&[
        "render",
        "static-pod",
        "-c",
        LAN6,
        "--node",
        "cp-2",
        "--node-config",
        "cluster.toml",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("absolute path"), "{stderr}");
}

#[test]
fn help_names_every_renderer_and_option() {
    let (help, _, code) = vipd(&["render", "--help"]);
    assert_eq!(code, 0);
    for command in ["nftables", "wireguard", "kubeadm", "dns", "static-pod"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    for (command, options) in [
        (
            "wireguard",
            &["--node", "--output", "--show-secrets", "--secrets"][..],
        ),
        ("kubeadm", &["--output", "--endpoint", "--api-version"]),
        ("dns", &["--output", "--format", "hosts"]),
        (
            "static-pod",
            &["--node", "--output", "--image", "--node-config"],
        ),
    ] {
        let (help, _, code) = vipd(&["render", command, "--help"]);
        assert_eq!(code, 0);
        for option in options {
            assert!(
                help.contains(option),
                "{option} missing from render {command}:\n{help}"
            );
        }
    }
    let (help, _, code) = vipd(&["wg", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("genkey") && help.contains("pubkey"), "{help}");
}
