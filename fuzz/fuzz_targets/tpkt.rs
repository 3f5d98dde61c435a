//! TPKT framing: any byte stream, fed in arbitrary chunks, yields frames or a
//! clear error; never a panic, and frames never exceed the declared length.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proxy_proto::tpkt::{HEADER_LEN, MAX_LEN, TpktCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = (chunk as usize % 17) + 1;
    let mut buf = BytesMut::new();
    let mut codec = TpktCodec;
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.len() <= MAX_LEN - HEADER_LEN),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
