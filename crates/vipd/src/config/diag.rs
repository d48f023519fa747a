//! Diagnostics: what is wrong, where, and how to fix it.
//!
//! The layout follows rustc: a headline with the severity and a stable rule
//! code, the place as `file:line:col`, the source line with a caret under
//! the value, then the config path and a help line. `--format json` gives
//! the same records for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding of `vipd check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable rule name, e.g. `duplicate-node-name`; docs/config.md lists them all.
    pub code: &'static str,
    pub message: String,
    /// The place in the spec, e.g. `nodes[2].priority`. Empty for the whole file.
    pub path: String,
    /// Byte range in the file, when it is known more precisely than by path.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The value at the span is a secret: the source excerpt masks it.
    #[serde(skip)]
    pub conceal: bool,
}

impl Diagnostic {
    pub fn error(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            path: path.into(),
            span: None,
            help: None,
            conceal: false,
        }
    }

    pub fn warning(
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, path, message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Masks the value in the source excerpt (it is a secret).
    pub fn conceal(mut self) -> Self {
        self.conceal = true;
        self
    }

    pub fn at(mut self, span: Range<usize>) -> Self {
        self.span = Some(span);
        self
    }
}

/// The cluster file's text, with what it takes to turn byte offsets and
/// config paths into `line:col`.
#[derive(Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
    /// Config path (`nodes[2].priority`) to the byte range of its value.
    paths: BTreeMap<String, Range<usize>>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
            paths: BTreeMap::new(),
        }
    }

    pub(crate) fn set_paths(&mut self, paths: BTreeMap<String, Range<usize>>) {
        self.paths = paths;
    }

    /// The byte range of the value at `path`, or of its closest parent that has one.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut path = path;
        loop {
            if let Some(span) = self.paths.get(path) {
                return Some(span.clone());
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// The deepest config path whose value contains `span`: where a serde
    /// error inside a section actually is.
    pub fn path_at(&self, span: &Range<usize>) -> Option<&str> {
        self.paths
            .iter()
            .filter(|(_, s)| s.start <= span.start && span.end <= s.end)
            .min_by_key(|(_, s)| s.end - s.start)
            .map(|(path, _)| path.as_str())
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }

    fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |&next| next);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// The line with the bytes of `span` on it replaced by `*`.
    fn concealed_line(&self, line: usize, span: &Range<usize>) -> String {
        let start = self.line_starts[line - 1];
        self.line_text(line)
            .char_indices()
            .map(|(i, c)| if span.contains(&(start + i)) { '*' } else { c })
            .collect()
    }

    /// Where a diagnostic points: its own span, else its path's.
    pub fn locate(&self, diagnostic: &Diagnostic) -> Option<Range<usize>> {
        diagnostic
            .span
            .clone()
            .or_else(|| self.span_of(&diagnostic.path))
    }

    /// Renders one diagnostic as a rustc-style block.
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}[{}]: {}",
            diagnostic.severity.as_str(),
            diagnostic.code,
            diagnostic.message
        );
        match self.locate(diagnostic) {
            Some(span) => {
                let (line, column) = self.line_col(span.start);
                let gutter = " ".repeat(line.to_string().len());
                let _ = writeln!(out, "{gutter}--> {}:{line}:{column}", self.name);
                let mut text = self.line_text(line).to_owned();
                if diagnostic.conceal {
                    text = self.concealed_line(line, &span);
                }
                let text = text.as_str();
                let _ = writeln!(out, "{gutter} |");
                let _ = writeln!(out, "{line} | {text}");
                // Underline to the end of the span or of the line, whichever is first.
                let line_chars = text.chars().count();
                let span_chars = self.text[span.clone()].chars().count().max(1);
                let width = span_chars.min(line_chars.saturating_sub(column - 1).max(1));
                let _ = writeln!(
                    out,
                    "{gutter} | {}{}",
                    " ".repeat(column - 1),
                    "^".repeat(width)
                );
                if !diagnostic.path.is_empty() {
                    let _ = writeln!(out, "{gutter} = at: {}", diagnostic.path);
                }
                if let Some(help) = &diagnostic.help {
                    let _ = writeln!(out, "{gutter} = help: {help}");
                }
            }
            None => {
                let _ = writeln!(out, "  --> {}", self.name);
                if !diagnostic.path.is_empty() {
                    let _ = writeln!(out, "   = at: {}", diagnostic.path);
                }
                if let Some(help) = &diagnostic.help {
                    let _ = writeln!(out, "   = help: {help}");
                }
            }
        }
        out
    }
}

/// The counts line that closes a report: `cluster.toml: 2 errors, 1 warning`.
pub fn summary(file: &str, diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    match (errors, warnings) {
        (0, 0) => format!("{file}: ok"),
        (0, w) => format!("{file}: ok, {}", plural(w, "warning")),
        (e, 0) => format!("{file}: {}", plural(e, "error")),
        (e, w) => format!("{file}: {}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let source = SourceFile::new("f.toml", "a = 1\nnamé = \"x\"\n");
        assert_eq!(source.line_col(0), (1, 1));
        assert_eq!(source.line_col(6), (2, 1));
        let value = source.text.find("\"x\"").unwrap();
        assert_eq!(source.line_col(value), (2, 8));
    }

    #[test]
    fn a_path_without_a_span_falls_back_to_its_parent() {
        let mut source = SourceFile::new("f.toml", "[vip]\naddress = \"x\"\n");
        source.set_paths(BTreeMap::from([("vip".to_owned(), 0..5)]));
        assert_eq!(source.span_of("vip.preempt"), Some(0..5));
        assert_eq!(source.span_of("nodes[0]"), None);
    }

    #[test]
    fn summary_counts_both_kinds() {
        let e = Diagnostic::error("x", "", "m");
        let w = Diagnostic::warning("y", "", "m");
        assert_eq!(summary("f", &[]), "f: ok");
        assert_eq!(summary("f", std::slice::from_ref(&w)), "f: ok, 1 warning");
        assert_eq!(
            summary("f", &[e.clone(), e, w.clone(), w]),
            "f: 2 errors, 2 warnings"
        );
    }
}
