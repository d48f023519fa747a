//! What the package installs: the systemd unit (checked against what vipd
//! does, and by `systemd-analyze verify`), the man pages and completions
//! `vipd generate` writes, the Debian changelog's version, the Ansible
//! role's defaults against its argument_specs. scripts/test.sh builds the
//! .deb itself and lists it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vipd(args: &[&str]) -> (String, String, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .output()
        .expect("run vipd");
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        output.status.success(),
    )
}

/// The unit's `[Service]` keys, each with its values in order (a key may
/// repeat, e.g. SystemCallFilter=). Comments and blank lines skipped.
fn unit_sections(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("vipd.service:{}: not key=value: {line}", number + 1));
        assert!(
            !current.is_empty(),
            "vipd.service:{}: key outside a section",
            number + 1
        );
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    sections
}

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/vipd.service")).unwrap()
}

fn words(values: &[String]) -> Vec<&str> {
    let mut words: Vec<&str> = values.iter().flat_map(|v| v.split_whitespace()).collect();
    words.sort_unstable();
    words
}

#[test]
fn the_unit_fits_what_vipd_does() {
    let sections = unit_sections(&unit_text());
    let service = &sections["Service"];
    let one = |key: &str| -> &str {
        let values = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] has no {key}="));
        assert_eq!(values.len(), 1, "{key}= set more than once");
        &values[0]
    };
    // READY=1 from vipd, and a reload vipd answers with RELOADING=1/READY=1.
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert!(one("WatchdogSec").ends_with('s'));
    // Exactly the three capabilities, held and inherited by nft.
    let caps = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    assert_eq!(words(&service["CapabilityBoundingSet"]), caps);
    assert_eq!(words(&service["AmbientCapabilities"]), caps);
    assert_eq!(one("NoNewPrivileges"), "yes");
    // Read-only everywhere; the status socket's directory is the one vipd writes.
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("RuntimeDirectory"), "vipd");
    assert_eq!(one("RuntimeDirectoryMode"), "0700");
    // vipd reads /proc/sys/net/ipv4/ip_forward: /proc/sys must stay visible.
    assert!(
        !service.contains_key("ProcSubset"),
        "ProcSubset=pid hides /proc/sys"
    );
    // VRRP (raw IP), ARP/NA (packet), rtnetlink and nftables (netlink),
    // the status socket and sd_notify (unix).
    assert_eq!(
        words(&service["RestrictAddressFamilies"]),
        ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"]
    );
    // splice(2) for the proxy: in @system-service, not denied after it.
    assert_eq!(service["SystemCallFilter"][0], "@system-service");
    // The command line is one vipd accepts: every option of ExecStart is
    // one `vipd run` knows.
    let exec = one("ExecStart");
    let mut argv = exec.split_whitespace();
    assert_eq!(argv.next(), Some("/usr/bin/vipd"));
    assert_eq!(argv.next(), Some("run"));
    let (help, _, ok) = vipd(&["run", "--help"]);
    assert!(ok);
    for option in argv.filter(|a| a.starts_with("--")) {
        assert!(help.contains(option), "vipd run has no {option}: {exec}");
    }
    assert!(exec.contains("--config /etc/vipd/cluster.toml"), "{exec}");
    let unit = &sections["Unit"];
    assert_eq!(unit["ConditionPathExists"], ["/etc/vipd/cluster.toml"]);
    assert_eq!(sections["Install"]["WantedBy"], ["multi-user.target"]);
}

/// `systemd-analyze verify` knows every key and value systemd 252 accepts.
/// It exits 0 on unknown keys and bad values (it only warns), so any
/// output fails the test. The binary path is swapped for the one built here
/// (verify checks that ExecStart= exists).
#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none_or(|ci| ci != "true"),
            "systemd-analyze is missing (scripts/test.sh installs systemd)"
        );
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("vipd.service");
    let text = unit_text().replace("/usr/bin/vipd", env!("CARGO_BIN_EXE_vipd"));
    std::fs::write(&unit, &text).unwrap();
    let verify = |unit: &Path| {
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(unit)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), report)
    };
    let (ok, report) = verify(&unit);
    assert!(
        ok && report.trim().is_empty(),
        "systemd-analyze verify:\n{report}"
    );
    // The check itself catches a mistake.
    std::fs::write(
        &unit,
        text.replace("ProtectSystem=strict", "ProtectSystem=stricter"),
    )
    .unwrap();
    let (_, report) = verify(&unit);
    assert!(
        report.contains("stricter"),
        "verify missed a bad value: {report}"
    );
}

