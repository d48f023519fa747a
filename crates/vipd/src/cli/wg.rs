//! `vipd wg`: WireGuard keys without wireguard-tools, the same as `wg genkey`
//! and `wg pubkey` make them.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::keys;

#[derive(Debug, Subcommand)]
pub enum WgCommand {
    /// Print a new private key: 32 random bytes from the OS, clamped for
    /// X25519, in base64 (as `wg genkey`). Keep it private:
    /// `(umask 077; vipd wg genkey > private.key)`.
    Genkey,
    /// Read a private key (base64) on stdin and print its public key (as `wg pubkey`):
    /// `vipd wg pubkey < private.key`.
    Pubkey,
}

pub fn run(command: &WgCommand) -> ExitCode {
    let line = match command {
        WgCommand::Genkey => match keys::generate_private_key() {
            Ok(key) => key,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        WgCommand::Pubkey => {
            // A key is 44 characters; read a little more to tell a longer input apart.
            let mut input = String::new();
            if let Err(e) = std::io::stdin().take(4096).read_to_string(&mut input) {
                eprintln!("error: cannot read the private key from stdin: {e}");
                return ExitCode::FAILURE;
            }
            match keys::public_key(&input) {
                Ok(key) => key,
                Err(e) => {
                    eprintln!(
                        "error: stdin is {e}; give a private key, as `vipd wg genkey` prints it"
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
