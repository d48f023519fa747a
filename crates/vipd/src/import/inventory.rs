//! Ansible's INI inventory: `[group]` sections of hosts (with inline
//! `key=value` variables), `[group:children]` and `[group:vars]`, `#` and `;`
//! comments. Hosts before any section are in `ungrouped`. Host ranges
//! (`web[01:09]`) are refused with a clear error rather than half-understood.

use std::collections::HashSet;

/// One `[group]` with what the file says of it, in file order.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    /// The line of its first section header (0 for groups only named as children).
    pub line: usize,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vec<Var>,
}

/// A `key=value` of a `[group:vars]` section or a host line.
#[derive(Debug, Clone)]
pub struct Var {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A host with its inline variables.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub name: String,
    pub line: usize,
    pub vars: Vec<Var>,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub groups: Vec<Group>,
    pub hosts: Vec<Host>,
}

enum Section {
    Hosts(usize),
    Children(usize),
    Vars(usize),
}

/// Splits a line into words, honouring single and double quotes (the quotes
/// are removed), as ansible's INI parser splits host lines.
fn words(line: &str, number: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                started = true;
            }
            None if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            None => {
                current.push(c);
                started = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("line {number}: a quote is not closed"));
    }
    if started {
        out.push(current);
    }
    Ok(out)
}

/// Removes a trailing ` # comment` (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if (c == '#' || c == ';') && previous_space => return &line[..i],
            None => {}
        }
        previous_space = c.is_whitespace();
    }
    line
}

impl Inventory {
    fn group_index(&mut self, name: &str, line: usize) -> usize {
        if let Some(i) = self.groups.iter().position(|g| g.name == name) {
            if self.groups[i].line == 0 {
                self.groups[i].line = line;
            }
            return i;
        }
        self.groups.push(Group {
            name: name.to_owned(),
            line,
            ..Group::default()
        });
        self.groups.len() - 1
    }

