//! `vipd vault` and the vault as the source of secrets: per-node keys,
//! stdin-only values, `edit` through $EDITOR, `rekey`, interoperability with
//! the `age` command-line tool, and no secret in any output or log line
//! unless `--show-secrets` asks for it.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// Runs vipd in `dir` with `stdin` and extra environment.
fn run(dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env_remove("VISUAL")
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
    Out {
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
        code: output.status.code().unwrap_or(-1),
    }
}

fn vipd(dir: &Path, args: &[&str]) -> Out {
    run(dir, args, "", &[])
}

fn ok(out: Out) -> Out {
    assert_eq!(out.code, 0, "{}", out.all());
    out
}

/// Two node keys and an operator key; returns their recipients.
fn keys(dir: &Path) -> Vec<String> {
    ["node-a.key", "node-b.key", "operator.key"]
        .iter()
        .map(|k| {
            let out = ok(vipd(dir, &["vault", "keygen", "-o", k]));
            let mode = std::fs::metadata(dir.join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
            let recipient = out.stdout.trim().to_owned();
            assert!(recipient.starts_with("age1"), "{recipient}");
            recipient
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The seed example with the vault: five secrets, referenced by name. The
/// WireGuard public keys are those of the test's private keys (`vipd
/// check` proves each private key is its node's).
fn cluster_with_vault(dir: &Path) -> PathBuf {
    let text = seed_with_test_keys(dir)
        .replace("name = \"bay\"", "name = \"bay\"\nvault = \"secrets.age\"");
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// examples/seed.toml with the public keys of [`SECRETS`]' private keys.
fn seed_with_test_keys(dir: &Path) -> String {
    let mut text = std::fs::read_to_string(repo().join("examples/seed.toml")).unwrap();
    for (name, private) in SECRETS.iter().filter(|(n, _)| n.starts_with("wg_")) {
        let public = ok(run(dir, &["wg", "pubkey"], &format!("{private}\n"), &[]))
            .stdout
            .trim()
            .to_owned();
        let marker = format!("secret = \"{name}\"");
        text = text
            .lines()
            .map(|line| {
                if !line.contains(&marker) {
                    return line.to_owned();
                }
                let start = line.find("public_key = \"").unwrap() + "public_key = \"".len();
                let end = start + line[start..].find('"').unwrap();
                format!("{}{public}{}", &line[..start], &line[end..])
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    text
}

const SECRETS: &[(&str, &str)] = &[
    ("vrrp_password", "Pw-7f3a"),
    // Private keys: 32 bytes of base64 each (any 32 bytes are one).
    (
        "wg_haproxy_spb",
        "BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSY=",
    ),
    (
        "wg_bay_plane1",
        "Dg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0=",
    ),
    (
        "wg_bay_worker1",
        "FRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ=",
    ),
];

fn fill(dir: &Path, key: &str) {
    for (name, value) in SECRETS {
        ok(run(
            dir,
            &["vault", "-f", "secrets.age", "-i", key, "set", name],
            &format!("{value}\n"),
            &[],
        ));
    }
}

#[test]
fn each_node_opens_the_vault_with_its_own_key_and_values_come_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = keys(d);
    let init = ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "init",
            "-r",
            &r[0],
            "-r",
            &r[1],
            "-r",
            &r[2],
        ],
    ));
    assert!(init.stderr.contains("3 recipient(s)"), "{}", init.stderr);
    assert_eq!(mode(&d.join("secrets.age")), 0o600);
    let recipients = std::fs::read_to_string(d.join("secrets.age.recipients")).unwrap();
    for key in &r {
        assert!(recipients.contains(key.as_str()));
    }
    fill(d, "operator.key");
    let raw = std::fs::read(d.join("secrets.age")).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/v1\n"));
    for (_, value) in SECRETS {
        assert!(!String::from_utf8_lossy(&raw).contains(value));
    }
    for key in ["node-a.key", "node-b.key", "operator.key"] {
        for (name, value) in SECRETS {
            let out = ok(vipd(
                d,
                &["vault", "-f", "secrets.age", "-i", key, "get", name],
            ));
            assert_eq!(out.stdout, format!("{value}\n"), "{key} {name}");
        }
    }
    // list: the names, never a value.
    let list = ok(vipd(
        d,
        &["vault", "-f", "secrets.age", "-i", "node-a.key", "list"],
    ));
    let mut names: Vec<&str> = SECRETS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    assert_eq!(list.stdout.lines().collect::<Vec<_>>(), names);
    for (_, value) in SECRETS {
        assert!(!list.all().contains(value));
    }
    // A value on the command line is refused by the parser.
    let argv = vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "operator.key",
            "set",
            "x",
            "value",
        ],
    );
    assert_eq!(argv.code, 2, "{}", argv.all());
    // Names a reference can carry; an empty value is refused.
    let bad = run(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "operator.key",
            "set",
            "a b",
        ],
        "v",
        &[],
    );
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("is refused"), "{}", bad.stderr);
    let empty = run(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "operator.key",
            "set",
            "e",
        ],
        "\n",
        &[],
    );
    assert_eq!(empty.code, 1);
    // A key that is not a recipient opens nothing.
    ok(vipd(d, &["vault", "keygen", "-o", "stranger.key"]));
    let stranger = vipd(
        d,
        &["vault", "-f", "secrets.age", "-i", "stranger.key", "list"],
    );
    assert_eq!(stranger.code, 1);
    assert!(
        stranger.stderr.contains("none of the keys in stranger.key"),
        "{}",
        stranger.stderr
    );
    // An identity file others can read is refused, like an open ssh key.
    std::fs::set_permissions(d.join("node-b.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = vipd(
        d,
        &["vault", "-f", "secrets.age", "-i", "node-b.key", "list"],
    );
    assert_eq!(open.code, 1);
    assert!(open.stderr.contains("mode 0644"), "{}", open.stderr);
    // remove, and get of what is not there.
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "operator.key",
            "remove",
            "wg_bay_worker1",
        ],
    ));
    let gone = vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "node-a.key",
            "get",
            "wg_bay_worker1",
        ],
    );
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("no secret \"wg_bay_worker1\""));
    // init never replaces a vault by accident.
    let again = vipd(d, &["vault", "-f", "secrets.age", "init", "-r", &r[0]]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("exists"));
}

