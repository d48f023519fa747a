//! `vipd vault`: keygen, init, set, get, list, remove, edit, rekey.
//!
//! Values never come from argv (they would show in `ps` and shell history):
//! `set` reads stdin, passphrases come from a file or the terminal.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use age::secrecy::{ExposeSecret as _, SecretString};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use crate::config::secrets::{SecretValue, Secrets};
use crate::vault::{self, Key, Lock, VaultError};

#[derive(Debug, Args)]
pub struct VaultArgs {
    /// The vault file.
    #[arg(short, long, value_name = "FILE", global = true)]
    pub file: Option<PathBuf>,
    /// A cluster file: the vault is its `[cluster] vault`.
    #[arg(
        short,
        long,
        value_name = "FILE",
        global = true,
        conflicts_with = "file"
    )]
    pub config: Option<PathBuf>,
    /// The age identity file that opens a vault locked to recipients
    /// [default: /etc/vipd/identity].
    #[arg(short, long, value_name = "FILE", global = true)]
    pub identity: Option<PathBuf>,
    /// Read the passphrase of a passphrase vault from the first line of FILE
    /// (otherwise it is asked on the terminal).
    #[arg(long, value_name = "FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: VaultCommand,
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Write a new age identity (a node's or an operator's key) to FILE, mode 0600, and print its recipient (age1...).
    Keygen {
        /// Where to write the identity (refused if it exists).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Create the vault: empty, or with the secrets of a plain secrets file (--from).
    Init {
        #[command(flatten)]
        lock: LockArgs,
        /// Start from this plain secrets file (`name = "value"` lines).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Replace an existing vault.
        #[arg(long)]
        force: bool,
    },
    /// Set a secret; the value is read from stdin (asked without echo on a terminal), never from the command line.
    Set {
        /// The secret's name, as `{ secret = "NAME" }` refers to it.
        name: String,
    },
    /// Print a secret's value.
    Get { name: String },
    /// Print the secrets' names, one a line (never the values).
    List,
    /// Remove a secret.
    Remove { name: String },
    /// Edit the decrypted vault in $EDITOR.
    ///
    /// The text goes to a temporary 0600 file (on /dev/shm when it exists,
    /// so it stays in memory); after the editor exits it is validated as a
    /// secrets file, re-encrypted, and the temporary file is overwritten and
    /// removed. An invalid text or a failing editor leaves the vault as it was.
    Edit,
    /// Change the passphrase or the recipients (add a node, drop one, rotate an operator key).
    Rekey {
        #[command(flatten)]
        lock: LockArgs,
    },
}

/// How a vault is locked: recipients or a passphrase.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Encrypt to this age recipient (age1...); repeat it: one per node, plus the operators.
    #[arg(short = 'r', long = "recipient", value_name = "AGE1...")]
    pub recipients: Vec<String>,
    /// Encrypt to the recipients listed in FILE (one per line, as `age -R` reads them).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt with a passphrase instead (asked twice on the terminal, or --new-passphrase-file).
    #[arg(long, conflicts_with_all = ["recipients", "recipients_files"])]
    pub passphrase: bool,
    /// With --passphrase: read the new passphrase from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "passphrase")]
    pub new_passphrase_file: Option<PathBuf>,
}