    /// Parses the inventory's text. Every problem is reported, each with its line.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let mut inventory = Inventory::default();
        let mut errors = Vec::new();
        let mut section: Option<Section> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let Some(header) = header.strip_suffix(']') else {
                    errors.push(format!(
                        "line {number}: a section header without its closing ]"
                    ));
                    continue;
                };
                let (name, kind) = match header.split_once(':') {
                    Some((name, kind)) => (name.trim(), Some(kind.trim())),
                    None => (header.trim(), None),
                };
                if name.is_empty() || name.contains(char::is_whitespace) {
                    errors.push(format!("line {number}: \"[{header}]\" is not a group name"));
                    section = None;
                    continue;
                }
                let group = inventory.group_index(name, number);
                section = match kind {
                    None => Some(Section::Hosts(group)),
                    Some("children") => Some(Section::Children(group)),
                    Some("vars") => Some(Section::Vars(group)),
                    Some(other) => {
                        errors.push(format!(
                            "line {number}: [{name}:{other}]: a section is [group], [group:children] or [group:vars]"
                        ));
                        None
                    }
                };
                continue;
            }
            let section = match &section {
                Some(s) => s,
                None => {
                    // Hosts before any section are "ungrouped".
                    let group = inventory.group_index("ungrouped", number);
                    section = Some(Section::Hosts(group));
                    section.as_ref().expect("just set")
                }
            };
            match *section {
                Section::Vars(group) => match line.split_once('=') {
                    Some((key, value)) if !key.trim().is_empty() => {
                        let value = words(value.trim(), number)
                            .map(|w| w.join(" "))
                            .unwrap_or_else(|e| {
                                errors.push(e);
                                String::new()
                            });
                        inventory.groups[group].vars.push(Var {
                            key: key.trim().to_owned(),
                            value,
                            line: number,
                        });
                    }
                    _ => errors.push(format!(
                        "line {number}: a [{}:vars] line is key=value",
                        inventory.groups[group].name
                    )),
                },
                Section::Children(group) => {
                    let child = line.to_owned();
                    if child.contains(char::is_whitespace) {
                        errors.push(format!(
                            "line {number}: \"{child}\" is not a group name (a :children section lists groups, one a line)"
                        ));
                        continue;
                    }
                    inventory.group_index(&child, 0);
                    inventory.groups[group].children.push(child);
                }
                Section::Hosts(group) => {
                    let parts = match words(line, number) {
                        Ok(p) => p,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    let Some((name, vars)) = parts.split_first() else {
                        continue;
                    };
                    if name.contains('[') {
                        errors.push(format!(
                            "line {number}: host ranges like \"{name}\" are not supported: list the hosts one a line"
                        ));
                        continue;
                    }
                    let mut host_vars = Vec::new();
                    for var in vars {
                        match var.split_once('=') {
                            Some((k, v)) if !k.is_empty() => host_vars.push(Var {
                                key: k.to_owned(),
                                value: v.to_owned(),
                                line: number,
                            }),
                            _ => errors.push(format!(
                                "line {number}: \"{var}\" after host {name} is not key=value"
                            )),
                        }
                    }
                    match inventory.hosts.iter_mut().find(|h| h.name == *name) {
                        Some(host) => host.vars.extend(host_vars),
                        None => inventory.hosts.push(Host {
                            name: name.clone(),
                            line: number,
                            vars: host_vars,
                        }),
                    }
                    if !inventory.groups[group].hosts.contains(name) {
                        inventory.groups[group].hosts.push(name.clone());
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(inventory)
        } else {
            Err(errors)
        }
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every host of a group, through its children, in file order, each once.
    /// A cycle of children is cut where it closes.
    pub fn hosts_of(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.collect(name, &mut out, &mut seen);
        out
    }

    fn collect(&self, name: &str, out: &mut Vec<String>, seen: &mut HashSet<String>) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        if name == "all" {
            for host in &self.hosts {
                if !out.contains(&host.name) {
                    out.push(host.name.clone());
                }
            }
            return;
        }
        let Some(group) = self.group(name) else {
            return;
        };
        for host in &group.hosts {
            if !out.contains(host) {
                out.push(host.clone());
            }
        }
        for child in &group.children {
            self.collect(child, out, seen);
        }
    }

    /// The groups (by name) that hold `host` directly, in file order.
    pub fn groups_holding(&self, host: &str) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|g| g.hosts.iter().any(|h| h == host))
            .map(|g| g.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# comment
lonely.example
[bay_plane1]
198.18.10.11 ansible_port=2222 note=\"two words\"  # trailing comment

[bay_plane2]
198.18.10.12

[planes_all:children]
bay_plane1
bay_plane2

[all_of_it:children]
planes_all
all_of_it

[all:vars]
ansible_user=deploy
";

    #[test]
    fn groups_children_vars_and_hosts() {
        let inv = Inventory::parse(SAMPLE).unwrap();
        assert_eq!(inv.hosts_of("planes_all"), ["198.18.10.11", "198.18.10.12"]);
        // A cycle does not loop.
        assert_eq!(inv.hosts_of("all_of_it"), ["198.18.10.11", "198.18.10.12"]);
        assert_eq!(inv.hosts_of("ungrouped"), ["lonely.example"]);
        let host = inv.host("198.18.10.11").unwrap();
        assert_eq!(host.vars.len(), 2);
        assert_eq!(host.vars[1].value, "two words");
        let all = inv.group("all").unwrap();
        assert_eq!(all.vars[0].key, "ansible_user");
        assert_eq!(all.vars[0].value, "deploy");
        assert_eq!(all.vars[0].line, 18);
        assert_eq!(inv.groups_holding("198.18.10.12"), ["bay_plane2"]);
        assert!(inv.hosts_of("nope").is_empty());
    }

    #[test]
    fn mistakes_are_reported_with_their_lines() {
        let errors =
            Inventory::parse("[a\nhost\n[b:kids]\nx\n[c:vars]\nnovalue\n[d]\nweb[01:03]\n")
                .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("line 1:"));
        assert!(errors[1].starts_with("line 3:"));
        assert!(errors[2].starts_with("line 6:"));
        assert!(errors[3].contains("host ranges"));
    }

    proptest::proptest! {
        /// Whatever the text, parsing ends in a value or errors, never a panic.
        #[test]
        fn any_text_parses_or_errs(text in "(\\[[a-z_:]{0,12}\\]?|[a-z0-9_.=\"' #;\\[\\]:-]{0,30}|\n){0,30}") {
            if let Ok(inventory) = Inventory::parse(&text) {
                for group in &inventory.groups {
                    let _ = inventory.hosts_of(&group.name);
                }
            }
        }
    }
}
