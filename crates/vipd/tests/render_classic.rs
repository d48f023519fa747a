//! `vipd render keepalived` and `vipd render haproxy`: golden files for the
//! examples and the fixtures in tests/fixtures/render/ (`VIPD_BLESS=1`
//! rewrites them), and acceptance by the programs themselves: every
//! rendered config passes `haproxy -c -f` and `keepalived -t -f` (the
//! latter inside a namespace that has the VIP's interface: root).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use vipd::lab::netns::{Topology, require_root};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keepalived,
    Haproxy,
}

/// (cluster file from the repo root, node, what, --show-secrets)
const CASES: &[(&str, &str, Kind, bool)] = &[
    ("examples/lab.toml", "holder-1", Kind::Keepalived, false),
    ("examples/lab.toml", "holder-2", Kind::Keepalived, false),
    ("examples/lab.toml", "plane-1", Kind::Haproxy, false),
    ("examples/ha.toml", "lb-a", Kind::Keepalived, false),
    ("examples/ha.toml", "cp-1", Kind::Haproxy, false),
    ("examples/seed.toml", "haproxy-spb", Kind::Keepalived, false),
    ("examples/seed.toml", "bay-plane1", Kind::Haproxy, false),
    ("examples/stacked.toml", "cp-1", Kind::Keepalived, false),
    ("examples/stacked.toml", "cp-2", Kind::Haproxy, false),
    (
        "crates/vipd/tests/fixtures/render/full.toml",
        "cp-1",
        Kind::Keepalived,
        true,
    ),
    (
        "crates/vipd/tests/fixtures/render/full.toml",
        "cp-2",
        Kind::Keepalived,
        false,
    ),
    (
        "crates/vipd/tests/fixtures/render/full.toml",
        "cp-1",
        Kind::Haproxy,
        false,
    ),
    (
        "crates/vipd/tests/fixtures/render/full.toml",
        "worker-1",
        Kind::Haproxy,
        false,
    ),
    (
        "crates/vipd/tests/fixtures/render/tcp.toml",
        "lb-1",
        Kind::Keepalived,
        false,
    ),
    (
        "crates/vipd/tests/fixtures/render/tcp.toml",
        "cp-2",
        Kind::Haproxy,
        false,
    ),
];

fn golden_name(config: &str, node: &str, kind: Kind, show: bool) -> String {
    let stem = Path::new(config)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let show = if show { ".show-secrets" } else { "" };
    match kind {
        Kind::Keepalived => format!("{stem}.{node}{show}.keepalived.conf"),
        Kind::Haproxy => format!("{stem}.{node}{show}.haproxy.cfg"),
    }
}

