//! REST page parser (an InvokeCommand JSON page → CLIXML objects) and the REST error body
//! parsers: any body is objects or a typed error, and every object converts to CLIXML that
//! parses back.
#![no_main]

use exo_authproxy::bridge::errors::{ErrorOrigin, ExchangeError};
use exo_authproxy::bridge::rest::fuzz_page;
use exo_authproxy::remoting::clixml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Both shapes: the catalog's type names, and none (a PSCustomObject).
    // serde_json allows 128 levels of nesting, more than the reader's default; the check
    // here is that the encoding is well-formed, not that the proxy would read it back.
    let deep = clixml::Limits {
        max_depth: 4096,
        ..clixml::Limits::default()
    };
    let typed = ["Microsoft.Exchange.Data.Directory.Management.Mailbox".to_owned()];
    for types in [&typed[..], &[]] {
        if let Ok(objects) = fuzz_page(data, types) {
            for o in objects {
                let xml = clixml::to_xml(&o);
                clixml::from_xml_with(&xml, &deep).expect("a converted object's CLIXML parses");
            }
        }
    }
    if let Some(e) = ExchangeError::from_rest_body(data) {
        let _ = e.to_error_record("Get-Mailbox", &ErrorOrigin::default());
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(e) = ExchangeError::parse_detail(text)
    {
        let _ = e.to_error_record("Get-Mailbox", &ErrorOrigin::default());
    }
});
