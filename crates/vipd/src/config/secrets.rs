//! The secrets file: `name = "value"` pairs that spec fields refer to by
//! name. Kept apart from the cluster file so the cluster file can be shared,
//! reviewed and committed. It must be readable by its owner only (0600), as
//! ssh insists for private keys. (An encrypted vault replaces it later; this
//! plain file stays for development.)

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret's value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
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
}

impl SecretsSource {
    pub fn path(&self) -> &Path {
        match self {
            SecretsSource::Loaded { path, .. }
            | SecretsSource::Missing { path }
            | SecretsSource::TooOpen { path, .. }
            | SecretsSource::Invalid { path, .. } => path,
        }
    }

    pub fn secrets(&self) -> Option<&Secrets> {
        match self {
            SecretsSource::Loaded { secrets, .. } => Some(secrets),
            _ => None,
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
