//! H.225.0 call signalling: the `H323-UserInformation` carried in the Q.931
//! User-user IE.

use super::PerError;
pub use super::asn::h323_messages::H323UserInformation;

/// Decode the contents of a User-user IE (after its protocol discriminator).
pub fn decode(bytes: &[u8]) -> Result<H323UserInformation, PerError> {
    super::decode_whole("H323-UserInformation", bytes)
}

/// Encode an `H323-UserInformation`.
pub fn encode(msg: &H323UserInformation) -> Result<Vec<u8>, PerError> {
    super::encode("H323-UserInformation", msg)
}
