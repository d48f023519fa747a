//! `vipd import ansible`: the seed's inventory and variables to a cluster
//! file and a vault, with a report. Nothing is written unless the result
//! passes `vipd check`; both files are written through temporary files and
//! renamed into place.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::vault::LockArgs;
use crate::config::{self, SecretsSource, Severity};
use crate::import::{self, ansible_vault, mapping};
use crate::vault::{self, Lock};

#[derive(Debug, Args)]
pub struct AnsibleArgs {
    /// The INI inventory (hosts_bay.ini).
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// A YAML variables file, clear or encrypted with ansible-vault, or a
    /// directory of them (group_vars/all/: its *.yml, *.yaml and *.json, by
    /// name); repeat it for several (a later file wins, as in ansible).
    #[arg(long = "vars", value_name = "FILE", required = true)]
    pub vars: Vec<PathBuf>,
    /// The ansible-vault password file (LABEL@FILE gives its vault id);
    /// repeat it for several. Its whitespace is trimmed, as ansible does.
    #[arg(long = "vault-password-file", value_name = "[LABEL@]FILE")]
    pub vault_password_files: Vec<String>,
    /// The cluster file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The vault to write the secrets to (age; `[cluster] vault` points at it).
    #[arg(long, value_name = "FILE")]
    pub vault_out: PathBuf,
    #[command(flatten)]
    pub lock: LockArgs,
    /// The cluster's name (default: from the inventory's file name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

pub fn ansible(args: &AnsibleArgs) -> ExitCode {
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// How the cluster file names the vault: by file name when both sit in one
/// directory, else by absolute path.
fn vault_reference(output: &Path, vault_out: &Path) -> String {
    let dir = |p: &Path| {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::canonicalize(&parent).unwrap_or(parent)
    };
    let name = vault_out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if dir(output) == dir(vault_out) {
        name
    } else {
        dir(vault_out).join(name).display().to_string()
    }
}

fn execute(args: &AnsibleArgs) -> Result<(), String> {
    for out in [&args.output, &args.vault_out] {
        if out.exists() && !args.force {
            return Err(format!(
                "{} exists; nothing written (--force replaces it)",
                out.display()
            ));
        }
    }
    if args.output == args.vault_out {
        return Err("--output and --vault-out name the same file".to_owned());
    }
    // Before any work: a mistake in how to lock the vault shows at once.
    let lock = args.lock.lock(None)?;
    let mut passwords = Vec::new();
    for spec in &args.vault_password_files {
        passwords.push(ansible_vault::read_password_file(spec)?);
    }
    let files = import::expand_vars(&args.vars)?;
    let vars: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let sources = import::read_ansible(&args.inventory, &vars, &passwords)
        .map_err(|errors| format!("{}\nnothing written", errors.join("\nerror: ")))?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "import report: {} with {}",
        sources.inventory_name,
        sources
            .vars_files
            .iter()
            .map(|f| format!("{} ({})", f.name, f.form))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let options = mapping::Options {
        cluster_name: args.name.clone(),
    };
    let (imported, report) = mapping::map(&sources, &options);
    let _ = write!(stdout, "{}", report.render());
    let Some(imported) = imported else {
        return Err(format!(
            "{} problem(s) in the seed (above); nothing written",
            report.errors.len()
        ));
    };
    let reference = vault_reference(&args.output, &args.vault_out);
    let text = imported.cluster_toml.replace(
        "#VAULT#\n",
        &format!(
            "vault = {}    # the secrets, encrypted with age (vipd vault)\n",
            toml::Value::String(reference)
        ),
    );
    // The check runs on what is about to be written, with the secrets in memory.
    let output_name = args.output.display().to_string();
    let secrets = imported.secrets;
    let checked = config::check_text_loading(&output_name, &text, |_| SecretsSource::Unlocked {
        path: args.vault_out.clone(),
        secrets: secrets.clone(),
    });
    for d in &checked.diagnostics {
        if d.severity == Severity::Warning {
            let _ = writeln!(stdout, "vipd check: warning[{}]: {}", d.code, d.message);
        }
    }
    if checked.errors() > 0 {
        for d in checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
        {
            eprint!("{}", checked.source.render(d));
        }
        return Err(
            "the imported cluster file does not pass `vipd check` (above); nothing written"
                .to_owned(),
        );
    }
    let plaintext = zeroize::Zeroizing::new(secrets.to_toml());
    let sealed = vault::encrypt(&plaintext, &lock).map_err(|e| e.to_string())?;
    // Both files are staged beside their targets, then renamed: a failure
    // before the renames leaves nothing behind.
    let stage =
        |target: &Path, bytes: &[u8], mode: u32| -> Result<tempfile::NamedTempFile, String> {
            use std::os::unix::fs::PermissionsExt;
            let dir = match target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let mut file = tempfile::Builder::new()
                .prefix(".vipd-import-")
                .permissions(std::fs::Permissions::from_mode(mode))
                .tempfile_in(dir)
                .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
            file.write_all(bytes)
                .and_then(|()| file.as_file().sync_all())
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            Ok(file)
        };
    let staged_vault = stage(&args.vault_out, &sealed, 0o600)?;
    let staged_cluster = stage(&args.output, text.as_bytes(), 0o644)?;
    let staged_recipients = match &lock {
        Lock::Recipients(r) => {
            let list = vault::recipients_path(&args.vault_out);
            Some((
                stage(&list, vault::recipients_text(r).as_bytes(), 0o644)?,
                list,
            ))
        }
        Lock::Passphrase(_) => None,
    };
    staged_vault
        .persist(&args.vault_out)
        .map_err(|e| format!("cannot write {}: {}", args.vault_out.display(), e.error))?;
    if let Some((file, list)) = staged_recipients {
        file.persist(&list)
            .map_err(|e| format!("cannot write {}: {}", list.display(), e.error))?;
    }
    staged_cluster
        .persist(&args.output)
        .map_err(|e| format!("cannot write {}: {}", args.output.display(), e.error))?;
    let locked = match &lock {
        Lock::Passphrase(_) => "locked with a passphrase".to_owned(),
        Lock::Recipients(r) => format!("locked to {} recipient(s)", r.len()),
    };
    let _ = writeln!(
        stdout,
        "wrote {} ({} nodes) and {} ({} secrets, {locked})",
        args.output.display(),
        imported.nodes,
        args.vault_out.display(),
        secrets.len()
    );
    Ok(())
}
