//! decode -> encode -> decode: whatever decodes re-encodes, the re-encoding
//! decodes to the same value, and encoding is stable (canonical PER). For
//! Q.931 the re-encoded message decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxy_proto::h225::{ras, uuie};
use proxy_proto::q931::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            if let Ok(m) = ras::decode(data) {
                let b = ras::encode(&m).expect("a decoded RAS message must encode");
                let m2 = ras::decode(&b).expect("re-encoded RAS must decode");
                assert_eq!(m, m2);
                assert_eq!(ras::encode(&m2).unwrap(), b);
            }
        }
        1 => {
            if let Ok(m) = uuie::decode(data) {
                let b = uuie::encode(&m).expect("a decoded UUIE must encode");
                let m2 = uuie::decode(&b).expect("re-encoded UUIE must decode");
                assert_eq!(m, m2);
                assert_eq!(uuie::encode(&m2).unwrap(), b);
            }
        }
        _ => {
            if let Ok(m) = Message::decode(data) {
                let b = m.encode();
                assert_eq!(Message::decode(&b).expect("re-encoded Q.931 must decode"), m);
            }
        }
    }
});
