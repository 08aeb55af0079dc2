//! Xpress chunk decoder: arbitrary streams never panic and never exceed the limit; stored
//! streams round-trip.
#![no_main]

use exo_authproxy::remoting::xpress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = xpress::decompress_stream(data, 1 << 20) {
        assert!(out.len() <= 1 << 20);
    }
    if data.len() > 2 {
        let original = usize::from(u16::from_le_bytes([data[0], data[1]])) + 1;
        if let Ok(out) = xpress::decompress(&data[2..], original) {
            assert_eq!(out.len(), original);
        }
    }
    assert_eq!(
        xpress::decompress_stream(&xpress::store_stream(data), usize::MAX).as_deref(),
        Ok(data)
    );
});