impl LockArgs {
    /// The lock these options describe. `fallback` is a passphrase file to
    /// use when --new-passphrase-file is absent (init has no old passphrase).
    pub fn lock(&self, fallback: Option<&Path>) -> Result<Lock, String> {
        if self.passphrase {
            let file = self.new_passphrase_file.as_deref().or(fallback);
            let passphrase = match file {
                Some(file) => read_passphrase_file(file)?,
                None => {
                    let first = prompt_hidden("new vault passphrase: ")?;
                    let second = prompt_hidden("again: ")?;
                    if first.expose_secret() != second.expose_secret() {
                        return Err("the two passphrases differ".to_owned());
                    }
                    first
                }
            };
            if passphrase.expose_secret().is_empty() {
                return Err("an empty passphrase is refused".to_owned());
            }
            return Ok(Lock::Passphrase(passphrase));
        }
        let mut recipients = Vec::new();
        for (index, r) in self.recipients.iter().enumerate() {
            recipients.extend(
                vault::parse_recipients(&format!("--recipient #{}", index + 1), r)
                    .map_err(|e| e.to_string())?,
            );
        }
        for file in &self.recipients_files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            recipients.extend(
                vault::parse_recipients(&file.display().to_string(), &text)
                    .map_err(|e| e.to_string())?,
            );
        }
        if recipients.is_empty() {
            return Err(
                "say how to lock the vault: --recipient age1... (one per node; `vipd vault keygen` makes keys) or --passphrase"
                    .to_owned(),
            );
        }
        Ok(Lock::Recipients(recipients))
    }
}

pub fn run(args: &VaultArgs) -> ExitCode {
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: &VaultArgs) -> Result<(), String> {
    if let VaultCommand::Keygen { output } = &args.command {
        return keygen(output);
    }
    let path = vault_path(args)?;
    match &args.command {
        VaultCommand::Keygen { .. } => unreachable!("handled above"),
        VaultCommand::Init { lock, from, force } => {
            init(args, &path, lock, from.as_deref(), *force)
        }
        VaultCommand::Set { name } => {
            check_name(name)?;
            let opened = unlock(args, &path)?;
            let lock = opened.lock(&path)?;
            let mut secrets = opened.secrets;
            let value = read_value(name)?;
            let replaced = secrets.insert(name, value);
            vault::seal(&path, &secrets, &lock).map_err(|e| e.to_string())?;
            eprintln!(
                "{} secret \"{name}\" in {}",
                if replaced { "replaced" } else { "added" },
                path.display()
            );
            Ok(())
        }
        VaultCommand::Get { name } => {
            let secrets = unlock(args, &path)?.secrets;
            let value = secrets
                .get(name)
                .ok_or_else(|| format!("no secret \"{name}\" in {}", path.display()))?;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{}", value.expose()).map_err(|e| e.to_string())
        }
        VaultCommand::List => {
            let secrets = unlock(args, &path)?.secrets;
            for name in secrets.names() {
                println!("{name}");
            }
            Ok(())
        }
        VaultCommand::Remove { name } => {
            let opened = unlock(args, &path)?;
            let mut secrets = opened.secrets.clone();
            if !secrets.remove(name) {
                return Err(format!("no secret \"{name}\" in {}", path.display()));
            }
            let lock = opened.lock(&path)?;
            vault::seal(&path, &secrets, &lock).map_err(|e| e.to_string())?;
            eprintln!("removed secret \"{name}\" from {}", path.display());
            Ok(())
        }
        VaultCommand::Edit => edit(args, &path),
        VaultCommand::Rekey { lock } => {
            let opened = unlock(args, &path)?;
            let new = lock.lock(None)?;
            vault::seal(&path, &opened.secrets, &new).map_err(|e| e.to_string())?;
            if matches!(new, Lock::Passphrase(_)) && opened.passphrase.is_none() {
                let list = vault::recipients_path(&path);
                let _ = std::fs::remove_file(&list);
            }
            eprintln!("{}: {}", path.display(), describe(&new));
            Ok(())
        }
    }
}

fn describe(lock: &Lock) -> String {
    match lock {
        Lock::Passphrase(_) => "locked with a passphrase".to_owned(),
        Lock::Recipients(r) => format!("locked to {} recipient(s)", r.len()),
    }
}

/// `--file`, or the `[cluster] vault` of `--config`.
fn vault_path(args: &VaultArgs) -> Result<PathBuf, String> {
    if let Some(file) = &args.file {
        return Ok(file.clone());
    }
    let Some(config) = &args.config else {
        return Err(
            "which vault? give --file FILE, or --config CLUSTER.toml with [cluster] vault set"
                .to_owned(),
        );
    };
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|_| format!("{} is not valid TOML (see `vipd check`)", config.display()))?;
    let vault = table
        .get("cluster")
        .and_then(|c| c.get("vault"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{} has no [cluster] vault = \"...\"", config.display()))?;
    let vault = Path::new(vault);
    Ok(if vault.is_absolute() {
        vault.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(vault)
    })
}