/// Copies the cluster file (and a secrets.toml beside it, mode 0600) into
/// `dir`, with every CA path replaced by `ca` when given. Returns the copy.
fn stage(config: &str, dir: &Path, ca: Option<&Path>) -> PathBuf {
    let source = repo().join(config);
    let mut text = std::fs::read_to_string(&source).unwrap();
    if let Some(ca) = ca {
        for path in ["/etc/kubernetes/pki/ca.crt", "/run/vipd-lab/ca.crt"] {
            text = text.replace(path, &ca.display().to_string());
        }
    }
    let target = dir.join(source.file_name().unwrap());
    std::fs::write(&target, text).unwrap();
    let secrets = source.with_file_name("secrets.toml");
    if secrets.exists() {
        let copy = dir.join("secrets.toml");
        std::fs::copy(&secrets, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    target
}

fn render(config: &Path, node: &str, kind: Kind, show: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vipd"));
    command.arg("render").arg(match kind {
        Kind::Keepalived => "keepalived",
        Kind::Haproxy => "haproxy",
    });
    command.arg("-c").arg(config).args(["--node", node]);
    if show {
        command.arg("--show-secrets");
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "vipd render {kind:?} {} --node {node}: {}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn rendered_configs_match_their_golden_files() {
    let bless = std::env::var("VIPD_BLESS").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for &(config, node, kind, show) in CASES {
        let staged = stage(config, dir.path(), None);
        let text = render(&staged, node, kind, show);
        let golden = fixtures().join(golden_name(config, node, kind, show));
        if bless {
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with VIPD_BLESS=1 to write it",
                golden.display()
            )
        });
        if text != expected {
            wrong.push(format!(
                "--- {} (expected)\n{expected}\n--- rendered\n{text}",
                golden.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nVIPD_BLESS=1 rewrites the golden files",
        wrong.join("\n")
    );
}

#[test]
fn secrets_are_printed_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let staged = stage(
        "crates/vipd/tests/fixtures/render/full.toml",
        dir.path(),
        None,
    );
    let hidden = render(&staged, "cp-2", Kind::Keepalived, false);
    assert!(!hidden.contains("s3cr3t"), "{hidden}");
    assert!(hidden.contains("auth_pass REDACTED"), "{hidden}");
    let shown = render(&staged, "cp-2", Kind::Keepalived, true);
    assert!(shown.contains("auth_pass s3cr3t"), "{shown}");
}

#[test]
fn nodes_without_the_program_get_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(repo())
        .args([
            "render",
            "keepalived",
            "-c",
            "examples/lab.toml",
            "--node",
            "plane-1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not hold the VIP"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(repo())
        .args([
            "render",
            "haproxy",
            "-c",
            "examples/lab.toml",
            "--node",
            "holder-1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("vipd render nftables"), "{stderr}");
}

/// The addresses in a keepalived.conf's `unicast_peer` block.
fn unicast_peers(text: &str) -> std::collections::BTreeSet<std::net::IpAddr> {
    let Some((_, block)) = text.split_once("unicast_peer {") else {
        return Default::default();
    };
    let block = block.split_once('}').unwrap().0;
    block
        .lines()
        .filter_map(|line| line.split('#').next()?.split_whitespace().next())
        .map(|word| word.parse().unwrap())
        .collect()
}

/// With the VIP on the mesh, a keepalived holder advertises to every other
/// node of the file (the other holders and the followers), so the vipd
/// nodes follow a keepalived master during a migration; on a LAN only to
/// the other holders.
#[test]
fn a_keepalived_master_on_the_mesh_advertises_to_every_follower() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh_cases = 0;
    for &(config, node, kind, show) in CASES {
        if kind != Kind::Keepalived {
            continue;
        }
        let staged = stage(config, dir.path(), None);
        let text = render(&staged, node, kind, show);
        let checked = vipd::config::check_file(&staged, None).unwrap();
        let spec = checked.spec.unwrap();
        let others = spec.nodes.iter().filter(|n| n.name != node);
        let expected: std::collections::BTreeSet<std::net::IpAddr> = if spec.mesh_follows() {
            mesh_cases += 1;
            assert!(text.contains("The mesh followers"), "{text}");
            others.map(|n| n.address).collect()
        } else {
            others
                .filter(|n| n.has_role(vipd::config::spec::Role::Vip))
                .map(|n| n.address)
                .collect()
        };
        // Multicast has no peer list; a file naming its own peers
        // (vip.unicast_peers) is not judged here.
        if spec.vrrp_mode() == vipd::config::spec::VrrpMode::Unicast
            && spec.vip.unicast_peers.is_none()
        {
            assert_eq!(
                unicast_peers(&text),
                expected,
                "{config} --node {node}:\n{text}"
            );
        }
    }
    assert!(mesh_cases >= 2, "no mesh case left in CASES");
}

/// True when `program` runs; without it the acceptance tests skip, or fail
/// under CI=true (scripts/test.sh installs both).
fn have(program: &str, test: &str) -> bool {
    if Command::new(program).arg("-v").output().is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs {program}, and CI=true: failing instead of skipping");
    }
    eprintln!("skipped: needs {program} ({test})");
    false
}

fn lab_ca(dir: &Path) -> PathBuf {
    let ca = vipd::lab::pki::LabCa::new("render test CA").unwrap();
    let path = dir.join("ca.crt");
    std::fs::write(&path, ca.certificate_pem()).unwrap();
    path
}

#[test]
fn haproxy_accepts_every_rendered_config() {
    if !have("haproxy", "haproxy_accepts_every_rendered_config") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = lab_ca(dir.path());
    for &(config, node, kind, show) in CASES {
        if kind != Kind::Haproxy {
            continue;
        }
        let staged = stage(config, dir.path(), Some(&ca));
        let text = render(&staged, node, kind, show);
        let file = dir.path().join(golden_name(config, node, kind, show));
        std::fs::write(&file, &text).unwrap();
        let output = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "haproxy -c refuses {config} --node {node}:\n{}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn keepalived_accepts_every_rendered_config() {
    if !require_root("keepalived_accepts_every_rendered_config")
        || !have("keepalived", "keepalived_accepts_every_rendered_config")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = lab_ca(dir.path());
    // keepalived -t insists that the interfaces exist: one namespace per
    // interface name the cases use.
    let mut topo = Topology::new().unwrap();
    let mut hosts = std::collections::BTreeMap::new();
    for &(config, node, kind, show) in CASES {
        if kind != Kind::Keepalived {
            continue;
        }
        let staged = stage(config, dir.path(), Some(&ca));
        let text = render(&staged, node, kind, show);
        let interface = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("interface "))
            .unwrap()
            .to_owned();
        let host = hosts.entry(interface.clone()).or_insert_with(|| {
            let host = topo
                .add_host(&format!("k{}", hosts_len_hint(&interface)))
                .unwrap();
            topo.plug(&host, &interface, &[]).unwrap();
            host
        });
        let file = dir.path().join(golden_name(config, node, kind, show));
        std::fs::write(&file, &text).unwrap();
        let output = host
            .run("keepalived", &["-t", "-f", &file.display().to_string()])
            .unwrap();
        assert!(
            output.status.success(),
            "keepalived -t refuses {config} --node {node}:\n{}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(topo);
}

/// A short, name-safe tag for an interface name.
fn hosts_len_hint(interface: &str) -> String {
    interface
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// Every keepalived and HAProxy golden file belongs to a case (none is stale).
#[test]
fn no_classic_golden_file_is_left_over() {
    let cases: Vec<String> = CASES
        .iter()
        .map(|&(config, node, kind, show)| golden_name(config, node, kind, show))
        .collect();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".keepalived.conf") || name.ends_with(".haproxy.cfg") {
            assert!(cases.contains(&name), "{name} belongs to no case");
        }
    }
}
