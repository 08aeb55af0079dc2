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
    // The listener routes and audits by `peek`; the endpoint acts on `parse_request`. On a
    // request both read, they must agree on what it is.
    if let Ok(req) = wsman::parse_request(data, usize::MAX)
        && data.len() <= wsman::PEEK_LIMIT
    {
        assert_eq!(head.action.as_deref(), Some(req.action.as_str()));
        assert_eq!(head.resource_uri, req.resource_uri);
        assert_eq!(head.shell_id, req.shell_id);
    }
});