#[test]
fn check_show_and_run_read_the_vault_and_never_print_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = keys(d);
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "init",
            "-r",
            &r[0],
            "-r",
            &r[2],
        ],
    ));
    fill(d, "operator.key");
    cluster_with_vault(d);
    // With the node's key: clean, and no plain-secrets warning.
    let check = ok(vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "node-a.key"],
    ));
    assert!(!check.stdout.contains("[vault"), "{}", check.stdout);
    assert!(!check.stdout.contains("secret"), "{}", check.stdout);
    // Without a key here: a warning, references unchecked.
    let locked = ok(vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "none.key"],
    ));
    assert!(
        locked.stdout.contains("warning[vault-locked]"),
        "{}",
        locked.stdout
    );
    // A key that is not a recipient, or one others can read: errors.
    let wrong = vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "node-b.key"],
    );
    assert_eq!(wrong.code, 1);
    assert!(wrong.stdout.contains("error[vault]"), "{}", wrong.stdout);
    std::fs::copy(d.join("node-a.key"), d.join("open.key")).unwrap();
    std::fs::set_permissions(d.join("open.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let open = vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "open.key"],
    );
    assert_eq!(open.code, 1);
    assert!(open.stdout.contains("mode 0640"), "{}", open.stdout);
    // A secret the vault lacks is named.
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "operator.key",
            "remove",
            "wg_bay_plane1",
        ],
    ));
    let missing = vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "node-a.key"],
    );
    assert!(
        missing.stdout.contains("error[unknown-secret]"),
        "{}",
        missing.stdout
    );
    assert!(
        missing.stdout.contains("wg_bay_plane1"),
        "{}",
        missing.stdout
    );
    fill(d, "operator.key");

    let show = |extra: &[&str]| {
        let mut args = vec![
            "config",
            "show",
            "-c",
            "cluster.toml",
            "--node",
            "haproxy-spb",
            "--identity",
            "node-a.key",
        ];
        args.extend_from_slice(extra);
        ok(vipd(d, &args))
    };
    for extra in [&[][..], &["--json"][..]] {
        let out = show(extra);
        assert!(
            out.stdout.contains("vrrp_password"),
            "named: {}",
            out.stdout
        );
        for (_, value) in SECRETS {
            assert!(!out.all().contains(value), "leaked {value}:\n{}", out.all());
        }
    }
    // On request, the node's own secrets (and only those).
    let text = show(&["--show-secrets"]);
    assert!(
        text.stdout.contains("vrrp_password = \"Pw-7f3a\""),
        "{}",
        text.stdout
    );
    let value_of = |name: &str| SECRETS.iter().find(|(n, _)| *n == name).unwrap().1;
    assert!(
        text.stdout.contains(value_of("wg_haproxy_spb")),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains(value_of("wg_bay_plane1")),
        "{}",
        text.stdout
    );
    let json = show(&["--show-secrets", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["secrets"]["vrrp_password"], "Pw-7f3a");
    // --show-secrets without a key to open the vault: an error, not a blank.
    let locked = vipd(
        d,
        &[
            "config",
            "show",
            "-c",
            "cluster.toml",
            "--node",
            "haproxy-spb",
            "--identity",
            "none.key",
            "--show-secrets",
        ],
    );
    assert_eq!(locked.code, 1, "{}", locked.all());

    // The daemon's log, at trace level: it loads the vault, logs its
    // warnings and stops (a worker without worker_local, and here not
    // following the VIP on the mesh, runs nothing).
    let cluster = d.join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).unwrap();
    assert!(text.contains("\n[mesh]\n"), "{text}");
    std::fs::write(
        &cluster,
        text.replacen("\n[mesh]\n", "\n[mesh]\nfollow = false\n", 1),
    )
    .unwrap();
    let daemon = run(
        d,
        &[
            "run",
            "-c",
            "cluster.toml",
            "--node",
            "bay-worker1",
            "--identity",
            "node-a.key",
        ],
        "",
        &[("VIPD_LOG", "trace")],
    );
    assert_eq!(daemon.code, 1, "{}", daemon.all());
    assert!(
        daemon.stderr.contains("nothing for vipd to run"),
        "{}",
        daemon.stderr
    );
    assert!(
        daemon.stderr.contains("single-vip-holder"),
        "warnings are logged: {}",
        daemon.stderr
    );
    for (_, value) in SECRETS {
        assert!(
            !daemon.all().contains(value),
            "leaked {value}:\n{}",
            daemon.all()
        );
    }
    // A holder whose VRRP password is locked away stops before doing
    // anything, saying why.
    let locked = run(
        d,
        &[
            "run",
            "-c",
            "cluster.toml",
            "--node",
            "haproxy-spb",
            "--identity",
            "none.key",
        ],
        "",
        &[],
    );
    assert_eq!(locked.code, 1, "{}", locked.all());
    assert!(
        locked.stderr.contains("cannot be read here")
            && locked.stderr.contains("none.key not found"),
        "{}",
        locked.stderr
    );
}

