//! RAS: decode never panics; a decoded message summarises without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proxy_proto::h225::{ras, summary};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ras::decode(data) {
        let _ = summary::ras(&m);
    }
});
