//! H.235 password tokens for gatekeepers that authenticate (GnuGk's
//! `SimplePasswordAuth`): the `cryptoEPPwdHash` token of H.235.0 Annex D
//! ("simple MD5"), as H323Plus and Cisco build it.
//!
//! The hash covers a ClearToken {tokenOID 0.0, timeStamp, password,
//! generalID} in aligned PER, the password and generalID as BMPStrings with
//! a trailing NUL character, and nothing of the message: the proxy can
//! rewrite addresses in a message and still present a valid token, and it
//! can make fresh ones (new timestamps) when it re-registers an endpoint at
//! another gatekeeper. Tokens that sign the whole message (H.235.1) cannot
//! survive the proxy's rewriting.

use md5::{Digest, Md5};
use rasn::types::{BitString, ObjectIdentifier};

use super::asn::h235_security_messages::{ClearToken, Identifier, Password, TimeStamp};
use super::asn::h323_messages::{
    AliasAddress, CryptoH323Token, CryptoH323TokenCryptoEPPwdHash,
    CryptoH323TokenCryptoEPPwdHashToken, CryptoH323TokenCryptoEPPwdHashTokenParamS,
};
use super::ras::RasMessage;
use super::value::{alias_json, bmp};

/// Errors building a token.
#[derive(Debug, thiserror::Error)]
pub enum H235Error {
    /// The alias is not a valid AliasAddress.
    #[error("alias {0:?} is not a valid h323-ID or E.164 number")]
    Alias(String),
    /// The clear token did not encode.
    #[error("encoding the clear token: {0}")]
    Encode(String),
}

/// MD5's algorithm OID (1.2.840.113549.2.5).
const OID_MD5: &[u32] = &[1, 2, 840, 113_549, 2, 5];

fn oid(arcs: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new(arcs.to_vec()).expect("a valid OID")
}

/// A BMPString of `s` with the trailing NUL H323Plus and Cisco hash.
fn bmp_nul(s: &str) -> rasn::types::BmpString {
    bmp(&format!("{s}\u{0}"))
}

/// The MD5 digest of the clear token for `alias`, `password`, `time_stamp`.
pub fn pwd_hash(alias: &str, password: &str, time_stamp: u32) -> Result<[u8; 16], H235Error> {
    let clear = ClearToken::new(
        oid(&[0, 0]),
        Some(TimeStamp(time_stamp)),
        Some(Password(bmp_nul(password))),
        None,
        None,
        None,
        None,
        Some(Identifier(bmp_nul(alias))),
        None,
        None,
        None,
        None,
        None,
    );
    let bytes = rasn::aper::encode(&clear).map_err(|e| H235Error::Encode(e.to_string()))?;
    Ok(Md5::digest(&bytes).into())
}

/// A `cryptoEPPwdHash` token proving `password` for `alias` at `time_stamp`
/// (seconds since 1970, UTC).
pub fn pwd_hash_token(
    alias: &str,
    password: &str,
    time_stamp: u32,
) -> Result<CryptoH323Token, H235Error> {
    let alias_addr: AliasAddress = rasn::jer::decode(&alias_json(alias).to_string())
        .map_err(|_| H235Error::Alias(alias.into()))?;
    let digest = pwd_hash(alias, password, time_stamp)?;
    Ok(CryptoH323Token::cryptoEPPwdHash(
        CryptoH323TokenCryptoEPPwdHash::new(
            alias_addr,
            TimeStamp(time_stamp),
            CryptoH323TokenCryptoEPPwdHashToken::new(
                oid(OID_MD5),
                CryptoH323TokenCryptoEPPwdHashTokenParamS::new(None, None, None, None, None),
                BitString::from_slice(&digest),
            ),
        ),
    ))
}

/// Replace the tokens of `m` with a fresh password token for `alias`:
/// toward a gatekeeper the endpoint's (or the proxy's own) alias; toward
/// an endpoint that authenticates its gatekeeper, the proxy's identifier
/// with that endpoint's password. Returns whether `m` is a message that
/// carries tokens.
pub fn authenticate(
    m: &mut RasMessage,
    alias: &str,
    password: &str,
    time_stamp: u32,
) -> Result<bool, H235Error> {
    let token = pwd_hash_token(alias, password, time_stamp)?;
    macro_rules! put {
        ($x:expr) => {{
            $x.tokens = None;
            $x.crypto_tokens = Some(vec![token]);
            true
        }};
    }
    Ok(match m {
        RasMessage::gatekeeperConfirm(x) => put!(x),
        RasMessage::registrationRequest(x) => put!(x),
        RasMessage::registrationConfirm(x) => put!(x),
        RasMessage::registrationReject(x) => put!(x),
        RasMessage::unregistrationRequest(x) => put!(x),
        RasMessage::unregistrationConfirm(x) => put!(x),
        RasMessage::unregistrationReject(x) => put!(x),
        RasMessage::admissionRequest(x) => put!(x),
        RasMessage::admissionConfirm(x) => put!(x),
        RasMessage::admissionReject(x) => put!(x),
        RasMessage::bandwidthRequest(x) => put!(x),
        RasMessage::bandwidthConfirm(x) => put!(x),
        RasMessage::bandwidthReject(x) => put!(x),
        RasMessage::disengageRequest(x) => put!(x),
        RasMessage::disengageConfirm(x) => put!(x),
        RasMessage::disengageReject(x) => put!(x),
        RasMessage::locationConfirm(x) => put!(x),
        RasMessage::locationReject(x) => put!(x),
        RasMessage::infoRequest(x) => put!(x),
        RasMessage::infoRequestResponse(x) => put!(x),
        RasMessage::infoRequestAck(x) => put!(x),
        RasMessage::infoRequestNak(x) => put!(x),
        _ => false,
    })
}

/// Seconds since 1970 (UTC), for token timestamps.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token H323Plus 1.28 (`simph323 -u 2001 -p secret1`) put in its
    /// RRQ at 2026-12-06 04:59:20 UTC, as tshark showed it: hash
    /// b6148238c2e1bc4cb597af48ac8a1029.
    #[test]
    fn the_md5_token_equals_h323plus() {
        let d = pwd_hash("2001", "secret1", 1_796_533_160).unwrap();
        assert_eq!(
            crate::h225::value::hex(&d).to_lowercase(),
            "b6148238c2e1bc4cb597af48ac8a1029"
        );
        let t = pwd_hash_token("2001", "secret1", 1_796_533_160).unwrap();
        let CryptoH323Token::cryptoEPPwdHash(p) = t else {
            panic!("cryptoEPPwdHash")
        };
        assert!(matches!(p.alias, AliasAddress::dialledDigits(_)));
        assert_eq!(p.token.hash.len(), 128);
    }
}
