//! H323-UserInformation: decode never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxy_proto::h225::{summary, uuie};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = uuie::decode(data) {
        let _ = summary::uuie(&m);
    }
});
