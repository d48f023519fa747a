//! `vipd check` against the fixtures in tests/fixtures/check/: each fixture's
//! full report and exit code are pinned in `NAME.expected`.
//!
//! Regenerate the expectations on purpose with `VIPD_BLESS=1 cargo test --test check`
//! and review the diff like code.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = "tests/fixtures/check";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// The fixtures' secrets files come out of git as 0644; set the mode each
/// fixture asks for (`# secrets-mode: 0644`), 0600 otherwise.
fn prepare_secrets(fixture: &Path) {
    let text = std::fs::read_to_string(fixture).unwrap();
    let mode = text
        .lines()
        .find_map(|l| l.strip_prefix("# secrets-mode: "))
        .map_or(0o600, |m| u32::from_str_radix(m.trim(), 8).unwrap());
    let secrets = fixture.with_extension("secrets.toml");
    if secrets.exists() {
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(crate_dir().join(FIXTURES))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && !p.to_string_lossy().ends_with(".secrets.toml")
        })
        .collect();
    list.sort();
    list
}

#[test]
fn every_fixture_gives_its_expected_report() {
    let bless = std::env::var_os("VIPD_BLESS").is_some();
    let mut mismatches = Vec::new();
    for fixture in fixtures() {
        prepare_secrets(&fixture);
        let relative = fixture.strip_prefix(crate_dir()).unwrap();
        let (stdout, _, code) = vipd(&["check", "-c", relative.to_str().unwrap()]);
        let actual = format!("{stdout}exit: {code}\n");
        let expected_path = fixture.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run with VIPD_BLESS=1",
                expected_path.display()
            )
        });
        if expected != actual {
            mismatches.push(format!(
                "--- {}\n+++ actual\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn fixtures_named_for_a_problem_fail_and_valid_ones_pass() {
    for fixture in fixtures() {
        prepare_secrets(&fixture);
        let name = fixture.file_stem().unwrap().to_str().unwrap().to_owned();
        let relative = fixture.strip_prefix(crate_dir()).unwrap();
        let (stdout, _, code) = vipd(&["check", "-c", relative.to_str().unwrap()]);
        let clean = stdout.lines().count() == 1 && stdout.ends_with(": ok\n");
        if name.starts_with("valid-") || name == "priority-owner" {
            assert!(clean && code == 0, "{name} should pass cleanly:\n{stdout}");
        } else {
            assert!(!clean, "{name} should report something:\n{stdout}");
            let warnings_only = !stdout.contains("\nerror[") && !stdout.starts_with("error[");
            assert_eq!(
                code,
                i32::from(!warnings_only),
                "{name} exit code:\n{stdout}"
            );
            if warnings_only {
                let (_, _, strict) = vipd(&["check", "--strict", "-c", relative.to_str().unwrap()]);
                assert_eq!(strict, 1, "{name}: --strict fails on warnings");
            }
        }
    }
}

/// Every code of the rule catalogue is produced by at least one fixture, and
/// documented in docs/config.md.
#[test]
fn every_rule_has_a_failing_fixture_and_documentation() {
    let (list, _, code) = vipd(&["check", "--list-rules"]);
    assert_eq!(code, 0);
    let codes: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(codes.len() >= 40, "{} rules", codes.len());
    let mut reports = String::new();
    for fixture in fixtures() {
        reports.push_str(
            &std::fs::read_to_string(fixture.with_extension("expected")).unwrap_or_default(),
        );
    }
    let docs = std::fs::read_to_string(crate_dir().join("../../docs/config.md")).unwrap();
    for code in codes {
        let (error, warning) = (format!("error[{code}]"), format!("warning[{code}]"));
        assert!(
            reports.contains(&error) || reports.contains(&warning),
            "no fixture produces {code}"
        );
        assert!(
            docs.contains(&format!("`{code}`")),
            "docs/config.md does not document {code}"
        );
    }
}

/// The other way round: every code a fixture produces is in the catalogue
/// (`--list-rules`), so no rule is reported without being listed.
#[test]
fn every_reported_code_is_in_the_catalogue() {
    let (list, _, _) = vipd(&["check", "--list-rules"]);
    let codes: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for fixture in fixtures() {
        let expected =
            std::fs::read_to_string(fixture.with_extension("expected")).unwrap_or_default();
        for line in expected.lines() {
            let Some(rest) = line
                .strip_prefix("error[")
                .or_else(|| line.strip_prefix("warning["))
            else {
                continue;
            };
            let code = rest.split(']').next().unwrap();
            assert!(
                codes.contains(&code),
                "{code} (in {}) is not in --list-rules",
                fixture.display()
            );
        }
    }
}

#[test]
fn json_report_gives_code_place_and_help() {
    let (stdout, _, code) = vipd(&[
        "check",
        "--format",
        "json",
        "-c",
        "tests/fixtures/check/type.toml",
    ]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["errors"], 2);
    assert_eq!(report["warnings"], 0);
    let first = &report["diagnostics"][0];
    assert_eq!(first["code"], "type");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["path"], "nodes[0].priority");
    assert_eq!(first["line"], 17);
    assert_eq!(first["column"], 12);
    assert!(first["help"].as_str().unwrap().contains("docs/config.md"));
}

#[test]
fn the_examples_pass() {
    for example in ["ha", "stacked", "lab", "seed"] {
        let path = format!("../../examples/{example}.toml");
        let (stdout, _, code) = vipd(&["check", "-c", &path]);
        assert_eq!(code, 0, "{example}:\n{stdout}");
        assert!(!stdout.contains("error["), "{example}:\n{stdout}");
    }
    // The seed's topology is accepted, with its flaw named.
    let (stdout, _, _) = vipd(&["check", "-c", "../../examples/seed.toml"]);
    assert!(stdout.contains("warning[single-vip-holder]"), "{stdout}");
    assert!(stdout.contains("single point of failure"), "{stdout}");
}

#[test]
fn an_unreadable_file_is_an_error_not_a_panic() {
    let (stdout, stderr, code) = vipd(&["check", "-c", "tests/fixtures/check/does-not-exist.toml"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("error: cannot read tests/fixtures/check/does-not-exist.toml"),
        "{stderr}"
    );
}

#[test]
fn a_secret_in_the_secrets_file_never_shows_in_check_output() {
    // The too-long password fixture's value, as written in its secrets file.
    let fixture = crate_dir().join(FIXTURES).join("auth-too-long.toml");
    prepare_secrets(&fixture);
    let (stdout, stderr, _) = vipd(&["check", "-c", "tests/fixtures/check/auth-too-long.toml"]);
    let (json, _, _) = vipd(&[
        "check",
        "--format",
        "json",
        "-c",
        "tests/fixtures/check/auth-too-long.toml",
    ]);
    assert!(stdout.contains("error[auth-too-long]"), "{stdout}");
    assert!(json.contains("\"auth-too-long\""), "{json}");
    for out in [stdout, stderr, json] {
        assert!(!out.contains("much-too-long-1"), "{out}");
    }
    // An inline secret is reported, and masked even in the source excerpt.
    for format in ["human", "json"] {
        let (stdout, _, code) = vipd(&[
            "check",
            "--format",
            format,
            "-c",
            "tests/fixtures/check/inline-secret.toml",
        ]);
        assert_eq!(code, 1);
        assert!(stdout.contains("inline-secret"), "{stdout}");
        assert!(!stdout.contains("s3cr3t"), "{stdout}");
    }
}
