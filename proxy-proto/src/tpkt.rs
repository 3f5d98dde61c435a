//! TPKT framing (RFC 1006) of H.225.0 call signalling on TCP.
//!
//! A TPKT is `03 00 LL LL` followed by `LLLL - 4` bytes of payload. An empty
//! TPKT (`03 00 00 04`) is the H.460.18 keepalive and is delivered as an
//! empty frame so the caller can count it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// TPKT version octet.
pub const VERSION: u8 = 3;
/// Header length.
pub const HEADER_LEN: usize = 4;
/// Largest TPKT (the length field is 16 bits and counts the header).
pub const MAX_LEN: usize = u16::MAX as usize;

/// Framing errors. Any of them means the stream is out of sync and the
/// connection must be closed: TPKT has no resynchronisation marker.
#[derive(Debug, thiserror::Error)]
pub enum TpktError {
    /// First octet is not 3.
    #[error("TPKT version {0} (expected 3)")]
    BadVersion(u8),
    /// Length field below the header size.
    #[error("TPKT length {0} is shorter than its 4-byte header")]
    BadLength(u16),
    /// Payload too large to frame.
    #[error("payload of {0} bytes does not fit in a TPKT (max {max})", max = MAX_LEN - HEADER_LEN)]
    TooLarge(usize),
    /// Socket error underneath.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `tokio_util` codec: decodes TPKT payloads, encodes payloads into TPKTs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TpktCodec;

impl Decoder for TpktCodec {
    type Item = Bytes;
    type Error = TpktError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, TpktError> {
        if src.len() < HEADER_LEN {
            // Reject a bad version as soon as its first octet is here.
            if let Some(&v) = src.first()
                && v != VERSION
            {
                return Err(TpktError::BadVersion(v));
            }
            return Ok(None);
        }
        if src[0] != VERSION {
            return Err(TpktError::BadVersion(src[0]));
        }
        let len = u16::from_be_bytes([src[2], src[3]]);
        if (len as usize) < HEADER_LEN {
            return Err(TpktError::BadLength(len));
        }
        let len = len as usize;
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        frame.advance(HEADER_LEN);
        Ok(Some(frame.freeze()))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for TpktCodec {
    type Error = TpktError;

    fn encode(&mut self, payload: T, dst: &mut BytesMut) -> Result<(), TpktError> {
        let payload = payload.as_ref();
        let total = payload.len() + HEADER_LEN;
        if total > MAX_LEN {
            return Err(TpktError::TooLarge(payload.len()));
        }
        dst.reserve(total);
        dst.put_u8(VERSION);
        dst.put_u8(0);
        dst.put_u16(total as u16);
        dst.put_slice(payload);
        Ok(())
    }
}

/// The H.460.18 keepalive: an empty TPKT.
pub const KEEPALIVE: [u8; 4] = [VERSION, 0, 0, 4];

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        TpktCodec.encode(p, &mut b).unwrap();
        b
    }

    #[test]
    fn several_tpkts_in_one_segment() {
        let mut buf = enc(b"abc");
        buf.extend_from_slice(&enc(b"defg"));
        buf.extend_from_slice(&KEEPALIVE);
        let mut c = TpktCodec;
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b"defg"[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b""[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn one_tpkt_split_across_segments() {
        let whole = enc(b"hello world");
        let mut c = TpktCodec;
        let mut buf = BytesMut::new();
        // Feed one byte at a time: nothing until the last byte.
        for (i, b) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = c.decode(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert!(got.is_none(), "frame early at byte {i}");
            } else {
                assert_eq!(got.unwrap(), &b"hello world"[..]);
            }
        }
    }

    #[test]
    fn empty_tpkt_is_the_keepalive() {
        assert_eq!(&enc(b"")[..], &KEEPALIVE[..]);
        let mut buf = BytesMut::from(&KEEPALIVE[..]);
        assert_eq!(TpktCodec.decode(&mut buf).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn bad_version_and_length_are_errors() {
        let mut buf = BytesMut::from(&[0x04u8][..]);
        assert!(matches!(
            TpktCodec.decode(&mut buf),
            Err(TpktError::BadVersion(4))
        ));
        let mut buf = BytesMut::from(&[3u8, 0, 0, 3][..]);
        assert!(matches!(
            TpktCodec.decode(&mut buf),
            Err(TpktError::BadLength(3))
        ));
        let too_big = vec![0u8; MAX_LEN];
        assert!(matches!(
            TpktCodec.encode(&too_big[..], &mut BytesMut::new()),
            Err(TpktError::TooLarge(_))
        ));
    }
}
