//! `vipd import ansible` reads an Ansible INI inventory someone else wrote:
//! whatever its text, parsing must end in an inventory or a list of errors,
//! never a panic, and walking the parsed groups (children may form cycles)
//! must end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd::import::inventory::Inventory;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inventory) = Inventory::parse(text) {
        for group in &inventory.groups {
            let _ = inventory.hosts_of(&group.name);
        }
        let _ = inventory.hosts_of("all");
        for host in &inventory.hosts {
            let _ = inventory.groups_holding(&host.name);
        }
    }
});
