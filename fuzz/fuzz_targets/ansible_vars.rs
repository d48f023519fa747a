//! `vipd import ansible` reads YAML variables files someone else wrote:
//! `parse_vars` must give their top-level mapping or an error, never a
//! panic, and the mapping to a cluster file (with the seed fixture's
//! inventory) and the check of what it writes must not panic on any values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd::config::{self, SecretsSource};
use vipd::import::inventory::Inventory;
use vipd::import::mapping::{self, Options, Sources, VarsFile};
use vipd::import::parse_vars;

const INVENTORY: &str = include_str!("../../crates/vipd/tests/fixtures/seed-ansible/hosts_bay.ini");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An encrypted file's errors name positions only; both forms must hold.
    let _ = parse_vars("vars.yml", text, true);
    let Ok(vars) = parse_vars("vars.yml", text, false) else {
        return;
    };
    let inventory = Inventory::parse(INVENTORY).expect("the fixture inventory parses");
    let sources = Sources {
        inventory_name: "hosts_bay.ini".to_owned(),
        inventory,
        vars_files: vec![VarsFile {
            name: "vars.yml".to_owned(),
            form: "clear".to_owned(),
            vars,
        }],
    };
    let (imported, report) = mapping::map(&sources, &Options::default());
    let _ = report.render();
    // What `vipd import ansible` does next: check the file it would write,
    // with the secrets it holds in memory.
    if let Some(imported) = imported {
        let secrets = imported.secrets;
        let checked = config::check_text_loading("cluster.toml", &imported.cluster_toml, |_| {
            SecretsSource::Unlocked {
                path: "secrets.age".into(),
                secrets: secrets.clone(),
            }
        });
        let _ = checked.render();
    }
});
