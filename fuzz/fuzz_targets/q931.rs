//! Q.931: decode never panics; typed IE views never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxy_proto::q931::{Message, PartyNumber, ie};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let _ = m.cause();
        let _ = m.user_user();
        for id in [ie::CALLING_PARTY_NUMBER, ie::CALLED_PARTY_NUMBER] {
            if let Some(d) = m.ie(id) {
                let _ = PartyNumber::parse(id, d);
            }
        }
    }
});