#[test]
fn man_pages_cover_every_visible_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let (listed, stderr, ok) = vipd(&["generate", "man", "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(listed.lines().count(), names.len(), "{listed}");
    for page in [
        "vipd.1",
        "vipd-check.1",
        "vipd-config.1",
        "vipd-config-show.1",
        "vipd-render.1",
        "vipd-render-nftables.1",
        "vipd-run.1",
    ] {
        assert!(names.iter().any(|n| n == page), "{page} missing: {names:?}");
    }
    // Hidden, and no temp file left behind.
    assert!(
        !names
            .iter()
            .any(|n| n.contains("generate") || n.starts_with('.')),
        "{names:?}"
    );
    let run = std::fs::read_to_string(out.join("vipd-run.1")).unwrap();
    assert!(run.contains(".TH vipd-run 1"), "{run}");
    assert!(run.contains("\\-\\-node"), "{run}");
    assert!(
        run.contains(concat!("vipd ", env!("CARGO_PKG_VERSION"))),
        "{run}"
    );
    assert!(
        run.contains(".SH FILES") && run.contains("/etc/vipd/cluster.toml"),
        "{run}"
    );
    assert!(
        run.contains(".SH \"SEE ALSO\"") && run.contains("vipd\\-check"),
        "{run}"
    );
    let check = std::fs::read_to_string(out.join("vipd-check.1")).unwrap();
    assert!(
        !check.contains(".SH FILES"),
        "FILES only on vipd(1) and vipd-run(1)"
    );
    assert!(check.contains("vipd\\-run"), "{check}");
    let (top, _, _) = vipd(&["--help"]);
    assert!(
        !top.contains("generate"),
        "generate is meant to be hidden:\n{top}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for (shell, file, marker) in [
        ("bash", "vipd.bash", "complete -F _vipd"),
        ("zsh", "_vipd", "#compdef vipd"),
        ("fish", "vipd.fish", "complete -c vipd"),
    ] {
        let (_, stderr, ok) = vipd(&["generate", "completions", shell, "--out", out]);
        assert!(ok, "{shell}: {stderr}");
        let script = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker}");
        assert!(script.contains("nftables"), "{shell}: subcommands missing");
    }
    let (stdout, _, ok) = vipd(&["generate", "completions", "bash"]);
    assert!(ok && stdout.contains("complete -F _vipd"));
    let (_, stderr, ok) = vipd(&["generate", "man", "--out", "/proc/vipd-cannot-write-here"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot create /proc/vipd-cannot-write-here"),
        "{stderr}"
    );
}

#[test]
fn the_debian_changelog_is_at_this_version() {
    let changelog = std::fs::read_to_string(repo().join("deploy/debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap();
    let expected = format!("vipd ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with(&expected),
        "deploy/debian/changelog starts with {first:?}; add an entry for {expected:?}"
    );
}

/// The Ansible role's defaults and its argument_specs agree: every default
/// is an option, every option is in the defaults, and where the spec names
/// a default it is the defaults file's value, of the spec's type.
#[test]
fn the_ansible_roles_defaults_and_argument_specs_agree() {
    use yaml_rust2::{Yaml, YamlLoader};
    let role = repo().join("deploy/ansible/roles/vipd");
    let load = |path: &str| {
        let text = std::fs::read_to_string(role.join(path)).unwrap();
        YamlLoader::load_from_str(&text).unwrap().remove(0)
    };
    let defaults = load("defaults/main.yml");
    let specs = load("meta/argument_specs.yml");
    let options = specs["argument_specs"]["main"]["options"]
        .as_hash()
        .expect("argument_specs.main.options");
    let defaults = defaults.as_hash().expect("defaults/main.yml is a mapping");
    assert!(options.len() > 10 && defaults.len() > 10);
    for name in defaults.keys() {
        assert!(
            options.contains_key(name),
            "defaults/main.yml sets {name:?}, which meta/argument_specs.yml does not describe"
        );
    }
    for (name, option) in options {
        let value = defaults.get(name).unwrap_or_else(|| {
            panic!(
                "meta/argument_specs.yml describes {name:?}, which defaults/main.yml does not set"
            )
        });
        let description = &option["description"];
        assert!(
            !description.is_badvalue() && !description.is_null(),
            "{name:?} has no description"
        );
        let kind = option["type"].as_str().unwrap_or("str");
        let typed = match kind {
            "bool" => matches!(value, Yaml::Boolean(_)),
            "dict" => matches!(value, Yaml::Hash(_)),
            "str" | "path" => matches!(value, Yaml::String(_)),
            other => panic!("{name:?}: type {other} not covered here"),
        };
        assert!(
            typed,
            "{name:?} is a {kind} in the spec, but its default is {value:?}"
        );
        let default = &option["default"];
        if !default.is_badvalue() {
            assert_eq!(
                default, value,
                "{name:?}: argument_specs says default {default:?}, defaults/main.yml {value:?}"
            );
        }
        if let Some(choices) = option["choices"].as_vec() {
            assert!(
                choices.contains(value),
                "{name:?}: {value:?} is not one of its choices"
            );
        }
    }
}
