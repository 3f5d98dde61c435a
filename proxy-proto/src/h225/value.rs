//! Small conversions between the generated ASN.1 types and the values the
//! proxy works with (socket addresses, strings, sequence numbers), and a
//! JER door for building messages that list only the fields they set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rasn::types::{BmpString, OctetString};
use serde_json::{Value, json};

use super::PerError;
use super::asn::h323_messages::{
    AliasAddress, EndpointIdentifier, GatekeeperIdentifier, TransportAddress,
    TransportAddressIp6Address, TransportAddressIpAddress,
};
use super::ras::RasMessage;

/// A BMPString from ASCII/Unicode text (characters outside the BMP are
/// replaced, which identifiers never contain).
pub fn bmp(s: &str) -> BmpString {
    // rasn's public constructors take one byte per character; JER takes text.
    rasn::jer::decode(&Value::String(s.into()).to_string()).unwrap_or_default()
}

/// An endpointIdentifier.
pub fn epid(s: &str) -> EndpointIdentifier {
    EndpointIdentifier(bmp(s))
}

/// A gatekeeperIdentifier.
pub fn gkid(s: &str) -> GatekeeperIdentifier {
    GatekeeperIdentifier(bmp(s))
}

/// The text of a BMPString.
pub fn bmp_text(b: &BmpString) -> String {
    String::from_utf16_lossy(b)
}

/// An H.225.0 TransportAddress for a socket address.
pub fn transport(addr: SocketAddr) -> TransportAddress {
    match addr.ip() {
        IpAddr::V4(ip) => TransportAddress::ipAddress(TransportAddressIpAddress::new(
            OctetString::from(ip.octets().to_vec()),
            addr.port(),
        )),
        IpAddr::V6(ip) => TransportAddress::ip6Address(TransportAddressIp6Address::new(
            OctetString::from(ip.octets().to_vec()),
            addr.port(),
        )),
    }
}

/// The socket address of an IPv4/IPv6 TransportAddress (others: `None`).
pub fn socket_addr(t: &TransportAddress) -> Option<SocketAddr> {
    match t {
        TransportAddress::ipAddress(a) => {
            let o: [u8; 4] = a.ip.as_ref().try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(o).into(), a.port))
        }
        TransportAddress::ip6Address(a) => {
            let o: [u8; 16] = a.ip.as_ref().try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(o).into(), a.port))
        }
        _ => None,
    }
}

/// JER of a TransportAddress, for building messages with [`ras_from_json`].
pub fn transport_json(addr: SocketAddr) -> Value {
    match addr.ip() {
        IpAddr::V4(ip) => {
            json!({"ipAddress": {"ip": hex(&ip.octets()), "port": addr.port()}})
        }
        IpAddr::V6(ip) => {
            json!({"ip6Address": {"ip": hex(&ip.octets()), "port": addr.port()}})
        }
    }
}

/// A 16-octet GUID (callIdentifier, conferenceID) from its octets; short
/// input is zero-padded, long input truncated.
pub fn guid(bytes: &[u8]) -> [u8; 16] {
    let mut g = [0u8; 16];
    let n = bytes.len().min(16);
    g[..n].copy_from_slice(&bytes[..n]);
    g
}

/// Upper-case hex, as JER writes OCTET STRINGs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Bytes of a hex string as [`hex`] writes it; `None` when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Build a RAS message from its JER (X.697) form.
pub fn ras_from_json(v: &Value) -> Result<RasMessage, PerError> {
    rasn::jer::decode(&v.to_string()).map_err(|e| PerError::Decode {
        what: "RasMessage (JER)",
        detail: e.to_string(),
    })
}

/// A printable form of an alias: `h323-ID:alice`, `e164:1001`, ...
pub fn alias_text(a: &AliasAddress) -> String {
    super::alias::Alias::of(a).to_string()
}

/// The dialled digits of an alias, when it is an E.164 number.
pub fn alias_digits(a: &AliasAddress) -> Option<String> {
    match a {
        AliasAddress::dialledDigits(d) => Some(String::from_utf8_lossy(d).into_owned()),
        _ => None,
    }
}

/// JER of an alias: an E.164 number when `e164:`-prefixed or all digits,
/// otherwise an h323-ID.
pub fn alias_json(text: &str) -> Value {
    let digits = text.strip_prefix("e164:").unwrap_or(text);
    if !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '#' || c == '*')
    {
        json!({"dialledDigits": digits})
    } else {
        json!({"h323-ID": text.strip_prefix("h323-ID:").unwrap_or(text)})
    }
}

