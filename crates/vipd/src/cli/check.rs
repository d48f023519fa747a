//! `vipd check`.

use std::process::ExitCode;

use super::{CheckArgs, Format};
use crate::config::{self, rules::RULES};

pub fn run(args: &CheckArgs) -> ExitCode {
    if args.list_rules {
        for rule in RULES {
            println!(
                "{:<24} {:<8} {}",
                rule.code,
                rule.severity.as_str(),
                rule.summary
            );
        }
        return ExitCode::SUCCESS;
    }
    let Some(path) = &args.config else {
        unreachable!("clap requires --config without --list-rules")
    };
    let checked = match config::check_file_with(
        path,
        config::SecretsOptions {
            secrets: args.secrets.as_deref(),
            identity: Some(&args.identity),
        },
    ) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        Format::Human => print!("{}", checked.render()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&checked.to_json()).expect("JSON of plain values")
        ),
    }
    if checked.passes(args.strict) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