/// A name a `{ secret = "NAME" }` reference and a TOML bare key can both carry.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "secret name \"{}\" is refused: use letters, digits, `_` and `-` (at most 128)",
            name.escape_debug()
        ))
    }
}

fn keygen(output: &Path) -> Result<(), String> {
    if output.exists() {
        return Err(format!(
            "{} exists; an identity is never overwritten (remove it first if you mean it)",
            output.display()
        ));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let (text, recipient) = vault::generate_identity();
    vault::write_atomic(output, text.as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    eprintln!(
        "wrote identity {} (mode 0600); its recipient:",
        output.display()
    );
    println!("{recipient}");
    Ok(())
}

fn init(
    args: &VaultArgs,
    path: &Path,
    lock: &LockArgs,
    from: Option<&Path>,
    force: bool,
) -> Result<(), String> {
    if path.exists() && !force {
        return Err(format!(
            "{} exists; use `vipd vault rekey` to change its lock, or --force to replace it",
            path.display()
        ));
    }
    let secrets = match from {
        Some(file) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
            );
            Secrets::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?
        }
        None => Secrets::default(),
    };
    let lock = lock.lock(args.passphrase_file.as_deref())?;
    vault::seal(path, &secrets, &lock).map_err(|e| e.to_string())?;
    eprintln!(
        "created {} with {} secret(s), {}",
        path.display(),
        secrets.len(),
        describe(&lock)
    );
    Ok(())
}

/// An opened vault: its plaintext as stored, its secrets, and its passphrase
/// when it is a passphrase vault.
struct Opened {
    text: Zeroizing<String>,
    secrets: Secrets,
    passphrase: Option<SecretString>,
}

impl Opened {
    /// The lock to re-encrypt with: the same passphrase, or the recipients
    /// file beside the vault (read only when something is written).
    fn lock(&self, path: &Path) -> Result<Lock, String> {
        match &self.passphrase {
            Some(p) => Ok(Lock::Passphrase(p.clone())),
            None => Ok(Lock::Recipients(
                vault::read_recipients(path).map_err(|e| e.to_string())?,
            )),
        }
    }
}

/// Opens the vault at `path`: with the passphrase if it is a passphrase
/// vault, else with the identity file.
fn unlock(args: &VaultArgs, path: &Path) -> Result<Opened, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} not found (create it with `vipd vault init`)",
                path.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    let is_passphrase = vault::is_passphrase_vault(path, &bytes).map_err(|e| e.to_string())?;
    let (key, passphrase) = if is_passphrase {
        let pass = match &args.passphrase_file {
            Some(file) => read_passphrase_file(file)?,
            None => prompt_hidden(&format!("passphrase for {}: ", path.display()))?,
        };
        (Key::Passphrase(pass.clone()), Some(pass))
    } else {
        let file = args
            .identity
            .clone()
            .unwrap_or_else(|| PathBuf::from(vault::DEFAULT_IDENTITY));
        let identities = vault::read_identity_file(&file).map_err(|e| e.to_string())?;
        (Key::Identities { file, identities }, None)
    };
    let text = vault::decrypt(path, &bytes, &key).map_err(|e| e.to_string())?;
    let secrets = Secrets::parse(&text).map_err(|reason| {
        VaultError::NotSecrets {
            path: path.display().to_string(),
            reason,
        }
        .to_string()
    })?;
    Ok(Opened {
        text,
        secrets,
        passphrase,
    })
}

