//! CLIXML parser: any text either parses or is a typed error; what parses re-encodes to a
//! document that parses to the same value.
#![no_main]

use exo_authproxy::remoting::clixml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = clixml::from_xml(text) {
        let again = clixml::to_xml(&value);
        let reparsed = clixml::from_xml(&again).expect("the encoder's output parses");
        // NaN is the one value not equal to itself; compare the text instead.
        assert_eq!(clixml::to_xml(&reparsed), again);
    }
    let _ = clixml::from_xml_document(text);
});
