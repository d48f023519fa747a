//! From text to [`ClusterSpec`], reporting every problem it can find at once.
//!
//! The TOML parser recovers from syntax errors, so all of them are listed.
//! A syntactically valid file is then deserialised section by section and
//! node by node: a wrong type in `nodes[1]` does not hide one in `nodes[4]`,
//! and the semantic rules still run on the nodes that did parse.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diag::{Diagnostic, SourceFile};
use super::spec::{
    ApiSection, ClusterSection, ClusterSpec, DnsSection, FirewallSection, MeshSection,
    MetricsSection, NodeSpec, PlaneSettings, ProxySection, VipSection,
};

/// What parsing produced.
#[derive(Debug)]
pub struct Parsed {
    /// The spec, when every required section parsed. Nodes that failed to
    /// parse are left out (and reported); `node_paths` keeps the remaining
    /// ones' original indices so diagnostics still point at the right entry.
    pub spec: Option<ClusterSpec>,
    /// For each entry of `spec.nodes`, its index in the file.
    pub node_indices: Vec<usize>,
    /// True when anything failed to parse: the spec is partial.
    pub incomplete: bool,
    /// Sections (`plane`, `nodes[3]`) that failed to parse and stand at
    /// their defaults or are left out: findings under them are not real.
    pub failed: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

const SECTIONS: &[&str] = &[
    "cluster", "vip", "api", "plane", "mesh", "dns", "firewall", "proxy", "metrics", "nodes",
];

/// Parses `source` and records its config paths for later diagnostics.
pub fn parse(source: &mut SourceFile) -> Parsed {
    let text = source.text.clone();
    let (root, syntax_errors) = DeTable::parse_recoverable(&text);
    let mut diagnostics: Vec<Diagnostic> = syntax_errors
        .iter()
        .map(|e| {
            let d = Diagnostic::error("syntax", "", first_line(e.message()).to_owned())
                .help("fix the TOML syntax at this place; see https://toml.io for the format");
            match e.span() {
                Some(span) => d.at(span),
                None => d,
            }
        })
        .collect();
    if !diagnostics.is_empty() {
        return Parsed {
            spec: None,
            node_indices: Vec::new(),
            incomplete: true,
            failed: Vec::new(),
            diagnostics,
        };
    }

    let root = root.into_inner();
    let mut paths = BTreeMap::new();
    index_table(&root, "", &mut paths);
    source.set_paths(paths);

    for (key, _) in root.iter() {
        if !SECTIONS.contains(&key.get_ref().as_ref()) {
            diagnostics.push(
                Diagnostic::error(
                    "unknown-field",
                    key.get_ref().to_string(),
                    format!("unknown section `{}`", key.get_ref()),
                )
                .help(format!("the sections are: {}", SECTIONS.join(", ")))
                .at(key.span()),
            );
        }
    }

    let mut failed: Vec<String> = Vec::new();
    let section = |name: &str, required: bool, diagnostics: &mut Vec<Diagnostic>| {
        let value = root.get(name);
        if value.is_none() && required {
            diagnostics.push(
                Diagnostic::error(
                    "missing-field",
                    name,
                    format!("the cluster file has no [{name}] section"),
                )
                .help(format!(
                    "add a [{name}] section; docs/config.md shows its fields"
                ))
                .at(0..0),
            );
        }
        value.cloned()
    };
    let cluster_value = section("cluster", true, &mut diagnostics);
    let vip_value = section("vip", true, &mut diagnostics);
    let nodes_value = section("nodes", true, &mut diagnostics);
    let api_value = section("api", false, &mut diagnostics);
    let plane_value = section("plane", false, &mut diagnostics);
    let mesh_value = section("mesh", false, &mut diagnostics);
    let dns_value = section("dns", false, &mut diagnostics);
    let firewall_value = section("firewall", false, &mut diagnostics);
    let proxy_value = section("proxy", false, &mut diagnostics);
    let metrics_value = section("metrics", false, &mut diagnostics);

    let cluster: Option<ClusterSection> = decode(
        cluster_value,
        "cluster",
        source,
        &mut diagnostics,
        &mut failed,
    );
    let vip: Option<VipSection> = decode(vip_value, "vip", source, &mut diagnostics, &mut failed);
    let api: Option<ApiSection> = decode(api_value, "api", source, &mut diagnostics, &mut failed);
    let plane: Option<PlaneSettings> =
        decode(plane_value, "plane", source, &mut diagnostics, &mut failed);
    let mesh: Option<MeshSection> =
        decode(mesh_value, "mesh", source, &mut diagnostics, &mut failed);
    let dns: Option<DnsSection> = decode(dns_value, "dns", source, &mut diagnostics, &mut failed);
    let firewall: Option<FirewallSection> = decode(
        firewall_value,
        "firewall",
        source,
        &mut diagnostics,
        &mut failed,
    );
    let proxy: Option<ProxySection> =
        decode(proxy_value, "proxy", source, &mut diagnostics, &mut failed);
    let metrics: Option<MetricsSection> = decode(
        metrics_value,
        "metrics",
        source,
        &mut diagnostics,
        &mut failed,
    );

    let mut nodes = Vec::new();
    let mut node_indices = Vec::new();
    match nodes_value {
        Some(value) => {
            let span = value.span();
            match value.into_inner() {
                DeValue::Array(entries) => {
                    for (index, entry) in entries.iter().enumerate() {
                        let path = format!("nodes[{index}]");
                        if let Some(node) = decode::<NodeSpec>(
                            Some(entry.clone()),
                            &path,
                            source,
                            &mut diagnostics,
                            &mut failed,
                        ) {
                            nodes.push(node);
                            node_indices.push(index);
                        }
                    }
                }
                other => {
                    failed.push("nodes".to_owned());
                    diagnostics.push(
                        Diagnostic::error(
                            "type",
                            "nodes",
                            format!("`nodes` is a {}, not a list of tables", other.type_str()),
                        )
                        .help("write each node as a [[nodes]] table")
                        .at(span),
                    );
                }
            }
        }
        None => failed.push("nodes".to_owned()),
    }

    let spec = match (cluster, vip) {
        (Some(cluster), Some(vip)) => Some(ClusterSpec {
            cluster,
            vip,
            api: api.unwrap_or_default(),
            plane: plane.unwrap_or_default(),
            mesh,
            dns: dns.unwrap_or_default(),
            firewall: firewall.unwrap_or_default(),
            proxy: proxy.unwrap_or_default(),
            metrics: metrics.unwrap_or_default(),
            nodes,
        }),
        _ => None,
    };
    Parsed {
        spec,
        node_indices,
        incomplete: !failed.is_empty(),
        failed,
        diagnostics,
    }
}

/// Deserialises one section, turning a serde error into a located diagnostic.
fn decode<T: DeserializeOwned>(
    value: Option<Spanned<DeValue<'_>>>,
    section: &str,
    source: &SourceFile,
    diagnostics: &mut Vec<Diagnostic>,
    failed: &mut Vec<String>,
) -> Option<T> {
    let value = value?;
    let whole = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            failed.push(section.to_owned());
            let span = error.span().unwrap_or(whole);
            // serde knows the section; the span tells the field inside it.
            let path = source.path_at(&span).unwrap_or(section).to_owned();
            diagnostics.push(type_error(&path, error.message(), span));
            None
        }
    }
}