fn read_passphrase_file(file: &Path) -> Result<SecretString, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
    );
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!(
            "{} holds no passphrase on its first line",
            file.display()
        ));
    }
    Ok(SecretString::from(line.to_owned()))
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<SecretString, String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            "no terminal to ask on: give --passphrase-file FILE (or --new-passphrase-file)"
                .to_owned()
        })?;
    let saved = termios::tcgetattr(&tty).map_err(|e| format!("terminal: {e}"))?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &silent).map_err(|e| format!("terminal: {e}"))?;
    let _ = tty.write_all(prompt.as_bytes());
    let mut line = Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    let result = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
        if line.len() > 4096 {
            break Ok(());
        }
    };
    let _ = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    let _ = tty.write_all(b"\n");
    result.map_err(|e| format!("terminal: {e}"))?;
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = String::from_utf8(std::mem::take(&mut *line))
        .map_err(|_| "the passphrase is not UTF-8".to_owned())?;
    Ok(SecretString::from(text))
}

/// A secret's value: stdin (one trailing newline dropped), or asked without
/// echo when stdin is a terminal.
fn read_value(name: &str) -> Result<SecretValue, String> {
    let value = if std::io::stdin().is_terminal() {
        prompt_hidden(&format!("value of {name}: "))?
            .expose_secret()
            .to_owned()
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        trimmed.to_owned()
    };
    if value.is_empty() {
        return Err(format!(
            "an empty value for \"{name}\" is refused (give it on stdin)"
        ));
    }
    Ok(SecretValue::new(value))
}

/// A temporary plaintext file: overwritten with zeros and removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        shred(&self.path);
    }
}

/// Overwrites a file with zeros (its current length), syncs, and removes it.
/// An editor that replaced the file (write to a new inode, rename) leaves the
/// old blocks to the filesystem: that is why the file lives on tmpfs when it can.
fn shred(path: &Path) {
    if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0).min(16 << 20)];
        let _ = file.write_all(&zeros);
        let _ = file.sync_all();
    }
    let _ = std::fs::remove_file(path);
}

fn edit(args: &VaultArgs, path: &Path) -> Result<(), String> {
    // The text as it is (comments and order kept), not a re-serialisation.
    let opened = unlock(args, path)?;
    let lock = opened.lock(path)?;
    let before = opened.text;
    // tmpfs first (the plaintext never reaches a disk), then $TMPDIR.
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("vipd-vault-").suffix(".toml");
        b
    };
    let shm = Path::new("/dev/shm");
    let file = match shm.is_dir().then(|| builder().tempfile_in(shm)) {
        Some(Ok(file)) => file,
        _ => {
            let dir = std::env::temp_dir();
            builder()
                .tempfile_in(&dir)
                .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?
        }
    };
    // Keep the path past the handle: the guard shreds it whatever happens.
    let (mut handle, temp) = file
        .keep()
        .map_err(|e| format!("cannot keep the temporary file: {e}"))?;
    let scratch = Scratch { path: temp };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&scratch.path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    handle
        .write_all(before.as_bytes())
        .and_then(|()| handle.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", scratch.path.display()))?;
    drop(handle);
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_owned());
    // Through the shell, as git does, so EDITOR may carry arguments ("code -w").
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("vipd-vault-edit")
        .arg(&scratch.path)
        .status()
        .map_err(|e| format!("cannot run the editor \"{editor}\": {e}"))?;
    if !status.success() {
        return Err(format!(
            "the editor \"{editor}\" failed ({status}); {} is unchanged",
            path.display()
        ));
    }
    let after = Zeroizing::new(
        std::fs::read_to_string(&scratch.path)
            .map_err(|e| format!("cannot read the edited text: {e}"))?,
    );
    drop(scratch);
    if *after == *before {
        eprintln!("no change; {} is as it was", path.display());
        return Ok(());
    }
    let secrets = Secrets::parse(&after).map_err(|e| {
        format!(
            "the edited text is not a secrets file ({e}); {} is unchanged",
            path.display()
        )
    })?;
    vault::seal_text(path, &after, &lock).map_err(|e| e.to_string())?;
    eprintln!(
        "re-encrypted {} with {} secret(s)",
        path.display(),
        secrets.len()
    );
    Ok(())
}
