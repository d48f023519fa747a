use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    vipd::cli::run(vipd::cli::Cli::parse())
}