#[test]
fn a_plain_secrets_file_is_warned_of_and_init_from_it_makes_the_vault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = keys(d);
    std::fs::write(d.join("cluster.toml"), seed_with_test_keys(d)).unwrap();
    let mut plain = String::new();
    for (name, value) in SECRETS {
        plain.push_str(&format!("{name} = \"{value}\"\n"));
    }
    std::fs::write(d.join("secrets.toml"), &plain).unwrap();
    std::fs::set_permissions(
        d.join("secrets.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let check = ok(vipd(d, &["check", "-c", "cluster.toml"]));
    assert!(
        check.stdout.contains("warning[plain-secrets]"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("vipd vault init"), "{}", check.stdout);
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "init",
            "--from",
            "secrets.toml",
            "-r",
            &r[0],
        ],
    ));
    let list = ok(vipd(
        d,
        &["vault", "-f", "secrets.age", "-i", "node-a.key", "list"],
    ));
    assert_eq!(list.stdout.lines().count(), SECRETS.len());
    // --config finds the vault through [cluster] vault.
    cluster_with_vault(d);
    let got = ok(vipd(
        d,
        &[
            "vault",
            "-c",
            "cluster.toml",
            "-i",
            "node-a.key",
            "get",
            "vrrp_password",
        ],
    ));
    assert_eq!(got.stdout, "Pw-7f3a\n");
    let check = ok(vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "node-a.key"],
    ));
    assert!(!check.stdout.contains("plain-secrets"), "{}", check.stdout);
}

