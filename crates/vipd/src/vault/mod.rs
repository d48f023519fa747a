//! The secrets vault: the secrets file's text, encrypted with age.
//!
//! ```text
//! secrets.age             age v1 file (binary); `age -d` / `rage -d` of it is a
//!                         valid secrets file: `name = "value"` lines
//! secrets.age.recipients  the public keys it is encrypted to, one `age1...` a line
//!                         (age's recipients file, `age -R`); absent for a passphrase vault
//! /etc/vipd/identity      a node's key, as `age-keygen` writes it (mode 0600)
//! ```
//!
//! A vault is locked either with a passphrase (age's scrypt recipient, for
//! an operator's workstation) or to x25519 recipients: one identity per node
//! (each node opens it with its own key file) plus the operators'. age files
//! do not name their recipients, so the list is kept beside the vault: every
//! change re-encrypts to it.
//!
//! Every write goes to a temporary file in the target's directory, synced,
//! then renamed over the target: a crash leaves the old file or the new one.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::config::secrets::{Secrets, SecretsSource};

/// Where a node's identity file is by default.
pub const DEFAULT_IDENTITY: &str = "/etc/vipd/identity";

/// The largest scrypt work factor (log2 N) accepted when opening a
/// passphrase vault: age and rage write 18 or about that; 22 bounds the work a
/// doctored file can ask for (about 4 GiB, as age itself caps it).
const MAX_SCRYPT_WORK_FACTOR: u8 = 22;

/// Why a vault or an identity cannot be used. Messages name files and
/// lines, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("identity file {path} not found")]
    IdentityMissing { path: String },
    #[error(
        "identity file {path} has mode {mode:04o}: group or others can read it (chmod 600 {path})"
    )]
    IdentityTooOpen { path: String, mode: u32 },
    #[error("identity file {path}: line {line} is not an age identity (AGE-SECRET-KEY-1...)")]
    IdentityInvalid { path: String, line: usize },
    #[error("identity file {path} holds no identity")]
    IdentityEmpty { path: String },
    #[error("{path} is not an age file ({reason})")]
    NotAgeFile { path: String, reason: String },
    #[error(
        "{path} is encrypted with a passphrase, not to recipients: give the passphrase (--passphrase-file or the terminal), or rekey it to the nodes' keys"
    )]
    NeedsPassphrase { path: String },
    #[error(
        "{path} is encrypted to recipients, not with a passphrase: open it with an identity file (--identity)"
    )]
    NeedsIdentity { path: String },
    #[error(
        "none of the keys in {identity} can open {path}: it is not one of the vault's recipients"
    )]
    NoMatchingKey { path: String, identity: String },
    #[error("wrong passphrase for {path}")]
    WrongPassphrase { path: String },
    #[error(
        "{path} asks for scrypt work factor {required} (at most {MAX_SCRYPT_WORK_FACTOR} accepted)"
    )]
    ExcessiveWork { path: String, required: u8 },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path} decrypts to something that is not a secrets file: {reason}")]
    NotSecrets { path: String, reason: String },
    #[error("recipients file {path}: line {line} is not an age recipient (age1...)")]
    RecipientInvalid { path: String, line: usize },
    #[error("{0}")]
    Other(String),
}

fn io_error(path: &Path, source: std::io::Error) -> VaultError {
    VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What opens a vault.
pub enum Key {
    Passphrase(SecretString),
    /// The identities of one identity file, and that file's name (for messages).
    Identities {
        file: PathBuf,
        identities: Vec<age::x25519::Identity>,
    },
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Passphrase(_) => f.write_str("Key::Passphrase(<redacted>)"),
            Key::Identities { file, identities } => write!(
                f,
                "Key::Identities({}, {} key(s))",
                file.display(),
                identities.len()
            ),
        }
    }
}

/// What a vault is locked with.
pub enum Lock {
    Passphrase(SecretString),
    Recipients(Vec<age::x25519::Recipient>),
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lock::Passphrase(_) => f.write_str("Lock::Passphrase(<redacted>)"),
            Lock::Recipients(r) => write!(f, "Lock::Recipients({} recipient(s))", r.len()),
        }
    }
}

/// Reads an identity file as `age-keygen` writes it: `#` comments and
/// `AGE-SECRET-KEY-1...` lines. Refused when group or others can read it,
/// as ssh refuses an open private key. Errors name the line, never its text.
pub fn read_identity_file(path: &Path) -> Result<Vec<age::x25519::Identity>, VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VaultError::IdentityMissing { path: shown });
        }
        Err(e) => return Err(io_error(path, e)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::IdentityTooOpen { path: shown, mode });
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| io_error(path, e))?);
    let mut identities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity =
            line.parse::<age::x25519::Identity>()
                .map_err(|_| VaultError::IdentityInvalid {
                    path: shown.clone(),
                    line: index + 1,
                })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(VaultError::IdentityEmpty { path: shown });
    }
    Ok(identities)
}

