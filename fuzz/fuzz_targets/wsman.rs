//! WS-Man request parser and header peek: any body is a request or a typed error, never a
//! panic; `peek` never fails and agrees with the full parser on what both read.
#![no_main]

use exo_authproxy::remoting::wsman;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let head = wsman::peek(data);
    let _ = head.operation();
    // The limit is chosen by the input so the size check is exercised too.
    let limit = data.first().map_or(0, |b| usize::from(*b) * 64);
    let parsed = wsman::parse_request(data, limit);
    if let Ok(req) = &parsed {
        assert!(data.len() <= limit);
        assert!(!req.action.is_empty());
        let _ = wsman::action_name(data);
    }
    if let Err(e) = &parsed {
        let _ = e.to_fault();
    }
    let _ = wsman::parse_request(data, usize::MAX);
});
