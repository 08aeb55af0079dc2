//! Configuration loader: any text is a validated configuration or a typed error with a
//! position inside the text, never a panic.
#![no_main]

use std::path::Path;

use exo_authproxy::config::{Config, Error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/nonexistent/fuzz/exo-authproxy.toml")) {
        Ok(_) => {}
        Err(Error::Parse { line, column, .. } | Error::Invalid { line, column, .. }) => {
            assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
            assert!(column >= 1);
        }
        Err(e) => panic!("parsing a text read nothing from disk: {e}"),
    }
});