/// A new identity file's text, as `age-keygen` writes it, and its recipient.
pub fn generate_identity() -> (Zeroizing<String>, age::x25519::Recipient) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let text = Zeroizing::new(format!(
        "# created: by vipd vault keygen\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    ));
    (text, recipient)
}

/// Parses recipients, one `age1...` per line; `#` comments and blank lines
/// are skipped. `path` names the source in errors.
pub fn parse_recipients(path: &str, text: &str) -> Result<Vec<age::x25519::Recipient>, VaultError> {
    let mut recipients = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        recipients.push(line.parse::<age::x25519::Recipient>().map_err(|_| {
            VaultError::RecipientInvalid {
                path: path.to_owned(),
                line: index + 1,
            }
        })?);
    }
    Ok(recipients)
}

/// The recipients file kept beside a vault: `secrets.age.recipients`.
pub fn recipients_path(vault: &Path) -> PathBuf {
    let mut name = vault.as_os_str().to_owned();
    name.push(".recipients");
    PathBuf::from(name)
}

/// Reads the recipients file of `vault`.
pub fn read_recipients(vault: &Path) -> Result<Vec<age::x25519::Recipient>, VaultError> {
    let path = recipients_path(vault);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            VaultError::Other(format!(
                "{} not found: the vault's recipients are listed there; recreate it with `vipd vault rekey --recipient age1...`",
                path.display()
            ))
        } else {
            io_error(&path, e)
        }
    })?;
    let recipients = parse_recipients(&path.display().to_string(), &text)?;
    if recipients.is_empty() {
        return Err(VaultError::Other(format!(
            "{} lists no recipient",
            path.display()
        )));
    }
    Ok(recipients)
}

/// The text of a recipients file.
pub fn recipients_text(recipients: &[age::x25519::Recipient]) -> String {
    let mut text = String::from(
        "# The public keys the vault beside this file is encrypted to (age -R reads this file).\n",
    );
    for r in recipients {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    text
}

/// Whether an age file is locked with a passphrase (true) or to recipients.
pub fn is_passphrase_vault(path: &Path, bytes: &[u8]) -> Result<bool, VaultError> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(bytes))
        .map_err(|e| decrypt_error(path, e))?;
    Ok(decryptor.is_scrypt())
}

fn decrypt_error(path: &Path, error: age::DecryptError) -> VaultError {
    let path = path.display().to_string();
    match error {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            VaultError::NotAgeFile {
                path,
                reason: "no valid age header".to_owned(),
            }
        }
        age::DecryptError::ExcessiveWork { required, .. } => {
            VaultError::ExcessiveWork { path, required }
        }
        age::DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            VaultError::NotAgeFile {
                path,
                reason: "truncated header".to_owned(),
            }
        }
        other => VaultError::Corrupt {
            path,
            reason: other.to_string(),
        },
    }
}

/// Decrypts an age file. The plaintext is returned in memory that is wiped
/// when dropped.
pub fn decrypt(path: &Path, bytes: &[u8], key: &Key) -> Result<Zeroizing<String>, VaultError> {
    let shown = path.display().to_string();
    // Binary or ASCII-armored (`age -a`): the reader tells them apart.
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(bytes))
        .map_err(|e| decrypt_error(path, e))?;
    let reader = match key {
        Key::Passphrase(passphrase) => {
            if !decryptor.is_scrypt() {
                return Err(VaultError::NeedsIdentity { path: shown });
            }
            let mut identity = age::scrypt::Identity::new(passphrase.clone());
            identity.set_max_work_factor(MAX_SCRYPT_WORK_FACTOR);
            decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed
                    | age::DecryptError::KeyDecryptionFailed
                    | age::DecryptError::NoMatchingKeys => VaultError::WrongPassphrase {
                        path: shown.clone(),
                    },
                    other => decrypt_error(path, other),
                })?
        }
        Key::Identities { file, identities } => {
            if decryptor.is_scrypt() {
                return Err(VaultError::NeedsPassphrase { path: shown });
            }
            decryptor
                .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => VaultError::NoMatchingKey {
                        path: shown.clone(),
                        identity: file.display().to_string(),
                    },
                    other => decrypt_error(path, other),
                })?
        }
    };
    let mut plaintext = Zeroizing::new(Vec::new());
    let mut reader = reader;
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| VaultError::Corrupt {
            path: shown.clone(),
            reason: format!("the payload does not authenticate ({e})"),
        })?;
    let text = String::from_utf8(std::mem::take(&mut *plaintext)).map_err(|e| {
        // Wipe the bytes the error hands back.
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        VaultError::NotSecrets {
            path: shown.clone(),
            reason: "not UTF-8 text".to_owned(),
        }
    })?;
    Ok(Zeroizing::new(text))
}

