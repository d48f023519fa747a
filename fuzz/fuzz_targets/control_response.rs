//! The control socket's requests are parsed by hyper (axum); what vipd
//! parses itself is the answer `vipd status` and `vipd reload` read back
//! (`api::client::parse`: status line, headers, Content-Length or chunked
//! body), then the body as a status document or a reload outcome, and the
//! status rendered for the terminal. None of it may panic on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd::api::client;
use vipd::api::schema::{ReloadOutcome, StatusDocument};

fuzz_target!(|data: &[u8]| {
    let Ok(response) = client::parse(data) else {
        return;
    };
    if let Ok(document) = serde_json::from_slice::<StatusDocument>(&response.body) {
        let _ = vipd::cli::status::render(&document, 1_800_000_000.0);
    }
    let _ = serde_json::from_slice::<ReloadOutcome>(&response.body);
});