/// Words serde's messages with the fix an operator needs.
fn type_error(path: &str, message: &str, span: Range<usize>) -> Diagnostic {
    let message = first_line(message);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let expected = expected.strip_prefix("one of ").unwrap_or(expected);
        let field = field.trim_matches('`');
        let help = match closest(field, expected) {
            Some(candidate) => {
                format!("did you mean `{candidate}`? the fields here are: {expected}")
            }
            None => format!("the fields here are: {expected}"),
        };
        return Diagnostic::error(
            "unknown-field",
            path,
            format!("unknown field `{field}` in {path}"),
        )
        .help(help)
        .at(span);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = rest.trim_matches('`');
        return Diagnostic::error(
            "missing-field",
            path,
            format!("{path} has no `{field}`, which is required"),
        )
        .help(format!(
            "add `{field} = ...` to {path}; docs/config.md describes it"
        ))
        .at(span);
    }
    let message = ["u8", "u16", "u32", "u64", "i64"]
        .iter()
        .fold(message.to_owned(), |m, int| {
            m.replace(&format!("expected {int}"), "expected a whole number")
        });
    Diagnostic::error("type", path, format!("{path}: {message}"))
        .help("docs/config.md gives the type and the allowed values of every field")
        .at(span)
}

/// The field among serde's "expected one of `a`, `b`" list closest to a typo.
fn closest<'a>(typo: &str, expected: &'a str) -> Option<&'a str> {
    expected
        .split(['`', ',', ' '])
        .filter(|c| !c.is_empty() && *c != "one" && *c != "of")
        .map(|c| (edit_distance(typo, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

/// Records the span of every value under its config path: `vip.address`,
/// `nodes[2].plane.health.rise`, `vip.unicast_peers[0]`.
fn index_table(table: &DeTable<'_>, prefix: &str, paths: &mut BTreeMap<String, Range<usize>>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        index_value(value, path, paths);
    }
}

fn index_value(
    value: &Spanned<DeValue<'_>>,
    path: String,
    paths: &mut BTreeMap<String, Range<usize>>,
) {
    match value.get_ref() {
        DeValue::Table(table) => index_table(table, &path, paths),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                index_value(item, format!("{path}[{i}]"), paths);
            }
        }
        _ => {}
    }
    paths.insert(path, value.span());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_field_is_suggested_for_a_typo() {
        let expected = "`name`, `roles`, `address`, `interface`, `priority`";
        assert_eq!(closest("prority", expected), Some("priority"));
        assert_eq!(closest("adress", expected), Some("address"));
        assert_eq!(closest("zzz", expected), None);
    }
}
