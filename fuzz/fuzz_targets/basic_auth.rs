//! Basic `Authorization` header parsing: any header value is credentials or a typed error;
//! what parses re-encodes to a header that parses to the same user and password.
#![no_main]

use exo_authproxy::listener::basic_auth::Credentials;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = HeaderValue::from_bytes(data) else {
        return;
    };
    if let Ok(c) = Credentials::parse(&header) {
        assert!(!c.user.is_empty());
        let again = Credentials::encode(&c.user, c.password.expose());
        let header = HeaderValue::from_str(&again).expect("the encoder's output is a header");
        let back = Credentials::parse(&header).expect("the encoder's output parses");
        assert_eq!(back.user, c.user);
        assert_eq!(back.password.expose(), c.password.expose());
    }
});
