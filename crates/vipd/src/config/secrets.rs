//! The secrets file: `name = "value"` pairs that spec fields refer to by
//! name. Kept apart from the cluster file so the cluster file can be shared,
//! reviewed and committed. It must be readable by its owner only (0600), as
//! ssh insists for private keys. In production the same text lives
//! encrypted in an age vault (crate::vault, `[cluster] vault`); this plain
//! file stays for development and earns a `plain-secrets` warning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret's value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretValue {
    /// Wipes the value when it goes: no stale copy left in freed memory.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0.len())
    }
}

/// The secrets, by name.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
}

impl Secrets {
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sets a secret; returns whether it replaced one.
    pub fn insert(&mut self, name: &str, value: SecretValue) -> bool {
        self.values.insert(name.to_owned(), value).is_some()
    }

    /// Removes a secret; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.values.remove(name).is_some()
    }

    /// The secrets file's text: `name = "value"` lines, sorted by name, that
    /// [`Secrets::parse`] reads back. It holds the values: it goes to a 0600
    /// file or into the vault's encryption, never to a log.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.values {
            let mut table = toml::Table::new();
            table.insert(name.clone(), toml::Value::String(value.0.clone()));
            // One key per table: toml prints it as one `name = "value"` line,
            // quoting the key and escaping the value as TOML needs.
            out.push_str(&toml::to_string(&table).unwrap_or_default());
        }
        out
    }

    /// Parses the file's text. A value that is not a string is an error
    /// naming the key (never the value).
    pub fn parse(text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            // toml's message may quote the offending line, which may hold a secret.
            let position = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            format!("not valid TOML{position}")
        })?;
        let mut values = BTreeMap::new();
        for (name, value) in table {
            match value {
                toml::Value::String(s) => {
                    values.insert(name, SecretValue(s));
                }
                _ => {
                    return Err(format!("`{name}` must be a string: write {name} = \"...\""));
                }
            }
        }
        Ok(Self { values })
    }
}

/// What became of reading the secrets file.
#[derive(Debug)]
pub enum SecretsSource {
    Loaded {
        path: PathBuf,
        secrets: Secrets,
    },
    Missing {
        path: PathBuf,
    },
    /// Readable by group or others: refused, like ssh refuses an open key.
    TooOpen {
        path: PathBuf,
        mode: u32,
    },
    Invalid {
        path: PathBuf,
        reason: String,
    },
    /// The vault (`[cluster] vault`), opened with the node's identity.
    Unlocked {
        path: PathBuf,
        secrets: Secrets,
    },
    /// The vault does not exist.
    VaultMissing {
        path: PathBuf,
    },
    /// The vault is there but this machine has no key for it (no identity
    /// file, or a passphrase vault): references cannot be checked.
    Locked {
        path: PathBuf,
        reason: String,
    },
    /// The vault cannot be used: corrupt, not for this identity, an identity
    /// file others can read, a plaintext that is not a secrets file.
    VaultInvalid {
        path: PathBuf,
        reason: String,
    },
}

impl SecretsSource {
    pub fn path(&self) -> &Path {
        match self {
            SecretsSource::Loaded { path, .. }
            | SecretsSource::Missing { path }
            | SecretsSource::TooOpen { path, .. }
            | SecretsSource::Invalid { path, .. }
            | SecretsSource::Unlocked { path, .. }
            | SecretsSource::VaultMissing { path }
            | SecretsSource::Locked { path, .. }
            | SecretsSource::VaultInvalid { path, .. } => path,
        }
    }

    pub fn secrets(&self) -> Option<&Secrets> {
        match self {
            SecretsSource::Loaded { secrets, .. } | SecretsSource::Unlocked { secrets, .. } => {
                Some(secrets)
            }
            _ => None,
        }
    }

    /// Why the secrets cannot be read (empty when they can), for an error line.
    pub fn unreadable_reason(&self) -> String {
        match self {
            SecretsSource::Loaded { .. } | SecretsSource::Unlocked { .. } => String::new(),
            SecretsSource::Missing { .. } => "the secrets file does not exist".to_owned(),
            SecretsSource::VaultMissing { .. } => "the vault does not exist".to_owned(),
            SecretsSource::TooOpen { mode, .. } => {
                format!("mode {mode:04o}: group or others can read it (chmod 600)")
            }
            SecretsSource::Invalid { reason, .. }
            | SecretsSource::Locked { reason, .. }
            | SecretsSource::VaultInvalid { reason, .. } => reason.clone(),
        }
    }

    /// Reads `path`, refusing a file that group or others can read.
    pub fn read(path: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = path.to_path_buf();
        let metadata = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return SecretsSource::Missing { path };
            }
            Err(e) => {
                return SecretsSource::Invalid {
                    path,
                    reason: e.to_string(),
                };
            }
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return SecretsSource::TooOpen { path, mode };
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => match Secrets::parse(&text) {
                Ok(secrets) => SecretsSource::Loaded { path, secrets },
                Err(reason) => SecretsSource::Invalid { path, reason },
            },
            Err(e) => SecretsSource::Invalid {
                path,
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_value() {
        let secrets = Secrets::parse("vrrp = \"hunter2\"").unwrap();
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(secrets.get("vrrp").unwrap().expose(), "hunter2");
    }

    #[test]
    fn a_non_string_value_is_named_without_its_value() {
        let err = Secrets::parse("vrrp = 12345678").unwrap_err();
        assert!(err.contains("`vrrp` must be a string"), "{err}");
        assert!(!err.contains("12345678"));
    }

    #[test]
    fn a_syntax_error_does_not_quote_the_line() {
        let err = Secrets::parse("vrrp = \"hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 1"));
    }

    #[test]
    fn to_toml_reads_back_with_quotes_and_escapes() {
        let mut secrets = Secrets::default();
        secrets.insert("plain", SecretValue::new("abc"));
        secrets.insert("needs.quotes", SecretValue::new("a \"b\" \\ c\nd"));
        let text = secrets.to_toml();
        let back = Secrets::parse(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back.get("needs.quotes").unwrap().expose(),
            "a \"b\" \\ c\nd"
        );
        assert_eq!(back.get("plain").unwrap().expose(), "abc");
        assert!(text.starts_with("\"needs.quotes\" = "), "{text}");
    }

    #[test]
    fn group_readable_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "a = \"b\"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            SecretsSource::read(&path),
            SecretsSource::TooOpen { mode: 0o640, .. }
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SecretsSource::read(&path).secrets().is_some());
        assert!(matches!(
            SecretsSource::read(&dir.path().join("none")),
            SecretsSource::Missing { .. }
        ));
    }
}
