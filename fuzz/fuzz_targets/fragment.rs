//! PSRP defragmenter and message decoder: arbitrary blobs never panic; whatever completes
//! decodes as a message or a typed error.
#![no_main]

use exo_authproxy::remoting::fragment::Defragmenter;
use exo_authproxy::remoting::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut defrag = Defragmenter::new(1 << 20);
    // Split the input into several blobs at bytes chosen by the input itself.
    for blob in data.split(|b| *b == 0xA5) {
        let Ok(messages) = defrag.push(blob) else {
            return;
        };
        for m in messages {
            if let Ok(msg) = Message::decode(&m) {
                let _ = msg.body();
                assert_eq!(msg.encode(), m);
            }
        }
    }
});
