//! `vipd generate man|completions`: the man pages and shell completions,
//! generated from the clap definitions so they never drift from the binary.
//! scripts/package.sh runs it and cargo-deb packages what it writes.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory as _;

use super::{Cli, GenerateCommand};

pub fn run(command: &GenerateCommand) -> ExitCode {
    let result = match command {
        GenerateCommand::Man { out } => man_pages(out).map(|written| {
            for path in written {
                println!("{}", path.display());
            }
        }),
        GenerateCommand::Completions { shell, out: None } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "vipd", &mut script);
            io::stdout()
                .write_all(&script)
                .map_err(|e| format!("cannot write to stdout: {e}"))
        }
        GenerateCommand::Completions {
            shell,
            out: Some(dir),
        } => completions(*shell, dir).map(|path| println!("{}", path.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes vipd.1 and a page per visible subcommand (vipd-config-show.1, ...)
/// into `dir`; returns their paths.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    create_dir(dir)?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Fills in the subcommands' display names (vipd-config-show).
    command.build();
    let mut written = Vec::new();
    write_man_page(&command, dir, &mut written)?;
    Ok(written)
}

fn write_man_page(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let man = clap_mangen::Man::new(command.clone())
        .manual("vipd manual")
        .source(concat!("vipd ", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render(&mut page)
        .map_err(|e| format!("cannot render {}: {e}", man.get_filename()))?;
    let path = dir.join(man.get_filename());
    write_atomically(&path, &page)?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_page(sub, dir, written)?;
    }
    Ok(())
}

/// Writes the completion script of `shell` into `dir` under the shell's
/// usual name (vipd.bash, _vipd, vipd.fish); returns its path.
pub fn completions(shell: clap_complete::Shell, dir: &Path) -> Result<PathBuf, String> {
    use clap_complete::Generator as _;
    create_dir(dir)?;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vipd", &mut script);
    let path = dir.join(shell.file_name("vipd"));
    write_atomically(&path, &script)?;
    Ok(path)
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create {}: {e}; give --out a directory you can write",
            dir.display()
        )
    })
}

/// A temp file in the same directory, renamed over `path`: never a
/// half-written page.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {e}", path.display())
    })
}