/// Decrypts a vault and parses its secrets.
pub fn open(path: &Path, key: &Key) -> Result<Secrets, VaultError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let text = decrypt(path, &bytes, key)?;
    Secrets::parse(&text).map_err(|reason| VaultError::NotSecrets {
        path: path.display().to_string(),
        reason,
    })
}

/// Encrypts `plaintext` (the secrets file's text) into an age file.
pub fn encrypt(plaintext: &str, lock: &Lock) -> Result<Vec<u8>, VaultError> {
    let encryptor = match lock {
        Lock::Passphrase(passphrase) => age::Encryptor::with_user_passphrase(passphrase.clone()),
        Lock::Recipients(recipients) => {
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| VaultError::Other(format!("cannot encrypt: {e}")))?
        }
    };
    let mut out = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| VaultError::Other(format!("cannot encrypt: {e}")))?;
    writer
        .write_all(plaintext.as_bytes())
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| VaultError::Other(format!("cannot encrypt: {e}")))?;
    Ok(out)
}

/// Encrypts `secrets` with `lock` and writes the vault at `path` (and, for
/// recipients, its recipients file), each atomically.
pub fn seal(path: &Path, secrets: &Secrets, lock: &Lock) -> Result<(), VaultError> {
    let text = Zeroizing::new(secrets.to_toml());
    seal_text(path, &text, lock)
}

