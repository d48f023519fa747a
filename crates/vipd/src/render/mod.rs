//! Renderers: pure functions from a checked cluster file (and a node's plan,
//! and secrets where one is needed) to the text a peer program reads. The
//! command line (`vipd render ...`, cli/render.rs) loads the file and writes
//! the text to stdout or to a file ([`write_file`]).
//!
//! - [`wireguard`]: a node's wg-quick file, and the x25519 keys of `vipd wg`;
//! - [`kubeadm`]: the ClusterConfiguration fragment with the VIP as endpoint;
//! - [`dns`]: zone-file lines or /etc/hosts lines for the VIP and the nodes;
//! - [`static_pod`]: a kubelet static Pod running `vipd run`;
//! - [`keepalived`]: keepalived.conf for a VIP holder (the classic stack, a gradual migration);
//! - [`haproxy`]: haproxy.cfg for a node that runs a proxy.

pub mod dns;
pub mod haproxy;
pub mod keepalived;
pub mod kubeadm;
pub mod static_pod;
pub mod wireguard;

use std::io::Write as _;
use std::path::Path;

/// Writes `text` to `path` whole or not at all: into a temporary file in the
/// same directory, flushed to disk, given its final `mode`, then renamed over
/// `path`. A reader never sees a half-written file; on an error the
/// temporary file is removed and `path` is left as it was.
pub fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{}.vipd-{}-{attempt}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        // 0600 from the start: a secret is never readable by others, not even briefly.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        file.write_all(text.as_bytes())?;
        // Exactly `mode`, whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A string as a YAML double-quoted scalar. JSON's string syntax is a subset
/// of YAML's double-quoted style, so serde_json's escaping is exact.
pub(crate) fn yaml_str(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Why a renderer cannot render: says what in the cluster file (or the
/// secrets) is missing and how to fix it. Never carries a secret's value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_sets_the_mode_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.conf");
        write_file(&path, "secret\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Replacing it gives the new mode and content.
        write_file(&path, "public\n", 0o644).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "public\n");
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    #[test]
    fn write_file_into_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir/out.conf");
        assert!(write_file(&path, "x", 0o644).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn yaml_strings_are_escaped() {
        assert_eq!(yaml_str("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(yaml_str("2001:db8::1"), "\"2001:db8::1\"");
    }
}
