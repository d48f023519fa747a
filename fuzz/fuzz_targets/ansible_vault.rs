//! `vipd import ansible` reads ansible-vault files (a whole file or an
//! inline `!vault` value) someone else wrote: with a fixed password, any
//! text must decrypt or give an error (not a vault, corrupt, wrong
//! password), never a panic. The password is the seed fixture's, so its
//! files in the corpus decrypt and reach the YAML parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd::import::ansible_vault::{self, Password};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ansible_vault::is_encrypted(text);
    let _ = ansible_vault::label(text);
    // Labelled `bay`: a 1.2 file with that label tries it first, others after.
    let passwords = [Password {
        label: Some("bay".to_owned()),
        secret: Zeroizing::new("correct horse battery staple".to_owned()),
    }];
    if let Ok(plain) = ansible_vault::decrypt(text, &passwords) {
        let _ = vipd::import::parse_vars("vault.yml", &plain, true);
    }
});