/// As [`seal`], for a secrets file's text already validated by the caller.
pub fn seal_text(path: &Path, text: &str, lock: &Lock) -> Result<(), VaultError> {
    let bytes = encrypt(text, lock)?;
    if let Lock::Recipients(recipients) = lock {
        let list = recipients_path(path);
        write_atomic(&list, recipients_text(recipients).as_bytes(), 0o644)
            .map_err(|e| io_error(&list, e))?;
    }
    write_atomic(path, &bytes, 0o600).map_err(|e| io_error(path, e))
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// (created with `mode`), synced, then renamed over `path`: readers see the
/// old file or the new one, never half of it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".vipd-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// How `vipd check`, the daemon and every per-node command read the vault:
/// with the identity file (default [`DEFAULT_IDENTITY`]). The vault's header
/// is judged first, so a corrupt vault is an error even where no key is.
pub fn load_for_node(path: &Path, identity: &Path) -> SecretsSource {
    let vault = path.to_path_buf();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return SecretsSource::VaultMissing { path: vault };
        }
        Err(e) => {
            return SecretsSource::VaultInvalid {
                path: vault,
                reason: e.to_string(),
            };
        }
    };
    match is_passphrase_vault(path, &bytes) {
        Ok(true) => {
            return SecretsSource::Locked {
                path: vault,
                reason: "it is encrypted with a passphrase, which a node does not have; rekey it to the nodes' keys (`vipd vault rekey --recipient age1...`)".to_owned(),
            };
        }
        Ok(false) => {}
        Err(e) => {
            return SecretsSource::VaultInvalid {
                path: vault,
                reason: e.to_string(),
            };
        }
    }
    let identities = match read_identity_file(identity) {
        Ok(i) => i,
        Err(VaultError::IdentityMissing { path }) => {
            return SecretsSource::Locked {
                path: vault,
                reason: format!("identity file {path} not found (--identity FILE)"),
            };
        }
        // Someone else's key (an operator running check on a node): not
        // this file's fault, and the daemon's user can read it.
        Err(VaultError::Io { path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return SecretsSource::Locked {
                path: vault,
                reason: format!("identity file {path} is not readable by this user"),
            };
        }
        Err(e) => {
            return SecretsSource::VaultInvalid {
                path: vault,
                reason: e.to_string(),
            };
        }
    };
    let key = Key::Identities {
        file: identity.to_path_buf(),
        identities,
    };
    let result = decrypt(path, &bytes, &key).and_then(|text| {
        Secrets::parse(&text).map_err(|reason| VaultError::NotSecrets {
            path: path.display().to_string(),
            reason,
        })
    });
    match result {
        Ok(secrets) => SecretsSource::Unlocked {
            path: vault,
            secrets,
        },
        Err(e) => SecretsSource::VaultInvalid {
            path: vault,
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secrets::SecretValue;
    use std::os::unix::fs::PermissionsExt;

    fn secrets() -> Secrets {
        let mut s = Secrets::default();
        s.insert("vrrp_password", SecretValue::new("k33pA1ve"));
        s.insert(
            "wg_a",
            SecretValue::new("QCu+H06FZvsu1I1fu5vLWzfQQ5QdYTIY/Gc+QhA5lVg="),
        );
        s
    }

    fn identity_file(dir: &Path, name: &str) -> (PathBuf, age::x25519::Recipient) {
        let (text, recipient) = generate_identity();
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes(), 0o600).unwrap();
        (path, recipient)
    }

    #[test]
    fn each_recipient_opens_the_vault_with_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ra) = identity_file(dir.path(), "a");
        let (b, rb) = identity_file(dir.path(), "b");
        let (c, _) = identity_file(dir.path(), "c");
        let vault = dir.path().join("secrets.age");
        seal(&vault, &secrets(), &Lock::Recipients(vec![ra, rb])).unwrap();
        assert_eq!(
            std::fs::metadata(&vault).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let bytes = std::fs::read(&vault).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        assert!(!String::from_utf8_lossy(&bytes).contains("k33pA1ve"));
        for id in [&a, &b] {
            match load_for_node(&vault, id) {
                SecretsSource::Unlocked { secrets, .. } => {
                    assert_eq!(secrets.get("vrrp_password").unwrap().expose(), "k33pA1ve");
                    assert_eq!(secrets.len(), 2);
                }
                other => panic!("{other:?}"),
            }
        }
        match load_for_node(&vault, &c) {
            SecretsSource::VaultInvalid { reason, .. } => {
                assert!(reason.contains("none of the keys"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read_recipients(&vault).unwrap().len(), 2);
    }

    #[test]
    fn an_open_identity_file_is_refused_and_a_missing_one_locks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ra) = identity_file(dir.path(), "a");
        let vault = dir.path().join("secrets.age");
        seal(&vault, &secrets(), &Lock::Recipients(vec![ra])).unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o640)).unwrap();
        match load_for_node(&vault, &a) {
            SecretsSource::VaultInvalid { reason, .. } => {
                assert!(reason.contains("mode 0640"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load_for_node(&vault, &dir.path().join("none")),
            SecretsSource::Locked { .. }
        ));
        assert!(matches!(
            load_for_node(&dir.path().join("no.age"), &a),
            SecretsSource::VaultMissing { .. }
        ));
    }

    #[test]
    fn corrupt_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ra) = identity_file(dir.path(), "a");
        let vault = dir.path().join("secrets.age");
        std::fs::write(&vault, "vrrp = \"x\"\n").unwrap();
        match load_for_node(&vault, &a) {
            SecretsSource::VaultInvalid { reason, .. } => {
                assert!(reason.contains("not an age file"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A flipped byte in the payload fails authentication.
        seal(&vault, &secrets(), &Lock::Recipients(vec![ra])).unwrap();
        let mut bytes = std::fs::read(&vault).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        std::fs::write(&vault, &bytes).unwrap();
        match load_for_node(&vault, &a) {
            SecretsSource::VaultInvalid { reason, .. } => {
                assert!(reason.contains("corrupt"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Truncated.
        std::fs::write(&vault, &bytes[..20]).unwrap();
        assert!(matches!(
            load_for_node(&vault, &a),
            SecretsSource::VaultInvalid { .. }
        ));
    }

    #[test]
    fn a_passphrase_vault_opens_with_its_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("secrets.age");
        let pass = || SecretString::from("correct horse".to_owned());
        seal(&vault, &secrets(), &Lock::Passphrase(pass())).unwrap();
        assert!(!recipients_path(&vault).exists());
        let opened = open(&vault, &Key::Passphrase(pass())).unwrap();
        assert_eq!(opened.get("wg_a").unwrap().expose().len(), 44);
        let wrong = open(
            &vault,
            &Key::Passphrase(SecretString::from("wrong".to_owned())),
        )
        .unwrap_err();
        assert!(
            matches!(wrong, VaultError::WrongPassphrase { .. }),
            "{wrong}"
        );
        let (a, _) = identity_file(dir.path(), "a");
        assert!(matches!(
            load_for_node(&vault, &a),
            SecretsSource::Locked { .. }
        ));
    }

    #[test]
    fn identity_errors_name_the_line_not_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        write_atomic(&path, b"# comment\nAGE-SECRET-KEY-1NOTAKEY\n", 0o600).unwrap();
        let Err(err) = read_identity_file(&path) else {
            panic!("a bad identity was accepted")
        };
        let err = err.to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("NOTAKEY"), "{err}");
        write_atomic(&path, b"# only a comment\n", 0o600).unwrap();
        assert!(matches!(
            read_identity_file(&path),
            Err(VaultError::IdentityEmpty { .. })
        ));
    }
}