macro_rules! each_ras_seq {
    ($m:expr, $x:ident => $body:expr) => {
        match $m {
            RasMessage::gatekeeperRequest($x) => $body,
            RasMessage::gatekeeperConfirm($x) => $body,
            RasMessage::gatekeeperReject($x) => $body,
            RasMessage::registrationRequest($x) => $body,
            RasMessage::registrationConfirm($x) => $body,
            RasMessage::registrationReject($x) => $body,
            RasMessage::unregistrationRequest($x) => $body,
            RasMessage::unregistrationConfirm($x) => $body,
            RasMessage::unregistrationReject($x) => $body,
            RasMessage::admissionRequest($x) => $body,
            RasMessage::admissionConfirm($x) => $body,
            RasMessage::admissionReject($x) => $body,
            RasMessage::bandwidthRequest($x) => $body,
            RasMessage::bandwidthConfirm($x) => $body,
            RasMessage::bandwidthReject($x) => $body,
            RasMessage::disengageRequest($x) => $body,
            RasMessage::disengageConfirm($x) => $body,
            RasMessage::disengageReject($x) => $body,
            RasMessage::locationRequest($x) => $body,
            RasMessage::locationConfirm($x) => $body,
            RasMessage::locationReject($x) => $body,
            RasMessage::infoRequest($x) => $body,
            RasMessage::infoRequestResponse($x) => $body,
            RasMessage::nonStandardMessage($x) => $body,
            RasMessage::unknownMessageResponse($x) => $body,
            RasMessage::requestInProgress($x) => $body,
            RasMessage::resourcesAvailableIndicate($x) => $body,
            RasMessage::resourcesAvailableConfirm($x) => $body,
            RasMessage::infoRequestAck($x) => $body,
            RasMessage::infoRequestNak($x) => $body,
            RasMessage::serviceControlIndication($x) => $body,
            RasMessage::serviceControlResponse($x) => $body,
            RasMessage::admissionConfirmSequence(v) => match v.first_mut_or_ref() {
                Some($x) => $body,
                None => return None,
            },
            // A message type from a later H.225.0 version: no known fields.
            RasMessage::UnknownExtension(_) => return None,
        }
    };
}

trait FirstOf<T> {
    fn first_mut_or_ref(self) -> Option<T>;
}
impl<'a, T> FirstOf<&'a T> for &'a Vec<T> {
    fn first_mut_or_ref(self) -> Option<&'a T> {
        self.first()
    }
}
impl<'a, T> FirstOf<&'a mut T> for &'a mut Vec<T> {
    fn first_mut_or_ref(self) -> Option<&'a mut T> {
        self.first_mut()
    }
}

/// The requestSeqNum of any RAS message (the first ACF of a sequence).
pub fn seq_num(m: &RasMessage) -> Option<u16> {
    Some(each_ras_seq!(m, x => x.request_seq_num.0))
}

/// Replace the requestSeqNum of any RAS message; `None` for an empty
/// admissionConfirmSequence.
pub fn set_seq_num(m: &mut RasMessage, seq: u16) -> Option<()> {
    each_ras_seq!(m, x => { x.request_seq_num.0 = seq; Some(()) })
}

/// The H.225.0 protocolIdentifier the proxy speaks (version 7, see
/// [`super::PROTOCOL_ID`]).
pub fn protocol_id() -> super::asn::h323_messages::ProtocolIdentifier {
    const ARCS: &[u32] = &[0, 0, 8, 2250, 0, 7];
    super::asn::h323_messages::ProtocolIdentifier(rasn::types::ObjectIdentifier::new_unchecked(
        std::borrow::Cow::Borrowed(ARCS),
    ))
}

/// A callIdentifier for a GUID.
pub fn call_identifier(guid: &[u8; 16]) -> super::asn::h323_messages::CallIdentifier {
    super::asn::h323_messages::CallIdentifier::new(super::asn::h323_messages::GloballyUniqueID(
        rasn::types::FixedOctetString::new(*guid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_addresses_round_trip() {
        for a in ["198.18.0.1:1719", "[2001:db8::1]:1720"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(socket_addr(&transport(a)), Some(a));
            let via_json: TransportAddress =
                rasn::jer::decode(&transport_json(a).to_string()).unwrap();
            assert_eq!(via_json, transport(a));
        }
    }

    #[test]
    fn bmp_strings_and_aliases() {
        assert_eq!(bmp_text(&bmp("EP-0001")), "EP-0001");
        let a: AliasAddress = rasn::jer::decode(&alias_json("1001").to_string()).unwrap();
        assert_eq!(alias_text(&a), "e164:1001");
        let a: AliasAddress = rasn::jer::decode(&alias_json("alice").to_string()).unwrap();
        assert_eq!(alias_text(&a), "h323-ID:alice");
    }

    #[test]
    fn sequence_numbers_of_every_choice() {
        for e in super::super::corpus::build().unwrap() {
            if e.kind != super::super::corpus::Kind::Ras {
                continue;
            }
            let mut m = super::super::ras::decode(&e.bytes).unwrap();
            assert!(seq_num(&m).is_some(), "{}", e.name);
            set_seq_num(&mut m, 4242).unwrap();
            assert_eq!(seq_num(&m), Some(4242), "{}", e.name);
        }
    }
}
