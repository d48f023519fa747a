//! Running `nft`: check a batch, load it, list or remove the table.
//!
//! A batch is loaded with `nft -f -`, which the kernel applies as one
//! transaction: either all of it takes effect or none does, so a rejected
//! batch leaves the table that was there. Each batch is first run with
//! `nft -c` (check only), so a mistake is reported as a check failure
//! before anything is attempted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::ruleset::{FAMILY, TABLE, remove_batch};

/// How long one nft run may take; it normally takes milliseconds.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an nft run failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "cannot run {program}: {source}; install nftables (the `nft` binary) or put it on PATH"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {NFT_TIMEOUT:?}: killed; the table is unchanged")]
    Timeout { program: String },
    #[error("nft refused the ruleset at the check (nft -c); nothing was loaded:\n{stderr}")]
    CheckFailed { stderr: String },
    #[error(
        "nft refused the ruleset; the transaction was rolled back, the old table stays:\n{stderr}"
    )]
    LoadFailed { stderr: String },
    #[error("nft {args}: {stderr}")]
    Failed { args: String, stderr: String },
}

/// The `nft` program vipd drives.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Self::new("nft")
    }
}

/// What one nft run printed, and whether it succeeded.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Nft {
    /// `program` is the nft binary: a path, or a name looked up on PATH.
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self {
            program: program.as_ref().to_path_buf(),
        }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Outcome, NftError> {
        let program = self.program.display().to_string();
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| NftError::Spawn {
            program: program.clone(),
            source,
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // An nft that exits early closes the pipe; its stderr says why.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
        let output = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| NftError::Timeout {
                program: program.clone(),
            })?
            .map_err(|source| NftError::Spawn { program, source })?;
        Ok(Outcome {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }

    /// Checks `batch` without applying it (`nft -c -f -`).
    pub async fn check(&self, batch: &str) -> Result<(), NftError> {
        let outcome = self.run(&["-c", "-f", "-"], Some(batch)).await?;
        if outcome.success {
            Ok(())
        } else {
            Err(NftError::CheckFailed {
                stderr: outcome.stderr,
            })
        }
    }

    /// Checks `batch`, then applies it as one transaction (`nft -f -`). On
    /// any error the table in the kernel is what it was before.
    pub async fn load(&self, batch: &str) -> Result<(), NftError> {
        self.check(batch).await?;
        let outcome = self.run(&["-f", "-"], Some(batch)).await?;
        if outcome.success {
            Ok(())
        } else {
            Err(NftError::LoadFailed {
                stderr: outcome.stderr,
            })
        }
    }

    /// The table as `nft list table inet vipd` prints it; `None` when there
    /// is no such table.
    pub async fn list_table(&self) -> Result<Option<String>, NftError> {
        self.list_named(TABLE).await
    }

    /// `nft list table inet NAME`; `None` when there is no such table.
    pub async fn list_named(&self, name: &str) -> Result<Option<String>, NftError> {
        let outcome = self.run(&["list", "table", FAMILY, name], None).await?;
        if outcome.success {
            Ok(Some(outcome.stdout))
        } else if outcome.stderr.contains("No such file or directory") {
            Ok(None)
        } else {
            Err(NftError::Failed {
                args: format!("list table {FAMILY} {name}"),
                stderr: outcome.stderr,
            })
        }
    }

    /// Removes the table; succeeds when there was none.
    pub async fn remove_table(&self) -> Result<(), NftError> {
        let outcome = self.run(&["-f", "-"], Some(&remove_batch())).await?;
        if outcome.success {
            Ok(())
        } else {
            Err(NftError::Failed {
                args: format!("delete table {FAMILY} {TABLE}"),
                stderr: outcome.stderr,
            })
        }
    }
}
