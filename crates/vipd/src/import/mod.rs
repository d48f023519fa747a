//! Importers: an existing setup in, a cluster file and a vault out.
//!
//! ```text
//! hosts.ini ──inventory──▶ groups, hosts ─┐
//! vars.yml ──(ansible_vault)──▶ YAML ─────┼──mapping──▶ cluster.toml text + Secrets + Report
//!                                          │                 │
//!                                          └── vipd check (in memory, with the secrets) ──▶ write both atomically
//! ```

pub mod ansible_vault;
pub mod inventory;
pub mod mapping;

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use ansible_vault::Password;
use mapping::{Sources, VarsFile};

/// Reads a YAML variables file's text (clear) into its top-level mapping.
/// `encrypted` files report positions only: their lines may hold secrets.
pub fn parse_vars(
    name: &str,
    text: &str,
    encrypted: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        if encrypted {
            format!("{name} (decrypted): not valid YAML{at}")
        } else {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or("");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            format!("{name}: not valid YAML: {first}")
        }
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Ok(serde_json::Map::new()),
        _ => Err(format!(
            "{name}: the top level is not a mapping of variables"
        )),
    }
}

/// Decrypts the values encrypted one by one (`key: !vault |` and the
/// `$ANSIBLE_VAULT;...` text under it), wherever they sit in `value`.
fn decrypt_inline(
    value: &mut serde_json::Value,
    passwords: &[Password],
    at: &str,
    errors: &mut Vec<String>,
) {
    match value {
        serde_json::Value::String(text) if ansible_vault::is_encrypted(text) => {
            match ansible_vault::decrypt(text, passwords) {
                Ok(plain) => *text = plain.to_string(),
                Err(e) => errors.push(format!("{at} (an inline !vault value): {e}")),
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                decrypt_inline(item, passwords, &format!("{at}[{i}]"), errors);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                decrypt_inline(item, passwords, &format!("{at}.{key}"), errors);
            }
        }
        _ => {}
    }
}

/// The variables files: each path as given, a directory as its `*.yml`,
/// `*.yaml` and `*.json` files in name order (as ansible reads
/// group_vars/all/), not descending further.
pub fn expand_vars(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| ["yml", "yaml", "json"].contains(&e))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "{} holds no *.yml, *.yaml or *.json file",
                path.display()
            ));
        }
        out.extend(files);
    }
    Ok(out)
}

/// Reads the inventory and the variables files, decrypting what ansible-vault
/// encrypted. Every problem is returned, not only the first.
pub fn read_ansible(
    inventory: &Path,
    vars: &[&Path],
    passwords: &[Password],
) -> Result<Sources, Vec<String>> {
    let mut errors = Vec::new();
    let mut read = |path: &Path| -> Option<(Zeroizing<String>, String)> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) => {
                errors.push(format!("cannot read {name}: {e}"));
                return None;
            }
        };
        if ansible_vault::is_encrypted(&text) {
            let form = match ansible_vault::label(&text) {
                Some(l) => format!("ansible-vault 1.2, vault id {l}"),
                None => "ansible-vault 1.1".to_owned(),
            };
            match ansible_vault::decrypt(&text, passwords) {
                Ok(plain) => Some((plain, form)),
                Err(e) => {
                    errors.push(format!("{name}: {e}"));
                    None
                }
            }
        } else {
            Some((text, "clear".to_owned()))
        }
    };
    let inventory_text = read(inventory);
    let mut files = Vec::new();
    for path in vars {
        if let Some((text, form)) = read(path) {
            files.push((path.display().to_string(), text, form));
        }
    }
    let mut vars_files = Vec::new();
    for (name, text, form) in files {
        match parse_vars(&name, &text, form != "clear") {
            Ok(mut vars) => {
                for (key, value) in vars.iter_mut() {
                    decrypt_inline(value, passwords, &format!("{name}: {key}"), &mut errors);
                }
                vars_files.push(VarsFile { name, form, vars });
            }
            Err(e) => errors.push(e),
        }
    }
    let inventory_name = inventory.display().to_string();
    let parsed = inventory_text.and_then(|(text, _)| match inventory::Inventory::parse(&text) {
        Ok(i) => Some(i),
        Err(list) => {
            errors.extend(list.into_iter().map(|e| format!("{inventory_name}: {e}")));
            None
        }
    });
    match parsed {
        Some(inventory) if errors.is_empty() => Ok(Sources {
            inventory_name,
            inventory,
            vars_files,
        }),
        _ => Err(errors),
    }
}
