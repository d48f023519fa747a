//! `vipd check` (and every command, and the daemon on a reload) reads the
//! cluster file an operator wrote: parsing and the rules must give
//! diagnostics, never a panic, with no secrets file; the human and JSON
//! reports must render; a file that passes must resolve every node's plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd::config::{self, SecretsSource};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = config::check_text_loading("cluster.toml", text, |_| SecretsSource::Missing {
        path: "/nonexistent/secrets.toml".into(),
    });
    let _ = checked.render();
    let _ = checked.to_json();
    if checked.errors() == 0
        && let Some(spec) = &checked.spec
    {
        for node in &spec.nodes {
            let _ = spec.plan(&node.name);
        }
    }
});
