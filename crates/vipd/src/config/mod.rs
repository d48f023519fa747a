//! The cluster file: its types, its parser, its rules, and what each node
//! derives from it.
//!
//! ```text
//! cluster.toml ──parse──▶ ClusterSpec ──rules──▶ diagnostics (vipd check)
//!                              │
//!                              └──resolve──▶ NodePlan per node (config show, the daemon)
//! secrets.toml ──secrets──▶ values the spec refers to by name
//! secrets.age ──vault + identity──▶ the same, from the encrypted vault
//! ```

pub mod diag;
pub mod keys;
pub mod parse;
pub mod resolve;
pub mod rules;
pub mod secrets;
pub mod spec;
pub mod values;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Severity, SourceFile};
pub use resolve::NodePlan;
pub use secrets::{Secrets, SecretsSource};
pub use spec::ClusterSpec;

/// Rules whose verdict depends on the whole node list: when a node failed to
/// parse, they would judge a list with a hole in it, so they wait.
const WHOLE_LIST_RULES: &[&str] = &[
    "no-vip-holder",
    "single-vip-holder",
    "no-planes",
    "unicast-peers-missing",
    "priority-tie",
];

/// The outcome of checking one cluster file.
#[derive(Debug)]
pub struct Checked {
    pub source: SourceFile,
    /// Sorted by their place in the file.
    pub diagnostics: Vec<Diagnostic>,
    /// The spec, when it parsed (possibly with errors left by the rules).
    pub spec: Option<ClusterSpec>,
    pub secrets: Option<SecretsSource>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// Passes when there is no error (and, when `strict`, no warning).
    pub fn passes(&self, strict: bool) -> bool {
        self.errors() == 0 && (!strict || self.warnings() == 0)
    }

    /// The human report: every diagnostic, then the summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&self.source.render(d));
            out.push('\n');
        }
        out.push_str(&diag::summary(&self.source.name, &self.diagnostics));
        out.push('\n');
        out
    }

    /// The JSON report: `{file, errors, warnings, diagnostics: [{severity,
    /// code, message, path, line, column, help}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let diagnostics: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let mut value = serde_json::to_value(d).unwrap_or_default();
                if let Some(span) = self.source.locate(d) {
                    let (line, column) = self.source.line_col(span.start);
                    value["line"] = line.into();
                    value["column"] = column.into();
                }
                value
            })
            .collect();
        serde_json::json!({
            "file": self.source.name,
            "errors": self.errors(),
            "warnings": self.warnings(),
            "diagnostics": diagnostics,
        })
    }
}

/// Where the secrets file of a cluster file is: `--secrets`, else
/// `cluster.secrets_file` relative to the cluster file, else `secrets.toml` beside it.
pub fn secrets_path(config: &Path, spec: &ClusterSpec, explicit: Option<&Path>) -> PathBuf {
    if let Some(explicit) = explicit {
        return explicit.to_path_buf();
    }
    let relative = spec
        .cluster
        .secrets_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(spec::defaults::SECRETS_FILE));
    if relative.is_absolute() {
        relative
    } else {
        config.parent().unwrap_or(Path::new(".")).join(relative)
    }
}

/// Where the secrets of a cluster file come from: the command line's
/// `--secrets` (a plain file, for development) and `--identity` (the node's
/// key for the vault, default /etc/vipd/identity).
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretsOptions<'a> {
    pub secrets: Option<&'a Path>,
    pub identity: Option<&'a Path>,
}

/// Reads the secrets of `spec`: `--secrets` if given (a plain file), else the
/// vault if `cluster.vault` is set, else the plain `cluster.secrets_file`.
pub fn load_secrets(
    config: &Path,
    spec: &ClusterSpec,
    options: SecretsOptions<'_>,
) -> SecretsSource {
    if options.secrets.is_none()
        && let Some(vault) = &spec.cluster.vault
    {
        let vault = if vault.is_absolute() {
            vault.clone()
        } else {
            config.parent().unwrap_or(Path::new(".")).join(vault)
        };
        let identity = options
            .identity
            .unwrap_or(Path::new(crate::vault::DEFAULT_IDENTITY));
        return crate::vault::load_for_node(&vault, identity);
    }
    SecretsSource::read(&secrets_path(config, spec, options.secrets))
}

/// Checks a cluster file held in memory. `name` is what diagnostics call it;
/// `config` is its path, used to find the secrets file.
pub fn check_text(name: &str, text: &str, config: &Path, secrets: Option<&Path>) -> Checked {
    check_text_with(
        name,
        text,
        config,
        SecretsOptions {
            secrets,
            identity: None,
        },
    )
}

/// [`check_text`] with the identity file for the vault.
pub fn check_text_with(
    name: &str,
    text: &str,
    config: &Path,
    options: SecretsOptions<'_>,
) -> Checked {
    check_text_loading(name, text, |spec| load_secrets(config, spec, options))
}

/// [`check_text`] with secrets from `load` (the importer checks what it is
/// about to write with the secrets it holds in memory).
pub fn check_text_loading(
    name: &str,
    text: &str,
    load: impl FnOnce(&ClusterSpec) -> SecretsSource,
) -> Checked {
    let mut source = SourceFile::new(name, text);
    let parsed = parse::parse(&mut source);
    let mut diagnostics = parsed.diagnostics;
    let mut secrets_source = None;
    if let Some(spec) = &parsed.spec {
        let secrets = load(spec);
        let ctx = rules::Context {
            spec,
            node_indices: &parsed.node_indices,
            secrets: &secrets,
        };
        let mut findings = Vec::new();
        rules::check(&ctx, &mut findings);
        if parsed.incomplete {
            findings.retain(|d| !WHOLE_LIST_RULES.contains(&d.code));
        }
        // A section that failed to parse stands at its defaults: judging
        // those would report mistakes the file does not contain.
        findings.retain(|d| {
            !parsed.failed.iter().any(|f| {
                d.path == *f
                    || d.path.starts_with(&format!("{f}."))
                    || d.path.starts_with(&format!("{f}["))
            })
        });
        diagnostics.extend(findings);
        secrets_source = Some(secrets);
    }
    // File order reads best; a stable sort keeps one place's findings in rule order.
    diagnostics.sort_by_key(|d| source.locate(d).map_or(usize::MAX, |s| s.start));
    Checked {
        source,
        diagnostics,
        spec: parsed.spec,
        secrets: secrets_source,
    }
}

/// Reads and checks a cluster file.
pub fn check_file(path: &Path, secrets: Option<&Path>) -> std::io::Result<Checked> {
    check_file_with(
        path,
        SecretsOptions {
            secrets,
            identity: None,
        },
    )
}

/// [`check_file`] with the identity file for the vault.
pub fn check_file_with(path: &Path, options: SecretsOptions<'_>) -> std::io::Result<Checked> {
    let text = std::fs::read_to_string(path)?;
    Ok(check_text_with(
        &path.display().to_string(),
        &text,
        path,
        options,
    ))
}
