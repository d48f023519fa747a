//! The generated `inet vipd` rulesets against golden files in
//! tests/fixtures/nftables/ (`CASE.nft`), and `vipd render nftables`.
//! With root, every golden file is also checked by the kernel (`nft -c`)
//! inside a namespace of its own.
//!
//! Regenerate the golden files on purpose with
//! `VIPD_BLESS=1 cargo test -p vipd --test nftables` and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vipd::config::NodePlan;
use vipd::config::resolve::DnatPlan;
use vipd::lab::netns::{Topology, require_root};
use vipd::nftables::ruleset;

const FIXTURES: &str = "tests/fixtures/nftables";

/// One golden file: a cluster file, the holder, which targets are healthy.
struct Case {
    name: &'static str,
    cluster: &'static str,
    node: &'static str,
    healthy: &'static [bool],
}

const CASES: &[Case] = &[
    Case {
        name: "three-planes-all-healthy",
        cluster: "three-planes.toml",
        node: "lb-a",
        healthy: &[true, true, true],
    },
    Case {
        name: "three-planes-cp-3-down",
        cluster: "three-planes.toml",
        node: "lb-a",
        healthy: &[true, true, false],
    },
    Case {
        name: "three-planes-only-cp-2",
        cluster: "three-planes.toml",
        node: "lb-a",
        healthy: &[false, true, false],
    },
    Case {
        name: "firewall-all-healthy",
        cluster: "firewall.toml",
        node: "lb-a",
        healthy: &[true, true, true],
    },
    Case {
        name: "firewall-only-cp-1",
        cluster: "firewall.toml",
        node: "lb-b",
        healthy: &[true, false, false],
    },
    Case {
        name: "ipv6-all-healthy",
        cluster: "ipv6.toml",
        node: "lb-a",
        healthy: &[true, true],
    },
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node_plan(cluster: &str, node: &str) -> NodePlan {
    let path = crate_dir().join(FIXTURES).join(cluster);
    let checked = vipd::config::check_file(&path, None).unwrap();
    assert_eq!(checked.errors(), 0, "{}", checked.render());
    checked.spec.unwrap().plan(node).unwrap()
}

fn dnat_plan(cluster: &str, node: &str) -> DnatPlan {
    node_plan(cluster, node)
        .dnat
        .expect("a VIP holder with the dnat datapath")
}

fn golden_path(name: &str) -> PathBuf {
    crate_dir().join(FIXTURES).join(format!("{name}.nft"))
}

#[test]
fn every_case_renders_its_golden_file() {
    let bless = std::env::var_os("VIPD_BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in CASES {
        let plan = dnat_plan(case.cluster, case.node);
        let actual = ruleset::replace_batch(&plan, case.healthy).unwrap();
        let path = golden_path(case.name);
        if bless {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run with VIPD_BLESS=1", path.display()));
        if expected != actual {
            mismatches.push(format!("--- {}\n+++ actual\n{actual}", path.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "rulesets differ from their golden files (VIPD_BLESS=1 regenerates them):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn the_refill_batch_is_the_replace_batch_with_flush_for_delete() {
    let plan = dnat_plan("firewall.toml", "lb-a");
    let healthy = [true, false, true];
    let replace = ruleset::replace_batch(&plan, &healthy).unwrap();
    let refill = ruleset::refill_batch(&plan, &healthy).unwrap();
    assert_eq!(
        refill,
        replace.replace("\ndelete table inet vipd\n", "\nflush table inet vipd\n")
    );
    assert_ne!(refill, replace);
}

#[test]
fn the_firewall_counter_and_sets_only_come_with_the_firewall() {
    let without = ruleset::table(&dnat_plan("three-planes.toml", "lb-a"), &[true; 3]).unwrap();
    assert!(!without.contains("firewall"), "{without}");
    let with = ruleset::table(&dnat_plan("firewall.toml", "lb-a"), &[true; 3]).unwrap();
    assert!(with.contains("counter firewall_dropped {"), "{with}");
    // Without a mesh the node addresses are allowed (merged where they
    // touch); 198.18.1.40 lies inside 198.18.1.32/27 and merges into it.
    assert!(
        with.contains("elements = { 198.18.0.9, 198.18.0.10/31, 198.18.0.12/31, 198.18.1.32/27 }"),
        "{with}"
    );
}

fn vipd(args: &[&str]) -> (String, String, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .current_dir(crate_dir())
        .output()
        .expect("run vipd");
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        output.status.code().expect("exit code"),
    )
}

#[test]
fn render_nftables_prints_the_all_healthy_ruleset() {
    let config = format!("{FIXTURES}/three-planes.toml");
    let (stdout, stderr, code) = vipd(&["render", "nftables", "-c", &config, "--node", "lb-a"]);
    assert_eq!(code, 0, "{stderr}");
    let golden = std::fs::read_to_string(golden_path("three-planes-all-healthy")).unwrap();
    assert_eq!(stdout, golden);
}

#[test]
fn render_nftables_explains_a_node_without_dnat_and_prints_a_proxy_holders_guard() {
    let config = format!("{FIXTURES}/three-planes.toml");
    let (stdout, stderr, code) = vipd(&["render", "nftables", "-c", &config, "--node", "cp-1"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("\"cp-1\" does not hold the VIP"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("proxy.toml");
    let text = std::fs::read_to_string(crate_dir().join(&config))
        .unwrap()
        .replace("datapath = \"dnat\"", "datapath = \"proxy\"");
    std::fs::write(&proxy, text).unwrap();
    // A proxy-datapath holder loads the crash guard alone: that is printed.
    let (stdout, stderr, code) = vipd(&[
        "render",
        "nftables",
        "-c",
        proxy.to_str().unwrap(),
        "--node",
        "lb-a",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let guard = vipd::nftables::guard::replace_batch(
        node_plan("three-planes.toml", "lb-a")
            .dnat
            .unwrap()
            .destination,
    );
    assert_eq!(stdout, guard);
    assert!(!stdout.contains("table inet vipd\n"), "{stdout}");

    let (_, stderr, code) = vipd(&["render", "nftables", "-c", &config, "--node", "lb-z"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no node \"lb-z\""), "{stderr}");
}

fn nft_check_in(netns: &vipd::lab::netns::Netns, file: &Path) -> Result<(), String> {
    let output = netns
        .command("nft")
        .args(["-c", "-f"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn the_kernel_accepts_every_golden_file() {
    if !require_root("the_kernel_accepts_every_golden_file") {
        return;
    }
    let mut topo = Topology::new().unwrap();
    let host = topo.add_host("nftcheck").unwrap();
    let mut refused = Vec::new();
    for case in CASES {
        let path = golden_path(case.name);
        if let Err(stderr) = nft_check_in(&host, &path) {
            refused.push(format!("{}:\n{stderr}", path.display()));
        }
    }
    // The proxy datapath's crash guard, for an IPv4 and an IPv6 VIP.
    let dir = tempfile::tempdir().unwrap();
    for vip in ["198.18.0.100:6443", "[2001:db8::100]:443"] {
        let path = dir.path().join("guard.nft");
        std::fs::write(
            &path,
            vipd::nftables::guard::replace_batch(vip.parse().unwrap()),
        )
        .unwrap();
        if let Err(stderr) = nft_check_in(&host, &path) {
            refused.push(format!("the crash guard for {vip}:\n{stderr}"));
        }
    }
    assert!(
        refused.is_empty(),
        "nft -c refused:\n{}",
        refused.join("\n")
    );
}