/// An editor script: `$1` is the file. It records the file's path and mode,
/// then runs `body` on it.
fn editor(dir: &Path, body: &str) -> String {
    let script = dir.join(format!("editor-{}.sh", body.len()));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" > {log}\nstat -c %a \"$1\" >> {log}\n{body}\n",
            log = dir.join("editor.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    script.display().to_string()
}

#[test]
fn edit_validates_reencrypts_and_shreds_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = keys(d);
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "init",
            "-r",
            &r[0],
            "-r",
            &r[1],
        ],
    ));
    fill(d, "node-a.key");
    let before = std::fs::read(d.join("secrets.age")).unwrap();
    let edit = |script: &str| {
        run(
            d,
            &["vault", "-f", "secrets.age", "-i", "operator.key", "edit"],
            "",
            &[("EDITOR", script)],
        )
    };
    // The operator key is no recipient here: edit cannot even start.
    assert_eq!(edit("true").code, 1);
    let edit = |script: &str| {
        run(
            d,
            &["vault", "-f", "secrets.age", "-i", "node-a.key", "edit"],
            "",
            &[("EDITOR", script)],
        )
    };
    let log = || std::fs::read_to_string(d.join("editor.log")).unwrap();
    // Not TOML: refused, the vault unchanged, the temporary file gone.
    let broken = edit(&editor(
        d,
        "printf 'vrrp_password = \"unclosed\\n' > \"$1\"",
    ));
    assert_eq!(broken.code, 1, "{}", broken.all());
    assert!(
        broken.stderr.contains("not a secrets file"),
        "{}",
        broken.stderr
    );
    assert!(!broken.all().contains("unclosed"), "{}", broken.all());
    assert_eq!(std::fs::read(d.join("secrets.age")).unwrap(), before);
    let lines: Vec<String> = log().lines().map(str::to_owned).collect();
    assert_eq!(lines[1], "600", "the temporary file is 0600");
    assert!(
        !Path::new(&lines[0]).exists(),
        "{} was left behind",
        lines[0]
    );
    // A failing editor changes nothing.
    let failed = edit(&editor(d, "exit 3"));
    assert_eq!(failed.code, 1);
    assert_eq!(std::fs::read(d.join("secrets.age")).unwrap(), before);
    // No change: the vault is not rewritten.
    let same = edit(&editor(d, "true"));
    assert_eq!(same.code, 0, "{}", same.all());
    assert_eq!(std::fs::read(d.join("secrets.age")).unwrap(), before);
    // A real edit: one value changed, one added, a comment kept.
    let changed = edit(&editor(
        d,
        "sed -i 's/Pw-7f3a/Pw-NEW1/' \"$1\" && printf '# rotated\\nnew_one = \"added-9\"\\n' >> \"$1\"",
    ));
    assert_eq!(changed.code, 0, "{}", changed.all());
    let lines: Vec<String> = log().lines().map(str::to_owned).collect();
    assert!(
        !Path::new(&lines[0]).exists(),
        "{} was left behind",
        lines[0]
    );
    for key in ["node-a.key", "node-b.key"] {
        let got = ok(vipd(
            d,
            &[
                "vault",
                "-f",
                "secrets.age",
                "-i",
                key,
                "get",
                "vrrp_password",
            ],
        ));
        assert_eq!(got.stdout, "Pw-NEW1\n");
        let got = ok(vipd(
            d,
            &["vault", "-f", "secrets.age", "-i", key, "get", "new_one"],
        ));
        assert_eq!(got.stdout, "added-9\n");
    }
}

