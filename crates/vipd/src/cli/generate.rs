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
/// into `dir`; returns their paths. Each page ends with SEE ALSO (the
/// others); vipd(1) and vipd-run(1) also with FILES (what the packaged
/// service reads and writes).
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    create_dir(dir)?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Fills in the subcommands' display names (vipd-config-show).
    command.build();
    let mut commands = Vec::new();
    visible_commands(&command, &mut commands);
    let names: Vec<String> = commands.iter().map(page_name).collect();
    let mut written = Vec::new();
    for (command, name) in commands.into_iter().zip(&names) {
        let man = clap_mangen::Man::new(command)
            .manual("vipd manual")
            .source(concat!("vipd ", env!("CARGO_PKG_VERSION")));
        let mut page = Vec::new();
        man.render(&mut page)
            .map_err(|e| format!("cannot render {}: {e}", man.get_filename()))?;
        if name == "vipd" || name == "vipd-run" {
            page.extend_from_slice(FILES_SECTION.as_bytes());
        }
        page.extend_from_slice(see_also(name, &names).as_bytes());
        let path = dir.join(man.get_filename());
        write_atomically(&path, &page)?;
        written.push(path);
    }
    Ok(written)
}

fn visible_commands(command: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(command.clone());
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        visible_commands(sub, out);
    }
}

fn page_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned()
}

/// roff: the files of the packaged service (deploy/systemd/vipd.service).
const FILES_SECTION: &str = r#".SH FILES
.TP
\fI/etc/vipd/cluster.toml\fR
The cluster file the service runs (\fBvipd check\fR before every change).
.TP
\fI/etc/vipd/secrets.toml\fR
The secrets it names, mode 0600, owned by the user \fBvipd\fR.
.TP
\fI/etc/default/vipd\fR
VIPD_NODE (this node's name), VIPD_OPTS (more \fBvipd run\fR options), VIPD_LOG (the log level).
.TP
\fI/run/vipd/\fR
The service's runtime directory (mode 0700).
.TP
\fI/usr/lib/systemd/system/vipd.service\fR
The unit: \fBsystemctl reload vipd\fR sends SIGHUP, \fBsystemctl stop vipd\fR SIGTERM.
.TP
\fI/usr/share/doc/vipd/\fR
The operations guide, the cluster-file reference and example cluster files.
"#;

/// roff: the other pages, comma-separated.
fn see_also(own: &str, names: &[String]) -> String {
    let others: Vec<String> = names
        .iter()
        .filter(|n| *n != own)
        .map(|n| format!("\\fB{}\\fR(1)", n.replace('-', "\\-")))
        .collect();
    format!(
        ".SH \"SEE ALSO\"\n{},\n\\fBsystemctl\\fR(1), \\fBnft\\fR(8)\n",
        others.join(",\n")
    )
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