#[test]
fn a_passphrase_vault_and_rekey_to_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = keys(d);
    std::fs::write(d.join("pass"), "correct horse battery\n").unwrap();
    std::fs::write(d.join("wrong"), "incorrect horse\n").unwrap();
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "init",
            "--passphrase",
            "--new-passphrase-file",
            "pass",
        ],
    ));
    assert!(!d.join("secrets.age.recipients").exists());
    ok(run(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "--passphrase-file",
            "pass",
            "set",
            "vrrp_password",
        ],
        "Pw-7f3a",
        &[],
    ));
    let got = ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "--passphrase-file",
            "pass",
            "get",
            "vrrp_password",
        ],
    ));
    assert_eq!(got.stdout, "Pw-7f3a\n");
    let wrong = vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "--passphrase-file",
            "wrong",
            "list",
        ],
    );
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains("wrong passphrase"),
        "{}",
        wrong.stderr
    );
    // A node cannot open a passphrase vault: check says so.
    cluster_with_vault(d);
    let check = ok(vipd(
        d,
        &["check", "-c", "cluster.toml", "--identity", "node-a.key"],
    ));
    assert!(
        check.stdout.contains("warning[vault-locked]"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("passphrase"), "{}", check.stdout);
    // Rekey to the nodes: each opens it; the passphrase no longer does.
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "--passphrase-file",
            "pass",
            "rekey",
            "-r",
            &r[0],
            "-r",
            &r[1],
        ],
    ));
    assert!(d.join("secrets.age.recipients").exists());
    for key in ["node-a.key", "node-b.key"] {
        let got = ok(vipd(
            d,
            &[
                "vault",
                "-f",
                "secrets.age",
                "-i",
                key,
                "get",
                "vrrp_password",
            ],
        ));
        assert_eq!(got.stdout, "Pw-7f3a\n");
    }
    let old = vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "--passphrase-file",
            "pass",
            "list",
        ],
    );
    assert_eq!(old.code, 1);
    // Rekey drops node-b: it can no longer open the vault.
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "node-a.key",
            "rekey",
            "-r",
            &r[0],
        ],
    ));
    let dropped = vipd(
        d,
        &["vault", "-f", "secrets.age", "-i", "node-b.key", "list"],
    );
    assert_eq!(dropped.code, 1);
}

/// `age` from Debian (scripts/test.sh installs it): vipd's vault opens with
/// `age -d`, and a vault `age` wrote opens with vipd.
#[test]
fn the_vault_interoperates_with_the_age_tool() {
    if Command::new("age").arg("--version").output().is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the age tool is missing and CI=true (scripts/test.sh installs it)");
        }
        eprintln!("skipped: the age tool is not installed (apt-get install age)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = keys(d);
    ok(vipd(
        d,
        &["vault", "-f", "secrets.age", "init", "-r", &r[0]],
    ));
    fill(d, "node-a.key");
    // vipd -> age: the plaintext is a secrets file vipd reads back.
    let out = Command::new("age")
        .args(["-d", "-i", "node-a.key", "secrets.age"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = String::from_utf8(out.stdout).unwrap();
    let parsed = vipd::config::Secrets::parse(&plain).unwrap();
    for (name, value) in SECRETS {
        assert_eq!(parsed.get(name).unwrap().expose(), *value);
    }
    // age -> vipd: a secrets file encrypted by age to the recipients file.
    std::fs::write(d.join("plain.toml"), "vrrp_password = \"from-age\"\n").unwrap();
    let status = Command::new("age")
        .args([
            "-R",
            "secrets.age.recipients",
            "-o",
            "by-age.age",
            "plain.toml",
        ])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(status.success());
    let got = ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "by-age.age",
            "-i",
            "node-a.key",
            "get",
            "vrrp_password",
        ],
    ));
    assert_eq!(got.stdout, "from-age\n");
    // ASCII-armored (`age -a`) too.
    let status = Command::new("age")
        .args([
            "-a",
            "-R",
            "secrets.age.recipients",
            "-o",
            "armored.age",
            "plain.toml",
        ])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        std::fs::read_to_string(d.join("armored.age"))
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
    );
    let got = ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "armored.age",
            "-i",
            "node-a.key",
            "get",
            "vrrp_password",
        ],
    ));
    assert_eq!(got.stdout, "from-age\n");
    // And an age-keygen identity opens a vipd vault.
    let keygen = Command::new("age-keygen")
        .args(["-o", "age-made.key"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let text = std::fs::read_to_string(d.join("age-made.key")).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    std::fs::set_permissions(
        d.join("age-made.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "node-a.key",
            "rekey",
            "-r",
            &r[0],
            "-r",
            &recipient,
        ],
    ));
    let got = ok(vipd(
        d,
        &[
            "vault",
            "-f",
            "secrets.age",
            "-i",
            "age-made.key",
            "get",
            "wg_bay_plane1",
        ],
    ));
    let plane1 = SECRETS
        .iter()
        .find(|(n, _)| *n == "wg_bay_plane1")
        .unwrap()
        .1;
    assert_eq!(got.stdout, format!("{plane1}\n"));
}
